using static Lookahead.Transforms;

namespace Lookahead;

public static partial class Optim
{
    /// <summary>
    /// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): u = sign(β₁m + (1−β₁)g),
    /// m ← β₂m + (1−β₂)g, θ ← θ − η(u + λθ). Composed as the lookahead shift with ν = β₁/β₂ over an EMA of
    /// decay β₂: (1−ν)g + ν(β₂m + (1−β₂)g) = β₁m + (1−β₁)g.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-4.</param>
    /// <param name="beta1">β₁ ∈ [0, β₂]; default 0.9.</param>
    /// <param name="beta2">β₂ ∈ (0, 1); default 0.99.</param>
    /// <param name="weightDecay">λ ≥ 0, decoupled; default 0.</param>
    public static IGradientTransformation Lion(double lr = 1e-4, double beta1 = 0.9, double beta2 = 0.99, double weightDecay = 0)
    {
        Check.Positive(beta2, nameof(beta2));
        Check.UnitOpen(beta2, nameof(beta2));
        Check.Unit(beta1, nameof(beta1));
        if (beta1 > beta2) throw new System.ArgumentOutOfRangeException(nameof(beta1), beta1, $"beta1 = {beta1} must not exceed beta2 = {beta2} (the shift weight β₁/β₂ would exceed 1)");
        return Define("lion", Chain(
            LookaheadShift(beta1 / beta2, Ema(beta2)),
            Sign(),
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("weightDecay", weightDecay));
    }
}
