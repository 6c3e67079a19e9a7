using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using Lookahead;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Benchmarks;

/// <summary>
/// The quick check: every target of the performance brief measured as a ratio against a baseline run in the
/// same process (medians of repeated steps), one line per target: <c>target NAME ratio=X goal=Y met|not met</c>.
/// </summary>
public static class Quick
{
    static readonly List<string> Lines = new();
    static readonly CultureInfo C = CultureInfo.InvariantCulture;

    /// <summary>Median wall time of <paramref name="action"/> in milliseconds, after <paramref name="warmup"/> runs.</summary>
    public static double MedianMs(Action action, int warmup, int reps)
    {
        for (int i = 0; i < warmup; i++) action();
        var times = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            var sw = Stopwatch.StartNew();
            action();
            times[i] = sw.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return times[reps / 2];
    }

    static void Target(string name, double ratio, string op, double goal, string detail)
    {
        bool met = op == "<=" ? ratio <= goal : ratio >= goal;
        var line = string.Format(C, "target {0} ratio={1:0.00} goal={2}{3} {4}", name, ratio, op == "<=" ? "<=" : ">=", goal, met ? "met" : "not met");
        Console.WriteLine($"{line}    ({detail})");
        Lines.Add(line);
    }

    static void Info(string text) => Console.WriteLine("info " + text);

    static double StepMs(IGradientTransformation tx, TensorTree parameters, bool needsLoss, int warmup = 3, int reps = 11)
    {
        using var runner = Cases.Runner(tx, parameters);
        var ctx = needsLoss ? Cases.WithLoss : StepContext.Empty;
        return MedianMs(() => runner.Step(ctx), warmup, reps);
    }

