/// bfloat16 parameters with a declared rounding policy (stochastic rounding, Kahan compensation): the rounding's
/// statistics, training that does not stall where round-to-nearest does, the runner against the pure path, and
/// checkpoints that continue the same trajectory.
module Lookahead.Tests.LowPrecision

open System
open System.IO
open Expecto
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators

let private bf16 = torch.bfloat16

/// The runner over n bfloat16 parameters at θ₀, SGD (lr) on f = ½‖θ − target‖², for `steps` steps.
let private train (tx: IGradientTransformation) (executor: RunnerExecutor) (n: int) (theta0: float) (target: float) (steps: int) =
    use _ = torch.NewDisposeScope()
    let theta = torch.full([| int64 n |], theta0.ToScalar(), dtype = bf16)
    let parameters = TensorTree.Of(struct ("w", theta))
    use runner = new Runner(tx, parameters, RunnerOptions(Executor = executor))
    for _ in 1 .. steps do
        use g = (theta.to_type(torch.float32) - target).to_type(bf16)
        runner.Step(TensorTree.Of(struct ("w", g)))
    values (theta.to_type(torch.float64))

[<Tests>]
let tests =
    testList "low-precision parameters (bfloat16, declared rounding)" [
        testCase "stochastic rounding lands on a neighbouring bfloat16 value and is unbiased" <| fun () ->
            use _ = torch.NewDisposeScope()
            let n = 40000
            for theta0, u in [ 1.0, 1e-3; -3.0, -2e-3; 1e-38, 3e-40; 0.0, 1e-3; 100.0, -0.13 ] do
                let theta = TensorTree.Of(struct ("w", torch.full([| int64 n |], theta0.ToScalar(), dtype = torch.float32).to_type(bf16).to_type(torch.float32)))
                let start = (values (theta.["w"].to_type torch.float64)).[0]
                let tx = Transforms.StochasticRounding(seed = 11L)
                let struct (out, _) = tx.Update(TensorTree.Of(struct ("w", torch.full([| int64 n |], u.ToScalar(), dtype = torch.float32))), tx.Init theta, theta, StepContext.Empty)
                let next = theta.["w"] + out.["w"]
                let vals = values (next.to_type torch.float64)
                // Every result is a bfloat16 value, one of the two around θ₀ + u.
                let exact = values ((torch.tensor([| start |], dtype = torch.float32) + torch.tensor([| u |], dtype = torch.float32)).to_type torch.float64)
                let asBf16 = values (next.to_type(bf16).to_type(torch.float64))
                Expect.sequenceEqual vals asBf16 "every result is representable in bfloat16"
                let distinct = vals |> Array.distinct |> Array.sort
                Expect.isLessThanOrEqual distinct.Length 2 (sprintf "at most two neighbours around %g: %A" (theta0 + u) distinct)
                Expect.isTrue (distinct.[0] <= exact.[0] && exact.[0] <= distinct.[distinct.Length - 1]) (sprintf "the neighbours %A bracket %g" distinct exact.[0])
                // Unbiased: the mean is θ₀ + u within 5 standard errors of the two-point distribution.
                let mean = Array.average vals
                let spacing = if distinct.Length = 2 then distinct.[1] - distinct.[0] else 0.0
                let p = if spacing = 0.0 then 0.0 else (exact.[0] - distinct.[0]) / spacing
                let se = spacing * sqrt (p * (1.0 - p) / float n)
                Expect.isLessThanOrEqual (abs (mean - exact.[0])) (5.0 * se + 1e-3 * abs u) (sprintf "mean %.9g against θ₀ + u = %.9g (se %.3g)" mean exact.[0] se)

        testCase "stochastic rounding leaves a bfloat16 sum as it is and keeps ±∞ and NaN" <| fun () ->
            use _ = torch.NewDisposeScope()
            let theta = TensorTree.Of(struct ("w", torch.tensor([| 1.0; 2.0; 1.0; 1.0 |], dtype = torch.float32)))
            let u = TensorTree.Of(struct ("w", torch.tensor([| 0.0078125; -0.5; infinity; nan |], dtype = torch.float32)))
            let tx = Transforms.StochasticRounding()
            let struct (out, _) = tx.Update(u, tx.Init theta, theta, StepContext.Empty)
            let r = values ((theta.["w"] + out.["w"]).to_type torch.float64)
            Expect.equal r.[0] 1.0078125 "exact sum kept"
            Expect.equal r.[1] 1.5 "exact sum kept"
            Expect.equal r.[2] infinity "∞ kept"
            Expect.isTrue (Double.IsNaN r.[3]) "NaN kept"

        testList "SGD on bfloat16 with updates under half a unit: nearest stalls, stochastic rounding and Kahan do not (both executors)" [
            for executor in [ RunnerExecutor.TorchSharp; RunnerExecutor.FusedCpu ] ->
                testCase (string executor) <| fun () ->
                    // θ₀ = 1, target 2, lr 1e-3: every update is ≤ 1e-3, under half a unit of bfloat16 at 1 (2^-8).
                    let lr, steps = 1e-3, 1000
                    let exact = 2.0 - (1.0 - lr) ** float steps
                    let sgd () = Optim.Sgd lr
                    let nearest = train (Transforms.LowPrecision(sgd (), ParameterRounding.Nearest)) executor 4000 1.0 2.0 steps
                    Expect.isTrue (nearest |> Array.forall (fun x -> x = 1.0)) "round-to-nearest never moves θ"
                    let stochastic = train (Transforms.LowPrecision(sgd (), ParameterRounding.Stochastic, seed = 3L)) executor 4000 1.0 2.0 steps
                    Expect.isLessThan (abs (Array.average stochastic - exact)) 0.01 (sprintf "stochastic rounding's mean %.5f against the exact %.5f" (Array.average stochastic) exact)
                    let kahan = train (Transforms.LowPrecision(sgd (), ParameterRounding.Compensated)) executor 4000 1.0 2.0 steps
                    Expect.isTrue (kahan |> Array.forall (fun x -> abs (x - exact) <= 2.0 ** -7.0)) (sprintf "Kahan within one bfloat16 unit of the exact %.5f: %A" exact (Array.distinct kahan))
        ]

        testList "runner (both executors) ≡ pure path in float32 with θ rounded after each step, AdamW with each policy" [
            for rounding in [ ParameterRounding.Stochastic; ParameterRounding.Compensated ] ->
                Expect.property (string rounding) (genProblemWith 10 10) (fun p ->
                    let tx () = Transforms.LowPrecision(Optim.AdamW(0.01, weightDecay = 0.01), rounding, seed = 5L)
                    let reference = MixedPrecision.reference bf16 (tx ()) p
                    MixedPrecision.compareMixed (sprintf "%A, TorchSharp" rounding) bf16 1.0 4e-6 4e-5 p.Names (MixedPrecision.runMixed MixedPrecision.torchSharp false bf16 (tx ()) p) reference
                    MixedPrecision.compareMixed (sprintf "%A, fused" rounding) bf16 1.0 4e-6 4e-5 p.Names (MixedPrecision.runMixed (MixedPrecision.fused 2 16) true bf16 (tx ()) p) reference)
        ]

        testCase "a checkpoint saved mid-run continues the same bits (the compensation and the noise's step are state)" <| fun () ->
            for rounding in [ ParameterRounding.Stochastic; ParameterRounding.Compensated ] do
                use _ = torch.NewDisposeScope()
                let tx () = Transforms.LowPrecision(Optim.Adam(1e-3), rounding, seed = 9L)
                let grads k = TensorTree.Of(struct ("w", torch.linspace(-1.0, 1.0, 64L, dtype = torch.float32).mul((float (k % 7) - 3.0).ToScalar()).to_type(bf16)))
                let whole =
                    let theta = torch.ones([| 64L |], dtype = bf16)
                    use r = new Runner(tx (), TensorTree.Of(struct ("w", theta)))
                    for k in 1 .. 20 do r.Step(grads k)
                    values (theta.to_type(torch.float64))
                let path = Path.Combine(Path.GetTempPath(), sprintf "lowprec-%A-%d.ckpt" rounding (Random.Shared.Next()))
                let theta = torch.ones([| 64L |], dtype = bf16)
                (use r = new Runner(tx (), TensorTree.Of(struct ("w", theta)))
                 for k in 1 .. 10 do r.Step(grads k)
                 r.Save path)
                let resumed = theta.clone()
                (use r = new Runner(tx (), TensorTree.Of(struct ("w", resumed)))
                 r.Load path
                 for k in 11 .. 20 do r.Step(grads k))
                File.Delete path
                Expect.sequenceEqual (values (resumed.to_type(torch.float64))) whole (sprintf "%A: resumed ≡ uninterrupted" rounding)

        testCase "bad policies name the format" <| fun () ->
            let refuses (f: unit -> IGradientTransformation) (words: string list) =
                let e = Expect.throwsC (f >> ignore) id
                for w in words do Expect.stringContains e.Message w "names it"
            refuses (fun () -> Transforms.KahanCompensation(torch.float32)) [ "format"; "BFloat16" ]
            refuses (fun () -> Transforms.LowPrecision(Optim.Sgd 0.1, ParameterRounding.Stochastic, torch.float16)) [ "format"; "Float16" ]
            refuses (fun () -> Transforms.LowPrecision(Optim.Sgd 0.1, enum<ParameterRounding> 9)) [ "rounding" ]
            use _ = torch.NewDisposeScope()
            let half = TensorTree.Of(struct ("h", torch.ones([| 3L |], dtype = torch.float16)))
            let tx = Transforms.StochasticRounding()
            let e = Expect.throwsC (fun () -> tx.Update(half.Map(fun t -> t.to_type torch.float32), tx.Init half, half, StepContext.Empty) |> ignore) id
            Expect.stringContains e.Message "'h'" "names the float16 parameter"
    ]
