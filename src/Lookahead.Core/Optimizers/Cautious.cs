using static Lookahead.Transforms;

namespace Lookahead;

public static partial class Optim
{
    /// <summary>
    /// C-AdamW (Liang et al. 2024; kyleliang919/C-Optim <c>c_adamw.py</c>, its per-parameter path): AdamW whose
    /// update keeps only the entries where the momentum agrees in sign with the gradient, rescaled by
    /// 1/max(kept fraction, 10⁻³) per tensor: θ ← θ(1 − ηλ), then θ ← θ − η·(√(1 − β₂ᵗ)/(1 − β₁ᵗ))·(m·k)/(√v + ε),
    /// ε on the uncorrected root as that code has it. <see cref="Transforms.Cautious"/> over Adam's direction.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-3.</param>
    /// <param name="beta1">β₁ ∈ [0, 1); default 0.9.</param>
    /// <param name="beta2">β₂ ∈ [0, 1); default 0.999.</param>
    /// <param name="eps">ε ≥ 0; default 1e-6 (C-Optim's).</param>
    /// <param name="weightDecay">λ ≥ 0, decoupled; default 0.</param>
    /// <param name="correctBias">Adam's bias correction (C-Optim's <c>correct_bias</c>); default true.</param>
    /// <param name="epsilonPlacement">Where ε goes: on the uncorrected root (default: C-Optim's per-parameter path) or on the corrected one (its foreach path).</param>
    public static IGradientTransformation CautiousAdamW(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weightDecay = 0, bool correctBias = true, EpsilonPlacement epsilonPlacement = EpsilonPlacement.Uncorrected) => Define("cautious_adam_w", Chain(
            Cautious(Precondition(
                AdamMoment(beta2, eps, false) with { EpsilonPlacement = epsilonPlacement, BiasCorrection = correctBias },
                Ema(Check.UnitOpen(beta1, nameof(beta1)), debias: correctBias))),
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("correctBias", correctBias), ("epsilonPlacement", epsilonPlacement));

    /// <summary>
    /// C-Lion (kyleliang919/C-Optim <c>c_lion.py</c>): Lion's sign update masked where it disagrees with the gradient
    /// and rescaled by n/(k + 1) per tensor (n entries, k kept): θ ← θ(1 − ηλ) − η·u·k·n/(Σk + 1).
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-4.</param>
    /// <param name="beta1">β₁ ∈ [0, β₂]; default 0.95 (C-Optim's).</param>
    /// <param name="beta2">β₂ ∈ (0, 1); default 0.98.</param>
    /// <param name="weightDecay">λ ≥ 0, decoupled; default 0.</param>
    public static IGradientTransformation CautiousLion(double lr = 1e-4, double beta1 = 0.95, double beta2 = 0.98, double weightDecay = 0)
    {
        Check.Positive(beta2, nameof(beta2));
        Check.UnitOpen(beta2, nameof(beta2));
        Check.Unit(beta1, nameof(beta1));
        if (beta1 > beta2) throw new System.ArgumentOutOfRangeException(nameof(beta1), beta1, $"beta1 = {beta1} must not exceed beta2 = {beta2} (the shift weight β₁/β₂ would exceed 1)");
        return Define("cautious_lion", Chain(
            Cautious(Chain(LookaheadShift(beta1 / beta2, Ema(beta2)), Sign()), CautiousScaling.CountPlusOne),
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("weightDecay", weightDecay));
    }
}
