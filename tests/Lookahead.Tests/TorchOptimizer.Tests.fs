/// The TorchSharp optimizer adapter: groups, TorchSharp's LR schedulers, closures, against the pure path.
module Lookahead.Tests.TorchOptimizer

open System
open Expecto
open TorchSharp
open Lookahead

let private model () =
    torch.manual_seed 11L |> ignore
    let m = torch.nn.Sequential(torch.nn.Linear(4L, 8L), torch.nn.Tanh(), torch.nn.Linear(8L, 1L))
    m.``double``() |> ignore
    m

let private data () =
    torch.manual_seed 12L |> ignore
    torch.randn([| 32L; 4L |], dtype = torch.float64), torch.randn([| 32L; 1L |], dtype = torch.float64)

/// Trains `reference` with the pure path of `tx` for `steps` steps (context from the loss when `withLoss`).
let private pureRun (tx: IGradientTransformation) (m: torch.nn.Module<torch.Tensor, torch.Tensor>) (x: torch.Tensor) (y: torch.Tensor) steps withLoss =
    let mutable state = tx.Init(TensorTree.FromParameters m)
    for _ in 1 .. steps do
        use _ = torch.NewDisposeScope()
        m.zero_grad()
        let l = torch.nn.functional.mse_loss(m.forward x, y)
        l.backward()
        let ctx = if withLoss then StepContext.Empty.WithLoss(l.item<float>()) else StepContext.Empty
        let parameters = TensorTree.FromParameters m
        let struct (u, s) = tx.Update(TensorTree.GradientsOf m, state, parameters, ctx)
        Updates.ApplyInPlace(parameters, u)
        OptState.Dispose state
        state <- OptState.Detach s

let private sameParameters (a: torch.nn.Module) (b: torch.nn.Module) =
    let pa, pb = TensorTree.FromParameters a, TensorTree.FromParameters b
    for n in pa.Names do
        let x, y = Generators.values pa.[n], Generators.values pb.[n]
        for i in 0 .. x.Length - 1 do
            if not (Expect.within 1e-12 1e-10 x.[i] y.[i]) then failtestf "%s[%d]: adapter %.17g, pure %.17g" n i x.[i] y.[i]

