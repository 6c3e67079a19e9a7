using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using Lookahead.TorchFormat;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>The torch.optim classes whose state dicts <see cref="TorchStateDict"/> reads and writes.</summary>
public enum TorchOptimizerKind
{
    /// <summary><c>torch.optim.SGD</c> (with or without momentum, dampening, Nesterov): <c>Optim.Sgd</c>.</summary>
    Sgd,
    /// <summary><c>torch.optim.Adam</c> (incl. AMSGrad): <c>Optim.Adam</c>.</summary>
    Adam,
    /// <summary><c>torch.optim.AdamW</c> (incl. AMSGrad): <c>Optim.AdamW</c>.</summary>
    AdamW,
    /// <summary><c>torch.optim.RMSprop</c> (incl. centered and momentum): <see cref="Optim.RmsProp"/>.</summary>
    RmsProp,
    /// <summary><c>torch.optim.Adagrad</c>: <see cref="Optim.Adagrad"/>.</summary>
    Adagrad,
}

/// <summary>
/// PyTorch optimizer checkpoints: a <c>torch.optim</c> state dict saved by <c>torch.save(opt.state_dict(), path)</c>
/// read into the state of the corresponding Lookahead optimizer, and a Lookahead state written as a state dict that
/// <c>opt.load_state_dict(torch.load(path))</c> continues from. SGD, Adam, AdamW (both with AMSGrad), RMSprop and
/// Adagrad are mapped; they are the optimizers whose Lookahead compositions follow torch's rule exactly
/// (<c>Optim.Sgd</c>, <c>Optim.Adam</c>, <c>Optim.AdamW</c>, <see cref="Optim.RmsProp"/>,
/// <see cref="Optim.Adagrad"/>, and <see cref="Optim.HeavyBall"/>, <c>Optim.NesterovSgd</c>,
/// <see cref="Optim.AmsGrad"/>, which are defined through them).
/// </summary>
/// <remarks>
/// <para><b>Parameters.</b> A state dict numbers parameters 0, 1, … in the order of its param groups' <c>params</c>
/// (the order of <c>model.parameters()</c>). They are matched to the tree by the tree's order, or by
/// <c>names</c>: <c>names[i]</c> is the tree's name of parameter i (for example the names of
/// <c>model.named_parameters()</c> in order); a state dict that carries <c>param_names</c> (PyTorch ≥ 2.5 with named
/// parameters) is matched by those when no names are given. Every parameter is matched exactly once.</para>
/// <para><b>Hyperparameters.</b> Loading into a given optimizer checks each hyperparameter of the param groups
/// against it (exactly: a state dict saved with <c>lr = 0.01</c> does not load into <c>Optim.Adam(lr: 1e-3)</c>) and
/// names the key that differs; <see cref="LoadOptimizer"/> builds the optimizer from the groups instead. Execution
/// options (<c>foreach</c>, <c>fused</c>, <c>capturable</c>, <c>differentiable</c>) and a scheduler's
/// <c>initial_lr</c> are ignored; <c>maximize = True</c> and any unknown key are refused. Groups must share their
/// hyperparameters: a state dict whose groups differ (say, no weight decay on biases) is refused naming the group and
/// the key, because one Lookahead optimizer carries one set.</para>
/// <para><b>State.</b> torch keeps a step per parameter, Lookahead one per optimizer: all parameters must be at the same
/// step, and either all have state or none (a fresh optimizer). SGD keeps no step: its momentum buffers load as
/// started (the first-step copy done). Tensors must have their parameter's shape and the Lookahead state's dtype (no
/// conversion is made); they are copied to the parameters' device. Written state dicts hold <c>step</c> as a float32
/// scalar tensor (float64 past 2²⁴), as torch does, with the group's hyperparameters and torch's defaults for the
/// execution options; the file is the same bytes for the same state (fixed zip timestamps), flushed to disk before an
/// atomic rename.</para>
/// <para><b>Safety.</b> Reading a file runs no code from it: the unpickler accepts only the objects a state dict holds
/// (dicts, lists, tuples, numbers, strings, tensors) and refuses any other global by name.</para>
/// <para><b>Ownership.</b> A loaded state is the caller's (dispose with <see cref="OptState.Dispose"/>); the inputs are
/// only read, and a call that throws changes nothing.</para>
/// </remarks>
public static class TorchStateDict
{
    sealed record Key(string Torch, string Lookahead, Func<Spec, object?> Value);

