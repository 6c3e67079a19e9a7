using System.Runtime.CompilerServices;
using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>
/// Coefficients of <see cref="Transforms.LookaheadShift(IShiftSchedule, IGradientTransformation)"/> at each step.
/// A schedule may carry one number from step to step (NAdam's running product of momentum factors).
/// </summary>
public interface IShiftSchedule
{
    /// <summary>The carried number before the first step.</summary>
    double InitialCarry { get; }

    /// <summary>The weights (a, b) of u = a·g + b·m at step t (1, 2, …) and the carry for the next step.</summary>
    (double Gradient, double Momentum, double Carry) At(long step, double carry);
}

/// <summary>Schedules for the lookahead shift.</summary>
public static class ShiftSchedule
{
    /// <summary>Constant weights: u = a·g + b·m.</summary>
    public static IShiftSchedule Constant(double gradientWeight, double momentumWeight) => Constant((Hyper)gradientWeight, (Hyper)momentumWeight);

    /// <summary>Constant weights that may be tensors (<see cref="Hyper"/>): u = a·g + b·m.</summary>
    internal static IShiftSchedule Constant(Hyper gradientWeight, Hyper momentumWeight)
    {
        Check.Finite(gradientWeight.Value, nameof(gradientWeight));
        Check.Finite(momentumWeight.Value, nameof(momentumWeight));
        return new ConstantShift(gradientWeight, momentumWeight);
    }

    /// <summary>
    /// NAdam's (Dozat 2016; torch ≥ 2.0): μₜ = β₁(1 − ½·0.96^(tψ)), Πₜ = μ₁⋯μₜ,
    /// a = (1−μₜ)/(1−Πₜ), b = μₜ₊₁/(1−Πₜ·μₜ₊₁).
    /// </summary>
    /// <param name="beta1">β₁ ∈ [0, 1).</param>
    /// <param name="momentumDecay">ψ ≥ 0; torch's default 4e-3.</param>
    /// <param name="torch113">Reproduce torch 1.13's single-tensor NAdam, whose b has 1−Πₜ·μₜ·μₜ₊₁ in the
    /// denominator (μₜ counted twice; fixed in torch 2.0, pytorch#92699). Only for replaying old runs.</param>
    public static IShiftSchedule NAdam(double beta1, double momentumDecay, bool torch113 = false) =>
        new NAdamShift(Check.UnitOpen(beta1, nameof(beta1)), Check.NonNegative(momentumDecay, nameof(momentumDecay)), torch113);

    internal sealed record ConstantShift(Hyper A, Hyper B) : IShiftSchedule
    {
        public double InitialCarry => 0;
        public (double, double, double) At(long step, double carry) => (A.Value, B.Value, carry);
    }

    sealed record NAdamShift(double Beta1, double Psi, bool Torch113) : IShiftSchedule
    {
        public double InitialCarry => 1;
        double Mu(long t) => Beta1 * (1 - 0.5 * Math.Pow(0.96, t * Psi));
        public (double, double, double) At(long t, double product)
        {
            double mu = Mu(t), muNext = Mu(t + 1);
            product *= mu;
            return ((1 - mu) / (1 - product), muNext / (1 - (Torch113 ? product * mu : product) * muNext), product);
        }
    }
}

public static partial class Transforms
{
    /// <summary>
    /// Lookahead shift: u = (1−ν)·g + ν·m, where m is the output of the <paramref name="momentum"/>
    /// transform on g. ν = 1 is plain momentum, ν = 0 plain SGD; QHM (Ma &amp; Yarats 2019) uses any ν,
    /// and the gradient "at the lookahead point" of Nesterov-type methods is this mix.
    /// </summary>
    /// <param name="nu">ν; any finite number (ν &gt; 1 looks further ahead).</param>
    /// <param name="momentum">The transform that produces m, typically <c>Ema</c>.</param>
    public static IGradientTransformation LookaheadShift(double nu, IGradientTransformation momentum) => LookaheadShift((Hyper)nu, momentum);

    /// <summary>The lookahead shift u = (1−ν)·g + ν·m with ν a hyperparameter that may be a tensor (<see cref="Hyper"/>).</summary>
    internal static IGradientTransformation LookaheadShift(Hyper nu, IGradientTransformation momentum)
    {
        Check.Finite(nu.Value, nameof(nu));
        return LookaheadShift(ShiftSchedule.Constant(1 - nu, nu), momentum);
    }

    /// <summary>
    /// Lookahead shift with weights from a schedule: u = aₜ·g + bₜ·m. Torch's Nesterov SGD is
    /// a = 1, b = μ over an undamped trace; NAdam is <see cref="ShiftSchedule.NAdam"/> over an EMA.
    /// </summary>
    public static IGradientTransformation LookaheadShift(IShiftSchedule schedule, IGradientTransformation momentum) =>
        new LookaheadShiftTransform(Check.NotNull(schedule, nameof(schedule)), Check.NotNull(momentum, nameof(momentum)));
}

sealed class LookaheadShiftTransform : DeclaredTransform, IComposite, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    readonly IShiftSchedule schedule;
    readonly IGradientTransformation momentum;
    readonly StateLayout _layout;
    /// <summary>Steps taken so far.</summary>
    readonly Slot<long> _count;
    /// <summary>The schedule's carried number.</summary>
    readonly Slot<double> _carry;
    /// <summary>State of the momentum transform.</summary>
    readonly Slot<IOptState> _momentum;

    public LookaheadShiftTransform(IShiftSchedule schedule, IGradientTransformation momentum)
    {
        this.schedule = schedule;
        this.momentum = momentum;
        _layout = new StateLayout("lookahead_shift");
        _count = _layout.Integer("count");
        _carry = _layout.Real("carry", schedule.InitialCarry);
        _momentum = _layout.Child("momentum", momentum.Init);
        _layout.Seal();
    }

    protected override StateLayout Declare() => _layout;

    public IEnumerable<IGradientTransformation> Children => new[] { momentum };

    public override Spec Spec => Spec.Of("lookahead_shift").With("schedule", schedule).With("momentum", momentum);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long t = state.Get(_count) + 1;
        var (av, bv, carry) = schedule.At(t, state.Get(_carry));
        // Constant weights keep their hyperparameters (tensors, under Differentiable); a schedule's are numbers.
        var (a, b) = schedule is ShiftSchedule.ConstantShift c ? (c.A, c.B) : ((Hyper)av, (Hyper)bv);
        // Scratch: g, kept while the momentum transform overwrites the buffer.
        var groups = Buffers.Groups(updates);
        var raw = new Tensor[groups.Count];
        for (int k = 0; k < groups.Count; k++) raw[k] = Buffers.Rent(groups[k][0]);
        try
        {
            Kernels.Elementwise.Run(default(Kernels.CopyOutKernel), groups, raw);
            var inner = InPlace.Step(momentum, updates, state.Get(_momentum), parameters, context);
            Kernels.Elementwise.Run(new Combine(a, b), groups, raw);
            return state.With(_count, t).With(_carry, carry).With(_momentum, inner);
        }
        finally
        {
            foreach (var r in raw) Buffers.Return(r);
        }
    }
}

/// <summary>u ← b·m + a·g over (u holding m, the kept g).</summary>
readonly struct Combine(Hyper a, Hyper b) : Kernels.IKernel
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Run<TArray, TOps>(TOps ops, System.ReadOnlySpan<TArray> x) where TOps : struct, Kernels.IArrayOps<TArray> =>
        Kernels.Coefficients.AddScaled(ops, Kernels.Coefficients.Mul(ops, x[0], b), x[1], a);
}
