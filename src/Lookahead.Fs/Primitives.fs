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

    /// Settings of the general EMA.
    type EmaSettings = { decay: float; debias: bool; startAtFirstUpdate: bool }

    /// Transforms.Ema's defaults for debias and startAtFirstUpdate, with the decay it requires.
    [<CompiledName("EmaDefaults")>]
    let emaDefaults (decay: float) : EmaSettings =
        let f = Factory(typeof<Transforms>, "Ema")
        { decay = f.Required("decay", decay); debias = f.Default "debias"; startAtFirstUpdate = f.Default "startAtFirstUpdate" }

    /// The general EMA: optional debiasing, optional start at the first update.
    [<CompiledName("EmaWith")>]
    let emaWith (s: EmaSettings) = Transforms.Ema(s.decay, s.debias, s.startAtFirstUpdate)

    /// u ← a(t)·g + b(t)·m with the weights of a shift schedule (e.g. ShiftSchedule.NAdam) and m from the momentum transform.
    [<CompiledName("LookaheadShiftWith")>]
    let lookaheadShiftWith (schedule: IShiftSchedule) (momentum: IGradientTransformation) = Transforms.LookaheadShift(schedule, momentum)

    /// Settings of the non-finite guard.
    type GuardSettings =
        { /// What a step with NaN or ±∞ gradients (or a non-finite loss) does: skip, zero the bad entries, or raise.
          policy: NonFinitePolicy
          /// Raise once this many steps in a row were non-finite; None for never.
          maxConsecutive: int64 option }

    let private guardFactory = lazy Factory(typeof<Transforms>, "GuardNonFinite")

    /// Transforms.GuardNonFinite's defaults: its policy, and no limit on consecutive non-finite steps.
    [<CompiledName("GuardDefaults")>]
    let guardDefaults : GuardSettings =
        { policy = guardFactory.Value.Default "policy"; maxConsecutive = None }

    /// The guard with explicit settings.
    [<CompiledName("GuardNonFiniteWith")>]
    let guardNonFiniteWith (s: GuardSettings) (inner: IGradientTransformation) =
        match s.maxConsecutive with
        | None -> Transforms.GuardNonFinite(inner, s.policy)
        | Some n -> Transforms.GuardNonFinite(inner, s.policy, n)

    /// Guards inner against non-finite gradients and a non-finite loss with a policy (skip, zero, raise); the
    /// state counts the non-finite steps. E.g. `Adam.create Adam.defaults |> Primitives.guardNonFinite NonFinitePolicy.Skip`.
    [<CompiledName("GuardNonFinite")>]
    let guardNonFinite (policy: NonFinitePolicy) (inner: IGradientTransformation) =
        guardNonFiniteWith { guardDefaults with policy = policy } inner

    // ---- The recent optimizers' primitives and combinators (see the C# Transforms.* of the same names) ----

    /// ADOPT's normalisation by the previous second moment: decay β, floor ε, clip exponent p of (t − 1)^p (None: no clip).
    [<CompiledName("NormaliseByPreviousMoment")>]
    let normaliseByPreviousMoment (decay: float) (eps: float) (clipExponent: float option) =
        Transforms.NormaliseByPreviousMoment(decay, eps, Option.toNullable clipExponent)

    /// Schedule-Free's averaging with learning rate lr and interpolation β (the official weights, no warm-up).
    [<CompiledName("ScheduleFreeAverage")>]
    let scheduleFreeAverage (lr: float) (beta: float) = Transforms.ScheduleFreeAverage(lr, beta)

    /// The per-tensor trust ratio ‖θ‖/‖u‖ (LARS, LAMB), unbounded.
    [<CompiledName("ScaleByTrustRatio")>]
    let scaleByTrustRatio = Transforms.ScaleByTrustRatio()

    /// u ← first(u) + weight(t)·second(u), each with its own state.
    [<CompiledName("Mix")>]
    let mix (weight: int64 -> float) (first: IGradientTransformation) (second: IGradientTransformation) = Transforms.Mix(first, second, Func<_, _> weight)

    /// Cautious masking of a direction (the mask rescaled by its mean, floored at 1e-3).
    [<CompiledName("Cautious")>]
    let cautious (direction: IGradientTransformation) = Transforms.Cautious direction

    /// Hypergradient descent on the learning rate around a unit step (the inner optimizer at rate 1): one dot over
    /// all parameters per step (Global) or one per parameter (PerParameter, as Adam-HD).
    [<CompiledName("HypergradientDescent")>]
    let hypergradientDescent (scope: HypergradientScope) (lr: float) (hypergradientLr: float) (unitStep: IGradientTransformation) =
        Transforms.HypergradientDescent(unitStep, lr, hypergradientLr, scope)

    /// Gradient accumulation: the inner step every k calls on the mean gradient, zero updates between.
    [<CompiledName("MultiSteps")>]
    let multiSteps (k: int) (inner: IGradientTransformation) = Transforms.MultiSteps(inner, k)

    /// EMA (decay β) or uniform (SWA) evaluation weights kept beside the inner optimizer.
    [<CompiledName("AverageParameters")>]
    let averageParameters (averaging: ParameterAveraging) (decay: float) (inner: IGradientTransformation) = Transforms.AverageParameters(inner, averaging, decay)

    /// Hyperparameters as state: the factory builds the optimizer from their current values.
    [<CompiledName("InjectHyperparameters")>]
    let injectHyperparameters (initial: (string * float) list) (factory: Collections.Generic.IReadOnlyDictionary<string, float> -> IGradientTransformation) =
        Transforms.InjectHyperparameters(Func<_, _> factory, initial |> List.map (fun (n, v) -> struct (n, v)) |> Array.ofList)

    /// Adafactor's factored second moment.
    [<CompiledName("ScaleByFactoredRms")>]
    let scaleByFactoredRms (options: FactoredRmsOptions) = Transforms.ScaleByFactoredRms options

    /// Adafactor's update clipping u/max(1, RMS(u)/d), per tensor.
    [<CompiledName("ClipByBlockRms")>]
    let clipByBlockRms (threshold: float) = Transforms.ClipByBlockRms threshold

    /// Adafactor's parameter scale u ← max(ε₂, RMS(θ))·u, per tensor.
    [<CompiledName("ScaleByParameterBlockRms")>]
    let scaleByParameterBlockRms (minScale: float) = Transforms.ScaleByParameterBlockRms minScale

    /// u ← θ.
    [<CompiledName("ReplaceWithParameters")>]
    let replaceWithParameters = Transforms.ReplaceWithParameters()

    /// Stochastic rounding of θ + u to bfloat16 (last in a chain).
    [<CompiledName("StochasticRounding")>]
    let stochasticRounding (seed: int64) = Transforms.StochasticRounding seed

    /// Kahan compensation for 16-bit parameters of the given format (last in a chain).
    [<CompiledName("KahanCompensation")>]
    let kahanCompensation (format: TorchSharp.torch.ScalarType) = Transforms.KahanCompensation format

    /// An optimizer for bfloat16 parameters with a declared rounding policy, e.g.
    /// `AdamW.create AdamW.defaults |> Primitives.lowPrecision ParameterRounding.Stochastic`.
    [<CompiledName("LowPrecision")>]
    let lowPrecision (rounding: ParameterRounding) (inner: IGradientTransformation) = Transforms.LowPrecision(inner, rounding)