    sealed record Kind(TorchOptimizerKind Which, string Name, Key[] Hyper, (string Key, object? Value)[] Defaults, (string Torch, string Slot)[] State, bool HasStep);

    // A spec holds each argument as its canonical text (round-trip "R" for numbers, "true"/"false").
    static string Entry(Spec s, string key) => s.Entries.First(e => e.Key == key).Value as string
        ?? throw new InvalidOperationException($"spec '{s.Kind}' holds '{key}' as an object, not a value");
    static double D(Spec s, string key) => double.Parse(Entry(s, key), NumberStyles.Float, CultureInfo.InvariantCulture);
    static bool B(Spec s, string key) => Entry(s, key) == "true";

    static readonly Key Lr = new("lr", "lr", s => D(s, "lr"));
    static readonly Key Wd = new("weight_decay", "weightDecay", s => D(s, "weightDecay"));
    static readonly Key Eps = new("eps", "eps", s => D(s, "eps"));
    static readonly Key Betas = new("betas", "beta1, beta2", s => new PyTuple(new object?[] { D(s, "beta1"), D(s, "beta2") }));

    static readonly Kind[] Kinds =
    {
        new(TorchOptimizerKind.Sgd, "SGD",
            new[] { Lr, new Key("momentum", "momentum", s => D(s, "momentum")), new Key("dampening", "dampening", s => D(s, "dampening")), Wd, new Key("nesterov", "nesterov", s => B(s, "nesterov")) },
            new (string, object?)[] { ("maximize", false), ("foreach", null), ("differentiable", false), ("fused", null) },
            new[] { ("momentum_buffer", "momentum") }, HasStep: false),
        new(TorchOptimizerKind.Adam, "Adam",
            new[] { Lr, Betas, Eps, Wd, new Key("amsgrad", "amsgrad", s => B(s, "amsgrad")), new Key("decoupled_weight_decay", "(Adam: false)", _ => false) },
            new (string, object?)[] { ("maximize", false), ("foreach", null), ("capturable", false), ("differentiable", false), ("fused", null) },
            new[] { ("exp_avg", "momentum"), ("exp_avg_sq", "nu"), ("max_exp_avg_sq", "nu_max") }, HasStep: true),
        new(TorchOptimizerKind.AdamW, "AdamW",
            new[] { Lr, Betas, Eps, Wd, new Key("amsgrad", "amsgrad", s => B(s, "amsgrad")), new Key("decoupled_weight_decay", "(AdamW: true)", _ => true) },
            new (string, object?)[] { ("maximize", false), ("foreach", null), ("capturable", false), ("differentiable", false), ("fused", null) },
            new[] { ("exp_avg", "momentum"), ("exp_avg_sq", "nu"), ("max_exp_avg_sq", "nu_max") }, HasStep: true),
        new(TorchOptimizerKind.RmsProp, "RMSprop",
            new[] { Lr, new Key("momentum", "momentum", s => D(s, "momentum")), new Key("alpha", "alpha", s => D(s, "alpha")), Eps, new Key("centered", "centered", s => B(s, "centered")), Wd },
            new (string, object?)[] { ("capturable", false), ("foreach", null), ("maximize", false), ("differentiable", false) },
            new[] { ("square_avg", "nu"), ("momentum_buffer", "momentum"), ("grad_avg", "mean") }, HasStep: true),
        new(TorchOptimizerKind.Adagrad, "Adagrad",
            new[] { Lr, new Key("lr_decay", "lrDecay", s => D(s, "lrDecay")), Eps, Wd, new Key("initial_accumulator_value", "initialAccumulatorValue", s => D(s, "initialAccumulatorValue")) },
            new (string, object?)[] { ("foreach", null), ("maximize", false), ("differentiable", false), ("fused", null) },
            new[] { ("sum", "nu") }, HasStep: true),
    };

    // Group keys that choose how torch runs a step, not what it computes (and a scheduler's record of the base rate).
    static readonly HashSet<string> Ignored = new() { "foreach", "fused", "capturable", "differentiable", "initial_lr", "param_names", "params" };

