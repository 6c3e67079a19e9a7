using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;
using Lookahead.Kernels;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>How <see cref="Transforms.Cautious"/> rescales the entries its mask keeps, per tensor of n entries with k kept.</summary>
public enum CautiousScaling
{
    /// <summary>× 1/max(k/n, floor): C-AdamW (C-Optim's <c>c_adamw.py</c>); all kept: unchanged.</summary>
    MeanWithFloor,
    /// <summary>× n/(k + 1): C-Lion (C-Optim's <c>c_lion.py</c>); all kept still scales by n/(n + 1).</summary>
    CountPlusOne,
    /// <summary>No rescaling: the masked update only.</summary>
    None,
}

public static partial class Transforms
{
    /// <summary>
    /// Cautious masking (Liang et al. 2024, "Cautious Optimizers: Improving Training with One Line of Code";
    /// kyleliang919/C-Optim): run <paramref name="direction"/> on the update, then zero each entry whose sign
    /// disagrees with the incoming gradient (keep where u·g &gt; 0) and rescale the kept entries per tensor as
    /// <paramref name="scaling"/> says. <paramref name="direction"/> is the descent direction before the negative
    /// learning rate (Adam's preconditioned momentum, Lion's sign), so that agreeing means u·g &gt; 0; its state is
    /// kept unmasked. C-AdamW and C-Lion are <see cref="Optim.CautiousAdamW"/> and <see cref="Optim.CautiousLion"/>.
    /// </summary>
    /// <remarks>
    /// The kept count is the masked update's non-zero count, so the step is the mask in the pass that runs the
    /// direction, a count, and a scaling pass (under the fused executor: the direction's traffic, one more read of
    /// the update, and one more read and write of it). On the TorchSharp executor the per-tensor counts reach the
    /// host once per step. One difference from C-Optim, where the direction has a NaN entry: the official mask is 0
    /// there and is not counted; here the masked entry is NaN·0 = NaN (as in C-Optim) and is counted as kept, which
    /// changes that tensor's factor, whose update is NaN in both.
    /// </remarks>
    /// <param name="direction">The masked transform.</param>
    /// <param name="scaling">How the kept entries are rescaled; default <see cref="CautiousScaling.MeanWithFloor"/>.</param>
    /// <param name="floor">The floor of the kept fraction for <see cref="CautiousScaling.MeanWithFloor"/> (C-AdamW's 1e-3); &gt; 0.</param>
    public static IGradientTransformation Cautious(IGradientTransformation direction, CautiousScaling scaling = CautiousScaling.MeanWithFloor, double floor = 1e-3)
    {
        Check.NotNull(direction, nameof(direction));
        if (!Enum.IsDefined(scaling)) throw new ArgumentOutOfRangeException(nameof(scaling), scaling, "not a CautiousScaling");
        return new CautiousTransform(direction, scaling, Check.Positive(floor, nameof(floor)));
    }
}

sealed class CautiousTransform(IGradientTransformation direction, CautiousScaling scaling, double floor) : DeclaredTransform, IComposite, IReducing, Kernels.IFusable
{
    readonly (StateLayout Layout, Slot<IOptState> Inner) _state = Declared(direction);

    static (StateLayout, Slot<IOptState>) Declared(IGradientTransformation direction)
    {
        var layout = new StateLayout("cautious");
        var inner = layout.Child("inner", direction.Init);
        return (layout.Seal(), inner);
    }

    protected override StateLayout Declare() => _state.Layout;

    public IEnumerable<IGradientTransformation> Children => new[] { direction };

    public bool FusesAlone => true;

    // Kept entries are exactly the masked update's non-zero ones (u·g > 0 needs u ≠ 0).
    static readonly Reduction[] KeptCount = { new(ReductionKind.NonZeroCount, ReductionScope.PerTensor, "updates") };

    /// <summary>Per tensor, the non-zero count of the masked update: the number of entries kept.</summary>
    public IReadOnlyList<Reduction> Reductions => scaling == CautiousScaling.None ? Array.Empty<Reduction>() : KeptCount;

    public override Spec Spec => Spec.Of("cautious").With("scaling", scaling.ToString()).With("floor", floor).With("direction", direction);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        // The incoming gradient, kept (scratch laid out like the update) until the mask is applied, and given back
        // before the count, so that under the fused executor it lives in per-chunk scratch only.
        var gradients = Buffers.RentLike(updates);
        IOptState inner;
        try
        {
            Kernels.Elementwise.Run(default(Kernels.CopyOutKernel), Buffers.Groups(updates, gradients), (Tensor[][]?)null);
            inner = InPlace.Step(direction, updates, state.Get(_state.Inner), parameters, context);
            Kernels.Elementwise.Run(default(MaskKernel), Buffers.Groups(updates, gradients), (Tensor[][]?)null);
        }
        finally
        {
            Buffers.ReturnLike(gradients);
        }
        if (scaling != CautiousScaling.None)
        {
            var kept = KeptPerTensor(updates);
            for (int i = 0; i < updates.Count; i++)
            {
                long n = updates.Tensors[i].numel();
                if (n == 0) continue;
                double factor = Factor(kept[i], n);
                if (factor != 1) Kernels.Elementwise.Run(new Kernels.ScaleKernel(factor), new[] { new[] { updates.Tensors[i] } }, (Tensor[][]?)null);
            }
        }
        return state.With(_state.Inner, inner);
    }

    /// <summary>
    /// The number kept per tensor, on the host: from the fused executor's reduction, else counted by torch on the
    /// tensors' device and brought to the host together (one synchronisation per step).
    /// </summary>
    static double[] KeptPerTensor(TensorTree masked)
    {
        var perTensor = new Tensor[masked.Count][];
        for (int i = 0; i < masked.Count; i++) perTensor[i] = new[] { masked.Tensors[i] };
        if (Kernels.Elementwise.Reduce(ReductionKind.NonZeroCount, perTensor) is { } fused) return fused;
        if (masked.Count == 0) return Array.Empty<double>();
        using var scope = NewDisposeScope();
        var counts = Reducer.PerTensor(ReductionKind.NonZeroCount, masked);
        return stack(counts.Select(t => t.cpu()).ToArray()).data<double>().ToArray();
    }

    /// <summary>
    /// The kept entries' factor from k of n kept, as C-Optim computes the scaled mask's value: 1 / max(k/n, floor), or
    /// n / (k + 1).
    /// </summary>
    double Factor(double k, long n) => scaling switch
    {
        CautiousScaling.MeanWithFloor => 1.0 / Math.Max(k / n, floor),
        CautiousScaling.CountPlusOne => n / (k + 1),
        _ => 1.0,
    };

    /// <summary>Over (u, the kept gradient g): g ← [u·g &gt; 0] (1 or 0), then u ← u·g.</summary>
    readonly struct MaskKernel : Kernels.IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray> => ops.MulBy(a[0], ops.Agree(a[1], a[0]));
    }
}
