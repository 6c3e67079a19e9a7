using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// A weighted sum of two transforms of the same update: u ← A(u) + w(t)·B(u), at step t = 1, 2, …, each
    /// with its own state. AdEMAMix's numerator is Mix(EMA_β₁ debiased, EMA_β₃ slow, α(t)). B runs on a copy of
    /// the incoming update (scratch the step gives back).
    /// </summary>
    /// <param name="first">A.</param>
    /// <param name="second">B.</param>
    /// <param name="secondWeight">w(t), finite at every step.</param>
    /// <param name="name">Shown in <see cref="IGradientTransformation.Name"/>.</param>
    public static IGradientTransformation Mix(IGradientTransformation first, IGradientTransformation second, Func<long, double> secondWeight, string name = "mix")
    {
        Check.NotNull(secondWeight, nameof(secondWeight));
        return Mix(first, second, t => (Hyper)secondWeight(t), name);
    }

    /// <summary>The mix with a weight schedule whose values may be tensor hyperparameters (<see cref="Hyper"/>).</summary>
    internal static IGradientTransformation Mix(IGradientTransformation first, IGradientTransformation second, Func<long, Hyper> secondWeight, string name = "mix") =>
        new MixTransform(Check.NotNull(first, nameof(first)), Check.NotNull(second, nameof(second)), Check.NotNull(secondWeight, nameof(secondWeight)), name);
}

sealed class MixTransform(IGradientTransformation first, IGradientTransformation second, Func<long, Hyper> secondWeight, string name) : DeclaredTransform, IComposite, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    // Leaves: count, first/…, second/….
    readonly (StateLayout Layout, Slot<long> Count, Slot<IOptState> First, Slot<IOptState> Second) _state = Declared(first, second);

    static (StateLayout, Slot<long>, Slot<IOptState>, Slot<IOptState>) Declared(IGradientTransformation first, IGradientTransformation second)
    {
        var layout = new StateLayout("mix");
        var count = layout.Integer("count");
        var a = layout.Child("first", first.Init);
        var b = layout.Child("second", second.Init);
        return (layout.Seal(), count, a, b);
    }

    protected override StateLayout Declare() => _state.Layout;

    public IEnumerable<IGradientTransformation> Children => new[] { first, second };

    protected override string Label => name;

    public override Spec Spec => Spec.Of("mix").With("name", name).With("first", first).With("second", second).WithProbes("second_weight", t => secondWeight(t).Value);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long t = state.Get(_state.Count) + 1;
        Hyper w = secondWeight(t);
        if (!double.IsFinite(w.Value)) throw new InvalidOperationException($"{name}: the weight of the second transform is {w} at step {t}; it must be finite");
        // The copy of the incoming update is scratch laid out like it (so the fused executor runs B's kernels in the
        // same pass), given back here; the children's states are theirs (not in a dispose scope of this step).
        var copy = Buffers.RentLike(updates);
        try
        {
            var groups = Buffers.Groups(updates, copy);
            Kernels.Elementwise.Run(default(Kernels.CopyOutKernel), groups, (Tensor[][]?)null);
            var a = InPlace.Step(first, updates, state.Get(_state.First), parameters, context);
            var b = InPlace.Step(second, copy, state.Get(_state.Second), parameters, context);
            Kernels.Elementwise.Run(new AddWeighted(w), Buffers.Groups(updates, copy), (Tensor[][]?)null);
            return state.With(_state.Count, t).With(_state.First, a).With(_state.Second, b);
        }
        finally
        {
            Buffers.ReturnLike(copy);
        }
    }
}

/// <summary>u ← u + w·b over (u, b).</summary>
readonly struct AddWeighted(Hyper w) : Kernels.IKernel
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray> => Kernels.Coefficients.AddScaled(ops, a[0], a[1], w);
}
