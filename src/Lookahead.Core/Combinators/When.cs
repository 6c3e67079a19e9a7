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

/// <summary>State of <see cref="Transforms.When"/>.</summary>
/// <param name="Count">Steps seen so far (applied or not).</param>
/// <param name="Applied">Steps on which the inner transform ran.</param>
/// <param name="Inner">The inner transform's state.</param>
public sealed record WhenState(long Count, long Applied, IOptState Inner) : IOptState
{
    /// <inheritdoc />
    public IEnumerable<StateLeaf> Leaves() =>
        new[] { OptState.Scalar("count", Count), OptState.Scalar("applied", Applied) }.Concat(OptState.Nested("inner", Inner));

    /// <inheritdoc />
    public IOptState MapTensors(Func<string, Tensor, Tensor> f) => this with { Inner = OptState.MapNested("inner", Inner, f) };

    /// <inheritdoc />
    public IOptState MapScalars(Func<string, double, double> f) => this with
    {
        Count = OptState.Integer("count", Count, f), Applied = OptState.Integer("applied", Applied, f),
        Inner = OptState.MapNestedScalars("inner", Inner, f),
    };
}

sealed class WhenTransform(Func<long, StepContext, bool> condition, IGradientTransformation inner, string name) : Transform<WhenState>, IComposite
{
    public IEnumerable<IGradientTransformation> Children => new[] { inner };

    public override Spec Spec => Spec.Of("when").With("name", name).WithFunction("condition", condition).With("inner", inner);
    protected override WhenState InitState(TensorTree parameters) => new(0, 0, inner.Init(parameters));

    public override WhenState Step(TensorTree updates, WhenState state, TensorTree parameters, StepContext context)
    {
        long t = state.Count + 1;
        if (!condition(t, context)) return state with { Count = t };
        return new(t, state.Applied + 1, InPlace.Step(inner, updates, state.Inner, parameters, context));
    }
}
