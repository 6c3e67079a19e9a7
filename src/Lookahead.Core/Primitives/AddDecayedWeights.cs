using System.Runtime.CompilerServices;
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

sealed class AddDecayedWeightsTransform(double weightDecay) : Transform<EmptyState>, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    public override Spec Spec => Spec.Of("add_decayed_weights").With("weight_decay", weightDecay);
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        if (weightDecay == 0) return state;
        Kernels.Elementwise.Run(new DecayKernel(this), updates, parameters);
        return state;
    }

    readonly struct DecayKernel(AddDecayedWeightsTransform tx) : Kernels.IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, System.ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray> => tx.Kernel(ops, a[0], a[1]);
    }

    /// <summary>u ← u + λ·θ on one block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal TArray Kernel<TArray, TOps>(TOps ops, TArray u, TArray theta) where TOps : struct, Kernels.IArrayOps<TArray> =>
        ops.AddScaled(u, theta, weightDecay);
}
