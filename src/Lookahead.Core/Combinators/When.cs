using System;
using System.Collections.Generic;
using System.Linq;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Conditional application: at step t (1, 2, …) the <paramref name="inner"/> transform runs when
    /// <paramref name="condition"/>(t, context) holds; otherwise the updates pass through unchanged and
    /// the inner state is kept as it was.
    /// </summary>
    /// <param name="condition">Decides from the step number and the step's context.</param>
    /// <param name="inner">The transform applied when the condition holds.</param>
    /// <param name="name">Shown in <see cref="IGradientTransformation.Name"/>.</param>
    public static IGradientTransformation When(Func<long, StepContext, bool> condition, IGradientTransformation inner, string name = "condition") =>
        new WhenTransform(Check.NotNull(condition, nameof(condition)), Check.NotNull(inner, nameof(inner)), name);
}

sealed class WhenTransform(Func<long, StepContext, bool> condition, IGradientTransformation inner, string name) : DeclaredTransform, IComposite, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    // Leaves: count (steps seen, applied or not), applied (steps on which the inner transform ran), inner/….
    readonly (StateLayout Layout, Slot<long> Count, Slot<long> Applied, Slot<IOptState> Inner) _state = Declared(inner);

    static (StateLayout, Slot<long>, Slot<long>, Slot<IOptState>) Declared(IGradientTransformation inner)
    {
        var layout = new StateLayout("when");
        var count = layout.Integer("count");
        var applied = layout.Integer("applied");
        var child = layout.Child("inner", inner.Init);
        return (layout.Seal(), count, applied, child);
    }

    protected override StateLayout Declare() => _state.Layout;

    public IEnumerable<IGradientTransformation> Children => new[] { inner };

    public override Spec Spec => Spec.Of("when").With("name", name).WithConditionProbes("condition", condition).With("inner", inner);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long t = state.Get(_state.Count) + 1;
        state = state.With(_state.Count, t);
        if (!condition(t, context)) return state;
        return state.With(_state.Applied, state.Get(_state.Applied) + 1)
            .With(_state.Inner, InPlace.Step(inner, updates, state.Get(_state.Inner), parameters, context));
    }
}
