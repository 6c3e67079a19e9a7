using System;
using System.Linq;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>Settings of <see cref="Transforms.ScaleByFactoredRms"/> (Adafactor's second moment).</summary>
public sealed record FactoredRmsOptions
{
    /// <summary>c ≥ 0 of the decay schedule β̂ₜ = 1 − t^(−c) (the paper's 0.8; HF/fairseq write it as <c>decay_rate = -0.8</c>). At t = 1, β̂ = 0: the first step's statistics are the first gradient's alone.</summary>
    public double DecayExponent { get; init; } = 0.8;
    /// <summary>ε₁ ≥ 0 added to every squared gradient before it is averaged; default 1e-30.</summary>
    public double Epsilon1 { get; init; } = 1e-30;
    /// <summary>Factor the second moment of tensors with two or more dimensions; default true. False: a full second moment for every tensor.</summary>
    public bool Factored { get; init; } = true;
    /// <summary>Factor a tensor only if both of its last two dimensions are at least this (Optax uses 128); default 0: every tensor with two or more dimensions is factored (the paper, tensor2tensor and HF).</summary>
    public int MinDimSizeToFactor { get; init; }
}

public static partial class Transforms
{
    /// <summary>
    /// Adafactor's second moment (Shazeer &amp; Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory
    /// Cost", Algorithms 4 and 5): at step t = 1, 2, …, with β̂ₜ = 1 − t^(−c) and s = u² + ε₁, a tensor factored over
    /// its last two dimensions (n × m, any leading dimensions batched) keeps the row means R ← β̂R + (1 − β̂)·mean₋₁(s)
    /// and the column means C ← β̂C + (1 − β̂)·mean₋₂(s), and u ← u / √V̂ with V̂ = R·Cᵀ / mean(R) (n + m numbers
    /// instead of n·m); any other tensor keeps the full V ← β̂V + (1 − β̂)·s and u ← u / √V.
    /// </summary>
    public static IGradientTransformation ScaleByFactoredRms(FactoredRmsOptions? options = null)
    {
        options ??= new FactoredRmsOptions();
        Check.NonNegative(options.DecayExponent, "DecayExponent");
        Check.NonNegative(options.Epsilon1, "Epsilon1");
        if (options.MinDimSizeToFactor < 0) throw new ArgumentOutOfRangeException("MinDimSizeToFactor", options.MinDimSizeToFactor, "MinDimSizeToFactor must be ≥ 0");
        return new FactoredRmsTransform(options);
    }
}

sealed class FactoredRmsTransform(FactoredRmsOptions o) : DeclaredTransform
{
    readonly (StateLayout Layout, Slot<long> Count, Slot<Tensor> Rows, Slot<Tensor> Columns, Slot<Tensor> Full) _state = Declared(o);

    static (StateLayout, Slot<long>, Slot<Tensor>, Slot<Tensor>, Slot<Tensor>) Declared(FactoredRmsOptions o)
    {
        var layout = new StateLayout("factored_rms");
        // Steps so far; the row means of every factored tensor, their column means, and the full second moment of
        // every other tensor, each flat and in parameter order (a tensor takes room only in the slots it uses).
        var count = layout.Integer("count");
        Func<TensorTree, Tensor> Flat(Func<long[], long> size) => p => zeros(new[] { p.Tensors.Sum(t => size(t.shape)) },
            dtype: p.Count > 0 ? p.Tensors[0].dtype : ScalarType.Float64, device: p.Count > 0 ? p.Tensors[0].device : CPU);
        var rows = layout.Tensor("rows", Flat(s => IsFactored(o, s) ? Lead(s) * s[^2] : 0));
        var columns = layout.Tensor("columns", Flat(s => IsFactored(o, s) ? Lead(s) * s[^1] : 0));
        var full = layout.Tensor("nu", Flat(s => IsFactored(o, s) ? 0 : s.Aggregate(1L, (a, b) => a * b)));
        return (layout.Seal(), count, rows, columns, full);
    }

    static bool IsFactored(FactoredRmsOptions o, long[] shape) =>
        o.Factored && shape.Length >= 2 && shape[^1] >= o.MinDimSizeToFactor && shape[^2] >= o.MinDimSizeToFactor;

    /// <summary>The product of the dimensions before the last two.</summary>
    static long Lead(long[] shape) => shape.Take(shape.Length - 2).Aggregate(1L, (a, b) => a * b);

    protected override StateLayout Declare() => _state.Layout;

    public override Spec Spec => Spec.FromRecord("factored_rms", o);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long t = state.Get(_state.Count) + 1;
        double beta = 1 - Math.Pow(t, -o.DecayExponent);
        Tensor rows = state.Get(_state.Rows), columns = state.Get(_state.Columns), full = state.Get(_state.Full);
        long rowAt = 0, columnAt = 0, fullAt = 0;
        for (int i = 0; i < updates.Count; i++)
        {
            using var scope = NewDisposeScope();
            Tensor u = updates.Tensors[i];
            var shape = u.shape;
            var squared = u.square().add_(o.Epsilon1);
            if (IsFactored(o, shape))
            {
                long lead = Lead(shape), n = shape[^2], m = shape[^1];
                var lead_shape = shape.Take(shape.Length - 2).ToArray();
                var r = rows.narrow(0, rowAt, lead * n).view(lead_shape.Append(n).ToArray());
                var c = columns.narrow(0, columnAt, lead * m).view(lead_shape.Append(m).ToArray());
                rowAt += lead * n;
                columnAt += lead * m;
                r.mul_(beta).add_(squared.mean(new long[] { -1 }), 1 - beta);
                c.mul_(beta).add_(squared.mean(new long[] { -2 }), 1 - beta);
                var rowFactor = r.div(r.mean(new long[] { -1 }, keepdim: true)).rsqrt_().unsqueeze(-1);
                var columnFactor = c.rsqrt().unsqueeze(-2);
                u.mul_(rowFactor.mul(columnFactor));
            }
            else
            {
                long size = u.numel();
                var v = full.narrow(0, fullAt, size).view(shape);
                fullAt += size;
                v.mul_(beta).add_(squared, 1 - beta);
                u.mul_(v.rsqrt());
            }
        }
        return state.With(_state.Count, t);
    }
}
