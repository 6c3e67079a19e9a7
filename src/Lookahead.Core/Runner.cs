using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>Settings of a <see cref="Runner"/>.</summary>
public sealed record RunnerOptions
{
    /// <summary>
    /// Leave the gradients untouched (the default): the step copies them into the runner's update buffer
    /// first (on the fused executor, block by block into per-thread scratch: the update never reaches memory).
    /// False lets the transform work in the gradient buffer itself, saving one pass over memory per step on the
    /// TorchSharp executor; the gradients then hold the applied updates after the step.
    /// </summary>
    public bool KeepGradients { get; init; } = true;

    /// <summary>
    /// Before each <see cref="Runner.Step(StepContext?)"/>, check that every parameter's <c>.grad</c> is still
    /// the runner's buffer and copy it in if not (e.g. after a <c>zero_grad</c> that set it to null and a new
    /// backward pass); default true. Reading <c>.grad</c> makes a short-lived tensor handle per parameter.
    /// </summary>
    public bool VerifyGradientBinding { get; init; } = true;

    /// <summary>
    /// Which executor runs the steps; default <see cref="RunnerExecutor.Auto"/>: the fused CPU executor when every
    /// parameter is a CPU tensor of float32 or float64 (or of bfloat16/float16 with float32 state, see
    /// <see cref="StatePrecision"/>), else TorchSharp's kernels on the parameters' device.
    /// </summary>
    public RunnerExecutor Executor { get; init; } = RunnerExecutor.Auto;

    /// <summary>Threads the fused executor runs a step on (≥ 1); default: the machine's logical cores. Results do not depend on it.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>Elements per block of the fused executor (≥ 8); default 2048. Results do not depend on it (tests use small blocks).</summary>
    public int BlockSize { get; init; } = Kernels.FusedExecutor.DefaultBlock;

    /// <summary>
    /// The precision of the optimizer state and of the update of bfloat16 and float16 parameters; default
    /// <see cref="Lookahead.StatePrecision.Float32"/>. Float32 and float64 parameters always keep state in their own dtype.
    /// </summary>
    public StatePrecision StatePrecision { get; init; } = StatePrecision.Float32;
}

/// <summary>
/// Where a runner keeps the optimizer state of 16-bit float parameters (bfloat16, float16), and so in which precision
/// their updates are computed.
/// </summary>
public enum StatePrecision
{
    /// <summary>
    /// Mixed precision: the state (moments, traces, buffers), the update buffer and every kernel's arithmetic are
    /// float32; the gradient is widened (exactly) when it is copied into the update buffer, and θ ← θ + u adds in
    /// float32 and rounds to the parameter's format (nearest, ties to even), as torch's <c>p.add_(u)</c> does. There is
    /// no float32 master copy of the parameters: an update smaller than half a bfloat16 step of θ is lost, as in
    /// torch.optim with bfloat16 parameters. Both executors run it (the fused one converts each chunk of a 16-bit
    /// array once on load and once on store).
    /// </summary>
    Float32,

    /// <summary>The state in the parameters' own dtype, as torch.optim keeps it (TorchSharp executor only for 16-bit parameters).</summary>
    Parameters,
}

/// <summary>The executors a <see cref="Runner"/> can run its steps on.</summary>
public enum RunnerExecutor
{
    /// <summary>The fused CPU executor where it applies (CPU parameters of float32, float64, or 16-bit floats with float32 state), else TorchSharp.</summary>
    Auto,
    /// <summary>TorchSharp's kernels, one per operation, on the parameters' device (any device, any dtype).</summary>
    TorchSharp,
    /// <summary>The fused CPU executor: a step's elementwise kernels in one blocked, multi-threaded pass over memory. Refused for parameters it cannot run.</summary>
    FusedCpu,
}

