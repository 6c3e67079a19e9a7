using System.Runtime.CompilerServices;
using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Momentum trace: m ← β·m + (1−δ)·u, then u ← m (divided by 1−βᵗ when <paramref name="debias"/>).
    /// δ = β is the exponential moving average (<c>Ema</c>); δ = 0 the undamped heavy-ball
    /// buffer; torch's SGD passes its <c>dampening</c> as δ and starts the buffer at the first update
    /// (<paramref name="startAtFirstUpdate"/>: m₁ = u₁, not (1−δ)·u₁).
    /// </summary>
    /// <param name="decay">β ∈ [0, 1].</param>
    /// <param name="dampening">δ ≤ 1; default 0 (undamped). A negative δ weights the new update by more than 1 (MARS-M's efficient form).</param>
    /// <param name="debias">Divide by 1−βᵗ (Adam's bias correction). Needs δ = β &lt; 1 and a zero start.</param>
    /// <param name="startAtFirstUpdate">torch's convention: the buffer is a copy of the first update.</param>
    /// <remarks>Near-twin of <c>Ema</c>: the trace weights the newest update by 1−δ, the EMA by 1−β.
    /// A zero-started undamped trace is the un-debiased EMA divided by 1−β.</remarks>
    public static IGradientTransformation Trace(double decay, double dampening = 0, bool debias = false, bool startAtFirstUpdate = false) =>
        Trace((Hyper)decay, (Hyper)dampening, debias, startAtFirstUpdate);

    /// <summary>The momentum trace with hyperparameters that may be tensors (<see cref="Hyper"/>); otherwise as the overload of doubles.</summary>
    internal static IGradientTransformation Trace(Hyper decay, Hyper dampening, bool debias = false, bool startAtFirstUpdate = false)
    {
        Check.Unit(decay.Value, nameof(decay), "momentum decay β");
        Check.AtMost(dampening.Value, 1, nameof(dampening), "dampening δ; the new update is weighted by 1−δ ≥ 0");
        if (debias && !dampening.Equals(decay))
            throw new ArgumentException($"debias = true needs dampening = decay (an EMA, the same tensor if either is one); got decay = {decay}, dampening = {dampening}", nameof(debias));
        if (debias && decay.Value == 1)
            throw new ArgumentOutOfRangeException(nameof(decay), decay, $"decay = {decay}: debias divides by 1−βᵗ, which needs β in [0, 1)");
        if (debias && startAtFirstUpdate)
            throw new ArgumentException("debias and startAtFirstUpdate are two answers to the same zero-start bias; choose one", nameof(startAtFirstUpdate));
        return new TraceTransform(decay, dampening, debias, startAtFirstUpdate);
    }

    /// <summary>
    /// Exponential moving average: m ← β·m + (1−β)·u, u ← m (÷ (1−βᵗ) when <paramref name="debias"/>).
    /// The same primitive as <c>Trace</c> with dampening δ = β.
    /// </summary>
    /// <param name="decay">β ∈ [0, 1).</param>
    /// <param name="debias">Adam's bias correction; default false.</param>
    /// <param name="startAtFirstUpdate">m₁ = u₁ (torch's SGD convention) instead of (1−β)·u₁.</param>
    public static IGradientTransformation Ema(double decay, bool debias = false, bool startAtFirstUpdate = false) => Ema((Hyper)decay, debias, startAtFirstUpdate);

    /// <summary>The exponential moving average with a decay that may be a tensor (<see cref="Hyper"/>).</summary>
    internal static IGradientTransformation Ema(Hyper decay, bool debias = false, bool startAtFirstUpdate = false)
    {
        Check.UnitOpen(decay.Value, nameof(decay), "EMA decay β");
        return Trace(decay, decay, debias, startAtFirstUpdate);
    }
}

sealed class TraceTransform(Hyper decay, Hyper dampening, bool debias, bool startAtFirstUpdate) : DeclaredTransform, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    static readonly StateLayout State = new("trace");
    /// <summary>Steps taken so far.</summary>
    internal static readonly Slot<long> Count = State.Integer("count");
    /// <summary>The buffer m, shaped like the parameters (zero before the first step).</summary>
    internal static readonly Slot<TensorTree> Momentum = State.PerParameter("momentum", SlotStart.Zeros);

    protected override StateLayout Declare() => State;

    public override Spec Spec => Spec.Of("trace").With("decay", decay).With("dampening", dampening)
        .With("debias", debias).With("start_at_first_update", startAtFirstUpdate);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long t = state.Get(Count) + 1;
        bool copy = startAtFirstUpdate && t == 1;
        Hyper correction = debias ? 1 - Hyper.Pow(decay, t) : 1;
        Kernels.Elementwise.Run(new TraceKernel(this, copy, 1 - dampening, correction), updates, state.Get(Momentum));
        return state.With(Count, t);
    }

    readonly struct TraceKernel(TraceTransform tx, bool copy, Hyper weight, Hyper correction) : Kernels.IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray> => tx.Kernel(ops, a[0], a[1], copy, weight, correction);
    }

    /// <summary>The elementwise step on one block: m ← β·m + (1−δ)·u (or m ← u on torch's first step), u ← m / c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Kernel<TArray, TOps>(TOps ops, TArray u, TArray m, bool copy, Hyper weight, Hyper correction) where TOps : struct, Kernels.IArrayOps<TArray>
    {
        if (copy) ops.Copy(m, u);
        else Kernels.Moments.Accumulate(ops, m, u, decay, weight);
        if (debias) Kernels.Coefficients.CopyDiv(ops, u, m, correction);
        else ops.Copy(u, m);
    }
}
