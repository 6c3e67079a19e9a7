/// Linear optimizers on one-dimensional quadratics, computed from their realisations: the ARSG paper's gain matrix,
/// eigenvalues, error-variance limit, rate and stability bound (§3, eqs. 10–16) from RSG's composition; the known
/// optimal rates of gradient descent, heavy ball and Nesterov; agreement with running the optimizers themselves
/// (contraction and stationary variance under seeded noise); solving for a free scalar; and random linear
/// compositions decided exactly against the sampled checker.
module Lookahead.Tests.Dynamics

open System
open System.Numerics
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead

let private form tx = OptimizerForm(tx)
let private formAt mu tx = OptimizerForm(tx, mu)

let private marsMomentum (gamma: float) (beta: float) (eta: float) =
    Transforms.Chain(Transforms.GradientCorrection(Transforms.MarsScale(gamma, beta)), Transforms.Ema beta, Transforms.Scale -eta)

let private close what (tolerance: float) (expected: float) (actual: float) =
    Expect.isTrue (abs (actual - expected) <= tolerance * max 1.0 (abs expected))
        (sprintf "%s: %.17g against %.17g (|Δ| = %.3g, tolerance %.3g)" what actual expected (abs (actual - expected)) tolerance)

let private relClose what (tolerance: float) (expected: float) (actual: float) =
    Expect.isTrue (abs (actual - expected) <= tolerance * abs expected)
        (sprintf "%s: %.17g against %.17g (relative %.3g, tolerance %.3g)" what actual expected (abs (actual - expected) / abs expected) tolerance)

// ---- The ARSG paper's closed forms, written here from the paper (§3), not from the library ----

/// Eq. (10): the gain matrix of RSG on curvature λ in the paper's coordinates [v, s] (v = α·m, m the damped EMA), τ = αλ.
let private arsgGain beta mu tau =
    array2D [ [ beta; (1.0 - beta) * tau ]
              [ -beta * (1.0 - mu); 1.0 - (1.0 - beta * (1.0 - mu)) * tau ] ]

/// Eq. (11): its eigenvalues.
let private arsgEigenvalues beta mu tau =
    let rho = 1.0 + beta - tau * (1.0 - beta * (1.0 - mu))
    let root = Complex.Sqrt(Complex(rho * rho - 4.0 * beta * (1.0 - mu * tau), 0.0))
    [ (Complex(rho, 0.0) + root) / Complex(2.0, 0.0); (Complex(rho, 0.0) - root) / Complex(2.0, 0.0) ]

/// Eq. (15): l_Var by its definition, with the eigenvectors wᵢ of (10), b = c₁w₁ + c₂w₂ (eq. 12).
let private arsgVarianceLimit beta mu tau =
    let a = arsgGain beta mu tau
    let r = arsgEigenvalues beta mu tau |> Array.ofList
    // An eigenvector of a 2×2 matrix for eigenvalue r: (a₁₂, r − a₁₁) (the formula is invariant to its scale).
    let w = r |> Array.map (fun ri -> Complex(a.[0, 1], 0.0), ri - Complex(a.[0, 0], 0.0))
    let b1, b2 = Complex(1.0 - beta, 0.0), Complex(-(1.0 - beta * (1.0 - mu)), 0.0)
    let (w11, w12), (w21, w22) = w.[0], w.[1]
    let det = w11 * w22 - w21 * w12
    let c1 = (b1 * w22 - w21 * b2) / det
    let c2 = (w11 * b2 - b1 * w12) / det
    let one = Complex.One
    let sq (z: Complex) = z.Magnitude * z.Magnitude
    let sum =
        sq c1 * sq w12 / (1.0 - sq r.[0]) + sq c2 * sq w22 / (1.0 - sq r.[1])
        + 2.0 * (Complex.Conjugate c1 * c2 * Complex.Conjugate w12 * w22 / (one - Complex.Conjugate r.[0] * r.[1])).Real
    sum * tau * tau

/// Jury's conditions on z² − ρz + β(1 − μτ): stable iff 0 < τ < min(2(1 + β)/(1 − β + 2βμ), (1 + β)/(βμ)).
let private arsgStableBelow beta mu =
    let bySum = 2.0 * (1.0 + beta) / (1.0 - beta + 2.0 * beta * mu)
    if mu = 0.0 then bySum else min bySum ((1.0 + beta) / (beta * mu))

// ---- Simulation helpers: the optimizer itself on f(θ) = ½λθ² ----