/// <summary>
/// The allocation-free execution path: runs a transform's in-place step on buffers the runner owns and
/// reuses, with parameters, gradients, updates and state laid out as flat contiguous buffers (one per dtype
/// and device; each tensor a view). On the CPU the step's kernels run fused, block by block and on several
/// threads (<see cref="RunnerOptions.Executor"/>); elsewhere each operation is one TorchSharp kernel per buffer.
/// </summary>
/// <remarks>
/// <para><b>Same semantics as the pure path.</b> The runner executes the same <see cref="Transform{TState}.Step"/>
/// that <see cref="IGradientTransformation.Update"/> runs on copies: a transform stays a value. The tests
/// prove both paths give the same trajectories for every optimizer of the library.</para>
/// <para><b>Layout.</b> At construction the parameters are copied into a flat buffer and re-pointed to their
/// views (<c>set_</c>; values unchanged), their <c>.grad</c> set to views of a flat gradient buffer (autograd
/// accumulates into it in place), and the transform's state re-laid out the same way. Parameters routed
/// alike by partitions are adjacent, so a partition's part is also one contiguous run.</para>
/// <para><b>Steady state.</b> After the first step a step creates no parameter-sized tensor: temporaries come
/// from the <see cref="Workspace"/>'s scratch buffers, which are reused (at most one per dtype and device for
/// the library's elementwise optimizers).</para>
/// <para><b>Ownership.</b> The runner owns its state and buffers; <see cref="Dispose"/> frees them. Parameters
/// stay the caller's objects (now backed by the runner's storage, which they keep alive).</para>
/// </remarks>
public sealed class Runner : IDisposable
{
    readonly IGradientTransformation _transform;
    readonly RunnerOptions _options;
    readonly Workspace _workspace = new();
    readonly List<Tensor> _buffers = new();
    readonly TensorTree _parameters, _gradients, _updates;
    readonly Dictionary<string, int> _position;
    readonly IReadOnlyList<ContextRequirement> _requirements;
    readonly List<Tensor> _updateFlats = new();
    // Per update buffer: whether it is the runner's own (not the gradients), so that its values are dead after a step.
    readonly List<bool> _updatesSeparate = new();
    readonly Kernels.FusedExecutor? _fused;
    readonly bool _fullyFused;
    IOptState _state;
    bool _disposed, _mixed;
    // The tree pairs a step groups (copy g into u; apply u to θ), kept so that a step does not allocate them.
    TensorTree[]? _copyTrees;
    TensorTree[] _applyTrees = null!, _addTrees = null!;
    readonly List<Tensor> _before = new(), _after = new();
    readonly HashSet<Tensor> _beforeSet = new(ReferenceEqualityComparer.Instance), _afterSet = new(ReferenceEqualityComparer.Instance);

    /// <summary>Binds <paramref name="transform"/> to a module's parameters (and their gradients).</summary>
    public Runner(IGradientTransformation transform, nn.Module module, RunnerOptions? options = null)
        : this(transform, TensorTree.FromParameters(Check.NotNull(module, nameof(module))), options) { }

