/// The runner (allocation-free path over flat buffers) against the pure reference path, for every optimizer
/// of the library; and what the runner promises about memory: no tensor growth, scratch reused.
module Lookahead.Tests.FastPath

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators

/// Every optimizer of the library, with non-default settings where they select other code.
let optimizers : (string * (unit -> IGradientTransformation)) list =
    [ "sgd momentum + wd", fun () -> Optim.Sgd(0.05, 0.9, 0.1, 0.01)
      "sgd nesterov", fun () -> Optim.NesterovSgd(0.05, 0.9)
      "heavy ball", fun () -> Optim.HeavyBall(0.05, 0.9)
      "adam", fun () -> Optim.Adam(0.01)
      "adamw amsgrad", fun () -> Optim.AdamW(0.01, amsgrad = true)
      "radam", fun () -> Optim.RAdam(0.01, weightDecay = 0.01)
      "nadam", fun () -> Optim.NAdam(0.01)
      "rmsprop centered momentum", fun () -> Optim.RmsProp(0.01, momentum = 0.9, centered = true)
      "adagrad", fun () -> Optim.Adagrad(0.1, lrDecay = 0.01)
      "nesterov velocity", fun () -> Optim.NesterovVelocity(0.05, 0.9)
      "generalised nesterov", fun () -> Optim.GeneralisedNesterov(0.05, 0.9, 3.0)
      "qhm direct wd", fun () -> Optim.Qhm(0.5, 0.9, 0.7, 0.01, QhmWeightDecay.Direct)
      "qhadam", fun () -> Optim.QhAdam(0.01, nu1 = 0.7, nu2 = 0.9)
      "rsg", fun () -> Optim.Rsg(0.1, 0.9, 0.1)
      "arsg", fun () -> Optim.Arsg(0.01)
      "arsg adam mode", fun () -> Optim.Arsg(0.01, amsgrad = false)
      "arsg obsb", fun () -> Optim.ArsgObsb(0.01, policy = BoostPolicy(Window = 5, Tolerance = 0.5))
      "mars adamw", fun () -> Optim.Mars(0.01, weightDecay = 0.1)
      "mars lion", fun () -> Optim.Mars(0.01, ``type`` = MarsType.Lion)
      "mars shampoo", fun () -> Optim.Mars(0.01, ``type`` = MarsType.Shampoo)
      "mars-m", fun () -> Optim.MarsM(0.01)
      "mars-m efficient", fun () -> Optim.MarsMEfficient(0.01)
      "muon with aux adam", fun () -> Optim.MuonWithAuxAdam()
      "sps", fun () -> Optim.Sps(0.5)
      "sps+", fun () -> Optim.SpsPlus(0.5)
      "momo fstar", fun () -> Optim.Momo(1.0, 0.01, estimateLowerBound = true)
      "momo-adam", fun () -> Optim.MomoAdam(0.1, weightDecay = 0.01)
      "slow/fast adam", fun () -> Transforms.SlowFastWeights(Optim.Adam(0.01), 3, 0.5)
      "clipped adam", fun () -> Transforms.Chain(Transforms.ClipByGlobalNorm 1.0, Optim.Adam(0.01))
      "schedule-free sgd warm-up", fun () -> Optim.ScheduleFreeSgd(0.1, warmupSteps = 5, weightDecay = 0.01)
      "schedule-free adamw", fun () -> Optim.ScheduleFreeAdamW(0.01, warmupSteps = 3, weightDecay = 0.01)
      "ademamix warm-up", fun () -> Optim.AdEMAMix(0.01, alphaWarmup = Nullable 10, beta3Warmup = Nullable 10, weightDecay = 0.01)
      "adopt decoupled", fun () -> Optim.Adopt(0.01, weightDecay = 0.01, decouple = true)
      "c-adamw", fun () -> Optim.CautiousAdamW(0.01, weightDecay = 0.01)
      "c-lion", fun () -> Optim.CautiousLion(0.001)
      "prodigy", fun () -> Optim.Prodigy(1.0, weightDecay = 0.01)
      "sgd-hd nesterov", fun () -> Optim.SgdHD(0.05, 0.9, weightDecay = 0.01, nesterov = true, hypergradientLr = 1e-3)
      "adam-hd", fun () -> Optim.AdamHD(0.01, weightDecay = 0.01, hypergradientLr = 1e-4)
      "soap", fun () -> Optim.Soap(0.01, preconditionFrequency = 2, maxPreconditionDimension = 4)
      "lamb", fun () -> Optim.Lamb(0.01, weightDecay = 0.01)
      "lars", fun () -> Optim.Lars(0.1, weightDecay = 0.01)
      "adafactor momentum + decay", fun () -> Optim.Adafactor(beta1 = Nullable 0.9, weightDecay = 0.01)
      "multi-steps adam 3", fun () -> Transforms.MultiSteps(Optim.Adam(0.01), 3)
      "ema weights adam", fun () -> Transforms.AverageParameters(Optim.Adam(0.01), ParameterAveraging.Exponential, 0.9)
      "injected adamw", fun () -> Transforms.InjectHyperparameters((fun h -> Optim.AdamW(h.["lr"], weightDecay = h.["wd"])), struct ("lr", 0.01), struct ("wd", 0.01)) ]

