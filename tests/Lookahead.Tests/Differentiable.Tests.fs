/// The differentiable path (Differentiable.Unroll): the same values as the pure path; gradients through K unrolled
/// steps with respect to the initial parameters and to the data against central finite differences of the pure path
/// (which never records a graph and takes its gradients from the closed form), and SGD on a quadratic against its
/// closed-form Jacobian; truncation; the graph freed after backward; refusals that name the primitive.
module Lookahead.Tests.DifferentiablePath

open System
open Expecto
open TorchSharp
open Lookahead

type private T = torch.Tensor

/// A random quadratic over a tree of two tensors ("w" [3], "m" [2, 2]): loss_t(θ) = ½ xᵀAx − (c + dₜ)ᵀx with x the
/// flattened tree, A = MᵀM/n + I/2, and a validation objective J(θ) = ½ xᵀAx − c_valᵀx + ¼ Σ x⁴ (not quadratic, so
/// second derivatives matter).
type private Problem =
    { A: float[,]; C: float[]; Shifts: float[][]; CVal: float[]; Theta0: float[] }

let private n = 7
let private shapes = [ "w", [| 3L |]; "m", [| 2L; 2L |] ]

let private problem (seed: int) steps =
    let rng = Random(seed)
    let u () = rng.NextDouble() * 2.0 - 1.0
    let m = Array2D.init n n (fun _ _ -> u ())
    let a = Array2D.init n n (fun i j -> (Seq.sum (seq { for k in 0 .. n - 1 -> m.[k, i] * m.[k, j] })) / float n + (if i = j then 0.5 else 0.0))
    { A = a; C = Array.init n (fun _ -> u ()); Shifts = Array.init steps (fun _ -> Array.init n (fun _ -> 0.1 * u ()))
      CVal = Array.init n (fun _ -> u ()); Theta0 = Array.init n (fun _ -> u ()) }

let private vec (xs: float[]) = torch.tensor(xs, dtype = torch.float64)

let private tree (x: T) =
    let parts = x.split([| 3L; 4L |])
    TensorTree.Of([| for (name, shape), p in List.zip shapes (List.ofArray parts) -> struct (name, p.reshape(shape)) |])

let private flat (t: TensorTree) = torch.cat([| for x in t.Tensors -> x.flatten() |], 0L)

let private matrix (a: float[,]) = torch.tensor(a, dtype = torch.float64)

/// A·x on the host, in index order: torch's mv rounds differently with its operands' alignment (two results seen over
/// 200 fresh allocations of the same 7×7 product), so the reference paths compute the gradient here.
let private hostMv (a: float[,]) (x: T) =
    let xs = x.data<float>().ToArray()
    vec (Array.init n (fun i -> Seq.fold (fun acc k -> acc + a.[i, k] * xs.[k]) 0.0 (seq { 0 .. n - 1 })))

/// loss_t on a tree, as tensors (data c may require grad).
let private trainLoss (p: Problem) (c: T) (theta: TensorTree) (t: int64) =
    let x = flat theta
    let a = matrix p.A
    let ct = c + vec p.Shifts.[int t - 1]
    0.5 * x.dot(a.mv(x)) - ct.dot(x)

let private objective (p: Problem) (theta: TensorTree) =
    let x = flat theta
    0.5 * x.dot((matrix p.A).mv(x)) - (vec p.CVal).dot(x) + 0.25 * x.pow(torch.tensor(4.0, dtype = torch.float64)).sum()

/// J after K steps on the pure path, with the closed-form gradient A x − cₜ: no autograd anywhere.
let private pureObjective (tx: IGradientTransformation) (p: Problem) (theta0: float[]) (c: float[]) steps =
    use scope = torch.NewDisposeScope()
    use noGrad = torch.no_grad()
    let mutable theta = tree (vec theta0)
    let mutable state = tx.Init theta
    for t in 1 .. steps do
        let x = flat theta
        let ax = hostMv p.A x
        let g = ax - (vec c + vec p.Shifts.[t - 1])
        let l = 0.5 * x.dot(ax) - (vec c + vec p.Shifts.[t - 1]).dot(x)
        let struct (u, s) = tx.Update(tree g, state, theta, StepContext.Empty.WithLoss(l.item<float>()))
        theta <- Updates.Apply(theta, u)
        state <- s
    let x = flat theta
    (0.5 * x.dot(hostMv p.A x) - (vec p.CVal).dot(x) + 0.25 * x.pow(torch.tensor(4.0, dtype = torch.float64)).sum()).item<float>()

