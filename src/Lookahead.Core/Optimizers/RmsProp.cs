using static Lookahead.Transforms;

namespace Lookahead;

public static partial class Optim
{
    /// <summary>
    /// RMSprop (Tieleman &amp; Hinton 2012) with torch.optim.RMSprop's semantics: g ← g + λθ;
    /// s ← αs + (1−α)g²; centered: ḡ ← αḡ + (1−α)g and D = sqrt(s − ḡ²) + ε, else D = sqrt(s) + ε;
    /// with momentum μ &gt; 0: b ← μb + g/D and θ ← θ − η·b; otherwise θ ← θ − η·g/D.
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-2.</param>
    /// <param name="alpha">α ∈ [0, 1); default 0.99.</param>
    /// <param name="eps">ε ≥ 0; default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0, coupled; default 0.</param>
    /// <param name="momentum">μ ∈ [0, 1]; default 0.</param>
    /// <param name="centered">Centered variant; default false.</param>
    public static IGradientTransformation RmsProp(double lr = 1e-2, double alpha = 0.99, double eps = 1e-8, double weightDecay = 0, double momentum = 0, bool centered = false) => Define("rms_prop", Chain(
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            Precondition(new PreconditionOptions
            {
                Decay = Check.UnitOpen(alpha, nameof(alpha)),
                BiasCorrection = false,
                Epsilon = Check.NonNegative(eps, nameof(eps)),
                Centered = centered,
            }),
            Check.Unit(momentum, nameof(momentum)) > 0 ? Trace(momentum) : Identity(),
            Scale(-Check.NonNegative(lr, nameof(lr), "learning rate"))), ("lr", lr), ("alpha", alpha), ("eps", eps), ("weightDecay", weightDecay), ("momentum", momentum), ("centered", centered));

    /// <summary>
    /// Adagrad (Duchi et al. 2011) with torch.optim.Adagrad's semantics: g ← g + λθ; s ← s + g²
    /// (s₀ = <paramref name="initialAccumulatorValue"/>); θ ← θ − ηₜ·g/(sqrt(s) + ε) with
    /// ηₜ = η/(1 + (t−1)·<paramref name="lrDecay"/>).
    /// </summary>
    /// <param name="lr">η ≥ 0; default 1e-2.</param>
    /// <param name="lrDecay">≥ 0; default 0.</param>
    /// <param name="weightDecay">λ ≥ 0, coupled; default 0.</param>
    /// <param name="initialAccumulatorValue">s₀ ≥ 0; default 0.</param>
    /// <param name="eps">ε ≥ 0; default 1e-10.</param>
    public static IGradientTransformation Adagrad(double lr = 1e-2, double lrDecay = 0, double weightDecay = 0, double initialAccumulatorValue = 0, double eps = 1e-10)
    {
        Check.NonNegative(lr, nameof(lr), "learning rate");
        Check.NonNegative(lrDecay, nameof(lrDecay));
        return Define("adagrad", Chain(
            AddDecayedWeights(Check.NonNegative(weightDecay, nameof(weightDecay))),
            Precondition(new PreconditionOptions
            {
                Decay = 1,
                Damped = false,
                BiasCorrection = false,
                Epsilon = Check.NonNegative(eps, nameof(eps)),
                InitialValue = Check.NonNegative(initialAccumulatorValue, nameof(initialAccumulatorValue)),
            }),
            ScaleBySchedule(t => -lr / (1 + (t - 1) * lrDecay), "-lr/(1+(t-1)·lr_decay)")), ("lr", lr), ("lrDecay", lrDecay), ("weightDecay", weightDecay), ("initialAccumulatorValue", initialAccumulatorValue), ("eps", eps));
    }
}
