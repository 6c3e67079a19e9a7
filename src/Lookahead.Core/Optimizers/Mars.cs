using System;
using System.Linq;
using static Lookahead.Transforms;

namespace Lookahead;

/// <summary>The update rule MARS applies to its corrected gradient (the official <c>mars_type</c>).</summary>
public enum MarsType
{
    /// <summary>"mars-adamw": Adam moments of c, decoupled weight decay.</summary>
    AdamW,
    /// <summary>"mars-lion": sign of the EMA of c.</summary>
    Lion,
    /// <summary>"mars-shampoo": Newton–Schulz of the EMA of c (rank-2 tensors; others use the AdamW rule).</summary>
    Shampoo,
}

public static partial class Optim
{
    /// <summary>
    /// MARS (Yuan et al. 2024, "MARS: Unleashing the Power of Variance Reduction for Training Large Models";
    /// AGI-Arena/MARS <c>MARS</c>). For tensors of rank ≥ 2 (all tensors with <paramref name="optimize1d"/>):
    /// c = g + γβ₁/(1−β₁)·(g − g_prev), clipped to unit norm per tensor when ‖c‖ &gt; 1
    /// (<c>GradientCorrection</c>), m = EMA_β₁(c), then
    /// AdamW: θ ← θ − η(λθ + m̂/(sqrt(v̂) + ε)) with v = EMA_β₂(c²);
    /// Lion: θ ← θ − η(λθ + sign m);
    /// Shampoo: θ ← θ − η(NS₅(m/(1−β₁))·√max(1, rows/cols) + λθ), Newton–Schulz in MARS's arrangement with ε.
    /// Other tensors: AdamW on the raw g with <paramref name="lr1d"/>, β = <paramref name="betas1d"/>, λ = <paramref name="weightDecay1d"/>.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 3e-3.</param>
    /// <param name="beta1">β₁ ∈ [0, 1); default 0.95.</param>
    /// <param name="beta2">β₂ ∈ [0, 1); default 0.99.</param>
    /// <param name="eps">ε ≥ 0; default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="amsgrad">AMSGrad in the AdamW rule; default false.</param>
    /// <param name="gamma">γ ≥ 0, the correction strength; default 0.025.</param>
    /// <param name="exact">Exact scheme: g_prev is the gradient at the previous iterate on this batch (<see cref="ContextKeys.PreviousIterateGradient"/>).</param>
    /// <param name="type">The update rule; default AdamW.</param>
    /// <param name="optimize1d">Apply MARS to every tensor; default false.</param>
    /// <param name="lr1d">Learning rate of the other tensors; default 3e-3.</param>
    /// <param name="betas1d">(β₁, β₂) of the other tensors; default (0.9, 0.95).</param>
    /// <param name="weightDecay1d">λ of the other tensors; default 0.1.</param>
    /// <param name="clip">Unit-norm clipping of c (always on in the official code); default true.</param>
    public static IGradientTransformation Mars(
        double lr = 3e-3, double beta1 = 0.95, double beta2 = 0.99, double eps = 1e-8, double weightDecay = 0, bool amsgrad = false,
        double gamma = 0.025, bool exact = false, MarsType type = MarsType.AdamW, bool optimize1d = false,
        double lr1d = 3e-3, (double, double)? betas1d = null, double weightDecay1d = 0.1, bool clip = true) =>
        Mars((Hyper)lr, beta1, beta2, eps, weightDecay, amsgrad, gamma, exact, type, optimize1d, lr1d, betas1d, weightDecay1d, clip);

