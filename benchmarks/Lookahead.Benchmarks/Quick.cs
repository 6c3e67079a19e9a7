using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Lookahead;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Benchmarks;

/// <summary>Settings of the quick check (from the command line).</summary>
/// <param name="Matrices">The number of 1024 × 1024 matrices for Muon and MARS-M.</param>
/// <param name="Rounds">Interleaved rounds of the elementwise measurements (at least 5).</param>
public sealed record QuickOptions(int Matrices = 8, int Rounds = 7, string[]? Only = null);

/// <summary>
/// The quick check of the performance targets, one line per target: <c>target NAME ratio=X goal=Y met|not met</c>
/// followed by a detail in parentheses, and <c>info …</c> lines for everything else. Every ratio compares two
/// things measured in this process, in interleaved rounds (A, B, A, B, …) so that drift of a shared machine
/// affects both; each side is the median of its rounds.
/// </summary>
/// <remarks>
/// The unit of the elementwise targets is each optimizer's own <see cref="TrafficLoop"/>: a SIMD loop that
/// moves exactly the arrays that optimizer must read and write per step (derived from its state after one
/// step), the cost of a fused kernel with free arithmetic. copy_ is reported only as information.
/// </remarks>
public static class Quick
{
    static readonly List<string> Lines = new();
    static readonly CultureInfo C = CultureInfo.InvariantCulture;
    const long Rows = 10_000, Cols = 1_000, N = Rows * Cols;   // the 1 × 10M layout; 1000 × 10k has the same N

    // ---- output ----

    static void Target(string name, double ratio, string op, double goal, string detail)
    {
        bool met = op == "<=" ? ratio <= goal : ratio >= goal;
        var line = string.Format(C, "target {0} ratio={1:0.00} goal={2}{3} {4}", name, ratio, op, goal, met ? "met" : "not met");
        Console.WriteLine($"{line}    ({detail})");
        Lines.Add(line);
    }

    static void Info(string text) => Console.WriteLine("info " + text);

    static string F(string format, params object[] args) => string.Format(C, format, args);

    // ---- measurement ----

    /// <summary>One thing to time: <see cref="Timed"/> runs <see cref="Repeat"/> times per round after the untimed <see cref="Before"/>.</summary>
    sealed record Subject(string Name, Action Timed, Action? Before = null, int Repeat = 1);

