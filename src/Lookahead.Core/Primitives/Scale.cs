using System;
using TorchSharp;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>Scales the updates: u ← s·u. Stateless.</summary>
    /// <param name="factor">s, any finite number; an optimizer's learning rate enters as <c>Scale(-lr)</c>.</param>
    public static IGradientTransformation Scale(double factor) => Scale((Hyper)factor);

    /// <summary>Scales the updates by a hyperparameter that may be a tensor (<see cref="Hyper"/>): u ← s·u.</summary>
    /// <param name="factor">s, finite; a tensor makes s differentiable under <see cref="Differentiable"/>.</param>
    internal static IGradientTransformation Scale(Hyper factor)
    {
        Check.Finite(factor.Value, nameof(factor));
        return new ScaleTransform(factor);
    }

    /// <summary>Scales the updates by a schedule of the step: u ← s(t)·u, with t = 1, 2, … the step being taken.</summary>
    /// <param name="schedule">s(t); must return a finite number for every step it is asked about.</param>
    /// <param name="name">Shown in <see cref="IGradientTransformation.Name"/>.</param>
    public static IGradientTransformation ScaleBySchedule(Func<long, double> schedule, string name = "schedule") =>
        new ScaleByScheduleTransform(Check.NotNull(schedule, nameof(schedule)), name);
}

sealed class ScaleTransform(Hyper factor) : Transform<EmptyState>, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    public override Spec Spec => Spec.Of("scale").With("factor", factor);
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        Kernels.Elementwise.Run(new Kernels.ScaleKernel(factor), updates);
        return state;
    }
}

sealed class ScaleByScheduleTransform(Func<long, double> schedule, string name) : DeclaredTransform, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    static readonly StateLayout State = new("scale_by_schedule");
    /// <summary>Steps taken so far.</summary>
    static readonly Slot<long> Count = State.Integer("count");

    protected override StateLayout Declare() => State;

    public override Spec Spec => Spec.Of("scale_by_schedule").With("name", name).WithProbes("values", schedule);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long t = state.Get(Count) + 1;
        double s = schedule(t);
        if (!double.IsFinite(s))
            throw new InvalidOperationException($"{Label}: the schedule returned {s} at step {t}; it must return a finite number");
        Kernels.Elementwise.Run(new Kernels.ScaleKernel(s), updates);
        return state.With(Count, t);
    }
}
