using System;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// The layer-wise trust ratio of LARS (You et al. 2017) and LAMB (You et al. 2020): per tensor,
    /// u ← clamp(c·‖θ‖/(‖u‖ + ε), r_min, r_max)·u, with the ratio 1 where ‖θ‖ or ‖u‖ is 0 (Optax's
    /// <c>scale_by_trust_ratio</c>). LAMB is AdamW's direction under it (<see cref="Optim.Lamb"/>), LARS SGD's
    /// (<see cref="Optim.Lars"/>); <c>Chain(anyDirection, ScaleByTrustRatio())</c> puts any optimizer's direction under it.
    /// Stateless.
    /// </summary>
    /// <param name="trustCoefficient">c &gt; 0; default 1.</param>
    /// <param name="eps">ε ≥ 0 added to ‖u‖; default 0.</param>
    /// <param name="minRatio">r_min ≥ 0; default 0.</param>
    /// <param name="maxRatio">r_max ≥ r_min (∞: no cap; some LAMB implementations use 10); default ∞.</param>
    public static IGradientTransformation ScaleByTrustRatio(double trustCoefficient = 1, double eps = 0, double minRatio = 0, double maxRatio = double.PositiveInfinity)
    {
        Check.Positive(trustCoefficient, nameof(trustCoefficient));
        Check.NonNegative(eps, nameof(eps));
        Check.NonNegative(minRatio, nameof(minRatio));
        if (double.IsNaN(maxRatio) || maxRatio < minRatio) throw new ArgumentOutOfRangeException(nameof(maxRatio), maxRatio, $"maxRatio must be ≥ minRatio = {minRatio}");
        return new TrustRatioTransform(trustCoefficient, eps, minRatio, maxRatio);
    }
}

sealed class TrustRatioTransform(double coefficient, double eps, double minRatio, double maxRatio) : Transform<EmptyState>
{
    public override Spec Spec => Spec.Of("scale_by_trust_ratio").With("trust_coefficient", coefficient).With("eps", eps).With("min_ratio", minRatio).With("max_ratio", maxRatio);

    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        for (int i = 0; i < updates.Count; i++)
        {
            using var scope = NewDisposeScope();
            var u = updates.Tensors[i];
            // In the update's precision: a bfloat16 parameter's norm in bfloat16 would carry its 8-bit rounding into every entry.
            var theta = parameters.Tensors[i];
            var thetaNorm = (theta.dtype == u.dtype ? theta : theta.to(u.dtype)).norm();
            var updateNorm = u.norm();
            var ratio = thetaNorm.mul(coefficient).div(updateNorm.add(eps));
            // 1 where either norm is zero; then the bounds.
            ratio = where(thetaNorm.eq(0).logical_or(updateNorm.eq(0)), ones_like(ratio), ratio);
            // An infinite cap is no cap (a double.MaxValue bound would not convert to a float32 tensor's scalar).
            ratio = double.IsPositiveInfinity(maxRatio) ? ratio.clamp_min(minRatio) : ratio.clamp(minRatio, maxRatio);
            u.mul_(ratio);
        }
        return state;
    }
}
