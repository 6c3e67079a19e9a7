using System;
using System.Collections.Generic;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>How <see cref="Transforms.AverageParameters"/> averages.</summary>
public enum ParameterAveraging
{
    /// <summary>An exponential moving average ā ← βā + (1 − β)θ after every step, started at θ₀ (Polyak-style "EMA weights").</summary>
    Exponential,
    /// <summary>Stochastic weight averaging (Izmailov et al. 2018): the uniform mean of θ after every period-th step from the start step on.</summary>
    Uniform,
}

public static partial class Transforms
{
    /// <summary>
    /// Evaluation weights kept next to any optimizer: after each step of <paramref name="inner"/>, the average of the
    /// updated parameters is advanced (<see cref="ParameterAveraging"/>). The update is the inner one unchanged; the
    /// average is the evaluation point (<see cref="Evaluation.Parameters"/>, <see cref="Runner.UseEvaluationParameters"/>).
    /// </summary>
    /// <param name="inner">The optimizer.</param>
    /// <param name="averaging">Exponential (EMA) or uniform (SWA).</param>
    /// <param name="decay">β ∈ [0, 1) of the EMA; ignored by SWA.</param>
    /// <param name="start">SWA's first averaged step (≥ 1); before it the evaluation point is the parameters.</param>
    /// <param name="period">SWA averages every period-th step from <paramref name="start"/> (≥ 1).</param>
    public static IGradientTransformation AverageParameters(IGradientTransformation inner, ParameterAveraging averaging = ParameterAveraging.Exponential, double decay = 0.999, long start = 1, long period = 1)
    {
        Check.NotNull(inner, nameof(inner));
        if (!Enum.IsDefined(averaging)) throw new ArgumentOutOfRangeException(nameof(averaging), averaging, "not a ParameterAveraging");
        Check.UnitOpen(decay, nameof(decay), "EMA decay β");
        Check.AtLeast(start, 1, nameof(start));
        Check.AtLeast(period, 1, nameof(period));
        return new AverageParametersTransform(inner, averaging, decay, start, period);
    }
}

sealed class AverageParametersTransform(IGradientTransformation inner, ParameterAveraging averaging, double decay, long start, long period) : DeclaredTransform, IComposite, IEvaluationPoint
{
    const string AverageName = "parameter_average";

    // Leaves: count (steps), averaged (steps in the SWA mean), parameter_average (ā, started at θ₀), inner/….
    readonly (StateLayout Layout, Slot<long> Count, Slot<long> Averaged, Slot<TensorTree> Average, Slot<IOptState> Inner) _state = Declared(inner);

    static (StateLayout, Slot<long>, Slot<long>, Slot<TensorTree>, Slot<IOptState>) Declared(IGradientTransformation inner)
    {
        var layout = new StateLayout("average_parameters");
        var count = layout.Integer("count");
        var averaged = layout.Integer("averaged");
        var average = layout.PerParameter(AverageName, SlotStart.CopyOfParameters);
        var child = layout.Child("inner", inner.Init);
        return (layout.Seal(), count, averaged, average, child);
    }

    protected override StateLayout Declare() => _state.Layout;

    public IEnumerable<IGradientTransformation> Children => new[] { inner };

    public override Spec Spec => Spec.Of("average_parameters").With("averaging", averaging.ToString()).With("decay", decay).With("start", start).With("period", period).With("inner", inner);

    public string SlotName => AverageName;

    public bool Invertible => false;

    /// <summary>ā itself (a copy); SWA before its first averaged step: the parameters.</summary>
    public Tensor Evaluation(Tensor average, Tensor parameter) => average.clone();

    public void Switch(Tensor slot, Tensor parameter, bool toEvaluation) =>
        throw new InvalidOperationException("a parameter average is not invertible: the runner keeps the training values");

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long t = state.Get(_state.Count) + 1;
        long n = state.Get(_state.Averaged);
        var next = InPlace.Step(inner, updates, state.Get(_state.Inner), parameters, context);
        var average = state.Get(_state.Average);
        bool swa = averaging == ParameterAveraging.Uniform;
        bool take = !swa || (t >= start && (t - start) % period == 0);
        for (int i = 0; i < updates.Count; i++)
        {
            using var scope = NewDisposeScope();
            var updated = parameters.Tensors[i].add(updates.Tensors[i]);
            if (!swa) average.Tensors[i].mul_(decay).add_(updated, 1 - decay);
            else if (take) average.Tensors[i].add_(updated.sub(average.Tensors[i]), 1.0 / (n + 1));
            else if (n == 0) average.Tensors[i].copy_(updated);   // before SWA starts, the point is the parameters
        }
        return state.With(_state.Count, t).With(_state.Averaged, swa && take ? n + 1 : n).With(_state.Inner, next);
    }
}
