namespace Lookahead.FSharp

open System
open Lookahead

/// The primitives, curried with settings first. Each returns an IGradientTransformation.
[<RequireQualifiedAccess>]
module Primitives =
    /// u ← s·u.
    [<CompiledName("Scale")>]
    let scale (factor: float) = Transforms.Scale factor

    /// u ← s(t)·u for the step t = 1, 2, ...
    [<CompiledName("ScaleBySchedule")>]
    let scaleBySchedule (schedule: int64 -> float) = Transforms.ScaleBySchedule(Func<_, _> schedule)

    /// u ← u + λ·θ (decoupled weight decay after a preconditioner, L2 when first in a chain).
    [<CompiledName("AddDecayedWeights")>]
    let addDecayedWeights (weightDecay: float) = Transforms.AddDecayedWeights weightDecay

    /// Exponential moving average m ← β·m + (1−β)·u, u ← m.
    [<CompiledName("Ema")>]
    let ema (decay: float) = Transforms.Ema decay

    /// EMA divided by 1−βᵗ (Adam's first moment).
    [<CompiledName("EmaDebiased")>]
    let emaDebiased (decay: float) = Transforms.Ema(decay, debias = true)

    /// Undamped momentum trace m ← β·m + u, u ← m.
    [<CompiledName("Trace")>]
    let trace (decay: float) = Transforms.Trace decay

    /// Settings of the general momentum trace.
    type TraceSettings =
        { decay: float
          dampening: float
          debias: bool
          startAtFirstUpdate: bool }

    /// The general trace: m ← β·m + (1−δ)·u, optional debiasing, optional torch-style first step.
    [<CompiledName("TraceWith")>]
    let traceWith (s: TraceSettings) = Transforms.Trace(s.decay, s.dampening, s.debias, s.startAtFirstUpdate)

    /// Diagonal second-moment preconditioner u ← N(u)/D; None for the numerator means identity.
    [<CompiledName("Precondition")>]
    let precondition (options: PreconditionOptions) (numerator: IGradientTransformation option) =
        Transforms.Precondition(options, Option.toObj numerator)

    /// u ← u·min(1, c/‖u‖) with the global norm over the whole tree.
    [<CompiledName("ClipByGlobalNorm")>]
    let clipByGlobalNorm (maxNorm: float) = Transforms.ClipByGlobalNorm maxNorm

    /// u ← sign(u).
    [<CompiledName("Sign")>]
    let sign = Transforms.Sign()

    /// u ← (1−ν)·g + ν·m with m from the momentum transform.
    [<CompiledName("LookaheadShift")>]
    let lookaheadShift (nu: float) (momentum: IGradientTransformation) = Transforms.LookaheadShift(nu, momentum)

    /// Gradient correction c = g + s·(g − g_prev), with g_prev the previous step's incoming update (zero at first).
    [<CompiledName("GradientCorrection")>]
    let gradientCorrection (scale: float) = Transforms.GradientCorrection scale

    /// Settings of the general gradient correction.
    type GradientCorrectionSettings =
        { /// s, the weight of the difference g − g_prev.
          scale: float
          /// Divide each corrected tensor by its Frobenius norm when that norm exceeds 1.
          clip: bool
          /// Read g_prev from the context key PreviousIterateGradient instead of keeping it in the state.
          exact: bool }

    /// The general gradient correction: optional per-tensor unit-norm clipping and the exact (two-gradient) scheme.
    [<CompiledName("GradientCorrectionWith")>]
    let gradientCorrectionWith (s: GradientCorrectionSettings) = Transforms.GradientCorrection(s.scale, s.clip, s.exact)

    /// The correction weight MARS uses, γ·β/(1−β).
    [<CompiledName("MarsScale")>]
    let marsScale (gamma: float) (beta: float) = Transforms.MarsScale(gamma, beta)

    /// Newton–Schulz (or exact SVD) polar factor of every matrix update; rank < 2 tensors are rejected.
    [<CompiledName("Orthogonalise")>]
    let orthogonalise (options: OrthogonaliserOptions) = Transforms.Orthogonalise options

    /// Multiplies each matrix update by a factor of its shape; tensors of rank > 2 are viewed as (shape[0], rest).
    [<CompiledName("ScaleByShape")>]
    let scaleByShape (scaling: ShapeScaling) = Transforms.ScaleByShape scaling

    /// Multiplies each matrix update by a factor of its shape, with an explicit policy for rank > 2.
    [<CompiledName("ScaleByShapeWith")>]
    let scaleByShapeWith (higherRank: HigherRankPolicy) (scaling: ShapeScaling) = Transforms.ScaleByShape(scaling, higherRank)

    /// Any hyperparameter on a schedule: the transform `factory t` at step t = 1, 2, …, its state carried over.
    /// E.g. `Primitives.scheduled (fun t -> AdamW.create { AdamW.defaults with lr = cosine.At t })`.
    [<CompiledName("Scheduled")>]
    let scheduled (factory: int64 -> IGradientTransformation) = Transforms.Scheduled(Func<_, _> factory)

    /// ARSG's preconditioner: undamped second moment, running maximum started at ε/(1−β₂), no additive ε.
    [<CompiledName("ArsgPrecondition")>]
    let arsgPrecondition (beta2: float) (eps: float) (numerator: IGradientTransformation) = Transforms.ArsgPrecondition(beta2, eps, numerator)

    /// The Polyak step on a loss model truncated at a lower bound (SPS, SPS+, MoMo, MoMo-Adam); needs the loss in the context.
    [<CompiledName("PolyakTruncation")>]
    let polyakTruncation (options: PolyakOptions) = Transforms.PolyakTruncation options

    /// Slow and fast weights: inner drives the fast weights; every k-th step the slow ones move α toward them and the fast ones restart there.
    [<CompiledName("SlowFastWeights")>]
    let slowFastWeights (k: int) (alpha: float) (inner: IGradientTransformation) = Transforms.SlowFastWeights(inner, k, alpha)

    /// Runs factory ℓ at level ℓ = 0, 1, …, going up a level when the windowed loss stops improving; needs the loss in the context.
    [<CompiledName("Boosted")>]
    let boosted (policy: BoostPolicy) (factory: int -> IGradientTransformation) = Transforms.Boosted(Func<_, _> factory, policy)

/// Predicates on parameters, for Transform.partitionBy.
[<RequireQualifiedAccess>]
module Param =
    /// Name matches the regular expression.
    [<CompiledName("NameMatches")>]
    let nameMatches (pattern: string) = let p = Parameters.NameMatches pattern in fun (i: ParameterInfo) -> p.Invoke i

    /// Rank equals r.
    [<CompiledName("RankIs")>]
    let rankIs (r: int) (i: ParameterInfo) = i.Rank = r

    /// Rank is at least r.
    [<CompiledName("RankAtLeast")>]
    let rankAtLeast (r: int) (i: ParameterInfo) = i.Rank >= r

    /// The matrices of a network's hidden layers: rank ≥ 2 and not an embedding or output head (Muon's and MARS-M's routing).
    [<CompiledName("HiddenMatrices")>]
    let hiddenMatrices (i: ParameterInfo) = Optim.HiddenMatrices.Invoke i
