using System.Linq;
using BenchmarkDotNet.Attributes;
using Lookahead;
using static TorchSharp.torch;

namespace Lookahead.Benchmarks;

/// <summary>
/// One optimizer step of each targeted optimizer against its traffic loop (the baseline: the memory one fused
/// step must move, see <see cref="TrafficLoop"/>) and, for Adam, TorchSharp's torch.optim.Adam, at 1 × 10M
/// and 1000 × 10k float32 parameters.
/// </summary>
[MemoryDiagnoser(false)]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 15)]
public class StepBenchmarks
{
    /// <summary>The optimizer.</summary>
    [Params("Adam", "AdamW", "Lion", "NAdam", "QHAdam", "ARSG", "RMSprop", "SGD-momentum", "MARS-AdamW", "MoMo-Adam")]
    public string Optimizer { get; set; } = "Adam";

    /// <summary>The layout: one tensor or many.</summary>
    [Params("1x10M", "1000x10k")]
    public string Layout { get; set; } = "1x10M";

    TimedRunner? _step;
    TrafficLoop? _loop;
    optim.Optimizer? _torchAdam;

    [GlobalSetup]
    public void Setup()
    {
        var c = Cases.Elementwise.Single(x => x.Name == Optimizer);
        var p = Layout == "1x10M" ? Cases.Parameters(1, 10_000, 1_000) : Cases.Parameters(1000, 100, 100);
        _step = new TimedRunner(c.Make(), p, c.NeedsLoss);
        _step.Step();
        _loop = new TrafficLoop(Cases.TrafficOf(_step.Runner, c).Traffic, 10_000_000);
        if (Optimizer == "Adam")
        {
            var w = new TorchSharp.Modules.Parameter(randn(10_000, 1_000));
            w.grad = randn(10_000, 1_000);
            _torchAdam = optim.Adam(new[] { w }, 1e-3);
        }
    }

    /// <summary>The optimizer's traffic loop on 2 threads.</summary>
    [Benchmark(Baseline = true)]
    public void TrafficLoop() => _loop!.Run(2);

    /// <summary>Fresh gradients before each step (outside the measured step).</summary>
    [IterationSetup(Target = nameof(LookaheadStep))]
    public void Refresh() => _step!.Refresh();

    /// <summary>One Lookahead step on the runner.</summary>
    [Benchmark]
    public void LookaheadStep() => _step!.Step();

    /// <summary>One torch.optim.Adam step (Adam only).</summary>
    [Benchmark]
    public void TorchSharpAdam() { if (_torchAdam is not null) _torchAdam.step(); }

    [GlobalCleanup]
    public void Cleanup() { _step?.Dispose(); _loop?.Dispose(); _torchAdam?.Dispose(); }
}
