using System.Runtime.CompilerServices;
using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;
using Lookahead.Kernels;

namespace Lookahead;

public static partial class ContextKeys
{
    /// <summary>
    /// The gradient at the previous iterate θₜ₋₁ evaluated on the current minibatch, for the exact
    /// variant of <see cref="Transforms.GradientCorrection(double, bool, bool)"/> (MARS's exact scheme:
    /// a second backward pass per step).
    /// </summary>
    public static readonly ContextKey<TensorTree> PreviousIterateGradient = new("previous_iterate_gradient");
}

public static partial class Transforms
{
    /// <summary>
    /// Gradient correction (variance reduction of MARS, Yuan et al. 2024; the extrapolation of the
    /// generalised-Nesterov note): c = g + s·(g − g_prev), then, if <paramref name="clip"/>, c ← c/‖c‖
    /// for each tensor whose Frobenius norm exceeds 1.
    /// </summary>
    /// <remarks>
    /// <para>Approximate variant (default): g_prev is the previous step's incoming update, kept in the
    /// state as a copy (never a reference to the caller's tensor) and zero before the first step, so
    /// c₁ = (1+s)·g₁. Exact variant: g_prev is the gradient at the previous iterate on the current
    /// batch, read from <see cref="ContextKeys.PreviousIterateGradient"/>; it may be absent only on
    /// the first step (where it counts as zero, as in the official code).</para>
    /// <para>MARS uses s = γβ/(1−β) (<c>MarsScale</c>); in the note's reading this is a lookahead
    /// of μ = s. Applied after a momentum, the same map turns vₜ₊₁ into vₜ₊₁ + μ(vₜ₊₁ − vₜ) (the
    /// note's form 7b).</para>
    /// </remarks>
    /// <param name="scale">s; any finite number.</param>
    /// <param name="clip">Per-tensor unit-norm clipping of c.</param>
    /// <param name="exact">Take g_prev from the context instead of the state.</param>
    public static IGradientTransformation GradientCorrection(double scale, bool clip = false, bool exact = false) =>
        GradientCorrection((Hyper)scale, clip, exact);

    /// <summary>The gradient correction with a scale that may be a tensor (<see cref="Hyper"/>); otherwise as the overload of doubles.</summary>
    internal static IGradientTransformation GradientCorrection(Hyper scale, bool clip = false, bool exact = false)
    {
        Check.Finite(scale.Value, nameof(scale));
        return new GradientCorrectionTransform(scale, clip, exact);
    }

    /// <summary>MARS's correction scale s = γ·β/(1−β) (the note's lookahead μ; β = 0.9, γ = 1 gives 9).</summary>
    /// <param name="gamma">γ ≥ 0.</param>
    /// <param name="beta">β ∈ [0, 1).</param>
    public static double MarsScale(double gamma, double beta) => MarsScale((Hyper)gamma, (Hyper)beta).Value;

    /// <summary>MARS's correction scale γ·β/(1−β) of hyperparameters that may be tensors (<see cref="Hyper"/>).</summary>
    internal static Hyper MarsScale(Hyper gamma, Hyper beta)
    {
        Check.NonNegative(gamma.Value, nameof(gamma));
        Check.UnitOpen(beta.Value, nameof(beta));
        return gamma * (beta / (1 - beta));
    }
}

sealed class GradientCorrectionTransform(Hyper scale, bool clip, bool exact) : DeclaredTransform, IValidating, IReducing, IFusable, IDifferentiable
{
    string? IDifferentiable.Refusal => clip
        ? "MARS's clip divides by max(‖c‖, 1), a kink at ‖c‖ = 1, with the norm taken outside the graph; build it with clip = false"
        : null;

    public bool FusesAlone => true;

    static readonly Reduction[] ClipNorms = { new(ReductionKind.SumOfSquares, ReductionScope.PerTensor, "updates") };

    /// <summary>With the clip: the per-tensor norms of c, after c is formed and before it is divided.</summary>
    public IReadOnlyList<Reduction> Reductions => clip ? ClipNorms : Array.Empty<Reduction>();

    // Two layouts with the same slots; the exact variant's g_prev comes from the context, so its slot starts (and stays) empty.
    static readonly (StateLayout Layout, Slot<long> Count, Slot<TensorTree> PreviousGradient) Approximate = Declared(SlotStart.Zeros), Exact = Declared(SlotStart.None);

    static (StateLayout, Slot<long>, Slot<TensorTree>) Declared(SlotStart previous)
    {
        var layout = new StateLayout("gradient_correction");
        // Steps taken so far; g of the previous step (zero before the first; empty in the exact variant).
        var count = layout.Integer("count");
        var previousGradient = layout.PerParameter("previous_gradient", previous);
        return (layout.Seal(), count, previousGradient);
    }

    (StateLayout Layout, Slot<long> Count, Slot<TensorTree> PreviousGradient) State => exact ? Exact : Approximate;

