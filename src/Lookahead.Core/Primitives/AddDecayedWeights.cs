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
    public static IGradientTransformation AddDecayedWeights(double weightDecay) => AddDecayedWeights((Hyper)weightDecay);

    /// <summary>Adds decayed weights, u ← u + λ·θ, with λ a hyperparameter that may be a tensor (<see cref="Hyper"/>).</summary>
    /// <param name="weightDecay">λ ≥ 0.</param>
    internal static IGradientTransformation AddDecayedWeights(Hyper weightDecay)
    {
        Check.NonNegative(weightDecay.Value, nameof(weightDecay));
        return new AddDecayedWeightsTransform(weightDecay);
    }
}

sealed class AddDecayedWeightsTransform(Hyper weightDecay) : Transform<EmptyState>, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    public override Spec Spec => Spec.Of("add_decayed_weights").With("weight_decay", weightDecay);
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        if (weightDecay.Value == 0 && !weightDecay.IsTensor) return state;   // a tensor λ = 0 still has a derivative
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
        Kernels.Coefficients.AddScaled(ops, u, theta, weightDecay);
}
