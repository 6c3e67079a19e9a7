/// The equivalences the seed papers and the reference findings claim, each an FsCheck property over random
/// parameter trees, random gradient streams (random losses for Polyak types) and random hyperparameters,
/// comparing whole trajectories (30–50 steps) in float64 with the library's own checker
/// (Lookahead.Equivalence). Where an equivalence is about a gradient function, it also runs on a random convex
/// quadratic with the gradient evaluated where each form says. 200 cases each.
module Lookahead.Tests.SeedEquivalences

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators

let private config200 = { FsCheckConfig.defaultConfig with maxTest = 200 }

/// A property checked on 200 generated cases.
let property200 name (g: Gen<'a>) (f: 'a -> unit) =
    testPropertyWithConfig config200 name (Prop.forAll (Arb.fromGen g) f)

/// The oracle tolerance, |a − b| ≤ 1e-10 + 1e-8·|b|, unless a property states another.
let oracleTolerance = Tolerance(1e-10, 1e-8)

let form tx = OptimizerForm(tx)
let formAt lookahead tx = OptimizerForm(tx, lookahead)

let stream (p: Problem) (losses: float list) =
    GradientStream(tree p p.Params0, [| for g in p.Grads -> tree p g |], (if losses.IsEmpty then null else Array.ofList losses))

/// Fails with the checker's report unless the two forms agree at every step.
let agree (tol: Tolerance) (oracle: IGradientOracle) steps (a: OptimizerForm) (b: OptimizerForm) =
    let r = Equivalence.Compare(a, b, oracle, steps, tol)
    if not r.Equivalent then failtestf "%O vs %O: %O" a b r

let onStream tol (p: Problem) a b =
    use _ = torch.NewDisposeScope()
    agree tol (stream p []) p.Grads.Length a b

let onStreamWithLosses tol (p: Problem) losses a b =
    use _ = torch.NewDisposeScope()
    agree tol (stream p losses) p.Grads.Length a b

/// A random convex quadratic over the problem's shapes (condition number 100, eigenvalues in [0.01, 1]).
let onQuadratic tol (p: Problem) (seed: int) a b =
    use _ = torch.NewDisposeScope()
    use generator = new torch.Generator(uint64 seed)
    use problem = QuadraticProblem.Random(tree p p.Params0, generator)
    agree tol problem p.Grads.Length a b

let genSeed = Gen.choose (0, Int32.MaxValue)
let genLosses (p: Problem) = Gen.listOfLength p.Grads.Length (Gen.choose (0, 10_000) |> Gen.map (fun i -> float i / 1000.0))
let withLosses (g: Gen<Problem>) = gen { let! p = g in let! l = genLosses p in return p, l }

/// Gradients rescaled so that every tensor's Frobenius norm is below 1 (MARS's clip stays inactive).
let unclipped (p: Problem) =
    let shrink (g: float[]) =
        let n = sqrt (Array.sumBy (fun x -> x * x) g)
        if n < 0.99 then g else Array.map (fun x -> 0.9 * x / n) g
    { p with Grads = p.Grads |> List.map (List.map shrink) }

/// 1–3 matrices (rank 2, each side 1–8), 30–50 steps.
let genMatrixProblem : Gen<Problem> =
    gen {
        let! k = Gen.choose (1, 3)
        let! shapes = Gen.listOfLength k (Gen.arrayOfLength 2 (Gen.choose (1, 8) |> Gen.map int64))
        let! p = genLongProblem
        let! steps = Gen.choose (30, 50)
        let! params0 = Gen.collectToList (fun s -> genValues (numel s) 1.0) shapes
        let! grads =
            Gen.listOfLength steps (gen {
                let! scale = Gen.elements [ 1e-3; 0.03; 0.3; 1.0 ]
                return! Gen.collectToList (fun s -> genValues (numel s) scale) shapes })
        ignore p
        return { Names = shapes |> List.mapi (fun i _ -> sprintf "block%d.weight" i); Shapes = shapes; Params0 = params0; Grads = grads }
    }