    static double Median(double[] xs)
    {
        var s = xs.OrderBy(x => x).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    /// <summary>
    /// Runs <paramref name="warmup"/> untimed rounds, then <paramref name="rounds"/> timed ones; each round runs
    /// every subject once, in order. Returns each subject's median time in milliseconds (per repetition).
    /// </summary>
    static double[] Interleaved(int warmup, int rounds, params Subject[] subjects)
    {
        var times = subjects.Select(_ => new double[rounds]).ToArray();
        for (int r = -warmup; r < rounds; r++)
            for (int s = 0; s < subjects.Length; s++)
            {
                var subject = subjects[s];
                subject.Before?.Invoke();
                long start = Stopwatch.GetTimestamp();
                for (int k = 0; k < subject.Repeat; k++) subject.Timed();
                double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds / subject.Repeat;
                if (r >= 0) times[s][r] = ms;
            }
        return times.Select(Median).ToArray();
    }

    /// <summary>Median wall time of <paramref name="action"/> in milliseconds, after <paramref name="warmup"/> runs.</summary>
    public static double MedianMs(Action action, int warmup, int reps) => Interleaved(warmup, reps, new Subject("", action))[0];

    static double GigabytesPerSecond(long bytes, double ms) => bytes / (ms * 1e6);

    /// <summary>Available memory in bytes (MemAvailable of /proc/meminfo, else what the GC sees).</summary>
    static long AvailableBytes()
    {
        try
        {
            var line = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemAvailable:", StringComparison.Ordinal));
            if (line is not null) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], C) * 1024;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            if (line is not null) return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    // ---- the check ----

    /// <summary>Runs the quick check; returns the process exit code (0: it ran; targets not met do not fail it).</summary>
    public static int Run(QuickOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int rounds = Math.Max(5, options.Rounds);
        var total = Stopwatch.StartNew();
        Machine();
        if (options.Only is { Length: > 0 } only)
        {
            // A subset of the elementwise optimizers against their traffic loops, on 1 × 10M only.
            var chosen = Cases.Elementwise.Where(c => only.Contains(c.Name, StringComparer.OrdinalIgnoreCase)).ToArray();
            if (chosen.Length != only.Length)
                throw new ArgumentException($"--only names optimizers of the elementwise list: {string.Join(", ", Cases.Elementwise.Select(c => c.Name))}");
            ElementwiseVsTraffic("1x10M", () => Cases.Parameters(1, Rows, Cols), chosen, rounds);
            foreach (var l in Lines) Console.WriteLine(l);
            return 0;
        }
        var adamStep = ElementwiseVsTraffic("1x10M", () => Cases.Parameters(1, Rows, Cols), Cases.Elementwise, rounds);
        ElementwiseVsTraffic("1000x10k", () => Cases.Parameters(1000, 100, 100), Cases.Elementwise.Where(c => c.BothLayouts).ToArray(), rounds);
        MixedPrecisionVsTraffic(rounds);
        double lookaheadAdam = VersusTorchSharp(rounds);
        VersusPyTorch(lookaheadAdam);
        Threads(rounds);
        SteadyState();
        NewtonSchulz();
        MatrixOptimizers(options.Matrices);
        LinearGrowth();
        Console.WriteLine($"quick check finished in {total.Elapsed.TotalSeconds:0} s");
        if (total.Elapsed.TotalMinutes > 5) Info("the run took longer than its 5-minute budget (a shared or loaded machine slows every section alike)");
        Console.WriteLine();
        foreach (var l in Lines) Console.WriteLine(l);
        return 0;
    }

    /// <summary>The machine, the runner options in use, and copy_ of 10M floats (information only).</summary>
    static void Machine()
    {
        Console.WriteLine(F("machine: {0} logical cores ({1}), torch threads {2}, {3:0.0} GiB available, {4}, .NET {5}, Vector256 {6}; float32 on the CPU",
            Environment.ProcessorCount, CpuModel(), get_num_threads(), AvailableBytes() / (double)(1L << 30), RuntimeInformation.OSDescription,
            Environment.Version, Vector256.IsHardwareAccelerated ? "accelerated" : "NOT accelerated (software fallback)"));
        Info($"runner options: {Cases.Options()}; thread option: {Cases.ThreadOption?.Name ?? "none (torch threads only)"}");
        using var scope = NewDisposeScope();
        using var a = randn(N);
        using var b = randn(N);
        double copyMs = MedianMs(() => a.copy_(b), 3, 21);
        Info(F("copy_ of 10M float32 = {0:0.00} ms ({1:0.0} GB/s counting one read and one write; information only, not a unit)",
            copyMs, GigabytesPerSecond(2 * N * sizeof(float), copyMs)));
    }

    /// <summary>
    /// Each optimizer against its own traffic loop: one step first (so that every state slot exists), its
    /// traffic derived from that state, then rounds of (loop on 2 threads, loop on 1 thread, step). The unit
    /// is the faster of the two loops. Returns Adam's step time.
    /// </summary>
    static double ElementwiseVsTraffic(string layout, Func<TensorTree> parameters, OptimizerCase[] cases, int rounds)
    {
        double adam = double.NaN;
        foreach (var c in cases)
        {
            using var scope = NewDisposeScope();
            using var step = new TimedRunner(c.Make(), parameters(), c.NeedsLoss);
            step.Refresh();
            step.Step();
            var (traffic, slots) = Cases.TrafficOf(step.Runner, c);
            using var loop = new TrafficLoop(traffic, N);
            // Five warm-up rounds (steady state, as for torch.optim below): the first case of the process otherwise
            // measures the machine settling (fresh pages, the JIT's first tiers of the runner's own code).
            var ms = Interleaved(5, rounds,
                new Subject("loop, 2 threads", () => loop.Run(2)),
                new Subject("loop, 1 thread", () => loop.Run(1)),
                new Subject("step", step.Step, step.Refresh));
            double unit = Math.Min(ms[0], ms[1]), ratio = ms[2] / unit;
            if (c.Name == "Adam") adam = ms[2];
            long bytes = traffic.Bytes(N);
            if (layout == "1x10M")
                Info(F("{0} moves per step: g (read); p{1} (read+write){2}: {3}, {4:0} MB",
                    c.Name, string.Concat(slots.Select(s => ", " + s)),
                    c.Reads.Length > 0 ? $"; a reduction pass reads {string.Join(", ", c.Reads)} ({c.Reduction})" : "", traffic, bytes / 1e6));
            string detail = F("step {0:0.0} ms; traffic loop {1:0.0} ms on 2 threads, {2:0.0} ms on 1 ({3:0.0} GB/s at the faster); {4}{5}",
                ms[2], ms[0], ms[1], GigabytesPerSecond(bytes, unit), traffic, layout == "1x10M" ? "" : ", flat as the runner lays them out");
            if (double.IsNaN(c.Goal)) Info(F("{0}-{1} step = {2:0.00} x its traffic loop ({3})", c.Name, layout, ratio, detail));
            else Target($"{c.Name}-{layout}-vs-traffic-loop", ratio, "<=", c.Goal, detail);
        }
        return adam;
    }

    /// <summary>
    /// bfloat16 parameters with float32 state (the runner's default <see cref="StatePrecision.Float32"/>) against their
    /// own traffic loop: g and p in bfloat16 (2 bytes each way), the state slots in float32, on 1 × 10M.
    /// </summary>
    static void MixedPrecisionVsTraffic(int rounds)
    {
        foreach (var c in Cases.Elementwise.Where(x => x.Name is "Adam" or "AdamW"))
        {
            using var scope = NewDisposeScope();
            using var step = new TimedRunner(c.Make(), Cases.Parameters(1, Rows, Cols).Map(t => t.to(ScalarType.BFloat16).DetachFromDisposeScope()));
            step.Step();
            var (traffic, slots) = Cases.TrafficOf(step.Runner, c);
            traffic = traffic with { NarrowReadOnly = 1, NarrowReadWrite = 1 };
            using var loop = new TrafficLoop(traffic, N);
            var ms = Interleaved(5, rounds,
                new Subject("loop, 2 threads", () => loop.Run(2)),
                new Subject("loop, 1 thread", () => loop.Run(1)),
                new Subject("step", step.Step, step.Refresh));
            double unit = Math.Min(ms[0], ms[1]);
            long bytes = traffic.Bytes(N);
            Target($"{c.Name}-bf16-1x10M-vs-traffic-loop", ms[2] / unit, "<=", 1.3,
                F("bfloat16 p and g, float32 {0} ({1} executor); step {2:0.0} ms; traffic loop {3:0.0} ms on 2 threads, {4:0.0} ms on 1 ({5:0.0} GB/s at the faster); {6}, {7:0} MB",
                    string.Join(", ", slots), step.Runner.Executor, ms[2], ms[0], ms[1], GigabytesPerSecond(bytes, unit), traffic, bytes / 1e6));
        }
    }

    /// <summary>
    /// TorchSharp's own torch.optim against Lookahead's equivalent on one 10M tensor, both in steady state
    /// (5 warm-up steps), interleaved. Adam is a target, the others information. Returns Lookahead Adam's time.
    /// </summary>
    static double VersusTorchSharp(int rounds)
    {
        var pairs = new (string Name, Func<IGradientTransformation> Lookahead, Func<IEnumerable<TorchSharp.Modules.Parameter>, optim.Optimizer> Torch)[]
        {
            ("Adam", () => Optim.Adam(1e-3), ps => optim.Adam(ps, 1e-3)),
            ("AdamW", () => Optim.AdamW(1e-3, weightDecay: 1e-2), ps => optim.AdamW(ps, 1e-3, weight_decay: 1e-2)),
            ("SGD-momentum", () => Optim.Sgd(1e-2, momentum: 0.9), ps => optim.SGD(ps, 1e-2, momentum: 0.9)),
            ("RMSprop", () => Optim.RmsProp(1e-2), ps => optim.RMSProp(ps, 1e-2)),
            ("Adagrad", () => Optim.Adagrad(1e-2), ps => optim.Adagrad(ps, 1e-2)),
        };
        double adam = double.NaN;
        foreach (var (name, lookahead, torchOptimizer) in pairs)
        {
            using var scope = NewDisposeScope();
            manual_seed(1);
            var w = new TorchSharp.Modules.Parameter(randn(Rows, Cols).mul_(0.02));
            w.grad = randn(Rows, Cols).mul_(0.01);
            using var reference = torchOptimizer(new[] { w });
            using var step = new TimedRunner(lookahead(), Cases.Parameters(1, Rows, Cols));
            var ms = Interleaved(5, rounds,
                new Subject("torch.optim", () => reference.step()),
                new Subject("Lookahead", step.Step, step.Refresh));
            string detail = F("TorchSharp torch.optim.{0} {1:0.0} ms, Lookahead {2:0.0} ms per step, 1 x 10M, after 5 warm-up steps", name == "SGD-momentum" ? "SGD(momentum 0.9)" : name, ms[0], ms[1]);
            if (name == "Adam")
            {
                adam = ms[1];
                Target("Adam-1x10M-vs-TorchSharp-torch.optim.Adam", ms[0] / ms[1], ">=", 3, detail);
            }
            else Info(F("{0}-1x10M vs TorchSharp: speed-up {1:0.00}x (torch.optim's time over Lookahead's; {2})", name, ms[0] / ms[1], detail));
        }
        return adam;
    }

    const string PyTorchAbsent = "PyTorch absent: python3-torch is not installed (sudo apt-get install python3-torch to compare); the target was not measured";

    /// <summary>
    /// Debian's PyTorch on the same step, if <c>python3 -c "import torch"</c> works: runs benchmarks/torch_adam.py
    /// (10M float32, 2 threads, steady state) and reads its <c>ms_per_step=</c>.
    /// </summary>
    static void VersusPyTorch(double lookaheadAdam)
    {
        var (importCode, _) = Python("-c \"import torch\"", TimeSpan.FromSeconds(60));
        if (importCode != 0) { Info(PyTorchAbsent); return; }
        var script = FindUp(Path.Combine("benchmarks", "torch_adam.py"));
        if (script is null) { Info("PyTorch present but benchmarks/torch_adam.py was not found from the working directory; the target was not measured"); return; }
        var (code, output) = Python($"\"{script}\" --threads 2", TimeSpan.FromSeconds(180));
        var line = output.Split('\n').FirstOrDefault(l => l.Contains("ms_per_step=", StringComparison.Ordinal));
        if (code != 0 || line is null) { Info($"PyTorch run failed (exit {code}): {output.Trim()}; the target was not measured"); return; }
        var token = line.Split(' ').First(t => t.StartsWith("ms_per_step=", StringComparison.Ordinal));
        double pytorch = double.Parse(token["ms_per_step=".Length..], C);
        Target("Adam-1x10M-vs-PyTorch-torch.optim.Adam", pytorch / lookaheadAdam, ">=", 5,
            F("PyTorch {0:0.0} ms per step ({1}), Lookahead {2:0.0} ms", pytorch, line.Trim(), lookaheadAdam));
    }

    /// <summary>Runs python3 with <paramref name="arguments"/>; exit code −1 if python3 cannot be started or times out.</summary>
    static (int Code, string Output) Python(string arguments, TimeSpan timeout)
    {
        try
        {
            var psi = new ProcessStartInfo("python3", arguments) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(timeout)) { p.Kill(entireProcessTree: true); return (-1, "timed out"); }
            return (p.ExitCode, stdout.Result + stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception e) { return (-1, e.Message); }
    }

    /// <summary>The first existing <paramref name="relative"/> path in the working directory or one of its parents.</summary>
    static string? FindUp(string relative)
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, relative);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>
    /// Lookahead Adam on 1 thread against 2 (torch.set_num_threads, plus the runner's thread option when it has
    /// one), interleaved, with Adam's traffic loop on 1 and 2 threads in the same rounds as the machine's own
    /// scaling. The thread count is restored afterwards.
    /// </summary>
    static void Threads(int rounds)
    {
        int original = get_num_threads();
        try
        {
            using var scope = NewDisposeScope();
            var c = Cases.Elementwise.Single(x => x.Name == "Adam");
            using var one = new TimedRunner(c.Make(), Cases.Parameters(1, Rows, Cols), threads: 1);
            using var two = Cases.ThreadOption is null ? null : new TimedRunner(c.Make(), Cases.Parameters(1, Rows, Cols), threads: 2);
            var second = two ?? one;
            one.Step();
            using var loop = new TrafficLoop(Cases.TrafficOf(one.Runner, c).Traffic, N);
            var ms = Interleaved(1, rounds,
                new Subject("1 thread", one.Step, () => { set_num_threads(1); one.Refresh(); }),
                new Subject("2 threads", second.Step, () => { set_num_threads(2); second.Refresh(); }),
                new Subject("loop, 1 thread", () => loop.Run(1)),
                new Subject("loop, 2 threads", () => loop.Run(2)),
                new Subject("arithmetic, 1 thread", () => Arithmetic(1)),
                new Subject("arithmetic, 2 threads", () => Arithmetic(2)),
                new Subject("Adam's arithmetic, 1 thread", () => AdamArithmetic(N)));
            Target("Adam-1x10M-1-vs-2-threads", ms[0] / ms[1], ">=", 1.6,
                F("Lookahead Adam {0:0.0} ms on 1 thread, {1:0.0} ms on 2 ({2}); its traffic loop scales {3:0.00}x ({4:0.0} -> {5:0.0} ms), the memory system's own ceiling here; " +
                  "the same arithmetic without memory (a register-only SIMD loop, the work split in two) scales {6:0.00}x, the cores' own ceiling; " +
                  "Adam's own operations on 10M elements in registers, without memory, take {7:0.0} ms on 1 thread (one thread's floor: √ and two divisions per vector)",
                    ms[0], ms[1], Cases.ThreadOption is null ? "torch.set_num_threads" : $"torch.set_num_threads and RunnerOptions.{Cases.ThreadOption.Name}",
                    ms[2] / ms[3], ms[2], ms[3], ms[4] / ms[5], ms[6]));
        }
        finally { set_num_threads(original); }
    }

