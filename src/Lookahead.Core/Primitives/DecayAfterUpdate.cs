using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Weight decay applied to the parameters after the update: θ ← (θ + u)(1 − c), as the update u ← u − c·(θ + u).
    /// SOAP's order (the official code decays the already updated parameters); AdamW's is
    /// <c>AddDecayedWeights</c> before the learning rate. Stateless.
    /// </summary>
    /// <param name="rate">c ∈ [0, 1] (SOAP: lr·λ).</param>
    public static IGradientTransformation DecayAfterUpdate(double rate) => new DecayAfterUpdateTransform(Check.Unit(rate, nameof(rate), "decay rate"));
}

sealed class DecayAfterUpdateTransform(double rate) : Transform<EmptyState>
{
    public override Spec Spec => Spec.Of("decay_after_update").With("rate", rate);

    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        if (rate == 0) return state;
        for (int i = 0; i < updates.Count; i++)
        {
            using var scope = NewDisposeScope();
            var u = updates.Tensors[i];
            var updated = parameters.Tensors[i].add(u);
            u.add_(updated, -rate);
        }
        return state;
    }
}
