/// The fused CPU executor against the TorchSharp executor (one native kernel per operation), for every optimizer of
/// the library, through both runner entry points; its results do not depend on threads or block size.
module Lookahead.Tests.FusedExecutor

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators

/// Parameters after each step of a runner with `options`. With `throughGrad` the gradients are written into the
/// runner's gradient buffers and `Step()` runs (the update buffer then lives in the fused executor's scratch);
/// otherwise they are passed to `Step(gradients)`.
let runWith (options: RunnerOptions) (throughGrad: bool) (dtype: torch.ScalarType) (tx: IGradientTransformation) (p: Problem) =
    use _ = torch.NewDisposeScope()
    let parameters =
        TensorTree.Of(List.map3 (fun n s v -> struct (n, (tensor s v).to_type(dtype).requires_grad_(throughGrad))) p.Names p.Shapes p.Params0)
    use runner = new Runner(tx, parameters, options)
    [ for k, g in List.indexed p.Grads ->
        let grads = (tree p g).Map(fun t -> t.to_type dtype)
        if throughGrad then
            use _ = torch.no_grad ()
            for n in p.Names do runner.Gradients.[n].copy_(grads.[n]) |> ignore
            runner.Step(FastPath.contextAt k)
        else runner.Step(grads, FastPath.contextAt k)
        [| for n in p.Names -> values (parameters.[n].detach().to_type(torch.float64)) |] ]

let torchSharp = RunnerOptions(Executor = RunnerExecutor.TorchSharp)
let fused threads block = RunnerOptions(Executor = RunnerExecutor.FusedCpu, Threads = threads, BlockSize = block)

let compare (what: string) (names: string list) (ok: float -> float -> bool) (a: float[][] list) (b: float[][] list) =
    Expect.sameLayout what names a b
    List.iteri2 (fun step (xa: float[][]) (xb: float[][]) ->
        for t in 0 .. xa.Length - 1 do
            for i in 0 .. xa.[t].Length - 1 do
                if not (ok xa.[t].[i] xb.[t].[i]) then
                    failtestf "%s: step %d, tensor '%s', index %d: %.17g vs %.17g" what (step + 1) names.[t] i xa.[t].[i] xb.[t].[i]) a b

let sameBits (x: float) (y: float) = BitConverter.DoubleToInt64Bits x = BitConverter.DoubleToInt64Bits y || (Double.IsNaN x && Double.IsNaN y)

/// float32 agreement over 10 steps: 4e-6 absolute + 4e-5 relative (tens of float32 ulps: one ulp of difference in a
/// step, from torch's float kernels grouping some products differently, is carried and amplified by later steps).
let float32Close (x: float) (y: float) = abs (x - y) <= 4e-6 + 4e-5 * abs y

/// Shapes that exercise the block edges: tensors shorter than one vector, lengths that are not multiples of 8, 0-d.
let genEdgeProblem =
    gen {
        let! p = genProblemWith 10 20
        let! extra = Gen.elements [ [||]; [| 1L |]; [| 7L |]; [| 9L |]; [| 3L; 5L |] ]
        let n = numel extra
        let! v0 = Gen.arrayOfLength n (Gen.choose (-1000, 1000) |> Gen.map (fun k -> float k / 500.0))
        let! gs = Gen.listOfLength p.Grads.Length (Gen.arrayOfLength n (Gen.choose (-1000, 1000) |> Gen.map (fun k -> float k / 700.0)))
        let grads = List.map2 (fun (g: float[] list) e -> g @ [ e ]) p.Grads gs
        return { Names = p.Names @ [ "edge" ]; Shapes = p.Shapes @ [ extra ]; Params0 = p.Params0 @ [ v0 ]; Grads = grads }
    }