    protected override StateLayout Declare() => State.Layout;

    public void Validate(IReadOnlyList<ParameterInfo> parameters, ValidationReport report) { }

    public IEnumerable<ContextRequirement> Requirements =>
        exact ? new[] { ContextRequirement.For(ContextKeys.PreviousIterateGradient, Label, fromStep: 2) } : Array.Empty<ContextRequirement>();

    public override Spec Spec => Spec.Of("gradient_correction").With("scale", scale).With("clip", clip).With("exact", exact);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        var slots = State;
        long t = state.Get(slots.Count) + 1;
        TensorTree? previous = state.Get(slots.PreviousGradient);
        if (exact)
        {
            if (context.TryGet(ContextKeys.PreviousIterateGradient, out var fromContext))
            {
                // The context holds the whole model's tree; inside a partition this transform sees a part of it.
                var missing = parameters.Names.Where(n => !fromContext.Contains(n)).ToArray();
                if (missing.Length > 0)
                    throw new ArgumentException($"{Label}: the context's '{ContextKeys.PreviousIterateGradient}' lacks [{string.Join(", ", missing)}]", nameof(context));
                previous = TensorTree.Of(parameters.Names, parameters.Names.Select(n => fromContext[n]).ToArray());
                parameters.CheckMatches(previous, $"context's {ContextKeys.PreviousIterateGradient}", "parameters");
            }
            else if (t == 1) previous = null;
            else throw new ArgumentException(
                $"{Label}: step {t} needs the context key '{ContextKeys.PreviousIterateGradient}' (the gradient at the previous iterate on this batch)", nameof(context));
        }

        // c = (g − g_prev)·s + g, in the official code's order; elementwise, so over contiguous groups.
        var groups = previous is null ? Buffers.Groups(updates) : Buffers.Groups(updates, previous);
        var ops = default(TensorOps);
        if (previous is null) Elementwise.Run(new Scaled(scale), groups, (Tensor[][]?)null);
        else
        {
            var diffs = new Tensor[groups.Count];
            for (int k = 0; k < groups.Count; k++) diffs[k] = Buffers.Rent(groups[k][0]);
            try { Elementwise.Run(new Correct(this), groups, diffs); }
            finally { foreach (var d in diffs) Buffers.Return(d); }
        }
        if (clip && Elementwise.Reduce(ReductionKind.SumOfSquares, PerTensor(updates)) is { } squares64)
        {
            // The fused executor: the same divisor from the norm summed on the host, then a recorded division per tensor.
            for (int i = 0; i < squares64.Length; i++)
                Elementwise.Run(new Divide(ClipDivisor<double, ArrayBlockOps>(default, squares64[i])), new[] { new[] { updates.Tensors[i] } }, (Tensor[][]?)null);
        }
        else if (clip)
        {
            // Per tensor: divide by max(‖c‖, 1), the same numbers as "if ‖c‖ > 1: c /= ‖c‖", without a host round trip.
            using var scope = NewDisposeScope();
            var squares = Reducer.PerTensor(ReductionKind.SumOfSquares, updates);
            for (int i = 0; i < squares.Length; i++) ops.DivideBy(updates.Tensors[i], ClipDivisor<Tensor, TensorOps>(ops, squares[i]));
        }
        return state.With(slots.Count, t);
    }

    /// <summary>The first step without a previous gradient: c = g + s·g, as g ← g + s·g.</summary>
    readonly struct Scaled(Hyper scale) : IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, IArrayOps<TArray> => Coefficients.AddScaled(ops, a[0], a[0], scale);
    }

    /// <summary>Over (g, g_prev, scratch).</summary>
    readonly struct Correct(GradientCorrectionTransform tx) : IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, IArrayOps<TArray> => tx.Kernel(ops, a[0], a[1], a[2]);
    }

    static Tensor[][] PerTensor(TensorTree tree) => tree.Tensors.Select(t => new[] { t }).ToArray();

    /// <summary>u ← u / d.</summary>
    readonly struct Divide(double divisor) : IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, IArrayOps<TArray> => ops.Div(a[0], divisor);
    }

    /// <summary>The clip's divisor max(‖c‖, 1) from ‖c‖² = <paramref name="squares"/>.</summary>
    internal static TSum ClipDivisor<TSum, TOps>(TOps ops, TSum squares) where TOps : struct, IScalarOps<TSum> => ops.Max(ops.Sqrt(squares), 1);

    /// <summary>c = g + s·(g − g_prev) on one block (g_prev ← g unless exact); <paramref name="diff"/> is scratch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Kernel<TArray, TOps>(TOps ops, TArray g, TArray previous, TArray diff) where TOps : struct, IArrayOps<TArray>
    {
        ops.AddScaled(ops.Copy(diff, g), previous, -1);
        if (!exact) ops.Copy(previous, g);
        Coefficients.AddScaled(ops, g, diff, scale);
    }
}