/// Reading the state of Primitives.guardNonFinite.
[<RequireQualifiedAccess>]
module NonFinite =
    /// Non-finite steps so far.
    type Counts = { steps: int64; consecutive: int64; total: int64 }

    /// A guard's state: the declared state whose layout is the guard's (slots count, consecutive, total, inner).
    let private (|Guard|_|) (state: IOptState) =
        match state with
        | :? DeclaredState as d when d.Layout.Kind = "guard_non_finite" -> Some d
        | _ -> None

    /// The guard's counts when the state is a guard's state (the guard outermost), None otherwise.
    [<CompiledName("TryCounts")>]
    let tryCounts (state: IOptState) : Counts option =
        match state with
        | Guard g -> Some { steps = g.["count"] :?> int64; consecutive = g.["consecutive"] :?> int64; total = g.["total"] :?> int64 }
        | _ -> None

    /// The guarded transform's state inside a guard's state, None when the state is not a guard's.
    [<CompiledName("TryInner")>]
    let tryInner (state: IOptState) : IOptState option =
        match state with
        | Guard g -> Some (g.["inner"] :?> IOptState)
        | _ -> None

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

    /// Shape equals the given one.
    [<CompiledName("ShapeIs")>]
    let shapeIs (shape: int64 list) = let p = Parameters.ShapeIs(Array.ofList shape) in fun (i: ParameterInfo) -> p.Invoke i

    /// The matrices of a network's hidden layers: rank ≥ 2 and not an embedding or output head (Muon's and MARS-M's routing).
    [<CompiledName("HiddenMatrices")>]
    let hiddenMatrices (i: ParameterInfo) = Optim.HiddenMatrices.Invoke i