    static double _arithmeticSink;

    /// <summary>
    /// Adam's per-vector operations as the fused executor runs them (two moment updates, √v, the bias-corrected
    /// denominator v̂/c + ε, the quotient, the learning rate and θ + u) on <paramref name="n"/> elements' worth of
    /// 256-bit vectors held in registers, on one thread: the arithmetic a step costs when memory costs nothing.
    /// </summary>
    static void AdamArithmetic(long n)
    {
        var g = Vector256.Create(0.01f); var b1 = Vector256.Create(0.9f); var w1 = Vector256.Create(0.1f);
        var b2 = Vector256.Create(0.999f); var w2 = Vector256.Create(0.001f); var c = Vector256.Create(0.5f);
        var eps = Vector256.Create(1e-8f); var lr = Vector256.Create(-1e-3f);
        // Four independent lanes of work, as the out-of-order core overlaps consecutive vectors of a real loop.
        Vector256<float> m0 = g, m1 = g, m2 = g, m3 = g, v0 = g, v1 = g, v2 = g, v3 = g, p0 = g, p1 = g, p2 = g, p3 = g;
        for (long i = 0; i < n / 32; i++)
        {
            Step(ref m0, ref v0, ref p0); Step(ref m1, ref v1, ref p1); Step(ref m2, ref v2, ref p2); Step(ref m3, ref v3, ref p3);
        }
        _arithmeticSink += Vector256.Sum(p0 + p1 + p2 + p3);

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        void Step(ref Vector256<float> m, ref Vector256<float> v, ref Vector256<float> p)
        {
            v = Vector256.FusedMultiplyAdd(w2 * g, g, v * b2);
            m = Vector256.FusedMultiplyAdd(w1, g, m * b1);
            var d = Vector256.Sqrt(v) / c + eps;
            p = Vector256.FusedMultiplyAdd(m / d, lr, p);
        }
    }

