using static Lookahead.Transforms;

namespace Lookahead;

public static partial class Optim
{
    /// <summary>
    /// Prodigy (Mishchenko &amp; Defazio 2023; konstmish/prodigy): Adam whose step size d is estimated online
    /// (<see cref="Transforms.DAdaptedAdam"/>). Weight decay decoupled by default (θ ← θ − λ·dlr·θ); coupled
    /// (g ← g + λθ) with <paramref name="decouple"/> false.
    /// </summary>
    /// <param name="lr">The multiplier of d (keep 1); default 1.</param>
    /// <param name="beta1">β₁ ∈ [0, 1); default 0.9.</param>
    /// <param name="beta2">β₂ ∈ [0, 1); default 0.999.</param>
    /// <param name="beta3">β₃ ∈ [0, 1] of the estimate's sums; null: √β₂.</param>
    /// <param name="eps">ε ≥ 0 (multiplied by d); default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="decouple">Decoupled weight decay; default true.</param>
    /// <param name="useBiasCorrection">Adam's bias correction in the step; default false.</param>
    /// <param name="safeguardWarmup">Leave lr·bc out of s (the official safeguard for warm-up schedules); default false.</param>
    /// <param name="d0">The initial estimate d₀ &gt; 0; default 1e-6.</param>
    /// <param name="dCoef">Multiplier of the estimate; default 1.</param>
    /// <param name="growthRate">The largest factor d may grow by per step (≥ 1; ∞ for none); default ∞.</param>
    /// <param name="slice">Use every slice-th entry in the estimate (the official <c>slice_p</c>); default 1.</param>
    public static IGradientTransformation Prodigy(double lr = 1.0, double beta1 = 0.9, double beta2 = 0.999, double? beta3 = null, double eps = 1e-8, double weightDecay = 0, bool decouple = true,
        bool useBiasCorrection = false, bool safeguardWarmup = false, double d0 = 1e-6, double dCoef = 1.0, double growthRate = double.PositiveInfinity, int slice = 1)
    {
        Check.NonNegative(weightDecay, nameof(weightDecay));
        double b3 = beta3 ?? System.Math.Sqrt(Check.UnitOpen(beta2, nameof(beta2)));
        return Define("prodigy", Chain(
            AddDecayedWeights(decouple ? 0 : weightDecay),
            DAdaptedAdam(lr, beta1, beta2, b3, eps, decouple ? weightDecay : 0, useBiasCorrection, safeguardWarmup, d0, dCoef, growthRate, slice)),
            ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("beta3", beta3), ("eps", eps), ("weightDecay", weightDecay), ("decouple", decouple), ("useBiasCorrection", useBiasCorrection),
            ("safeguardWarmup", safeguardWarmup), ("d0", d0), ("dCoef", dCoef), ("growthRate", growthRate), ("slice", slice));
    }
}