/// The pure trajectory's final parameters and losses (as float arrays).
let private pureRun (tx: IGradientTransformation) (p: Problem) steps =
    use scope = torch.NewDisposeScope()
    use noGrad = torch.no_grad()
    let mutable theta = tree (vec p.Theta0)
    let mutable state = tx.Init theta
    let losses = ResizeArray()
    for t in 1 .. steps do
        let x = flat theta
        let ct = vec p.C + vec p.Shifts.[t - 1]
        let ax = hostMv p.A x
        let g = ax - ct
        let xs, axs, cts = x.data<float>().ToArray(), ax.data<float>().ToArray(), ct.data<float>().ToArray()
        let l = Array.fold2 (fun acc xi ai -> acc + 0.5 * xi * ai) 0.0 xs axs - Array.fold2 (fun acc ci xi -> acc + ci * xi) 0.0 cts xs   // host sums (torch's dot also rounds by alignment)
        losses.Add l
        let struct (u, s) = tx.Update(tree g, state, theta, StepContext.Empty.WithLoss l)
        theta <- Updates.Apply(theta, u)
        state <- s
    (flat theta).data<float>().ToArray(), losses.ToArray()

/// The eight optimizers the issue names, at rates that move a unit-scale quadratic visibly in 20 steps.
let private optimizers : (string * IGradientTransformation) list =
    [ "sgd-momentum", Optim.Sgd(0.05, momentum = 0.9)
      "nesterov", Optim.NesterovSgd(0.05, 0.9, weightDecay = 0.01)
      "adam", Optim.Adam(0.05)
      "adamw", Optim.AdamW(0.05, weightDecay = 0.1)
      "qhm", Optim.Qhm(0.1, 0.9, 0.7, weightDecay = 0.01)
      "rsg", Optim.Rsg(0.05, 0.9, 0.1)
      "mars (AdamW rule, no clip)", Optim.Mars(lr = 0.01, clip = false)
      "ademamix (warm-ups)", Optim.AdEMAMix(0.02, beta3 = 0.999, alpha = 5.0, beta3Warmup = 10, alphaWarmup = 10) ]

/// Further differentiable compositions for the value check (AMSGrad's max, a partition, Nesterov's generalisation).
let private more : (string * IGradientTransformation) list =
    [ "amsgrad", Optim.AmsGrad(0.05)
      "generalised nesterov", Optim.GeneralisedNesterov(0.05, 0.9, 0.5)
      "rmsprop centered", Optim.RmsProp(0.01, momentum = 0.5, centered = true)
      "qh-adam", Optim.QhAdam(0.05, nu1 = 0.7, nu2 = 0.9)
      "partition", Transforms.Partition((fun (info: ParameterInfo) -> if info.Name = "w" then "a" else "b"), struct ("a", Optim.Adam(0.05)), struct ("b", Optim.Sgd(0.1, momentum = 0.5))) ]

let private close (tol: float) (name: string) (a: float[]) (b: float[]) =
    Expect.equal a.Length b.Length $"{name}: lengths"
    for i in 0 .. a.Length - 1 do
        let err = abs (a.[i] - b.[i])
        if err > 1e-12 + tol * abs b.[i] then failtestf "%s: element %d differs: %.17g vs %.17g (|Δ| = %.3g)" name i a.[i] b.[i] err

/// ⟨∇J, v⟩ by autograd through Unroll, for a direction v in θ₀ and one in c.
let private autogradDirectional (tx: IGradientTransformation) (p: Problem) steps (vTheta: float[]) (vC: float[]) =
    use scope = torch.NewDisposeScope()
    let x0 = (vec p.Theta0).requires_grad_(true)
    let c = (vec p.C).requires_grad_(true)
    use unrolled = Differentiable.Unroll(tx, tree x0, (fun theta t -> trainLoss p c theta t), steps)
    let j = objective p unrolled.Parameters
    j.backward()
    let gTheta = x0.grad.data<float>().ToArray()
    let gC = c.grad.data<float>().ToArray()
    Array.fold2 (fun s a b -> s + a * b) 0.0 gTheta vTheta, Array.fold2 (fun s a b -> s + a * b) 0.0 gC vC

let private finiteDifference f (x: float[]) (v: float[]) h =
    let at s = Array.map2 (fun a b -> a + s * b) x v
    (f (at h) - f (at -h)) / (2.0 * h)