/// The recorded points of `f` run on f(θ) = ½λθ² from θ₀ = 1 for `steps` steps (one scalar parameter).
let private trajectory (f: OptimizerForm) (lambda: float) (steps: int) =
    use scope = torch.NewDisposeScope()
    let theta0 = TensorTree.Of(struct ("w", torch.tensor([| 1.0 |], dtype = torch.ScalarType.Float64)))
    use problem = new QuadraticProblem(theta0, [ torch.tensor(array2D [ [ lambda ] ], dtype = torch.ScalarType.Float64) ], [ torch.zeros(1, dtype = torch.ScalarType.Float64) ])
    Equivalence.Trajectory(f, problem, steps) |> Array.map (fun step -> step.[0].[0])

/// The contraction measured from a trajectory of an order-2 recurrence: fit y[k+2] = a₁y[k+1] + a₂y[k] by least
/// squares over the window (rows scaled to one), then the larger root modulus of z² − a₁z − a₂.
let private measuredContraction2 (y: float[]) (first: int) (last: int) =
    let mutable s11, s12, s22, t1, t2 = 0.0, 0.0, 0.0, 0.0, 0.0
    for k in first .. last - 2 do
        let w = 1.0 / (abs y.[k] + abs y.[k + 1] + abs y.[k + 2])
        let x1, x2, z = y.[k + 1] * w, y.[k] * w, y.[k + 2] * w
        s11 <- s11 + x1 * x1; s12 <- s12 + x1 * x2; s22 <- s22 + x2 * x2
        t1 <- t1 + x1 * z; t2 <- t2 + x2 * z
    let det = s11 * s22 - s12 * s12
    let a1 = (t1 * s22 - s12 * t2) / det
    let a2 = (s11 * t2 - s12 * t1) / det
    let root = Complex.Sqrt(Complex(a1 * a1 + 4.0 * a2, 0.0))
    max ((Complex(a1, 0.0) + root) / Complex(2.0, 0.0)).Magnitude ((Complex(a1, 0.0) - root) / Complex(2.0, 0.0)).Magnitude

/// Runs `f` on n independent copies of f(θ) = ½λθ² with noisy gradients g = λ(y + δ) (paperNoise) or g = λy + ζ,
/// δ, ζ ~ N(0, 1) seeded, from θ = 0; after `burnIn` steps averages y² over `steps` more steps per copy. Returns the
/// mean over copies and its standard error (the copies are independent, so the spread of their averages gives it).
let private stationaryVariance (f: OptimizerForm) (lambda: float) (paperNoise: bool) (n: int64) (burnIn: int) (steps: int) (seed: int64) =
    use outer = torch.NewDisposeScope()
    use noGrad = torch.no_grad()
    let generator = new torch.Generator(uint64 seed)
    let tx = f.Transform
    let mu = f.Lookahead
    let mutable theta = TensorTree.Of(struct ("w", torch.zeros([| n |], dtype = torch.ScalarType.Float64)))
    let mutable velocity = TensorTree.Of(struct ("w", torch.zeros([| n |], dtype = torch.ScalarType.Float64)))
    let mutable state = tx.Init(theta)
    let sum = torch.zeros([| n |], dtype = torch.ScalarType.Float64)
    for k in 1 .. burnIn + steps do
        use stepScope = torch.NewDisposeScope()
        let point = theta.Tensors.[0].add(velocity.Tensors.[0], alpha = mu)
        let noise = torch.randn([| n |], dtype = torch.ScalarType.Float64, generator = generator)
        let g = if paperNoise then point.add(noise).mul_(lambda.ToScalar()) else point.mul(lambda.ToScalar()).add_(noise)
        let struct (updates, next) = tx.Update(TensorTree.Of(struct ("w", g)), state, theta, StepContext.Empty)
        let nextTheta = TensorTree.Of(struct ("w", theta.Tensors.[0].add(updates.Tensors.[0])))
        if k > burnIn then
            let recorded = nextTheta.Tensors.[0].add(updates.Tensors.[0], alpha = mu)
            sum.add_(recorded.square()) |> ignore
        stepScope.MoveToOuter(Seq.append (Seq.append nextTheta.Tensors updates.Tensors) (OptState.Tensors next) |> Seq.cast<IDisposable>)
        OptState.Dispose(state)
        theta.Dispose()
        velocity.Dispose()
        theta <- nextTheta
        velocity <- updates
        state <- next
    let perCopy = sum.div((float steps).ToScalar())
    let mean = perCopy.mean().item<float>()
    let standardError = perCopy.std().item<float>() / sqrt (float n)
    OptState.Dispose(state)
    mean, standardError

