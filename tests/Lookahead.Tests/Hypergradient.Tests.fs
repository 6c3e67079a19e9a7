/// Hypergradient descent (Baydin et al. 2018): SGD-HD, SGDN-HD and Adam-HD against independent loops of the official
/// algorithms (gbaydin/hypergradient-descent) on generated problems, whole trajectories and the learning rate in
/// float64; the combinator with a zero hypergradient rate ≡ its inner optimizer; the rate as state.
module Lookahead.Tests.Hypergradient

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
let private genHypergradientRate = Gen.elements [ 1e-4; 1e-3; 1e-2 ]

/// Left-to-right Σ a·b (the netlib ddot the reference cases used).
let private dot (a: float[]) (b: float[]) =
    let mutable s = 0.0
    for j in 0 .. a.Length - 1 do s <- s + a.[j] * b.[j]
    s

/// The official SGDHD step on flat arrays: everything concatenated over the parameters. Returns, per step, the
/// parameters and the rate that step used.
let private sgdHdLoop lr momentum dampening wd nesterov hlr (p: Problem) =
    let sizes = p.Params0 |> List.map Array.length
    let split (flat: float[]) = sizes |> List.scan (+) 0 |> List.pairwise |> List.map (fun (a, b) -> flat.[a .. b - 1])
    let x = Array.concat p.Params0
    let previous = Array.zeroCreate x.Length
    let buffer = Array.zeroCreate x.Length
    let mutable rate = lr
    [ for k, grads in List.indexed p.Grads do
        let g = Array.mapi (fun j gj -> gj + wd * x.[j]) (Array.concat grads)
        rate <- rate + hlr * dot g previous
        let d =
            if momentum = 0.0 then Array.copy g
            else
                for j in 0 .. g.Length - 1 do buffer.[j] <- if k = 0 then g.[j] else momentum * buffer.[j] + (1.0 - dampening) * g.[j]
                if nesterov then Array.init g.Length (fun j -> g.[j] + momentum * buffer.[j]) else Array.copy buffer
        Array.blit d 0 previous 0 d.Length
        for j in 0 .. x.Length - 1 do x.[j] <- x.[j] - rate * d.[j]
        yield split x, rate ]

/// The official AdamHD step on per-parameter arrays: the rate moves inside the parameter loop, once per parameter.
let private adamHdLoop lr b1 b2 eps wd hlr (p: Problem) =
    let theta = p.Params0 |> List.map Array.copy
    let m = theta |> List.map (fun a -> Array.zeroCreate a.Length)
    let v = theta |> List.map (fun a -> Array.zeroCreate a.Length)
    let mutable rate = lr
    [ for k, grads in List.indexed p.Grads do
        let t = float (k + 1)
        for i, g0 in List.indexed grads do
            let th, mi, vi = theta.[i], m.[i], v.[i]
            let g = Array.mapi (fun j gj -> gj + wd * th.[j]) g0
            if k > 0 then
                let direction = Array.init g.Length (fun j -> mi.[j] / (sqrt vi.[j] + eps))
                let h = dot g direction * sqrt (1.0 - b2 ** (t - 1.0)) / (1.0 - b1 ** (t - 1.0))
                rate <- rate + hlr * h
            for j in 0 .. g.Length - 1 do
                mi.[j] <- b1 * mi.[j] + (1.0 - b1) * g.[j]
                vi.[j] <- b2 * vi.[j] + (1.0 - b2) * g.[j] * g.[j]
            let stepSize = rate * sqrt (1.0 - b2 ** t) / (1.0 - b1 ** t)
            for j in 0 .. g.Length - 1 do th.[j] <- th.[j] - stepSize * mi.[j] / (sqrt vi.[j] + eps)
        yield theta |> List.map Array.copy, rate ]

/// The state's hypergradient-descent rate.
let rate (state: IOptState) = Hypergradient.LearningRate state

/// Runs `tx` on the problem's gradient stream; per step the parameters and the state's rate.
let private runWithRate (tx: IGradientTransformation) (p: Problem) =
    use _ = torch.NewDisposeScope()
    let mutable theta = tree p p.Params0
    let mutable state = tx.Init theta
    [ for grads in p.Grads do
        let struct (u, next) = tx.Update(tree p grads, state, theta, StepContext.Empty)
        theta <- Updates.Apply(theta, u)
        state <- next
        yield [ for t in theta.Tensors -> values t ], rate state ]

/// Compares whole trajectories and rates within 1e-10 + 1e-8·|b|; fails if the rate never moved (the test would
/// then not exercise the hypergradient).
let private agree lr (expected: (float[] list * float) list) (actual: (float[] list * float) list) =
    List.iteri2 (fun k (e, er) (a, ar) ->
        Lookahead.Tests.RecentOptimizers.closeTo (sprintf "step %d" (k + 1)) 1e-10 e a
        if abs (ar - er) > 1e-10 + 1e-8 * abs er then failtestf "step %d: learning rate %.17g against %.17g" (k + 1) ar er) expected actual
    if snd (List.last expected) = lr then failtest "the reference's rate never moved: the case does not exercise the hypergradient"

