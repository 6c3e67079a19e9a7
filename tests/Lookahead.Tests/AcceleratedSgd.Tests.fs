/// The connections of Morwani, Vyas, Zhang & Kakade 2025 ("Connections between Schedule-Free Optimizers, AdEMAMix,
/// and Accelerated SGD Variants", arXiv 2502.02431) between Schedule-Free SGD, AdEMAMix and accelerated SGD — the
/// form m ← βm + g, θ ← θ − η(a·g + b·m), whose weight on the current gradient is decoupled from the momentum's —
/// stated as exact reparameterisations: trajectories in float64 on gradient streams and quadratics, and decided
/// exactly by the analysis where the forms are linear.
module Lookahead.Tests.AcceleratedSgd

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open Lookahead
open Lookahead.Tests.Generators
open Lookahead.Tests.SeedEquivalences

let private config = { FsCheckConfig.defaultConfig with maxTest = 100 }
let private property name (g: Gen<'a>) (f: 'a -> unit) = testPropertyWithConfig config name (Prop.forAll (Arb.fromGen g) f)

let private genRate = Gen.choose (1, 1000) |> Gen.map (fun i -> float i / 10000.0)
/// (0, 1), the edges' neighbours included.
let private genOpen = Gen.frequency [ 1, Gen.constant 0.01; 1, Gen.constant 0.99; 6, Gen.choose (1, 99) |> Gen.map (fun i -> float i / 100.0) ]

/// Accelerated SGD as a composition: u = a·g + b·trace_μ(g) (trace m ← μm + g), θ ← θ − η·u.
let accelerated (lr: float) (a: float) (b: float) (mu: float) =
    Transforms.Chain(Transforms.Mix(Transforms.Scale a, Transforms.Trace mu, (fun _ -> b), "accelerated"), Transforms.Scale -lr)

/// Schedule-Free SGD's averaging with a constant weight c (y = (1 − β)z + βx, z ← z − γg, x ← (1 − c)x + cz).
let private scheduleFree (lr: float) (beta: float) (c: float) = Transforms.ScheduleFreeAverage(lr, beta, constantWeight = Nullable c)