[<Tests>]
let arsgPaper =
    testList "dynamics (the ARSG paper's analysis from RSG's composition)" [
        testCase "eq. 10: RSG's gain matrix is the paper's A up to the change of coordinates v = α(1 − β)·m̃" <| fun () ->
            for alpha, beta, mu, lambda in [ 1.0, 0.999, 0.1, 0.003; 0.5, 0.9, 0.3, 0.7; 2.0, 0.99, 0.0, -0.01; 1.0, 0.9, 0.4, 3.0; 0.1, 0.5, 0.05, 12.0 ] do
                let d = Analysis.Dynamics(form (Optim.Rsg(alpha, beta, mu)))
                Expect.equal d.Order 2 "RSG's state: its trace and θ"
                Expect.equal d.Realisation.StateNames.[1] "θ" "θ is the second coordinate"
                let m = d.GainMatrix lambda
                // Ours is x = [m̃, θ] with m̃ the undamped trace; the paper's is [v, s] = T x, T = diag(α(1 − β), 1).
                let t = [| alpha * (1.0 - beta); 1.0 |]
                let expected = arsgGain beta mu (alpha * lambda)
                for i in 0 .. 1 do
                    for j in 0 .. 1 do
                        close (sprintf "α=%g β=%g μ=%g λ=%g: A[%d,%d]" alpha beta mu lambda i j) 1e-13 expected.[i, j] (t.[i] * m.[i, j] / t.[j])

        testCase "eq. 11: its eigenvalues" <| fun () ->
            for alpha, beta, mu, lambda in [ 1.0, 0.999, 0.1, 0.003; 1.0, 0.999, 0.1, 5.0; 0.5, 0.9, 0.3, 0.7; 2.0, 0.99, 0.0, -0.01; 1.0, 0.9, 0.4, 3.0 ] do
                let computed = Analysis.Dynamics(form (Optim.Rsg(alpha, beta, mu))).Eigenvalues lambda
                for r in arsgEigenvalues beta mu (alpha * lambda) do
                    let nearest = computed |> Array.map (fun z -> (z - r).Magnitude) |> Array.min
                    Expect.isLessThan nearest 1e-12 (sprintf "α=%g β=%g μ=%g λ=%g: eigenvalue %O among %A" alpha beta mu lambda r computed)

        testCase "eq. 15: the error-variance limit l_Var as the paper defines it (eigen-decomposition), from the Lyapunov equation" <| fun () ->
            let cases =
                [ for tau in [ 0.001; 0.003; 0.01; 0.1; 1.0; 10.0 ] do yield 1.0, 0.999, 0.1, tau
                  for tau in [ 0.05; 0.5; 2.0 ] do yield 1.0, 0.9, 0.3, tau
                  yield 0.5, 0.99, 0.0, 0.4
                  yield 2.0, 0.999, 0.4, 0.02 ]
            for alpha, beta, mu, tau in cases do
                let d = Analysis.Dynamics(form (Optim.Rsg(alpha, beta, mu)))
                relClose (sprintf "β=%g μ=%g τ=%g" beta mu tau) 1e-8 (arsgVarianceLimit beta mu tau) (d.VarianceLimit(tau / alpha))
            // Outside the stability interval the limit does not exist.
            let d = Analysis.Dynamics(form (Optim.Rsg(1.0, 0.9, 0.3)))
            Expect.equal (d.VarianceLimit(arsgStableBelow 0.9 0.3 * 1.01)) Double.PositiveInfinity "unstable: no limit"

        testCase "Theorem 1 (eq. 16): the worst rate over [λ_min, λ_max] in its regime (κ = 1e6), attained at λ_min" <| fun () ->
            let kappa, lmax = 1e6, 1.0
            let lmin = lmax / kappa
            let cBeta, cMu = 1.0, 0.5
            for cAlpha in [ 0.1; 0.05; 0.5; 1.0 ] do
                let alpha = cAlpha * sqrt kappa / lmax
                let beta = 1.0 - cBeta / sqrt kappa
                let mu = cMu / sqrt kappa
                let d = Analysis.Dynamics(form (Optim.Rsg(alpha, beta, mu)))
                let struct (rate, at) = d.WorstRate(lmin, lmax)
                let predicted =
                    if 4.0 * cAlpha < cBeta then 1.0 - (cBeta - sqrt (cBeta * (cBeta - 4.0 * cAlpha))) / (2.0 * sqrt kappa)
                    else 1.0 - cBeta / (2.0 * sqrt kappa)
                // Eq. 16 is first order in 1/√κ: 1 − r agrees to a relative O(1/√κ) = 1e-3 (measured 8e-5 … 7.5e-4); 2e-3 is allowed.
                relClose (sprintf "c_α = %g: 1 − r_c" cAlpha) 2e-3 (1.0 - predicted) (1.0 - rate)
                relClose (sprintf "c_α = %g: attained at λ_min" cAlpha) 1e-6 lmin at

        testCase "the stability interval is Jury's: 0 < τ < min(2(1 + β)/(1 − β + 2βμ), (1 + β)/(βμ))" <| fun () ->
            for alpha, beta, mu in [ 1.0, 0.999, 0.0; 1.0, 0.999, 0.001; 1.0, 0.999, 0.1; 1.0, 0.999, 0.4; 0.5, 0.9, 0.5; 3.0, 0.5, 0.9 ] do
                let struct (low, high) = Analysis.Dynamics(form (Optim.Rsg(alpha, beta, mu))).StabilityInterval()
                Expect.equal low 0.0 (sprintf "β=%g μ=%g: stable from 0" beta mu)
                relClose (sprintf "β=%g μ=%g: largest stable curvature" beta mu) 1e-9 (arsgStableBelow beta mu / alpha) high

        testCase "Figure 1's observations: μ barely changes r_g at tiny τ; μ = 0.1 beats heavy ball and μ = 0.001 in r_g and l_Var at moderate τ; μ = 0.4 has the larger l_Var" <| fun () ->
            let d mu = Analysis.Dynamics(form (Optim.Rsg(1.0, 0.999, mu)))
            let ds = [ 0.0; 0.001; 0.1; 0.4 ] |> List.map (fun mu -> mu, d mu) |> Map.ofList
            let tiny = ds |> Map.toList |> List.map (fun (_, x) -> x.GainFactor 1e-6)
            Expect.isLessThan (List.max tiny - List.min tiny) 1e-6 "at τ = 1e-6 the four curves coincide"
            for tau in [ 0.05; 0.2; 1.0 ] do
                Expect.isLessThan (ds.[0.1].GainFactor tau) (ds.[0.0].GainFactor tau) (sprintf "τ=%g: μ = 0.1 converges faster than heavy ball" tau)
                Expect.isLessThan (ds.[0.1].GainFactor tau) (ds.[0.001].GainFactor tau) (sprintf "τ=%g: μ = 0.1 converges faster than NAG (μ = 0.001)" tau)
                Expect.isLessThan (ds.[0.1].VarianceLimit tau) (ds.[0.001].VarianceLimit tau) (sprintf "τ=%g: μ = 0.1 has the smaller l_Var than μ = 0.001" tau)
                Expect.isLessThan (ds.[0.1].VarianceLimit tau) (ds.[0.4].VarianceLimit tau) (sprintf "τ=%g: μ = 0.4 has the larger l_Var" tau)
            Expect.isGreaterThan (ds.[0.1].GainFactor -0.001) (ds.[0.0].GainFactor -0.001) "λ < 0: a larger μ diverges faster"
    ]