    /// <summary>
    /// A fixed amount of register-only SIMD arithmetic (dependent FMAs and a square root per round, no memory), split
    /// over <paramref name="threads"/>: what two threads gain when memory is not in the way.
    /// </summary>
    static void Arithmetic(int threads)
    {
        const int total = 4_000_000;
        var sums = new double[threads];
        System.Threading.Tasks.Parallel.For(0, threads, new System.Threading.Tasks.ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            var a = Vector256.Create(1.0f + t); var b = Vector256.Create(0.999f); var c = Vector256.Create(0.001f);
            var d = a; var e = a; var f = a;
            for (int i = 0; i < total / threads; i++)
            {
                a = Vector256.FusedMultiplyAdd(a, b, c); d = Vector256.FusedMultiplyAdd(d, b, c);
                e = Vector256.FusedMultiplyAdd(e, b, c); f = Vector256.Sqrt(Vector256.FusedMultiplyAdd(f, b, c));
            }
            sums[t] = Vector256.Sum(a + d + e + f);
        });
        _arithmeticSink += sums.Sum();
    }

    /// <summary>Steady state of Adam on 1000 × 10k: tensors and managed bytes created per step, and scratch memory.</summary>
    static void SteadyState()
    {
        using var scope = NewDisposeScope();
        var p = Cases.Parameters(1000, 100, 100);
        using var runner = Cases.Runner(Optim.Adam(1e-3), p);
        for (int i = 0; i < 3; i++) runner.Step();
        var s = DisposeScopeManager.Statistics;
        long before = s.CreatedInScopeCount + s.CreatedOutsideScopeCount;
        for (int i = 0; i < 20; i++) runner.Step();
        double perStep = (s.CreatedInScopeCount + s.CreatedOutsideScopeCount - before) / 20.0;
        Target("Adam-new-tensors-per-step", perStep, "<=", 0, "tensors created per steady-state step, 1000 x 10k (TorchSharp dispose-scope statistics)");
        long allocated = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < 20; i++) runner.Step();
        double bytesPerStep = (GC.GetTotalAllocatedBytes(precise: true) - allocated) / 20.0;
        Target("Adam-managed-bytes-per-step", bytesPerStep, "<=", 0, "managed bytes allocated per steady-state step on every thread, 1000 x 10k (GC.GetTotalAllocatedBytes)");
        long paramBytes = p.Tensors.Sum(t => t.numel() * t.ElementSize);
        Target("Adam-scratch-vs-parameter-bytes", (double)runner.Workspace.ScratchBytes / paramBytes, "<=", 1, "scratch beyond the state, in parameter-sized buffers");
    }

    /// <summary>Newton–Schulz, 5 steps on 1024 × 1024, against its 15 matrix products, interleaved.</summary>
    static void NewtonSchulz()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var x = randn(1024, 1024); var y = randn(1024, 1024); var z = empty(1024, 1024);
        using var ns = new TimedRunner(Transforms.Orthogonalise(), TensorTree.Of(("w", randn(1024, 1024))));
        var ms = Interleaved(1, 5,
            new Subject("15 products", () => { for (int i = 0; i < 15; i++) z.addmm_(x, y, 0, 1); }),
            new Subject("Newton-Schulz", ns.Step, ns.Refresh));
        Target("NewtonSchulz-1024-vs-15-matmuls", ms[1] / ms[0], "<=", 1.2, F("{0:0.0} ms vs {1:0.0} ms for 15 products 1024^3", ms[1], ms[0]));
    }

    /// <summary>Muon and MARS-M on K matrices of 1024 × 1024 against K Newton–Schulz runs alone, interleaved.</summary>
    static void MatrixOptimizers(int matrices)
    {
        using var scope = NewDisposeScope();
        using var alone = new TimedRunner(Transforms.Orthogonalise(), Cases.Parameters(matrices, 1024, 1024));
        var runners = Cases.Matrix.Select(m => new TimedRunner(m.Make(), Cases.Parameters(matrices, 1024, 1024))).ToArray();
        try
        {
            var subjects = new[] { new Subject("Newton-Schulz alone", alone.Step, alone.Refresh) }
                .Concat(runners.Select((r, k) => new Subject(Cases.Matrix[k].Name, r.Step, r.Refresh))).ToArray();
            var ms = Interleaved(1, 5, subjects);
            for (int k = 0; k < runners.Length; k++)
                Target($"{Cases.Matrix[k].Name}-{matrices}x1024^2-vs-Newton-Schulz-alone", ms[k + 1] / ms[0], "<=", 1.1,
                    F("{0:0} ms per step vs {1:0} ms for its {2} Newton-Schulz runs alone", ms[k + 1], ms[0], matrices));
        }
        finally { foreach (var r in runners) r.Dispose(); }
    }

    /// <summary>
    /// Linear growth of Adam's step from 1e6 to 1e8 parameters (one tensor), all sizes in the same rounds. 1e8
    /// needs about 4 GB (runner, gradient copy and traffic loop); it is skipped when less than 8 GiB are available.
    /// </summary>
    static void LinearGrowth()
    {
        var sizes = new List<long> { 1_000_000, 10_000_000 };
        double available = AvailableBytes() / (double)(1L << 30);
        if (available >= 8) sizes.Add(100_000_000);
        else Info(F("Adam at 1e8 parameters skipped: {0:0.0} GiB available, 8 GiB wanted", available));
        using var scope = NewDisposeScope();
        var c = Cases.Elementwise.Single(x => x.Name == "Adam");
        var steps = new List<TimedRunner>();
        var loops = new List<TrafficLoop>();
        try
        {
            foreach (long n in sizes)
            {
                manual_seed(3);
                var step = new TimedRunner(c.Make(), TensorTree.Of(("w", randn(n).mul_(0.02).DetachFromDisposeScope())));
                steps.Add(step);
                step.Step();
                loops.Add(new TrafficLoop(Cases.TrafficOf(step.Runner, c).Traffic, n));
            }
            // Small sizes repeat within a round so that each timing spans tens of milliseconds.
            var subjects = sizes.SelectMany((n, k) => new[]
            {
                new Subject($"step {n}", steps[k].Step, steps[k].Refresh, Repeat: (int)Math.Max(1, 10_000_000 / n)),
                new Subject($"loop {n}", () => loops[k].Run(2), Repeat: (int)Math.Max(1, 10_000_000 / n)),
            }).ToArray();
            var ms = Interleaved(1, 5, subjects);
            for (int k = 0; k < sizes.Count; k++)
                Info(F("Adam {0:0e0} parameters: {1:0.000} ms per step, {2:0.00} ns per parameter, {3:0.00} x its traffic loop ({4:0.000} ms on 2 threads)",
                    sizes[k], ms[2 * k], ms[2 * k] * 1e6 / sizes[k], ms[2 * k] / ms[2 * k + 1], ms[2 * k + 1]));
            if (sizes.Count < 3) return;
            // Marginal cost per parameter between decades, 1e7 → 1e8 against 1e6 → 1e7 (1 = perfectly linear).
            double low = (ms[2] - ms[0]) / (sizes[1] - sizes[0]), high = (ms[4] - ms[2]) / (sizes[2] - sizes[1]);
            Target("Adam-linear-growth-1e6..1e8", high / low, "<=", 1.25,
                F("marginal ns per parameter {0:0.00} from 1e7 to 1e8 over {1:0.00} from 1e6 to 1e7", high * 1e6, low * 1e6));
        }
        finally
        {
            foreach (var s in steps) s.Dispose();
            foreach (var l in loops) l.Dispose();
        }
    }
}
