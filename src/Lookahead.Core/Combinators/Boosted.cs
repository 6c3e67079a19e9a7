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

sealed class BoostedTransform(Func<int, IGradientTransformation> factory, BoostPolicy policy, string name) : DeclaredTransform, IComposite, IValidating, Kernels.IFusable
{
    public bool FusesAlone => true;
    /// <summary>The transform it runs is known only at each step and may not be elementwise: the update buffer stays in memory.</summary>
    public bool Flushes => true;

    // Leaves, in order: count (steps taken), level (the current level ℓ), window_sum (sum of the current window's
    // losses), window_count (steps in the current window), previous_mean (mean loss of the last complete window,
    // NaN before the first), inner/… (the state of the current level's transform, started by factory(0)).
    readonly State _state = new(factory, name);

    sealed class State
    {
        internal readonly StateLayout Layout = new("boosted");
        internal readonly Slot<long> Count, Level, WindowCount;
        internal readonly Slot<double> WindowSum, PreviousMean;
        internal readonly Slot<IOptState> Inner;

        internal State(Func<int, IGradientTransformation> factory, string name)
        {
            Count = Layout.Integer("count");
            Level = Layout.Integer("level");
            WindowSum = Layout.Real("window_sum");
            WindowCount = Layout.Integer("window_count");
            PreviousMean = Layout.Real("previous_mean", double.NaN);
            Inner = Layout.Child("inner", p => At(factory, name, 0).Init(p));
            Layout.Seal();
        }
    }

    protected override StateLayout Declare() => _state.Layout;

    public IEnumerable<IGradientTransformation> Children => new[] { At(0) };

    public override Spec Spec => Spec.Of("boosted").With("name", name).With("policy", policy)
        .WithFactoryProbes("levels", factory, Enumerable.Range(0, policy.MaxLevel + 1), "level");

    protected override string Label => name;

    public void Validate(IReadOnlyList<ParameterInfo> parameters, ValidationReport report) => Validation.Child(At(0), parameters, report);

    public IEnumerable<ContextRequirement> Requirements => new[] { ContextRequirement.For(ContextKeys.Loss, Label) };

    IGradientTransformation At(int level) => At(factory, name, level);

    static IGradientTransformation At(Func<int, IGradientTransformation> factory, string name, int level) =>
        factory(level) ?? throw new InvalidOperationException($"{name}: the factory returned null for level {level}");

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        double loss = context.Get(ContextKeys.Loss, Label);
        if (!double.IsFinite(loss)) throw new ArgumentException($"{Label}: the loss in the context is {loss}; it must be finite", nameof(context));
        int level = checked((int)state.Get(_state.Level));
        var inner = InPlace.Step(At(level), updates, state.Get(_state.Inner), parameters, context);
        double sum = state.Get(_state.WindowSum) + loss, previous = state.Get(_state.PreviousMean);
        long count = state.Get(_state.WindowCount) + 1;
        if (count == policy.Window)
        {
            double mean = sum / count;
            if (!double.IsNaN(previous) && level < policy.MaxLevel && previous - mean < policy.Tolerance * Math.Abs(previous)) level++;
            previous = mean; sum = 0; count = 0;
        }
        return state.With(_state.Count, state.Get(_state.Count) + 1).With(_state.Level, level).With(_state.WindowSum, sum)
            .With(_state.WindowCount, count).With(_state.PreviousMean, previous).With(_state.Inner, inner);
    }
}
