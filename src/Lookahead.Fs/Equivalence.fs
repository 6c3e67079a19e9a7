namespace Lookahead.FSharp

open TorchSharp
open Lookahead

/// Checking that two ways of writing an optimizer are one algorithm, over the C# Equivalence API.
/// `Equivalence.check (Equivalence.form a) (Equivalence.form b) options` runs both on random problems.
[<RequireQualifiedAccess>]
module Equivalence =
    /// A transform run in an ordinary loop: gradients at the iterate θ, and θ recorded.
    [<CompiledName("Form")>]
    let form (tx: IGradientTransformation) = OptimizerForm(tx)

    /// A transform whose gradients are taken at θ + μ·v (v the last update), and that point recorded.
    [<CompiledName("FormAt")>]
    let formAt (lookahead: float) (tx: IGradientTransformation) = OptimizerForm(tx, lookahead)

    /// The same form under another name in reports.
    [<CompiledName("Labelled")>]
    let labelled (label: string) (form: OptimizerForm) = OptimizerForm(form.Transform, form.Lookahead, label)

    /// |a − b| ≤ absolute + relative·|b|.
    [<CompiledName("Tolerance")>]
    let tolerance (absolute: float) (relative: float) = Tolerance(absolute, relative)

    /// The C# defaults: 100 cases of 40 steps, seed 0, 1e-10 + 1e-8·|b|, with a random quadratic.
    let defaults = EquivalenceOptions()

    /// Both forms on random gradient streams (and quadratics, unless switched off); stops at the first counterexample.
    [<CompiledName("Check")>]
    let check (a: OptimizerForm) (b: OptimizerForm) (options: EquivalenceOptions) : EquivalenceReport =
        global.Lookahead.Equivalence.Check(a, b, options)

    /// Both forms for `steps` steps on one oracle, their recorded points compared within the tolerance.
    [<CompiledName("Compare")>]
    let compare (a: OptimizerForm) (b: OptimizerForm) (tolerance: Tolerance) (steps: int) (oracle: IGradientOracle) : TrajectoryComparison =
        global.Lookahead.Equivalence.Compare(a, b, oracle, steps, tolerance)

    /// The points a form records on an oracle: per step, per tensor, flat float64 values.
    [<CompiledName("Trajectory")>]
    let trajectory (form: OptimizerForm) (steps: int) (oracle: IGradientOracle) : float[][][] =
        global.Lookahead.Equivalence.Trajectory(form, oracle, steps)

    /// A fixed gradient stream from θ₀, one gradient tree per step and no losses.
    [<CompiledName("Stream")>]
    let stream (initialParameters: TensorTree) (gradients: TensorTree list) : IGradientOracle =
        GradientStream(initialParameters, Array.ofList gradients)

    /// A fixed gradient stream with one loss per step (for the Polyak-type and boosted transforms).
    [<CompiledName("StreamWithLosses")>]
    let streamWithLosses (initialParameters: TensorTree) (gradients: TensorTree list) (losses: float list) : IGradientOracle =
        if gradients.Length <> losses.Length then
            invalidArg (nameof losses) (sprintf "%d gradients but %d losses: give one loss per step" gradients.Length losses.Length)
        GradientStream(initialParameters, Array.ofList gradients, Array.ofList losses)

    /// A random convex quadratic for the parameters' shapes, condition number about κ, drawn from a seeded
    /// generator. It owns its tensors: bind it with `use`.
    [<CompiledName("Quadratic")>]
    let quadratic (seed: int64) (conditionNumber: float) (parameters: TensorTree) : QuadraticProblem =
        use generator = new torch.Generator(uint64 seed)
        QuadraticProblem.Random(parameters, generator, conditionNumber)

    /// The counterexample of a failed check, None when it passed.
    [<CompiledName("Counterexample")>]
    let counterexample (report: EquivalenceReport) = if report.Passed then None else Option.ofObj report.Counterexample
