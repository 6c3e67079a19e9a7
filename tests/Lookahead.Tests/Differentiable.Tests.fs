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
        let g = (matrix p.A).mv(x) - (vec c + vec p.Shifts.[t - 1])
        let l = 0.5 * x.dot((matrix p.A).mv(x)) - (vec c + vec p.Shifts.[t - 1]).dot(x)
        let struct (u, s) = tx.Update(tree g, state, theta, StepContext.Empty.WithLoss(l.item<float>()))
        theta <- Updates.Apply(theta, u)
        state <- s
    (objective p theta).item<float>()

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
        let g = (matrix p.A).mv(x) - ct
        let l = (0.5 * x.dot((matrix p.A).mv(x)) - ct.dot(x)).item<float>()
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
        }
    ]
