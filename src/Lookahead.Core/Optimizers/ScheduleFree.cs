using static Lookahead.Transforms;

namespace Lookahead;

public static partial class Optim
{
    /// <summary>
    /// Schedule-Free SGD (Defazio et al. 2024; facebookresearch/schedule_free <c>SGDScheduleFree</c>): the
    /// gradient (plus λy, coupled, at the gradient point y) drives <see cref="Transforms.ScheduleFreeAverage"/>.
    /// The parameters hold y while training; evaluate at x (<see cref="ScheduleFree.EvaluationParameters"/>, or
    /// <see cref="Runner.UseEvaluationParameters"/>). No learning-rate schedule is needed.
    /// </summary>
    /// <param name="lr">Base learning rate ≥ 0; default 1.</param>
    /// <param name="momentum">β ∈ (0, 1]: y = (1 − β)z + βx; default 0.9.</param>
    /// <param name="weightDecay">λ ≥ 0, at y; default 0.</param>
    /// <param name="warmupSteps">Linear warm-up steps; default 0.</param>
    /// <param name="r">Power of k + 1 in the averaging weight; default 0.</param>
    /// <param name="weightLrPower">Power of the largest learning rate in the averaging weight; default 2.</param>
    public static IGradientTransformation ScheduleFreeSgd(double lr = 1.0, double momentum = 0.9, double weightDecay = 0, int warmupSteps = 0, double r = 0, double weightLrPower = 2)
    {
        CheckInterpolation(momentum, nameof(momentum));
        return Define("schedule_free_sgd", Chain(
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            ScheduleFreeAverage(lr, momentum, warmupSteps, r, weightLrPower)), ("lr", lr), ("momentum", momentum), ("weightDecay", weightDecay), ("warmupSteps", warmupSteps), ("r", r), ("weightLrPower", weightLrPower));
    }

    /// <summary>
    /// Schedule-Free AdamW (<c>AdamWScheduleFree</c>): ĝ = g/(√(v/(1 − β₂ᵏ⁺¹)) + ε) with v an undebiased-numerator
    /// second moment (with <paramref name="innerMomentum"/> μ &gt; 0 the numerator is the debiased EMA_μ of g), then
    /// ĝ + λy (decoupled, at y, after normalising) drives <see cref="Transforms.ScheduleFreeAverage"/> with β = β₁.
    /// There is no first moment unless μ &gt; 0: the averaging plays its part.
    /// </summary>
    /// <param name="lr">Base learning rate ≥ 0; default 0.0025.</param>
    /// <param name="beta1">β ∈ (0, 1] of the interpolation; default 0.9.</param>
    /// <param name="beta2">β₂ ∈ [0, 1) of the second moment; default 0.999.</param>
    /// <param name="eps">ε ≥ 0; default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="warmupSteps">Linear warm-up steps; default 0.</param>
    /// <param name="r">Power of k + 1 in the averaging weight; default 0.</param>
    /// <param name="weightLrPower">Power of the largest learning rate in the averaging weight; default 2.</param>
    /// <param name="innerMomentum">μ ∈ [0, 1) of an inner EMA of g; default 0 (none).</param>
    public static IGradientTransformation ScheduleFreeAdamW(double lr = 0.0025, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0, int warmupSteps = 0, double r = 0, double weightLrPower = 2, double innerMomentum = 0)
    {
        CheckInterpolation(beta1, nameof(beta1));
        return Define("schedule_free_adam_w", Chain(
            innerMomentum == 0
                ? Precondition(AdamMoment(beta2, eps, false))
                : Precondition(AdamMoment(beta2, eps, false), Ema(Check.UnitOpen(innerMomentum, nameof(innerMomentum)), debias: true)),
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            ScheduleFreeAverage(lr, beta1, warmupSteps, r, weightLrPower)), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("warmupSteps", warmupSteps), ("r", r), ("weightLrPower", weightLrPower), ("innerMomentum", innerMomentum));
    }

    /// <summary>Schedule-Free's β ∈ (0, 1], checked under the caller's argument name.</summary>
    static void CheckInterpolation(double beta, string name)
    {
        if (!(beta > 0 && beta <= 1)) throw new System.ArgumentOutOfRangeException(name, beta, $"{name} = {beta}: Schedule-Free's interpolation β must be in (0, 1] (the evaluation point divides by it)");
    }
}