    // The Lookahead kinds (Transforms.Define names) of the mapped optimizers; others defined through them are followed.
    static (Kind Kind, Spec Spec)? Recognise(Spec spec)
    {
        for (var s = spec; s is not null; s = s.Entries.FirstOrDefault(e => e.Key == "definition").Value as Spec)
        {
            var which = s.Kind switch
            {
                "sgd" => TorchOptimizerKind.Sgd,
                "adam" => TorchOptimizerKind.Adam,
                "adam_w" => TorchOptimizerKind.AdamW,
                "rms_prop" => TorchOptimizerKind.RmsProp,
                "adagrad" => TorchOptimizerKind.Adagrad,
                _ => (TorchOptimizerKind?)null,
            };
            if (which is { } w) return (Kinds[(int)w], s);
            if (s.Kind is not ("heavy_ball" or "nesterov_sgd" or "ams_grad")) return null;
        }
        return null;
    }

    static (Kind Kind, Spec Spec) RecogniseOrThrow(IGradientTransformation transform, string parameter) =>
        Recognise(transform.Spec) ?? throw new NotSupportedException(
            $"{parameter}: '{transform.Name}' has no torch.optim state dict; SGD, Adam, AdamW, RMSprop and Adagrad are mapped (Optim.Sgd, Optim.Adam, Optim.AdamW, Optim.RmsProp, Optim.Adagrad and the optimizers defined through them)");

    /// <summary>
    /// Reads the state dict at <paramref name="path"/> into a new state of <paramref name="transform"/> for
    /// <paramref name="parameters"/>, after checking that its hyperparameters are the transform's.
    /// </summary>
    /// <param name="path">A file written by <c>torch.save(optimizer.state_dict(), path)</c> (PyTorch ≥ 1.6) or by <see cref="Save"/>.</param>
    /// <param name="transform">One of the mapped optimizers (see the class remarks), with the state dict's hyperparameters.</param>
    /// <param name="parameters">The parameters, on the device the state should live on.</param>
    /// <param name="names">The tree's name of each state-dict parameter, in the state dict's order; null: the tree's order (or the file's <c>param_names</c>).</param>
    /// <returns>The state, the caller's.</returns>
    public static IOptState Load(string path, IGradientTransformation transform, TensorTree parameters, IReadOnlyList<string>? names = null)
    {
        Check.NotNull(path, nameof(path));
        Check.NotNull(transform, nameof(transform));
        Check.NotNull(parameters, nameof(parameters));
        var (kind, spec) = RecogniseOrThrow(transform, nameof(transform));
        using var archive = TorchArchive.Open(path);
        var dict = Parse(path, archive.Root, kind);
        foreach (var key in kind.Hyper)
        {
            if (!dict.Group.TryGet(key.Torch, out var saved))
            {
                if (key.Torch == "decoupled_weight_decay") continue; // only PyTorch ≥ 2.6 writes it
                throw new ArgumentException($"'{path}': param_groups[0] has no '{key.Torch}'; a {kind.Name} state dict has it");
            }
            var expected = key.Value(spec);
            if (!SameValue(saved, expected))
                throw new ArgumentException($"'{path}': param_groups[0].{key.Torch} = {TorchPickle.Describe(saved)} but the optimizer has {key.Lookahead} = {TorchPickle.Describe(expected)} ('{transform.Name}'); build it with the state dict's value, or use TorchStateDict.LoadOptimizer", nameof(transform));
        }
        return Fill(path, archive, dict, kind, transform, parameters, names);
    }

