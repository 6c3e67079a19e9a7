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
    /// Slow/fast weights (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back"; optax's
    /// <c>lookahead</c>; ARSG's <c>nLA</c>/<c>alphaLA</c>): <paramref name="inner"/> moves the fast
    /// weights; after every <paramref name="syncPeriod"/>-th step the slow weights φ move a fraction α toward
    /// them, φ ← φ + α(θ − φ), and the fast weights restart from φ. Not to be confused with the
    /// Nesterov-type <see cref="LookaheadShift(double, IGradientTransformation)"/>.
    /// </summary>
    /// <remarks>The slow weights start as a copy of the parameters given to <c>Init</c>. The inner state
    /// (moments) is kept across synchronisations, as ARSG's code does.</remarks>
    /// <param name="inner">The fast optimizer (its updates include the learning rate).</param>
    /// <param name="syncPeriod">k ≥ 1.</param>
    /// <param name="alpha">α ∈ [0, 1].</param>
    public static IGradientTransformation SlowFastWeights(IGradientTransformation inner, int syncPeriod, double alpha) =>
        new SlowFastTransform(Check.NotNull(inner, nameof(inner)), (int)Check.AtLeast(syncPeriod, 1, nameof(syncPeriod)), Check.Unit(alpha, nameof(alpha), "slow step size"));
}

sealed class SlowFastTransform(IGradientTransformation inner, int k, double alpha) : DeclaredTransform, IComposite, Kernels.IFusable
{
    public bool FusesAlone => true;

    // Leaves: count (steps taken), slow/… (the slow weights φ, one per parameter, starting as a copy of the
    // parameters given to Init), inner/… (the fast optimizer's state).
    readonly (StateLayout Layout, Slot<long> Count, Slot<TensorTree> Slow, Slot<IOptState> Inner) _state = Declared(inner);

    static (StateLayout, Slot<long>, Slot<TensorTree>, Slot<IOptState>) Declared(IGradientTransformation inner)
    {
        var layout = new StateLayout("slow_fast_weights");
        var count = layout.Integer("count");
        var slow = layout.PerParameter("slow", SlotStart.CopyOfParameters);
        var child = layout.Child("inner", inner.Init);
        return (layout.Seal(), count, slow, child);
    }

    protected override StateLayout Declare() => _state.Layout;

    public IEnumerable<IGradientTransformation> Children => new[] { inner };

    public override Spec Spec => Spec.Of("slow_fast_weights").With("k", k).With("alpha", alpha).With("inner", inner);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long t = state.Get(_state.Count) + 1;
        var innerState = InPlace.Step(inner, updates, state.Get(_state.Inner), parameters, context);
        if (t % k == 0)
        {
            Kernels.Elementwise.Run(new Sync(this), updates, state.Get(_state.Slow), parameters);
        }
        return state.With(_state.Count, t).With(_state.Inner, innerState);
    }

    readonly struct Sync(SlowFastTransform tx) : Kernels.IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray> => tx.Synchronise(ops, a[0], a[1], a[2]);
    }

    /// <summary>The synchronisation on one block: φ ← (1−α)φ + α·(θ + u), then u ← φ − θ (the fast weights restart from φ).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Synchronise<TArray, TOps>(TOps ops, TArray u, TArray slow, TArray theta) where TOps : struct, Kernels.IArrayOps<TArray>
    {
        ops.AddScaled(u, theta, 1);                                     // the fast weights θ + u
        Kernels.Moments.Accumulate(ops, slow, u, 1 - alpha, alpha);     // φ ← (1−α)φ + α·θ_fast
        ops.AddScaled(ops.Copy(u, slow), theta, -1);                    // restart from φ
    }
}
