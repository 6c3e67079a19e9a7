/// Primitives and the optimizers not covered by oracle cases, against independent array
/// implementations of torch.optim's documented update rules (shared/oracle/README.md).
module Lookahead.Tests.Primitives

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators
open Lookahead.Tests.Expect

/// Independent references: plain loops over the flattened parameters, written from torch's rules.
module Reference =
    let flatten (xs: float[] list) = Array.concat xs

    let unflatten (p: Problem) (flat: float[]) =
        let sizes = p.Shapes |> List.map numel
        let starts = List.scan (+) 0 sizes
        [ for s, n in List.zip (List.take sizes.Length starts) sizes -> flat.[s .. s + n - 1] ]

    /// Runs an elementwise rule `step t p g` (mutating p and its own state) and records p after each step.
    let run (p: Problem) (step: int -> float[] -> float[] -> unit) =
        let theta = flatten p.Params0
        [ for k, g in List.indexed p.Grads ->
            step (k + 1) theta (flatten g)
            unflatten p (Array.copy theta) |> Array.ofList ]

    let sgd lr mu damp wd nesterov (p: Problem) =
        let buf = Array.zeroCreate (flatten p.Params0).Length
        run p (fun t theta g ->
            for i in 0 .. theta.Length - 1 do
                let d = g.[i] + wd * theta.[i]
                let dir =
                    if mu = 0.0 then d
                    else
                        buf.[i] <- (if t = 1 then d else mu * buf.[i] + (1.0 - damp) * d)
                        if nesterov then d + mu * buf.[i] else buf.[i]
                theta.[i] <- theta.[i] - lr * dir)

    let radam lr b1 b2 eps wd (p: Problem) =
        let n = (flatten p.Params0).Length
        let m, v = Array.zeroCreate n, Array.zeroCreate n
        run p (fun t theta g ->
            let bc1, bc2 = 1.0 - b1 ** float t, 1.0 - b2 ** float t
            let rhoInf = 2.0 / (1.0 - b2) - 1.0
            let rhoT = rhoInf - 2.0 * float t * (b2 ** float t) / bc2
            for i in 0 .. n - 1 do
                let gi = g.[i] + wd * theta.[i]
                m.[i] <- b1 * m.[i] + (1.0 - b1) * gi
                v.[i] <- b2 * v.[i] + (1.0 - b2) * gi * gi
                let mhat = m.[i] / bc1
                if rhoT > 5.0 then
                    let r = sqrt ((rhoT - 4.0) * (rhoT - 2.0) * rhoInf / ((rhoInf - 4.0) * (rhoInf - 2.0) * rhoT))
                    theta.[i] <- theta.[i] - mhat * lr * (sqrt bc2 / (sqrt v.[i] + eps)) * r
                else theta.[i] <- theta.[i] - mhat * lr)

    let rmsprop lr alpha eps wd mu centered (p: Problem) =
        let n = (flatten p.Params0).Length
        let sq, ga, buf = Array.zeroCreate n, Array.zeroCreate n, Array.zeroCreate n
        run p (fun _ theta g ->
            for i in 0 .. n - 1 do
                let gi = g.[i] + wd * theta.[i]
                sq.[i] <- alpha * sq.[i] + (1.0 - alpha) * gi * gi
                let avg =
                    if centered then
                        ga.[i] <- alpha * ga.[i] + (1.0 - alpha) * gi
                        sqrt (sq.[i] - ga.[i] * ga.[i]) + eps
                    else sqrt sq.[i] + eps
                if mu > 0.0 then
                    buf.[i] <- mu * buf.[i] + gi / avg
                    theta.[i] <- theta.[i] - lr * buf.[i]
                else theta.[i] <- theta.[i] - lr * gi / avg)

    let adagrad lr lrDecay wd init eps (p: Problem) =
        let n = (flatten p.Params0).Length
        let sum = Array.create n init
        run p (fun t theta g ->
            let clr = lr / (1.0 + float (t - 1) * lrDecay)
            for i in 0 .. n - 1 do
                let gi = g.[i] + wd * theta.[i]
                sum.[i] <- sum.[i] + gi * gi
                theta.[i] <- theta.[i] - clr * gi / (sqrt sum.[i] + eps))

    /// Lion (Chen et al. 2023, Algorithm 2): c = β₁m + (1−β₁)g, θ ← θ − η(sign c + λθ), then m ← β₂m + (1−β₂)g.
    let lion lr b1 b2 wd (p: Problem) =
        let n = (flatten p.Params0).Length
        let m = Array.zeroCreate n
        run p (fun _ theta g ->
            for i in 0 .. n - 1 do
                let c = b1 * m.[i] + (1.0 - b1) * g.[i]
                theta.[i] <- theta.[i] - lr * (float (sign c) + wd * theta.[i])
                m.[i] <- b2 * m.[i] + (1.0 - b2) * g.[i])

    /// Adam with ε inside the root: θ ← θ − η·m̂/sqrt(v̂ + ε_root).
    let adamEpsRoot lr b1 b2 epsRoot (p: Problem) =
        let n = (flatten p.Params0).Length
        let m, v = Array.zeroCreate n, Array.zeroCreate n
        run p (fun t theta g ->
            for i in 0 .. n - 1 do
                m.[i] <- b1 * m.[i] + (1.0 - b1) * g.[i]
                v.[i] <- b2 * v.[i] + (1.0 - b2) * g.[i] * g.[i]
                let mhat, vhat = m.[i] / (1.0 - b1 ** float t), v.[i] / (1.0 - b2 ** float t)
                theta.[i] <- theta.[i] - lr * mhat / sqrt (vhat + epsRoot))


