using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Clips by global norm: with n = sqrt(Σᵢ ‖uᵢ‖²) over every tensor of the tree,
    /// u ← u·min(1, c/n). Stateless. The norm is computed in float64 and stays on the device (no host
    /// round trip), so the step is unconditional arithmetic.
    /// </summary>
    /// <param name="maxNorm">c &gt; 0.</param>
    public static IGradientTransformation ClipByGlobalNorm(double maxNorm) =>
        new ClipByGlobalNormTransform(Check.Positive(maxNorm, nameof(maxNorm)));
}

sealed class ClipByGlobalNormTransform(double maxNorm) : Transform<EmptyState>
{
    public override Spec Spec => Spec.Of("clip_by_global_norm").With("max_norm", maxNorm);
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        if (updates.Count == 0) return state;
        using var scope = NewDisposeScope();
        var device = updates.Tensors[0].device;
        var squares = updates.Tensors
            .Select(u => u.to(ScalarType.Float64).square().sum().to(device))
            .ToArray();
        var norm = stack(squares).sum().sqrt();
        // min(1, c/n); n = 0 gives c/0 = ∞ and hence the factor 1.
        using Scalar c = maxNorm.ToScalar(), one = 1.0.ToScalar();
        var factor = norm.reciprocal().mul_(c).clamp_max_(one);
        foreach (var u in updates.Tensors) u.mul_(factor.to(u.dtype, u.device));
        return state;
    }
}
