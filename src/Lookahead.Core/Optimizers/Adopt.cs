using static Lookahead.Transforms;

namespace Lookahead;

public static partial class Optim
{
    /// <summary>
    /// ADOPT (Taniguchi et al. 2024, "ADOPT: Modified Adam Can Converge with Any β₂ with the Optimal Rate";
    /// iShohei220/adopt): normalise the gradient by the root of the previous second moment (floored at ε), clip it
    /// to ±(t − 1)^p, then take momentum of the normalised gradient: m ← β₁m + (1 − β₁)·n, θ ← θ − η·m; the second
    /// moment takes g² after it is used. The first step only sets v = g² (θ does not move). No bias correction.
    /// Weight decay as the official code: coupled (g ← g + λθ, every step) by default; with
    /// <paramref name="decouple"/>, θ ← θ − ηλθ from the second step on.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-3.</param>
    /// <param name="beta1">β₁ ∈ [0, 1); default 0.9.</param>
    /// <param name="beta2">β₂ ∈ [0, 1); default 0.9999.</param>
    /// <param name="eps">ε ≥ 0, the floor of √v; default 1e-6.</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="decouple">Decoupled weight decay (AdamW-style); default false (coupled L2).</param>
    /// <param name="clipExponent">p of the clip level (t − 1)^p (the official default <c>step**0.25</c>), or null for no clip.</param>
    public static IGradientTransformation Adopt(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.9999, double eps = 1e-6, double weightDecay = 0, bool decouple = false, double? clipExponent = 0.25)
    {
        Check.NonNegative(weightDecay, nameof(weightDecay));
        Check.UnitOpen(beta2, nameof(beta2));
        Check.NonNegative(eps, nameof(eps));
        if (clipExponent is double p) Check.NonNegative(p, nameof(clipExponent));
        return Define("adopt", Chain(
            AddDecayedWeights(decouple ? 0 : weightDecay),
            NormaliseByPreviousMoment(beta2, eps, clipExponent),
            Ema(Check.UnitOpen(beta1, nameof(beta1))),
            When((t, _) => t > 1, AddDecayedWeights(decouple ? weightDecay : 0), "from the second step"),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("decouple", decouple), ("clipExponent", clipExponent));
    }
}