[<Tests>]
let knownRates =
    testList "dynamics (optimal rates for a condition number, against the literature)" [
        testCase "gradient descent at α = 2/(L + m): (κ − 1)/(κ + 1), and Optimise finds that α" <| fun () ->
            for kappa in [ 10.0; 100.0; 1e4 ] do
                let l, m = 1.0, 1.0 / kappa
                let struct (rate, _) = Analysis.Dynamics(form (Optim.Sgd(2.0 / (l + m)))).WorstRate(m, l)
                close (sprintf "κ = %g" kappa) 1e-12 ((kappa - 1.0) / (kappa + 1.0)) rate
            let kappa = 100.0
            let struct (best, rate) = Analysis.Optimise((fun h -> form (Optim.Sgd(h.[0]))), [| 0.5 |], 0.01, 1.0)
            relClose "optimal α" 1e-6 (2.0 / 1.01) best.[0]
            close "optimal rate" 1e-9 ((kappa - 1.0) / (kappa + 1.0)) rate

        testCase "heavy ball with Polyak's α = 4/(√L + √m)², β = ((√κ − 1)/(√κ + 1))²: (√κ − 1)/(√κ + 1)" <| fun () ->
            for kappa in [ 10.0; 100.0; 1e4 ] do
                let l, m = 1.0, 1.0 / kappa
                let alpha = 4.0 / (sqrt l + sqrt m) ** 2.0
                let q = (sqrt kappa - 1.0) / (sqrt kappa + 1.0)
                // torch's heavy ball b ← βb + g, θ ← θ − lr·b is Polyak's θ ← θ − α∇f + β(θ − θ₋₁) with lr = α.
                let struct (rate, _) = Analysis.Dynamics(form (Optim.HeavyBall(alpha, q * q))).WorstRate(m, l)
                // The eigenvalues are double at both ends of the range (a Jordan block): computed to √ε.
                close (sprintf "κ = %g" kappa) 1e-6 q rate

        testCase "Nesterov at α = 1/L, β = (√κ − 1)/(√κ + 1): 1 − 1/√κ (Lessard, Recht & Packard 2016)" <| fun () ->
            for kappa in [ 10.0; 100.0; 1e4 ] do
                let l, m = 1.0, 1.0 / kappa
                let struct (rate, _) = Analysis.Dynamics(form (Optim.NesterovSgd(1.0 / l, (sqrt kappa - 1.0) / (sqrt kappa + 1.0)))).WorstRate(m, l)
                close (sprintf "κ = %g" kappa) 1e-6 (1.0 - 1.0 / sqrt kappa) rate

        testCase "Optimise over heavy ball's (α, β) reaches Polyak's rate from a poor start" <| fun () ->
            let kappa = 100.0
            let struct (best, rate) = Analysis.Optimise((fun h -> form (Optim.HeavyBall(h.[0], h.[1]))), [| 1.0; 0.5 |], 0.01, 1.0, 2000)
            let q = (sqrt kappa - 1.0) / (sqrt kappa + 1.0)
            Expect.isLessThan rate (q + 1e-6) (sprintf "rate %g at α = %g, β = %g; Polyak's %g" rate best.[0] best.[1] q)
            Expect.isGreaterThan rate (q - 1e-6) "no linear method beats Polyak's rate on this class"
            relClose "Polyak's α = 4/(√L + √m)²" 1e-3 (4.0 / (1.0 + 0.1) ** 2.0) best.[0]
            relClose "Polyak's β = ((√κ − 1)/(√κ + 1))²" 1e-3 (q * q) best.[1]
    ]

