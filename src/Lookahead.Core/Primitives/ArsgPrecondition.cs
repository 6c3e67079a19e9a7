namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// ARSG's preconditioner (Chen et al., "An Adaptive Remote Stochastic Gradient Method", Algorithm 1 and
    /// rationalspark/NAMSG's <c>Arsg</c>): an undamped second moment v ← β₂v + g², its AMSGrad-type running
    /// maximum started at ε/(1−β₂), and u ← N(g)/sqrt(v_max): ε is a floor of the denominator, never added,
    /// and there is no bias correction. (In damped terms the floor is ε and the denominator
    /// sqrt((1−β₂)·v_max); <see cref="Optim.Arsg"/> folds the constant 1/sqrt(1−β₂) into its step.)
    /// A <see cref="Precondition"/> with these options; its state is the precondition's <see cref="DeclaredState"/> (<c>count</c>, <c>nu</c>, <c>nu_max</c>, <c>numerator</c>).
    /// </summary>
    /// <param name="beta2">β₂ ∈ [0, 1); the paper's default 0.99.</param>
    /// <param name="eps">ε &gt; 0; 1e-8 (fast mode) or 1e-3 (fine mode).</param>
    /// <param name="numerator">N; null means identity. ARSG's is the remote observation (1−β₁)(1−μ)·m̃ + μ·g.</param>
    public static IGradientTransformation ArsgPrecondition(double beta2 = 0.99, double eps = 1e-8, IGradientTransformation? numerator = null) =>
        Precondition(ArsgPreconditionOptions(beta2, eps), numerator);

    /// <summary>The <see cref="PreconditionOptions"/> of <see cref="ArsgPrecondition"/>.</summary>
    public static PreconditionOptions ArsgPreconditionOptions(double beta2, double eps) => new()
    {
        Decay = Check.UnitOpen(beta2, nameof(beta2)),
        Damped = false,
        BiasCorrection = false,
        AmsGrad = true,
        MaxInitialValue = Check.Positive(eps, nameof(eps), "ARSG's floor of the second moment") / (1 - beta2),
        Epsilon = 0,
    };
}