let private unit (rng: Random) =
    let v = Array.init n (fun _ -> rng.NextDouble() * 2.0 - 1.0)
    let norm = sqrt (Array.sumBy (fun a -> a * a) v)
    Array.map (fun a -> a / norm) v

/// Central differences with step h = 1e-5 along unit directions: truncation error ~h²·J''' ≈ 1e-10 and rounding
/// ≈ 1e-16/h ≈ 1e-11 relative here, far inside the 1e-6 asked of the agreement.
let private fdStep = 1e-5

/// The rounding floor of those differences (J is O(1): ~1e-16/h absolute). Adam-type first steps are ≈ −lr·sign(g), so
/// their derivative with respect to the data is ~1e-8 and only this floor applies there; every other comparison is
/// relative.
let private fdFloor = 1e-10

/// The exception of type 'e that f throws (fails the test if it throws none or another).
let private catch<'e when 'e :> exn> (f: unit -> unit) : 'e =
    try
        f ()
        failtestf "expected %s, nothing was thrown" typeof<'e>.Name
    with
    | :? 'e as e -> e
    | e when (e :? Expecto.AssertException) -> raise e
    | e -> failtestf "expected %s, got %s: %s" typeof<'e>.Name (e.GetType().Name) e.Message

/// The eight optimizers again, as functions of their hyperparameters (the Hyper overloads), with the hyperparameters
/// whose derivatives are checked and their values. The same function builds the FD side from plain numbers.
let private hyperOptimizers : (string * (Map<string, Hyper> -> IGradientTransformation) * (string * float) list) list =
    [ "sgd-momentum", (fun h -> Optim.Sgd(h.["lr"], h.["momentum"], h.["dampening"], h.["weightDecay"], false)),
      [ "lr", 0.05; "momentum", 0.9; "dampening", 0.1; "weightDecay", 0.01 ]
      "nesterov", (fun h -> Optim.NesterovSgd(h.["lr"], h.["momentum"], h.["weightDecay"])),
      [ "lr", 0.05; "momentum", 0.9; "weightDecay", 0.01 ]
      "adam", (fun h -> Optim.Adam(h.["lr"], h.["beta1"], h.["beta2"], h.["eps"], h.["weightDecay"], false)),
      [ "lr", 0.05; "beta1", 0.9; "beta2", 0.99; "eps", 1e-3; "weightDecay", 0.01 ]
      "adamw", (fun h -> Optim.AdamW(h.["lr"], h.["beta1"], h.["beta2"], h.["eps"], h.["weightDecay"], false)),
      [ "lr", 0.05; "beta1", 0.9; "beta2", 0.99; "eps", 1e-3; "weightDecay", 0.1 ]
      "qhm", (fun h -> Optim.Qhm(h.["lr"], h.["momentum"], h.["nu"], h.["weightDecay"], QhmWeightDecay.Gradient)),
      [ "lr", 0.1; "momentum", 0.9; "nu", 0.7; "weightDecay", 0.01 ]
      "rsg", (fun h -> Optim.Rsg(h.["lr"], h.["momentum"], h.["mu"], h.["weightDecay"])),
      [ "lr", 0.05; "momentum", 0.9; "mu", 0.1; "weightDecay", 0.01 ]
      "mars (AdamW rule, no clip)", (fun h -> Optim.Mars(h.["lr"], h.["beta1"], h.["beta2"], h.["eps"], h.["weightDecay"], false, h.["gamma"], false, MarsType.AdamW, false, 3e-3, Nullable(), 0.1, false)),
      [ "lr", 0.01; "beta1", 0.95; "beta2", 0.99; "eps", 1e-3; "weightDecay", 0.01; "gamma", 0.025 ]
      "ademamix (warm-ups)", (fun h -> Optim.AdEMAMix(h.["lr"], h.["beta1"], h.["beta2"], h.["beta3"], h.["alpha"], Nullable 10, Nullable 10, h.["eps"], h.["weightDecay"])),
      [ "lr", 0.02; "beta1", 0.9; "beta2", 0.999; "beta3", 0.999; "alpha", 5.0; "eps", 1e-3; "weightDecay", 0.01 ] ]

let private numbers (values: (string * float) list) = values |> List.map (fun (k, v) -> k, Hyper.op_Implicit v) |> Map.ofList