[<Tests>]
let simulation =
    testList "dynamics (analysis against running the optimizer itself)" [
        testCase "the contraction measured on f(θ) = ½λθ² is r_g(λ) within 1e-6" <| fun () ->
            let cases =
                [ "heavy ball, complex", form (Optim.HeavyBall(0.1, 0.9)), 1.0
                  "heavy ball, real roots", form (Optim.HeavyBall(0.1, 0.5)), 0.1
                  "Nesterov SGD", form (Optim.NesterovSgd(0.2, 0.8)), 0.5
                  "QHM", form (Optim.Qhm(0.5, 0.9, 0.7)), 0.3
                  "RSG", form (Optim.Rsg(1.0, 0.9, 0.1)), 0.5
                  "RSG, negative curvature", form (Optim.Rsg(1.0, 0.9, 0.1)), -0.02
                  "ARSG original form with lookahead μβ/(1 − β)", formAt (0.3 * 0.9 / 0.1) (Transforms.Chain(Transforms.Ema 0.9, Transforms.Scale -0.5)), 0.4 ]
            let deviations =
                [ for name, f, lambda in cases do
                    let y = trajectory f lambda 120
                    let measured = measuredContraction2 y 5 100
                    let predicted = Analysis.Dynamics(f).GainFactor lambda
                    close (sprintf "%s at λ = %g" name lambda) 1e-6 predicted measured
                    yield abs (measured - predicted) ]
            printfn "contraction measured on %d optimizer runs: largest |measured − r_g| = %.2g" cases.Length (List.max deviations)

        testCase "with a real dominant root the step ratio itself converges to r_g" <| fun () ->
            for name, f, lambda in [ "gradient descent", form (Optim.Sgd(0.5)), 0.3
                                     "heavy ball, real roots", form (Optim.HeavyBall(0.1, 0.5)), 0.1
                                     "MARS momentum (order 3)", form (marsMomentum 0.025 0.5 0.2), 0.1 ] do
                let y = trajectory f lambda 150
                let predicted = Analysis.Dynamics(f).GainFactor lambda
                Expect.isGreaterThan predicted 0.0 (sprintf "%s: a moving iterate" name)
                close (sprintf "%s at λ = %g: y[150]/y[149]" name lambda) 1e-6 predicted (y.[149] / y.[148])

        testCase "the stationary variance under seeded Gaussian noise is the variance limit, within 5 standard errors" <| fun () ->
            // 20000 independent copies (independent noise, so their time averages are i.i.d.) give the standard
            // error from their spread; the burn-in of 400 steps leaves a transient below r_g^800 ≤ 1e-10 (r_g ≤ 0.97 checked).
            let cases =
                [ "gradient descent", form (Optim.Sgd(0.5)), 1.0, false
                  "heavy ball", form (Optim.HeavyBall(0.1, 0.9)), 1.0, false
                  "QHM", form (Optim.Qhm(0.5, 0.9, 0.7)), 0.3, false
                  "RSG, the paper's noise g = λ(y + δ)", form (Optim.Rsg(1.0, 0.9, 0.1)), 0.5, true
                  "ARSG original form with lookahead, the paper's noise", formAt (0.3 * 0.9 / 0.1) (Transforms.Chain(Transforms.Ema 0.9, Transforms.Scale -0.5)), 0.4, true ]
            for i, (name, f, lambda, paperNoise) in List.indexed cases do
                let d = Analysis.Dynamics(f)
                Expect.isLessThan (d.GainFactor lambda) 0.97 (sprintf "%s: fast enough for the burn-in" name)
                let predicted = if paperNoise then d.VarianceLimit lambda else d.PointVariance lambda
                let mean, se = stationaryVariance f lambda paperNoise 20000L 400 1500 (int64 (1000 + i))
                Expect.isLessThan (abs (mean - predicted)) (5.0 * se)
                    (sprintf "%s at λ = %g: measured %.6g ± %.2g, predicted %.6g" name lambda mean se predicted)
                Expect.isLessThan (se / predicted) 0.01 (sprintf "%s: the test resolves 1 %%" name)
                printfn "stationary variance, %s at λ = %g: measured %.6g ± %.2g (standard error), limit %.6g (%+.2f standard errors, %+.3f %%)"
                    name lambda mean se predicted ((mean - predicted) / se) (100.0 * (mean - predicted) / predicted)
            // And gradient descent's limit in closed form: Var = α²/(1 − (1 − αλ)²).
            close "gradient descent, closed form" 1e-12 (0.25 / (1.0 - 0.25)) (Analysis.Dynamics(form (Optim.Sgd(0.5))).PointVariance 1.0)
    ]

