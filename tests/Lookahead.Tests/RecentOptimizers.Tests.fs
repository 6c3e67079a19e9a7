/// The optimizers added from Optax, HeavyBall and pytorch-optimizer's set (Schedule-Free, AdEMAMix, ADOPT, cautious
/// masking, Prodigy): their stated equivalences as properties over whole float64 trajectories, independent loops of
/// the official algorithms on generated problems, the evaluation-point API, and linear cases decided exactly.
module Lookahead.Tests.RecentOptimizers

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators
open Lookahead.Tests.SeedEquivalences

let private config = { FsCheckConfig.defaultConfig with maxTest = 100 }
let private property name (g: Gen<'a>) (f: 'a -> unit) = testPropertyWithConfig config name (Prop.forAll (Arb.fromGen g) f)

let private genRate = Gen.choose (1, 1000) |> Gen.map (fun i -> float i / 10000.0)
let private genDecay = Gen.choose (0, 99) |> Gen.map (fun i -> float i / 100.0)
let private zip4 a b c d = gen { let! x = a in let! y = b in let! z = c in let! w = d in return x, y, z, w }

/// Every zero gradient entry replaced by 1e-3 (a mask that keeps everything then keeps every entry).
let private nonzero (p: Problem) = { p with Grads = p.Grads |> List.map (List.map (Array.map (fun x -> if x = 0.0 then 1e-3 else x))) }

/// The official ADOPT loop (iShohei220/adopt, single-tensor path) on flat arrays: the reference for the composition.
let private adoptLoop (lr: float) (b1: float) (b2: float) (eps: float) (wd: float) (decouple: bool) (clip: bool) (p: Problem) =
    let theta = p.Params0 |> List.map Array.copy
    let m = theta |> List.map (fun a -> Array.zeroCreate a.Length)
    let v = theta |> List.map (fun a -> Array.zeroCreate a.Length)
    [ for k, grads in List.indexed p.Grads do
        for i, g0 in List.indexed grads do
            let th, mi, vi = theta.[i], m.[i], v.[i]
            let g = Array.init g0.Length (fun j -> if decouple then g0.[j] else g0.[j] + wd * th.[j])
            if k = 0 then
                for j in 0 .. g.Length - 1 do vi.[j] <- g.[j] * g.[j]
            else
                let level = float k ** 0.25
                for j in 0 .. g.Length - 1 do
                    if decouple then th.[j] <- th.[j] - lr * wd * th.[j]
                    let n = g.[j] / max (sqrt vi.[j]) eps
                    let n = if clip then max -level (min level n) else n
                    mi.[j] <- mi.[j] + (1.0 - b1) * (n - mi.[j])
                    th.[j] <- th.[j] - lr * mi.[j]
                    vi.[j] <- b2 * vi.[j] + (1.0 - b2) * g.[j] * g.[j]
        yield theta |> List.map Array.copy ]

/// Schedule-Free SGD in the paper's three-sequence form (r = 0, no warm-up: c = 1/(t + 1)), y and x per step.
let private scheduleFreeLoop (lr: float) (beta: float) (p: Problem) =
    let z = p.Params0 |> List.map Array.copy
    let x = p.Params0 |> List.map Array.copy
    [ for k, grads in List.indexed p.Grads do
        let c = 1.0 / float (k + 1)
        for i, g in List.indexed grads do
            for j in 0 .. g.Length - 1 do
                z.[i].[j] <- z.[i].[j] - lr * g.[j]
                x.[i].[j] <- (1.0 - c) * x.[i].[j] + c * z.[i].[j]
        let y = List.map2 (fun (zi: float[]) (xi: float[]) -> Array.map2 (fun a b -> (1.0 - beta) * a + beta * b) zi xi) z x
        yield y, x |> List.map Array.copy ]

/// Fails unless every entry of `actual` is within tol·(1 + |expected|) of `expected` (also used by the Adafactor tests).
let closeTo what (tol: float) (expected: float[] list) (actual: float[] list) =
    List.iteri2 (fun i (e: float[]) (a: float[]) ->
        Array.iteri2 (fun j ej aj ->
            if abs (aj - ej) > tol * (1.0 + abs ej) then failtestf "%s: tensor %d entry %d: %.17g against %.17g" what i j aj ej) e a) expected actual