[<Tests>]
let tests =
    testList "accelerated SGD connections (arXiv 2502.02431)" [
        // Derivation: with d = z − x, d₁ = 0 and d ← (1 − c)(d − γg); m ← (1 − c)m + g gives d = −(1 − c)γ·m_prev, and
        // y' − y = βc·d − (1 − β + βc)γg = −γ((1 − β)g + βc·m). The paper states it for the averaged form; here it is the
        // gradient point y, the sequence the library's Schedule-Free parameters hold.
        property "Schedule-Free SGD with a constant averaging weight c ≡ accelerated SGD: m ← (1 − c)m + g, y ← y − γ((1 − β)g + βc·m)" (Gen.zip3 genLongProblem genRate (Gen.zip genOpen genOpen)) (fun (p, lr, (beta, c)) ->
            let sf, acc = form (scheduleFree lr beta c), form (accelerated lr (1.0 - beta) (beta * c) (1.0 - c))
            onStream oracleTolerance p sf acc
            onQuadratic oracleTolerance p 3 sf acc)

        property "accelerated SGD ≡ QHM: a·g + b·trace_μ(g) = (a + b/(1 − μ))·((1 − ν)g + ν·EMA_μ(g)) with ν = b/(a(1 − μ) + b)" (Gen.zip3 genLongProblem genRate (Gen.zip3 genOpen genOpen genOpen)) (fun (p, lr, (a, b, mu)) ->
            let scale = a + b / (1.0 - mu)
            let nu = b / (a * (1.0 - mu) + b)
            onStream oracleTolerance p (form (accelerated lr a b mu)) (form (Optim.Qhm(lr * scale, mu, nu))))

        testCase "the analysis decides them exactly: Schedule-Free (constant c) ≡ accelerated SGD ≡ QHM(γ, 1 − c, β); a perturbed weight ≢" <| fun () ->
            for beta, c in [ 0.9, 0.1; 0.5, 0.02; 0.98, 0.5 ] do
                let lr = 0.1
                let sf = form (scheduleFree lr beta c)
                let acc = form (accelerated lr (1.0 - beta) (beta * c) (1.0 - c))
                let qhm = form (Optim.Qhm(lr, 1.0 - c, beta))
                for a, b, what in [ sf, acc, "SF ≡ accelerated"; acc, qhm, "accelerated ≡ QHM"; sf, qhm, "SF ≡ QHM" ] do
                    let d = Analysis.Equal(a, b)
                    Expect.isTrue (d.Decided && d.Equal) (sprintf "%s at β = %g, c = %g: %O" what beta c d)
                let off = Analysis.Equal(sf, form (Optim.Qhm(lr, 1.0 - c, beta + 1e-6)))
                Expect.isTrue (off.Decided && not off.Equal) (sprintf "ν = β + 1e-6 is another optimizer: %O" off)

        testCase "the analysis solves for QHM's ν that makes it Schedule-Free SGD: ν = β, the only root" <| fun () ->
            let found = Analysis.SolveScalar((fun nu -> form (Optim.Qhm(0.1, 0.9, nu))), form (scheduleFree 0.1 0.7 0.1), 0.0, 1.0)
            Expect.equal found.Count 1 (sprintf "one ν: %A" found)
            Expect.floatClose Accuracy.high found.[0] 0.7 "ν = β"

        // AdEMAMix's numerator with β₁ = 0 is g + α·EMA_β₃(g) = g + α(1 − β₃)·trace_β₃(g): accelerated SGD's, under Adam's
        // denominator. Simplified-AdEMAMix (the paper's) keeps this form: α_s·g + trace_β(g), so AdEMAMix(η, β₁ = 0, β₃, α)
        // is Simplified-AdEMAMix with α_s = 1/(α(1 − β₃)) and η_s = η·α(1 − β₃).
        property "AdEMAMix with β₁ = 0 ≡ Adam's denominator over the accelerated numerator g + α(1 − β₃)·trace_β₃(g)" (Gen.zip3 genLongProblem genRate (Gen.zip (Gen.elements [ 0.9; 0.99; 0.999 ]) (Gen.elements [ 0.5; 2.0; 8.0 ]))) (fun (p, lr, (beta3, alpha)) ->
            let ademamix = Optim.AdEMAMix(lr, 0.0, 0.999, beta3, alpha)
            let numerator = Transforms.Mix(Transforms.Identity(), Transforms.Trace beta3, (fun _ -> alpha * (1.0 - beta3)), "accelerated")
            let explicit = Transforms.Chain(Transforms.Precondition(PreconditionOptions(Decay = 0.999, Epsilon = 1e-8), numerator), Transforms.Scale -lr)
            onStream oracleTolerance p (form ademamix) (form explicit))

        testCase "AdEMAMix's momentum without the denominator is linear, and the analysis decides it is QHM(η(1 + α), β₃, α/(1 + α)) at β₁ = 0" <| fun () ->
            for beta3, alpha in [ 0.9, 2.0; 0.99, 0.5 ] do
                let momentum = Transforms.Chain(Transforms.Mix(Transforms.Ema(0.0, debias = true), Transforms.Ema beta3, (fun _ -> alpha), "fast_and_slow"), Transforms.Scale -0.01)
                let d = Analysis.Equal(form momentum, form (Optim.Qhm(0.01 * (1.0 + alpha), beta3, alpha / (1.0 + alpha))))
                Expect.isTrue (d.Decided && d.Equal) (sprintf "β₃ = %g, α = %g: %O" beta3 alpha d)
                let withFast = Transforms.Chain(Transforms.Mix(Transforms.Ema(0.5), Transforms.Ema beta3, (fun _ -> alpha), "fast_and_slow"), Transforms.Scale -0.01)
                let d2 = Analysis.Equal(form withFast, form (Optim.Qhm(0.01 * (1.0 + alpha), beta3, alpha / (1.0 + alpha))))
                Expect.isTrue (d2.Decided && not d2.Equal) (sprintf "β₁ = 0.5 adds a second pole: %O" d2)
    ]
