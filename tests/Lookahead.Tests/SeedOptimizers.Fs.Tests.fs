/// The F# layer over the seeds' primitives and optimizers: each F# value builds the same transform as the
/// C# call it wraps (bit-identical trajectories), and the F# Equivalence module reports what the C# one does.
module Lookahead.Tests.SeedOptimizersFs

open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead
open Lookahead.FSharp
open Lookahead.Tests.Generators
open Lookahead.Tests.Expect

/// Matrices only (rank 2 or 3), for transforms that orthogonalise every tensor.
let private genMatrixShape : Gen<int64[]> =
    let dim hi = Gen.choose (1, hi) |> Gen.map int64
    Gen.oneof [ Gen.arrayOfLength 2 (dim 8); Gen.arrayOfLength 3 (dim 4) ]

let private genAll (gens: Gen<'a> list) : Gen<'a list> =
    List.foldBack (fun g acc -> gen { let! x = g in let! xs = acc in return x :: xs }) gens (Gen.constant [])

/// 1–3 matrices and 30–50 steps of gradients of mixed magnitudes.
let private genMatrixProblem : Gen<Problem> =
    gen {
        let! k = Gen.choose (1, 3)
        let! shapes = Gen.listOfLength k genMatrixShape
        let! steps = Gen.choose (30, 50)
        let! params0 = genAll [ for s in shapes -> genValues (numel s) 1.0 ]
        let genStep =
            gen {
                let! scale = Gen.elements [ 1e-3; 0.03; 0.3; 1.0; 5.0 ]
                return! genAll [ for s in shapes -> genValues (numel s) scale ]
            }
        let! grads = Gen.listOfLength steps genStep
        return
            { Names = shapes |> List.mapi (fun i _ -> sprintf "block%d.weight" i)
              Shapes = shapes
              Params0 = params0
              Grads = grads }
    }

/// A positive loss that depends only on the step k (0-based): it falls, with a wiggle, so that gaps of both signs occur for f* > 0.
let private loss (k: int) = 2.0 / float (k + 1) + 0.25 * float (k % 3)

let private withLoss (k: int) = StepContext.Empty.WithLoss(loss k)

/// F# and C# transforms give bit-identical updates and parameters on the problem.
let private same (p: Problem) (fs: IGradientTransformation) (cs: IGradientTransformation) =
    Expect.identical (Expect.run fs p) (Expect.run cs p)

/// As `same`, with a loss in every step's context.
let private sameWithLoss (p: Problem) (fs: IGradientTransformation) (cs: IGradientTransformation) =
    Expect.identical (Expect.runWith withLoss fs p) (Expect.runWith withLoss cs p)

let private defaultsTests =
    testList "create defaults ≡ the C# defaults (bit-identical)" [
        // torch.optim's optimizers. Where C# has no default (Sgd's, HeavyBall's and NesterovSgd's lr and
        // momentum) the value is the one the F# layer documents. A default that the trajectory cannot see
        // while another default holds (Sgd's dampening and nesterov at momentum 0, a decoupling flag at
        // λ = 0) is read by a second run that changes only the setting that wakes it up.
        property "Sgd (and its dampening and nesterov, seen with momentum)" genLongProblem (fun p ->
            same p (Sgd.create Sgd.defaults) (Optim.Sgd 1e-2)
            same p (Sgd.create { Sgd.defaults with momentum = 0.9 }) (Optim.Sgd(1e-2, momentum = 0.9)))
        property "HeavyBall" genLongProblem (fun p -> same p (HeavyBall.create HeavyBall.defaults) (Optim.HeavyBall(1e-2, 0.9)))
        property "NesterovSgd" genLongProblem (fun p -> same p (NesterovSgd.create NesterovSgd.defaults) (Optim.NesterovSgd(1e-2, 0.9)))
        property "Adam" genLongProblem (fun p -> same p (Adam.create Adam.defaults) (Optim.Adam()))
        property "AdamW" genLongProblem (fun p -> same p (AdamW.create AdamW.defaults) (Optim.AdamW()))
        property "RAdam (and its decoupling flag, seen with λ > 0)" genLongProblem (fun p ->
            same p (RAdam.create RAdam.defaults) (Optim.RAdam())
            same p (RAdam.create { RAdam.defaults with weightDecay = 0.1 }) (Optim.RAdam(weightDecay = 0.1)))
        property "NAdam (and its decoupling flag, seen with λ > 0)" genLongProblem (fun p ->
            same p (NAdam.create NAdam.defaults) (Optim.NAdam())
            same p (NAdam.create { NAdam.defaults with weightDecay = 0.1 }) (Optim.NAdam(weightDecay = 0.1)))
        property "RmsProp" genLongProblem (fun p -> same p (RmsProp.create RmsProp.defaults) (Optim.RmsProp()))
        property "Adagrad" genLongProblem (fun p -> same p (Adagrad.create Adagrad.defaults) (Optim.Adagrad()))
        property "weight-decay modes of Qhm, QhAdam and MomoAdam, seen with λ > 0" genLongProblem (fun p ->
            same p (Qhm.create { Qhm.defaults with weightDecay = 0.01 }) (Optim.Qhm(1.0, 0.999, 0.7, weightDecay = 0.01))
            same p (QhAdam.create { QhAdam.defaults with weightDecay = 0.01 }) (Optim.QhAdam(weightDecay = 0.01))
            sameWithLoss p (MomoAdam.create { MomoAdam.defaults with weightDecay = 0.1 }) (Optim.MomoAdam(weightDecay = 0.1)))
        // The seeds' optimizers.
        property "GeneralisedNesterov" genLongProblem (fun p ->
            same p (GeneralisedNesterov.create GeneralisedNesterov.defaults) (Optim.GeneralisedNesterov(1e-2, 0.9, 0.9)))
        property "Nesterov" genLongProblem (fun p ->
            same p (Nesterov.create Nesterov.defaults) (Optim.Nesterov(1e-2, 0.9)))
        property "Qhm" genLongProblem (fun p ->
            same p (Qhm.create Qhm.defaults) (Optim.Qhm(1.0, 0.999, 0.7)))
        property "QhAdam" genLongProblem (fun p -> same p (QhAdam.create QhAdam.defaults) (Optim.QhAdam()))
        property "Rsg" genLongProblem (fun p -> same p (Rsg.create Rsg.defaults) (Optim.Rsg 1e-2))
        property "Arsg" genLongProblem (fun p -> same p (Arsg.create Arsg.defaults) (Optim.Arsg()))
        property "Mars (AdamW rule; matrices to MARS, the rest to AdamW)" genLongProblem (fun p ->
            same p (Mars.create Mars.defaults) (Optim.Mars()))
        property "Mars (Shampoo rule)" genLongProblem (fun p ->
            same p (Mars.create { Mars.defaults with marsType = MarsType.Shampoo }) (Optim.Mars(``type`` = MarsType.Shampoo)))
        property "Mars (Lion rule, every tensor)" genLongProblem (fun p ->
            same p (Mars.create { Mars.defaults with marsType = MarsType.Lion; optimize1d = true }) (Optim.Mars(``type`` = MarsType.Lion, optimize1d = true)))
        property "MarsM (hidden matrices; rank < 2 to AdamW)" genLongProblem (fun p ->
            same p (MarsM.create MarsM.defaults) (Optim.MarsM()))
        property "MarsMEfficient (hidden matrices; rank < 2 to AdamW)" genLongProblem (fun p ->
            same p (MarsMEfficient.create MarsMEfficient.defaults) (Optim.MarsMEfficient()))
        property "Muon (matrices only)" genMatrixProblem (fun p -> same p (Muon.create Muon.defaults) (Optim.Muon()))
        property "MuonWithAuxAdam (mixed ranks)" genLongProblem (fun p ->
            same p (MuonWithAuxAdam.create MuonWithAuxAdam.defaults) (Optim.MuonWithAuxAdam()))
        property "Sps (loss in the context)" genLongProblem (fun p -> sameWithLoss p (Sps.create Sps.defaults) (Optim.Sps()))
        property "SpsPlus (loss in the context)" genLongProblem (fun p ->
            sameWithLoss p (SpsPlus.create SpsPlus.defaults) (Optim.SpsPlus()))
        property "Momo (loss in the context)" genLongProblem (fun p -> sameWithLoss p (Momo.create Momo.defaults) (Optim.Momo()))
        property "MomoAdam (loss in the context)" genLongProblem (fun p ->
            sameWithLoss p (MomoAdam.create MomoAdam.defaults) (Optim.MomoAdam()))
    ]

let private settingsTests =
    testList "non-default settings reach the C# arguments (bit-identical)" [
        property "Qhm with direct weight decay, QhAdam decoupled with ν ≠ 1, Arsg in Adam mode"
            (gen { let! p = genLongProblem in let! lr, b, nu = Gen.zip3 genRate genDecay genCoefficient in return p, lr, min b 0.998, nu })
            (fun (p, lr, beta, nu) ->
                same p (Qhm.create { lr = lr; momentum = beta; nu = nu; weightDecay = 0.01; weightDecayType = QhmWeightDecay.Direct })
                       (Optim.Qhm(lr, beta, nu, 0.01, QhmWeightDecay.Direct))
                same p (QhAdam.create { QhAdam.defaults with lr = lr; beta1 = beta; nu1 = nu; nu2 = 0.5; weightDecay = 0.01; decoupledWeightDecay = true })
                       (Optim.QhAdam(lr, beta, nu1 = nu, nu2 = 0.5, weightDecay = 0.01, decoupledWeightDecay = true))
                same p (Arsg.create { Arsg.defaults with lr = lr; amsgrad = false }) (Optim.Arsg(lr, amsgrad = false)))
        property "MarsM with other betas and routing, MoMo-Adam decoupled with a lower-bound estimate" genLongProblem (fun p ->
            let matrices = Param.rankIs 2
            same p (MarsM.create { MarsM.defaults with adamwBetas = (0.8, 0.9); isMatrixParameter = matrices; clip = false })
                   (Optim.MarsM(adamwBetas = System.Nullable<struct (float * float)>(struct (0.8, 0.9)), isMatrixParameter = System.Func<_, _> matrices, clip = false))
            sameWithLoss p (MomoAdam.create { MomoAdam.defaults with weightDecay = 0.1; divide = false; lowerBound = 0.5; estimateLowerBound = true })
                           (Optim.MomoAdam(weightDecay = 0.1, divide = false, lowerBound = 0.5, estimateLowerBound = true)))
    ]

let private primitiveTests =
    testList "primitives ≡ the C# transforms (bit-identical)" [
        property "gradient correction, plain and clipped"
            (gen { let! p = genLongProblem in let! s = genCoefficient in return p, s })
            (fun (p, s) ->
                same p (Primitives.gradientCorrection s) (Transforms.GradientCorrection s)
                same p (Primitives.gradientCorrectionWith { scale = s; clip = true; exact = false }) (Transforms.GradientCorrection(s, clip = true)))
        test "marsScale is γβ/(1−β)" {
            Expect.equal (Primitives.marsScale 1.0 0.9) (Transforms.MarsScale(1.0, 0.9)) "the C# value"
            Expect.floatClose Accuracy.veryHigh (Primitives.marsScale 1.0 0.9) 9.0 "β = 0.9, γ = 1 gives 9"
        }
        property "orthogonalise and scaleByShape on matrices" genMatrixProblem (fun p ->
            let options = OrthogonaliserOptions(Steps = 3, Arrangement = NewtonSchulzArrangement.Mars)
            same p (Primitives.orthogonalise options) (Transforms.Orthogonalise options)
            same p (Primitives.scaleByShape ShapeScaling.Moonlight) (Transforms.ScaleByShape ShapeScaling.Moonlight)
            same p (Primitives.scaleByShapeWith HigherRankPolicy.Batch ShapeScaling.Muon) (Transforms.ScaleByShape(ShapeScaling.Muon, HigherRankPolicy.Batch)))
        property "polyakTruncation" genLongProblem (fun p ->
            let options = PolyakOptions(Beta = 0.8, LowerBound = 0.1, WeightDecay = 0.01)
            sameWithLoss p (Primitives.polyakTruncation options) (Transforms.PolyakTruncation options))
        property "slowFastWeights k α inner"
            (gen { let! p = genLongProblem in let! k = Gen.choose (1, 6) in let! a = genRate in return p, k, a })
            (fun (p, k, alpha) ->
                same p (Primitives.slowFastWeights k alpha (Adam.create Adam.defaults)) (Transforms.SlowFastWeights(Optim.Adam(), k, alpha)))
        property "boosted policy factory (levels rise within the run)" genLongProblem (fun p ->
            let policy = BoostPolicy(Window = 3, Tolerance = 0.5, MaxLevel = 2)
            let factory (level: int) = Optim.Sgd(0.1 / float (level + 1), 0.9)
            sameWithLoss p (Primitives.boosted policy factory) (Transforms.Boosted(System.Func<_, _> factory, policy)))
        test "hiddenMatrices routes as Optim.HiddenMatrices" {
            let info (name: string) (shape: int64 list) = ParameterInfo(name, Array.ofList shape, torch.ScalarType.Float64)
            for i in [ info "h.weight" [ 3L; 4L ]; info "wte.weight" [ 3L; 4L ]; info "h.bias" [ 4L ]; info "conv" [ 2L; 2L; 3L ] ] do
                Expect.equal (Param.hiddenMatrices i) (Optim.HiddenMatrices.Invoke i) i.Name
        }
    ]

let private equivalenceTests =
    let lr, beta = 0.1, 0.9
    // Gradient streams only: QuadraticProblem.Random hands back a problem whose tensors its own dispose
    // scope has already freed, so the quadratic cases are the pending test below until the core is fixed.
    let options = EquivalenceOptions(Cases = 20, Steps = 40, Seed = 7L, Tolerance = Equivalence.tolerance 1e-10 1e-8, Method = EquivalenceMethod.Sampled)
    testList "Equivalence" [
        test "QHM with ν = 1 ≡ SGD(lr·(1−β), momentum β): passed" {
            let report = Equivalence.check (Equivalence.form (Optim.Qhm(lr, beta, 1.0))) (Equivalence.form (Optim.Sgd(lr * (1.0 - beta), beta))) options
            Expect.isTrue report.Passed (string report)
            Expect.equal report.Cases 20 "every case ran"
            Expect.isNone (Equivalence.counterexample report) "no counterexample"
        }
        test "the velocity form at θ + β·v ≡ Nesterov in shifted coordinates (formAt)" {
            let velocity = Equivalence.formAt beta (Optim.NesterovVelocity(lr, beta))
            let shifted = Equivalence.form (Nesterov.create { lr = lr; momentum = beta })
            let report = Equivalence.check velocity shifted options
            Expect.isTrue report.Passed (string report)
        }
        test "QHM with ν = 0.7 is not SGD momentum: a counterexample" {
            let a = Equivalence.form (Optim.Qhm(lr, beta, 0.7)) |> Equivalence.labelled "qhm(ν=0.7)"
            let b = Equivalence.form (Optim.Sgd(lr * (1.0 - beta), beta)) |> Equivalence.labelled "sgd"
            let report = Equivalence.check a b options
            Expect.isFalse report.Passed "different optimizers"
            Expect.isFalse (System.String.IsNullOrEmpty report.Counterexample) "a counterexample"
            match Equivalence.counterexample report with
            | Some c -> Expect.stringContains c "qhm(ν=0.7)" "the counterexample names the forms by their labels"
            | None -> failtest "expected Some counterexample"
        }
        test "compare and trajectory on a stream and a quadratic" {
            use _ = torch.NewDisposeScope()
            let p0 = TensorTree.Of(struct ("w", torch.ones([| 2L; 3L |], dtype = torch.float64)), struct ("b", torch.zeros([| 3L |], dtype = torch.float64)))
            let grads = [ for k in 1 .. 5 -> p0.Map(fun t -> t.mul(torch.tensor(float k, dtype = torch.float64))) ]
            let stream = Equivalence.stream p0 grads
            let qhm = Equivalence.form (Optim.Qhm(lr, beta, 1.0))
            let sgd = Equivalence.form (Optim.Sgd(lr * (1.0 - beta), beta))
            let c = Equivalence.compare qhm sgd (Equivalence.tolerance 1e-12 1e-10) 5 stream
            Expect.isTrue c.Equivalent (string c)
            Expect.equal (Equivalence.trajectory qhm 5 stream).Length 5 "one point per step"
            let losses = Equivalence.streamWithLosses p0 grads [ for k in 0 .. 4 -> loss k ]
            let m = Equivalence.compare (Equivalence.form (Momo.create Momo.defaults)) (Equivalence.form (Optim.Momo())) Tolerance.Exact 5 losses
            Expect.isTrue m.Equivalent (string m)
        }
        test "on random quadratics too" {
            use _ = torch.NewDisposeScope()
            let p0 = TensorTree.Of(struct ("w", torch.ones([| 2L; 3L |], dtype = torch.float64)))
            use quadratic = Equivalence.quadratic 3L 10.0 p0
            let qhm = Equivalence.form (Optim.Qhm(lr, beta, 1.0))
            let q = Equivalence.compare qhm (Equivalence.form (Optim.Sgd lr)) Tolerance.Exact 5 quadratic
            Expect.isFalse q.Equivalent "momentum and plain SGD part on a quadratic"
            let report = Equivalence.check qhm (Equivalence.form (Optim.Sgd(lr * (1.0 - beta), beta))) (EquivalenceOptions(Cases = 5, Seed = 7L))
            Expect.isTrue report.Passed (string report)
        }
    ]

[<Tests>]
let tests =
    testList "F# seed optimizers" [ defaultsTests; settingsTests; primitiveTests; equivalenceTests ]