[<Tests>]
let solving =
    testList "dynamics (solving for the free scalar that makes two forms equal)" [
        testCase "MARS momentum: the lookahead μ of generalised Nesterov is γβ/(1 − β)" <| fun () ->
            let gamma, beta, eta = 0.025, 0.9, 0.01
            let found = Analysis.SolveScalar((fun mu -> form (Optim.GeneralisedNesterov(eta * (1.0 - beta), beta, mu))), form (marsMomentum gamma beta eta), 0.0, 1.0)
            Expect.equal found.Count 1 (sprintf "one solution: %A" found)
            relClose "μ" 1e-9 (gamma * beta / (1.0 - beta)) found.[0]

        testCase "RSG: QHM's ν is 1 − μ" <| fun () ->
            let found = Analysis.SolveScalar((fun nu -> form (Optim.Qhm(0.1, 0.9, nu))), form (Optim.Rsg(0.1, 0.9, 0.3)), 0.0, 1.0)
            Expect.equal found.Count 1 (sprintf "one solution: %A" found)
            relClose "ν" 1e-9 0.7 found.[0]

        testCase "QHM(ν = β): Nesterov SGD's learning rate is α(1 − β)" <| fun () ->
            let found = Analysis.SolveScalar((fun lr -> form (Optim.NesterovSgd(lr, 0.9))), form (Optim.Qhm(0.1, 0.9, 0.9)), 0.0, 1.0)
            Expect.equal found.Count 1 (sprintf "one solution: %A" found)
            relClose "lr" 1e-9 0.01 found.[0]

        testCase "no value makes heavy ball equal to Nesterov SGD" <| fun () ->
            let found = Analysis.SolveScalar((fun lr -> form (Optim.HeavyBall(lr, 0.9))), form (Optim.NesterovSgd(0.01, 0.9)), 0.0, 1.0)
            Expect.isEmpty found "empty"
    ]

// ---- Random linear compositions: the exact decision against the sampled checker ----

type private Filter =
    | TraceF of decay: float * dampening: float
    | EmaF of decay: float * debias: bool
    | ScaleF of float
    member f.Build() =
        match f with
        | TraceF (d, damp) -> Transforms.Trace(d, damp)
        | EmaF (d, debias) -> Transforms.Ema(d, debias = debias)
        | ScaleF c -> Transforms.Scale c

type private Pair =
    { WeightDecay: float
      Lookahead: float
      Filters: Filter list
      Other: Filter list
      Change: string }
    override p.ToString() = sprintf "wd=%g μ=%g %A vs %A (%s)" p.WeightDecay p.Lookahead p.Filters p.Other p.Change

let private genFilter =
    Gen.oneof [
        gen { let! d = Gen.elements [ 0.0; 0.3; 0.5; 0.9 ] in let! damp = Gen.elements [ 0.0; 0.5 ] in return TraceF(d, damp) }
        gen { let! d = Gen.elements [ 0.3; 0.5; 0.9 ] in let! debias = Gen.frequency [ 4, Gen.constant false; 1, Gen.constant true ] in return EmaF(d, debias) }
        gen { let! c = Gen.elements [ 0.5; 2.0; -1.0; 0.1 ] in return ScaleF c } ]

let private perturb (filters: Filter list) (i: int) =
    filters |> List.mapi (fun j f ->
        if j <> i then f
        else
            match f with
            | TraceF (d, damp) -> TraceF(d + 1e-3, damp)
            | EmaF (d, debias) -> EmaF(d + 1e-3, debias)
            | ScaleF c -> ScaleF(c * 1.001))

