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