[<Tests>]
let tests =
    testSequenced <| testList "TorchSharp optimizer adapter" [
        test "Muon for hidden matrices, AdamW for the rest, under TorchSharp's StepLR ≡ the pure path with Schedule.Step" {
            use _ = torch.NewDisposeScope()
            let x, y = data ()
            let m1, m2 = model (), model ()
            use opt =
                new LookaheadOptimizer(m1,
                    OptimizerGroup("hidden", (fun p -> p.Rank >= 2), (fun lr -> Optim.Muon(lr)), 0.02),
                    OptimizerGroup("rest", (fun _ -> true), (fun lr -> Optim.AdamW(lr, 0.9, 0.95)), 3e-3))
            let sched = torch.optim.lr_scheduler.StepLR(opt, 5, 0.5)
            for _ in 1 .. 20 do
                use _ = torch.NewDisposeScope()
                opt.zero_grad()
                let l = torch.nn.functional.mse_loss(m1.forward x, y)
                l.backward()
                opt.step() |> ignore
                sched.step()
            Expect.floatClose Accuracy.veryHigh opt.Groups.[0].LearningRate (0.02 * 0.5 ** 4.0) "the scheduler set the hidden group's rate"
            Expect.floatClose Accuracy.veryHigh opt.Groups.[1].LearningRate (3e-3 * 0.5 ** 4.0) "and the other group's"
            let s1, s2 = Schedule.Step(0.02, 5L, 0.5), Schedule.Step(3e-3, 5L, 0.5)
            let reference =
                Transforms.Partition((fun (p: ParameterInfo) -> if p.Rank >= 2 then "hidden" else "rest"),
                    struct ("hidden", Transforms.Scheduled(fun t -> Optim.Muon(s1.At t))),
                    struct ("rest", Transforms.Scheduled(fun t -> Optim.AdamW(s2.At t, 0.9, 0.95))))
            pureRun reference m2 x y 20 false
            sameParameters m1 m2
        }
        test "step(closure) returns the closure's loss and passes it to a Polyak optimizer (MoMo) ≡ pure path with the loss" {
            use _ = torch.NewDisposeScope()
            let x, y = data ()
            let m1, m2 = model (), model ()
            use opt = new LookaheadOptimizer(m1, (fun lr -> Optim.Momo(lr)), 1.0)
            for _ in 1 .. 15 do
                use _ = torch.NewDisposeScope()
                let mutable computed = nan
                let loss =
                    opt.step(fun () ->
                        opt.zero_grad()
                        let l = torch.nn.functional.mse_loss(m1.forward x, y)
                        l.backward()
                        computed <- l.item<float>()
                        l)
                Expect.equal (loss.item<float>()) computed "step returns the closure's loss"
            pureRun (Optim.Momo(1.0)) m2 x y 15 true
            sameParameters m1 m2
        }
        test "save, load into a fresh model and optimizer, continue ≡ never stopping (learning rates included)" {
            use _ = torch.NewDisposeScope()
            let x, y = data ()
            let groups () =
                [| OptimizerGroup("hidden", (fun p -> p.Rank >= 2), (fun lr -> Optim.MarsM(lr, isMatrixParameter = (fun _ -> true))), 0.02)
                   OptimizerGroup("rest", (fun _ -> true), (fun lr -> Optim.AdamW(lr, 0.9, 0.95)), 3e-3) |]
            let stepOnce (m: torch.nn.Module<torch.Tensor, torch.Tensor>) (opt: LookaheadOptimizer) =
                use _ = torch.NewDisposeScope()
                opt.zero_grad()
                (torch.nn.functional.mse_loss(m.forward x, y)).backward()
                opt.step() |> ignore
            let m1 = model ()
            use o1 = new LookaheadOptimizer(m1, groups ())
            for k in 1 .. 10 do
                if k = 6 then o1.Groups.[0].LearningRate <- 0.005   // a schedule changed the rate mid-run
                stepOnce m1 o1
            let file = IO.Path.Combine(IO.Path.GetTempPath(), sprintf "lookahead-adapter-%d.safetensors" (Random.Shared.Next()))
            try
                o1.Save file
                for _ in 11 .. 20 do stepOnce m1 o1
                // A new process would do this: a fresh model and optimizer, parameters and state from the file.
                let m2 = model ()
                let saved = Checkpoint.LoadParameters file
                do
                    use _ = torch.no_grad()
                    for KeyValue (name, p) in TensorTree.FromParameters m2 do p.copy_(saved.[name]) |> ignore
                use o2 = new LookaheadOptimizer(m2, groups ())
                o2.Load file
                Expect.equal o2.Groups.[0].LearningRate 0.005 "the changed rate is restored"
                for _ in 11 .. 20 do stepOnce m2 o2
                let pa, pb = TensorTree.FromParameters m1, TensorTree.FromParameters m2
                for n in pa.Names do
                    Expect.isTrue (Array.forall2 Expect.bitEqual (Generators.values pa.[n]) (Generators.values pb.[n])) (sprintf "%s bit-identical" n)
            finally IO.File.Delete file
        }
        test "a parameter no group selects is an error naming it" {
            use _ = torch.NewDisposeScope()
            let e = Expect.throwsC (fun () -> new LookaheadOptimizer(model (), OptimizerGroup("matrices", (fun p -> p.Rank = 2), (fun lr -> Optim.Sgd lr), 0.1)) |> ignore) id
            Expect.stringContains e.Message "'0.bias'" "names the parameter"
        }
        test "a Polyak optimizer without a closure names the missing loss" {
            use _ = torch.NewDisposeScope()
            let x, y = data ()
            let m = model ()
            use opt = new LookaheadOptimizer(m, (fun lr -> Optim.Momo(lr)), 1.0)
            opt.zero_grad()
            (torch.nn.functional.mse_loss(m.forward x, y)).backward()
            let e = Expect.throwsC (fun () -> opt.step() |> ignore) id
            Expect.stringContains e.Message "momo" "names the optimizer"
            Expect.stringContains e.Message "loss" "names the key"
        }
    ]