    /// <summary>
    /// Binds <paramref name="transform"/> to <paramref name="parameters"/> (borrowed; re-pointed to the runner's
    /// storage). Gradients come from each parameter's <c>.grad</c> (<see cref="Step(StepContext?)"/>) or are
    /// passed in (<see cref="Step(TensorTree, StepContext?)"/>).
    /// </summary>
    public Runner(IGradientTransformation transform, TensorTree parameters, RunnerOptions? options = null)
    {
        _transform = Check.NotNull(transform, nameof(transform));
        ArgumentNullException.ThrowIfNull(parameters);
        if (parameters.Count == 0) throw new ArgumentException("the parameter tree is empty", nameof(parameters));
        _options = options ?? new RunnerOptions();
        Check.AtLeast(_options.Threads, 1, "Threads");
        Check.AtLeast(_options.BlockSize, 8, "BlockSize");
        bool Fusable(Tensor t) => t.device_type == DeviceType.CPU && (t.dtype is ScalarType.Float32 or ScalarType.Float64 || IsMixed(t));
        bool fusable = parameters.Tensors.All(Fusable);
        if (_options.Executor == RunnerExecutor.FusedCpu && !fusable)
        {
            var bad = parameters.Names.Zip(parameters.Tensors).First(x => !Fusable(x.Second));
            throw new ArgumentException($"the fused CPU executor runs CPU parameters of float32, float64, or bfloat16/float16 with StatePrecision.Float32; '{bad.First}' is {bad.Second.dtype} on {bad.Second.device} (use RunnerExecutor.Auto or TorchSharp)", nameof(options));
        }
        // Structural needs first (ranks, routing), while nothing has been re-pointed or allocated.
        Validation.Check(transform, parameters);
        _requirements = Validation.Requirements(transform);
        using var noGrad = no_grad();

        // Runner order: by dtype and device, then by the labels partitions give, then as given.
        var order = Enumerable.Range(0, parameters.Count)
            .OrderBy(i => parameters.Tensors[i].dtype).ThenBy(i => parameters.Tensors[i].device.ToString(), StringComparer.Ordinal)
            .ThenBy(i => Signature(transform, Info(parameters.Names[i], parameters.Tensors[i])), StringComparer.Ordinal)
            .ThenBy(i => i).ToArray();
        var names = order.Select(i => parameters.Names[i]).ToArray();
        var tensors = order.Select(i => parameters.Tensors[i]).ToArray();
        _position = names.Select((n, k) => (n, k)).ToDictionary(x => x.n, x => x.k);

        var grads = new Tensor[tensors.Length];
        var updates = new Tensor[tensors.Length];
        var inUpdates = new Tensor[tensors.Length];
        foreach (var run in Runs(tensors))
        {
            // A 16-bit run with float32 state keeps a float32 update buffer whatever KeepGradients says.
            bool mixed = IsMixed(tensors[run[0]]);
            _mixed |= mixed;
            var (flatP, flatG, flatU) = (Flat(run, tensors), Flat(run, tensors, zero: true), Flat(run, tensors, dtype: StateDType(tensors[run[0]])));
            bool separate = _options.KeepGradients || mixed;
            _updateFlats.Add(separate ? flatU : flatG);
            _updatesSeparate.Add(separate);
            long offset = 0;
            foreach (int k in run)
            {
                var p = tensors[k];
                long n = p.numel();
                var pv = View(flatP, offset, p.shape);
                pv.copy_(p);
                p.set_(pv);
                _workspace.Register(p, flatP, offset);
                grads[k] = View(flatG, offset, p.shape);
                _workspace.Register(grads[k], flatG, offset);
                if (p.requires_grad) p.grad = grads[k];
                updates[k] = View(flatU, offset, p.shape);
                _workspace.Register(updates[k], flatU, offset);
                inUpdates[k] = separate ? updates[k] : grads[k];
                offset += n;
            }
        }
        _parameters = TensorTree.Of(names, tensors);
        _gradients = TensorTree.Of(names, grads);
        _updates = TensorTree.Of(names, inUpdates);
        _applyTrees = new[] { _updates, _parameters };
        _addTrees = new[] { _parameters, _updates };

        // The state is initialised from the parameters in the state's precision (16-bit values widen exactly).
        var initParameters = _mixed ? _parameters.Map(p => IsMixed(p) ? p.to(ScalarType.Float32).DetachFromDisposeScope() : p) : _parameters;
        IOptState initial;
        try
        {
            using (var scope = NewDisposeScope())
            {
                initial = transform.Init(initParameters);
                scope.MoveToOuter(OptState.Tensors(initial).Cast<IDisposable>());
            }
            _state = Relayout(initial);
        }
        finally
        {
            if (_mixed)
            {
                var kept = new HashSet<Tensor>(_state is null ? Array.Empty<Tensor>() : OptState.Tensors(_state), ReferenceEqualityComparer.Instance);
                for (int k = 0; k < initParameters.Count; k++)
                    if (!ReferenceEquals(initParameters.Tensors[k], _parameters.Tensors[k]) && !kept.Contains(initParameters.Tensors[k])) initParameters.Tensors[k].Dispose();
            }
        }
        if (fusable && _options.Executor != RunnerExecutor.TorchSharp)
        {
            _fused = new Kernels.FusedExecutor(_workspace, _options.Threads, _options.BlockSize);
            _fullyFused = Kernels.Fusion.Fusable(transform);
        }
    }

