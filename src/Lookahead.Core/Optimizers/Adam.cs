using static Lookahead.Transforms;

namespace Lookahead;

public static partial class Optim
{
    static PreconditionOptions AdamMoment(double beta2, double eps, bool amsgrad) =>
        new() { Decay = Check.UnitOpen(beta2, nameof(beta2)), Epsilon = Check.NonNegative(eps, nameof(eps)), AmsGrad = amsgrad };

    /// <summary>Adam's second moment with β₂ and ε that may be tensors (<see cref="Hyper"/>).</summary>
    static PreconditionOptions AdamMoment(Hyper beta2, Hyper eps, bool amsgrad) =>
        AdamMoment(beta2.Value, eps.Value, amsgrad) with { DecayHyper = beta2, EpsilonHyper = eps };

    /// <summary>
    /// Adam (Kingma &amp; Ba 2015) with torch.optim.Adam's semantics: g ← g + λθ (coupled);
    /// m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; θ ← θ − η·(m/(1−β₁ᵗ)) / (sqrt(v)/sqrt(1−β₂ᵗ) + ε).
    /// With <paramref name="amsgrad"/>, v in the denominator is its running maximum.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-3.</param>
    /// <param name="beta1">β₁ ∈ [0, 1); default 0.9.</param>
    /// <param name="beta2">β₂ ∈ [0, 1); default 0.999.</param>
    /// <param name="eps">ε ≥ 0; default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0, coupled L2; default 0.</param>
    /// <param name="amsgrad">AMSGrad (Reddi et al. 2018); default false.</param>
    public static IGradientTransformation Adam(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0, bool amsgrad = false) =>
        Adam((Hyper)lr, beta1, beta2, eps, weightDecay, amsgrad);

    /// <summary>Adam with hyperparameters that may be tensors (<see cref="Hyper"/>, differentiable under <see cref="Differentiable"/>); every argument is given. Otherwise as the overload of doubles.</summary>
    public static IGradientTransformation Adam(Hyper lr, Hyper beta1, Hyper beta2, Hyper eps, Hyper weightDecay, bool amsgrad) => Define("adam", Chain(
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            Precondition(AdamMoment(beta2, eps, amsgrad), Ema(Check.UnitOpen(beta1, nameof(beta1)), debias: true)),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("amsgrad", amsgrad));

    /// <summary>
    /// AdamW (Loshchilov &amp; Hutter 2019) with torch.optim.AdamW's semantics: θ ← θ(1 − ηλ), then the
    /// Adam step without L2 term. As updates: u = −η·(adam(g) + λθ).
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-3.</param>
    /// <param name="beta1">β₁ ∈ [0, 1); default 0.9.</param>
    /// <param name="beta2">β₂ ∈ [0, 1); default 0.999.</param>
    /// <param name="eps">ε ≥ 0; default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0, decoupled; default 1e-2.</param>
    /// <param name="amsgrad">AMSGrad; default false.</param>
    public static IGradientTransformation AdamW(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 1e-2, bool amsgrad = false) =>
        AdamW((Hyper)lr, beta1, beta2, eps, weightDecay, amsgrad);

    /// <summary>AdamW with hyperparameters that may be tensors (<see cref="Hyper"/>, differentiable under <see cref="Differentiable"/>); every argument is given. Otherwise as the overload of doubles.</summary>
    public static IGradientTransformation AdamW(Hyper lr, Hyper beta1, Hyper beta2, Hyper eps, Hyper weightDecay, bool amsgrad) => Define("adam_w", Chain(
            Precondition(AdamMoment(beta2, eps, amsgrad), Ema(Check.UnitOpen(beta1, nameof(beta1)), debias: true)),
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("amsgrad", amsgrad));

    /// <summary>AMSGrad (Reddi et al. 2018): <c>Adam</c> with the running maximum of v in the denominator.</summary>
    public static IGradientTransformation AmsGrad(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0) => Define("ams_grad", Adam(lr, beta1, beta2, eps, weightDecay, amsgrad: true), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay));

    /// <summary>
    /// RAdam (Liu et al. 2020) with torch.optim.RAdam's semantics: m̂ = m/(1−β₁ᵗ); while ρₜ ≤ 5,
    /// θ ← θ − η·m̂; after, θ ← θ − η·m̂·rₜ·sqrt(1−β₂ᵗ)/(sqrt(v) + ε) (ε on the uncorrected root).
    /// See <see cref="Rectification.RAdam"/>.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-3.</param>
    /// <param name="beta1">β₁ ∈ [0, 1); default 0.9.</param>
    /// <param name="beta2">β₂ ∈ (0, 1); default 0.999.</param>
    /// <param name="eps">ε ≥ 0; default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="decoupledWeightDecay">torch ≥ 2.1's option: θ ← θ(1−ηλ) instead of the L2 term.</param>
    public static IGradientTransformation RAdam(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0, bool decoupledWeightDecay = false)
    {
        Check.NonNegative(weightDecay, nameof(weightDecay));
        return Define("radam", Chain(
            AddDecayedWeights(decoupledWeightDecay ? 0 : weightDecay),
            Precondition(
                AdamMoment(beta2, eps, false) with { EpsilonPlacement = EpsilonPlacement.Uncorrected, Rectification = Rectification.RAdam },
                Ema(Check.UnitOpen(beta1, nameof(beta1)), debias: true)),
            AddDecayedWeights(decoupledWeightDecay ? weightDecay : 0),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("decoupledWeightDecay", decoupledWeightDecay));
    }

    /// <summary>
    /// NAdam (Dozat 2016) with torch ≥ 2.0's semantics: m ← β₁m + (1−β₁)g, v as in Adam,
    /// θ ← θ − η·(aₜ·g + bₜ·m)/(sqrt(v)/sqrt(1−β₂ᵗ) + ε) with the weights of <see cref="ShiftSchedule.NAdam"/>.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 2e-3.</param>
    /// <param name="beta1">β₁ ∈ [0, 1); default 0.9.</param>
    /// <param name="beta2">β₂ ∈ [0, 1); default 0.999.</param>
    /// <param name="eps">ε ≥ 0; default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="momentumDecay">ψ ≥ 0; default 4e-3.</param>
    /// <param name="decoupledWeightDecay">torch ≥ 2.1's option: θ ← θ(1−ηλ) instead of the L2 term.</param>
    /// <param name="torch113">Reproduce torch 1.13's single-tensor NAdam (see <see cref="ShiftSchedule.NAdam"/>); default false.</param>
    public static IGradientTransformation NAdam(double lr = 2e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0, double momentumDecay = 4e-3, bool decoupledWeightDecay = false, bool torch113 = false)
    {
        Check.NonNegative(weightDecay, nameof(weightDecay));
        Check.UnitOpen(beta1, nameof(beta1));
        return Define("nadam", Chain(
            AddDecayedWeights(decoupledWeightDecay ? 0 : weightDecay),
            Precondition(AdamMoment(beta2, eps, false), LookaheadShift(ShiftSchedule.NAdam(beta1, momentumDecay, torch113), Ema(beta1))),
            AddDecayedWeights(decoupledWeightDecay ? weightDecay : 0),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("momentumDecay", momentumDecay), ("decoupledWeightDecay", decoupledWeightDecay), ("torch113", torch113));
    }
}