    /// <summary>MARS with hyperparameters that may be tensors (<see cref="Hyper"/>, differentiable under <see cref="Differentiable"/>); every argument is given. Otherwise as the overload of doubles.</summary>
    public static IGradientTransformation Mars(Hyper lr, Hyper beta1, Hyper beta2, Hyper eps, Hyper weightDecay, bool amsgrad, Hyper gamma, bool exact, MarsType type, bool optimize1d, double lr1d, (double, double)? betas1d, double weightDecay1d, bool clip)
    {
        Check.NonNegative(lr, nameof(lr), "learning rate");
        Check.UnitOpen(beta1, nameof(beta1));
        Check.NonNegative(weightDecay, nameof(weightDecay));
        var adamw = Chain(
            Precondition(AdamMoment(beta2, eps, amsgrad), Ema(beta1, debias: true)),
            AddDecayedWeights(weightDecay),
            Scale(-lr));
        var rule = type switch
        {
            MarsType.AdamW => adamw,
            MarsType.Lion => Chain(Ema(beta1), Sign(), AddDecayedWeights(weightDecay), Scale(-lr)),
            MarsType.Shampoo => Partition(
                Parameters.RankIs(2),
                Chain(
                    Ema(beta1),
                    Scale(1 / (1 - beta1)),
                    Orthogonalise(new OrthogonaliserOptions { Arrangement = NewtonSchulzArrangement.Mars, Epsilon = Check.NonNegative(eps.Value, nameof(eps)), Steps = 5 }),
                    ScaleByShape(ShapeScaling.Muon),
                    AddDecayedWeights(weightDecay),
                    Scale(-lr)),
                adamw),
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "type is not a MarsType"),
        };
        var mars = Chain(GradientCorrection(MarsScale(gamma, beta1), clip, exact), rule);
        if (optimize1d) return Define("mars", mars, ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("amsgrad", amsgrad), ("gamma", gamma), ("exact", exact), ("type", type), ("optimize1d", optimize1d), ("lr1d", lr1d), ("betas1d", betas1d), ("weightDecay1d", weightDecay1d), ("clip", clip));
        var (b1, b2) = betas1d ?? (0.9, 0.95);
        return Define("mars", Partition(Parameters.RankAtLeast(2), mars, AdamW((Hyper)lr1d, b1, b2, eps, weightDecay1d, false)), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("amsgrad", amsgrad), ("gamma", gamma), ("exact", exact), ("type", type), ("optimize1d", optimize1d), ("lr1d", lr1d), ("betas1d", betas1d), ("weightDecay1d", weightDecay1d), ("clip", clip));
    }

    /// <summary>The default routing of MARS-M and Muon: tensors of rank ≥ 2 whose name does not look like an embedding or output head (embed_tokens, lm_head, wpe, wte).</summary>
    public static Func<ParameterInfo, bool> HiddenMatrices { get; } = p =>
        p.Rank >= 2 && !new[] { "embed_tokens", "lm_head", "wpe", "wte" }.Any(n => p.Name.Contains(n, StringComparison.Ordinal));

    /// <summary>MARS-M's and Muon's shared tail: orthogonalise, scale by shape, decoupled weight decay, learning rate.</summary>
    static IGradientTransformation OrthogonalStep(double lr, double weightDecay, int nsSteps, ShapeScaling scaling, bool bf16) =>
        Chain(
            Orthogonalise(new OrthogonaliserOptions { Steps = (int)Check.AtLeast(nsSteps, 0, nameof(nsSteps)), BFloat16 = bf16 }),
            // Keller Jordan's Muon scales its bfloat16 result in bfloat16; MARS-M folds the factor into the learning rate.
            ScaleByShape(scaling, bfloat16: bf16 && scaling == ShapeScaling.Muon),
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate")));

    /// <summary>MARS-M's AdamW branch: moments by EMA, ε on the uncorrected root, decoupled weight decay.</summary>
    static IGradientTransformation MarsMAdamW(double lr, double weightDecay, (double, double)? betas, double eps)
    {
        var (b1, b2) = betas ?? (0.9, 0.95);
        return Chain(
            Precondition(AdamMoment(b2, eps, false) with { EpsilonPlacement = EpsilonPlacement.Uncorrected }, Ema(Check.UnitOpen(b1, "adamwBetas.beta1"), debias: true)),
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate")));
    }

    /// <summary>
    /// MARS-M (Liu, Yuan, Gu et al. 2025, "MARS-M: When Variance Reduction Meets Matrices"; AGI-Arena/MARS
    /// <c>MARS_M</c>). Matrices (<paramref name="isMatrixParameter"/>, default <see cref="HiddenMatrices"/>):
    /// c = g + γβ/(1−β)·(g − g_prev) clipped to unit norm, m = EMA_β(c), θ ← θ(1 − ηλ) − η·0.2·√max(rows, cols)·NS₅(m).
    /// Other tensors: AdamW with ε on the uncorrected root.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-3.</param>
    /// <param name="weightDecay">λ ≥ 0 (both branches); default 0.1.</param>
    /// <param name="momentum">β ∈ [0, 1); default 0.95.</param>
    /// <param name="nsSteps">Newton–Schulz steps; default 5.</param>
    /// <param name="adamwBetas">(β₁, β₂) of the AdamW branch; default (0.9, 0.95).</param>
    /// <param name="adamwEps">ε of the AdamW branch; default 1e-8.</param>
    /// <param name="gamma">γ ≥ 0; default 0.025.</param>
    /// <param name="clip">Clip c to unit norm (the official code always does: its <c>clip_c</c> is never read); default true.</param>
    /// <param name="exact">Exact scheme (<see cref="ContextKeys.PreviousIterateGradient"/>).</param>
    /// <param name="isMatrixParameter">Routing to the matrix branch.</param>
    /// <param name="bf16">Newton–Schulz in bfloat16 as the official code.</param>
    public static IGradientTransformation MarsM(
        double lr = 1e-3, double weightDecay = 0.1, double momentum = 0.95, int nsSteps = 5, (double, double)? adamwBetas = null,
        double adamwEps = 1e-8, double gamma = 0.025, bool clip = true, bool exact = false, Func<ParameterInfo, bool>? isMatrixParameter = null, bool bf16 = false) => Define("mars_m", Partition(
            isMatrixParameter ?? HiddenMatrices,
            Chain(
                GradientCorrection(MarsScale(gamma, Check.UnitOpen(momentum, nameof(momentum))), clip, exact),
                Ema(momentum),
                OrthogonalStep(lr, weightDecay, nsSteps, ShapeScaling.Moonlight, bf16)),
            MarsMAdamW(lr, weightDecay, adamwBetas, adamwEps)), ("lr", lr), ("weightDecay", weightDecay), ("momentum", momentum), ("nsSteps", nsSteps), ("adamwBetas", adamwBetas), ("adamwEps", adamwEps), ("gamma", gamma), ("clip", clip), ("exact", exact), ("isMatrixParameter", isMatrixParameter), ("bf16", bf16));

    /// <summary>
    /// MARS-M's efficient form (AGI-Arena/MARS <c>MARS_M_Efficient</c>): b ← βb + ((1−γ)(1−β)/β)·g,
    /// θ ← θ(1 − ηλ) − η·0.2·√max(rows, cols)·NS₅(γg + βb). No clipping and no stored g_prev; equal to
    /// <see cref="MarsM"/> while no clip is active (b = ((1−γ)/β)·EMA_β(g), so γg + βb = γg + (1−γ)·EMA_β(g)).
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-3.</param>
    /// <param name="weightDecay">λ ≥ 0 (both branches); default 0.1.</param>
    /// <param name="momentum">β ∈ (0, 1); default 0.95.</param>
    /// <param name="nsSteps">Newton–Schulz steps; default 5.</param>
    /// <param name="adamwBetas">(β₁, β₂) of the AdamW branch; default (0.9, 0.95).</param>
    /// <param name="adamwEps">ε of the AdamW branch; default 1e-8.</param>
    /// <param name="gamma">γ ∈ [0, 1]; default 0.025.</param>
    /// <param name="isMatrixParameter">Routing to the matrix branch.</param>
    /// <param name="bf16">Newton–Schulz in bfloat16 as the official code.</param>
    public static IGradientTransformation MarsMEfficient(
        double lr = 1e-3, double weightDecay = 0.1, double momentum = 0.95, int nsSteps = 5, (double, double)? adamwBetas = null,
        double adamwEps = 1e-8, double gamma = 0.025, Func<ParameterInfo, bool>? isMatrixParameter = null, bool bf16 = false)
    {
        Check.Positive(momentum, nameof(momentum));
        Check.UnitOpen(momentum, nameof(momentum));
        Check.Unit(gamma, nameof(gamma));
        double weight = (1 - gamma) * (1 - momentum) / momentum;
        return Define("mars_mefficient", Partition(
            isMatrixParameter ?? HiddenMatrices,
            Chain(
                LookaheadShift(ShiftSchedule.Constant(gamma, momentum), Trace(momentum, dampening: 1 - weight)),
                OrthogonalStep(lr, weightDecay, nsSteps, ShapeScaling.Moonlight, bf16)),
            MarsMAdamW(lr, weightDecay, adamwBetas, adamwEps)), ("lr", lr), ("weightDecay", weightDecay), ("momentum", momentum), ("nsSteps", nsSteps), ("adamwBetas", adamwBetas), ("adamwEps", adamwEps), ("gamma", gamma), ("isMatrixParameter", isMatrixParameter), ("bf16", bf16));
    }

    /// <summary>
    /// Muon (Jordan et al. 2024; KellerJordan/Muon <c>SingleDeviceMuon</c>): m = EMA_β(g) (zero start, no
    /// bias correction), u = (1−β)g + βm with Nesterov (default) or m, θ ← θ(1 − ηλ) − η·s·NS₅(u) with
    /// s = √max(1, rows/cols) (or Moonlight's 0.2·√max(rows, cols)). Every tensor must be a matrix (rank ≥ 2;
    /// higher ranks are flattened as (shape[0], −1)); see <see cref="MuonWithAuxAdam"/> for whole models.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 0.02.</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="momentum">β ∈ [0, 1); default 0.95.</param>
    /// <param name="nesterov">Default true.</param>
    /// <param name="nsSteps">Newton–Schulz steps; default 5.</param>
    /// <param name="scaling">Shape scaling; default <see cref="ShapeScaling.Muon"/>.</param>
    /// <param name="bf16">Newton–Schulz in bfloat16, as the official code; default false.</param>
    public static IGradientTransformation Muon(double lr = 0.02, double weightDecay = 0, double momentum = 0.95, bool nesterov = true, int nsSteps = 5, ShapeScaling scaling = ShapeScaling.Muon, bool bf16 = false)
    {
        var m = Ema(Check.UnitOpen(momentum, nameof(momentum)));
        return Define("muon", Chain(nesterov ? LookaheadShift(momentum, m) : m, OrthogonalStep(lr, weightDecay, nsSteps, scaling, bf16)), ("lr", lr), ("weightDecay", weightDecay), ("momentum", momentum), ("nesterov", nesterov), ("nsSteps", nsSteps), ("scaling", scaling), ("bf16", bf16));
    }

    /// <summary>
    /// Muon for hidden matrices and Adam for the rest (KellerJordan/Muon <c>SingleDeviceMuonWithAuxAdam</c>):
    /// the auxiliary Adam is u = m̂/(sqrt(v̂) + ε), θ ← θ(1 − ηλ) − η·u, with defaults lr 3e-4, β (0.9, 0.95), ε 1e-10.
    /// </summary>
    /// <param name="muon">The Muon part; default <see cref="Muon"/>().</param>
    /// <param name="adamLr">Default 3e-4.</param>
    /// <param name="adamBetas">Default (0.9, 0.95).</param>
    /// <param name="adamEps">Default 1e-10.</param>
    /// <param name="adamWeightDecay">Default 0.</param>
    /// <param name="isMuonParameter">Routing; default <see cref="HiddenMatrices"/>.</param>
    public static IGradientTransformation MuonWithAuxAdam(IGradientTransformation? muon = null, double adamLr = 3e-4, (double, double)? adamBetas = null, double adamEps = 1e-10, double adamWeightDecay = 0, Func<ParameterInfo, bool>? isMuonParameter = null)
    {
        var (b1, b2) = adamBetas ?? (0.9, 0.95);
        return Define("muon_with_aux_adam", Partition(isMuonParameter ?? HiddenMatrices, muon ?? Muon(), AdamW(adamLr, b1, b2, adamEps, adamWeightDecay)), ("muon", muon), ("adamLr", adamLr), ("adamBetas", adamBetas), ("adamEps", adamEps), ("adamWeightDecay", adamWeightDecay), ("isMuonParameter", isMuonParameter));
    }
}
