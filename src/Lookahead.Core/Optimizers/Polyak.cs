using static Lookahead.Transforms;

namespace Lookahead;

public static partial class Optim
{
    /// <summary>
    /// Stochastic Polyak step (SPS, Loizou et al. 2021): θ ← θ − min(α, (f − f*)/(‖g‖² + ε))·g, where a
    /// negative gap steps uphill. Needs the loss in the context (<see cref="ContextKeys.Loss"/>).
    /// </summary>
    /// <param name="maxLr">α ≥ 0, the largest step; default 1.</param>
    /// <param name="lowerBound">f*; default 0.</param>
    /// <param name="eps">ε ≥ 0 added to ‖g‖²; default 0.</param>
    public static IGradientTransformation Sps(double maxLr = 1, double lowerBound = 0, double eps = 0) => Define("sps", PolyakTruncation(SpsChecked(maxLr, lowerBound, eps) with { Name = "sps", Positive = false }), ("maxLr", maxLr), ("lowerBound", lowerBound), ("eps", eps));

    static PolyakOptions SpsChecked(double maxLr, double lowerBound, double eps) => new()
    {
        Model = PolyakModel.Stochastic,
        LearningRate = Check.NonNegative(maxLr, nameof(maxLr), "largest step"),
        LowerBound = Check.Finite(lowerBound, nameof(lowerBound)),
        Epsilon = Check.NonNegative(eps, nameof(eps)),
    };

    /// <summary>SPS+ (Gower et al.): <see cref="Sps"/> with the gap truncated at zero, min(α, (f − f*)₊/‖g‖²). Equals MoMo with β = 0.</summary>
    public static IGradientTransformation SpsPlus(double maxLr = 1, double lowerBound = 0, double eps = 0) => Define("sps_plus", PolyakTruncation(SpsChecked(maxLr, lowerBound, eps) with { Name = "sps+", Positive = true }), ("maxLr", maxLr), ("lowerBound", lowerBound), ("eps", eps));

    /// <summary>
    /// MoMo (Schaipp, Ohana, Eickenberg, Defazio, Gower 2024, "MoMo: Momentum Models for Adaptive Learning
    /// Rates"; fabian-sp/MoMo <c>Momo</c>): SGD momentum d = EMA_β(g) with the step
    /// τ = min(α/ρ, (h(f̄ − ρf*) + ⟨θ, d⟩ − hγ̄)₊/‖d‖²), θ ← (θ − τd)/(1 + αλ). Needs the loss in the context.
    /// </summary>
    /// <param name="lr">α ≥ 0; default 1.</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="beta">β ∈ [0, 1); default 0.9.</param>
    /// <param name="lowerBound">f*; default 0.</param>
    /// <param name="biasCorrection">Zero-started averages with ρ = 1 − βᵏ; default false.</param>
    /// <param name="estimateLowerBound">Online estimate of f* (<c>use_fstar</c>); default false.</param>
    public static IGradientTransformation Momo(double lr = 1, double weightDecay = 0, double beta = 0.9, double lowerBound = 0, bool biasCorrection = false, bool estimateLowerBound = false) => Define("momo", PolyakTruncation(new PolyakOptions
        {
            Name = "momo", LearningRate = Check.NonNegative(lr, nameof(lr), "learning rate"), WeightDecay = Check.NonNegative(weightDecay, nameof(weightDecay)),
            Beta = Check.UnitOpen(beta, nameof(beta)), LowerBound = Check.Finite(lowerBound, nameof(lowerBound)),
            BiasCorrection = biasCorrection, EstimateLowerBound = estimateLowerBound,
        }), ("lr", lr), ("weightDecay", weightDecay), ("beta", beta), ("lowerBound", lowerBound), ("biasCorrection", biasCorrection), ("estimateLowerBound", estimateLowerBound));

    /// <summary>
    /// MoMo-Adam (fabian-sp/MoMo <c>MomoAdam</c>): the MoMo step in Adam's norm, D = sqrt(v̂) + ε,
    /// τ = min(α/ρ, (h(f̄ − ρf*) + ⟨θ, m⟩ − hγ̄)₊/⟨m, m/D⟩) with ρ = 1 − β₁ᵏ, θ ← (θ − τm/D)/(1 + αλ), or
    /// θ(1 − αλ) − τm/D with <paramref name="divide"/> = false. Untruncated it is Adam (AdamW). Needs the loss.
    /// </summary>
    /// <param name="lr">α ≥ 0; default 1e-2.</param>
    /// <param name="beta1">β₁ ∈ [0, 1); default 0.9.</param>
    /// <param name="beta2">β₂ ∈ [0, 1); default 0.999.</param>
    /// <param name="eps">ε ≥ 0; default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="lowerBound">f*; default 0.</param>
    /// <param name="divide">Proximal weight decay (default) or the AdamW form.</param>
    /// <param name="estimateLowerBound">Online estimate of f*; default false.</param>
    public static IGradientTransformation MomoAdam(double lr = 1e-2, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0, double lowerBound = 0, bool divide = true, bool estimateLowerBound = false) => Define("momo_adam", PolyakTruncation(new PolyakOptions
        {
            Name = "momo_adam", LearningRate = Check.NonNegative(lr, nameof(lr), "learning rate"), WeightDecay = Check.NonNegative(weightDecay, nameof(weightDecay)),
            Beta = Check.UnitOpen(beta1, nameof(beta1)), LowerBound = Check.Finite(lowerBound, nameof(lowerBound)),
            BiasCorrection = true, EstimateLowerBound = estimateLowerBound,
            WeightDecayForm = divide ? WeightDecayForm.Proximal : WeightDecayForm.Decoupled,
            Preconditioner = AdamMoment(beta2, eps, false),
        }), ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("lowerBound", lowerBound), ("divide", divide), ("estimateLowerBound", estimateLowerBound));
}
