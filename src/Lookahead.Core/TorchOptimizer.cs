using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>
/// A parameter group of a <see cref="LookaheadOptimizer"/>: the parameters it selects and the transform it
/// builds from the current learning rate, which TorchSharp's LR schedulers read and set.
/// </summary>
/// <param name="name">The group's name (a partition label).</param>
/// <param name="selects">Which parameters belong here (by name, shape, rank: see <see cref="Parameters"/>); the first matching group takes a parameter.</param>
/// <param name="build">The transform for a learning rate, e.g. <c>lr =&gt; Optim.AdamW(lr)</c>; called each step with <see cref="LearningRate"/>.</param>
/// <param name="lr">The initial learning rate.</param>
public sealed class OptimizerGroup(string name, Func<ParameterInfo, bool> selects, Func<double, IGradientTransformation> build, double lr) : optim.ILearningRateController
{
    /// <summary>The group's name.</summary>
    public string Name { get; } = Check.NotNull(name, nameof(name));

    /// <summary>Which parameters belong to the group.</summary>
    public Func<ParameterInfo, bool> Selects { get; } = Check.NotNull(selects, nameof(selects));

    /// <summary>The transform for a learning rate.</summary>
    public Func<double, IGradientTransformation> Build { get; } = Check.NotNull(build, nameof(build));

    double _lr = Check.NonNegative(lr, nameof(lr), "learning rate");

    /// <summary>The current learning rate (LR schedulers set it; the next step uses it).</summary>
    public double LearningRate { get => _lr; set => _lr = Check.NonNegative(value, nameof(LearningRate), "learning rate"); }

    /// <summary>The learning rate the group started with (LR schedulers read it).</summary>
    public double InitialLearningRate { get; set; } = lr;
}

/// <summary>
/// Any Lookahead transform as a TorchSharp optimizer for a module: <c>step()</c>, <c>zero_grad()</c>,
/// <c>step(closure)</c> (the closure's loss reaches Polyak-type optimizers through the context), parameter
/// groups by name, shape or rank, and learning rates that TorchSharp's LR schedulers read and set.
/// It runs on a <see cref="Runner"/> (the fast path).
/// </summary>
/// <example><code>
/// var opt = new LookaheadOptimizer(model,
///     new OptimizerGroup("hidden", Optim.HiddenMatrices, lr => Optim.Muon(lr), 0.02),
///     new OptimizerGroup("rest", _ => true, lr => Optim.AdamW(lr, 0.9, 0.95), 3e-4));
/// var scheduler = torch.optim.lr_scheduler.StepLR(opt, 100, 0.5);
/// </code></example>
public sealed class LookaheadOptimizer : optim.Optimizer
{
    readonly nn.Module _module;
    readonly OptimizerGroup[] _groups;
    bool _disposed;

    /// <summary>One group holding every parameter.</summary>
    public LookaheadOptimizer(nn.Module module, Func<double, IGradientTransformation> build, double lr)
        : this(module, new OptimizerGroup("all", _ => true, build, lr)) { }

    /// <summary>Several groups; every parameter must be selected by one of them.</summary>
    public LookaheadOptimizer(nn.Module module, params OptimizerGroup[] groups) : base(IntPtr.Zero)
    {
        _module = Check.NotNull(module, nameof(module));
        ArgumentNullException.ThrowIfNull(groups);
        if (groups.Length == 0) throw new ArgumentException("at least one parameter group is needed", nameof(groups));
        var dup = groups.GroupBy(g => g.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"two groups are named '{dup.Key}'", nameof(groups));
        _groups = groups;
        string Label(ParameterInfo p) =>
            _groups.FirstOrDefault(g => g.Selects(p))?.Name
            ?? throw new ArgumentException($"parameter '{p.Name}' (shape [{string.Join(", ", p.Shape)}]) is selected by no group ({string.Join(", ", _groups.Select(g => g.Name))})");
        // Each group's transform is rebuilt every step from its current learning rate; the state carries over.
        var transform = Transforms.Partition(Label, _groups.Select(g => (g.Name, Transforms.Scheduled(_ => g.Build(g.LearningRate), g.Name))).ToArray());
        Runner = new Runner(transform, module);
    }

    /// <summary>The runner underneath (state, checkpoints).</summary>
    public Runner Runner { get; }