/// Losses for the Polyak types and the boost policy, a deterministic function of the step.
let contextAt (k: int) = StepContext.Empty.WithLoss(1.0 + 10.0 / float (k + 1))

/// Parameters after each step of the runner, in the problem's name order.
let runFast (tx: IGradientTransformation) (p: Problem) =
    use _ = torch.NewDisposeScope()
    let parameters = tree p p.Params0
    use runner = new Runner(tx, parameters)
    [ for k, g in List.indexed p.Grads ->
        runner.Step(tree p g, contextAt k)
        [| for n in p.Names -> values parameters.[n] |] ]

let samePath (atol: float) (rtol: float) (name: string) (tx: unit -> IGradientTransformation) (p: Problem) =
    let reference = (Expect.runWith contextAt (tx ()) p).Params
    let fast = runFast (tx ()) p
    Expect.sameLayout name p.Names fast reference
    List.iteri2 (fun step (a: float[][]) (b: float[][]) ->
        for t in 0 .. a.Length - 1 do
            for i in 0 .. a.[t].Length - 1 do
                if not (Expect.within atol rtol b.[t].[i] a.[t].[i]) then
                    failtestf "%s: step %d, tensor '%s', index %d: runner %.17g, pure %.17g" name (step + 1) p.Names.[t] i b.[t].[i] a.[t].[i]) reference fast

let cudaAvailable = torch.cuda.is_available ()