[<Tests>]
let tests =
    testList "fused executor" [
        testList "≡ TorchSharp executor over whole trajectories, float64 (1e-12 + 1e-10·|b|), both entry points" [
            for name, tx in FastPath.optimizers ->
                Expect.property name genLongProblem (fun p ->
                    let reference = runWith torchSharp false torch.float64 (tx ()) p
                    for throughGrad in [ true; false ] do
                        let ours = runWith (fused 2 24) throughGrad torch.float64 (tx ()) p
                        compare (sprintf "%s (through .grad: %b)" name throughGrad) p.Names (fun a b -> Expect.within 1e-12 1e-10 b a) ours reference)
        ]

        testList "the same bits for 1, 2 and 4 threads and any block size" [
            for name, tx in FastPath.optimizers ->
                Expect.property name genEdgeProblem (fun p ->
                    let one = runWith (fused 1 8) true torch.float64 (tx ()) p
                    compare (name + ": 2 threads, blocks of 16") p.Names sameBits (runWith (fused 2 16) true torch.float64 (tx ()) p) one
                    compare (name + ": 4 threads, blocks of 2048") p.Names sameBits (runWith (fused 4 2048) true torch.float64 (tx ()) p) one)
        ]

        testList "≡ TorchSharp executor in float32 over 10 steps (4e-6 + 4e-5·|b|)" [
            for name, tx in FastPath.optimizers ->
                Expect.property name (genProblemWith 10 10) (fun p ->
                    let reference = runWith torchSharp false torch.float32 (tx ()) p
                    let ours = runWith (fused 2 16) true torch.float32 (tx ()) p
                    compare (name + " (float32)") p.Names float32Close ours reference)
        ]

        Expect.property "reductions on the fused executor: the non-finite guard (skip and zero) and the clips, with NaN and ±∞ in the stream" genEdgeProblem (fun p ->
            // Poison two steps: a NaN in the first tensor at step 3, +∞ and −∞ in the last tensor at step 7.
            let poison (k: int) (g: float[] list) =
                g |> List.mapi (fun t v ->
                    let v = Array.copy v
                    if k = 2 && t = 0 then v.[0] <- nan
                    if k = 6 && t = g.Length - 1 then v.[v.Length - 1] <- infinity; v.[0] <- -infinity
                    v)
            let q = { p with Grads = List.mapi poison p.Grads }
            let finiteOrBothNaN ok (a: float) (b: float) = (Double.IsNaN a && Double.IsNaN b) || ok a b
            for name, tx in [ "guard(adam), skip", (fun () -> Transforms.GuardNonFinite(Optim.Adam(0.01)))
                              "guard(clip, adamw), zero", (fun () -> Transforms.GuardNonFinite(Transforms.Chain(Transforms.ClipByGlobalNorm 0.5, Optim.AdamW(0.01)), NonFinitePolicy.Zero))
                              "guard(mars), zero", (fun () -> Transforms.GuardNonFinite(Optim.Mars(0.01), NonFinitePolicy.Zero)) ] do
                let reference = runWith torchSharp false torch.float64 (tx ()) q
                let one = runWith (fused 1 8) true torch.float64 (tx ()) q
                compare (name + " vs TorchSharp") q.Names (finiteOrBothNaN (fun a b -> Expect.within 1e-12 1e-10 b a)) one reference
                compare (name + ": 3 threads") q.Names (finiteOrBothNaN sameBits) (runWith (fused 3 16) true torch.float64 (tx ()) q) one)

        testCase "reductions over many partial sums give the same bits on 1, 2 and 4 threads" <| fun () ->
            // Tensors of 10007 and 9000 elements: several 4096-element partials each, split differently across threads.
            let rng = Random(11)
            let shapes = [ [| 10007L |]; [| 90L; 100L |]; [| 3L |] ]
            let vec n = Array.init n (fun _ -> rng.NextDouble() * 2.0 - 1.0)
            let p = { Names = [ "a"; "b"; "c" ]; Shapes = shapes; Params0 = shapes |> List.map (numel >> vec)
                      Grads = List.init 6 (fun _ -> shapes |> List.map (numel >> vec)) }
            for name, tx in [ "clipped adam", (fun () -> Transforms.Chain(Transforms.ClipByGlobalNorm 0.1, Optim.Adam(0.01)))
                              "mars (per-tensor clip)", (fun () -> Optim.Mars(0.01))
                              "guard(adam)", (fun () -> Transforms.GuardNonFinite(Optim.Adam(0.01))) ] do
                let one = runWith (fused 1 2048) true torch.float64 (tx ()) p
                for threads in [ 2; 4 ] do
                    compare (sprintf "%s: %d threads" name threads) p.Names sameBits (runWith (fused threads 512) true torch.float64 (tx ()) p) one
                compare (name + " vs TorchSharp") p.Names (fun a b -> Expect.within 1e-12 1e-10 b a) one (runWith torchSharp false torch.float64 (tx ()) p)

        Expect.property "scratch kept across a flush lives in memory: a shift or QHAdam's D around transforms that reduce or run on tensors" genEdgeProblem (fun p ->
            // The shift keeps g in scratch while its inner transform runs; here the inner one reduces (a clip) or
            // runs a Polyak step on tensors, so what was recorded runs in the middle of the step.
            for name, tx in [ "shift over (clip, ema)", (fun () -> Transforms.LookaheadShift(0.7, Transforms.Chain(Transforms.ClipByGlobalNorm 0.3, Transforms.Ema(0.9))))
                              "shift over sps", (fun () -> Transforms.Chain(Transforms.LookaheadShift(0.5, Optim.Sps(0.5)), Transforms.Scale(0.1)))
                              "qhadam over a clipped numerator", (fun () -> Transforms.Chain(Transforms.Precondition(PreconditionOptions(Decay = 0.99, BiasCorrection = true, Epsilon = 1e-8, SecondMomentNu = 0.7), Transforms.Chain(Transforms.ClipByGlobalNorm 0.5, Transforms.Ema(0.9))), Transforms.Scale(-0.01))) ] do
                let reference = runWith torchSharp false torch.float64 (tx ()) p
                let one = runWith (fused 1 8) true torch.float64 (tx ()) p
                compare (name + " vs TorchSharp") p.Names (fun a b -> Expect.within 1e-12 1e-10 b a) one reference
                compare (name + ": 2 threads") p.Names sameBits (runWith (fused 2 16) true torch.float64 (tx ()) p) one)

        Expect.property "a partition with an empty part, and parts that split a block" genEdgeProblem (fun p ->
            let tx () =
                Transforms.Partition((fun (info: ParameterInfo) -> if info.Shape.Count = 1 then "vectors" elif info.Shape.Count = 0 then "scalars" else "rest"),
                                     struct ("vectors", Optim.Adam(0.01)), struct ("rest", Optim.Sgd(0.05, 0.9)), struct ("scalars", Optim.Lion(0.01)), struct ("unused", Optim.RmsProp()))
            let reference = runWith torchSharp false torch.float64 (tx ()) p
            compare "partition" p.Names (fun a b -> Expect.within 1e-12 1e-10 b a) (runWith (fused 3 8) true torch.float64 (tx ()) p) reference)

        testCase "a strided context tensor inside a step whose update buffer lives in scratch is read as it is (MARS exact, no clip)" <| fun () ->
            // The context's g(θₜ₋₁) is a transposed view: not contiguous, not the runner's memory.
            let run (options: RunnerOptions) =
                use _ = torch.NewDisposeScope()
                let w = torch.linspace(-1.0, 1.0, 24L, dtype = torch.float64).reshape(4L, 6L).requires_grad_(true)
                use runner = new Runner(Transforms.Chain(Transforms.GradientCorrection(0.7, exact = true), Optim.Adam(0.05)), TensorTree.Of(struct ("w", w)), options)
                [ for k in 0 .. 5 ->
                    let g = tensor [| 4L; 6L |] (Array.init 24 (fun i -> sin (float i * (0.3 + 0.1 * float k))))
                    let previous = (tensor [| 6L; 4L |] (Array.init 24 (fun i -> cos (float i * 0.2 * float k)))).t()
                    Expect.isFalse (previous.is_contiguous ()) "the context tensor is strided"
                    (use _ = torch.no_grad () in runner.Gradients.["w"].copy_(g) |> ignore)
                    let context = if k = 0 then StepContext.Empty else StepContext.Empty.With(ContextKeys.PreviousIterateGradient, TensorTree.Of(struct ("w", previous)))
                    runner.Step(context)
                    [| values (w.detach().clone()) |] ]
            compare "mars exact" [ "w" ] (fun a b -> Expect.within 1e-12 1e-10 b a) (run (fused 2 16)) (run torchSharp)

        testCase "managed allocation per steady-state step does not grow with the number of tensors (both executors)" <| fun () ->
            // Bytes, not time: the per-step bookkeeping must not walk the state building paths or collections per
            // tensor. The bound is what one tensor costs plus 200 bytes per extra tensor (the .grad handle the binding
            // check reads per parameter is about 50); 1.4 MB per step at 1000 tensors before this was measured.
            let perStepWith (verify: bool) (executor: RunnerExecutor) (count: int) =
                use _ = torch.NewDisposeScope()
                let ps = [| for i in 0 .. count - 1 -> struct (sprintf "p%04d" i, torch.randn(10L, 10L).requires_grad_(true)) |]
                let parameters = TensorTree.Of ps
                use runner = new Runner(Optim.Adam(1e-3), parameters, RunnerOptions(Executor = executor, Threads = 2, VerifyGradientBinding = verify))
                for _ in 1 .. 5 do runner.Step()
                let before = GC.GetTotalAllocatedBytes true
                for _ in 1 .. 20 do runner.Step()
                float (GC.GetTotalAllocatedBytes true - before) / 20.0
            let perStep = perStepWith true
            for executor in [ RunnerExecutor.FusedCpu; RunnerExecutor.TorchSharp ] do
                let one, many = perStep executor 1, perStep executor 1000
                Expect.isLessThan many (one + 200.0 * 999.0) (sprintf "%A: %.0f bytes per step with 1000 tensors, %.0f with one" executor many one)
            // On the fused executor a step reuses what the last one recorded; without the binding check (which reads
            // each .grad) what remains is the state's own immutable values (520 bytes for Adam when measured; 10.8 KB
            // before the reuse).
            let fused = perStepWith false RunnerExecutor.FusedCpu 1000
            Expect.isLessThan fused 2048.0 (sprintf "fused, no binding check: %.0f managed bytes per step with 1000 tensors" fused)

        testCase "the runner reports its executor; Auto picks the fused one for CPU float tensors (16-bit ones with float32 state), TorchSharp otherwise" <| fun () ->
            use _ = torch.NewDisposeScope()
            let cpu = TensorTree.Of(struct ("w", torch.randn([| 4L |])))
            use auto = new Runner(Optim.Adam(), cpu)
            Expect.equal auto.Executor RunnerExecutor.FusedCpu "float32 on the CPU"
            let half = TensorTree.Of(struct ("w", torch.randn([| 4L |]).to_type(torch.bfloat16)))
            use autoHalf = new Runner(Optim.Sgd(0.1), half, RunnerOptions(StatePrecision = StatePrecision.Parameters))
            Expect.equal autoHalf.Executor RunnerExecutor.TorchSharp "bfloat16 parameters with bfloat16 state fall back to TorchSharp"
            use forced = new Runner(Optim.Adam(), TensorTree.Of(struct ("w", torch.randn([| 4L |]))), RunnerOptions(Executor = RunnerExecutor.TorchSharp))
            Expect.equal forced.Executor RunnerExecutor.TorchSharp "an explicit choice is kept"

        testCase "FusedCpu names the tensor it cannot run; bad thread and block counts are refused by name" <| fun () ->
            use _ = torch.NewDisposeScope()
            let half = TensorTree.Of(struct ("h", torch.randn([| 4L |]).to_type(torch.bfloat16)))
            Expect.throwsC (fun () -> new Runner(Optim.Sgd(0.1), half, RunnerOptions(Executor = RunnerExecutor.FusedCpu, StatePrecision = StatePrecision.Parameters)) |> ignore) (fun e ->
                Expect.stringContains e.Message "'h' is BFloat16" "names the tensor and its dtype")
            let cpu = TensorTree.Of(struct ("w", torch.randn([| 4L |])))
            Expect.throwsC (fun () -> new Runner(Optim.Sgd(0.1), cpu, RunnerOptions(Threads = 0)) |> ignore) (fun e -> Expect.stringContains e.Message "Threads" "names Threads")
            Expect.throwsC (fun () -> new Runner(Optim.Sgd(0.1), cpu, RunnerOptions(BlockSize = 4)) |> ignore) (fun e -> Expect.stringContains e.Message "BlockSize" "names BlockSize")
    ]
