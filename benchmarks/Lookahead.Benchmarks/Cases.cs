using System;
using System.Collections.Generic;
using System.Linq;
using Lookahead;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Benchmarks;

/// <summary>The optimizers measured, each with the number of parameter-sized passes its minimal memory traffic needs.</summary>
public static class Cases
{
    /// <summary>Name, factory, and the minimal traffic in copy_ equivalents (a copy_ reads and writes one buffer).</summary>
    public static readonly (string Name, Func<IGradientTransformation> Make, double Traffic, bool NeedsLoss)[] Elementwise =
    {
        // Adam/AdamW read p, g, m, v and write p, m, v: 7 buffer passes = 3.5 copies.
        ("Adam", () => Optim.Adam(1e-3), 3.5, false),
        ("AdamW", () => Optim.AdamW(1e-3), 3.5, false),
        // MARS-AdamW also reads and writes g_prev: 9 passes = 4.5 copies.
        ("MARS-AdamW", () => Optim.Mars(3e-3, optimize1d: true), 4.5, false),
        // ARSG also reads and writes v_max: 9 passes.
        ("ARSG", () => Optim.Arsg(1e-3), 4.5, false),
        // MoMo-Adam: Adam's traffic plus the dot products ⟨θ, g⟩, ⟨θ, m⟩, ⟨m, m/D⟩ (3 more reads of pairs).
        ("MoMo-Adam", () => Optim.MomoAdam(1e-2), 3.5, true),
        // Lion reads p, g, m and writes p, m: 2.5 copies.
        ("Lion", () => Optim.Lion(1e-4), 2.5, false),
    };

    /// <summary>The matrix optimizers (all parameters matrices).</summary>
    public static readonly (string Name, Func<IGradientTransformation> Make)[] Matrix =
    {
        ("Muon", () => Optim.Muon()),
        ("MARS-M", () => Optim.MarsM(isMatrixParameter: _ => true)),
    };

    /// <summary>Parameters of one dtype on the CPU: <paramref name="count"/> matrices of rows × cols, float32.</summary>
    public static TensorTree Parameters(int count, long rows, long cols, int seed = 1)
    {
        manual_seed(seed);
        return TensorTree.Of(Enumerable.Range(0, count).Select(i => ($"layer{i:D4}.weight", randn(rows, cols).mul_(0.02).DetachFromDisposeScope())).ToArray());
    }

    /// <summary>A runner over <paramref name="parameters"/> whose gradient buffers hold random gradients.</summary>
    public static Runner Runner(IGradientTransformation tx, TensorTree parameters)
    {
        var runner = new Runner(tx, parameters, new RunnerOptions { KeepGradients = false, VerifyGradientBinding = false });
        using var noGrad = no_grad();
        foreach (var g in runner.Gradients.Tensors) { using var r = randn_like(g); g.copy_(r.mul_(0.01)); }
        return runner;
    }

    public static readonly StepContext WithLoss = StepContext.Empty.WithLoss(1.0);
}
