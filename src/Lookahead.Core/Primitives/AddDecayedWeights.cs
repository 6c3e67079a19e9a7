using static TorchSharp.torch;
using TorchSharp;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Adds decayed weights: u ← u + λ·θ. Stateless. Placed after a preconditioner and before the
    /// learning-rate scale it is decoupled weight decay (AdamW, Loshchilov &amp; Hutter 2019); placed
    /// first in a chain it is the coupled L2 term of torch's <c>weight_decay</c> (g ← g + λ·θ).
    /// </summary>
    /// <param name="weightDecay">λ ≥ 0.</param>
    public static IGradientTransformation AddDecayedWeights(double weightDecay) =>
        new AddDecayedWeightsTransform(Check.NonNegative(weightDecay, nameof(weightDecay)));
}

sealed class AddDecayedWeightsTransform(double weightDecay) : Transform<EmptyState>
{
    public override Spec Spec => Spec.Of("add_decayed_weights").With("weight_decay", weightDecay);
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        if (weightDecay == 0) return state;
        foreach (var group in Buffers.Groups(updates, parameters)) Kernel<Tensor, Kernels.TensorOps>(default, group[0], group[1]);
        return state;
    }

    /// <summary>u ← u + λ·θ on one block.</summary>
    internal TArray Kernel<TArray, TOps>(TOps ops, TArray u, TArray theta) where TOps : struct, Kernels.IArrayOps<TArray> =>
        ops.AddScaled(u, theta, weightDecay);
}
