using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

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

/// <summary>State of <see cref="Transforms.GuardNonFinite"/>.</summary>
/// <param name="Count">Steps seen.</param>
/// <param name="Consecutive">Non-finite steps in a row, up to the last step.</param>
/// <param name="Total">Non-finite steps in total.</param>
/// <param name="Inner">State of the guarded transform.</param>
public sealed record GuardNonFiniteState(long Count, long Consecutive, long Total, IOptState Inner) : IOptState
{
    /// <inheritdoc />
    public IEnumerable<StateLeaf> Leaves() =>
        new[] { OptState.Scalar("count", Count), OptState.Scalar("consecutive", Consecutive), OptState.Scalar("total", Total) }
            .Concat(OptState.Nested("inner", Inner));

    /// <inheritdoc />
    public IOptState MapTensors(Func<string, Tensor, Tensor> f) => this with { Inner = OptState.MapNested("inner", Inner, f) };

    /// <inheritdoc />
    public IOptState MapScalars(Func<string, double, double> f) => this with
    {
        Count = OptState.Integer("count", Count, f), Consecutive = OptState.Integer("consecutive", Consecutive, f),
        Total = OptState.Integer("total", Total, f), Inner = OptState.MapNestedScalars("inner", Inner, f),
    };
}

sealed class GuardNonFiniteTransform(IGradientTransformation inner, NonFinitePolicy policy, long maxConsecutive) : Transform<GuardNonFiniteState>, IComposite
{
    public override Spec Spec => Spec.Of("guard_non_finite").With("policy", policy).With("max_consecutive", maxConsecutive).With("inner", inner);

    public IEnumerable<IGradientTransformation> Children => new[] { inner };

    protected override GuardNonFiniteState InitState(TensorTree parameters) => new(0, 0, 0, inner.Init(parameters));

    public override GuardNonFiniteState Step(TensorTree updates, GuardNonFiniteState state, TensorTree parameters, StepContext context)
    {
        long t = state.Count + 1;
        bool lossBad = context.TryGet(ContextKeys.Loss, out var loss) && !double.IsFinite(loss);
        // One reduction per tensor on its device, one read back per step.
        var bad = new List<string>();
        using (var scope = NewDisposeScope())
        {
            var flags = updates.Tensors.Select(u => isfinite(u).all().logical_not()).ToArray();
            if (flags.Length > 0)
            {
                var any = stack(flags.Select(f => f.cpu()).ToArray());
                var values = any.data<bool>().ToArray();
                for (int i = 0; i < values.Length; i++) if (values[i]) bad.Add(updates.Names[i]);
            }
        }
        if (bad.Count == 0 && !lossBad)
            return new(t, 0, state.Total, InPlace.Step(inner, updates, state.Inner, parameters, context));

        string what = (lossBad ? $"the loss is {loss}" : "") + (lossBad && bad.Count > 0 ? " and " : "") +
                      (bad.Count > 0 ? $"tensors [{string.Join(", ", bad)}] hold NaN or ±∞" : "");
        if (policy == NonFinitePolicy.Raise || state.Consecutive + 1 >= maxConsecutive && maxConsecutive != long.MaxValue)
            throw new ArithmeticException($"{Label}: at step {t} {what}" + (policy == NonFinitePolicy.Raise ? "" : $" ({state.Consecutive + 1} non-finite steps in a row, the limit is {maxConsecutive})"));
        if (policy == NonFinitePolicy.Zero && !lossBad)
        {
            foreach (var name in bad) updates[name].nan_to_num_(0, 0, 0);
            return new(t, state.Consecutive + 1, state.Total + 1, InPlace.Step(inner, updates, state.Inner, parameters, context));
        }
        foreach (var u in updates.Tensors) u.zero_();
        return new(t, state.Consecutive + 1, state.Total + 1, state.Inner);
    }
}
