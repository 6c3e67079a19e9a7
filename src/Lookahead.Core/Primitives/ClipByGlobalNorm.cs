using System.Collections.Generic;
using Lookahead.Kernels;
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

sealed class ClipByGlobalNormTransform(double maxNorm) : Transform<EmptyState>, IReducing, IFusable
{
    public bool FusesAlone => true;

    static readonly Reduction[] Norm = { new(ReductionKind.SumOfSquares, ReductionScope.Global, "updates") };

    public override Spec Spec => Spec.Of("clip_by_global_norm").With("max_norm", maxNorm);
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public IReadOnlyList<Reduction> Reductions => Norm;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        if (updates.Count == 0) return state;
        if (Elementwise.Reduce(ReductionKind.SumOfSquares, Buffers.Groups(updates)) is { } parts)
        {
            // The fused executor: the same factor from the norm summed on the host, then a recorded scale.
            double sum = 0;
            foreach (var p in parts) sum += p;
            Elementwise.Run(new ScaleKernel(Factor<double, ArrayBlockOps>(default, sum, maxNorm)), updates);
            return state;
        }
        using var scope = NewDisposeScope();
        var squares = Reducer.Global(ReductionKind.SumOfSquares, updates.Tensors[0].device, updates);
        var factor = Factor<Tensor, TensorOps>(default, squares, maxNorm);
        foreach (var group in Buffers.Groups(updates)) default(TensorOps).ScaleBy(group[0], factor);
        return state;
    }

    /// <summary>min(1, c/n) from n² = <paramref name="squares"/>; n = 0 gives c/0 = ∞ and hence the factor 1.</summary>
    internal static TSum Factor<TSum, TOps>(TOps ops, TSum squares, double maxNorm) where TOps : struct, IScalarOps<TSum> =>
        ops.Min(ops.Div(ops.Constant(squares, maxNorm), ops.Sqrt(squares)), 1);
}
