/// The elementwise kernels are written once against IArrayOps: run by TensorOps on float64 tensors and by
/// ArrayBlockOps on host arrays, they give the same bits, so a second executor can run the same definitions.
module Lookahead.Tests.Kernels

#nowarn "9"

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead.Kernels

let private genVector n =
    Gen.elements [ -3.0; -1.0; -0.0; 0.0; 1e-300; 0.5; 2.0; 7.25 ]
    |> Gen.map2 (fun noise v -> v * (1.0 + noise)) (Gen.choose (-1000, 1000) |> Gen.map (fun k -> float k / 1e4))
    |> Gen.arrayOfLength n

let private genCase =
    gen {
        let! n = Gen.choose (1, 40)
        let! a = genVector n
        let! b = genVector n
        let! c = genVector n
        let! beta = Gen.elements [ 0.0; 0.5; 0.9; 0.999; 1.0 ]
        let! w = Gen.elements [ 0.001; 0.1; 1.0; -2.0 ]
        return a, b, c, beta, w
    }

let private viaTensor (f: torch.Tensor -> torch.Tensor -> torch.Tensor -> unit) (a: float[]) (b: float[]) (c: float[]) =
    use _ = torch.NewDisposeScope()
    let ta, tb, tc = torch.tensor(a, dtype = torch.float64), torch.tensor(b, dtype = torch.float64), torch.tensor(c, dtype = torch.float64)
    f ta tb tc
    ta.data<float>().ToArray()

let private viaArray (f: ArrayBlock -> ArrayBlock -> ArrayBlock -> unit) (a: float[]) (b: float[]) (c: float[]) =
    let xa, xb, xc = Array.copy a, Array.copy b, Array.copy c
    f (ArrayBlock.Of xa) (ArrayBlock.Of xb) (ArrayBlock.Of xc)
    xa

let private sameBits (what: string) (x: float[]) (y: float[]) =
    Expect.equal x.Length y.Length (what + ": length")
    for i in 0 .. x.Length - 1 do
        if BitConverter.DoubleToInt64Bits x.[i] <> BitConverter.DoubleToInt64Bits y.[i] then
            failtestf "%s: element %d differs: %.17g (tensors) vs %.17g (arrays)" what i x.[i] y.[i]

