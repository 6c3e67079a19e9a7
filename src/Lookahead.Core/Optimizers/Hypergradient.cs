using static Lookahead.Transforms;

namespace Lookahead;

public static partial class Optim
{
    /// <summary>
    /// SGD-HD and SGDN-HD (Baydin et al. 2018; gbaydin/hypergradient-descent's <c>SGDHD</c>): torch's SGD
    /// (<c>Sgd</c>) whose learning rate moves by hypergradient descent before each step, with one dot over all
    /// parameters of the weight-decayed gradient g = ∇f + λθ and the previous direction (the previous g, the momentum
    /// buffer, or the previous Nesterov direction g + μb): α ← α + β⟨g, dₜ₋₁⟩, then θ ← θ − α·d.
    /// </summary>
    /// <param name="lr">The initial rate α₀ ≥ 0.</param>
    /// <param name="momentum">μ ∈ [0, 1]; default 0.</param>
    /// <param name="dampening">δ ∈ [0, 1]; default 0.</param>
    /// <param name="weightDecay">λ ≥ 0, coupled; default 0.</param>
    /// <param name="nesterov">Nesterov's direction (needs μ &gt; 0 and δ = 0).</param>
    /// <param name="hypergradientLr">β ≥ 0; default 1e-6 (the official default).</param>
    public static IGradientTransformation SgdHD(double lr, double momentum = 0, double dampening = 0, double weightDecay = 0, bool nesterov = false, double hypergradientLr = 1e-6)
    {
        Check.NonNegative(weightDecay, nameof(weightDecay));
        return Define("sgd_hd", Chain(AddDecayedWeights(weightDecay), HypergradientDescent(Sgd(1.0, momentum, dampening, 0, nesterov), lr, hypergradientLr, HypergradientScope.Global)),
            ("lr", lr), ("momentum", momentum), ("dampening", dampening), ("weightDecay", weightDecay), ("nesterov", nesterov), ("hypergradientLr", hypergradientLr));
    }

    /// <summary>
    /// Adam-HD (Baydin et al. 2018; gbaydin/hypergradient-descent's <c>AdamHD</c>): Adam whose learning rate moves by
    /// hypergradient descent, per parameter in tree order, before that parameter's update: with g = ∇f + λθ (coupled)
    /// and the previous Adam direction dₜ₋₁ = √(1−β₂ᵗ⁻¹)/(1−β₁ᵗ⁻¹)·m/(√v + ε), α ← α + β⟨g, dₜ₋₁⟩; then
    /// θ ← θ − α·√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v + ε). ε is on the uncorrected root (unlike torch's Adam), as the official code.
    /// </summary>
    /// <param name="lr">The initial rate α₀ ≥ 0; default 1e-3.</param>
    /// <param name="beta1">β₁ ∈ [0, 1); default 0.9.</param>
    /// <param name="beta2">β₂ ∈ [0, 1); default 0.999.</param>
    /// <param name="eps">ε ≥ 0; default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0, coupled; default 0.</param>
    /// <param name="hypergradientLr">β ≥ 0; default 1e-8 (the official default).</param>
    public static IGradientTransformation AdamHD(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0, double hypergradientLr = 1e-8)
    {
        Check.NonNegative(weightDecay, nameof(weightDecay));
        var unit = Chain(
            Precondition(AdamMoment(beta2, eps, false) with { EpsilonPlacement = EpsilonPlacement.Uncorrected }, Ema(Check.UnitOpen(beta1, nameof(beta1)), debias: true)),
            Scale(-1));
        return Define("adam_hd", Chain(AddDecayedWeights(weightDecay), HypergradientDescent(unit, lr, hypergradientLr, HypergradientScope.PerParameter)),
            ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weightDecay", weightDecay), ("hypergradientLr", hypergradientLr));
    }
}
