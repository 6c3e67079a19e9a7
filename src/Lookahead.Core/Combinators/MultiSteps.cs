using System;
using System.Collections.Generic;
using System.Linq;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Gradient accumulation (Optax's <c>MultiSteps</c>): <paramref name="inner"/> takes one step every
    /// <paramref name="k"/> calls, on the mean of the gradients of those k micro-steps; the other calls return a
    /// zero update (the parameters do not move) and only accumulate. k = 1 returns <paramref name="inner"/> itself
    /// (no accumulation buffer).
    /// </summary>
    /// <param name="inner">The optimizer that steps every k calls.</param>
    /// <param name="k">Micro-steps per step, ≥ 1.</param>
    public static IGradientTransformation MultiSteps(IGradientTransformation inner, int k)
    {
        Check.NotNull(inner, nameof(inner));
        Check.AtLeast(k, 1, nameof(k));
        return k == 1 ? inner : new MultiStepsTransform(inner, k);
    }
}

sealed class MultiStepsTransform(IGradientTransformation inner, int k) : DeclaredTransform, IComposite
{
    // Leaves: count (micro-steps in the current accumulation), accumulator (the running mean), inner/….
    readonly (StateLayout Layout, Slot<long> Count, Slot<TensorTree> Mean, Slot<IOptState> Inner) _state = Declared(inner);

    static (StateLayout, Slot<long>, Slot<TensorTree>, Slot<IOptState>) Declared(IGradientTransformation inner)
    {
        var layout = new StateLayout("multi_steps");
        var count = layout.Integer("count");
        var mean = layout.PerParameter("accumulator", SlotStart.Zeros);
        var child = layout.Child("inner", inner.Init);
        return (layout.Seal(), count, mean, child);
    }

    protected override StateLayout Declare() => _state.Layout;

    public IEnumerable<IGradientTransformation> Children => new[] { inner };

    public override Spec Spec => Spec.Of("multi_steps").With("k", k).With("inner", inner);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long micro = state.Get(_state.Count) + 1;
        var mean = state.Get(_state.Mean);
        // The running mean of this accumulation: a ← a + (g − a)/micro.
        for (int i = 0; i < updates.Count; i++)
        {
            using var scope = NewDisposeScope();
            mean.Tensors[i].add_(updates.Tensors[i].sub(mean.Tensors[i]), 1.0 / micro);
        }
        if (micro < k)
        {
            foreach (var u in updates.Tensors) u.zero_();
            return state.With(_state.Count, micro);
        }
        for (int i = 0; i < updates.Count; i++) updates.Tensors[i].copy_(mean.Tensors[i]);
        var next = InPlace.Step(inner, updates, state.Get(_state.Inner), parameters, context);
        foreach (var a in mean.Tensors) a.zero_();
        return state.With(_state.Count, 0L).With(_state.Inner, next);
    }
}
