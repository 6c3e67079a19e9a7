using System;
using System.Runtime.CompilerServices;
using System.Collections.Generic;
using System.Linq;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Schedule-Free averaging (Defazio et al. 2024, "The Road Less Scheduled"; facebookresearch/schedule_free).
    /// Three sequences: the base sequence z (state, a copy of the parameters at the start), the average x (the point
    /// to evaluate) and y = (1 − β)z + βx, the point the gradient is taken at, which the parameters hold while
    /// training. With k steps taken and the incoming update ĝ (a gradient, or Adam's normalised gradient):
    /// lr_k = lr·min(1, (k + 1)/warmup); lr_max ← max(lr_max, lr_k); w = (k + 1)^r·lr_max^p; W ← W + w; c = w/W;
    /// y ← y + c(z − y) + lr_k(β(1 − c) − 1)·ĝ; z ← z − lr_k·ĝ. This is x ← (1 − c)x + c·z, y = (1 − β)z + βx with x
    /// eliminated. The update returned is the change of y (no separate learning-rate scale follows).
    /// <see cref="ScheduleFree.EvaluationParameters"/> gives x = y + (1 − 1/β)(z − y).
    /// </summary>
    /// <param name="lr">The base learning rate ≥ 0.</param>
    /// <param name="beta">β ∈ (0, 1] (the official <c>momentum</c>, or AdamW's <c>betas[0]</c>): the interpolation between z and x.</param>
    /// <param name="warmupSteps">Linear warm-up of the learning rate over this many steps (0: none).</param>
    /// <param name="r">The power of k + 1 in the averaging weight (0: a uniform average without warm-up).</param>
    /// <param name="weightLrPower">The power p of lr_max in the averaging weight (official default 2).</param>
    /// <param name="constantWeight">A fixed c ∈ (0, 1] instead of w/W (the paper's constant-weight case: with β = 1 it is
    /// primal averaging, heavy ball with momentum 1 − c and learning rate c·lr); null (default) for the official weights.</param>
    public static IGradientTransformation ScheduleFreeAverage(double lr, double beta, int warmupSteps = 0, double r = 0, double weightLrPower = 2, double? constantWeight = null)
    {
        if (constantWeight is double cw && !(cw > 0 && cw <= 1)) throw new ArgumentOutOfRangeException(nameof(constantWeight), cw, "constantWeight must be in (0, 1]");
        Check.NonNegative(lr, nameof(lr), "learning rate");
        if (!(beta > 0 && beta <= 1)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "beta must be in (0, 1]: x = y + (1 − 1/β)(z − y) divides by it");
        Check.AtLeast(warmupSteps, 0, nameof(warmupSteps));
        Check.Finite(r, nameof(r));
        Check.Finite(weightLrPower, nameof(weightLrPower));
        return new ScheduleFreeTransform(lr, beta, warmupSteps, r, weightLrPower, constantWeight);
    }
}

/// <summary>Schedule-Free's evaluation point: x from y (the parameters while training) and the state's z.</summary>
public static class ScheduleFree
{
    /// <summary>
    /// x = y + (1 − 1/β)(z − y) for each parameter, new tensors (the caller owns them): the averaged point to
    /// evaluate, from the training parameters y and the state of <paramref name="transform"/>, which must contain
    /// exactly one <see cref="Transforms.ScheduleFreeAverage"/> (<see cref="Evaluation.Parameters"/> for any evaluation point).
    /// Before the first step z is y, so x = y.
    /// </summary>
    public static TensorTree EvaluationParameters(IGradientTransformation transform, IOptState state, TensorTree parameters)
    {
        if (!Evaluation.Nodes(Check.NotNull(transform, nameof(transform))).All(n => n is ScheduleFreeTransform))
            throw new ArgumentException($"{transform.Name} has an evaluation point other than Schedule-Free's; use Evaluation.Parameters", nameof(transform));
        return Evaluation.Parameters(transform, state, parameters);
    }
}

sealed class ScheduleFreeTransform(double lr, double beta, int warmupSteps, double r, double weightLrPower, double? constantWeight) : DeclaredTransform, IEvaluationPoint, Kernels.IFusable
{
    public bool FusesAlone => true;

    public string SlotName => ZName;

    public bool Invertible => true;

    /// <summary>x = y + (1 − 1/β)(z − y).</summary>
    public Tensor Evaluation(Tensor z, Tensor y) => y.add(z.sub(y), 1 - 1 / beta);

    /// <summary>The official <c>eval()</c> (p ← p + (1 − 1/β)(z − p)) and <c>train()</c> (p ← p + (1 − β)(z − p)).</summary>
    public void Switch(Tensor z, Tensor p, bool toEvaluation)
    {
        using var scope = NewDisposeScope();
        p.add_(z.sub(p), toEvaluation ? 1 - 1 / beta : 1 - beta);
    }

    internal const string ZName = "schedule_free_z";
    static readonly StateLayout State = new("schedule_free");
    /// <summary>Steps taken so far (k).</summary>
    static readonly Slot<long> Count = State.Integer("count");
    /// <summary>The largest learning rate used so far (−1 before the first step, as the official code starts it).</summary>
    static readonly Slot<double> LrMax = State.Real("lr_max", -1);
    /// <summary>The sum of the averaging weights.</summary>
    static readonly Slot<double> WeightSum = State.Real("weight_sum");
    /// <summary>z, the base sequence: a copy of the parameters at the start.</summary>
    static readonly Slot<TensorTree> Z = State.PerParameter(ZName, SlotStart.CopyOfParameters);

    protected override StateLayout Declare() => State;

    public override Spec Spec => Spec.Of("schedule_free").With("lr", lr).With("beta", beta).With("warmup_steps", warmupSteps).With("r", r).With("weight_lr_power", weightLrPower).With("constant_weight", constantWeight);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long k = state.Get(Count);
        double sched = k < warmupSteps ? (k + 1) / (double)warmupSteps : 1;
        double lrK = lr * sched;
        double lrMax = Math.Max(state.Get(LrMax), lrK);
        double w = Math.Pow(k + 1, r) * Math.Pow(lrMax, weightLrPower);
        double weightSum = state.Get(WeightSum) + w;
        double c = constantWeight ?? (weightSum != 0 ? w / weightSum : 0);
        Kernels.Elementwise.Run(new StepKernel(lrK, lrK * (beta * (1 - c) - 1), c), updates, state.Get(Z), parameters);
        return state.With(Count, k + 1).With(LrMax, lrMax).With(WeightSum, weightSum);
    }

    /// <summary>
    /// Over (ĝ, z, y): the change of y is c(z − y) + a·ĝ with a = lr_k(β(1 − c) − 1) and z before its step; with
    /// z ← z − lr_k·ĝ first, that is (a + c·lr_k)·ĝ + c·z − c·y.
    /// </summary>
    readonly struct StepKernel(double lrK, double a, double c) : Kernels.IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> arrays) where TOps : struct, Kernels.IArrayOps<TArray>
        {
            TArray g = arrays[0], z = arrays[1], y = arrays[2];
            ops.AddScaled(z, g, -lrK);
            ops.AddScaled(ops.MulAdd(g, a + c * lrK, z, c), y, -c);
        }
    }
}
