using System;
using System.Linq;
using BenchmarkDotNet.Attributes;
using Lookahead;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Benchmarks;

/// <summary>
/// One optimizer step of each measured optimizer, against copy_ of its minimal traffic (the baseline) and,
/// for Adam, TorchSharp's torch.optim.Adam, at 1 × 10M and 1000 × 10k float32 parameters.
/// </summary>
[MemoryDiagnoser(false)]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 15)]
public class StepBenchmarks
{
    /// <summary>The optimizer.</summary>
    [Params("Adam", "AdamW", "MARS-AdamW", "ARSG", "MoMo-Adam", "Lion")]
    public string Optimizer { get; set; } = "Adam";

    /// <summary>The layout: one tensor or many.</summary>
    [Params("1x10M", "1000x10k")]
    public string Layout { get; set; } = "1x10M";

    Runner? _runner;
    Tensor? _a, _b;
    double _traffic;
    StepContext _context = StepContext.Empty;
    torch.optim.Optimizer? _torchAdam;

    [GlobalSetup]
    public void Setup()
    {
        var c = Cases.Elementwise.Single(x => x.Name == Optimizer);
        _traffic = c.Traffic;
        _context = c.NeedsLoss ? Cases.WithLoss : StepContext.Empty;
        var p = Layout == "1x10M" ? Cases.Parameters(1, 10_000, 1_000) : Cases.Parameters(1000, 100, 100);
        _runner = Cases.Runner(c.Make(), p);
        _a = randn(10_000_000); _b = randn(10_000_000);
        if (Optimizer == "Adam")
        {
            var w = new TorchSharp.Modules.Parameter(randn(10_000, 1_000));
            w.grad = randn(10_000, 1_000);
            _torchAdam = optim.Adam(new[] { w }, 1e-3);
        }
    }

    /// <summary>copy_ of the optimizer's minimal traffic (whole copies, rounded up).</summary>
    [Benchmark(Baseline = true)]
    public void MemoryTraffic() { for (int i = 0; i < Math.Ceiling(_traffic); i++) _a!.copy_(_b!); }

    /// <summary>One Lookahead step on the runner.</summary>
    [Benchmark]
    public void LookaheadStep() => _runner!.Step(_context);

    /// <summary>One torch.optim.Adam step (Adam only).</summary>
    [Benchmark]
    public void TorchSharpAdam() { if (_torchAdam is not null) _torchAdam.step(); }

    [GlobalCleanup]
    public void Cleanup() { _runner?.Dispose(); _a?.Dispose(); _b?.Dispose(); }
}