let private genPair =
    gen {
        let! filters = Gen.listOfLength 3 genFilter |> Gen.map (List.truncate 3) |> Gen.bind (fun fs -> gen { let! k = Gen.choose (1, 3) in return List.truncate k fs })
        let! wd = Gen.elements [ 0.0; 0.0; 0.05 ]
        let! mu = Gen.elements [ 0.0; 0.0; 0.5 ]
        let! change = Gen.elements [ "permute"; "perturb"; "same" ]
        let! other =
            match change with
            | "permute" -> Gen.shuffle (Array.ofList filters) |> Gen.map List.ofArray
            | "perturb" -> Gen.choose (0, filters.Length - 1) |> Gen.map (perturb filters)
            | _ -> Gen.constant filters
        return { WeightDecay = wd; Lookahead = mu; Filters = filters; Other = other; Change = change }
    }

let private build (p: Pair) (filters: Filter list) =
    let parts = [ if p.WeightDecay > 0.0 then yield Transforms.AddDecayedWeights p.WeightDecay
                  yield! filters |> List.map (fun f -> f.Build())
                  yield Transforms.Scale -0.1 ]
    OptimizerForm(Transforms.Chain(Array.ofList parts), p.Lookahead)

let private sampledConfig = { FsCheckConfig.defaultConfig with maxTest = 60 }

[<Tests>]
let randomCompositions =
    testList "dynamics (random linear compositions: exact decision ≡ sampled checker)" [
        testPropertyWithConfig sampledConfig "chains of traces, EMAs, scales, weight decay and a lookahead: exact and sampled agree" <|
            Prop.forAll (Arb.fromGen genPair) (fun p ->
                let a, b = build p p.Filters, build p p.Other
                let exact = Analysis.Equal(a, b, 30)
                Expect.isTrue exact.Decided (sprintf "%O: linear, so decided (%O)" p exact)
                let timeInvariant = p.Filters |> List.forall (function EmaF (_, true) -> false | _ -> true)
                // Time-invariant filters commute (their transfer functions multiply), so a permutation is the same
                // algorithm; a perturbed coefficient never is (no zeros to cancel a moved pole, no zero gains).
                if p.Change = "same" || (p.Change = "permute" && timeInvariant) then Expect.isTrue exact.Equal (sprintf "%O: %O" p exact)
                if p.Change = "perturb" then Expect.isFalse exact.Equal (sprintf "%O: %O" p exact)
                let sampled = Equivalence.Check(a, b, EquivalenceOptions(Cases = 3, Steps = 30, Method = EquivalenceMethod.Sampled))
                Expect.equal exact.Equal sampled.Passed (sprintf "%O: exact %O, sampled %O" p exact sampled)
                let auto = Equivalence.Check(a, b, EquivalenceOptions(Steps = 30))
                Expect.equal auto.Method "exact" "Equivalence.Check takes the exact path for linear forms"
                Expect.equal auto.Passed exact.Equal "and reports its decision")
    ]

[<Tests>]
let badInput =
    testList "dynamics (bad input)" [
        testCase "exact-only APIs refuse a non-linear optimizer, naming the primitive" <| fun () ->
            for tx, primitive in [ Optim.Adam(0.01), "precondition"; Optim.Lion(0.01), "sign"; Transforms.Chain(Transforms.ClipByGlobalNorm 1.0, Optim.Sgd(0.1)), "clip_by_global_norm" ] do
                let ex = try Analysis.Dynamics(form tx) |> ignore; None with :? ArgumentException as e -> Some e
                Expect.isSome ex "throws"
                Expect.stringContains ex.Value.Message primitive (sprintf "%s: names %s" tx.Name primitive)
                Expect.equal ex.Value.ParamName "form" "names the parameter"
                let check = try Equivalence.Check(form tx, form (Optim.Sgd(0.1)), EquivalenceOptions(Method = EquivalenceMethod.Exact)) |> ignore; None with :? ArgumentException as e -> Some e
                Expect.isSome check "Equivalence.Check with Method = Exact throws"
                Expect.stringContains check.Value.Message primitive "and names the primitive"
                Expect.equal check.Value.ParamName "a" "the non-linear side"
            // A partition routes by name or shape, and Newton–Schulz acts on matrices: neither is realised on one scalar.
            for tx, reason in [ Transforms.Partition((fun (_: ParameterInfo) -> "all"), struct ("all", Optim.Sgd(0.1))), "routes parameters"
                                Optim.Muon(), "Newton–Schulz" ] do
                let r = Analysis.Realise(form tx)
                Expect.isFalse r.Linear (string r)
                Expect.stringContains r.NotLinearBecause reason (sprintf "%s: says why" tx.Name)

        testCase "a time-varying form has no single gain matrix; a range the wrong way round is refused" <| fun () ->
            let debiased = form (Transforms.Chain(Transforms.Ema(0.9, debias = true), Transforms.Scale -0.1))
            let ex = try Analysis.Dynamics(debiased) |> ignore; None with :? ArgumentException as e -> Some e
            Expect.isSome ex "throws"
            Expect.stringContains ex.Value.Message "time-varying" "says why"
            let d = Analysis.Dynamics(form (Optim.Sgd(0.1)))
            Expect.throwsT<ArgumentException> (fun () -> d.WorstRate(1.0, 0.1) |> ignore) "high < low"
            Expect.throwsT<ArgumentOutOfRangeException> (fun () -> d.GainMatrix(nan) |> ignore) "NaN curvature"
            Expect.throwsT<ArgumentException> (fun () -> Analysis.SolveScalar((fun s -> form (Optim.Sgd s)), form (Optim.Adam 0.1), 0.0, 1.0) |> ignore) "non-linear target"
    ]

