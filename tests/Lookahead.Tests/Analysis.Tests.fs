/// Optimizers as linear systems: realisations probed from the transforms themselves, and exact equivalence
/// decisions for the linear equivalences the README states (and their near misses), checked against the sampled
/// checker where it applies.
module Lookahead.Tests.Analysis

open Expecto
open Lookahead

let form tx = OptimizerForm(tx)
let formAt mu tx = OptimizerForm(tx, mu)

let marsMomentum (gamma: float) (beta: float) (eta: float) =
    Transforms.Chain(Transforms.GradientCorrection(Transforms.MarsScale(gamma, beta)), Transforms.Ema beta, Transforms.Scale -eta)

let decidedEqual what a b =
    let r = Analysis.Equal(a, b)
    Expect.isTrue r.Decided (sprintf "%s: decided exactly (%O)" what r)
    Expect.isTrue r.Equal (sprintf "%s: equal (%O)" what r)

let decidedDifferent what a b =
    let r = Analysis.Equal(a, b)
    Expect.isTrue r.Decided (sprintf "%s: decided exactly (%O)" what r)
    Expect.isFalse r.Equal (sprintf "%s: not equal (%O)" what r)
    Expect.isNotNull r.FirstDifference (sprintf "%s: names the first difference" what)

[<Tests>]
let tests =
    testList "analysis (linear realisations, exact equivalence)" [
        testCase "an EMA step is linear and time-invariant; torch's SGD momentum settles after its first-step buffer copy" <| fun () ->
            let ema = Analysis.Realise(form (Transforms.Chain(Transforms.Ema 0.9, Transforms.Scale -0.1)))
            Expect.isTrue ema.TimeInvariant (string ema)
            Expect.equal ema.Order 2 "the EMA and θ"
            let sgd = Analysis.Realise(form (Optim.Sgd(0.1, 0.9)))
            Expect.isTrue sgd.Linear (string sgd)
            Expect.isFalse sgd.TimeInvariant "the first step copies g into the buffer"
            Expect.equal sgd.SettlesAt 2 (string sgd)
            Expect.equal sgd.StateNames.[sgd.Order - 1] "θ" "the iterate is the last coordinate"
            // A debiased EMA divides by 1 − βᵗ: linear, but a different step every time.
            let debiased = form (Transforms.Chain(Transforms.Trace(0.9, 0.9, debias = true), Transforms.Scale -0.1))
            let r = Analysis.Realise(debiased)
            Expect.isTrue (r.Linear && not r.Settled) (string r)
            let same = Analysis.Equal(debiased, debiased, 25)
            Expect.isTrue (same.Decided && same.Equal && same.Horizon = 25) (sprintf "compared over the horizon asked for: %O" same)

        testCase "Adam, the global-norm clip and Lion are not linear, and the realisation names the primitive" <| fun () ->
            for tx, primitive in [ Optim.Adam(0.01), "precondition"
                                   Transforms.Chain(Transforms.ClipByGlobalNorm 1.0, Optim.Sgd(0.1)), "clip_by_global_norm"
                                   Optim.Lion(0.01), "sign" ] do
                let r = Analysis.Realise(form tx)
                Expect.isFalse r.Linear (string r)
                Expect.stringContains r.NotLinearBecause primitive (sprintf "%s: names %s" tx.Name primitive)

        testCase "the README's linear equivalences are decided equal exactly" <| fun () ->
            let alpha, beta, mu, gamma, eta = 0.1, 0.9, 0.3, 0.025, 0.01
            decidedEqual "RSG ≡ QHM(ν = 1 − μ)" (form (Optim.Rsg(alpha, beta, mu))) (form (Optim.Qhm(alpha, beta, 1.0 - mu)))
            decidedEqual "RSG(μ = 0) ≡ heavy ball(α(1 − β), β)" (form (Optim.Rsg(alpha, beta, 0.0))) (form (Optim.HeavyBall(alpha * (1.0 - beta), beta)))
            decidedEqual "QHM(ν = β) ≡ Nesterov SGD(α(1 − β), β)" (form (Optim.Qhm(alpha, beta, beta))) (form (Optim.NesterovSgd(alpha * (1.0 - beta), beta)))
            decidedEqual "QHM(ν = 1) ≡ SGD momentum(α(1 − β), β)" (form (Optim.Qhm(alpha, beta, 1.0))) (form (Optim.Sgd(alpha * (1.0 - beta), beta)))
            decidedEqual "MARS momentum ≡ generalised Nesterov(η(1 − β), β, γβ/(1 − β))"
                (form (marsMomentum gamma beta eta)) (form (Optim.GeneralisedNesterov(eta * (1.0 - beta), beta, gamma * beta / (1.0 - beta))))
            decidedEqual "ARSG paper: original form (2) ≡ fast form (4)"
                (formAt (mu * beta / (1.0 - beta)) (Transforms.Chain(Transforms.Ema beta, Transforms.Scale -alpha))) (form (Optim.Rsg(alpha, beta, mu)))

        testCase "near misses are decided not equal, with the first difference" <| fun () ->
            let alpha, beta, mu = 0.1, 0.9, 0.3
            decidedDifferent "RSG vs QHM(ν = 1 − μ + 1e-6)" (form (Optim.Rsg(alpha, beta, mu))) (form (Optim.Qhm(alpha, beta, 1.0 - mu + 1e-6)))
            decidedDifferent "MARS momentum vs generalised Nesterov with μ = 0.9"
                (form (marsMomentum 1.0 0.9 0.01)) (form (Optim.GeneralisedNesterov(0.01 * 0.1, 0.9, 0.9)))
            // torch's first step copies g into the buffer, where a damped trace starts from (1 − δ)·g.
            decidedDifferent "damped SGD momentum vs a damped trace (first step)"
                (form (Optim.Sgd(0.1, 0.9, 0.5))) (form (Transforms.Chain(Transforms.Trace(0.9, 0.5), Transforms.Scale -0.1)))
            decidedEqual "damped SGD momentum ≡ a damped trace that starts at the first update"
                (form (Optim.Sgd(0.1, 0.9, 0.5))) (form (Transforms.Chain(Transforms.Trace(0.9, 0.5, startAtFirstUpdate = true), Transforms.Scale -0.1)))

        testCase "the exact decision agrees with the sampled checker on the same pairs" <| fun () ->
            let alpha, beta, mu = 0.1, 0.9, 0.3
            let pairs =
                [ form (Optim.Rsg(alpha, beta, mu)), form (Optim.Qhm(alpha, beta, 1.0 - mu))
                  form (Optim.Rsg(alpha, beta, mu)), form (Optim.Qhm(alpha, beta, 1.0 - mu + 1e-3))
                  form (Optim.Sgd(0.1, 0.9, 0.5)), form (Transforms.Chain(Transforms.Trace(0.9, 0.5), Transforms.Scale -0.1)) ]
            for a, b in pairs do
                let exact = Analysis.Equal(a, b)
                let sampled = Equivalence.Check(a, b, EquivalenceOptions(Cases = 5, Steps = 30, Method = EquivalenceMethod.Sampled))
                Expect.equal exact.Equal sampled.Passed (sprintf "%O vs %O: exact %O, sampled %O" a b exact sampled)

        testCase "a non-linear form gets no exact answer, and the reason names it" <| fun () ->
            let r = Analysis.Equal(form (Optim.Adam(0.01)), form (Optim.Sgd(0.1)))
            Expect.isFalse r.Decided (string r)
            Expect.stringContains r.Reason "not linear" "says why"
    ]
