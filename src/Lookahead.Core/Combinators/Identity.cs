namespace Lookahead;

public static partial class Transforms
{
    /// <summary>The identity: updates pass through unchanged. Neutral for <see cref="Chain(IGradientTransformation[])"/> on both sides.</summary>
    public static IGradientTransformation Identity() => IdentityTransform.Instance;
}

sealed class IdentityTransform : Transform<EmptyState>, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    public static readonly IdentityTransform Instance = new();
    public override Spec Spec => Spec.Of("identity");
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;
    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context) => state;
}
