using System;
using System.Linq;
using static Lookahead.Transforms;

namespace Lookahead;

/// <summary>How weight decay enters QHM (qhoptim's <c>weight_decay_type</c>).</summary>
public enum QhmWeightDecay
{
    /// <summary>Coupled: g ← g + λθ ("grad").</summary>
    Gradient,
    /// <summary>Decoupled: θ ← θ(1 − ηλ) ("direct").</summary>
    Direct,
}

public static partial class Optim
{
    /// <summary>
    /// The velocity form of (generalised) Nesterov momentum (Sutskever et al. 2013, eq. 1a/1b):
    /// vₜ₊₁ = βvₜ − ε·∇f(θₜ + μvₜ), θₜ₊₁ = θₜ + vₜ₊₁. The transform is vₜ₊₁ from the gradient it is
    /// given; the gradient must be evaluated at the lookahead point θ + μ·v, where v is the last update
    /// (<see cref="ShiftedCoordinates.Shift"/>). In an ordinary loop (gradient at the parameters) use
    /// <see cref="GeneralisedNesterov"/>, the same algorithm in the shifted coordinates θ′ = θ + μv.
    /// </summary>
    /// <param name="lr">ε ≥ 0.</param>
    /// <param name="momentum">β ∈ [0, 1].</param>
    public static IGradientTransformation NesterovVelocity(double lr, double momentum) => Define("nesterov_velocity", Chain(Trace(Check.Unit(momentum, nameof(momentum))), Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("momentum", momentum));

    /// <summary>
    /// Generalised Nesterov momentum in shifted coordinates θ′ = θ + μv (the generalised-Nesterov note,
    /// eq. 13a/13b): v′ ← βv′ − ε(g + μ(g − g_prev)), θ′ ← θ′ + v′, with the gradient at θ′. μ = β is
    /// Nesterov's lookahead (and torch's Nesterov SGD); MARS is μ = γβ/(1−β) with ε = η(1−β).
    /// </summary>
    /// <param name="lr">ε ≥ 0.</param>
    /// <param name="momentum">β ∈ [0, 1].</param>
    /// <param name="lookahead">μ, finite.</param>
    public static IGradientTransformation GeneralisedNesterov(double lr, double momentum, double lookahead) => Define("generalised_nesterov", Chain(
            GradientCorrection(Check.Finite(lookahead, nameof(lookahead), "lookahead μ")),
            Trace(Check.Unit(momentum, nameof(momentum))),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("momentum", momentum), ("lookahead", lookahead));

    /// <summary>Nesterov momentum (Sutskever form, lookahead μ = β) in shifted coordinates: <see cref="GeneralisedNesterov"/>(ε, β, β).</summary>
    public static IGradientTransformation Nesterov(double lr, double momentum) => Define("nesterov", GeneralisedNesterov(lr, momentum, momentum), ("lr", lr), ("momentum", momentum));

    /// <summary>
    /// Quasi-hyperbolic momentum (Ma &amp; Yarats 2019; qhoptim's QHM): b ← βb + (1−β)g (zero start),
    /// θ ← θ − α[(1−ν)g + ν·b]. ν = 1 is SGD momentum with lr α(1−β); ν = β is torch's Nesterov SGD with lr α(1−β).
    /// </summary>
    /// <param name="lr">α ≥ 0.</param>
    /// <param name="momentum">β ∈ [0, 1).</param>
    /// <param name="nu">ν, finite.</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="weightDecayType">Coupled (default) or direct.</param>
    public static IGradientTransformation Qhm(double lr, double momentum, double nu, double weightDecay = 0, QhmWeightDecay weightDecayType = QhmWeightDecay.Gradient) =>
        Qhm((Hyper)lr, momentum, nu, weightDecay, weightDecayType);

    /// <summary>QHM with hyperparameters that may be tensors (<see cref="Hyper"/>, differentiable under <see cref="Differentiable"/>); every argument is given. Otherwise as the overload of doubles.</summary>
    public static IGradientTransformation Qhm(Hyper lr, Hyper momentum, Hyper nu, Hyper weightDecay, QhmWeightDecay weightDecayType)
    {
        Check.NonNegative(weightDecay, nameof(weightDecay));
        return Define("qhm", Chain(
            AddDecayedWeights(weightDecayType == QhmWeightDecay.Gradient ? weightDecay : 0),
            LookaheadShift(Check.Finite(nu, nameof(nu)), Ema(Check.UnitOpen(momentum, nameof(momentum)))),
            AddDecayedWeights(weightDecayType == QhmWeightDecay.Direct ? weightDecay : 0),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("momentum", momentum), ("nu", nu), ("weightDecay", weightDecay), ("weightDecayType", weightDecayType));
    }

    /// <summary>
    /// QHAdam (Ma &amp; Yarats 2019): θ ← θ − α·(ν₁m̂ + (1−ν₁)g)/(sqrt(ν₂v̂ + (1−ν₂)g²) + ε), with Adam's
    /// bias-corrected moments. ν = (1, 1) is Adam.
    /// </summary>
    /// <param name="lr">α ≥ 0; default 1e-3.</param>
    /// <param name="beta1">β₁ ∈ [0, 1); default 0.9.</param>
    /// <param name="beta2">β₂ ∈ [0, 1); default 0.999.</param>
    /// <param name="nu1">ν₁; default 1.</param>
    /// <param name="nu2">ν₂; default 1.</param>
    /// <param name="eps">ε ≥ 0; default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="decoupledWeightDecay">θ ← θ(1 − αλ) instead of the coupled g + λθ (QHAdamW).</param>
    public static IGradientTransformation QhAdam(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double nu1 = 1, double nu2 = 1, double eps = 1e-8, double weightDecay = 0, bool decoupledWeightDecay = false)
    {
        Check.NonNegative(weightDecay, nameof(weightDecay));
        return Define("qh_adam", Chain(
            AddDecayedWeights(decoupledWeightDecay ? 0 : weightDecay),
            Precondition(
                AdamMoment(beta2, eps, false) with { SecondMomentNu = Check.Finite(nu2, nameof(nu2)) },
                LookaheadShift(Check.Finite(nu1, nameof(nu1)), Ema(Check.UnitOpen(beta1, nameof(beta1)), debias: true))),
            AddDecayedWeights(decoupledWeightDecay ? weightDecay : 0),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("nu1", nu1), ("nu2", nu2), ("eps", eps), ("weightDecay", weightDecay), ("decoupledWeightDecay", decoupledWeightDecay));
    }

    /// <summary>
    /// Remote stochastic gradient (RSG; Chen et al., ARSG paper eq. 4, the fast form): m̃ ← βm̃ + g (undamped),
    /// θ ← θ − α(1−β)(1−μ)·m̃ − αμ·g: the gradient observed at a "remote" point μ ahead. Equals QHM with ν = 1−μ.
    /// </summary>
    /// <param name="lr">α ≥ 0.</param>
    /// <param name="momentum">β ∈ [0, 1); the paper's default 0.999.</param>
    /// <param name="mu">Observation factor μ ∈ [0, 1); default 0.1.</param>
    /// <param name="weightDecay">λ ≥ 0, coupled; default 0.</param>
    public static IGradientTransformation Rsg(double lr, double momentum = 0.999, double mu = 0.1, double weightDecay = 0) =>
        Rsg((Hyper)lr, momentum, mu, weightDecay);

    /// <summary>RSG with hyperparameters that may be tensors (<see cref="Hyper"/>, differentiable under <see cref="Differentiable"/>); every argument is given. Otherwise as the overload of doubles.</summary>
    public static IGradientTransformation Rsg(Hyper lr, Hyper momentum, Hyper mu, Hyper weightDecay) => Define("rsg", Chain(
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            RemoteObservation(momentum, mu),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("momentum", momentum), ("mu", mu), ("weightDecay", weightDecay));

    /// <summary>RSG's direction (1−β)(1−μ)·m̃ + μ·g over the undamped trace m̃: the lookahead shift of the fast form.</summary>
    static IGradientTransformation RemoteObservation(Hyper momentum, Hyper mu)
    {
        Check.UnitOpen(momentum, nameof(momentum));
        Check.UnitOpen(mu, nameof(mu), "observation factor");
        return LookaheadShift(ShiftSchedule.Constant(mu, (1 - momentum) * (1 - mu)), Trace(momentum, 0));
    }

    /// <summary>
    /// ARSG (Chen et al., "An Adaptive Remote Stochastic Gradient Method", Algorithm 1; rationalspark/NAMSG's
    /// <c>Arsg</c>). AMSGrad mode (default): v ← β₂v + g² (undamped), v_max ← max(v_max, v) started at
    /// ε/(1−β₂) (ε is a floor, never added), θ ← θ − α·((1−β₁)(1−μ)m̃ + μg)/sqrt((1−β₂)·v_max); no bias
    /// correction. Adam mode (<paramref name="amsgrad"/> = false): θ ← θ − α((1−μ)m̂ + μg)/(sqrt(v̂) + ε)
    /// with bias-corrected moments, i.e. QHAdam(ν₁ = 1−μ, ν₂ = 1).
    /// </summary>
    /// <param name="lr">α ≥ 0; default 1e-3.</param>
    /// <param name="beta1">β₁ ∈ [0, 1); default 0.999.</param>
    /// <param name="beta2">β₂ ∈ [0, 1); default 0.99.</param>
    /// <param name="eps">ε &gt; 0 in AMSGrad mode (the floor; 1e-3 is the paper's "fine mode"); default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0, coupled; default 0.</param>
    /// <param name="mu">Observation factor μ ∈ [0, 1); default 0.1.</param>
    /// <param name="amsgrad">AMSGrad-type preconditioner (default) or Adam's.</param>
    public static IGradientTransformation Arsg(double lr = 1e-3, double beta1 = 0.999, double beta2 = 0.99, double eps = 1e-8, double weightDecay = 0, double mu = 0.1, bool amsgrad = true)
    {
        Check.NonNegative(weightDecay, nameof(weightDecay));
        Check.NonNegative(lr, nameof(lr), "learning rate");
        Check.UnitOpen(mu, nameof(mu), "observation factor");
        if (!amsgrad)
            return Define("arsg", Chain(
                AddDecayedWeights(weightDecay),
                Precondition(AdamMoment(beta2, eps, false), LookaheadShift(1 - mu, Ema(Check.UnitOpen(beta1, nameof(beta1)), debias: true))),
                Scale(-lr)), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("mu", mu), ("amsgrad", amsgrad));
        return Define("arsg", Chain(
            AddDecayedWeights(weightDecay),
            ArsgPrecondition(beta2, eps, RemoteObservation(beta1, mu)),
            Scale(-lr / Math.Sqrt(1 - beta2))), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("mu", mu), ("amsgrad", amsgrad));
    }

    /// <summary>
    /// ARSG with the observation-boost policy (OBSB, the ARSG paper §3): start with a small μ₀ (0.05); each
    /// time the loss flattens (<see cref="BoostPolicy"/>), double μ (kept below 1) and scale the step so that the
    /// curvature RSG converges fastest on is kept: at boost level ℓ, α_ℓ = α·τ*(μ₀2^ℓ)/τ*(μ₀), with τ*(μ) the
    /// argmin over τ = αλ of the gain factor r_g of <c>Rsg</c>(1, β₁, μ), computed from RSG's own
    /// realisation (<see cref="QuadraticDynamics.FastestCurvature"/>). At β₁ = 0.999 the first boost (μ 0.05 → 0.1)
    /// divides α by 4.03, the paper's "roughly divided by 4". Needs the loss in the context.
    /// </summary>
    /// <param name="lr">α at level 0; default 1e-3.</param>
    /// <param name="beta1">β₁, as in <see cref="Arsg"/>; default 0.999.</param>
    /// <param name="beta2">β₂, as in <see cref="Arsg"/>; default 0.99.</param>
    /// <param name="eps">ε, as in <see cref="Arsg"/>; default 1e-8.</param>
    /// <param name="weightDecay">Coupled weight decay; default 0.</param>
    /// <param name="initialMu">μ₀ ∈ (0, 1), doubled at each boost (μ₀·2^MaxLevel must stay below 1); default 0.05.</param>
    /// <param name="stepDivisor">A fixed divisor per boost instead of the analysis (α_ℓ = α/stepDivisor^ℓ); default null (the analysis).</param>
    /// <param name="policy">When the loss counts as flat, and the most boosts; default a <see cref="BoostPolicy"/>.</param>
    /// <param name="amsgrad">AMSGrad-type preconditioner (default) or Adam's, as in <see cref="Arsg"/>.</param>
    public static IGradientTransformation ArsgObsb(double lr = 1e-3, double beta1 = 0.999, double beta2 = 0.99, double eps = 1e-8, double weightDecay = 0, double initialMu = 0.05, double? stepDivisor = null, BoostPolicy? policy = null, bool amsgrad = true)
    {
        Check.UnitOpen(initialMu, nameof(initialMu), "initial observation factor");
        if (stepDivisor is double divisor) Check.Positive(divisor, nameof(stepDivisor));
        var p = policy ?? new BoostPolicy();
        if (initialMu * Math.Pow(2, p.MaxLevel) >= 1)
            throw new ArgumentOutOfRangeException(nameof(initialMu), initialMu, $"initialMu = {initialMu} doubled MaxLevel = {p.MaxLevel} times reaches μ ≥ 1; lower one of them");
        _ = Arsg(lr, beta1, beta2, eps, weightDecay, initialMu, amsgrad);   // validate now, not at the first boost
        var scales = ObservationBoostScales(beta1, initialMu, p.MaxLevel, stepDivisor);
        return Define("arsg_obsb", Boosted(level => Arsg(lr * scales[level], beta1, beta2, eps, weightDecay, initialMu * Math.Pow(2, level), amsgrad), p, "arsg_obsb"), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("initialMu", initialMu), ("stepDivisor", stepDivisor), ("policy", policy), ("amsgrad", amsgrad));
    }

    /// <summary>
    /// The step scale of each observation-boost level 0 … <paramref name="maxLevel"/> (level 0: 1): with no
    /// <paramref name="stepDivisor"/>, τ*(μ₀2^ℓ)/τ*(μ₀) from RSG's analysis (see <see cref="ArsgObsb"/>); otherwise stepDivisor^−ℓ.
    /// </summary>
    public static double[] ObservationBoostScales(double beta1, double initialMu, int maxLevel, double? stepDivisor = null)
    {
        Check.UnitOpen(beta1, nameof(beta1));
        Check.UnitOpen(initialMu, nameof(initialMu), "initial observation factor");
        Check.AtLeast(maxLevel, 0, nameof(maxLevel));
        if (stepDivisor is double d) return Enumerable.Range(0, maxLevel + 1).Select(l => Math.Pow(Check.Positive(d, nameof(stepDivisor)), -l)).ToArray();
        // The analysis takes tens of milliseconds per level; the result depends only on these three numbers.
        return (double[])BoostScales.GetOrAdd((beta1, initialMu, maxLevel), key => AnalysedBoostScales(key.Beta1, key.InitialMu, key.MaxLevel)).Clone();
    }

    static readonly System.Collections.Concurrent.ConcurrentDictionary<(double Beta1, double InitialMu, int MaxLevel), double[]> BoostScales = new();

    static double[] AnalysedBoostScales(double beta1, double initialMu, int maxLevel)
    {
        double Fastest(double mu)
        {
            var (_, tau) = Analysis.Dynamics(new OptimizerForm(Rsg(1, beta1, mu))).FastestCurvature();
            if (!(tau > 0)) throw new InvalidOperationException($"RSG(β = {beta1}, μ = {mu}) has no fastest curvature: stable nowhere");
            return tau;
        }
        double first = Fastest(initialMu);
        return Enumerable.Range(0, maxLevel + 1).Select(l => l == 0 ? 1 : Fastest(initialMu * Math.Pow(2, l)) / first).ToArray();
    }
}
