/// Two differently written optimizers that are the same algorithm, compared over whole trajectories.
module Lookahead.Tests.Equivalences

open Expecto
open FsCheck
open FsCheck.FSharp
open Lookahead
open Lookahead.Tests.Generators
open Lookahead.Tests.Expect


[<Tests>]
let tests =
    testList "equivalences" [
        property "adam with β1 = 0 ≡ the RMS preconditioner with bias correction (|Δ| = 0)"
            (gen { let! p = genLongProblem in let! lr, b2, eps = Gen.zip3 genRate genDecay genEps in return p, lr, b2, eps })
            (fun (p, lr, b2, eps) ->
                let rms = Transforms.Chain(Transforms.Precondition(PreconditionOptions(Decay = b2, Epsilon = eps, BiasCorrection = true)), Transforms.Scale(-lr))
                Expect.close 0.0 0.0 (Expect.run (Optim.Adam(lr, 0.0, b2, eps)) p) (Expect.run rms p))

        property "sgd (momentum β, dampening β) ≡ EMA heavy ball started at the first gradient (|Δ| = 0)"
            (gen { let! p = genLongProblem in let! lr, b = Gen.zip genRate genDecay in return p, lr, b })
            (fun (p, lr, beta) ->
                let emaHeavyBall = Transforms.Chain(Transforms.Ema(beta, startAtFirstUpdate = true), Transforms.Scale(-lr))
                Expect.close 0.0 0.0 (Expect.run (Optim.Sgd(lr, beta, beta)) p) (Expect.run emaHeavyBall p))

        property "named chain ≡ chain (bit-identical)"
            (gen { let! p = genProblem in let! a, b = Gen.zip genPrimitive genPrimitive in return p, a, b })
            (fun (p, a, b) ->
                Expect.identical
                    (Expect.run (Transforms.NamedChain(struct ("first", a), struct ("second", b))) p)
                    (Expect.run (Transforms.Chain(a, b)) p))

        // The F# settings records' defaults are checked one optimizer at a time in SeedOptimizers.Fs.Tests.fs.
    ]
