using System;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Adafactor's update clipping (Shazeer &amp; Stern 2018, §6): per tensor, u ← u / max(1, RMS(u)/d), with
    /// RMS(u) = ‖u‖₂/√(number of elements). Stateless.
    /// </summary>
    /// <param name="threshold">d &gt; 0; the paper's 1.</param>
    public static IGradientTransformation ClipByBlockRms(double threshold = 1.0) =>
        new ClipByBlockRmsTransform(Check.Positive(threshold, nameof(threshold)));

    /// <summary>
    /// Adafactor's relative step (Shazeer &amp; Stern 2018, §8): per tensor, u ← max(ε₂, RMS(θ))·u, so the step is
    /// relative to the scale of the parameters it moves (θ as the step receives it: before this step's update). Stateless.
    /// </summary>
    /// <param name="minScale">ε₂ ≥ 0; the paper's 1e-3.</param>
    public static IGradientTransformation ScaleByParameterBlockRms(double minScale = 1e-3) =>
        new ScaleByParameterBlockRmsTransform(Check.NonNegative(minScale, nameof(minScale)));

    /// <summary>
    /// Replaces the updates by the parameters: u ← θ. Stateless. With <c>Mix</c> it adds a transformed copy of
    /// the parameters to an update: <c>Mix(Identity(), ReplaceWithParameters(), _ =&gt; λ)</c> is <c>AddDecayedWeights</c>(λ),
    /// and Adafactor's weight decay scaled by its step size puts the step's scalings after it.
    /// </summary>
    public static IGradientTransformation ReplaceWithParameters() => ReplaceWithParametersTransform.Instance;

    internal static Tensor BlockRms(Tensor x) => x.norm().div_(Math.Sqrt(Math.Max(1, x.numel())));
}

sealed class ClipByBlockRmsTransform(double threshold) : Transform<EmptyState>
{
    public override Spec Spec => Spec.Of("clip_by_block_rms").With("threshold", threshold);
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        foreach (var u in updates.Tensors)
        {
            using var scope = NewDisposeScope();
            u.div_(Transforms.BlockRms(u).div_(threshold).clamp_min_(1));
        }
        return state;
    }
}

sealed class ScaleByParameterBlockRmsTransform(double minScale) : Transform<EmptyState>
{
    public override Spec Spec => Spec.Of("scale_by_parameter_block_rms").With("min_scale", minScale);
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        for (int i = 0; i < updates.Count; i++)
        {
            using var scope = NewDisposeScope();
            Tensor u = updates.Tensors[i], theta = parameters.Tensors[i];
            // In the update's precision (a bfloat16 parameter's RMS in bfloat16 would round the step size to 8 bits).
            u.mul_(Transforms.BlockRms(theta.dtype == u.dtype ? theta : theta.to(u.dtype)).clamp_min_(minScale));
        }
        return state;
    }
}

sealed class ReplaceWithParametersTransform : Transform<EmptyState>
{
    public static readonly ReplaceWithParametersTransform Instance = new();
    public override Spec Spec => Spec.Of("replace_with_parameters");
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        for (int i = 0; i < updates.Count; i++) updates.Tensors[i].copy_(parameters.Tensors[i]);
        return state;
    }
}
