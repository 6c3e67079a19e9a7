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

/// <summary>State of <see cref="Transforms.Scheduled"/>.</summary>
/// <param name="Count">Steps taken so far.</param>
/// <param name="Inner">State of the scheduled transform.</param>
public sealed record ScheduledState(long Count, IOptState Inner) : IOptState
{
    /// <inheritdoc />
    public IEnumerable<StateLeaf> Leaves() => OptState.Nested("inner", Inner).Prepend(OptState.Scalar("count", Count));

    /// <inheritdoc />
    public IOptState MapTensors(Func<string, Tensor, Tensor> f) => this with { Inner = OptState.MapNested("inner", Inner, f) };

    /// <inheritdoc />
    public IOptState MapScalars(Func<string, double, double> f) =>
        this with { Count = OptState.Integer("count", Count, f), Inner = OptState.MapNestedScalars("inner", Inner, f) };
}

sealed class ScheduledTransform(Func<long, IGradientTransformation> factory, string name) : Transform<ScheduledState>, IComposite
{
    public override Spec Spec => Spec.Of("scheduled").With("name", name).WithFactoryProbes("steps", factory, Spec.ProbeSteps, "t");

    protected override string Label => name;

    public IEnumerable<IGradientTransformation> Children => new[] { At(1) };

    IGradientTransformation At(long t) =>
        factory(t) ?? throw new InvalidOperationException($"{name}: the factory returned null at step {t}");

    protected override ScheduledState InitState(TensorTree parameters) => new(0, At(1).Init(parameters));

    public override ScheduledState Step(TensorTree updates, ScheduledState state, TensorTree parameters, StepContext context)
    {
        long t = state.Count + 1;
        return new(t, InPlace.Step(At(t), updates, state.Inner, parameters, context));
    }
}