let tol = 1e-10, 1e-8

let againstReference (tx: IGradientTransformation) (p: Problem) (expected: float[][] list) =
    let ours = Expect.run tx p
    let atol, rtol = tol
    Expect.closeParams atol rtol ours { ours with Params = expected }

[<Tests>]
let tests =
    testList "optimizers against independent references (|a−b| ≤ 1e-10 + 1e-8·|b|)" [
        property "SGD: momentum, dampening, weight decay, Nesterov"
            (gen {
                let! p = genLongProblem
                let! lr, mu, wd = Gen.zip3 (genRate) (genDecay) (Gen.elements [ 0.0; 0.01; 0.1 ])
                let! nesterov = Gen.elements [ true; false ]
                let! damp = if nesterov then Gen.constant 0.0 else genDecay
                return p, lr, mu, damp, wd, nesterov })
            (fun (p, lr, mu, damp, wd, nesterov) ->
                let mu = if nesterov then max mu 0.1 else mu
                againstReference (Optim.Sgd(lr, mu, damp, wd, nesterov)) p (Reference.sgd lr mu damp wd nesterov p))

        property "heavy ball with dampening ≡ torch SGD rule"
            // μ = 0 (no buffer, dampening ignored, as in torch) is drawn often on purpose: it once failed.
            (gen { let! p = genLongProblem in let! lr, mu, damp = Gen.zip3 genRate (Gen.frequency [ 1, Gen.constant 0.0; 4, genDecay ]) genDecay in return p, lr, mu, damp })
            (fun (p, lr, mu, damp) -> againstReference (Optim.HeavyBall(lr, mu, damp)) p (Reference.sgd lr mu damp 0.0 false p))

        property "RAdam (both branches of the rectification)"
            (gen {
                let! p = genLongProblem
                let! lr = genRate
                let! b1, b2 = Gen.zip (genDecay) (Gen.elements [ 0.9; 0.99; 0.999 ])
                let! eps, wd = Gen.zip (genEps) (Gen.elements [ 0.0; 0.01 ])
                return p, lr, b1, b2, eps, wd })
            (fun (p, lr, b1, b2, eps, wd) -> againstReference (Optim.RAdam(lr, b1, b2, eps, wd)) p (Reference.radam lr b1 b2 eps wd p))

        property "RMSprop: plain and centered, with and without momentum"
            (gen {
                let! p = genLongProblem
                // α ≥ 0.5: with α near 0 the centered variance is identically zero and D = ε, so the
                // comparison would measure rounding residues amplified by 1/ε, not the rule.
                let! lr, alpha, eps = Gen.zip3 genRate (Gen.choose (500, 999) |> Gen.map (fun i -> float i / 1000.0)) genEps
                let! wd, mu = Gen.zip (Gen.elements [ 0.0; 0.01 ]) (Gen.elements [ 0.0; 0.5; 0.9 ])
                let! centered = Gen.elements [ true; false ]
                return p, lr * 0.1, alpha, eps, wd, mu, centered })
            (fun (p, lr, alpha, eps, wd, mu, centered) ->
                againstReference (Optim.RmsProp(lr, alpha, eps, wd, mu, centered)) p (Reference.rmsprop lr alpha eps wd mu centered p))

        property "Lion: sign of the interpolation, momentum tracked with β₂, decoupled weight decay"
            (gen {
                let! p = genLongProblem
                let! lr, wd = Gen.zip genRate (Gen.elements [ 0.0; 0.01; 0.1 ])
                let! b2 = Gen.elements [ 0.9; 0.99; 0.999 ]
                let! b1 = Gen.elements [ 0.0; 0.5; 0.9 ] |> Gen.map (fun b -> min b b2)
                return p, lr, b1, b2, wd })
            (fun (p, lr, b1, b2, wd) -> againstReference (Optim.Lion(lr, b1, b2, wd)) p (Reference.lion lr b1 b2 wd p))

        testCase "centered RMSprop stays finite where rounding leaves v − ḡ² below zero" <| fun () ->
            // A constant gradient: v → g² and ḡ → g, so v − ḡ² is 0 in exact arithmetic and, for some entries and
            // steps, a hair below 0 in float64. The test first checks (in plain floats, with the kernels' fused
            // multiply-adds) that the stream reaches that case, then that no parameter becomes NaN.
            let alpha, steps = 0.5, 80
            let g = Array.init 64 (fun i -> 0.1 + 0.0137 * float i)
            let mutable reached = 0
            for c in g do
                let mutable v, m = 0.0, 0.0
                for _ in 1 .. steps do
                    v <- Math.FusedMultiplyAdd((1.0 - alpha) * c, c, alpha * v)
                    m <- Math.FusedMultiplyAdd(1.0 - alpha, c, alpha * m)
                    if Math.FusedMultiplyAdd(-m, m, v) < 0.0 then reached <- reached + 1
            Expect.isGreaterThan reached 0 "the stream makes v − ḡ² negative somewhere"
            let p = { Names = [ "w" ]; Shapes = [ [| 64L |] ]; Params0 = [ Array.zeroCreate 64 ]; Grads = List.replicate steps [ g ] }
            let trajectory = run (Optim.RmsProp(0.01, alpha, 1e-8, 0.0, 0.0, true)) p
            trajectory.Params |> List.iteri (fun k ps ->
                ps.[0] |> Array.iteri (fun i x -> if not (Double.IsFinite x) then failtestf "step %d, w[%d] = %g" (k + 1) i x))

        property "Adagrad: lr decay, initial accumulator, weight decay"
            (gen {
                let! p = genLongProblem
                let! lr, lrDecay = Gen.zip (genRate) (Gen.elements [ 0.0; 0.01; 0.5 ])
                let! wd, init = Gen.zip (Gen.elements [ 0.0; 0.01 ]) (Gen.elements [ 0.0; 0.1; 1.0 ])
                return p, lr, lrDecay, wd, init })
            (fun (p, lr, lrDecay, wd, init) ->
                againstReference (Optim.Adagrad(lr, lrDecay, wd, init)) p (Reference.adagrad lr lrDecay wd init 1e-10 p))

        property "precondition with ε inside the root"
            (gen { let! p = genLongProblem in let! lr, b1, b2 = Gen.zip3 genRate genDecay genDecay in let! e = genEps in return p, lr, b1, b2, e })
            (fun (p, lr, b1, b2, epsRoot) ->
                let tx =
                    Transforms.Chain(
                        Transforms.Precondition(PreconditionOptions(Decay = b2, Epsilon = 0.0, EpsilonRoot = epsRoot), Transforms.Ema(b1, debias = true)),
                        Transforms.Scale(-lr))
                againstReference tx p (Reference.adamEpsRoot lr b1 b2 epsRoot p))
    ]

