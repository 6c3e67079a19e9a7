using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Cli;

/// <summary>The outcome of replaying one case.</summary>
/// <param name="Name">The case's name.</param>
/// <param name="Passed">Whether every compared value was within tolerance.</param>
/// <param name="MaxAbs">Largest |ours − reference|.</param>
/// <param name="MaxRel">Largest |ours − reference|/|reference| over nonzero references.</param>
/// <param name="Detail">The first disagreement, or the error, or null.</param>
public sealed record ReplayResult(string Name, bool Passed, double MaxAbs, double MaxRel, string? Detail)
{
    /// <summary>The report line: <c>NAME max_abs=… max_rel=… ok|FAIL</c>.</summary>
    public string Line => string.Create(CultureInfo.InvariantCulture, $"{Name} max_abs={MaxAbs:g3} max_rel={MaxRel:g3} {(Passed ? "ok" : "FAIL")}");
}

/// <summary>A malformed case file: a missing or ill-typed field, named.</summary>
public sealed class CaseFormatException(string message) : Exception(message);

/// <summary>
/// Replays a reference case (the format of <c>shared/oracle/README.md</c>): builds the optimizer through
/// <see cref="Compatibility"/>, feeds the stored gradients (and losses, and previous-iterate gradients for
/// exact schemes) and compares the parameters after every step, and for torch.optim also every state slot,
/// within |a − b| ≤ 1e-10 + 1e-8·|b|. Orthogonaliser cases compare Newton–Schulz outputs.
/// </summary>
public static class Replay
{
    /// <summary>The tolerance of the oracle's float64 cases.</summary>
    public static Tolerance Tolerance { get; } = new(1e-10, 1e-8);

    /// <summary>
    /// The tolerance of a case whose reference kept float32 casts in its linear algebra (SOAP's official basis
    /// numerics): float32 eigen- and QR factorisations differ between LAPACK builds at 1e-7, so such a case is a
    /// smoke test at |a − b| ≤ 1e-6 + 1e-6·|b| (its float64 twin is held to <see cref="Tolerance"/>).
    /// </summary>
    public static Tolerance Float32Tolerance { get; } = new(1e-6, 1e-6);

    /// <summary>The case files under the given files and folders (folders: their *.json, sorted).</summary>
    public static IEnumerable<string> CaseFiles(IEnumerable<string> paths)
    {
        foreach (var p in paths)
        {
            if (Directory.Exists(p)) foreach (var f in Directory.GetFiles(p, "*.json").OrderBy(f => f, StringComparer.Ordinal)) yield return f;
            else if (File.Exists(p)) yield return p;
            else throw new FileNotFoundException($"no case file or folder at '{p}'", p);
        }
    }