    /// <summary>
    /// Reads the state dict at <paramref name="path"/> as a <paramref name="kind"/> optimizer: the Lookahead optimizer
    /// built from its param groups' hyperparameters, and its state for <paramref name="parameters"/>.
    /// </summary>
    /// <param name="path">A file written by <c>torch.save(optimizer.state_dict(), path)</c> or by <see cref="Save"/>.</param>
    /// <param name="kind">The torch.optim class that saved it (a state dict does not record it: Adam's and AdamW's look alike).</param>
    /// <param name="parameters">The parameters.</param>
    /// <param name="names">As in <see cref="Load"/>.</param>
    public static (IGradientTransformation Transform, IOptState State) LoadOptimizer(string path, TorchOptimizerKind kind, TensorTree parameters, IReadOnlyList<string>? names = null)
    {
        Check.NotNull(path, nameof(path));
        Check.NotNull(parameters, nameof(parameters));
        if (!Enum.IsDefined(kind)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a TorchOptimizerKind");
        var k = Kinds[(int)kind];
        using var archive = TorchArchive.Open(path);
        var dict = Parse(path, archive.Root, k);
        var g = dict.Group;
        double Num(string key) => Number(path, g, key);
        bool Flag(string key) => g.TryGet(key, out var v) ? v as bool? ?? throw Bad(path, $"param_groups[0].{key} is {TorchPickle.Describe(v)}, not a bool") : throw Bad(path, $"param_groups[0] has no '{key}'");
        (double, double) Pair(string key) => g.TryGet(key, out var v) && v is PyTuple { Items: [var a, var b] } && ToDouble(a) is { } x && ToDouble(b) is { } y
            ? (x, y) : throw Bad(path, $"param_groups[0].{key} is not a pair of numbers");
        if (g.TryGet("decoupled_weight_decay", out var dwd) && dwd is bool decoupled && (kind == TorchOptimizerKind.Adam && decoupled || kind == TorchOptimizerKind.AdamW && !decoupled))
            throw new ArgumentException($"'{path}': param_groups[0].decoupled_weight_decay = {TorchPickle.Describe(dwd)}: this is {(decoupled ? "AdamW" : "Adam")}'s state dict, not {k.Name}'s", nameof(kind));
        IGradientTransformation transform;
        try
        {
            transform = kind switch
            {
                TorchOptimizerKind.Sgd => Optim.Sgd(Num("lr"), Num("momentum"), Num("dampening"), Num("weight_decay"), Flag("nesterov")),
                TorchOptimizerKind.Adam => Optim.Adam(Num("lr"), Pair("betas").Item1, Pair("betas").Item2, Num("eps"), Num("weight_decay"), Flag("amsgrad")),
                TorchOptimizerKind.AdamW => Optim.AdamW(Num("lr"), Pair("betas").Item1, Pair("betas").Item2, Num("eps"), Num("weight_decay"), Flag("amsgrad")),
                TorchOptimizerKind.RmsProp => Optim.RmsProp(Num("lr"), Num("alpha"), Num("eps"), Num("weight_decay"), Num("momentum"), Flag("centered")),
                _ => Optim.Adagrad(Num("lr"), Num("lr_decay"), Num("weight_decay"), Num("initial_accumulator_value"), Num("eps")),
            };
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"'{path}': the param groups' hyperparameters do not make a valid {k.Name}: {e.Message}", nameof(path), e);
        }
        return (transform, Fill(path, archive, dict, k, transform, parameters, names));
    }

    /// <summary>
    /// Writes <paramref name="state"/> of <paramref name="transform"/> as a torch.optim state dict that PyTorch's
    /// <c>load_state_dict</c> continues from (one param group holding every parameter).
    /// </summary>
    /// <param name="path">The file; replaced atomically.</param>
    /// <param name="transform">One of the mapped optimizers.</param>
    /// <param name="state">Its state for <paramref name="parameters"/>.</param>
    /// <param name="parameters">The parameters the state belongs to.</param>
    /// <param name="names">The tree's name of each state-dict parameter 0, 1, … (the order of the PyTorch model's <c>parameters()</c>); null: the tree's order.</param>
    public static void Save(string path, IGradientTransformation transform, IOptState state, TensorTree parameters, IReadOnlyList<string>? names = null)
    {
        Check.NotNull(path, nameof(path));
        Check.NotNull(transform, nameof(transform));
        Check.NotNull(state, nameof(state));
        Check.NotNull(parameters, nameof(parameters));
        var (kind, spec) = RecogniseOrThrow(transform, nameof(transform));
        var order = Order(names, parameters, parameters.Count, null);
        var leaves = state.Leaves().ToList();
        var slots = Slots(kind, leaves.Where(l => l.Tensor is not null).ToList(), parameters, nameof(state));
        // The steps are the leaves named count; the only other scalar of a mapped optimizer is Nesterov's constant
        // schedule's carry, which never changes.
        var counts = leaves.Where(l => l.Tensor is null && IsCount(l.Path)).Select(l => (l.Path, Value: l.Scalar!.Value)).ToList();
        long step = StepOf(counts, nameof(state));

        var tensors = new List<TorchPickle.TensorToWrite>();
        var perParameter = new PyDict();
        using var scope = NewDisposeScope();
        for (int i = 0; i < order.Length; i++)
        {
            var name = parameters.Names[order[i]];
            var entry = new PyDict();
            if (kind.HasStep && (step > 0 || kind.Which == TorchOptimizerKind.Adagrad))
            {
                var t = step <= 1 << 24 ? tensor((float)step) : tensor((double)step);
                entry.Set("step", Add(t));
            }
            if (step > 0 || kind.Which == TorchOptimizerKind.Adagrad)
                foreach (var (torchKey, slot) in kind.State)
                    if (slots.TryGetValue((slot, name), out var t)) entry.Set(torchKey, Add(t));
            if (entry.Items.Count > 0) perParameter.Set((long)i, entry);
        }
        var group = new PyDict();
        foreach (var key in kind.Hyper) group.Set(key.Torch, key.Value(spec));
        foreach (var (key, value) in kind.Defaults) group.Set(key, value);
        group.Set("params", Enumerable.Range(0, order.Length).Select(i => (object?)(long)i).ToList());
        var root = new PyDict();
        root.Set("state", perParameter);
        root.Set("param_groups", new List<object?> { group });
        TorchArchive.Write(path, root, tensors);

        TorchPickle.TensorToWrite Add(Tensor t)
        {
            var w = new TorchPickle.TensorToWrite(t, tensors.Count.ToString(CultureInfo.InvariantCulture));
            tensors.Add(w);
            return w;
        }
    }

