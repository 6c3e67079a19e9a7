using System;
using static Lookahead.Transforms;

namespace Lookahead;

/// <summary>AdEMAMix's warm-up schedules (apple/ml-ademamix), at step t = 1, 2, ….</summary>
public static class AdEMAMixSchedule
{
    /// <summary>α_t = α·t/T while t &lt; T, then α; α throughout when <paramref name="warmup"/> is null.</summary>
    public static double Alpha(long t, double alpha, int? warmup) => Alpha(t, (Hyper)alpha, warmup).Value;

    /// <summary><see cref="Alpha(long, double, int?)"/> of a hyperparameter that may be a tensor (<see cref="Hyper"/>).</summary>
    internal static Hyper Alpha(long t, Hyper alpha, int? warmup) => warmup is int w && t < w ? alpha * t / w : alpha;

    /// <summary>
    /// β₃ₜ interpolated linearly in half-life space from β₁ to β₃: with f(b) = ln ½ / ln(b + 1e-8) − 1 and
    /// f⁻¹(h) = ½^(1/(h + 1)), β₃ₜ = f⁻¹((1 − a)f(β₁) + a·f(β₃)), a = t/T, while t &lt; T; exactly β₃ from t = T on
    /// (and throughout when <paramref name="warmup"/> is null). The 1e-8 is the official code's.
    /// </summary>
    public static double Beta3(long t, double beta1, double beta3, int? warmup) => Beta3(t, (Hyper)beta1, (Hyper)beta3, warmup).Value;

    /// <summary><see cref="Beta3(long, double, double, int?)"/> of hyperparameters that may be tensors (<see cref="Hyper"/>).</summary>
    internal static Hyper Beta3(long t, Hyper beta1, Hyper beta3, int? warmup)
    {
        if (warmup is not int w || t >= w) return beta3;
        static Hyper HalfLife(Hyper b) => Math.Log(0.5) / Hyper.Log(b + 1e-8) - 1;
        double a = (double)t / w;
        return Hyper.Pow(0.5, 1 / ((1 - a) * HalfLife(beta1) + a * HalfLife(beta3) + 1));
    }
}

public static partial class Optim
{
    /// <summary>
    /// AdEMAMix (Pagliardini, Ablin &amp; Grangier 2024, "The AdEMAMix Optimizer: Better, Faster, Older";
    /// apple/ml-ademamix): Adam's denominator over a mix of a fast debiased EMA and a slow EMA,
    /// θ ← θ − η·((m₁/(1 − β₁ᵗ) + αₜ·m₂)/(√v/√(1 − β₂ᵗ) + ε) + λθ), m₂ ← β₃ₜm₂ + (1 − β₃ₜ)g never debiased, with the
    /// warm-ups of <see cref="AdEMAMixSchedule"/>. Decoupled weight decay scaled by η. α = 0 is AdamW.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-3.</param>
    /// <param name="beta1">β₁ ∈ [0, 1) of the fast EMA; default 0.9.</param>
    /// <param name="beta2">β₂ ∈ [0, 1) of the second moment; default 0.999.</param>
    /// <param name="beta3">β₃ ∈ [0, 1) of the slow EMA; default 0.9999.</param>
    /// <param name="alpha">α ≥ 0, the slow EMA's weight; default 2.</param>
    /// <param name="beta3Warmup">T_β₃ &gt; 0, or null (no warm-up).</param>
    /// <param name="alphaWarmup">T_α &gt; 0, or null (no warm-up).</param>
    /// <param name="eps">ε ≥ 0; default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0, decoupled; default 0.</param>
    public static IGradientTransformation AdEMAMix(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double beta3 = 0.9999, double alpha = 2, int? beta3Warmup = null, int? alphaWarmup = null, double eps = 1e-8, double weightDecay = 0) =>
        AdEMAMix((Hyper)lr, beta1, beta2, beta3, alpha, beta3Warmup, alphaWarmup, eps, weightDecay);

    /// <summary>AdEMAMix with hyperparameters that may be tensors (<see cref="Hyper"/>, differentiable under <see cref="Differentiable"/>); every argument is given. Otherwise as the overload of doubles.</summary>
    public static IGradientTransformation AdEMAMix(Hyper lr, Hyper beta1, Hyper beta2, Hyper beta3, Hyper alpha, int? beta3Warmup, int? alphaWarmup, Hyper eps, Hyper weightDecay)
    {
        Check.UnitOpen(beta1, nameof(beta1));
        Check.UnitOpen(beta3, nameof(beta3));
        Check.NonNegative(alpha, nameof(alpha));
        if (beta3Warmup is int tb) Check.AtLeast(tb, 1, nameof(beta3Warmup));
        if (alphaWarmup is int ta) Check.AtLeast(ta, 1, nameof(alphaWarmup));
        return Define("ad_emamix", Chain(
            Precondition(AdamMoment(beta2, eps, false), Mix(
                Ema(beta1, debias: true),
                Scheduled(t => Ema(AdEMAMixSchedule.Beta3(t, beta1, beta3, beta3Warmup)), "slow_ema"),
                t => AdEMAMixSchedule.Alpha(t, alpha, alphaWarmup), "fast_and_slow")),
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("beta3", beta3), ("alpha", alpha), ("beta3Warmup", beta3Warmup), ("alphaWarmup", alphaWarmup), ("eps", eps), ("weightDecay", weightDecay));
    }
}