[<Tests>]
let tests =
    let t = TensorOps()
    let h = ArrayBlockOps()
    testList "kernels on two executors (float64, bit-identical)" [
        Expect.property "moment kernels: m ← βm + wx, v ← βv + wx², max" genCase (fun (a, b, c, beta, w) ->
            let positive = Array.map (fun x -> if x = 0.0 then 0.0 else abs x)
            sameBits "accumulate"
                (viaTensor (fun x y _ -> Moments.Accumulate<torch.Tensor, TensorOps>(t, x, y, beta, w) |> ignore) a b c)
                (viaArray (fun x y _ -> Moments.Accumulate<ArrayBlock, ArrayBlockOps>(h, x, y, beta, w) |> ignore) a b c)
            sameBits "accumulate square"
                (viaTensor (fun x y _ -> Moments.AccumulateSquare<torch.Tensor, TensorOps>(t, x, y, beta, w) |> ignore) a b c)
                (viaArray (fun x y _ -> Moments.AccumulateSquare<ArrayBlock, ArrayBlockOps>(h, x, y, beta, w) |> ignore) a b c)
            sameBits "running max"
                (viaTensor (fun x y _ -> Moments.RunningMax<torch.Tensor, TensorOps>(t, x, y) |> ignore) (positive a) (positive b) c)
                (viaArray (fun x y _ -> Moments.RunningMax<ArrayBlock, ArrayBlockOps>(h, x, y) |> ignore) (positive a) (positive b) c))

        Expect.property "every array operation" genCase (fun (a, b, c, _, w) ->
            let both name (ft: torch.Tensor -> torch.Tensor -> torch.Tensor -> unit) (fh: ArrayBlock -> ArrayBlock -> ArrayBlock -> unit) (a: float[]) =
                sameBits name (viaTensor ft a b c) (viaArray fh a b c)
            let nonZero = Array.map (fun x -> if x = 0.0 then 0.25 else x)
            both "copy" (fun x y _ -> t.Copy(x, y) |> ignore) (fun x y _ -> h.Copy(x, y) |> ignore) a
            both "mul" (fun x _ _ -> t.Mul(x, w) |> ignore) (fun x _ _ -> h.Mul(x, w) |> ignore) a
            both "div" (fun x _ _ -> t.Div(x, w) |> ignore) (fun x _ _ -> h.Div(x, w) |> ignore) a
            both "add" (fun x _ _ -> t.Add(x, w) |> ignore) (fun x _ _ -> h.Add(x, w) |> ignore) a
            both "add scaled" (fun x y _ -> t.AddScaled(x, y, w) |> ignore) (fun x y _ -> h.AddScaled(x, y, w) |> ignore) a
            both "add product" (fun x y z -> t.AddProduct(x, y, z, w) |> ignore) (fun x y z -> h.AddProduct(x, y, z, w) |> ignore) a
            both "mul by" (fun x y _ -> t.MulBy(x, y) |> ignore) (fun x y _ -> h.MulBy(x, y) |> ignore) a
            sameBits "div by"
                (viaTensor (fun x y _ -> t.DivBy(x, y) |> ignore) a (nonZero b) c)
                (viaArray (fun x y _ -> h.DivBy(x, y) |> ignore) a (nonZero b) c)
            // Which zero a max of +0 and −0 returns differs between torch's vector lanes and its scalar tail, so the
            // max and the clamp are compared on inputs without −0 (the two zeros are equal values either way).
            let noNegativeZero = Array.map (fun x -> if x = 0.0 then 0.0 else x)
            sameBits "max"
                (viaTensor (fun x y _ -> t.Max(x, y) |> ignore) (noNegativeZero a) (noNegativeZero b) c)
                (viaArray (fun x y _ -> h.Max(x, y) |> ignore) (noNegativeZero a) (noNegativeZero b) c)
            both "clamp min" (fun x _ _ -> t.ClampMin(x, 0.0) |> ignore) (fun x _ _ -> h.ClampMin(x, 0.0) |> ignore) (noNegativeZero a)
            // torch's CPU sqrt is a vectorised approximation within 0.5001 ulp, not always the correctly rounded IEEE
            // result that Math.Sqrt gives: the two agree to 1 ulp, not bit for bit.
            let roots = viaTensor (fun x _ _ -> t.Sqrt(x) |> ignore) (Array.map abs a) b c
            let exact = viaArray (fun x _ _ -> h.Sqrt(x) |> ignore) (Array.map abs a) b c
            for i in 0 .. roots.Length - 1 do
                let ulps = abs (BitConverter.DoubleToInt64Bits roots.[i] - BitConverter.DoubleToInt64Bits exact.[i])
                if ulps > 1L then failtestf "sqrt: element %d differs by %d ulp" i ulps
            both "sign" (fun x _ _ -> t.Sign(x) |> ignore) (fun x _ _ -> h.Sign(x) |> ignore) a
            // Products that underflow (1e-300²) and signed zeros disagree; so does NaN.
            let withNaN = Array.mapi (fun i x -> if i % 5 = 4 then nan else x) a
            both "agree" (fun x y _ -> t.Agree(x, y) |> ignore) (fun x y _ -> h.Agree(x, y) |> ignore) withNaN
            let agreed = viaArray (fun x y _ -> h.Agree(x, y) |> ignore) withNaN b c
            for i in 0 .. a.Length - 1 do
                let expected = if withNaN.[i] * b.[i] > 0.0 then 1.0 else 0.0
                if agreed.[i] <> expected then failtestf "agree: element %d of %g and %g gave %g" i withNaN.[i] b.[i] agreed.[i])
    
        Expect.property "every array operation, compound ones included, on BlockOps (native float64 blocks, SIMD) ≡ ArrayBlockOps" genCase (fun (a, b, c, beta, w) ->
            let viaBlocks (f: Block<float> -> Block<float> -> Block<float> -> unit) (a: float[]) (b: float[]) (c: float[]) =
                let xa, xb, xc = Array.copy a, Array.copy b, Array.copy c
                use pa = fixed xa
                use pb = fixed xb
                use pc = fixed xc
                f (Block<float>(pa, xa.Length)) (Block<float>(pb, xb.Length)) (Block<float>(pc, xc.Length))
                xa
            let k = BlockOps<float>()
            let both name fk fh (a: float[]) (b: float[]) = sameBits name (viaBlocks fk a b c) (viaArray fh a b c)
            let nonZero = Array.map (fun x -> if x = 0.0 then 0.25 else x)
            let noNegativeZero = Array.map (fun x -> if x = 0.0 then 0.0 else x)
            both "copy" (fun x y _ -> k.Copy(x, y) |> ignore) (fun x y _ -> h.Copy(x, y) |> ignore) a b
            both "mul" (fun x _ _ -> k.Mul(x, w) |> ignore) (fun x _ _ -> h.Mul(x, w) |> ignore) a b
            both "div" (fun x _ _ -> k.Div(x, w) |> ignore) (fun x _ _ -> h.Div(x, w) |> ignore) a b
            both "add" (fun x _ _ -> k.Add(x, w) |> ignore) (fun x _ _ -> h.Add(x, w) |> ignore) a b
            both "add scaled" (fun x y _ -> k.AddScaled(x, y, w) |> ignore) (fun x y _ -> h.AddScaled(x, y, w) |> ignore) a b
            both "add product" (fun x y z -> k.AddProduct(x, y, z, w) |> ignore) (fun x y z -> h.AddProduct(x, y, z, w) |> ignore) a b
            both "mul by" (fun x y _ -> k.MulBy(x, y) |> ignore) (fun x y _ -> h.MulBy(x, y) |> ignore) a b
            both "div by" (fun x y _ -> k.DivBy(x, y) |> ignore) (fun x y _ -> h.DivBy(x, y) |> ignore) a (nonZero b)
            both "max" (fun x y _ -> k.Max(x, y) |> ignore) (fun x y _ -> h.Max(x, y) |> ignore) (noNegativeZero a) (noNegativeZero b)
            both "clamp min" (fun x _ _ -> k.ClampMin(x, 0.0) |> ignore) (fun x _ _ -> h.ClampMin(x, 0.0) |> ignore) (noNegativeZero a) b
            both "sqrt" (fun x _ _ -> k.Sqrt(x) |> ignore) (fun x _ _ -> h.Sqrt(x) |> ignore) (Array.map abs a) b
            both "sign" (fun x _ _ -> k.Sign(x) |> ignore) (fun x _ _ -> h.Sign(x) |> ignore) a b
            both "agree" (fun x y _ -> k.Agree(x, y) |> ignore) (fun x y _ -> h.Agree(x, y) |> ignore) (Array.mapi (fun i x -> if i % 5 = 4 then nan else x) a) b
            both "mul add" (fun x y _ -> k.MulAdd(x, beta, y, w) |> ignore) (fun x y _ -> h.MulAdd(x, beta, y, w) |> ignore) a b
            both "mul add product" (fun x y z -> k.MulAddProduct(x, beta, y, z, w) |> ignore) (fun x y z -> h.MulAddProduct(x, beta, y, z, w) |> ignore) a b
            both "sqrt of" (fun x y _ -> k.SqrtOf(x, y) |> ignore) (fun x y _ -> h.SqrtOf(x, y) |> ignore) a (Array.map abs b)
            both "copy div" (fun x y _ -> k.CopyDiv(x, y, w) |> ignore) (fun x y _ -> h.CopyDiv(x, y, w) |> ignore) a b
            both "div add" (fun x _ _ -> k.DivAdd(x, w, beta) |> ignore) (fun x _ _ -> h.DivAdd(x, w, beta) |> ignore) a b)

        Expect.property "compound operations ≡ their sequences on TensorOps (float64 tensors)" genCase (fun (a, b, c, beta, w) ->
            let both name (ft: torch.Tensor -> torch.Tensor -> torch.Tensor -> unit) (fh: ArrayBlock -> ArrayBlock -> ArrayBlock -> unit) (a: float[]) (b: float[]) =
                sameBits name (viaTensor ft a b c) (viaArray fh a b c)
            both "mul add" (fun x y _ -> t.MulAdd(x, beta, y, w) |> ignore) (fun x y _ -> h.MulAdd(x, beta, y, w) |> ignore) a b
            both "mul add product" (fun x y z -> t.MulAddProduct(x, beta, y, z, w) |> ignore) (fun x y z -> h.MulAddProduct(x, beta, y, z, w) |> ignore) a b
            both "copy div" (fun x y _ -> t.CopyDiv(x, y, w) |> ignore) (fun x y _ -> h.CopyDiv(x, y, w) |> ignore) a b
            both "div add" (fun x _ _ -> t.DivAdd(x, w, beta) |> ignore) (fun x _ _ -> h.DivAdd(x, w, beta) |> ignore) a b)

        Expect.property "reductions: Σx², Σxy, the non-finite and the non-zero counts agree on both executors" genCase (fun (a, b, _, _, w) ->
            use _ = torch.NewDisposeScope()
            let withBad = Array.mapi (fun i x -> if w < 0.0 && i % 3 = 0 then [| nan; infinity; -infinity |].[i % 9 / 3] else x) a
            let ta, tb, tbad = torch.tensor(a, dtype = torch.float64), torch.tensor(b, dtype = torch.float64), torch.tensor(withBad, dtype = torch.float64)
            let close what (x: float) (y: float) =
                // Different summation orders: agreement to rounding of the terms' magnitudes.
                let scale = max 1e-300 (Array.sumBy (fun v -> v * v) a + Array.sumBy (fun v -> abs v) b * Array.sumBy abs a)
                if abs (x - y) > 1e-14 * scale then failtestf "%s: %.17g (tensors) vs %.17g (arrays)" what x y
            close "Σx²" (t.SumOfSquares(ta).item<float>()) (h.SumOfSquares(ArrayBlock.Of a))
            close "Σxy" (t.Dot(ta, tb).item<float>()) (h.Dot(ArrayBlock.Of a, ArrayBlock.Of b))
            let expected = withBad |> Array.filter (fun v -> not (Double.IsFinite v)) |> Array.length |> float
            Expect.equal (t.NonFiniteCount(tbad).item<float>()) expected "non-finite count (tensors)"
            Expect.equal (h.NonFiniteCount(ArrayBlock.Of withBad)) expected "non-finite count (arrays)"
            // ±0 are zero; NaN and ±∞ are not (the generator's 1e-300 is not zero either).
            let nonZero = withBad |> Array.filter (fun v -> v <> 0.0) |> Array.length |> float
            Expect.equal (t.NonZeroCount(tbad).item<float>()) nonZero "non-zero count (tensors)"
            Expect.equal (h.NonZeroCount(ArrayBlock.Of withBad)) nonZero "non-zero count (arrays)"
            let copy64 = Array.copy withBad
            use p64 = fixed copy64
            Expect.equal (BlockOps<float>().NonZeroCount(Block<float>(p64, copy64.Length))) nonZero "non-zero count (float64 blocks, SIMD)"
            let copy32 = Array.map float32 withBad
            use p32 = fixed copy32
            let nonZero32 = copy32 |> Array.filter (fun v -> v <> 0.0f) |> Array.length |> float
            Expect.equal (BlockOps<float32>().NonZeroCount(Block<float32>(p32, copy32.Length))) nonZero32 "non-zero count (float32 blocks, SIMD)")

        Expect.property "reduced values scale and divide arrays the same way on both executors" genCase (fun (a, _, _, _, w) ->
            use _ = torch.NewDisposeScope()
            let s = torch.tensor(w, dtype = torch.float64)
            sameBits "scale by" (viaTensor (fun x _ _ -> t.ScaleBy(x, s) |> ignore) a a a) (viaArray (fun x _ _ -> h.ScaleBy(x, w) |> ignore) a a a)
            sameBits "divide by" (viaTensor (fun x _ _ -> t.DivideBy(x, s) |> ignore) a a a) (viaArray (fun x _ _ -> h.DivideBy(x, w) |> ignore) a a a))

        testCase "scalar arithmetic on reduced values: 0-d float64 tensors and doubles give the same bits" <| fun () ->
            use _ = torch.NewDisposeScope()
            let ts = t :> IScalarOps<torch.Tensor>
            let hs = h :> IScalarOps<float>
            let values = [ -2.5; -0.0; 0.0; 1e-300; 0.75; 3.0; 1e300; infinity; nan ]
            let bitsOf (x: torch.Tensor) = BitConverter.DoubleToInt64Bits(x.item<float>())
            let check name (x: float) (y: float) (viaT: torch.Tensor) (viaH: float) =
                if bitsOf viaT <> BitConverter.DoubleToInt64Bits viaH && not (Double.IsNaN viaH && Double.IsNaN(viaT.item<float>())) then
                    failtestf "%s(%g, %g): %.17g (tensor) vs %.17g (double)" name x y (viaT.item<float>()) viaH
            for x in values do
                for y in values do
                    let tx, ty = torch.tensor(x, dtype = torch.float64), torch.tensor(y, dtype = torch.float64)
                    let check name = check name x y
                    check "add" (ts.Add(tx, ty)) (hs.Add(x, y))
                    check "plus" (ts.Plus(tx, y)) (hs.Plus(x, y))
                    check "sub" (ts.Sub(tx, ty)) (hs.Sub(x, y))
                    check "mul" (ts.Mul(tx, ty)) (hs.Mul(x, y))
                    check "times" (ts.Times(tx, y)) (hs.Times(x, y))
                    check "div" (ts.Div(tx, ty)) (hs.Div(x, y))
                    check "over" (ts.Over(tx, y)) (hs.Over(x, y))
                    check "if less" (ts.IfLess(tx, ty, ts.Constant(tx, 1.0), ts.Constant(tx, 2.0))) (hs.IfLess(x, y, 1.0, 2.0))
                    if not (Double.IsNaN y) then
                        check "min" (ts.Min(tx, y)) (hs.Min(x, y))
                        check "max" (ts.Max(tx, y)) (hs.Max(x, y))
                let check name = check name x 0.0
                check "sqrt" (ts.Sqrt(torch.tensor(abs x, dtype = torch.float64))) (hs.Sqrt(abs x))
                check "if positive" (ts.IfPositive(torch.tensor(x, dtype = torch.float64), ts.Constant(torch.tensor(0.0), 1.0), ts.Constant(torch.tensor(0.0), 2.0))) (hs.IfPositive(x, 1.0, 2.0))

        Expect.property "block reductions do not depend on the thread count; they agree with one sum" (Gen.zip (Gen.choose (1, 5000)) (Gen.choose (1, 700))) (fun (n, blockSize) ->
            let rng = Random(n * 7919 + blockSize)
            let a = Array.init n (fun _ -> rng.NextDouble() * 2.0 - 1.0)
            let b = Array.init n (fun _ -> rng.NextDouble() * 2.0 - 1.0)
            for kind in [ ReductionKind.SumOfSquares; ReductionKind.Dot ] do
                let one = Reducer.Blocks(kind, a, b, blockSize, 1)
                for threads in [ 2; 3; 8 ] do
                    let many = Reducer.Blocks(kind, a, b, blockSize, threads)
                    if BitConverter.DoubleToInt64Bits many <> BitConverter.DoubleToInt64Bits one then
                        failtestf "%A over %d elements in blocks of %d: %.17g on 1 thread, %.17g on %d" kind n blockSize one many threads
                let plain = if kind = ReductionKind.Dot then Array.fold2 (fun s x y -> s + x * y) 0.0 a b else Array.sumBy (fun x -> x * x) a
                let scale = Array.sumBy (fun x -> x * x) a + Array.sumBy (fun x -> x * x) b
                if abs (one - plain) > 1e-13 * scale then failtestf "%A: blocks give %.17g, one sum %.17g" kind one plain)

        testCase "block reductions reject a dot product without a second array of the same length" <| fun () ->
            Expect.throwsC (fun () -> Reducer.Blocks(ReductionKind.Dot, [| 1.0; 2.0 |], [| 1.0 |], 8, 1) |> ignore) (fun ex ->
                Expect.isTrue (ex :? ArgumentException) "an ArgumentException"
                Expect.stringContains ex.Message "2 elements, got 1" "the message names both lengths")
    ]

[<Tests>]
let declaredReductions =
    testList "declared reductions" [
        testCase "each reducing primitive declares what it sums, in the order its step needs it" <| fun () ->
            let described tx = Reduction.Of(tx) |> Seq.map string |> List.ofSeq
            Expect.equal (described (Lookahead.Transforms.ClipByGlobalNorm 1.0)) [ "global Σ updates²" ] "clip"
            Expect.equal (described (Lookahead.Transforms.GradientCorrection(2.0, clip = true))) [ "per-tensor Σ updates²" ] "MARS's clip"
            Expect.equal (described (Lookahead.Transforms.GradientCorrection(2.0))) [] "no clip, no reduction"
            Expect.equal (described (Lookahead.Transforms.GuardNonFinite(Lookahead.Transforms.ClipByGlobalNorm 1.0)))
                [ "per-tensor non-finite count of updates"; "global Σ updates²" ] "guard, then its inner transform"
            Expect.equal (described (Lookahead.Optim.Momo()))
                [ "global Σ parameters·updates"; "global Σ direction·preconditioned_direction"; "global Σ parameters·direction" ] "MoMo"
            Expect.equal (described (Lookahead.Optim.Adam())) [] "Adam is elementwise"
    ]