    /// <summary>
    /// Writes <paramref name="parameters"/> as a module state dict (name → tensor) that PyTorch's
    /// <c>model.load_state_dict(torch.load(path))</c> reads, the tree's names as keys.
    /// </summary>
    /// <param name="path">The file; replaced atomically.</param>
    /// <param name="parameters">The tensors (any dtype torch stores, any device: copied to the CPU to be written).</param>
    public static void SaveParameters(string path, TensorTree parameters)
    {
        Check.NotNull(path, nameof(path));
        Check.NotNull(parameters, nameof(parameters));
        var tensors = new List<TorchPickle.TensorToWrite>();
        var root = new PyDict();
        foreach (var (name, t) in parameters)
        {
            if (!TorchPickle.Storages.Any(s => s.DType == t.dtype)) throw new ArgumentException($"parameter '{name}' is {t.dtype}, which a torch.save file does not store here", nameof(parameters));
            var w = new TorchPickle.TensorToWrite(t, tensors.Count.ToString(CultureInfo.InvariantCulture));
            tensors.Add(w);
            root.Set(name, w);
        }
        TorchArchive.Write(path, root, tensors);
    }

    /// <summary>
    /// Reads a module state dict (<c>torch.save(model.state_dict(), path)</c>) as a tree, in the file's order, on the CPU.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <returns>The tensors, the caller's.</returns>
    public static TensorTree LoadParameters(string path)
    {
        Check.NotNull(path, nameof(path));
        using var archive = TorchArchive.Open(path);
        if (archive.Root is not PyDict d) throw Bad(path, "not a state dict (a dict of name → tensor)");
        var items = new List<(string, Tensor)>();
        try
        {
            foreach (var kv in d.Items)
            {
                var name = kv.Key as string ?? throw Bad(path, $"a key {TorchPickle.Describe(kv.Key)} that is not a name");
                var t = kv.Value as PickledTensor ?? throw Bad(path, $"'{name}' is {TorchPickle.Describe(kv.Value)}, not a tensor");
                items.Add((name, archive.Materialize(t)));
            }
            return TensorTree.Of(items);
        }
        catch
        {
            foreach (var (_, t) in items) t.Dispose();
            throw;
        }
    }

    sealed record Parsed(PyDict Group, long[] Ids, PyDict State, IReadOnlyList<string>? ParamNames);

    static Exception Bad(string path, string message) => new System.IO.InvalidDataException($"'{path}': {message}");

