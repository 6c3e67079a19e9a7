using System;
using System.Collections.Generic;
using System.Linq;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>
/// When <see cref="Transforms.Boosted"/> raises its level: the loss is averaged over windows of
/// <see cref="Window"/> steps, and the level goes up by one when a window's mean improved on the previous
/// window's by less than <see cref="Tolerance"/> (relative), at most <see cref="MaxLevel"/> times.
/// </summary>
public sealed record BoostPolicy
{
    /// <summary>Steps per window; ≥ 1, default 200.</summary>
    public int Window { get; init; } = 200;
    /// <summary>Relative improvement below which the loss counts as flat; ≥ 0, default 0.01.</summary>
    public double Tolerance { get; init; } = 0.01;
    /// <summary>Highest level; ≥ 0, default 3.</summary>
    public int MaxLevel { get; init; } = 3;
}

public static partial class Transforms
{
    /// <summary>
    /// A transform whose hyperparameters step up when the loss flattens: at level ℓ (0, 1, …) it runs
    /// <paramref name="factory"/>(ℓ), with one state carried across levels (so the factory must return
    /// transforms whose states have the same structure, e.g. the same optimizer with other coefficients).
    /// ARSG's observation boost (OBSB, Chen et al.) is <c>Boosted(ℓ ⇒ Arsg(lr/4^ℓ, μ = μ₀·2^ℓ), policy)</c>.
    /// Reads the loss from <see cref="ContextKeys.Loss"/>.
    /// </summary>
    public static IGradientTransformation Boosted(Func<int, IGradientTransformation> factory, BoostPolicy policy, string name = "boosted")
    {
        Check.NotNull(factory, nameof(factory));
        Check.NotNull(policy, nameof(policy));
        Check.AtLeast(policy.Window, 1, "Window");
        Check.NonNegative(policy.Tolerance, "Tolerance");
        Check.AtLeast(policy.MaxLevel, 0, "MaxLevel");
        return new BoostedTransform(factory, policy, name);
    }
}

/// <summary>State of <see cref="Transforms.Boosted"/>.</summary>
/// <param name="Count">Steps taken so far.</param>
/// <param name="Level">The current level ℓ.</param>
/// <param name="WindowSum">Sum of the losses of the current window.</param>
/// <param name="WindowCount">Steps in the current window.</param>
/// <param name="PreviousMean">Mean loss of the last complete window (NaN before the first).</param>
/// <param name="Inner">State of the current level's transform.</param>
public sealed record BoostedState(long Count, int Level, double WindowSum, int WindowCount, double PreviousMean, IOptState Inner) : IOptState
{
    /// <inheritdoc />
    public IEnumerable<StateLeaf> Leaves() =>
        new[]
        {
            OptState.Scalar("count", Count), OptState.Scalar("level", Level), OptState.Scalar("window_sum", WindowSum),
            OptState.Scalar("window_count", WindowCount), OptState.Scalar("previous_mean", PreviousMean),
        }.Concat(OptState.Nested("inner", Inner));

    /// <inheritdoc />
    public IOptState MapTensors(Func<string, Tensor, Tensor> f) => this with { Inner = OptState.MapNested("inner", Inner, f) };

    /// <inheritdoc />
    public IOptState MapScalars(Func<string, double, double> f) => this with
    {
        Count = OptState.Integer("count", Count, f), Level = (int)OptState.Integer("level", Level, f), WindowSum = f("window_sum", WindowSum),
        WindowCount = (int)OptState.Integer("window_count", WindowCount, f), PreviousMean = f("previous_mean", PreviousMean),
        Inner = OptState.MapNestedScalars("inner", Inner, f),
    };
}

sealed class BoostedTransform(Func<int, IGradientTransformation> factory, BoostPolicy policy, string name) : Transform<BoostedState>, IComposite, IValidating
{
    public IEnumerable<IGradientTransformation> Children => new[] { At(0) };

    public override Spec Spec => Spec.Of("boosted").With("name", name).With("policy", policy)
        .WithFactoryProbes("levels", factory, Enumerable.Range(0, policy.MaxLevel + 1), "level");

    protected override string Label => name;

    public void Validate(IReadOnlyList<ParameterInfo> parameters, ValidationReport report) => Validation.Child(At(0), parameters, report);

    public IEnumerable<ContextRequirement> Requirements => new[] { ContextRequirement.For(ContextKeys.Loss, Label) };

    IGradientTransformation At(int level) =>
        factory(level) ?? throw new InvalidOperationException($"{Label}: the factory returned null for level {level}");

    protected override BoostedState InitState(TensorTree parameters) => new(0, 0, 0, 0, double.NaN, At(0).Init(parameters));

    public override BoostedState Step(TensorTree updates, BoostedState state, TensorTree parameters, StepContext context)
    {
        double loss = context.Get(ContextKeys.Loss, Label);
        if (!double.IsFinite(loss)) throw new ArgumentException($"{Label}: the loss in the context is {loss}; it must be finite", nameof(context));
        var inner = InPlace.Step(At(state.Level), updates, state.Inner, parameters, context);
        double sum = state.WindowSum + loss, previous = state.PreviousMean;
        int count = state.WindowCount + 1, level = state.Level;
        if (count == policy.Window)
        {
            double mean = sum / count;
            if (!double.IsNaN(previous) && level < policy.MaxLevel && previous - mean < policy.Tolerance * Math.Abs(previous)) level++;
            previous = mean; sum = 0; count = 0;
        }
        return new(state.Count + 1, level, sum, count, previous, inner);
    }
}
