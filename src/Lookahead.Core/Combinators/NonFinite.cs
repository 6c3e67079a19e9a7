using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;
using Lookahead.Kernels;

namespace Lookahead;

/// <summary>What <see cref="Transforms.GuardNonFinite"/> does when a step's gradients or loss are not finite.</summary>
public enum NonFinitePolicy
{
    /// <summary>Skip the step: zero updates, the inner state unchanged (optax's <c>apply_if_finite</c>).</summary>
    Skip,
    /// <summary>Replace NaN and ±∞ gradient entries by zero and take the step (a non-finite loss still skips it).</summary>
    Zero,
    /// <summary>Throw, naming the step and the tensors (or the loss) at fault; nothing changes.</summary>
    Raise,
}

public static partial class Transforms
{
    /// <summary>
    /// Guards <paramref name="inner"/> against non-finite gradients (NaN, ±∞) and a non-finite loss in the
    /// context, with a <paramref name="policy"/>; the state counts non-finite steps (in a row and in total).
    /// A skipped step leaves the inner state exactly as if the step had never happened.
    /// </summary>
    /// <param name="inner">The guarded transform.</param>
    /// <param name="policy">Skip (default), zero the bad entries, or raise.</param>
    /// <param name="maxConsecutive">Raise instead of skipping once this many steps in a row were non-finite; default: never.</param>
    public static IGradientTransformation GuardNonFinite(IGradientTransformation inner, NonFinitePolicy policy = NonFinitePolicy.Skip, long maxConsecutive = long.MaxValue) =>
        new GuardNonFiniteTransform(Check.NotNull(inner, nameof(inner)), policy, Check.AtLeast(maxConsecutive, 1, nameof(maxConsecutive)));
}

sealed class GuardNonFiniteTransform(IGradientTransformation inner, NonFinitePolicy policy, long maxConsecutive) : DeclaredTransform, IComposite, IReducing, IFusable
{
    public bool FusesAlone => true;

    static readonly Reduction[] Counts = { new(ReductionKind.NonFiniteCount, ReductionScope.PerTensor, "updates") };

    /// <summary>The non-finite entries of each incoming update, before the inner transform runs.</summary>
    public IReadOnlyList<Reduction> Reductions => Counts;

    // Leaves: count (steps seen), consecutive (non-finite steps in a row, up to the last step),
    // total (non-finite steps in total), inner/… (the guarded transform's state).
    readonly (StateLayout Layout, Slot<long> Count, Slot<long> Consecutive, Slot<long> Total, Slot<IOptState> Inner) _state = Declared(inner);

    static (StateLayout, Slot<long>, Slot<long>, Slot<long>, Slot<IOptState>) Declared(IGradientTransformation inner)
    {
        var layout = new StateLayout("guard_non_finite");
        var count = layout.Integer("count");
        var consecutive = layout.Integer("consecutive");
        var total = layout.Integer("total");
        var child = layout.Child("inner", inner.Init);
        return (layout.Seal(), count, consecutive, total, child);
    }

    protected override StateLayout Declare() => _state.Layout;

    public override Spec Spec => Spec.Of("guard_non_finite").With("policy", policy).With("max_consecutive", maxConsecutive).With("inner", inner);

    public IEnumerable<IGradientTransformation> Children => new[] { inner };

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long t = state.Get(_state.Count) + 1;
        long consecutive = state.Get(_state.Consecutive), total = state.Get(_state.Total);
        var innerState = state.Get(_state.Inner);
        bool lossBad = context.TryGet(ContextKeys.Loss, out var loss) && !double.IsFinite(loss);
        // The declared reduction, one value per tensor on its device, then one read back per step.
        var bad = new List<string>();
        if (updates.Count > 0 && Elementwise.Reduce(ReductionKind.NonFiniteCount, updates.Tensors.Select(u => new[] { u }).ToArray()) is { } fusedCounts)
        {
            // The fused executor counted on the host (over the gradients, if only their copy was pending); the
            // buffers are brought up to date before any is touched directly below.
            for (int i = 0; i < fusedCounts.Length; i++) if (fusedCounts[i] != 0) bad.Add(updates.Names[i]);
        }
        else if (updates.Count > 0)
        {
            using var scope = NewDisposeScope();
            var counts = Reducer.PerTensor(ReductionKind.NonFiniteCount, updates).Select(c => c.cpu()).ToArray();
            var values = stack(counts).data<double>().ToArray();
            for (int i = 0; i < values.Length; i++) if (values[i] != 0) bad.Add(updates.Names[i]);
        }
        if (bad.Count == 0 && !lossBad)
            return Next(state, t, 0, total, InPlace.Step(inner, updates, innerState, parameters, context));

        string what = (lossBad ? $"the loss is {loss}" : "") + (lossBad && bad.Count > 0 ? " and " : "") +
                      (bad.Count > 0 ? $"tensors [{string.Join(", ", bad)}] hold NaN or ±∞" : "");
        if (policy == NonFinitePolicy.Raise || consecutive + 1 >= maxConsecutive && maxConsecutive != long.MaxValue)
            throw new ArithmeticException($"{Label}: at step {t} {what}" + (policy == NonFinitePolicy.Raise ? "" : $" ({consecutive + 1} non-finite steps in a row, the limit is {maxConsecutive})"));
        // The buffers are touched directly below: run what the fused executor still holds (a no-op elsewhere).
        Kernels.Elementwise.Flush();
        if (policy == NonFinitePolicy.Zero && !lossBad)
        {
            foreach (var name in bad) updates[name].nan_to_num_(0, 0, 0);
            return Next(state, t, consecutive + 1, total + 1, InPlace.Step(inner, updates, innerState, parameters, context));
        }
        foreach (var u in updates.Tensors) u.zero_();
        return Next(state, t, consecutive + 1, total + 1, innerState);
    }

    DeclaredState Next(DeclaredState state, long count, long consecutive, long total, IOptState inner) =>
        state.With(_state.Count, count).With(_state.Consecutive, consecutive).With(_state.Total, total).With(_state.Inner, inner);
}
