using System;
using System.Collections.Generic;
using System.Linq;
using static Lookahead.Transforms;

namespace Lookahead;

/// <summary>How <see cref="Optim.Adafactor"/> applies weight decay λ.</summary>
public enum AdafactorWeightDecay
{
    /// <summary>θ ← θ − αₜλθ with the step's own size αₜ (its learning rate times the parameter scale), applied to
    /// θ before the step: HF's and fairseq's <c>weight_decay</c>.</summary>
    ScaledByStep,
    /// <summary>θ ← θ − λθ, λ absolute per step, added after momentum: Optax's <c>weight_decay_rate</c>.</summary>
    Decoupled,
}

/// <summary>Adafactor's step-size schedules.</summary>
public static class AdafactorSchedule
{
    /// <summary>
    /// The relative step ρ(t) = min(10⁻², 1/√t) (Shazeer &amp; Stern 2018, §8), or with <paramref name="warmupInit"/>
    /// min(10⁻⁶·t, 1/√t) (HF's <c>warmup_init</c>).
    /// </summary>
    public static Func<long, double> RelativeStep(bool warmupInit = false) =>
        warmupInit ? t => Math.Min(1e-6 * t, 1 / Math.Sqrt(t)) : t => Math.Min(1e-2, 1 / Math.Sqrt(t));
}

public static partial class Optim
{
    /// <summary>
    /// Adafactor (Shazeer &amp; Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost"), as the
    /// authors' tensor2tensor code and HF/fairseq run it: u = g/√V̂ with V̂ the factored second moment
    /// (<see cref="Transforms.ScaleByFactoredRms"/>), clipped to u/max(1, RMS(u)/d) (<see cref="Transforms.ClipByBlockRms"/>),
    /// times αₜ = ρ(t)·max(ε₂, RMS(θ)) (<see cref="Transforms.ScaleByParameterBlockRms"/>, <see cref="Transforms.ScaleBySchedule(System.Func{long, double}, string)"/>),
    /// optionally averaged m ← β₁m + (1 − β₁)u, then θ ← θ − u (with weight decay as <paramref name="weightDecayScaling"/> says).
    /// </summary>
    /// <param name="learningRate">ρ(t) at step t = 1, 2, …, finite; null: the relative step <see cref="AdafactorSchedule.RelativeStep"/>() = min(10⁻², 1/√t).</param>
    /// <param name="decayExponent">c ≥ 0 of β̂₂ₜ = 1 − t^(−c); default 0.8.</param>
    /// <param name="eps1">ε₁ ≥ 0 added to squared gradients; default 1e-30.</param>
    /// <param name="eps2">ε₂ ≥ 0, the floor of the parameter scale; default 1e-3.</param>
    /// <param name="clipThreshold">d &gt; 0 of the update clipping u/max(1, RMS(u)/d); null: no clipping. Default 1.</param>
    /// <param name="multiplyByParameterScale">Multiply the step by max(ε₂, RMS(θ)) (HF's <c>scale_parameter</c>); default true.</param>
    /// <param name="factored">Factor the second moment of tensors with two or more dimensions (over their last two); default true.</param>
    /// <param name="minDimSizeToFactor">Factor only where both of the last two dimensions are at least this (Optax: 128); default 0 (always).</param>
    /// <param name="beta1">β₁ ∈ [0, 1) of an EMA of the scaled, clipped update (no bias correction, from zero); null: no first moment (the paper's default).</param>
    /// <param name="weightDecay">λ ≥ 0; default 0.</param>
    /// <param name="weightDecayScaling">How λ is applied; default <see cref="AdafactorWeightDecay.ScaledByStep"/> (HF).</param>
    public static IGradientTransformation Adafactor(Func<long, double>? learningRate = null, double decayExponent = 0.8, double eps1 = 1e-30, double eps2 = 1e-3,
        double? clipThreshold = 1.0, bool multiplyByParameterScale = true, bool factored = true, int minDimSizeToFactor = 0, double? beta1 = null,
        double weightDecay = 0, AdafactorWeightDecay weightDecayScaling = AdafactorWeightDecay.ScaledByStep)
    {
        Check.NonNegative(decayExponent, nameof(decayExponent));
        Check.NonNegative(eps1, nameof(eps1));
        Check.NonNegative(eps2, nameof(eps2));
        if (minDimSizeToFactor < 0) throw new ArgumentOutOfRangeException(nameof(minDimSizeToFactor), minDimSizeToFactor, "minDimSizeToFactor must be ≥ 0");
        Check.NonNegative(weightDecay, nameof(weightDecay));
        if (clipThreshold is double d) Check.Positive(d, nameof(clipThreshold));
        if (beta1 is double b1) Check.UnitOpen(b1, nameof(beta1));
        if (!Enum.IsDefined(weightDecayScaling)) throw new ArgumentOutOfRangeException(nameof(weightDecayScaling), weightDecayScaling, "not a defined AdafactorWeightDecay");
        var rate = learningRate ?? AdafactorSchedule.RelativeStep();
        IGradientTransformation[] StepSize() => multiplyByParameterScale
            ? new[] { ScaleByParameterBlockRms(eps2), ScaleBySchedule(rate, "step_size") }
            : new[] { ScaleBySchedule(rate, "step_size") };
        var stages = new List<IGradientTransformation>
        {
            ScaleByFactoredRms(new FactoredRmsOptions { DecayExponent = decayExponent, Epsilon1 = eps1, Factored = factored, MinDimSizeToFactor = minDimSizeToFactor }),
        };
        if (clipThreshold is double threshold) stages.Add(ClipByBlockRms(threshold));
        bool scaledDecay = weightDecay > 0 && weightDecayScaling == AdafactorWeightDecay.ScaledByStep;
        if (beta1 is double momentumDecay)
        {
            stages.AddRange(StepSize());
            var momentum = Ema(momentumDecay);
            // αₜλθ beside the averaged update: the parameters, scaled like the step was.
            stages.Add(scaledDecay ? Mix(momentum, Chain(new[] { ReplaceWithParameters() }.Concat(StepSize())), _ => weightDecay, "momentum_and_scaled_decay") : momentum);
        }
        else
        {
            // Without momentum the step's scaling distributes over u + λθ.
            if (scaledDecay) stages.Add(AddDecayedWeights(weightDecay));
            stages.AddRange(StepSize());
        }
        if (weightDecay > 0 && weightDecayScaling == AdafactorWeightDecay.Decoupled) stages.Add(AddDecayedWeights(weightDecay));
        stages.Add(Scale(-1));
        return Define("adafactor", Chain(stages), ("learningRate", learningRate), ("decayExponent", decayExponent), ("eps1", eps1), ("eps2", eps2), ("clipThreshold", clipThreshold),
            ("multiplyByParameterScale", multiplyByParameterScale), ("factored", factored), ("minDimSizeToFactor", minDimSizeToFactor), ("beta1", beta1),
            ("weightDecay", weightDecay), ("weightDecayScaling", weightDecayScaling));
    }
}
