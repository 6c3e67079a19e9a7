using System;
using System.Collections.Generic;
using System.Linq;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Any hyperparameter on a schedule (optax's <c>inject_hyperparams</c>): at step t the transform is
    /// <paramref name="factory"/>(t), and the state carries over from step to step. The factory must build
    /// transforms whose states have the same structure at every step (the same optimizer with other numbers),
    /// e.g. <c>Scheduled(t =&gt; Optim.AdamW(lr: cosine.At(t), weightDecay: wd.At(t)))</c>.
    /// </summary>
    /// <param name="factory">The transform for step t = 1, 2, …; <c>Init</c> uses factory(1).</param>
    /// <param name="name">Shown in <see cref="IGradientTransformation.Name"/>.</param>
    public static IGradientTransformation Scheduled(Func<long, IGradientTransformation> factory, string name = "scheduled") =>
        new ScheduledTransform(Check.NotNull(factory, nameof(factory)), name);
}

sealed class ScheduledTransform(Func<long, IGradientTransformation> factory, string name) : DeclaredTransform, IComposite, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;
    /// <summary>The transform it runs is known only at each step and may not be elementwise: the update buffer stays in memory.</summary>
    public bool Flushes => true;

    // Leaves: count (steps taken), inner/… (the state of the scheduled transform, started by factory(1)).
    readonly (StateLayout Layout, Slot<long> Count, Slot<IOptState> Inner) _state = Declared(factory, name);

    static (StateLayout, Slot<long>, Slot<IOptState>) Declared(Func<long, IGradientTransformation> factory, string name)
    {
        var layout = new StateLayout("scheduled");
        var count = layout.Integer("count");
        var inner = layout.Child("inner", p => At(factory, name, 1).Init(p));
        return (layout.Seal(), count, inner);
    }

    protected override StateLayout Declare() => _state.Layout;

    public override Spec Spec => Spec.Of("scheduled").With("name", name).WithFactoryProbes("steps", factory, Spec.ProbeSteps, "t");

    protected override string Label => name;

    public IEnumerable<IGradientTransformation> Children => new[] { At(factory, name, 1) };

    static IGradientTransformation At(Func<long, IGradientTransformation> factory, string name, long t) =>
        factory(t) ?? throw new InvalidOperationException($"{name}: the factory returned null at step {t}");

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long t = state.Get(_state.Count) + 1;
        var inner = InPlace.Step(At(factory, name, t), updates, state.Get(_state.Inner), parameters, context);
        return state.With(_state.Count, t).With(_state.Inner, inner);
    }
}
