using System;
using System.Runtime.CompilerServices;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// ADOPT's normalisation (Taniguchi et al. 2024, "ADOPT: Modified Adam Can Converge with Any β₂"): divide the
    /// update by the root of a second moment that does not yet contain it, then fold it in. Step 1: ν ← u², u ← 0
    /// (the official code only initialises ν; the parameters do not move). Step t ≥ 2: u ← u / max(√ν, ε), clamped
    /// to [−(t − 1)^p, (t − 1)^p] when <paramref name="clipExponent"/> p is given; then ν ← β·ν + (1 − β)·u², with
    /// the incoming u. ε is a floor on the root, not an addend.
    /// </summary>
    /// <param name="decay">β ∈ [0, 1) (ADOPT's β₂, default 0.9999 there).</param>
    /// <param name="eps">ε ≥ 0, the floor of √ν.</param>
    /// <param name="clipExponent">p ≥ 0 of the clip level (t − 1)^p (the official <c>clip_lambda = step**0.25</c>), or null for no clip.</param>
    public static IGradientTransformation NormaliseByPreviousMoment(double decay, double eps, double? clipExponent = 0.25)
    {
        Check.UnitOpen(decay, nameof(decay), "second-moment decay β");
        Check.NonNegative(eps, nameof(eps));
        if (clipExponent is double p) Check.NonNegative(p, nameof(clipExponent));
        return new PreviousMomentNormaliseTransform(decay, eps, clipExponent);
    }
}

sealed class PreviousMomentNormaliseTransform(double decay, double eps, double? clipExponent) : DeclaredTransform, Kernels.IFusable
{
    public bool FusesAlone => true;

    static readonly StateLayout State = new("previous_moment_normalise");
    /// <summary>Steps taken so far.</summary>
    static readonly Slot<long> Count = State.Integer("count");
    /// <summary>ν, shaped like the parameters (the squared update of step 1, then an EMA of squared updates).</summary>
    static readonly Slot<TensorTree> Nu = State.PerParameter("nu", SlotStart.Zeros);

    protected override StateLayout Declare() => State;

    public override Spec Spec => Spec.Of("previous_moment_normalise").With("decay", decay).With("eps", eps).With("clip_exponent", clipExponent);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long t = state.Get(Count) + 1;
        var groups = Buffers.Groups(updates, state.Get(Nu));
        if (t == 1) Kernels.Elementwise.Run(new StartKernel(), groups, (Tensor[][]?)null);
        else
        {
            double level = clipExponent is double p ? Math.Pow(t - 1, p) : double.PositiveInfinity;
            var roots = Buffers.RentArray(groups.Count);
            try
            {
                for (int k = 0; k < groups.Count; k++) roots[k] = Buffers.Rent(groups[k][0]);
                Kernels.Elementwise.Run(new NormaliseKernel(decay, eps, level), groups, roots);
            }
            finally
            {
                foreach (var r in roots) if (r is not null) Buffers.Return(r);
                Buffers.ReturnArray(roots);
            }
        }
        return state.With(Count, t);
    }

    /// <summary>Over (u, ν): step 1, ν ← u², u ← 0 (the parameters do not move).</summary>
    readonly struct StartKernel : Kernels.IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray>
        {
            ops.MulBy(ops.Copy(a[1], a[0]), a[0]);
            ops.Mul(a[0], 0);
        }
    }

    /// <summary>Over (u, ν, scratch r): r ← max(√ν, ε); ν ← βν + (1 − β)u²; u ← u/r, clamped to ±level (∞: no clip).</summary>
    readonly struct NormaliseKernel(double decay, double eps, double level) : Kernels.IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray>
        {
            TArray u = a[0], v = a[1], root = a[2];
            ops.ClampMin(ops.SqrtOf(root, v), eps);
            ops.MulAddProduct(v, decay, u, u, 1 - decay);
            ops.DivBy(u, root);
            if (double.IsFinite(level))
            {
                // min(max(u, −L), L) = −max(−max(u, −L), −L): sign changes are exact.
                ops.ClampMin(u, -level);
                ops.Mul(ops.ClampMin(ops.Mul(u, -1), -level), -1);
            }
        }
    }
}
