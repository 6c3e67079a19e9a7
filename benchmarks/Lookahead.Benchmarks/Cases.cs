using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Reflection;
using Lookahead;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Benchmarks;

/// <summary>
/// One optimizer measured against its traffic loop.
/// </summary>
/// <param name="Name">The name printed in target and info lines (no spaces).</param>
/// <param name="Make">A fresh transform.</param>
/// <param name="Goal">The target ratio step / traffic loop; NaN for an optimizer reported as info only.</param>
/// <param name="BothLayouts">Also measured at 1000 × 10k (else only 1 × 10M).</param>
/// <param name="NeedsLoss">The step reads the loss from the context.</param>
/// <param name="ReductionReads">
/// The arrays a reduction must read in a pass of its own before the update (they are not state slots, so they
/// cannot be derived from the state); empty for a purely elementwise step.
/// </param>
/// <param name="Reduction">What that reduction is, for the info line.</param>
public sealed record OptimizerCase(string Name, Func<IGradientTransformation> Make, double Goal, bool BothLayouts,
    bool NeedsLoss = false, string[]? ReductionReads = null, string Reduction = "")
{
    /// <summary>The arrays of the reduction pass (never null).</summary>
    public string[] Reads => ReductionReads ?? Array.Empty<string>();
}

/// <summary>The optimizers measured, how the benchmark builds their runners, and the runner options in use.</summary>
public static class Cases
{
    /// <summary>
    /// The elementwise optimizers. Their read-write arrays are not listed here: they are p plus every
    /// per-parameter slot of the state after one step (<see cref="TrafficOf"/>), and g is their one read-only array.
    /// </summary>
    public static readonly OptimizerCase[] Elementwise =
    {
        new("Adam", () => Optim.Adam(1e-3), 1.25, true),
        new("AdamW", () => Optim.AdamW(1e-3), 1.25, true),
        new("Lion", () => Optim.Lion(1e-4), 1.25, true),
        new("NAdam", () => Optim.NAdam(), 1.25, true),
        // ν₁ = 0.7 (the QHAdam paper's recommendation), so the shift g ↔ m is really computed.
        new("QHAdam", () => Optim.QhAdam(1e-3, nu1: 0.7), 1.25, true),
        new("ARSG", () => Optim.Arsg(1e-3), 1.25, true),
        new("RMSprop", () => Optim.RmsProp(1e-2), 1.25, true),
        new("SGD-momentum", () => Optim.Sgd(1e-2, momentum: 0.9), 1.25, true),
        new("Adagrad", () => Optim.Adagrad(1e-2), double.NaN, false),
        new("ADOPT", () => Optim.Adopt(1e-3), 1.25, true),
        new("ScheduleFree-AdamW", () => Optim.ScheduleFreeAdamW(), 1.25, true),
        new("ScheduleFree-SGD", () => Optim.ScheduleFreeSgd(0.1), 1.25, true),
        // AdEMAMix's slow EMA runs on a copy of the update (Mix) that lives in per-chunk scratch: still one pass.
        new("AdEMAMix", () => Optim.AdEMAMix(1e-3), 1.25, true),
        // Cautious masking needs each tensor's kept count before any entry is rescaled: a fused step at best reads
        // g, m and v once more to recompute the direction (here it writes the mask and the update instead, and
        // reads them back).
        new("C-AdamW", () => Optim.CautiousAdamW(1e-3), 1.5, false,
            ReductionReads: new[] { "g", "m", "v" }, Reduction: "the kept count of the mask [u*g > 0] per tensor"),
        // MARS clips c = g + s·(g − g_prev) to unit norm per tensor: ‖c‖² must be known before the update,
        // so a fused step reads g and g_prev once more.
        new("MARS-AdamW", () => Optim.Mars(3e-3, optimize1d: true), 1.5, false,
            ReductionReads: new[] { "g", "g_prev" }, Reduction: "||c||^2 per tensor for the unit-norm clip"),
        // MoMo-Adam's step size needs ⟨x, d⟩ and ⟨d, D⁻¹d⟩ with the new moments: a second pass over p, m, v.
        new("MoMo-Adam", () => Optim.MomoAdam(1e-2), 1.5, false, NeedsLoss: true,
            ReductionReads: new[] { "p", "m", "v" }, Reduction: "the dot products <x,d> and <d,d/D> of the Polyak step size"),
        new("GuardNonFinite(Adam)", () => Transforms.GuardNonFinite(Optim.Adam(1e-3)), 1.5, false,
            ReductionReads: new[] { "g" }, Reduction: "the non-finite count of g"),
        new("Chain(ClipByGlobalNorm,AdamW)", () => Transforms.Chain(Transforms.ClipByGlobalNorm(1.0), Optim.AdamW(1e-3)), 1.5, false,
            ReductionReads: new[] { "g" }, Reduction: "||g||^2 for the clip factor"),
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

    // ---- Runner options ----

    static readonly List<(PropertyInfo Property, object Value)> Overrides = new();

    /// <summary>
    /// Sets a <see cref="RunnerOptions"/> property by name for every runner of the benchmark (<c>--runner NAME=VALUE</c>),
    /// by reflection, so that an option added to the runner later (an executor, a thread count) can be chosen
    /// without changing this code. Booleans, numbers, enums and strings are parsed from <paramref name="value"/>.
    /// </summary>
    public static void Override(string name, string value)
    {
        var property = typeof(RunnerOptions).GetProperty(name, BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase)
            ?? throw new ArgumentException($"RunnerOptions has no property '{name}' (it has: {string.Join(", ", typeof(RunnerOptions).GetProperties().Select(p => p.Name))})");
        var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        object parsed = type.IsEnum ? Enum.Parse(type, value, ignoreCase: true) : Convert.ChangeType(value, type, CultureInfo.InvariantCulture);
        Overrides.Add((property, parsed));
    }

    /// <summary>
    /// The runner's thread-count option, if it has one: an integer property whose name mentions threads or
    /// parallelism (<see cref="RunnerOptions.Threads"/>); without one the 1-vs-2-threads check only sets torch's thread count.
    /// </summary>
    public static PropertyInfo? ThreadOption { get; } = typeof(RunnerOptions).GetProperties()
        .FirstOrDefault(p => (Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType) == typeof(int) && p.CanWrite
            && (p.Name.Contains("Thread", StringComparison.OrdinalIgnoreCase) || p.Name.Contains("Parallel", StringComparison.OrdinalIgnoreCase)));

    /// <summary>
    /// The options of every benchmark runner: the defaults (the gradients are kept, so the fused executor holds the
    /// update in per-thread scratch) with the gradient binding not re-checked (reading <c>.grad</c> makes a tensor
    /// handle per parameter and step), then the command line's overrides, then <paramref name="threads"/> if given.
    /// </summary>
    public static RunnerOptions Options(int? threads = null)
    {
        var options = new RunnerOptions { VerifyGradientBinding = false };
        foreach (var (property, value) in Overrides) property.SetValue(options, value);
        if (threads is int t && ThreadOption is not null) ThreadOption.SetValue(options, t);
        return options;
    }

    /// <summary>A runner over <paramref name="parameters"/> whose gradient buffers hold random gradients.</summary>
    public static Runner Runner(IGradientTransformation tx, TensorTree parameters, int? threads = null)
    {
        var runner = new Runner(tx, parameters, Options(threads));
        using var noGrad = no_grad();
        foreach (var g in runner.Gradients.Tensors) { using var r = randn_like(g); g.copy_(r.mul_(0.01)); }
        return runner;
    }

    /// <summary>The context of a step that reads the loss.</summary>
    public static readonly StepContext WithLoss = StepContext.Empty.WithLoss(1.0);

    /// <summary>
    /// The traffic of one step of the optimizer bound by <paramref name="runner"/> (which must have stepped
    /// once, so that lazily created slots exist): g read-only; p and every per-parameter tensor slot of its
    /// state read and written; the reduction reads that <paramref name="c"/> declares. Also returns the
    /// slots' names (state paths without the parameter's name), for the info line.
    /// </summary>
    public static (Traffic Traffic, string[] Slots) TrafficOf(Runner runner, OptimizerCase c)
    {
        ArgumentNullException.ThrowIfNull(runner);
        ArgumentNullException.ThrowIfNull(c);
        var parameters = runner.Parameters;
        long total = parameters.Tensors.Sum(t => t.numel());
        var slots = new Dictionary<string, long>();
        foreach (var leaf in runner.State.Leaves())
        {
            if (leaf.Tensor is not { } t) continue;
            for (int k = 0; k < parameters.Count; k++)
            {
                string suffix = "/" + parameters.Names[k];
                if (!leaf.Path.EndsWith(suffix, StringComparison.Ordinal) || t.numel() != parameters.Tensors[k].numel()) continue;
                string slot = leaf.Path[..^suffix.Length];
                slots[slot] = slots.GetValueOrDefault(slot) + t.numel();
                break;
            }
        }
        // A per-parameter slot covers every parameter; anything partial would mean a routing this benchmark does not use.
        var partial = slots.Where(s => s.Value != total).Select(s => s.Key).ToArray();
        if (partial.Length > 0) throw new InvalidOperationException($"{c.Name}: slots not covering every parameter: {string.Join(", ", partial)}");
        var names = slots.Keys.ToArray();
        return (new Traffic(ReadOnly: 1, ReadWrite: 1 + names.Length, ReductionReads: c.Reads.Length), names);
    }
}

/// <summary>
/// A runner ready to be timed: before each timed step, <see cref="Refresh"/> copies fresh gradients into its
/// gradient buffers (untimed). With <c>--runner KeepGradients=false</c> the runner works in the gradient buffer,
/// and without the refresh the "gradient" of step t+1 would be the update of step t, which for SGD or Adagrad
/// shrinks by the learning rate every step until it reaches denormal floats and slows the arithmetic down. When the
/// runner keeps its gradients (the default) the step leaves them as they are and the refresh does nothing: rewriting
/// 40 MB just before the step would leave dirty cache lines whose write-back lands inside the timed step, traffic
/// that neither the optimizer's own arrays nor its traffic loop account for.
/// </summary>
public sealed class TimedRunner : IDisposable
{
    readonly Tensor[] _gradients;
    readonly bool _refresh;

