using System.Runtime.CompilerServices;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>Elementwise sign: u ← sign(u) (0 stays 0). Stateless. The update direction of Lion and signSGD.</summary>
    public static IGradientTransformation Sign() => SignTransform.Instance;
}

sealed class SignTransform : Transform<EmptyState>, Kernels.IFusable
{
    public bool FusesAlone => true;

    public static readonly SignTransform Instance = new();
    public override Spec Spec => Spec.Of("sign");
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        Kernels.Elementwise.Run(default(SignKernel), updates);
        return state;
    }
}

/// <summary>u ← sign(u).</summary>
readonly struct SignKernel : Kernels.IKernel
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Run<TArray, TOps>(TOps ops, System.ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray> => ops.Sign(a[0]);
}