/// dJ/dh for every hyperparameter, by autograd through Unroll with each hyperparameter a tensor that requires grad.
let private hyperGradients build (values: (string * float) list) (p: Problem) steps =
    use scope = torch.NewDisposeScope()
    let tensors = values |> List.map (fun (k, v) -> k, torch.tensor(v, dtype = torch.float64).requires_grad_(true))
    let tx = build (tensors |> List.map (fun (k, t) -> k, Hyper.Of t) |> Map.ofList)
    use unrolled = Differentiable.Unroll(tx, tree (vec p.Theta0), (fun theta t -> trainLoss p (vec p.C) theta t), steps)
    (objective p unrolled.Parameters).backward()
    tensors |> List.map (fun (k, t) -> k, (match t.grad with null -> 0.0 | g -> g.item<float>()))

/// dJ/dh by a fourth-order central difference, (8(J(h+δ) − J(h−δ)) − (J(h+2δ) − J(h−2δ)))/(12δ) with δ = 1e-4·|h|:
/// truncation ~δ⁴ and rounding ~1e-16/δ, both far below the 1e-6 asked.
let private hyperDifference build (values: (string * float) list) (p: Problem) steps name =
    let h = values |> List.find (fst >> (=) name) |> snd
    let delta = 1e-4 * abs h
    let at x = pureObjective (build (numbers (values |> List.map (fun (k, v) -> k, (if k = name then x else v))))) p p.Theta0 p.C steps
    (8.0 * (at (h + delta) - at (h - delta)) - (at (h + 2.0 * delta) - at (h - 2.0 * delta))) / (12.0 * delta)