[<Tests>]
let tests =
    testList "recent optimizers (Schedule-Free, AdEMAMix, ADOPT, cautious, Prodigy)" [
        property "AdEMAMix with α = 0 ≡ AdamW (λ decoupled, scaled by lr)" (zip4 genLongProblem genRate genDecay (Gen.elements [ 0.0; 0.01; 0.1 ])) (fun (p, lr, b1, wd) ->
            onStream oracleTolerance p (form (Optim.AdEMAMix(lr, b1, 0.999, 0.9999, alpha = 0.0, weightDecay = wd))) (form (Optim.AdamW(lr, b1, 0.999, 1e-8, wd))))

        property "AdEMAMix with a warmed-up α differs from AdamW from the first step (the slow EMA is mixed in)" (Gen.zip genLongProblem genRate) (fun (p, lr) ->
            let r = Equivalence.Compare(form (Optim.AdEMAMix(lr, alpha = 5.0, alphaWarmup = Nullable 10)), form (Optim.AdamW(lr, weightDecay = 0.0)), stream p [], p.Grads.Length, oracleTolerance)
            // A gradient stream of all-zero steps can hide the difference; the generator's scales make that rare.
            if p.Grads |> List.exists (List.exists (Array.exists (fun x -> x <> 0.0))) then Expect.isFalse r.Equivalent (string r))

        testCase "AdEMAMix's β₃ warm-up starts at β₁ and reaches β₃ exactly at T; α rises linearly" <| fun () ->
            Expect.floatClose Accuracy.high (AdEMAMixSchedule.Beta3(0L, 0.9, 0.9999, Nullable 100)) 0.9 "β₃ starts at β₁ (up to the official 1e-8)"
            Expect.equal (AdEMAMixSchedule.Beta3(100L, 0.9, 0.9999, Nullable 100)) 0.9999 "exactly β₃ from T on"
            Expect.equal (AdEMAMixSchedule.Beta3(5L, 0.9, 0.9999, Nullable())) 0.9999 "no warm-up"
            let mid = AdEMAMixSchedule.Beta3(50L, 0.9, 0.9999, Nullable 100)
            let halfLife b = log 0.5 / log b
            // The official 1e-8 inside the logarithm moves β₃'s half-life by about 1e-8/(1 − β₃) = 1e-4 relative.
            Expect.floatClose { absolute = 0.0; relative = 1e-3 } (halfLife mid) ((halfLife 0.9 + halfLife 0.9999) / 2.0) "half-way in half-life"
            Expect.equal (AdEMAMixSchedule.Alpha(3L, 8.0, Nullable 12)) 2.0 "α·t/T"
            Expect.equal (AdEMAMixSchedule.Alpha(12L, 8.0, Nullable 12)) 8.0 "α from T on"

        property "ADOPT ≡ the official loop (coupled or decoupled decay, clip on or off)" (zip4 genLongProblem genRate genDecay (Gen.zip3 (Gen.elements [ 0.0; 0.01 ]) (Gen.elements [ true; false ]) (Gen.elements [ true; false ]))) (fun (p, lr, b1, (wd, decouple, clip)) ->
            let expected = adoptLoop lr b1 0.999 1e-6 wd decouple clip p
            let tx = Optim.Adopt(lr, b1, 0.999, 1e-6, wd, decouple, (if clip then Nullable 0.25 else Nullable()))
            let actual = Lookahead.Tests.Expect.run tx p
            List.iteri2 (fun k e (a: float[][]) -> closeTo (sprintf "step %d" (k + 1)) 1e-10 e (List.ofArray a)) expected actual.Params)

        property "cautious masking with a mask that keeps everything ≡ the inner optimizer" (Gen.zip3 genLongProblem genRate (Gen.elements [ true; false ])) (fun (p, lr, floor) ->
            // RMS normalisation keeps the gradient's sign, so u·g > 0 wherever g ≠ 0 (and u = 0 where g = 0).
            let inner = Transforms.Precondition(PreconditionOptions(Decay = 0.99))
            let p = if floor then nonzero p else p
            let scaling = if floor then CautiousScaling.MeanWithFloor else CautiousScaling.None
            onStream oracleTolerance p (form (Transforms.Chain(Transforms.Cautious(inner, scaling), Transforms.Scale -lr))) (form (Transforms.Chain(inner, Transforms.Scale -lr))))

        property "Schedule-Free SGD ≡ the paper's three-sequence form (y at every step, and x by EvaluationParameters)" (Gen.zip3 genLongProblem genRate (Gen.elements [ 0.5; 0.9; 1.0 ])) (fun (p, lr, beta) ->
            use _ = torch.NewDisposeScope()
            let tx = Optim.ScheduleFreeSgd(lr, beta)
            let mutable theta = tree p p.Params0
            let mutable state = tx.Init theta
            for k, (y, x) in List.indexed (scheduleFreeLoop lr beta p) do
                let struct (u, next) = tx.Update(tree p p.Grads.[k], state, theta, StepContext.Empty)
                theta <- Updates.Apply(theta, u)
                state <- next
                closeTo (sprintf "y, step %d" (k + 1)) 1e-10 y [ for t in theta.Tensors -> t.data<float>().ToArray() ]
                let xs = ScheduleFree.EvaluationParameters(tx, state, theta)
                closeTo (sprintf "x, step %d" (k + 1)) 1e-10 x [ for t in xs.Tensors -> t.data<float>().ToArray() ])

        property "Schedule-Free with the averaging off (c = 1) ≡ SGD" (Gen.zip3 genLongProblem genRate (Gen.elements [ 0.3; 0.9; 1.0 ])) (fun (p, lr, beta) ->
            onStream oracleTolerance p (form (Transforms.ScheduleFreeAverage(lr, beta, constantWeight = Nullable 1.0))) (form (Optim.Sgd lr)))

        property "Schedule-Free with β = 1 and a constant weight c (primal averaging) ≡ heavy ball(c·lr, 1 − c), on streams and quadratics" (zip4 genLongProblem genRate (Gen.choose (1, 99) |> Gen.map (fun i -> float i / 100.0)) genSeed) (fun (p, lr, c, seed) ->
            let sf = form (Transforms.ScheduleFreeAverage(lr, 1.0, constantWeight = Nullable c))
            let hb = form (Optim.HeavyBall(c * lr, 1.0 - c))
            onStream oracleTolerance p sf hb
            onQuadratic oracleTolerance p seed sf hb)

        testCase "Schedule-Free's linear cases are decided exactly: constant-weight primal averaging ≡ heavy ball; the official weights ≢ it" <| fun () ->
            let sf c = form (Transforms.ScheduleFreeAverage(0.1, 1.0, constantWeight = Nullable c))
            let decided = Analysis.Equal(sf 0.2, form (Optim.HeavyBall(0.02, 0.8)))
            Expect.isTrue (decided.Decided && decided.Equal) (string decided)
            let near = Analysis.Equal(sf 0.2, form (Optim.HeavyBall(0.02, 0.8 + 1e-6)))
            Expect.isTrue (near.Decided && not near.Equal) (string near)
            let official = Analysis.Realise(form (Optim.ScheduleFreeSgd(0.1, 0.9)))
            Expect.isTrue (official.Linear && not official.Settled) (sprintf "c = 1/(t + 1): linear, time-varying (%O)" official)
            let found = Analysis.SolveScalar((fun m -> form (Optim.HeavyBall(0.02, m))), sf 0.2, 0.0, 0.99)
            Expect.equal found.Count 1 (sprintf "one momentum: %A" found)
            Expect.floatClose Accuracy.high found.[0] 0.8 "1 − c"

        testCase "the runner switches to the evaluation point and back; a step in evaluation mode is refused and changes nothing" <| fun () ->
            use _ = torch.NewDisposeScope()
            let w = torch.tensor([| 1.0; -2.0; 0.5 |], dtype = torch.float64)
            use runner = new Runner(Optim.ScheduleFreeSgd(0.1, 0.9), TensorTree.Of(struct ("w", w)))
            for k in 1 .. 5 do runner.Step(TensorTree.Of(struct ("w", torch.tensor([| 0.3 * float k; -0.1; 0.2 |], dtype = torch.float64))))
            let y = w.clone()
            let x = ScheduleFree.EvaluationParameters(runner.Transform, runner.State, runner.Parameters).Tensors.[0].clone()
            Expect.isFalse (x.allclose(y)) "x and y differ after five steps"
            runner.UseEvaluationParameters()
            Expect.isTrue runner.InEvaluation "in evaluation"
            Expect.isTrue (w.allclose(x, rtol = 1e-15, atol = 1e-15)) "the parameters hold x"
            let held = w.clone()
            let stateBefore = runner.State.Leaves() |> Seq.choose (fun l -> if isNull l.Tensor then None else Some (l.Path, l.Tensor.clone())) |> List.ofSeq
            let e = Expect.throwsC (fun () -> runner.Step(TensorTree.Of(struct ("w", torch.ones(3, dtype = torch.float64))))) id
            Expect.stringContains e.Message "UseTrainingParameters" "says what to do"
            Expect.isTrue (w.allclose(held, 0.0, 0.0)) "parameters unchanged by the refused step"
            for path, t in stateBefore do
                let now = runner.State.Leaves() |> Seq.find (fun l -> l.Path = path)
                Expect.isTrue (now.Tensor.allclose(t, 0.0, 0.0)) (sprintf "state %s unchanged" path)
            Expect.equal runner.StepCount 5L "no step counted"
            runner.UseTrainingParameters()
            Expect.isFalse runner.InEvaluation "training again"
            Expect.isTrue (w.allclose(y, rtol = 1e-14, atol = 1e-15)) "y back (the round trip is exact up to rounding)"
            runner.Step(TensorTree.Of(struct ("w", torch.ones(3, dtype = torch.float64))))
            use adam = new Runner(Optim.Adam(0.1), TensorTree.Of(struct ("v", torch.zeros(2, dtype = torch.float64))))
            let e2 = Expect.throwsC (fun () -> adam.UseEvaluationParameters()) id
            Expect.stringContains e2.Message "no separate evaluation point" "an optimizer without one"

        property "MultiSteps(k) on k copies of each gradient ≡ one step per gradient (and moves nothing in between)" (Gen.zip3 genProblem (Gen.choose (2, 4)) genRate) (fun (p, k, lr) ->
            let inner () = Optim.Adam(lr)
            let repeated = { p with Grads = p.Grads |> List.collect (fun g -> List.replicate k g) }
            let multi = Lookahead.Tests.Expect.run (Transforms.MultiSteps(inner (), k)) repeated
            let once = Lookahead.Tests.Expect.run (inner ()) p
            for s in 0 .. p.Grads.Length - 1 do
                let after = multi.Params.[s * k + k - 1]
                closeTo (sprintf "after gradient %d" (s + 1)) 1e-12 (List.ofArray once.Params.[s]) (List.ofArray after)
                for j in 0 .. k - 2 do
                    let before = if s = 0 then p.Params0 else List.ofArray once.Params.[s - 1]
                    closeTo (sprintf "micro-step %d of gradient %d" (j + 1) (s + 1)) 0.0 before (List.ofArray multi.Params.[s * k + j]))

        testCase "MultiSteps(1) is the inner optimizer itself" <| fun () ->
            let adam = Optim.Adam()
            Expect.isTrue (obj.ReferenceEquals(Transforms.MultiSteps(adam, 1), adam)) "no accumulation buffer"

        property "LAMB with its trust ratio held at 1 ≡ AdamW; unbounded it differs" (Gen.zip3 genLongProblem genRate (Gen.elements [ 0.0; 0.01 ])) (fun (p, lr, wd) ->
            let held = Transforms.Chain(Transforms.Precondition(PreconditionOptions(Epsilon = 1e-6), Transforms.Ema(0.9, debias = true)),
                                        Transforms.AddDecayedWeights wd, Transforms.ScaleByTrustRatio(minRatio = 1.0, maxRatio = 1.0), Transforms.Scale -lr)
            onStream oracleTolerance p (form held) (form (Optim.AdamW(lr, 0.9, 0.999, 1e-6, wd))))

        testCase "the trust ratio is ‖θ‖/‖u‖ per tensor, 1 where either norm is 0" <| fun () ->
            use _ = torch.NewDisposeScope()
            let theta = TensorTree.Of(struct ("a", torch.tensor([| 3.0; 4.0 |], dtype = torch.float64)), struct ("z", torch.zeros(2, dtype = torch.float64)))
            let u = TensorTree.Of(struct ("a", torch.tensor([| 0.0; 0.5 |], dtype = torch.float64)), struct ("z", torch.tensor([| 1.0; 2.0 |], dtype = torch.float64)))
            let tx = Transforms.ScaleByTrustRatio()
            let struct (out, _) = tx.Update(u, tx.Init theta, theta, StepContext.Empty)
            Expect.sequenceEqual (out.["a"].data<float>().ToArray()) [| 0.0; 5.0 |] "‖θ‖ = 5, ‖u‖ = 0.5: ×10"
            Expect.sequenceEqual (out.["z"].data<float>().ToArray()) [| 1.0; 2.0 |] "θ = 0: ratio 1"

        property "parameter averaging leaves the updates alone, and its EMA and SWA points are the averages of the trajectory" (zip4 genProblem genRate genDecay (Gen.zip (Gen.choose (1, 5)) (Gen.choose (1, 3)))) (fun (p, lr, beta, (start, period)) ->
            use _ = torch.NewDisposeScope()
            let inner () = Optim.Sgd(lr, 0.9)
            onStream (Tolerance(0.0, 0.0)) p (form (Transforms.AverageParameters(inner (), decay = beta))) (form (inner ()))
            let plain = Lookahead.Tests.Expect.run (inner ()) p
            for averaging in [ ParameterAveraging.Exponential; ParameterAveraging.Uniform ] do
                let tx = Transforms.AverageParameters(inner (), averaging, beta, int64 start, int64 period)
                let mutable theta = tree p p.Params0
                let mutable state = tx.Init theta
                let mutable ema = p.Params0
                let taken = ResizeArray<float[] list>()
                for k, g in List.indexed p.Grads do
                    let struct (u, next) = tx.Update(tree p g, state, theta, StepContext.Empty)
                    theta <- Updates.Apply(theta, u)
                    state <- next
                    let now = List.ofArray plain.Params.[k]
                    ema <- List.map2 (Array.map2 (fun a x -> beta * a + (1.0 - beta) * x)) ema now
                    let t = k + 1
                    if t >= start && (t - start) % period = 0 then taken.Add now
                    let expected =
                        match averaging with
                        | ParameterAveraging.Exponential -> ema
                        | _ when taken.Count = 0 -> now
                        | _ -> taken.[0] |> List.mapi (fun i a -> Array.init a.Length (fun j -> (taken |> Seq.sumBy (fun x -> x.[i].[j])) / float taken.Count))
                    let point = Evaluation.Parameters(tx, state, theta)
                    closeTo (sprintf "%O, step %d" averaging t) 1e-12 expected [ for x in point.Tensors -> x.data<float>().ToArray() ])

        testCase "the runner evaluates at a parameter average and restores the training values bit for bit" <| fun () ->
            use _ = torch.NewDisposeScope()
            let w = torch.tensor([| 1.0; -2.0; 0.5 |], dtype = torch.float64)
            use runner = new Runner(Transforms.AverageParameters(Optim.Sgd(0.1, 0.9), decay = 0.5), TensorTree.Of(struct ("w", w)))
            for k in 1 .. 4 do runner.Step(TensorTree.Of(struct ("w", torch.tensor([| 0.3 * float k; -0.1; 0.2 |], dtype = torch.float64))))
            let y = w.clone()
            let ema = Evaluation.Parameters(runner.Transform, runner.State, runner.Parameters).Tensors.[0].clone()
            runner.UseEvaluationParameters()
            Expect.isTrue (w.allclose(ema, 0.0, 0.0)) "the parameters hold the average"
            runner.UseTrainingParameters()
            Expect.isTrue (w.allclose(y, 0.0, 0.0)) "the training values back, bit for bit"

        property "injected hyperparameters ≡ the optimizer built with those values; set between steps ≡ the same change as a schedule" (zip4 genLongProblem genRate genRate (Gen.choose (1, 20))) (fun (p, lr1, lr2, j) ->
            let make (h: Collections.Generic.IReadOnlyDictionary<string, float>) = Optim.AdamW(h.["lr"], weightDecay = h.["wd"])
            let injected () = Transforms.InjectHyperparameters(Func<_, _> make, struct ("lr", lr1), struct ("wd", 0.01))
            onStream (Tolerance(0.0, 0.0)) p (form (injected ())) (form (Optim.AdamW(lr1, weightDecay = 0.01)))
            use _ = torch.NewDisposeScope()
            let tx = injected ()
            let mutable theta = tree p p.Params0
            let mutable state = tx.Init theta
            let scheduled = Transforms.Scheduled(fun t -> Optim.AdamW((if t <= int64 j then lr1 else lr2), weightDecay = 0.01))
            let reference = Lookahead.Tests.Expect.run scheduled p
            for k, g in List.indexed p.Grads do
                if k = j then state <- Hyperparameters.Set(tx, state, "lr", lr2)
                let struct (u, next) = tx.Update(tree p g, state, theta, StepContext.Empty)
                theta <- Updates.Apply(theta, u)
                state <- next
                closeTo (sprintf "step %d" (k + 1)) 0.0 (List.ofArray reference.Params.[k]) [ for t in theta.Tensors -> t.data<float>().ToArray() ]
            Expect.equal (Hyperparameters.Get(tx, state, "lr")) (if j < p.Grads.Length then lr2 else lr1) "read back")

        testCase "a runner's injected hyperparameter is set without rebuilding, checkpointed, and a refused value changes nothing" <| fun () ->
            use _ = torch.NewDisposeScope()
            let make (h: Collections.Generic.IReadOnlyDictionary<string, float>) = Optim.Adam(h.["lr"], beta1 = h.["beta1"])
            let tx = Transforms.InjectHyperparameters(Func<_, _> make, struct ("lr", 0.01), struct ("beta1", 0.9))
            let w = torch.ones(3, dtype = torch.float64)
            use runner = new Runner(tx, TensorTree.Of(struct ("w", w)))
            runner.Step(TensorTree.Of(struct ("w", torch.ones(3, dtype = torch.float64))))
            runner.SetHyperparameter("lr", 0.05)
            Expect.equal (runner.GetHyperparameter "lr") 0.05 "set"
            let bad = Expect.throwsC (fun () -> runner.SetHyperparameter("beta1", 1.5)) id
            Expect.stringContains bad.Message "beta1" "names it"
            Expect.equal (runner.GetHyperparameter "beta1") 0.9 "unchanged"
            let unknown = Expect.throwsC (fun () -> runner.SetHyperparameter("momentum", 0.5)) id
            Expect.stringContains unknown.Message "there are: lr, beta1" "lists the names"
            let file = IO.Path.Combine(IO.Path.GetTempPath(), sprintf "lookahead-injected-%d.safetensors" (Random.Shared.Next()))
            try
                runner.Save file
                use other = new Runner(tx, TensorTree.Of(struct ("w", torch.ones(3, dtype = torch.float64))))
                other.Load file
                Expect.equal (other.GetHyperparameter "lr") 0.05 "the set value is in the checkpoint"
            finally IO.File.Delete file

        property "Prodigy's d starts at d₀, never decreases, and once it has left d₀ grows by at most the growth rate per step" (Gen.zip genLongProblem (Gen.elements [ Double.PositiveInfinity; 1.5 ])) (fun (p, growth) ->
            use _ = torch.NewDisposeScope()
            let tx = Optim.Prodigy(growthRate = growth)
            let mutable theta = tree p p.Params0
            let mutable state = tx.Init theta
            let d (s: IOptState) = s.Leaves() |> Seq.find (fun l -> l.Path.EndsWith "/d") |> fun l -> l.Scalar.Value
            let mutable previous = 1e-6
            for g in p.Grads do
                let struct (u, next) = tx.Update(tree p g, state, theta, StepContext.Empty)
                theta <- Updates.Apply(theta, u)
                state <- next
                let now = d state
                Expect.isGreaterThanOrEqual now previous "d never decreases"
                // While d = d₀ the official code first raises d to d̂, then caps: the cap binds from the next step on.
                if previous <> 1e-6 then Expect.isLessThanOrEqual now (previous * growth * (1.0 + 1e-12)) "at most the growth rate"
                previous <- now)
    ]