let private nonzero (p: Problem) = { p with Grads = p.Grads |> List.map (List.map (Array.map (fun x -> if x = 0.0 then 1e-3 else x))) }

let private genSgdSettings =
    Gen.elements [ 0.0, 0.0, false; 0.9, 0.0, false; 0.5, 0.3, false; 0.9, 0.0, true; 0.99, 0.0, true ]

[<Tests>]
let tests =
    testList "hypergradient descent (SGD-HD, SGDN-HD, Adam-HD)" [
        property "SGD-HD ≡ the official SGDHD loop (momentum off, heavy ball with and without dampening, Nesterov; weight decay on and off)"
            (Gen.zip3 genLongProblem (Gen.zip genRate genHypergradientRate) (Gen.zip genSgdSettings (Gen.elements [ 0.0; 0.01 ]))) (fun (p, (lr, hlr), ((mu, damp, nesterov), wd)) ->
            let p = nonzero p
            agree lr (sgdHdLoop lr mu damp wd nesterov hlr p) (runWithRate (Optim.SgdHD(lr, mu, damp, wd, nesterov, hlr)) p))

        property "Adam-HD ≡ the official AdamHD loop (the rate moves once per parameter; weight decay on and off)"
            (Gen.zip3 genLongProblem (Gen.zip genRate genHypergradientRate) (Gen.zip3 (Gen.elements [ 0.0; 0.5; 0.9 ]) (Gen.elements [ 0.0; 0.01 ]) (Gen.elements [ 0.99, 1e-8; 0.999, 1e-8; 0.999, 1e-3 ]))) (fun (p, (lr, hlr), (b1, wd, (b2, eps))) ->
            let p = nonzero p
            agree lr (adamHdLoop lr b1 b2 eps wd hlr p) (runWithRate (Optim.AdamHD(lr, b1, b2, eps, wd, hlr)) p))

        property "Adam-HD's per-parameter rate differs from one global change when there are several parameters" (Gen.zip (genLongProblem |> Gen.filter (fun p -> p.Params0.Length > 1)) genRate) (fun (p, lr) ->
            let p = nonzero p
            do
                let unit = Transforms.Chain(Transforms.Precondition(PreconditionOptions(Decay = 0.999, Epsilon = 1e-8, EpsilonPlacement = EpsilonPlacement.Uncorrected), Transforms.Ema(0.9, debias = true)), Transforms.Scale -1.0)
                let globalForm = Transforms.HypergradientDescent(unit, lr, 1e-2, HypergradientScope.Global)
                let r = Equivalence.Compare(form (Optim.AdamHD(lr, hypergradientLr = 1e-2)), form globalForm, stream p [], p.Grads.Length, oracleTolerance)
                Expect.isFalse r.Equivalent (string r))

        property "a zero hypergradient rate ≡ the inner optimizer at α₀: SGD-HD ≡ SGD, Adam-HD (ε = 0) ≡ Adam (ε = 0)"
            (Gen.zip3 genLongProblem genRate genSgdSettings) (fun (p, lr, (mu, damp, nesterov)) ->
            let p = nonzero p
            onStream oracleTolerance p (form (Optim.SgdHD(lr, mu, damp, 0.01, nesterov, 0.0))) (form (Optim.Sgd(lr, mu, damp, 0.01, nesterov)))
            onStream oracleTolerance p (form (Optim.AdamHD(lr, 0.9, 0.999, 0.0, 0.0, 0.0))) (form (Optim.Adam(lr, 0.9, 0.999, 0.0))))

        testCase "the rate is state: the first step keeps α₀, later steps move it, and a checkpoint restores it" <| fun () ->
            use _ = torch.NewDisposeScope()
            let theta = TensorTree.Of(struct ("w", torch.tensor([| 1.0; -2.0 |], dtype = torch.float64)))
            let g = TensorTree.Of(struct ("w", torch.tensor([| 0.5; 0.25 |], dtype = torch.float64)))
            let tx = Optim.SgdHD(0.1, hypergradientLr = 0.5)
            let s0 = tx.Init theta
            Expect.equal (rate s0) 0.1 "α₀ before the first step"
            let struct (u1, s1) = tx.Update(g, s0, theta, StepContext.Empty)
            Expect.equal (rate s1) 0.1 "the first step's dot is with zero"
            Expect.sequenceEqual (values u1.Tensors.[0]) [| -0.05; -0.025 |] "plain SGD at α₀"
            let struct (u2, s2) = tx.Update(g, s1, theta, StepContext.Empty)
            // α₂ = α₁ + β⟨g, g⟩ = 0.1 + 0.5·0.3125 (the same gradient twice: consecutive steps agree, the rate grows).
            Expect.floatClose Accuracy.veryHigh (rate s2) 0.25625 "α ← α + β⟨g, dₜ₋₁⟩"
            Expect.floatClose Accuracy.veryHigh (values u2.Tensors.[0]).[0] (-0.25625 * 0.5) "the update uses the new rate"
            Expect.throwsC (fun () -> Hypergradient.LearningRate(Optim.Sgd(0.1).Init theta) |> ignore) (fun e -> Expect.stringContains e.Message "no hypergradient-descent rate" "says there is none")
            let two = Transforms.Chain(Optim.SgdHD(0.1), Optim.SgdHD(0.2))
            Expect.equal (Hypergradient.LearningRates(two.Init theta).Values |> List.ofSeq) [ 0.1; 0.2 ] "one rate per node, in order"
            Expect.throwsC (fun () -> Hypergradient.LearningRate(two.Init theta) |> ignore) (fun e -> Expect.stringContains e.Message "LearningRates" "points to the plural")
            let set = Hypergradient.WithLearningRate(s2, 0.5)
            Expect.equal (rate set) 0.5 "the rate is settable between steps"
            let struct (u3, _) = tx.Update(g, set, theta, StepContext.Empty)
            Expect.floatClose Accuracy.veryHigh (values u3.Tensors.[0]).[0] (-(0.5 + 0.5 * 0.3125) * 0.5) "the next step starts from the set rate"
            Expect.throwsC (fun () -> Hypergradient.WithLearningRate(s2, nan) |> ignore) (fun e -> Expect.stringContains e.Message "lr" "a non-finite rate is refused")
            let path = IO.Path.Combine(IO.Path.GetTempPath(), sprintf "lookahead-hd-%s.ckpt" (Guid.NewGuid().ToString "N"))
            try
                Checkpoint.Save(path, tx, s2, theta)
                let restored = Checkpoint.Load(path, tx, theta)
                Expect.equal (rate restored) (rate s2) "the rate round-trips through a checkpoint"
            finally IO.File.Delete path

        testCase "bad input: negative rates and a missing inner optimizer are named; a rate that overflows changes nothing" <| fun () ->
            Expect.throwsC (fun () -> Optim.SgdHD(0.1, hypergradientLr = -1.0) |> ignore) (fun e -> Expect.stringContains e.Message "hypergradientLr" "names the parameter")
            Expect.throwsC (fun () -> Optim.AdamHD(-0.1) |> ignore) (fun e -> Expect.stringContains e.Message "lr = -0.1" "names the parameter")
            Expect.throwsC (fun () -> Transforms.HypergradientDescent(null, 0.1, 0.0) |> ignore) (fun e -> Expect.stringContains e.Message "unitStep" "names the parameter")
            use _ = torch.NewDisposeScope()
            let theta = TensorTree.Of(struct ("w", torch.tensor([| 1.0 |], dtype = torch.float64)))
            let tx = Optim.SgdHD(0.1, hypergradientLr = 1e300)
            let struct (_, s1) = tx.Update(TensorTree.Of(struct ("w", torch.tensor([| 1e10 |], dtype = torch.float64))), tx.Init theta, theta, StepContext.Empty)
            let before = [ for l in s1.Leaves() -> l.Path, (if isNull l.Tensor then [||] else values l.Tensor), l.Scalar ]
            let g = TensorTree.Of(struct ("w", torch.tensor([| 1e10 |], dtype = torch.float64)))
            Expect.throwsC (fun () -> tx.Update(g, s1, theta, StepContext.Empty) |> ignore) (fun e -> Expect.stringContains e.Message "hypergradientLr" "says what to change")
            let after = [ for l in s1.Leaves() -> l.Path, (if isNull l.Tensor then [||] else values l.Tensor), l.Scalar ]
            Expect.equal after before "the state is unchanged"
            Expect.sequenceEqual (values g.Tensors.[0]) [| 1e10 |] "the gradient is unchanged"
            let nan = TensorTree.Of(struct ("w", torch.tensor([| nan |], dtype = torch.float64)))
            Expect.throwsC (fun () -> tx.Update(nan, s1, theta, StepContext.Empty) |> ignore) (fun e -> Expect.stringContains e.Message "'w'" "a non-finite gradient names its tensor")
            // The runner: the same overflow leaves its state and the parameters as they were.
            let parameters = TensorTree.Of(struct ("w", torch.tensor([| 1.0 |], dtype = torch.float64)))
            use runner = new Runner(Optim.SgdHD(0.1, momentum = 0.9, hypergradientLr = 1e300), parameters)
            runner.Step(TensorTree.Of(struct ("w", torch.tensor([| 1e10 |], dtype = torch.float64))), StepContext.Empty)
            let snapshot () = [ for l in runner.State.Leaves() -> l.Path, (if isNull l.Tensor then [||] else values l.Tensor), l.Scalar ], values parameters.["w"]
            let before = snapshot ()
            Expect.throwsC (fun () -> runner.Step(TensorTree.Of(struct ("w", torch.tensor([| 1e10 |], dtype = torch.float64))), StepContext.Empty)) (fun e -> Expect.stringContains e.Message "hypergradientLr" "says what to change")
            Expect.equal (snapshot ()) before "the runner's state and parameters are unchanged"
    ]