    /// <summary>The runner.</summary>
    public Runner Runner { get; }

    readonly StepContext _context;

    /// <summary>Binds <paramref name="tx"/> to <paramref name="parameters"/> with fresh random gradients to restore before each step.</summary>
    public TimedRunner(IGradientTransformation tx, TensorTree parameters, bool needsLoss = false, int? threads = null)
    {
        Runner = Cases.Runner(tx, parameters, threads);
        _refresh = !Cases.Options(threads).KeepGradients;
        _context = needsLoss ? Cases.WithLoss : StepContext.Empty;
        using var noGrad = no_grad();
        _gradients = Runner.Gradients.Tensors.Select(g => g.clone().DetachFromDisposeScope()).ToArray();
    }

    /// <summary>Restores the gradients (not part of a step's time; nothing to do when the runner keeps them).</summary>
    public void Refresh()
    {
        if (!_refresh) return;
        using var noGrad = no_grad();
        var g = Runner.Gradients.Tensors;
        for (int k = 0; k < g.Count; k++) g[k].copy_(_gradients[k]);
    }

    /// <summary>One optimizer step.</summary>
    public void Step() => Runner.Step(_context);

    /// <inheritdoc />
    public void Dispose()
    {
        Runner.Dispose();
        foreach (var g in _gradients) g.Dispose();
    }
}