    /// <summary>The executor this runner's steps run on (<see cref="RunnerExecutor.FusedCpu"/> or <see cref="RunnerExecutor.TorchSharp"/>).</summary>
    public RunnerExecutor Executor => _fused is null ? RunnerExecutor.TorchSharp : RunnerExecutor.FusedCpu;

    static ParameterInfo Info(string name, Tensor t) => new(name, t.shape, t.dtype);

    /// <summary>Whether <paramref name="t"/> is a 16-bit float parameter whose state and update are float32 here.</summary>
    bool IsMixed(Tensor t) => _options.StatePrecision == StatePrecision.Float32 && Kernels.NarrowFloats.IsNarrow(t.dtype);

    /// <summary>The dtype of the state and update of parameter <paramref name="p"/>.</summary>
    ScalarType StateDType(Tensor p) => IsMixed(p) ? ScalarType.Float32 : p.dtype;

    /// <summary>The labels the partitions inside <paramref name="tx"/> give a parameter, depth first.</summary>
    static string Signature(IGradientTransformation tx, ParameterInfo p)
    {
        if (tx is not IComposite c) return "";
        var route = c.Route(p);
        var parts = c.Children.Select(child => Signature(child, p)).Where(s => s.Length > 0);
        return string.Join("/", (route is null ? parts : parts.Prepend(route)));
    }

    /// <summary>Index runs of equal dtype and device, in runner order.</summary>
    static IEnumerable<int[]> Runs(Tensor[] tensors) =>
        Enumerable.Range(0, tensors.Length).GroupBy(k => (tensors[k].dtype, tensors[k].device.ToString())).Select(g => g.ToArray());

    Tensor Flat(int[] run, Tensor[] tensors, bool zero = false, ScalarType? dtype = null)
    {
        long total = run.Sum(k => tensors[k].numel());
        var first = tensors[run[0]];
        var type = dtype ?? first.dtype;
        var flat = (zero ? zeros(total, type, first.device) : empty(total, type, first.device)).DetachFromDisposeScope();
        _buffers.Add(flat);
        return flat;
    }

    Tensor View(Tensor flat, long offset, long[] shape)
    {
        using var span = flat.narrow(0, offset, shape.Aggregate(1L, (a, b) => a * b));
        var view = span.view(shape).DetachFromDisposeScope();
        _buffers.Add(view);
        return view;
    }

    /// <summary>
    /// Moves every tensor of the state's declared per-parameter slots (<see cref="DeclaredState.PerParameterSlots"/>)
    /// into one flat buffer per slot, dtype and device, in runner order, so the state is contiguous like the
    /// parameters. Other leaves (scalars, whole-tree tensors, states not declared by a layout) stay as they are.
    /// </summary>
    IOptState Relayout(IOptState state)
    {
        var slots = new Dictionary<(string Slot, ScalarType, string), List<(string Path, Tensor T, int Position)>>();
        foreach (var (prefix, tree) in DeclaredState.PerParameterSlots(state))
            foreach (var (name, t) in tree)
            {
                if (!_position.TryGetValue(name, out int k)) continue;
                var p = _parameters.Tensors[k];
                if (!t.shape.SequenceEqual(p.shape) || t.dtype != StateDType(p) || t.device.ToString() != p.device.ToString()) continue;
                var key = (prefix, t.dtype, t.device.ToString());
                if (!slots.TryGetValue(key, out var list)) slots[key] = list = new();
                list.Add((prefix + "/" + name, t, k));
            }
        var moved = new Dictionary<string, Tensor>();
        foreach (var list in slots.Values)
        {
            var sorted = list.OrderBy(x => x.Position).ToArray();
            long total = sorted.Sum(x => x.T.numel());
            var flat = empty(total, sorted[0].T.dtype, sorted[0].T.device).DetachFromDisposeScope();
            _buffers.Add(flat);
            long offset = 0;
            foreach (var (path, t, _) in sorted)
            {
                var view = View(flat, offset, t.shape);
                view.copy_(t);
                _workspace.Register(view, flat, offset);
                moved[path] = view;
                offset += t.numel();
            }
        }
        var next = state.MapTensors((path, t) => moved.TryGetValue(path, out var v) ? v : t);
        foreach (var (path, t) in state.Leaves().Where(l => l.Tensor is not null).Select(l => (l.Path, l.Tensor!)))
            if (moved.ContainsKey(path)) t.Dispose();
        return next;
    }

