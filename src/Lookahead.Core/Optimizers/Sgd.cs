using System;
using static Lookahead.Transforms;

namespace Lookahead;

/// <summary>
/// Optimizers, each one composition of primitives (<see cref="Transforms"/>). Each validates its
/// hyperparameters when built; the result is an immutable <see cref="IGradientTransformation"/> whose
/// updates are added to the parameters.
/// </summary>
public static partial class Optim
{
    /// <summary>
    /// Stochastic gradient descent with torch.optim.SGD's semantics: d = g + λθ; with momentum μ the
    /// buffer starts as a copy of d, then b ← μb + (1−δ)d; the direction is b, or d + μb with Nesterov;
    /// θ ← θ − η·direction.
    /// </summary>
    /// <param name="lr">η ≥ 0.</param>
    /// <param name="momentum">μ ∈ [0, 1]; default 0.</param>
    /// <param name="dampening">δ ∈ [0, 1]; default 0.</param>
    /// <param name="weightDecay">λ ≥ 0, coupled (added to the gradient); default 0.</param>
    /// <param name="nesterov">Nesterov's variant (needs μ &gt; 0 and δ = 0, as in torch).</param>
    public static IGradientTransformation Sgd(double lr, double momentum = 0, double dampening = 0, double weightDecay = 0, bool nesterov = false) =>
        Sgd((Hyper)lr, momentum, dampening, weightDecay, nesterov);

    /// <summary>SGD with hyperparameters that may be tensors (<see cref="Hyper"/>, differentiable under <see cref="Differentiable"/>); every argument is given. Otherwise as the overload of doubles.</summary>
    public static IGradientTransformation Sgd(Hyper lr, Hyper momentum, Hyper dampening, Hyper weightDecay, bool nesterov)
    {
        Check.NonNegative(lr.Value, nameof(lr), "learning rate");
        Check.Unit(momentum.Value, nameof(momentum));
        Check.Unit(dampening.Value, nameof(dampening));
        Check.NonNegative(weightDecay.Value, nameof(weightDecay));
        if (nesterov && (momentum.Value == 0 || dampening.Value != 0))
            throw new ArgumentException($"nesterov = true needs momentum > 0 and dampening = 0; got momentum = {momentum}, dampening = {dampening}", nameof(nesterov));
        var buffer = Trace(momentum, dampening, startAtFirstUpdate: true);
        var direction = momentum.Value == 0 && !momentum.IsTensor ? Identity()   // a tensor μ = 0 keeps its derivative
            : nesterov ? LookaheadShift(ShiftSchedule.Constant(1, momentum), buffer)
            : buffer;
        return Define("sgd", Chain(AddDecayedWeights(weightDecay), direction, Scale(-lr)), ("lr", lr), ("momentum", momentum), ("dampening", dampening), ("weightDecay", weightDecay), ("nesterov", nesterov));
    }

    /// <summary>
    /// Heavy ball (Polyak 1964) in torch's convention: b₁ = g₁, bₜ = βbₜ₋₁ + (1−δ)gₜ, θ ← θ − η·b.
    /// </summary>
    /// <param name="lr">η ≥ 0.</param>
    /// <param name="momentum">β ∈ [0, 1].</param>
    /// <param name="dampening">δ ∈ [0, 1]; default 0.</param>
    /// <remarks>As in torch, β = 0 means no buffer at all (dampening is then ignored).</remarks>
    public static IGradientTransformation HeavyBall(double lr, double momentum, double dampening = 0) => Define("heavy_ball", Sgd(lr, momentum, dampening), ("lr", lr), ("momentum", momentum), ("dampening", dampening));

    /// <summary>
    /// Nesterov SGD in torch's form: b as in <see cref="HeavyBall"/> (undamped), θ ← θ − η·(g + μb).
    /// </summary>
    /// <param name="lr">η ≥ 0.</param>
    /// <param name="momentum">μ ∈ (0, 1].</param>
    /// <param name="weightDecay">λ ≥ 0, coupled; default 0.</param>
    public static IGradientTransformation NesterovSgd(double lr, double momentum, double weightDecay = 0) => NesterovSgd((Hyper)lr, momentum, weightDecay);

    /// <summary>Torch's Nesterov SGD with hyperparameters that may be tensors (<see cref="Hyper"/>, differentiable under <see cref="Differentiable"/>); every argument is given. Otherwise as the overload of doubles.</summary>
    public static IGradientTransformation NesterovSgd(Hyper lr, Hyper momentum, Hyper weightDecay) => Define("nesterov_sgd", Sgd(lr, momentum, 0, weightDecay, nesterov: true), ("lr", lr), ("momentum", momentum), ("weightDecay", weightDecay));
}