/// A step size small enough that the quadratic runs stay bounded for every form.
let genStep = Gen.choose (1, 1000) |> Gen.map (fun i -> float i / 2000.0)
/// β in [0, 0.99] with 0 and 0.9 drawn often.
let genBeta = Gen.frequency [ 1, Gen.constant 0.0; 1, Gen.constant 0.9; 6, Gen.choose (0, 99) |> Gen.map (fun i -> float i / 100.0) ]
/// β in (0, 0.99].
let genPositiveBeta = Gen.frequency [ 1, Gen.constant 0.9; 5, Gen.choose (1, 99) |> Gen.map (fun i -> float i / 100.0) ]
/// A fraction in [0, 1) with 0 drawn often.
let genFraction = Gen.frequency [ 1, Gen.constant 0.0; 5, Gen.choose (0, 999) |> Gen.map (fun i -> float i / 1000.0) ]

/// A shift schedule given by two functions of the step, for relations that no library schedule states.
let schedule (a: int64 -> float) (b: int64 -> float) =
    { new IShiftSchedule with
        member _.InitialCarry = 0.0
        member _.At(t, carry) = struct (a t, b t, carry) }

[<Tests>]
let tests =
    testList "seed equivalences (200 cases each)" [
        // 1. The generalised-Nesterov note: (1a/1b) at θ + μv ≡ (7a/7b) ≡ (13a/13b) ≡ (18a/18b) in θ′ = θ + μv.
        testList "1. generalised Nesterov forms, 1e-10 + 1e-8·|b|" [
            let genCase = gen {
                let! p = genLongProblem
                let! eps, beta = Gen.zip genStep genBeta
                let! mu = Gen.choose (0, 2000) |> Gen.map (fun i -> float i / 1000.0)
                let! eta = genRate
                let! seed = genSeed
                return p, eps, beta, mu, eta, seed }
            let forms (eps, beta, mu, eta) =
                [ "1a/1b (gradient at θ + μv)", formAt mu (Optim.NesterovVelocity(eps, beta))
                  "7a/7b (correction on the velocity)", form (Transforms.Chain(Transforms.Trace beta, Transforms.Scale -eps, Transforms.GradientCorrection mu))
                  "18a/18b (η-scaled)", form (Transforms.Chain(Transforms.GradientCorrection mu, Transforms.Trace beta, Transforms.Scale(-eps / eta), Transforms.Scale eta)) ]
            property200 "each form ≡ 13a/13b (Optim.GeneralisedNesterov) on gradient streams" genCase (fun (p, eps, beta, mu, eta, _) ->
                for _, f in forms (eps, beta, mu, eta) do onStream oracleTolerance p f (form (Optim.GeneralisedNesterov(eps, beta, mu))))
            property200 "each form ≡ 13a/13b on a convex quadratic, gradients evaluated where each form says" genCase (fun (p, eps, beta, mu, eta, seed) ->
                for _, f in forms (eps, beta, mu, eta) do onQuadratic oracleTolerance p seed f (form (Optim.GeneralisedNesterov(eps, beta, mu))))
            property200 "torch's Nesterov SGD ≡ generalised Nesterov with μ = β" genCase (fun (p, eps, beta, _, _, _) ->
                if beta > 0.0 then onStream oracleTolerance p (form (Optim.NesterovSgd(eps, beta))) (form (Optim.GeneralisedNesterov(eps, beta, beta))))
        ]

        // 2. MARS momentum (unclipped, approximate) ≡ generalised Nesterov with ε = η(1−β), μ = γβ/(1−β) in θ′.
        testList "2. MARS is generalised Nesterov, 1e-10 + 1e-8·|b|" [
            let marsMomentum gamma beta eta =
                Transforms.Chain(Transforms.GradientCorrection(Transforms.MarsScale(gamma, beta)), Transforms.Ema beta, Transforms.Scale -eta)
            let genCase = gen {
                let! p = genLongProblem
                let! eta, beta = Gen.zip genStep genBeta
                let! gamma = Gen.frequency [ 1, Gen.constant 1.0; 1, Gen.constant 0.025; 4, genFraction ]
                let! seed = genSeed
                return p, eta, beta, gamma, seed }
            property200 "MARS momentum ≡ GeneralisedNesterov(η(1−β), β, γβ/(1−β)) on gradient streams" genCase (fun (p, eta, beta, gamma, _) ->
                onStream oracleTolerance p (form (marsMomentum gamma beta eta)) (form (Optim.GeneralisedNesterov(eta * (1.0 - beta), beta, gamma * beta / (1.0 - beta)))))
            property200 "MARS momentum ≡ the velocity form at θ + μv on a convex quadratic" genCase (fun (p, eta, beta, gamma, seed) ->
                let mu = gamma * beta / (1.0 - beta)
                if mu <= 20.0 then
                    onQuadratic oracleTolerance p seed (form (marsMomentum gamma beta eta)) (formAt mu (Optim.NesterovVelocity(eta * (1.0 - beta), beta))))
            test "the note's headline: β = 0.9, γ = 1 looks ahead μ = 9 (ten times Nesterov's 0.9)" {
                Expect.floatClose Accuracy.veryHigh (Transforms.MarsScale(1.0, 0.9)) 9.0 "γβ/(1−β) at β = 0.9, γ = 1"
                let report =
                    Equivalence.Check(form (marsMomentum 1.0 0.9 0.01), formAt 9.0 (Optim.NesterovVelocity(0.01 * 0.1, 0.9)),
                                      EquivalenceOptions(Cases = 20, Steps = 40, Seed = 7L))
                Expect.isTrue report.Passed (string report)
                let nesterov =
                    Equivalence.Check(form (marsMomentum 1.0 0.9 0.01), formAt 0.9 (Optim.NesterovVelocity(0.01 * 0.1, 0.9)),
                                      EquivalenceOptions(Cases = 5, Steps = 40, Seed = 7L))
                Expect.isFalse nesterov.Passed "with Nesterov's own lookahead μ = β = 0.9 it is a different algorithm"
            }
        ]

        // 3. Unclipped MARS momentum = γg + (1−γ)EMA_β(g) = QHM's direction with ν = 1−γ = MARS-M's efficient form.
        testList "3. MARS momentum ≡ QHM(ν = 1−γ) ≡ MARS-M's efficient form, 1e-10 + 1e-8·|b|" [
            let genCase = gen {
                let! p = genLongProblem
                let! eta, beta = Gen.zip genRate genPositiveBeta
                let! gamma = Gen.frequency [ 1, Gen.constant 1.0; 1, Gen.constant 0.025; 4, genFraction ]
                return p, eta, beta, gamma }
            property200 "MARS momentum ≡ QHM(η, β, ν = 1−γ)" genCase (fun (p, eta, beta, gamma) ->
                onStream oracleTolerance p
                    (form (Transforms.Chain(Transforms.GradientCorrection(Transforms.MarsScale(gamma, beta)), Transforms.Ema beta, Transforms.Scale -eta)))
                    (form (Optim.Qhm(eta, beta, 1.0 - gamma))))
            property200 "MARS-M (clip off) ≡ MARS-M's efficient form, Newton–Schulz included" (gen {
                let! p = genMatrixProblem
                let! lr, wd = Gen.zip genRate (Gen.elements [ 0.0; 0.1 ])
                let! beta = genPositiveBeta
                let! gamma = Gen.frequency [ 1, Gen.constant 0.025; 4, genFraction ]
                return p, lr, wd, beta, gamma }) (fun (p, lr, wd, beta, gamma) ->
                    let all = Func<ParameterInfo, bool>(fun _ -> true)
                    onStream oracleTolerance p
                        (form (Optim.MarsM(lr, wd, beta, gamma = gamma, clip = false, isMatrixParameter = all)))
                        (form (Optim.MarsMEfficient(lr, wd, beta, gamma = gamma, isMatrixParameter = all))))
        ]

        // 4. RSG, ARSG's forms, QHM and their classical special cases.
        testList "4. RSG / ARSG forms / QHM, 1e-10 + 1e-8·|b|" [
            let genCase = gen {
                let! p = genLongProblem
                let! alpha, beta = Gen.zip genStep genPositiveBeta
                let! mu = genFraction
                let! seed = genSeed
                return p, alpha, beta, mu, seed }
            property200 "RSG(μ) ≡ QHM(ν = 1−μ)" genCase (fun (p, alpha, beta, mu, _) ->
                onStream oracleTolerance p (form (Optim.Rsg(alpha, beta, mu))) (form (Optim.Qhm(alpha, beta, 1.0 - mu))))
            let original alpha beta mu = formAt (mu * beta / (1.0 - beta)) (Transforms.Chain(Transforms.Ema beta, Transforms.Scale -alpha))
            let concise alpha beta mu = form (Transforms.Chain(Transforms.LookaheadShift(1.0 - mu, Transforms.Ema beta), Transforms.Scale -alpha))
            let fast alpha beta mu = form (Optim.Rsg(alpha, beta, mu))
            property200 "ARSG paper: original form (2) ≡ concise form (3) ≡ fast form (4), gradient streams" genCase (fun (p, alpha, beta, mu, _) ->
                onStream oracleTolerance p (original alpha beta mu) (concise alpha beta mu)
                onStream oracleTolerance p (fast alpha beta mu) (concise alpha beta mu))
            property200 "ARSG paper: (2) ≡ (3) ≡ (4) on a convex quadratic, (2) observing at ẋ = x + ηv" genCase (fun (p, alpha, beta, mu, seed) ->
                if mu * beta / (1.0 - beta) <= 20.0 then
                    onQuadratic oracleTolerance p seed (original alpha beta mu) (concise alpha beta mu)
                onQuadratic oracleTolerance p seed (fast alpha beta mu) (concise alpha beta mu))
            property200 "RSG(μ = 0) ≡ heavy ball with lr·(1−β)" genCase (fun (p, alpha, beta, _, _) ->
                onStream oracleTolerance p (form (Optim.Rsg(alpha, beta, 0.0))) (form (Optim.HeavyBall(alpha * (1.0 - beta), beta))))
            property200 "QHM(ν = β) ≡ torch Nesterov SGD with lr·(1−β)" genCase (fun (p, alpha, beta, _, _) ->
                onStream oracleTolerance p (form (Optim.Qhm(alpha, beta, beta))) (form (Optim.NesterovSgd(alpha * (1.0 - beta), beta))))
            property200 "QHM(ν = 1) ≡ SGD momentum with lr·(1−β)" genCase (fun (p, alpha, beta, _, _) ->
                onStream oracleTolerance p (form (Optim.Qhm(alpha, beta, 1.0))) (form (Optim.Sgd(alpha * (1.0 - beta), beta))))
        ]

        // 5. QHAdam against Adam and NAdam.
        testList "5. QHAdam, Adam and NAdam, 1e-10 + 1e-8·|b|" [
            let genCase = gen {
                let! p = genLongProblem
                let! lr, b1 = Gen.zip genRate genPositiveBeta
                let! b2, eps = Gen.zip genDecay genEps
                return p, lr, b1, b2, eps }
            property200 "QHAdam(ν = (1, 1)) ≡ Adam" genCase (fun (p, lr, b1, b2, eps) ->
                onStream oracleTolerance p (form (Optim.QhAdam(lr, b1, b2, 1.0, 1.0, eps))) (form (Optim.Adam(lr, b1, b2, eps))))
            let adamDenominator b2 eps = PreconditionOptions(Decay = b2, Epsilon = eps)
            let bc b1 (t: int64) = 1.0 - Math.Pow(b1, float t)
            property200 "QHAdam(ν₁ = β₁, ν₂ = 1) ≡ NAdam with bias weights (1, 1/(1−β₁ᵗ)) on (g, m)" genCase (fun (p, lr, b1, b2, eps) ->
                let weighted = schedule (fun _ -> 1.0 - b1) (fun t -> b1 / bc b1 t)
                onStream oracleTolerance p
                    (form (Optim.QhAdam(lr, b1, b2, b1, 1.0, eps)))
                    (form (Transforms.Chain(Transforms.Precondition(adamDenominator b2 eps, Transforms.LookaheadShift(weighted, Transforms.Ema b1)), Transforms.Scale -lr))))
            property200 "NAdam (Dozat; torch with ψ → ∞) uses bias weights (1/(1−β₁ᵗ), 1/(1−β₁ᵗ⁺¹)); at step 1 its update is (1 + β₁/(1+β₁))× QHAdam's" genCase (fun (p, lr, b1, b2, eps) ->
                let dozat = Optim.NAdam(lr, b1, b2, eps, momentumDecay = 1e6)
                let weighted = schedule (fun t -> (1.0 - b1) / bc b1 t) (fun t -> b1 / bc b1 (t + 1L))
                onStream oracleTolerance p
                    (form dozat)
                    (form (Transforms.Chain(Transforms.Precondition(adamDenominator b2 eps, Transforms.LookaheadShift(weighted, Transforms.Ema b1)), Transforms.Scale -lr)))
                let one = { p with Grads = [ p.Grads.Head ] }
                let qh = Expect.run (Optim.QhAdam(lr, b1, b2, b1, 1.0, eps)) one
                let nadam = Expect.run dozat one
                let ratio = 1.0 + b1 / (1.0 + b1)
                for t in 0 .. qh.Updates.Head.Length - 1 do
                    for i in 0 .. qh.Updates.Head.[t].Length - 1 do
                        let q, n = qh.Updates.Head.[t].[i], nadam.Updates.Head.[t].[i]
                        if abs (n - ratio * q) > 1e-12 + 1e-10 * abs n then
                            failtestf "step 1, tensor %d, index %d: NAdam %.17g, QHAdam %.17g, ratio %.17g expected" t i n q ratio)
        ]

        // 6. MARS and MARS-M with γ = 0, only while no clip is active.
        testList "6. MARS(γ = 0) ≡ AdamW and MARS-M(γ = 0) ≡ Muon without Nesterov, unclipped, 1e-10 + 1e-8·|b|" [
            let genCase = gen {
                let! p = genLongProblem
                let! lr, b1 = Gen.zip genRate genBeta
                let! b2, eps = Gen.zip genDecay genEps
                let! wd = Gen.elements [ 0.0; 0.01; 0.1 ]
                return unclipped p, lr, b1, b2, eps, wd }
            property200 "MARS(γ = 0, optimize_1d) ≡ AdamW while every ‖g‖ < 1" genCase (fun (p, lr, b1, b2, eps, wd) ->
                onStream oracleTolerance p (form (Optim.Mars(lr, b1, b2, eps, wd, gamma = 0.0, optimize1d = true))) (form (Optim.AdamW(lr, b1, b2, eps, wd))))
            property200 "MARS(γ = 0) ≡ AdamW on matrices and AdamW(lr_1d, betas_1d, wd_1d) on the rest, while every ‖g‖ < 1" genCase (fun (p, lr, b1, b2, eps, wd) ->
                onStream oracleTolerance p
                    (form (Optim.Mars(lr, b1, b2, eps, wd, gamma = 0.0)))
                    (form (Transforms.Partition(Parameters.RankAtLeast 2, Optim.AdamW(lr, b1, b2, eps, wd), Optim.AdamW(3e-3, 0.9, 0.95, eps, 0.1)))))
            test "with the clip active, MARS(γ = 0) is not AdamW (counterexample)" {
                let p = { Names = [ "w" ]; Shapes = [ [| 2L; 2L |] ]; Params0 = [ [| 0.1; 0.2; 0.3; 0.4 |] ]
                          Grads = [ [ [| 3.0; 0.0; 0.0; 4.0 |] ]; [ [| 0.1; 0.2; 0.0; 0.0 |] ] ] }
                use _ = torch.NewDisposeScope()
                let r = Equivalence.Compare(form (Optim.Mars(0.01, gamma = 0.0, optimize1d = true)), form (Optim.AdamW(0.01, 0.95, 0.99, 1e-8, 0.0)), stream p [], 2, oracleTolerance)
                Expect.isFalse r.Equivalent "‖g₁‖ = 5 is clipped to 1, which changes Adam's ratio m̂/sqrt(v̂) from step 2 on"
            }
            property200 "MARS-M(γ = 0) ≡ Muon(nesterov = false, 0.2·√max(rows, cols)) while every ‖g‖ < 1" (gen {
                let! p = genMatrixProblem
                let! lr, beta = Gen.zip genRate genBeta
                let! wd = Gen.elements [ 0.0; 0.1 ]
                return unclipped p, lr, beta, wd }) (fun (p, lr, beta, wd) ->
                    onStream oracleTolerance p
                        (form (Optim.MarsM(lr, wd, beta, gamma = 0.0, isMatrixParameter = Func<_, _>(fun _ -> true))))
                        (form (Optim.Muon(lr, wd, beta, nesterov = false, scaling = ShapeScaling.Moonlight))))
            test "with the clip active, MARS-M(γ = 0) is not Muon: an EMA of clipped gradients is not a multiple of the raw EMA" {
                let p = { Names = [ "w" ]; Shapes = [ [| 2L; 2L |] ]; Params0 = [ [| 0.1; 0.2; 0.3; 0.4 |] ]
                          Grads = [ [ [| 0.5; 0.0; 0.0; 0.1 |] ]; [ [| 0.0; 10.0; 10.0; 0.0 |] ] ] }
                use _ = torch.NewDisposeScope()
                let all = Func<ParameterInfo, bool>(fun _ -> true)
                let r = Equivalence.Compare(form (Optim.MarsM(0.01, 0.0, 0.95, gamma = 0.0, isMatrixParameter = all)),
                                            form (Optim.Muon(0.01, 0.0, 0.95, nesterov = false, scaling = ShapeScaling.Moonlight)), stream p [], 2, oracleTolerance)
                Expect.isFalse r.Equivalent "step 2 orthogonalises 0.95·m₁ + 0.05·g₂/‖g₂‖ against 0.95·m₁ + 0.05·g₂"
            }
        ]

        // 7. MoMo's reductions.
        testList "7. MoMo: untruncated ≡ SGD momentum / Adam / AdamW; β = 0 ≡ SPS+, 1e-10 + 1e-8·|b|" [
            let genCase = gen {
                let! p, losses = withLosses genLongProblem
                let! lr, beta = Gen.zip genRate genBeta
                return p, losses, lr, beta }
            // A lower bound far below every loss keeps t₁ ≫ α: the truncation never acts.
            let farBelow = -1e8
            property200 "MoMo untruncated ≡ SGD(momentum β, dampening β)" genCase (fun (p, losses, lr, beta) ->
                onStreamWithLosses oracleTolerance p losses (form (Optim.Momo(lr, 0.0, beta, farBelow))) (form (Optim.Sgd(lr, beta, beta))))
            property200 "MoMo untruncated with bias correction ≡ SGD on the debiased EMA" genCase (fun (p, losses, lr, beta) ->
                onStreamWithLosses oracleTolerance p losses
                    (form (Optim.Momo(lr, 0.0, beta, farBelow, biasCorrection = true)))
                    (form (Transforms.Chain(Transforms.Ema(beta, debias = true), Transforms.Scale -lr))))
            let genAdam = gen {
                let! p, losses, lr, b1 = genCase
                let! b2, eps = Gen.zip genDecay genEps
                let! wd = Gen.elements [ 0.01; 0.1 ]
                return p, losses, lr, b1, b2, eps, wd }
            property200 "MoMo-Adam untruncated (λ = 0) ≡ Adam" genAdam (fun (p, losses, lr, b1, b2, eps, _) ->
                onStreamWithLosses oracleTolerance p losses (form (Optim.MomoAdam(lr, b1, b2, eps, 0.0, farBelow))) (form (Optim.Adam(lr, b1, b2, eps))))
            property200 "MoMo-Adam untruncated, divide = false ≡ AdamW" genAdam (fun (p, losses, lr, b1, b2, eps, wd) ->
                onStreamWithLosses oracleTolerance p losses (form (Optim.MomoAdam(lr, b1, b2, eps, wd, farBelow, divide = false))) (form (Optim.AdamW(lr, b1, b2, eps, wd))))
            property200 "MoMo(β = 0) ≡ SPS+ with maximal step α (truncation on and off)" (gen {
                let! p, losses = withLosses genLongProblem
                let! lr = Gen.elements [ 1e-3; 0.1; 1.0; 10.0 ]
                let! lb = Gen.choose (-1000, 1000) |> Gen.map (fun i -> float i / 1000.0)
                return p, losses, lr, lb }) (fun (p, losses, lr, lb) ->
                    onStreamWithLosses oracleTolerance p losses (form (Optim.Momo(lr, 0.0, 0.0, lb))) (form (Optim.SpsPlus(lr, lb))))
        ]
    ]