    /// <summary>Replays one file; never throws for a bad case (the result carries the error).</summary>
    public static ReplayResult Run(string file)
    {
        string name = Path.GetFileNameWithoutExtension(file);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            var root = doc.RootElement;
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String) name = n.GetString()!;
            return Run(name, root);
        }
        catch (Exception e) when (IsCaseError(e))
        {
            return new(name, false, double.NaN, double.NaN, $"{e.GetType().Name}: {e.Message}");
        }
    }

    static bool IsCaseError(Exception e) =>
        e is JsonException or CaseFormatException or CompatibilityException or IOException or ArgumentException or InvalidOperationException or FormatException;

    /// <summary>Replays a parsed case; never throws for a bad case (the result carries the error).</summary>
    public static ReplayResult Run(string name, JsonElement root)
    {
        try { return RunCase(name, root); }
        catch (Exception e) when (IsCaseError(e))
        {
            return new(name, false, double.NaN, double.NaN, $"{e.GetType().Name}: {e.Message}");
        }
    }

    static JsonElement Field(JsonElement e, string field, string where)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(field, out var v))
            throw new CaseFormatException($"{where}: field '{field}' is missing");
        return v;
    }

    static JsonElement Array(JsonElement e, string field, string where)
    {
        var v = Field(e, field, where);
        return v.ValueKind == JsonValueKind.Array ? v : throw new CaseFormatException($"{where}: field '{field}' must be an array");
    }

    static double[] Floats(JsonElement e, string where)
    {
        if (e.ValueKind != JsonValueKind.Array) throw new CaseFormatException($"{where}: expected an array of numbers");
        return e.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Number ? x.GetDouble() : throw new CaseFormatException($"{where}: expected numbers, found {x.ValueKind}")).ToArray();
    }

    static string Text(JsonElement e, string field, string where)
    {
        var v = Field(e, field, where);
        return v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new CaseFormatException($"{where}: field '{field}' must be a string");
    }

    static Tensor Tensor(double[] values, long[] shape, string where)
    {
        long n = shape.Aggregate(1L, (a, b) => a * b);
        if (values.Length != n) throw new CaseFormatException($"{where}: {values.Length} values for shape [{string.Join(", ", shape)}] (expected {n})");
        return tensor(values, dtype: ScalarType.Float64).reshape(shape);
    }

    static ReplayResult RunCase(string name, JsonElement root)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        string optimizer = Text(root, "optimizer", name);
        if (optimizer == "orthogonaliser") return Orthogonaliser(name, root);

        var params0 = Array(root, "params0", name).EnumerateArray().ToArray();
        var names = params0.Select((p, i) => Text(p, "name", $"{name}: params0[{i}]")).ToArray();
        var shapes = params0.Select((p, i) => Floats(Array(p, "shape", $"{name}: params0[{i}]"), $"{name}: params0[{i}].shape").Select(d => (long)d).ToArray()).ToArray();
        TensorTree Tree(JsonElement perParam, string where)
        {
            var items = perParam.ValueKind == JsonValueKind.Array ? perParam.EnumerateArray().ToArray() : throw new CaseFormatException($"{where}: expected one array per parameter");
            if (items.Length != names.Length) throw new CaseFormatException($"{where}: {items.Length} tensors for {names.Length} parameters");
            return TensorTree.Of(names, items.Select((x, i) => Tensor(Floats(x, $"{where}[{names[i]}]"), shapes[i], $"{where}[{names[i]}]")).ToArray());
        }

        var source = root.TryGetProperty("source", out var s) ? s : default;
        string numerics = root.TryGetProperty("numerics", out var nu) && nu.ValueKind == JsonValueKind.String ? nu.GetString()! : "";
        string torchVersion = source.ValueKind == JsonValueKind.Object && source.TryGetProperty("torch_version", out var tv) && tv.ValueKind == JsonValueKind.String ? tv.GetString()! : "";
        var runtime = new Compatibility.Runtime(
            BFloat16: numerics.Contains("bfloat16", StringComparison.OrdinalIgnoreCase) && !numerics.Contains("no-op", StringComparison.OrdinalIgnoreCase),
            Torch113: torchVersion.StartsWith("1.", StringComparison.Ordinal),
            ConstructorKwargs: root.TryGetProperty("constructor_kwargs", out var kw) ? kw : null,
            ParamGroups: root.TryGetProperty("param_groups", out var pg) ? pg : null,
            Float32Basis: numerics.Contains("cast to float32", StringComparison.OrdinalIgnoreCase) && !numerics.Contains("no-op", StringComparison.OrdinalIgnoreCase));
        var tx = Compatibility.Build(optimizer, Field(root, "hyperparameters", name), names, runtime);

        var grads = Array(root, "grads", name).EnumerateArray().ToArray();
        var trajectory = Array(root, "trajectory", name).EnumerateArray().ToArray();
        if (trajectory.Length != grads.Length) throw new CaseFormatException($"{name}: {grads.Length} gradient steps but {trajectory.Length} trajectory steps");
        double[]? losses = root.TryGetProperty("losses", out var l) ? Floats(l, $"{name}: losses") : null;
        if (losses is not null && losses.Length < grads.Length) throw new CaseFormatException($"{name}: {losses.Length} losses for {grads.Length} steps");
        var prevGrads = root.TryGetProperty("prev_grads", out var pgr) && pgr.ValueKind == JsonValueKind.Array ? pgr.EnumerateArray().ToArray() : null;
        var evalTrajectory = root.TryGetProperty("eval_trajectory", out var et) && et.ValueKind == JsonValueKind.Array ? et.EnumerateArray().ToArray() : null;
        if (evalTrajectory is not null && evalTrajectory.Length != grads.Length) throw new CaseFormatException($"{name}: {grads.Length} gradient steps but {evalTrajectory.Length} eval_trajectory steps");
        // Hypergradient descent: the group's learning rate after each step, against the rate in the state.
        var rates = optimizer is "SGDHD" or "AdamHD" && root.TryGetProperty("optimizer_scalars_after_step", out var sc) && sc.ValueKind == JsonValueKind.Array
            ? sc.EnumerateArray().Select((x, k) => x.TryGetProperty("lr", out var r) ? r.GetDouble() : throw new CaseFormatException($"{name}: optimizer_scalars_after_step[{k}] has no lr")).ToArray() : null;
        var states = optimizer.StartsWith("torch.optim.", StringComparison.Ordinal) && root.TryGetProperty("state_after_step", out var st) && st.ValueKind == JsonValueKind.Array
            ? st.EnumerateArray().ToArray() : null;

        var parameters = TensorTree.Of(names, params0.Select((p, i) =>
            Tensor(Floats(Array(p, "values", $"{name}: params0[{i}]"), $"{name}: params0[{i}].values"), shapes[i], $"{name}: params0[{i}]")).ToArray());
        var state = tx.Init(parameters);
        var compare = new Comparison(name, runtime.Float32Basis ? Float32Tolerance : Tolerance);
        for (int k = 0; k < grads.Length; k++)
        {
            var g = Tree(grads[k], $"{name}: grads[{k}]");
            var context = StepContext.Empty;
            if (losses is not null) context = context.WithLoss(losses[k]);
            if (prevGrads is not null && k >= 1)
            {
                if (prevGrads.Length < k) throw new CaseFormatException($"{name}: prev_grads has {prevGrads.Length} steps; step {k + 1} needs {k}");
                context = context.With(ContextKeys.PreviousIterateGradient, Tree(prevGrads[k - 1], $"{name}: prev_grads[{k - 1}]"));
            }
            var (updates, next) = tx.Update(g, state, parameters, context);
            parameters = Updates.Apply(parameters, updates);
            state = next;
            var expected = Tree(trajectory[k], $"{name}: trajectory[{k}]");
            for (int i = 0; i < names.Length; i++) compare.Values($"step {k + 1} parameter {names[i]}", parameters.Tensors[i], expected.Tensors[i]);
            if (evalTrajectory is not null)
            {
                // Schedule-Free: the evaluation point x after the step, from the state (the parameters hold y).
                var x = Evaluation.Parameters(tx, state, parameters);
                var expectedX = Tree(evalTrajectory[k], $"{name}: eval_trajectory[{k}]");
                for (int i = 0; i < names.Length; i++) compare.Values($"step {k + 1} evaluation point {names[i]}", x.Tensors[i], expectedX.Tensors[i]);
            }
            if (states is not null && k < states.Length) CompareTorchState(compare, states[k], state, k);
            if (rates is not null && k < rates.Length)
            {
                using var ours = tensor(new[] { Hypergradient.LearningRate(state) }, dtype: ScalarType.Float64);
                using var reference = tensor(new[] { rates[k] }, dtype: ScalarType.Float64);
                compare.Values($"step {k + 1} learning rate", ours, reference);
            }
        }
        return compare.Result();
    }

    /// <summary>torch.optim's state slots and the leaf of Lookahead's state that holds the same numbers.</summary>
    static readonly Dictionary<string, string> TorchSlots = new()
    {
        ["momentum_buffer"] = "momentum", ["exp_avg"] = "momentum", ["exp_avg_sq"] = "nu",
        ["max_exp_avg_sq"] = "nu_max", ["sum"] = "nu", ["square_avg"] = "nu", ["grad_avg"] = "mean",
    };

    static void CompareTorchState(Comparison compare, JsonElement expected, IOptState ours, int k)
    {
        var leaves = ours.Leaves().Where(l => l.Tensor is not null).ToArray();
        foreach (var p in expected.EnumerateObject())
            foreach (var slot in p.Value.EnumerateObject())
            {
                if (!TorchSlots.TryGetValue(slot.Name, out var leaf)) continue;
                var found = leaves.Where(l => l.Path.EndsWith($"/{leaf}/{p.Name}", StringComparison.Ordinal)).ToArray();
                if (found.Length != 1) throw new InvalidOperationException($"state slot {slot.Name} of {p.Name}: {found.Length} matching leaves in Lookahead's state");
                using var reference = tensor(Floats(slot.Value, $"state {p.Name}.{slot.Name}"), dtype: ScalarType.Float64);
                compare.Values($"step {k + 1} state {p.Name}.{slot.Name}", found[0].Tensor!, reference);
            }
    }

    static ReplayResult Orthogonaliser(string name, JsonElement root)
    {
        var source = Field(root, "source", name);
        string path = Text(source, "path", $"{name}: source");
        var args = Field(root, "function_args", name);
        int steps = args.TryGetProperty("steps", out var stp) ? stp.GetInt32() : 5;
        var coefficients = Floats(Array(root, "ns_coefficients", name), $"{name}: ns_coefficients");
        if (coefficients.Length != 3) throw new CaseFormatException($"{name}: ns_coefficients must hold (a, b, c)");
        bool mars = path.Contains("mars", StringComparison.OrdinalIgnoreCase);
        double eps = args.TryGetProperty("eps", out var e) ? e.GetDouble() : 1e-7;
        foreach (var a in args.EnumerateObject())
            if (a.Name is not ("steps" or "eps")) throw new CompatibilityException($"{name}: function argument '{a.Name}' is not mapped");
        string numerics = root.TryGetProperty("numerics", out var nu) && nu.ValueKind == JsonValueKind.String ? nu.GetString()! : "";
        var tx = Transforms.Orthogonalise(new OrthogonaliserOptions
        {
            Coefficients = new(coefficients[0], coefficients[1], coefficients[2]),
            Arrangement = mars ? NewtonSchulzArrangement.Mars : NewtonSchulzArrangement.Muon,
            Steps = steps,
            Epsilon = eps,
            BFloat16 = numerics.Contains("bfloat16", StringComparison.OrdinalIgnoreCase) && !numerics.Contains("no-op", StringComparison.OrdinalIgnoreCase),
        });
        var compare = new Comparison(name, Tolerance);
        int index = 0;
        foreach (var c in Array(root, "cases", name).EnumerateArray())
        {
            string where = $"{name}: cases[{index}]";
            var shape = Floats(Array(c, "shape", where), where + ".shape").Select(d => (long)d).ToArray();
            var input = Tensor(Floats(Array(c, "input", where), where + ".input"), shape, where + ".input");
            var output = Tensor(Floats(Array(c, "output", where), where + ".output"), shape, where + ".output");
            var tree = TensorTree.Of(("case", input));
            var (u, _) = tx.Update(tree, tx.Init(tree), tree, StepContext.Empty);
            compare.Values($"case {index} shape [{string.Join("x", shape)}]", u.Tensors[0], output);
            index++;
        }
        return compare.Result();
    }

    sealed class Comparison(string name, Tolerance tolerance)
    {
        double _maxAbs, _maxRel;
        string? _first;

        public void Values(string what, Tensor ours, Tensor reference)
        {
            var a = ours.to(ScalarType.Float64).cpu().contiguous().data<double>().ToArray();
            var b = reference.contiguous().data<double>().ToArray();
            if (a.Length != b.Length) throw new CaseFormatException($"{name}: {what}: {a.Length} values, reference has {b.Length}");
            for (int i = 0; i < a.Length; i++)
            {
                double d = Math.Abs(a[i] - b[i]);
                if (double.IsNaN(d)) d = double.PositiveInfinity;
                _maxAbs = Math.Max(_maxAbs, d);
                if (b[i] != 0) _maxRel = Math.Max(_maxRel, d / Math.Abs(b[i]));
                if (_first is null && !tolerance.Accepts(a[i], b[i]))
                    _first = string.Create(CultureInfo.InvariantCulture, $"{what} index {i}: Lookahead {a[i]:R}, reference {b[i]:R}");
            }
        }

        public ReplayResult Result() => new(name, _first is null, _maxAbs, _maxRel, _first);
    }
}
