/// The laws of the algebra, as properties over generated parameter trees (1–4 tensors, ranks 0–3, up to
/// 64 elements), gradient streams (1–50 steps) and random primitives with random valid settings.
module Lookahead.Tests.Laws

open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators
open Lookahead.Tests.Expect


let private withPrimitives n = gen {
    let! p = genProblem
    let! txs = Gen.listOfLength n genPrimitive
    return p, txs }

[<Tests>]
let tests =
    testList "laws" [
        property "chain [chain [a; b]; c] ≡ chain [a; chain [b; c]] (bit-identical)" (withPrimitives 3) (fun (p, txs) ->
            let a, b, c = txs.[0], txs.[1], txs.[2]
            Expect.identical
                (Expect.run (Transforms.Chain(Transforms.Chain(a, b), c)) p)
                (Expect.run (Transforms.Chain(a, Transforms.Chain(b, c))) p))

        property "chain [identity; a] ≡ a ≡ chain [a; identity] (bit-identical)" (withPrimitives 1) (fun (p, txs) ->
            let a = txs.[0]
            let reference = Expect.run a p
            Expect.identical (Expect.run (Transforms.Chain(Transforms.Identity(), a)) p) reference
            Expect.identical (Expect.run (Transforms.Chain(a, Transforms.Identity())) p) reference)

        property "scale a then scale b ≡ scale (a·b) (|Δ| ≤ 1e-12 + 1e-14·|b|)"
            (gen { let! p = genProblem in let! a = genCoefficient in let! b = genCoefficient in return p, a, b })
            (fun (p, a, b) ->
                Expect.close 1e-12 1e-14
                    (Expect.run (Transforms.Chain(Transforms.Scale a, Transforms.Scale b)) p)
                    (Expect.run (Transforms.Scale(a * b)) p))

        property "ema 0 ≡ identity, with and without debiasing (bit-identical)"
            (gen { let! p = genProblem in let! d = Gen.elements [ true; false ] in return p, d })
            (fun (p, debias) ->
                Expect.identical (Expect.run (Transforms.Ema(0.0, debias)) p) (Expect.run (Transforms.Identity()) p))

        property "zero-initialised undamped trace β ≡ ema β (no debias) / (1−β) (|Δ| ≤ 1e-9 + 1e-10·|b|)"
            (gen { let! p = genProblem in let! b = genDecay in return p, b })
            (fun (p, beta) ->
                Expect.close 1e-9 1e-10
                    (Expect.run (Transforms.Trace beta) p)
                    (Expect.run (Transforms.Chain(Transforms.Ema beta, Transforms.Scale(1.0 / (1.0 - beta)))) p))

        property "partition with an always-true predicate ≡ the transform itself (bit-identical)" (withPrimitives 2) (fun (p, txs) ->
            let a = Transforms.Chain(txs.[0], txs.[1])
            let reference = Expect.run a p
            Expect.identical (Expect.run (Transforms.Partition((fun _ -> true), a, Transforms.Sign())) p) reference
            Expect.identical (Expect.run (Transforms.Partition((fun _ -> false), Transforms.Sign(), a)) p) reference)

        property "purity: update leaves gradients, parameters and state bit-identical" (withPrimitives 3) (fun (p, txs) ->
            use _ = torch.NewDisposeScope()
            let tx = Transforms.Chain txs
            let parameters = tree p p.Params0
            let mutable state = tx.Init parameters
            for g in p.Grads do
                let grads = tree p g
                let gradsBefore, paramsBefore = grads.Clone(), parameters.Clone()
                let stateBefore = Expect.stateLeaves state
                let struct (_, next) = tx.Update(grads, state, parameters, StepContext.Empty)
                Expect.treesIdentical "gradients" grads gradsBefore
                Expect.treesIdentical "parameters" parameters paramsBefore
                let stateAfter = Expect.stateLeaves state
                Array.iter2 (fun (pa, va) (pb, vb) ->
                    Expect.equal pa pb "state paths"
                    Expect.isTrue (Array.forall2 Expect.bitEqual va vb) (sprintf "state leaf %s changed" pa)) stateBefore stateAfter
                state <- next)

        property "determinism: the same inputs give bit-identical updates and states" (withPrimitives 3) (fun (p, txs) ->
            let tx = Transforms.Chain txs
            let a, b = Expect.run tx p, Expect.run tx p
            Expect.identical a b
            List.iter2 (fun (sa: (string * float[])[]) sb ->
                Array.iter2 (fun (pa, va) (pb, vb) ->
                    Expect.equal pa pb "state paths"
                    Expect.isTrue (Array.forall2 Expect.bitEqual va vb) (sprintf "state leaf %s differs" pa)) sa sb) a.States b.States)
    ]