    static Parsed Parse(string path, object? root, Kind kind)
    {
        if (root is not PyDict top || !top.TryGet("state", out var stateObj) || !top.TryGet("param_groups", out var groupsObj))
            throw Bad(path, "not an optimizer state dict (a dict with 'state' and 'param_groups')");
        if (stateObj is not PyDict state) throw Bad(path, "'state' is not a dict");
        if (groupsObj is not List<object?> { Count: > 0 } groups) throw Bad(path, "'param_groups' is not a non-empty list");
        var ids = new List<long>();
        List<string>? paramNames = null;
        PyDict? first = null;
        for (int gi = 0; gi < groups.Count; gi++)
        {
            if (groups[gi] is not PyDict g) throw Bad(path, $"param_groups[{gi}] is not a dict");
            if (!g.TryGet("params", out var ps) || ps is not List<object?> plist) throw Bad(path, $"param_groups[{gi}] has no 'params' list");
            foreach (var p in plist) ids.Add(p as long? ?? throw Bad(path, $"param_groups[{gi}].params holds {TorchPickle.Describe(p)}, not a parameter index"));
            if (g.TryGet("param_names", out var pn) && pn is List<object?> nl)
            {
                paramNames ??= new List<string>();
                foreach (var n in nl) paramNames.Add(n as string ?? throw Bad(path, $"param_groups[{gi}].param_names holds {TorchPickle.Describe(n)}"));
            }
            foreach (var kv in g.Items)
            {
                var key = kv.Key as string ?? throw Bad(path, $"param_groups[{gi}] has a key {TorchPickle.Describe(kv.Key)}");
                if (Ignored.Contains(key)) continue;
                if (key == "maximize")
                {
                    if (kv.Value is true) throw new NotSupportedException($"'{path}': param_groups[{gi}].maximize = True (gradient ascent) is not mapped; Lookahead's optimizers descend");
                    continue;
                }
                if (!kind.Hyper.Any(h => h.Torch == key))
                    throw Bad(path, $"param_groups[{gi}] has '{key}', which {kind.Name}'s state dict does not (keys: {string.Join(", ", kind.Hyper.Select(h => h.Torch))}): is it another optimizer's?");
                if (first is not null && (!first.TryGet(key, out var v0) || !SameValue(v0, kv.Value)))
                    throw new NotSupportedException($"'{path}': param_groups[{gi}].{key} = {TorchPickle.Describe(kv.Value)} differs from param_groups[0]'s {(first.TryGet(key, out var w) ? TorchPickle.Describe(w) : "(none)")}; groups with different hyperparameters are more than one optimizer, and a Lookahead optimizer carries one set");
            }
            first ??= g;
        }
        if (ids.Distinct().Count() != ids.Count) throw Bad(path, "a parameter index appears in more than one place in param_groups");
        if (paramNames is not null && paramNames.Count != ids.Count) throw Bad(path, $"param_names lists {paramNames.Count} names for {ids.Count} parameters");
        return new Parsed(first!, ids.ToArray(), state, paramNames);
    }

    static bool SameValue(object? a, object? b) => (a, b) switch
    {
        (PyTuple x, PyTuple y) => x.Items.Count == y.Items.Count && x.Items.Zip(y.Items).All(p => SameValue(p.First, p.Second)),
        (bool x, bool y) => x == y,
        (bool, _) or (_, bool) => false,
        _ when ToDouble(a) is { } x && ToDouble(b) is { } y => x == y,
        _ => Equals(a, b),
    };

    static double? ToDouble(object? v) => v switch { long l => l, double d => d, _ => null };

    static double Number(string path, PyDict g, string key) =>
        g.TryGet(key, out var v) ? ToDouble(v) ?? throw Bad(path, $"param_groups[0].{key} is {TorchPickle.Describe(v)}, not a number") : throw Bad(path, $"param_groups[0] has no '{key}'");