    /// <inheritdoc />
    public override IEnumerable<optim.ILearningRateController> ParamGroups => _groups;

    /// <summary>The groups.</summary>
    public IReadOnlyList<OptimizerGroup> Groups => _groups;

    /// <inheritdoc />
    public override IEnumerable<TorchSharp.Modules.Parameter> parameters() => _module.parameters();

    /// <inheritdoc />
    public override void zero_grad() => Runner.ZeroGrad();

    /// <summary>Switches the module's parameters to Schedule-Free's evaluation point x (<see cref="Lookahead.Runner.UseEvaluationParameters"/>); steps are refused until <see cref="UseTrainingParameters"/>.</summary>
    public void UseEvaluationParameters() { ObjectDisposedException.ThrowIf(_disposed, this); Runner.UseEvaluationParameters(); }

    /// <summary>Switches the parameters back to the training point y (<see cref="Lookahead.Runner.UseTrainingParameters"/>).</summary>
    public void UseTrainingParameters() { ObjectDisposedException.ThrowIf(_disposed, this); Runner.UseTrainingParameters(); }

    /// <summary>One step; with a closure, the closure is evaluated first (it computes the loss and its gradients) and its loss is returned and passed on in the context.</summary>
    public override Tensor step(Func<Tensor>? closure = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Runner.InEvaluation)
            throw new InvalidOperationException("the parameters hold the evaluation point: call UseTrainingParameters() before the next step");
        Tensor? loss = null;
        var context = StepContext.Empty;
        if (closure is not null)
        {
            using (enable_grad()) loss = closure();
            if (loss is not null) context = context.WithLoss(loss.item<double>());
        }
        Runner.Step(context);
        return loss!;
    }

    /// <summary>Saves the optimizer state, the parameters and every group's learning rates (<see cref="Checkpoint"/>).</summary>
    public void Save(string path)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var rates = _groups.SelectMany(g => new[]
        {
            KeyValuePair.Create($"lr/{g.Name}", g.LearningRate.ToString("R", System.Globalization.CultureInfo.InvariantCulture)),
            KeyValuePair.Create($"initial_lr/{g.Name}", g.InitialLearningRate.ToString("R", System.Globalization.CultureInfo.InvariantCulture)),
        }).ToDictionary(kv => kv.Key, kv => kv.Value);
        Checkpoint.Save(path, Runner.Transform, Runner.State, Runner.Parameters, rates);
    }

    /// <summary>
    /// Restores what <see cref="Save"/> wrote: the groups' learning rates, then the optimizer state (the
    /// parameters are the caller's: see <see cref="Checkpoint.LoadParameters"/>). Nothing changes if the file
    /// does not match (another optimizer, other groups, other parameters).
    /// </summary>
    public void Load(string path)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var meta = Checkpoint.ReadMetadata(path);
        var rates = new Dictionary<OptimizerGroup, (double Lr, double Initial)>();
        foreach (var g in _groups)
        {
            if (!meta.TryGetValue($"lr/{g.Name}", out var lr) || !meta.TryGetValue($"initial_lr/{g.Name}", out var initial))
                throw new CheckpointException($"{path}: no learning rate saved for the group '{g.Name}' (saved: {string.Join(", ", meta.Keys)})");
            rates[g] = (double.Parse(lr, System.Globalization.CultureInfo.InvariantCulture), double.Parse(initial, System.Globalization.CultureInfo.InvariantCulture));
        }
        var previous = _groups.ToDictionary(g => g, g => (g.LearningRate, g.InitialLearningRate));
        foreach (var (g, r) in rates) { g.LearningRate = r.Lr; g.InitialLearningRate = r.Initial; }
        try { Runner.Load(path); }
        catch
        {
            foreach (var (g, r) in previous) { g.LearningRate = r.LearningRate; g.InitialLearningRate = r.InitialLearningRate; }
            throw;
        }
    }

    /// <summary>Not supported: groups are fixed when the optimizer is built.</summary>
    public override void add_param_group(TorchSharp.Modules.ParamGroup param_group) =>
        throw new NotSupportedException("LookaheadOptimizer's groups are fixed at construction; pass every OptimizerGroup to the constructor");

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (!_disposed && disposing) Runner.Dispose();
        _disposed = true;
    }
}