/// The larger root τ₂ of ρ² = 4β(1 − μτ) (ρ = 1 + β − τ(1 − β + βμ)): where RSG's eigenvalues turn from complex
/// (modulus √(β(1 − μτ)), falling in τ) back to real, so where r_g is smallest — written from eq. 11, not from the library.
let private fastestTau beta mu =
    let c = 1.0 - beta + beta * mu
    let b = 4.0 * beta * mu - 2.0 * (1.0 + beta) * c
    (-b + sqrt (b * b - 4.0 * c * c * (1.0 - beta) ** 2.0)) / (2.0 * c * c)

[<Tests>]
let observationBoost =
    testList "dynamics (ARSG-OBSB's step scaling from the analysis)" [
        testCase "each boost scales α by τ*(2μ)/τ*(μ), τ* = argmin over τ of r_g; at β₁ = 0.999 the first boost divides α by about 4, as the paper says" <| fun () ->
            for beta in [ 0.9; 0.99; 0.999 ] do
                let scales = Optim.ObservationBoostScales(beta, 0.05, 3)
                Expect.equal scales.Length 4 "levels 0 … 3"
                Expect.equal scales.[0] 1.0 "level 0 keeps α"
                for level in 1 .. 3 do
                    relClose (sprintf "β = %g, level %d" beta level) 1e-6 (fastestTau beta (0.05 * 2.0 ** float level) / fastestTau beta 0.05) scales.[level]
            let first = 1.0 / (Optim.ObservationBoostScales(0.999, 0.05, 1)).[1]
            Expect.isTrue (first > 3.5 && first < 4.5) (sprintf "α divided by %g at the first boost" first)
            Expect.sequenceEqual (Optim.ObservationBoostScales(0.999, 0.05, 2, 4.0)) [ 1.0; 0.25; 0.0625 ] "a fixed divisor when given"

        testCase "ArsgObsb runs Arsg at those steps: its trajectory ≡ Boosted(ℓ ↦ Arsg(α·τ*(μ₀2^ℓ)/τ*(μ₀), μ₀2^ℓ)) through boosts" <| fun () ->
            use scope = torch.NewDisposeScope()
            use generator = new torch.Generator(7UL)
            let theta0 = TensorTree.Of(struct ("w", torch.randn([| 6L |], dtype = torch.ScalarType.Float64, generator = generator)))
            let steps = 60
            let grads = [| for _ in 1 .. steps -> TensorTree.Of(struct ("w", torch.randn([| 6L |], dtype = torch.ScalarType.Float64, generator = generator))) |]
            // A flat loss: every window boosts, up to MaxLevel.
            let stream = GradientStream(theta0, grads, Array.create steps 1.0)
            let policy = BoostPolicy(Window = 5, Tolerance = 0.5, MaxLevel = 3)
            let beta1, mu0, lr = 0.999, 0.05, 0.01
            let byHand = Transforms.Boosted((fun level -> Optim.Arsg(lr * fastestTau beta1 (mu0 * 2.0 ** float level) / fastestTau beta1 mu0, beta1, mu = mu0 * 2.0 ** float level)), policy)
            let tol = Tolerance(1e-12, 1e-7)
            let same = Equivalence.Compare(form (Optim.ArsgObsb(lr, beta1, initialMu = mu0, policy = policy)), form byHand, stream, steps, tol)
            Expect.isTrue same.Equivalent (string same)
            let fixedFour = Equivalence.Compare(form (Optim.ArsgObsb(lr, beta1, initialMu = mu0, stepDivisor = 4.0, policy = policy)), form byHand, stream, steps, tol)
            Expect.isFalse fixedFour.Equivalent "the fixed divisor 4 is a different schedule (the boosts did happen)"
    ]