    /// <summary>Tree positions in state-dict order: by <paramref name="names"/>, else <paramref name="fileNames"/>, else the tree's order.</summary>
    static int[] Order(IReadOnlyList<string>? names, TensorTree parameters, int count, IReadOnlyList<string>? fileNames)
    {
        var list = names ?? fileNames;
        string source = names is not null ? nameof(names) : "the state dict's param_names";
        if (list is null)
        {
            if (parameters.Count != count)
                throw new ArgumentException($"the state dict has {count} parameters and the tree {parameters.Count}; match them by order only when the counts agree, or give names", nameof(parameters));
            return Enumerable.Range(0, count).ToArray();
        }
        if (list.Count != count) throw new ArgumentException($"{source} has {list.Count} entries for the state dict's {count} parameters", names is not null ? nameof(names) : nameof(parameters));
        if (parameters.Count != count) throw new ArgumentException($"the state dict has {count} parameters and the tree {parameters.Count}; every parameter is matched once", nameof(parameters));
        var index = parameters.Names.Select((n, i) => (n, i)).ToDictionary(x => x.n, x => x.i);
        var order = new int[count];
        var seen = new HashSet<string>();
        for (int i = 0; i < count; i++)
        {
            var n = list[i] ?? throw new ArgumentException($"{source}[{i}] is null", nameof(names));
            if (!index.TryGetValue(n, out order[i])) throw new ArgumentException($"{source}[{i}] = '{n}' is not a parameter of the tree (names: {string.Join(", ", parameters.Names)})", names is not null ? nameof(names) : nameof(parameters));
            if (!seen.Add(n)) throw new ArgumentException($"{source} names '{n}' twice", names is not null ? nameof(names) : nameof(parameters));
        }
        return order;
    }

    /// <summary>The state's tensors by (slot, parameter name); every tensor leaf must be one of the kind's slots.</summary>
    static Dictionary<(string Slot, string Name), Tensor> Slots(Kind kind, IReadOnlyList<StateLeaf> tensorLeaves, TensorTree parameters, string what)
    {
        var result = new Dictionary<(string, string), Tensor>();
        foreach (var leaf in tensorLeaves)
        {
            var name = parameters.Names.Where(n => leaf.Path.EndsWith("/" + n, StringComparison.Ordinal)).OrderByDescending(n => n.Length).FirstOrDefault()
                ?? throw new ArgumentException($"{what}: the state's leaf '{leaf.Path}' belongs to no parameter of the tree", what);
            var head = leaf.Path[..^(name.Length + 1)];
            var slot = head[(head.LastIndexOf('/') + 1)..];
            if (!kind.State.Any(s => s.Slot == slot))
                throw new ArgumentException($"{what}: the state's leaf '{leaf.Path}' has no counterpart in {kind.Name}'s state dict", what);
            result[(slot, name)] = leaf.Tensor!;
        }
        return result;
    }

    static bool IsCount(string path) => path == "count" || path.EndsWith("/count", StringComparison.Ordinal);

    static long StepOf(IReadOnlyList<(string Path, double Value)> counts, string what)
    {
        if (counts.Count == 0) return 0;
        var c = counts[0].Value;
        foreach (var (p, v) in counts)
            if (v != c) throw new ArgumentException($"{what}: the state's counts differ ('{counts[0].Path}' = {c}, '{p}' = {v}); a torch.optim state dict has one step", what);
        return (long)c;
    }