[<Tests>]
let tests =
    testList "fast path" [
        testList "runner ≡ pure path, every optimizer, 30–50 steps (1e-12 + 1e-10·|b|: flat kernels may round a sum differently)" [
            for name, tx in optimizers ->
                Expect.property name genLongProblem (fun p -> samePath 1e-12 1e-10 name tx p)
        ]
        Expect.property "runner ≡ pure path for Muon on matrices" (gen {
            let! p = genLongProblem
            return { p with Shapes = p.Shapes |> List.map (fun s -> if s.Length >= 2 then s else [| 2L; int64 (max 1 (numel s / 2)) |])
                            Params0 = p.Params0; Grads = p.Grads } }) (fun p ->
                // Keep only tensors whose element count fits the forced shape.
                let ok = List.map2 (fun (s: int64[]) (v: float[]) -> numel s = v.Length) p.Shapes p.Params0
                let keep xs = List.zip ok xs |> List.filter fst |> List.map snd
                if List.exists id ok then
                    let q = { Names = keep p.Names; Shapes = keep p.Shapes; Params0 = keep p.Params0; Grads = p.Grads |> List.map keep }
                    samePath 1e-12 1e-10 "muon" (fun () -> Optim.Muon()) q)

        testSequenced <| testList "steady state" [
            // Scratch buffers held at once: one for the preconditioners' D or a shift's copy of g; QHAdam with
            // ν₁ ≠ 1 holds D and the shift's copy, MoMo-Adam D and D⁻¹d, AdEMAMix D and Mix's copy of the update,
            // C-AdamW D and the cautious mask's copy of g.
            for name, tx, buffers in
                    [ for n, b in [ "adam", 1; "adamw amsgrad", 1; "nadam", 1; "mars adamw", 1; "arsg", 1; "mars lion", 1
                                    "sgd momentum + wd", 1; "qhadam", 2; "momo-adam", 2; "rmsprop centered momentum", 1
                                    "ademamix warm-up", 2; "c-adamw", 2 ] ->
                        n, (optimizers |> List.find (fun (m, _) -> m = n) |> snd), b ] ->
                test (sprintf "%s: no tensor growth after warm-up, at most %d parameter-sized scratch buffer(s)" name buffers) {
                    use _ = torch.NewDisposeScope()
                    let parameters = TensorTree.Of(struct ("a.weight", torch.randn([| 300L; 20L |])), struct ("a.bias", torch.randn([| 20L |])), struct ("b.weight", torch.randn([| 20L; 7L |])))
                    let grads = parameters.Map(fun t -> torch.randn_like t)
                    use runner = new Runner(tx (), parameters)
                    for k in 0 .. 2 do runner.Step(grads, contextAt k)
                    let stats = DisposeScopeManager.Statistics
                    let live = stats.ThreadTotalLiveCount
                    let created () = stats.CreatedInScopeCount + stats.CreatedOutsideScopeCount
                    let created0 = created ()
                    let scratch = runner.Workspace.ScratchAllocations
                    for k in 3 .. 40 do runner.Step(grads, contextAt k)
                    Expect.equal stats.ThreadTotalLiveCount live "live tensors flat over 38 steps"
                    // Polyak types make 0-d reductions and MARS a 0-d norm per matrix for its clip; the rest create nothing.
                    if not (name.StartsWith "momo" || name.StartsWith "mars") then
                        Expect.equal (created ()) created0 "no tensor created at all over 38 steps"
                    Expect.equal runner.Workspace.ScratchAllocations scratch "no scratch allocated after warm-up"
                    Expect.equal runner.Workspace.Outstanding 0 "every scratch buffer returned"
                    let paramBytes = parameters.Tensors |> Seq.sumBy (fun t -> t.numel() * int64 t.ElementSize)
                    Expect.isLessThanOrEqual runner.Workspace.ScratchBytes (int64 buffers * paramBytes) "scratch bytes within the stated number of parameter-sized buffers"
                }
        ]

        test "a module trained through the runner follows the pure path, also after zero_grad drops the gradients" {
            use _ = torch.NewDisposeScope()
            torch.manual_seed 3L |> ignore
            let make () =
                let m = torch.nn.Sequential(torch.nn.Linear(4L, 8L), torch.nn.Tanh(), torch.nn.Linear(8L, 1L))
                m.``double``() |> ignore
                m
            let fastModel, pureModel = make (), make ()
            pureModel.load_state_dict(fastModel.state_dict()) |> ignore
            let x = torch.randn([| 32L; 4L |], dtype = torch.float64)
            let y = torch.randn([| 32L; 1L |], dtype = torch.float64)
            let tx = Optim.Adam(0.01)
            use runner = new Runner(tx, fastModel)
            let mutable pureState = tx.Init(TensorTree.FromParameters pureModel)
            for step in 1 .. 25 do
                // The fast model: backward into the runner's gradient buffer; every fifth step zero_grad drops it.
                if step % 5 = 0 then fastModel.zero_grad() else runner.ZeroGrad()
                use l1 = torch.nn.functional.mse_loss(fastModel.forward x, y)
                l1.backward()
                runner.Step()
                pureModel.zero_grad()
                use l2 = torch.nn.functional.mse_loss(pureModel.forward x, y)
                l2.backward()
                let parameters = TensorTree.FromParameters pureModel
                let struct (u, s) = tx.Update(TensorTree.GradientsOf pureModel, pureState, parameters, StepContext.Empty)
                Updates.ApplyInPlace(parameters, u)
                pureState <- s
            for (KeyValue (name, p)) in TensorTree.FromParameters fastModel do
                let q = (TensorTree.FromParameters pureModel).[name]
                let a, b = values p, values q
                for i in 0 .. a.Length - 1 do
                    if not (Expect.within 1e-12 1e-10 a.[i] b.[i]) then failtestf "%s[%d]: runner %.17g, pure %.17g" name i a.[i] b.[i]
        }

        test "the first backward needs no zero_grad: the gradient buffer starts at zero, so .grad is the true gradient (12 runners, freed memory filled with garbage first)" {
            // An uninitialised buffer is often zero by luck (fresh pages), so before each runner is built,
            // blocks of the size its flat buffers take are filled with a non-zero pattern and freed: an
            // allocator that hands one back unzeroed then shows up as a wrong gradient.
            let read (t: torch.Tensor) = values (t.to_type torch.float64)
            for round in 1 .. 12 do
                use _ = torch.NewDisposeScope()
                torch.manual_seed (int64 round) |> ignore
                let dtype = if round % 2 = 0 then torch.float64 else torch.float32
                let hidden = int64 (2 + 3 * round)
                let make () =
                    let m = torch.nn.Sequential(torch.nn.Linear(5L, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 3L))
                    if dtype = torch.float64 then m.``double``() |> ignore
                    m
                let model, twin = make (), make ()
                twin.load_state_dict(model.state_dict()) |> ignore
                let x = torch.randn([| 16L; 5L |], dtype = dtype)
                let y = torch.randn([| 16L; 3L |], dtype = dtype)
                let total = model.parameters() |> Seq.sumBy (fun p -> p.numel())
                let garbage = [ for k in 1 .. 32 -> torch.full([| total |], (1e3 + float k).ToScalar(), dtype = dtype) ]
                for g in garbage do g.Dispose()
                use runner = new Runner(Optim.Sgd(0.1), model)
                for KeyValue (name, g) in runner.Gradients do
                    if read g |> Array.exists (fun v -> v <> 0.0) then failtestf "round %d: gradient buffer of '%s' does not start at zero" round name
                // No ZeroGrad: backward accumulates straight into the runner's buffer.
                use l1 = torch.nn.functional.mse_loss(model.forward x, y)
                l1.backward()
                use l2 = torch.nn.functional.mse_loss(twin.forward x, y)
                l2.backward()
                let trueGrads = TensorTree.GradientsOf twin
                let twinParams = TensorTree.FromParameters twin
                let check what (actual: string -> float[]) (expected: string -> float[]) =
                    for name in trueGrads.Names do
                        let a, b = actual name, expected name
                        Expect.equal a.Length b.Length (sprintf "round %d, %s '%s': length" round what name)
                        for i in 0 .. a.Length - 1 do
                            if not (Expect.within 1e-6 1e-6 a.[i] b.[i]) then
                                failtestf "round %d, %s '%s'[%d]: %.9g, expected %.9g" round what name i a.[i] b.[i]
                let modelParams = TensorTree.FromParameters model
                check "gradient" (fun n -> read modelParams.[n].grad) (fun n -> read trueGrads.[n])
                // And the step uses them: θ ← θ − 0.1·g.
                runner.Step()
                check "parameter after one step" (fun n -> read modelParams.[n])
                    (fun n -> Array.map2 (fun p g -> p - 0.1 * g) (read twinParams.[n]) (read trueGrads.[n]))
        }

        test "elementwise steps are one kernel per flat buffer: 1000 tensors form one group" {
            use _ = torch.NewDisposeScope()
            let parameters = TensorTree.Of([ for i in 0 .. 999 -> struct (sprintf "p%03d" i, torch.randn([| 10L |])) ])
            use runner = new Runner(Optim.Adam(), parameters)
            let groups = runner.Workspace.Groups([| runner.Parameters; runner.Gradients |])
            Expect.equal groups.Count 1 "one contiguous group"
            Expect.equal (groups.[0].[0].numel()) 10000L "covering all 1000 tensors"
        }

        (if cudaAvailable then test else ptest) "on CUDA the runner keeps every tensor on the parameters' device (skipped: no CUDA here)" {
            use _ = torch.NewDisposeScope()
            let parameters = TensorTree.Of(struct ("w", torch.randn([| 64L; 32L |], device = torch.CUDA)), struct ("b", torch.randn([| 32L |], device = torch.CUDA)))
            use runner = new Runner(Optim.MuonWithAuxAdam(), parameters)
            runner.Step(parameters.Map(fun t -> torch.randn_like t))
            for leaf in runner.State.Leaves() do
                if not (isNull leaf.Tensor) then Expect.equal (leaf.Tensor.device_type) DeviceType.CUDA (sprintf "state %s on CUDA" leaf.Path)
        }
    ]
