using static Lookahead.Transforms;

namespace Lookahead;

public static partial class Optim
{
    /// <summary>
    /// LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning"): AdamW's direction r = m̂/(√v̂ + ε) + λθ,
    /// scaled per tensor by the trust ratio ‖θ‖/‖r‖ (<see cref="Transforms.ScaleByTrustRatio"/>), θ ← θ − η·ratio·r.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-3.</param>
    /// <param name="beta1">β₁; default 0.9.</param>
    /// <param name="beta2">β₂; default 0.999.</param>
    /// <param name="eps">ε; default 1e-6 (the paper's).</param>
    /// <param name="weightDecay">λ ≥ 0, inside the trust ratio; default 0.</param>
    /// <param name="maxRatio">Cap of the trust ratio; default ∞.</param>
    public static IGradientTransformation Lamb(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weightDecay = 0, double maxRatio = double.PositiveInfinity) => Define("lamb", Chain(
            Precondition(AdamMoment(beta2, eps, false), Ema(Check.UnitOpen(beta1, nameof(beta1)), debias: true)),
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            ScaleByTrustRatio(maxRatio: maxRatio),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("maxRatio", maxRatio));

    /// <summary>
    /// LARS (You, Gitman &amp; Ginsburg 2017, "Large Batch Training of Convolutional Networks"), in Optax's
    /// arrangement: u = g + λθ, scaled per tensor by c·‖θ‖/(‖u‖ + ε), then heavy-ball momentum, θ ← θ − η·m.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1.</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="trustCoefficient">c &gt; 0; default 1e-3.</param>
    /// <param name="eps">ε ≥ 0; default 0.</param>
    /// <param name="momentum">β ∈ [0, 1]; default 0.9.</param>
    public static IGradientTransformation Lars(double lr = 1.0, double weightDecay = 0, double trustCoefficient = 1e-3, double eps = 0, double momentum = 0.9) => Define("lars", Chain(
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            ScaleByTrustRatio(trustCoefficient, eps),
            Trace(Check.Unit(momentum, nameof(momentum))),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("weightDecay", weightDecay), ("trustCoefficient", trustCoefficient), ("eps", eps), ("momentum", momentum));
}
