using static Lookahead.Transforms;

namespace Lookahead;

public static partial class Optim
{
    /// <summary>
    /// SOAP (Vyas et al. 2024; nikhilvyas/SOAP): Adam in the eigenbasis of Shampoo's preconditioner
    /// (<see cref="Transforms.EigenbasisAdam"/>), θ ← θ − η·u, then θ ← θ(1 − ηλ) on the updated parameters from the
    /// second call on (the first call only starts the factors: the parameters do not move).
    /// </summary>
    /// <param name="lr">η ≥ 0; default 3e-3.</param>
    /// <param name="beta1">β₁; default 0.95.</param>
    /// <param name="beta2">β₂; default 0.95.</param>
    /// <param name="shampooBeta">The factors' decay; null (the official −1): β₂.</param>
    /// <param name="eps">ε; default 1e-8.</param>
    /// <param name="weightDecay">λ ≥ 0, applied after the update; default 0.01.</param>
    /// <param name="preconditionFrequency">Steps between basis refreshes; default 10.</param>
    /// <param name="maxPreconditionDimension">Larger dimensions get no factor; default 10000.</param>
    /// <param name="precondition1D">Factors for 1-D parameters too; default false.</param>
    /// <param name="normalizeGrads">Divide the update by its RMS; default false.</param>
    /// <param name="correctBias">Adam's bias correction; default true.</param>
    /// <param name="float32Basis">The official float32 casts in the basis computations; default false.</param>
    public static IGradientTransformation Soap(double lr = 3e-3, double beta1 = 0.95, double beta2 = 0.95, double? shampooBeta = null, double eps = 1e-8, double weightDecay = 0.01,
        int preconditionFrequency = 10, int maxPreconditionDimension = 10000, bool precondition1D = false, bool normalizeGrads = false, bool correctBias = true, bool float32Basis = false)
    {
        Check.NonNegative(lr, nameof(lr), "learning rate");
        Check.NonNegative(weightDecay, nameof(weightDecay));
        Check.UnitOpen(beta1, nameof(beta1));
        Check.UnitOpen(beta2, nameof(beta2));
        return Define("soap", Chain(
            EigenbasisAdam(new EigenbasisOptions
            {
                Beta1 = beta1, Beta2 = beta2, ShampooBeta = shampooBeta, Epsilon = eps, PreconditionFrequency = preconditionFrequency,
                MaxPreconditionDimension = maxPreconditionDimension, Precondition1D = precondition1D, NormalizeGrads = normalizeGrads,
                CorrectBias = correctBias, Float32Basis = float32Basis,
            }),
            Scale(-lr),
            When((t, _) => t > 1, DecayAfterUpdate(lr * weightDecay), "from the second call")),
            ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("shampooBeta", shampooBeta), ("eps", eps), ("weightDecay", weightDecay), ("preconditionFrequency", preconditionFrequency),
            ("maxPreconditionDimension", maxPreconditionDimension), ("precondition1D", precondition1D), ("normalizeGrads", normalizeGrads), ("correctBias", correctBias), ("float32Basis", float32Basis));
    }
}
