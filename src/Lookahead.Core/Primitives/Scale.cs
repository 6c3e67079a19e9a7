using System;
using TorchSharp;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>Scales the updates: u ← s·u. Stateless.</summary>
    /// <param name="factor">s, any finite number; an optimizer's learning rate enters as <c>Scale(-lr)</c>.</param>
    public static IGradientTransformation Scale(double factor) =>
        new ScaleTransform(Check.Finite(factor, nameof(factor)));

    /// <summary>Scales the updates by a schedule of the step: u ← s(t)·u, with t = 1, 2, … the step being taken.</summary>
    /// <param name="schedule">s(t); must return a finite number for every step it is asked about.</param>
    /// <param name="name">Shown in <see cref="IGradientTransformation.Name"/>.</param>
    public static IGradientTransformation ScaleBySchedule(Func<long, double> schedule, string name = "schedule") =>
        new ScaleByScheduleTransform(Check.NotNull(schedule, nameof(schedule)), name);
}

sealed class ScaleTransform(double factor) : Transform<EmptyState>
{
    public override Spec Spec => Spec.Of("scale").With("factor", factor);
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        using var s = factor.ToScalar();
        foreach (var group in Buffers.Groups(updates)) group[0].mul_(s);
        return state;
    }
}

/// <summary>State of <see cref="Transforms.ScaleBySchedule(System.Func{long, double}, string)"/>.</summary>
/// <param name="Count">Steps taken so far.</param>
public sealed record ScaleByScheduleState(long Count) : IOptState
{
    /// <inheritdoc />
    public System.Collections.Generic.IEnumerable<StateLeaf> Leaves() { yield return OptState.Scalar("count", Count); }
    /// <inheritdoc />
    public IOptState MapTensors(Func<string, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> f) => this;

    /// <inheritdoc />
    public IOptState MapScalars(Func<string, double, double> f) => new ScaleByScheduleState(OptState.Integer("count", Count, f));
}

sealed class ScaleByScheduleTransform(Func<long, double> schedule, string name) : Transform<ScaleByScheduleState>
{
    public override Spec Spec => Spec.Of("scale_by_schedule").With("name", name).WithProbes("values", schedule);
    protected override ScaleByScheduleState InitState(TensorTree parameters) => new(0);

    public override ScaleByScheduleState Step(TensorTree updates, ScaleByScheduleState state, TensorTree parameters, StepContext context)
    {
        long t = state.Count + 1;
        double s = schedule(t);
        if (!double.IsFinite(s))
            throw new InvalidOperationException($"{Label}: the schedule returned {s} at step {t}; it must return a finite number");
        using var scalar = s.ToScalar();
        foreach (var group in Buffers.Groups(updates)) group[0].mul_(scalar);
        return new(t);
    }
}