    static IOptState Fill(string path, TorchArchive archive, Parsed dict, Kind kind, IGradientTransformation transform, TensorTree parameters, IReadOnlyList<string>? names)
    {
        var order = Order(names, parameters, dict.Ids.Length, dict.ParamNames);
        // Per parameter (tree position), the state dict's entry, or null for a parameter without state.
        var entries = new PyDict?[parameters.Count];
        for (int j = 0; j < dict.Ids.Length; j++)
        {
            if (!dict.State.TryGet(dict.Ids[j], out var e) || e is null) continue;
            entries[order[j]] = e as PyDict ?? throw Bad(path, $"state[{dict.Ids[j]}] is not a dict");
        }
        foreach (var kv in dict.State.Items)
            if (kv.Key is not long id || !dict.Ids.Contains(id)) throw Bad(path, $"state has an entry {TorchPickle.Describe(kv.Key)} for no parameter of param_groups");
        int withState = entries.Count(e => e is not null && e.Items.Any(x => x.Value is not null));
        if (withState != 0 && withState != parameters.Count)
        {
            var missing = parameters.Names.Where((_, i) => entries[i] is null || entries[i]!.Items.All(x => x.Value is null)).ToList();
            throw new NotSupportedException($"'{path}': {string.Join(", ", missing.Select(n => $"'{n}'"))} {(missing.Count == 1 ? "has" : "have")} no state while other parameters do (torch starts a parameter's state at its first gradient); Lookahead keeps one step for all parameters");
        }
        string Id(int treePos) => dict.Ids[Array.IndexOf(order, treePos)].ToString(CultureInfo.InvariantCulture);

        // The step, the same for every parameter.
        long step = 0;
        if (withState > 0)
        {
            if (kind.HasStep)
            {
                long? common = null;
                for (int i = 0; i < parameters.Count; i++)
                {
                    if (!entries[i]!.TryGet("step", out var sv)) throw Bad(path, $"state[{Id(i)}] has no 'step'");
                    double s = sv switch
                    {
                        long l => l,
                        double d => d,
                        PickledTensor { Shape.Length: 0 or 1 } t when t.StorageElements >= 1 => ReadScalar(archive, t),
                        _ => throw Bad(path, $"state[{Id(i)}].step is {TorchPickle.Describe(sv)}, not a step count"),
                    };
                    if (s < 0 || s != Math.Floor(s) || s > 1e15) throw Bad(path, $"state[{Id(i)}].step = {s} is not a step count");
                    if (common is { } c && c != (long)s)
                        throw new NotSupportedException($"'{path}': state[{Id(i)}].step = {s} but another parameter is at step {c}; Lookahead keeps one step for all parameters");
                    common = (long)s;
                }
                step = common ?? 0;
            }
            else step = 1; // SGD keeps no step; its buffers exist from the first step on.
        }

        // Check every tensor before building anything.
        var template = transform.Init(parameters);
        try
        {
            var leaves = template.Leaves().ToList();
            var slots = Slots(kind, leaves.Where(l => l.Tensor is not null).ToList(), parameters, nameof(transform));
            var sources = new Dictionary<(string, string), PickledTensor>();
            for (int i = 0; i < parameters.Count && withState > 0; i++)
            {
                var name = parameters.Names[i];
                foreach (var kv in entries[i]!.Items)
                {
                    var key = (string)kv.Key;
                    if (key == "step" && kind.HasStep) continue;
                    var map = kind.State.FirstOrDefault(s => s.Torch == key);
                    if (map.Torch is null) throw Bad(path, $"state[{Id(i)}] has '{key}', which {kind.Name}'s state does not (keys: {string.Join(", ", kind.State.Select(s => s.Torch))})");
                    if (kv.Value is null) continue;
                    if (kv.Value is not PickledTensor pt) throw Bad(path, $"state[{Id(i)}].{key} is {TorchPickle.Describe(kv.Value)}, not a tensor");
                    if (!slots.TryGetValue((map.Slot, name), out var target))
                        throw new ArgumentException($"'{path}': state[{Id(i)}] has '{key}', which '{transform.Name}' does not keep (is the state dict's optimizer configured alike?)", nameof(transform));
                    if (!pt.Shape.SequenceEqual(target.shape))
                        throw new ArgumentException($"'{path}': state[{Id(i)}].{key} has shape [{string.Join(", ", pt.Shape)}] but parameter '{name}' has [{string.Join(", ", target.shape)}]", nameof(parameters));
                    if (pt.DType != target.dtype)
                        throw new ArgumentException($"'{path}': state[{Id(i)}].{key} is {pt.DType} but the state of '{name}' is {target.dtype}; no conversion is made (convert in PyTorch, or give parameters of that dtype)", nameof(parameters));
                    sources[(map.Slot, name)] = pt;
                }
            }
            if (withState > 0)
                foreach (var ((slot, name), _) in slots)
                    if (!sources.ContainsKey((slot, name)))
                        throw new ArgumentException($"'{path}': state[{Id(parameters.Names.ToList().IndexOf(name))}] has no '{kind.State.First(s => s.Slot == slot).Torch}', which '{transform.Name}' keeps", nameof(transform));

            using (no_grad())
                foreach (var ((slot, name), target) in slots)
                    if (sources.TryGetValue((slot, name), out var pt))
                    {
                        using var values = archive.Materialize(pt);
                        target.copy_(values);
                    }
            return template.MapScalars((p, v) => IsCount(p) ? step : v);
        }
        catch
        {
            OptState.Dispose(template);
            throw;
        }
    }

    static double ReadScalar(TorchArchive archive, PickledTensor t)
    {
        using var v = archive.Materialize(t);
        if (v.numel() != 1) throw new System.IO.InvalidDataException("a step tensor with more than one element");
        using var d = v.to_type(ScalarType.Float64);
        return d.item<double>();
    }
}