    /// <summary>Runs the quick check; <paramref name="matrices"/> is the number of 1024×1024 matrices for Muon and MARS-M.</summary>
    public static int Run(int matrices)
    {
        var total = Stopwatch.StartNew();
        Console.WriteLine($"machine: {Environment.ProcessorCount} logical cores, torch threads {get_num_threads()}, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, float32 on the CPU");
        const long rows = 10_000, cols = 1_000;     // 1 × 10M parameters
        long n = rows * cols;

        // The memory-traffic bound: copy_ of one parameter-sized buffer.
        double copyMs;
        using (var a = randn(n)) using (var b = randn(n)) copyMs = MedianMs(() => a.copy_(b), 3, 21);
        Info(string.Format(C, "copy_ of 10M float32 = {0:0.00} ms (the unit of the traffic ratios)", copyMs));

        var single = new Dictionary<string, double>();
        foreach (var (name, make, traffic, loss) in Cases.Elementwise)
        {
            using var scope = NewDisposeScope();
            var p = Cases.Parameters(1, rows, cols);
            double ms = StepMs(make(), p, loss);
            single[name] = ms;
            bool targeted = name is "Adam" or "AdamW" or "MARS-AdamW" or "ARSG";
            if (targeted) Target($"{name}-1x10M-vs-memory-traffic", ms / (traffic * copyMs), "<=", 2, string.Format(C, "{0:0.0} ms per step, minimal traffic {1} copies = {2:0.0} ms", ms, traffic, traffic * copyMs));
            else Info(string.Format(C, "{0} 1x10M: {1:0.0} ms per step = {2:0.00} x its minimal traffic ({3} copies)", name, ms, ms / (traffic * copyMs), traffic));
        }

        // torch.optim.Adam of TorchSharp on the same tensor, same process.
        {
            using var scope = NewDisposeScope();
            manual_seed(1);
            var w = new TorchSharp.Modules.Parameter(randn(rows, cols).mul_(0.02));
            w.grad = randn(rows, cols).mul_(0.01);
            var adam = optim.Adam(new[] { w }, 1e-3);
            double ms = MedianMs(() => adam.step(), 2, 7);
            Target("Adam-1x10M-vs-torch.optim.Adam", ms / single["Adam"], ">=", 10, string.Format(C, "torch.optim.Adam {0:0.0} ms, Lookahead {1:0.0} ms", ms, single["Adam"]));
            var adamw = optim.AdamW(new[] { w }, 1e-3);
            double msw = MedianMs(() => adamw.step(), 2, 7);
            Info(string.Format(C, "torch.optim.AdamW {0:0.0} ms vs Lookahead AdamW {1:0.0} ms: {2:0.0}x", msw, single["AdamW"], msw / single["AdamW"]));
        }

        // 1000 tensors of 10k.
        foreach (var (name, make, _, loss) in Cases.Elementwise)
        {
            if (name is not ("Adam" or "AdamW" or "MARS-AdamW" or "ARSG")) continue;
            using var scope = NewDisposeScope();
            var p = Cases.Parameters(1000, 100, 100);
            double ms = StepMs(make(), p, loss);
            Target($"{name}-1000x10k-vs-1x10M", ms / single[name], "<=", 1.5, string.Format(C, "{0:0.0} ms vs {1:0.0} ms", ms, single[name]));
        }

        // Steady state: tensors created per step and scratch memory, Adam on 1000 × 10k.
        {
            using var scope = NewDisposeScope();
            var p = Cases.Parameters(1000, 100, 100);
            using var runner = Cases.Runner(Optim.Adam(1e-3), p);
            for (int i = 0; i < 3; i++) runner.Step();
            var s = DisposeScopeManager.Statistics;
            long before = s.CreatedInScopeCount + s.CreatedOutsideScopeCount;
            for (int i = 0; i < 20; i++) runner.Step();
            double perStep = (s.CreatedInScopeCount + s.CreatedOutsideScopeCount - before) / 20.0;
            Target("Adam-new-tensors-per-step", perStep, "<=", 0, "tensors created per steady-state step (TorchSharp dispose-scope statistics)");
            long paramBytes = p.Tensors.Sum(t => t.numel() * t.ElementSize);
            Target("Adam-scratch-vs-parameter-bytes", (double)runner.Workspace.ScratchBytes / paramBytes, "<=", 1, "scratch beyond the state, in parameter-sized buffers");
        }

        // Newton–Schulz, 5 steps on 1024 × 1024, against its 15 products.
        {
            using var scope = NewDisposeScope();
            manual_seed(2);
            var m = randn(1024, 1024);
            var x = randn(1024, 1024); var y = randn(1024, 1024); var z = empty(1024, 1024);
            double products = MedianMs(() => { for (int i = 0; i < 15; i++) z.addmm_(x, y, 0, 1); }, 1, 5);
            var tree = TensorTree.Of(("w", m));
            using var runner = Cases.Runner(Transforms.Orthogonalise(), tree);
            double ns = MedianMs(() => runner.Step(), 1, 5);
            Target("NewtonSchulz-1024-vs-15-matmuls", ns / products, "<=", 1.2, string.Format(C, "{0:0.0} ms vs {1:0.0} ms", ns, products));
        }

        // Matrix optimizers on K matrices of 1024 × 1024: step time against K Newton–Schulz runs alone.
        {
            double nsAlone;
            using (var scope = NewDisposeScope())
            {
                using var runner = Cases.Runner(Transforms.Orthogonalise(), Cases.Parameters(matrices, 1024, 1024));
                nsAlone = MedianMs(() => runner.Step(), 1, 3);
            }
            foreach (var (name, make) in Cases.Matrix)
            {
                using var scope = NewDisposeScope();
                double ms = StepMs(make(), Cases.Parameters(matrices, 1024, 1024), false, 1, 3);
                Info(string.Format(C, "{0} on {1} x 1024^2: {2:0} ms per step = {3:0.00} x its Newton-Schulz alone ({4:0} ms)", name, matrices, ms, ms / nsAlone, nsAlone));
            }
        }

        // Linear growth: Adam steps per second from 1e5 to 1e8 parameters (one tensor).
        {
            var sizes = new long[] { 100_000, 1_000_000, 10_000_000, 100_000_000 };
            var ms = new double[sizes.Length];
            for (int k = 0; k < sizes.Length; k++)
            {
                using var scope = NewDisposeScope();
                var p = TensorTree.Of(("w", randn(sizes[k]).DetachFromDisposeScope()));
                ms[k] = StepMs(Optim.Adam(1e-3), p, false, 2, k == 3 ? 5 : 11);
                Info(string.Format(C, "Adam {0:0e0} parameters: {1:0.000} ms per step, {2:0.0} steps/s, {3:0.00} ns per parameter", sizes[k], ms[k], 1000 / ms[k], ms[k] * 1e6 / sizes[k]));
            }
            // Marginal cost per parameter between decades, 1e7 → 1e8 against 1e6 → 1e7 (1 = perfectly linear).
            double low = (ms[2] - ms[1]) / (sizes[2] - sizes[1]), high = (ms[3] - ms[2]) / (sizes[3] - sizes[2]);
            Target("Adam-linear-growth-1e6..1e8", high / low, "<=", 1.25, "marginal ms per parameter from 1e7 to 1e8 over that from 1e6 to 1e7");
        }

        Console.WriteLine($"quick check finished in {total.Elapsed.TotalSeconds:0} s");
        Console.WriteLine();
        foreach (var l in Lines) Console.WriteLine(l);
        return 0;
    }
}