[<Tests>]
let tests =
    testSequenced <| testList "Differentiable" [
        testList "the differentiable path gives the pure path's values (20 steps, 1e-12 + 1e-10·|b|)" [
            for name, tx in optimizers @ more ->
                test name {
                    for seed in [ 1; 2; 3 ] do
                        let p = problem seed 20
                        let expected, expectedLosses = pureRun tx p 20
                        use scope = torch.NewDisposeScope()
                        let c = (vec p.C).requires_grad_(true)
                        use unrolled = Differentiable.Unroll(tx, tree (vec p.Theta0), (fun theta t -> trainLoss p c theta t), 20)
                        Expect.isTrue (unrolled.Parameters.Tensors |> Seq.forall (fun t -> t.requires_grad)) "the final parameters are in the graph"
                        close 1e-10 $"{name} seed {seed} parameters" ((flat unrolled.Parameters).detach().data<float>().ToArray()) expected
                        close 1e-10 $"{name} seed {seed} losses" [| for l in unrolled.Losses -> l.item<float>() |] expectedLosses
                }
        ]

        testList "gradients through K steps ≡ central finite differences of the pure path (relative 1e-6)" [
            for name, tx in optimizers do
                for steps in [ 1; 5; 20 ] ->
                    test $"{name}, K = {steps}" {
                        for seed in [ 11; 12 ] do
                            let p = problem seed steps
                            let rng = Random(seed * 31)
                            for _ in 1 .. 2 do
                                let vTheta, vC = unit rng, unit rng
                                let adTheta, adC = autogradDirectional tx p steps vTheta vC
                                let fdTheta = finiteDifference (fun x -> pureObjective tx p x p.C steps) p.Theta0 vTheta fdStep
                                let fdC = finiteDifference (fun c -> pureObjective tx p p.Theta0 c steps) p.C vC fdStep
                                for what, ad, fd in [ "θ₀", adTheta, fdTheta; "data c", adC, fdC ] do
                                    if abs (ad - fd) > 1e-6 * abs fd + fdFloor then
                                        failtestf "%s K=%d seed %d, d/d%s: autograd %.12g vs FD %.12g (|Δ| = %.2g, relative %.2g)" name steps seed what ad fd (abs (ad - fd)) (abs (ad - fd) / abs fd)
                                Expect.isGreaterThan (abs fdTheta) 1e-3 $"{name}: the derivative along the direction is not negligible (the check has teeth)"
                    }
        ]

        testList "hypergradients through K steps ≡ fourth-order central differences of the pure path (relative 1e-6)" [
            for name, build, values in hyperOptimizers do
                let names = values |> List.map fst |> String.concat ", "
                for steps in [ 1; 5; 20 ] ->
                    test $"{name}, K = {steps}: {names}" {
                        let p = problem 31 steps
                        let ad = hyperGradients build values p steps
                        let mutable worst = 0.0
                        for h, g in ad do
                            let fd = hyperDifference build values p steps h
                            if abs (g - fd) > 1e-6 * abs fd + fdFloor then
                                failtestf "%s K=%d, d/d%s: autograd %.12g vs FD %.12g (|Δ| = %.2g, relative %.2g)" name steps h g fd (abs (g - fd)) (abs (g - fd) / abs fd)
                            if abs fd > 1e-6 then worst <- max worst (abs (g - fd) / abs fd)
                        printfn "hypergradients %s K=%d: worst relative difference from FD %.2g (derivatives above 1e-6)" name steps worst
                        Expect.isGreaterThan (abs (ad |> List.find (fst >> (=) "lr") |> snd)) 1e-3 $"{name}: the learning rate's derivative is not negligible"
                    }
        ]

        test "tensor hyperparameters are the same optimizer: pure path bit-identical, Unroll within 1e-12, the runner bit-identical with no tensor per step" {
            for name, build, values in hyperOptimizers do
                let p = problem 41 10
                use scope = torch.NewDisposeScope()
                let tensors = values |> List.map (fun (k, v) -> k, Hyper.Of(torch.tensor(v, dtype = torch.float64).requires_grad_(true))) |> Map.ofList
                let withTensors, plain = build tensors, build (numbers values)
                let a, la = pureRun withTensors p 10
                let b, lb = pureRun plain p 10
                Expect.equal a b $"{name}: pure path, tensors vs numbers"
                Expect.equal la lb $"{name}: losses"
                Expect.equal withTensors.Spec plain.Spec $"{name}: the same spec (checkpoints agree)"
                use unrolled = Differentiable.Unroll(withTensors, tree (vec p.Theta0), (fun theta t -> trainLoss p (vec p.C) theta t), 10)
                close 1e-10 $"{name}: Unroll with tensor hyperparameters vs the pure path with numbers" ((flat unrolled.Parameters).detach().data<float>().ToArray()) b
                // The runner on the same gradients: the values, and nothing made per step.
                let runOn (tx: IGradientTransformation) =
                    let theta = tree (vec p.Theta0)
                    let owned = TensorTree.Of([| for KeyValue(k, t) in theta -> struct (k, t.clone()) |])
                    use runner = new Runner(tx, owned)
                    let live = ResizeArray()
                    for t in 1 .. 10 do
                        use s = torch.NewDisposeScope()
                        let x = flat owned
                        let g = hostMv p.A x - (vec p.C + vec p.Shifts.[t - 1])
                        runner.Step(tree g, StepContext.Empty)
                        live.Add DisposeScopeManager.Statistics.ThreadTotalLiveCount
                    (flat owned).data<float>().ToArray(), live.[9] - live.[4]
                let ra, growth = runOn withTensors
                let rb, _ = runOn plain
                Expect.equal ra rb $"{name}: runner, tensors vs numbers"
                Expect.equal growth 0L $"{name}: no tensors accumulate over runner steps with tensor hyperparameters"
        }

        test "SGD on a quadratic: ∂(wᵀθ_K)/∂θ₀ = ((I − ηA)ᴷ)ᵀw and ∂/∂c = η Σₜ ((I − ηA)ᴷ⁻ᵗ)ᵀw (closed form, 1e-12)" {
            let steps, lr = 15, 0.08
            let p = problem 5 steps
            let rng = Random 9
            let w = Array.init n (fun _ -> rng.NextDouble() - 0.5)
            // Powers of B = I − ηA on plain arrays.
            let b = Array2D.init n n (fun i j -> (if i = j then 1.0 else 0.0) - lr * p.A.[i, j])
            let mul (x: float[,]) (y: float[,]) = Array2D.init n n (fun i j -> Seq.sum (seq { for k in 0 .. n - 1 -> x.[i, k] * y.[k, j] }))
            let powers = Array.scan (fun acc _ -> mul acc b) (Array2D.init n n (fun i j -> if i = j then 1.0 else 0.0)) [| 1 .. steps |]
            let transposeTimes (m: float[,]) = Array.init n (fun j -> Seq.sum (seq { for i in 0 .. n - 1 -> m.[i, j] * w.[i] }))
            let expectedTheta = transposeTimes powers.[steps]
            let expectedC = Array.init n (fun j -> lr * Seq.sum (seq { for t in 1 .. steps -> (transposeTimes powers.[steps - t]).[j] }))
            // θ₀ as views of one leaf (two tensors), and as the leaf itself (one tensor).
            for asLeaf in [ false; true ] do
                use scope = torch.NewDisposeScope()
                let x0 = (vec p.Theta0).requires_grad_(true)
                let c = (vec p.C).requires_grad_(true)
                let initial = if asLeaf then TensorTree.Of(struct ("x", x0)) else tree x0
                use unrolled = Differentiable.Unroll(Optim.Sgd(lr), initial, (fun theta t -> trainLoss p c theta t), steps)
                (flat unrolled.Parameters).dot(vec w).backward()
                close 1e-12 $"∂/∂θ₀ (leaf: {asLeaf})" (x0.grad.data<float>().ToArray()) expectedTheta
                close 1e-12 $"∂/∂c (leaf: {asLeaf})" (c.grad.data<float>().ToArray()) expectedC
            // ∂(wᵀθ_K)/∂η by the recursion Dₖ = (I − ηA)Dₖ₋₁ − (Aθₖ₋₁ − cₖ), D₀ = 0, on plain arrays.
            let mv (m: float[,]) (x: float[]) = Array.init n (fun i -> Seq.sum (seq { for k in 0 .. n - 1 -> m.[i, k] * x.[k] }))
            let mutable theta = Array.copy p.Theta0
            let mutable d = Array.zeroCreate n
            for t in 1 .. steps do
                let g = Array.map2 (-) (mv p.A theta) (Array.map2 (+) p.C p.Shifts.[t - 1])
                d <- Array.map2 (-) (mv b d) g
                theta <- Array.map2 (fun x gx -> x - lr * gx) theta g
            let expectedLr = Array.fold2 (fun acc wi di -> acc + wi * di) 0.0 w d
            use scope = torch.NewDisposeScope()
            let lrT = torch.tensor(lr, dtype = torch.float64).requires_grad_(true)
            use unrolled = Differentiable.Unroll(Optim.Sgd(Hyper.Of lrT, 0.0, 0.0, 0.0, false), tree (vec p.Theta0), (fun theta t -> trainLoss p (vec p.C) theta t), steps)
            (flat unrolled.Parameters).dot(vec w).backward()
            close 1e-12 "∂/∂η" [| lrT.grad.item<float>() |] [| expectedLr |]
        }

        test "truncation: the last k steps are recorded; gradients equal those of the full unroll with the data detached before them" {
            let steps, k = 12, 4
            let p = problem 21 steps
            let tx = Optim.Adam(0.05)
            let gradient truncate =
                use scope = torch.NewDisposeScope()
                let c = (vec p.C).requires_grad_(true)
                let data t = if truncate || t > int64 (steps - k) then c else c.detach()
                use unrolled = Differentiable.Unroll(tx, tree (vec p.Theta0), (fun theta t -> trainLoss p (data t) theta t), steps, ?truncate = (if truncate then Some k else None))
                Expect.equal unrolled.RecordedSteps (if truncate then k else steps) "recorded steps"
                let early = unrolled.Losses |> Seq.take (steps - k) |> Seq.forall (fun l -> not l.requires_grad)
                if truncate then Expect.isTrue early "losses before the truncation are detached"
                let values = (flat unrolled.Parameters).detach().data<float>().ToArray()
                (objective p unrolled.Parameters).backward()
                values, c.grad.data<float>().ToArray()
            let fullValues, fullGrad = gradient false
            let truncValues, truncGrad = gradient true
            close 1e-12 "values" truncValues fullValues
            close 1e-10 "gradient wrt the data through the last k steps" truncGrad fullGrad
            Expect.isGreaterThan (truncGrad |> Array.map abs |> Array.max) 1e-6 "a non-zero gradient"
        }

        test "the graph is freed: after backward and Dispose the live-tensor count is back where it was" {
            let p = problem 3 10
            let live () = DisposeScopeManager.Statistics.ThreadTotalLiveCount
            let x0 = (vec p.Theta0).requires_grad_(true)
            let c = (vec p.C).requires_grad_(true)
            let initial = tree x0
            // The test's own temporaries die in scopes; only the library's tensors could stay alive.
            let scoped f = (use scope = torch.NewDisposeScope() in (f () : T).MoveToOuterDisposeScope())
            let run () =
                let unrolled = Differentiable.Unroll(Optim.AdamW(0.05, weightDecay = 0.1), initial, (fun theta t -> scoped (fun () -> trainLoss p c theta t)), 10)
                use j = scoped (fun () -> objective p unrolled.Parameters)
                j.backward()
                unrolled.Dispose()
                use g = x0.grad
                use s = g.sum()
                s.item<float>() |> ignore
            run ()   // the first run creates the leaves' .grad tensors
            let before = live ()
            for _ in 1 .. 3 do run ()
            Expect.equal (live ()) before $"live tensors after three unroll-backward-dispose rounds (before: {before})"
        }

        testList "refusals name the primitive that has no differentiable form" [
            for name, tx, kind in [ "Lion (sign)", Optim.Lion(1e-3), "sign"
                                    "MARS with its clip", Optim.Mars(lr = 0.01), "gradient_correction"
                                    "SPS (Polyak truncation)", Optim.Sps(), "polyak_truncation"
                                    "clip by global norm", Transforms.Chain(Transforms.ClipByGlobalNorm(1.0), Optim.Sgd(0.1)), "clip_by_global_norm"
                                    "Muon (Newton–Schulz)", Optim.Muon(), "orthogonalise"
                                    "SGD-HD (host-side rate)", Optim.SgdHD(0.1), "hypergradient_descent" ] ->
                test name {
                    let why = Differentiable.Refusal tx
                    Expect.isNotNull why $"{name} is refused"
                    Expect.stringContains why $"'{kind}'" "the message names the primitive"
                    let p = problem 1 3
                    let x0 = vec p.Theta0
                    let before = x0.data<float>().ToArray()
                    let e = catch<NotSupportedException> (fun () -> Differentiable.Unroll(tx, tree x0, (fun theta t -> trainLoss p (vec p.C) theta t), 3) |> ignore)
                    Expect.equal e.Message why "the error is the refusal"
                    Expect.equal (x0.data<float>().ToArray()) before "the parameters are unchanged"
                }
            yield test "every optimizer the gradient checks use is accepted" {
                for name, tx in optimizers @ more do Expect.isNull (Differentiable.Refusal tx) $"{name} is differentiable"
            }
        ]

        test "bad input names the argument" {
            let p = problem 1 3
            let loss theta t = trainLoss p (vec p.C) theta t
            let x0 () = tree (vec p.Theta0)
            let tx = Optim.Adam(0.05)
            let argument name f =
                let e = catch<ArgumentException> f
                Expect.equal e.ParamName name $"names {name}: {e.Message}"
            argument "steps" (fun () -> Differentiable.Unroll(tx, x0 (), loss, 0) |> ignore)
            argument "truncate" (fun () -> Differentiable.Unroll(tx, x0 (), loss, 3, 4) |> ignore)
            argument "truncate" (fun () -> Differentiable.Unroll(tx, x0 (), loss, 3, 0) |> ignore)
            argument "initial" (fun () -> Differentiable.Unroll(tx, TensorTree.Of(struct ("k", torch.ones([| 3L |], dtype = torch.int64))), (fun _ _ -> torch.zeros(1)), 3) |> ignore)
            let e = catch<InvalidOperationException> (fun () -> Differentiable.Unroll(tx, x0 (), (fun theta _ -> flat theta), 3) |> ignore)
            Expect.stringContains e.Message "scalar" "a vector loss is refused"
            let e = catch<InvalidOperationException> (fun () -> Differentiable.Unroll(tx, x0 (), (fun _ _ -> torch.tensor(1.0, dtype = torch.float64)), 3) |> ignore)
            Expect.stringContains e.Message "does not depend on the parameters" "a constant loss is refused"
            argument "tensor" (fun () -> Hyper.Of(torch.ones([| 2L |], dtype = torch.float64)) |> ignore)
            argument "tensor" (fun () -> Hyper.Of(torch.tensor(1L)) |> ignore)
            argument "tensor" (fun () -> Hyper.Of(torch.tensor(nan, dtype = torch.float64)) |> ignore)
            argument "lr" (fun () -> Optim.Adam(Hyper.Of(torch.tensor(-0.1, dtype = torch.float64)), 0.9, 0.999, 1e-8, 0.0, false) |> ignore)
            argument "beta1" (fun () -> Optim.Adam(0.1, Hyper.Of(torch.tensor(1.0, dtype = torch.float64)), 0.999, 1e-8, 0.0, false) |> ignore)
        }
    ]