let private single (values: float[]) = Generators.tree { Names = [ "w" ]; Shapes = [ [| int64 values.Length |] ]; Params0 = []; Grads = [] } [ values ]

let private step (tx: IGradientTransformation) (p: float[]) (g: float[]) =
    use _ = torch.NewDisposeScope()
    let parameters = single p
    let struct (u, _) = tx.Update(single g, tx.Init parameters, parameters, StepContext.Empty)
    values u.Tensors.[0]

[<Tests>]
let stateless =
    testList "stateless primitives" [
        test "sign maps to -1, 0, 1" {
            Expect.equal (step (Transforms.Sign()) [| 0.; 0.; 0. |] [| -2.5; 0.0; 1e-9 |]) [| -1.0; 0.0; 1.0 |] "signs"
        }
        test "add decayed weights adds λθ" {
            Expect.equal (step (Transforms.AddDecayedWeights 0.5) [| 2.0; -4.0 |] [| 1.0; 1.0 |]) [| 2.0; -1.0 |] "u + λθ"
        }
        test "clip by global norm: long vectors are scaled to the bound, short ones untouched" {
            // ‖(3, 4)‖ = 5: clipped to norm 1 it is (0.6, 0.8); with bound 10 it is unchanged.
            let clipped = step (Transforms.ClipByGlobalNorm 1.0) [| 0.; 0. |] [| 3.0; 4.0 |]
            Expect.floatClose Accuracy.veryHigh clipped.[0] 0.6 "x"
            Expect.floatClose Accuracy.veryHigh clipped.[1] 0.8 "y"
            Expect.equal (step (Transforms.ClipByGlobalNorm 10.0) [| 0.; 0. |] [| 3.0; 4.0 |]) [| 3.0; 4.0 |] "below the bound"
            Expect.equal (step (Transforms.ClipByGlobalNorm 1.0) [| 0.; 0. |] [| 0.0; 0.0 |]) [| 0.0; 0.0 |] "zero stays zero"
        }
        test "clip by global norm spans every tensor of the tree" {
            use _ = torch.NewDisposeScope()
            let t (xs: float[]) = torch.tensor(xs, dtype = torch.float64)
            let parameters = TensorTree.Of(struct ("a", t [| 0. |]), struct ("b", t [| 0. |]))
            let grads = TensorTree.Of(struct ("a", t [| 3. |]), struct ("b", t [| 4. |]))
            let tx = Transforms.ClipByGlobalNorm 1.0
            let struct (u, _) = tx.Update(grads, tx.Init parameters, parameters, StepContext.Empty)
            Expect.floatClose Accuracy.veryHigh (values u.["a"]).[0] 0.6 "a"
            Expect.floatClose Accuracy.veryHigh (values u.["b"]).[0] 0.8 "b"
        }
        test "scale by schedule sees the steps 1, 2, 3" {
            use _ = torch.NewDisposeScope()
            let tx = Transforms.ScaleBySchedule(fun t -> float t)
            let parameters = single [| 0. |]
            let mutable state = tx.Init parameters
            let seen =
                [ for _ in 1 .. 3 ->
                    let struct (u, s) = tx.Update(single [| 1.0 |], state, parameters, StepContext.Empty)
                    state <- s
                    (values u.Tensors.[0]).[0] ]
            Expect.equal seen [ 1.0; 2.0; 3.0 ] "s(t) for t = 1, 2, 3"
        }
        test "trace with torch's first-step convention starts at the first update" {
            use _ = torch.NewDisposeScope()
            let tx = Transforms.Trace(0.9, 0.5, startAtFirstUpdate = true)
            let parameters = single [| 0. |]
            let struct (u1, s1) = tx.Update(single [| 2.0 |], tx.Init parameters, parameters, StepContext.Empty)
            let struct (u2, _) = tx.Update(single [| 4.0 |], s1, parameters, StepContext.Empty)
            Expect.equal (values u1.Tensors.[0]) [| 2.0 |] "m₁ = g₁"
            Expect.floatClose Accuracy.veryHigh (values u2.Tensors.[0]).[0] (0.9 * 2.0 + 0.5 * 4.0) "m₂ = βm₁ + (1−δ)g₂"
        }
    ]