    /// <summary>The transform the runner executes.</summary>
    public IGradientTransformation Transform => _transform;

    /// <summary>The parameters, in the runner's order (the caller's tensor objects).</summary>
    public TensorTree Parameters => _parameters;

    /// <summary>The gradient buffers (each parameter's <c>.grad</c> when it requires grad).</summary>
    public TensorTree Gradients => _gradients;

    /// <summary>The current state (owned by the runner; valid until the next step or <see cref="Dispose"/>).</summary>
    public IOptState State => _state;

    /// <summary>Steps taken.</summary>
    public long StepCount { get; private set; }

    /// <summary>The workspace (scratch statistics).</summary>
    public Workspace Workspace => _workspace;

    /// <summary>Whether the parameters hold the evaluation point (see <see cref="UseEvaluationParameters"/>).</summary>
    public bool InEvaluation { get; private set; }

    /// <summary>
    /// Switches the parameters, in place, to the point to evaluate: Schedule-Free's average x (as the official
    /// <c>optimizer.eval()</c>, by its formula) or a parameter average (EMA, SWA: the training values are kept in a
    /// runner-owned copy, allocated at the first switch). Steps are refused until <see cref="UseTrainingParameters"/>.
    /// Does nothing if already switched.
    /// </summary>
    /// <exception cref="InvalidOperationException">The transform defines no evaluation point of its own.</exception>
    public void UseEvaluationParameters()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (InEvaluation) return;
        if (!Evaluation.Defined(_transform))
            throw new InvalidOperationException($"{_transform.Name} has no separate evaluation point (Schedule-Free averaging and parameter averages define one); its parameters are the point to evaluate");
        var (node, slots) = Evaluation.Find(_transform, _state, _parameters);
        using var noGrad = no_grad();
        if (!node.Invertible)
        {
            _trainingCopy ??= _parameters.Map(p => zeros_like(p).DetachFromDisposeScope());
            for (int i = 0; i < _parameters.Count; i++) _trainingCopy.Tensors[i].copy_(_parameters.Tensors[i]);
        }
        for (int i = 0; i < _parameters.Count; i++)
        {
            if (node.Invertible) node.Switch(slots[i], _parameters.Tensors[i], toEvaluation: true);
            else
            {
                using var x = node.Evaluation(slots[i], _parameters.Tensors[i]);
                _parameters.Tensors[i].copy_(x);
            }
        }
        InEvaluation = true;
    }

    /// <summary>Switches the parameters back to the training values (Schedule-Free: the official <c>optimizer.train()</c>); does nothing if not switched.</summary>
    public void UseTrainingParameters()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!InEvaluation) return;
        var (node, slots) = Evaluation.Find(_transform, _state, _parameters);
        using var noGrad = no_grad();
        for (int i = 0; i < _parameters.Count; i++)
        {
            if (node.Invertible) node.Switch(slots[i], _parameters.Tensors[i], toEvaluation: false);
            else _parameters.Tensors[i].copy_(_trainingCopy!.Tensors[i]);
        }
        InEvaluation = false;
    }

    TensorTree? _trainingCopy;

    /// <summary>The current value of an injected hyperparameter (<see cref="Transforms.InjectHyperparameters"/>).</summary>
    public double GetHyperparameter(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Hyperparameters.Get(_transform, _state, name);
    }

    /// <summary>
    /// Sets an injected hyperparameter for the next steps, without rebuilding the runner; saved with checkpoints.
    /// A value the optimizer refuses is an error naming it, and nothing changes.
    /// </summary>
    public void SetHyperparameter(string name, double value)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _state = Hyperparameters.Set(_transform, _state, name, value);
    }

    void CheckTraining()
    {
        if (InEvaluation)
            throw new InvalidOperationException("the parameters hold the evaluation point: call UseTrainingParameters() before the next step");
    }

    /// <summary>Zeroes the gradient buffers in place (one kernel per flat buffer).</summary>
    public void ZeroGrad()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var noGrad = no_grad();
        foreach (var group in _workspace.Groups(new[] { _gradients })) group[0].zero_();
    }

    /// <summary>One step with the gradients accumulated in the parameters' <c>.grad</c> (the runner's buffers).</summary>
    public void Step(StepContext? context = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        context ??= StepContext.Empty;
        CheckTraining();
        Validation.CheckContext(_requirements, context, StepCount + 1);
        if (_options.VerifyGradientBinding) Rebind();
        Run(context, copyFrom: _options.KeepGradients || _mixed ? _gradients : null);
    }

    /// <summary>One step with the given gradients (borrowed; matched to the parameters by name).</summary>
    public void Step(TensorTree gradients, StepContext? context = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(gradients);
        context ??= StepContext.Empty;
        CheckTraining();
        Validation.CheckContext(_requirements, context, StepCount + 1);
        _parameters.CheckMatches(gradients.Count == _parameters.Count ? TensorTree.Of(_parameters.Names, _parameters.Names.Select(n => gradients.Contains(n) ? gradients[n] : throw new ArgumentException($"gradients lack '{n}' (they hold: {string.Join(", ", gradients.Names)})", nameof(gradients))).ToArray()) : gradients, nameof(gradients), "parameters");
        using var noGrad = no_grad();
        for (int k = 0; k < _updates.Count; k++) _updates.Tensors[k].copy_(gradients[_updates.Names[k]]);
        Run(context, copyFrom: null);
    }

    void Rebind()
    {
        using var noGrad = no_grad();
        for (int k = 0; k < _parameters.Count; k++)
        {
            var p = _parameters.Tensors[k];
            if (!p.requires_grad) continue;
            using var g = p.grad;
            if (g is null)
                throw new InvalidOperationException($"parameter '{_parameters.Names[k]}' has no gradient: run backward before Step, or pass the gradients");
            if (SameStorage(g, _gradients.Tensors[k])) continue;
            _gradients.Tensors[k].copy_(g);
            p.grad = _gradients.Tensors[k];
        }
    }

    static bool SameStorage(Tensor a, Tensor b) =>
        a.dtype == b.dtype && a.dim() == b.dim() && SameShape(a, b) &&
        Kernels.NarrowFloats.DataPointer(a) is var pa && pa != IntPtr.Zero && pa == Kernels.NarrowFloats.DataPointer(b);

    static bool SameShape(Tensor a, Tensor b)
    {
        for (int d = 0; d < a.dim(); d++) if (a.size(d) != b.size(d)) return false;
        return true;
    }


    void Run(StepContext context, TensorTree? copyFrom)
    {
        using var noGrad = Kernels.GradOff.Begin();
        // A step that the fused executor runs whole creates no tensor once its scratch exists (the benchmark counts
        // them): after the first step it runs without a dispose scope, which TorchSharp would allocate per step.
        using var scope = _fused is not null && _fullyFused && StepCount > 0 ? null : NewDisposeScope();
        // Which state tensors a step replaced (disposed) or created (kept): reused collections, no allocation per step.
        _before.Clear(); _beforeSet.Clear(); _after.Clear(); _afterSet.Clear();
        OptState.CollectTensors(_state, _before);
        foreach (var t in _before) _beforeSet.Add(t);
        IOptState next;
        if (_fused is not null)
        {
            // The whole step is recorded, then run in one pass; the update buffer lives in per-thread scratch when
            // nothing but elementwise kernels touches it (it is filled from the gradients block by block).
            _fused.Begin(_updateFlats, virtualUpdates: _fullyFused && copyFrom is not null && _options.KeepGradients, _updatesSeparate);
            using (Buffers.Use(_workspace))
            {
                using (Kernels.Elementwise.Record(_fused))
                {
                    if (copyFrom is not null) Kernels.Elementwise.Run(default(Kernels.CopyInKernel), _workspace.Groups(_copyTrees ??= new[] { _updates, copyFrom }), (Tensor[][]?)null);
                    next = InPlace.Step(_transform, _updates, _state, _parameters, context);
                    Kernels.Elementwise.Run(default(Kernels.ApplyKernel), _workspace.Groups(_applyTrees), (Tensor[][]?)null);
                }
                _fused.Execute(last: true);
            }
        }
        else
        {
            if (copyFrom is not null)
            {
                var groups = _workspace.Groups(_copyTrees ??= new[] { _updates, copyFrom });
                for (int k = 0; k < groups.Count; k++) groups[k][0].copy_(groups[k][1]);
            }
            using (Buffers.Use(_workspace)) next = InPlace.Step(_transform, _updates, _state, _parameters, context);
        }
        OptState.CollectTensors(next, _after);
        foreach (var t in _after) { _afterSet.Add(t); if (!_beforeSet.Contains(t)) t.DetachFromDisposeScope(); }
        foreach (var t in _before) if (!_afterSet.Contains(t)) { _workspace.Unregister(t); t.Dispose(); }
        _state = next;
        if (_fused is null)
        {
            var groups = _workspace.Groups(_addTrees);
            for (int k = 0; k < groups.Count; k++) groups[k][0].add_(groups[k][1]);
        }
        StepCount++;
    }

    /// <summary>Saves the optimizer state and the parameters (<see cref="Checkpoint"/>).</summary>
    public void Save(string path)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Checkpoint.Save(path, _transform, _state, _parameters);
    }

    /// <summary>
    /// Restores the optimizer state saved by <see cref="Save"/> (or by <see cref="Checkpoint.Save"/> on the pure
    /// path) into the runner's buffers; the parameters are not touched (see <see cref="Checkpoint.LoadParameters"/>).
    /// Nothing changes if the checkpoint does not match.
    /// </summary>
    public void Load(string path)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Adopt(Checkpoint.Load(path, _transform, _parameters, _state));
    }

    /// <summary>
    /// Saves the optimizer state as a torch.optim state dict (<see cref="TorchStateDict.Save"/>): SGD, Adam, AdamW,
    /// RMSprop and Adagrad; <paramref name="names"/> gives the PyTorch model's parameter order (null: the runner's).
    /// </summary>
    public void SaveTorchState(string path, IReadOnlyList<string>? names = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        TorchStateDict.Save(path, _transform, _state, _parameters, names);
    }

    /// <summary>
    /// Restores a torch.optim state dict (<see cref="TorchStateDict.Load"/>, hyperparameters checked against the
    /// runner's optimizer) into the runner's buffers; the parameters are not touched. Nothing changes if it does not match.
    /// </summary>
    public void LoadTorchState(string path, IReadOnlyList<string>? names = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Adopt(TorchStateDict.Load(path, _transform, _parameters, names));
    }

    /// <summary>Copies a loaded state of the runner's structure into its buffers and scalars, then frees it.</summary>
    void Adopt(IOptState loaded)
    {
        try
        {
            using var noGrad = no_grad();
            var target = _state.Leaves().Where(l => l.Tensor is not null).ToDictionary(l => l.Path, l => l.Tensor!);
            var scalars = new Dictionary<string, double>();
            foreach (var leaf in loaded.Leaves())
            {
                if (leaf.Tensor is { } t) target[leaf.Path].copy_(t);
                else scalars[leaf.Path] = leaf.Scalar!.Value;
            }
            _state = _state.MapScalars((p, _) => scalars[p]);
        }
        finally { OptState.Dispose(loaded); }
    }

    /// <summary>Frees the state and the runner's buffers (parameters keep their values and storage).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        var buffers = _buffers.ToHashSet(ReferenceEqualityComparer.Instance);
        foreach (var t in OptState.Tensors(_state)) if (!buffers.Contains(t)) t.Dispose();
        foreach (var t in _buffers) t.Dispose();
        _workspace.Dispose();
        _fused?.Dispose();
        _trainingCopy?.Dispose();
    }
}
