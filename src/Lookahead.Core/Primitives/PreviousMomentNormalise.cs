using System;
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

sealed class PreviousMomentNormaliseTransform(double decay, double eps, double? clipExponent) : DeclaredTransform
{
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
        var nu = state.Get(Nu);
        for (int i = 0; i < updates.Count; i++)
        {
            using var scope = NewDisposeScope();
            Tensor u = updates.Tensors[i], v = nu.Tensors[i];
            if (t == 1)
            {
                v.copy_(u).mul_(u);
                u.zero_();
                continue;
            }
            var root = v.sqrt().clamp_min_(eps);
            v.mul_(decay).addcmul_(u, u, 1 - decay);
            u.div_(root);
            if (clipExponent is double p)
            {
                double level = Math.Pow(t - 1, p);
                u.clamp_(-level, level);
            }
        }
        return state.With(Count, t);
    }
}
