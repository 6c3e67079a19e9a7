namespace Lookahead;

public static partial class Transforms
{
    /// <summary>Elementwise sign: u ← sign(u) (0 stays 0). Stateless. The update direction of Lion and signSGD.</summary>
    public static IGradientTransformation Sign() => SignTransform.Instance;
}

sealed class SignTransform : Transform<EmptyState>
{
    public static readonly SignTransform Instance = new();
    public override Spec Spec => Spec.Of("sign");
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        foreach (var group in Buffers.Groups(updates)) default(Kernels.TensorOps).Sign(group[0]);
        return state;
    }
}
