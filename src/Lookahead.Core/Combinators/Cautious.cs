using System;
using System.Collections.Generic;
using System.Linq;
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

sealed class CautiousTransform(IGradientTransformation direction, CautiousScaling scaling, double floor) : DeclaredTransform, IComposite
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

    public override Spec Spec => Spec.Of("cautious").With("scaling", scaling.ToString()).With("floor", floor).With("direction", direction);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        // The incoming gradient, kept for the mask (freed here; the child's state is its own).
        var gradients = updates.Tensors.Select(u => u.clone()).ToArray();
        try
        {
            var inner = InPlace.Step(direction, updates, state.Get(_state.Inner), parameters, context);
            for (int i = 0; i < updates.Count; i++)
            {
                using var scope = NewDisposeScope();
                var u = updates.Tensors[i];
                var keep = u.mul(gradients[i]).gt_(0).to(u.dtype);
                switch (scaling)
                {
                    case CautiousScaling.MeanWithFloor:
                    {
                        var fraction = keep.mean().clamp_min_(floor);
                        keep.div_(fraction);
                        break;
                    }
                    case CautiousScaling.CountPlusOne:
                    {
                        // Both factors from the mask before it is scaled.
                        var kept = keep.sum().add_(1.0);
                        keep.mul_((double)keep.numel()).div_(kept);
                        break;
                    }
                }
                u.mul_(keep);
            }
            return state.With(_state.Inner, inner);
        }
        finally
        {
            foreach (var g in gradients) g.Dispose();
        }
    }
}
