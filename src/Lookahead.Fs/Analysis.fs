namespace Lookahead.FSharp

open System.Numerics
open Lookahead

/// Optimizers that are linear in their gradients as linear dynamical systems, over the C# `Analysis` API:
/// the realisation probed from the transform, exact equivalence, and the behaviour on one-dimensional quadratics
/// f(θ) = ½λθ² (gain matrix, eigenvalues, gain factor r_g, stability interval, worst rate, error-variance limit).
///
///     let rsg = Analysis.dynamics (Equivalence.form (Optim.Rsg(1.0, 0.999, 0.1)))
///     rsg |> Analysis.gainFactor 0.01            // r_g at τ = αλ = 0.01
///     Analysis.equal (Equivalence.form a) (Equivalence.form b)
[<RequireQualifiedAccess>]
module Analysis =
    /// The state-space form of an optimizer form (not linear: `Linear = false` and the primitive that makes it so).
    [<CompiledName("Realise")>]
    let realise (form: OptimizerForm) : Realisation = global.Lookahead.Analysis.Realise(form)

    /// Decides whether two forms are the same algorithm (exact when both are linear; otherwise `Decided = false`).
    [<CompiledName("Equal")>]
    let equal (a: OptimizerForm) (b: OptimizerForm) : ExactEquivalence = global.Lookahead.Analysis.Equal(a, b)

    /// The dynamics on quadratics; raises ArgumentException naming the primitive when the form is not linear,
    /// or saying so when it is time-varying over every step probed.
    [<CompiledName("Dynamics")>]
    let dynamics (form: OptimizerForm) : QuadraticDynamics = global.Lookahead.Analysis.Dynamics(form)

    /// The closed-loop gain matrix M(λ) = A + λBC.
    [<CompiledName("GainMatrix")>]
    let gainMatrix (curvature: float) (d: QuadraticDynamics) : float[,] = d.GainMatrix curvature

    /// The eigenvalues of M(λ), largest modulus first.
    [<CompiledName("Eigenvalues")>]
    let eigenvalues (curvature: float) (d: QuadraticDynamics) : Complex[] = d.Eigenvalues curvature

    /// The gain factor r_g(λ): the spectral radius of M(λ).
    [<CompiledName("GainFactor")>]
    let gainFactor (curvature: float) (d: QuadraticDynamics) : float = d.GainFactor curvature

    /// lim Var(y)/σ² with additive gradient noise of variance σ² (+∞ when unstable).
    [<CompiledName("PointVariance")>]
    let pointVariance (curvature: float) (d: QuadraticDynamics) : float = d.PointVariance curvature

    /// The ARSG paper's l_Var (eq. 15): the noise in the point's units, λ²·pointVariance.
    [<CompiledName("VarianceLimit")>]
    let varianceLimit (curvature: float) (d: QuadraticDynamics) : float = d.VarianceLimit curvature

    /// The interval of positive curvatures on which r_g < 1 (High = +∞ when stable up to 1e12).
    [<CompiledName("StabilityInterval")>]
    let stabilityInterval (d: QuadraticDynamics) : float * float =
        let struct (low, high) = d.StabilityInterval()
        low, high

    /// The worst gain factor over [low, high] and the curvature that attains it.
    [<CompiledName("WorstRate")>]
    let worstRate (low: float, high: float) (d: QuadraticDynamics) : float * float =
        let struct (rate, at) = d.WorstRate(low, high)
        rate, at

    /// The values of the free scalar in [low, high] that make `family s` the same algorithm as `target`.
    [<CompiledName("SolveScalar")>]
    let solveScalar (family: float -> OptimizerForm) (target: OptimizerForm) (low: float, high: float) : float list =
        global.Lookahead.Analysis.SolveScalar(System.Func<float, OptimizerForm>(family), target, low, high) |> List.ofSeq

    /// The hyperparameters (from `start`) minimising the worst rate over curvatures [low, high], and that rate.
    [<CompiledName("Optimise")>]
    let optimise (family: float[] -> OptimizerForm) (start: float[]) (low: float, high: float) : float[] * float =
        let struct (h, rate) = global.Lookahead.Analysis.Optimise(System.Func<float[], OptimizerForm>(family), start, low, high)
        h, rate
