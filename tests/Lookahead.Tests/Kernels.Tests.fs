/// The elementwise kernels are written once against IArrayOps: run by TensorOps on float64 tensors and by
/// ArrayBlockOps on host arrays, they give the same bits, so a second executor can run the same definitions.
module Lookahead.Tests.Kernels

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
            both "sign" (fun x _ _ -> t.Sign(x) |> ignore) (fun x _ _ -> h.Sign(x) |> ignore) a)
    ]
