using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text.Json;

namespace Lookahead.Cli;

/// <summary>An optimizer description Lookahead cannot honour: unknown optimizer, unmapped or missing hyperparameter, bad value.</summary>
public sealed class CompatibilityException(string message) : Exception(message);

/// <summary>The JSON type a constructor argument must have in a case file.</summary>
public enum ArgumentKind
{
    /// <summary>A number.</summary>
    Number,
    /// <summary>A whole number.</summary>
    Integer,
    /// <summary>true or false (or null when the reference default is None).</summary>
    Flag,
    /// <summary>A string.</summary>
    Text,
    /// <summary>Two numbers, such as betas.</summary>
    Pair,
    /// <summary>Three numbers (AdEMAMix's betas).</summary>
    Triple,
    /// <summary>Anything (only for arguments that are accepted and not passed on).</summary>
    Any,
}

/// <summary>What the compatibility map does with a constructor argument.</summary>
public enum ArgumentRole
{
    /// <summary>Passed on to the Lookahead factory; the case must record it.</summary>
    Mapped,
    /// <summary>Passed on, but may be absent (only some versions of the reference have it); absent means its default.</summary>
    Optional,
    /// <summary>Accepted with any value and may be absent; not passed on (an execution strategy, a value the reference never reads, routing).</summary>
    Accepted,
    /// <summary>A flag Lookahead does not reproduce: absent or false is fine, true is an error naming it.</summary>
    Refused,
}

/// <summary>One constructor argument of a reference optimizer.</summary>
/// <param name="Name">The keyword, spelled as in the reference signature.</param>
/// <param name="Kind">The JSON type a case must record for it.</param>
/// <param name="Default">
/// The default in the reference code: a double, int, bool, string, (double, double), null for Python's None,
/// or <see cref="NoDefault"/> for an argument the caller must always give.
/// </param>
/// <param name="Role">What the map does with it.</param>
/// <param name="Note">Why it is optional, accepted or refused (shown by <c>lookahead replay --help</c>).</param>
public sealed record Argument(string Name, ArgumentKind Kind, object? Default, ArgumentRole Role = ArgumentRole.Mapped, string? Note = null)
{
    /// <summary>The marker of an argument without a default.</summary>
    public static readonly object NoDefault = new();

    /// <summary>Whether the reference signature gives a default.</summary>
    public bool HasDefault => !ReferenceEquals(Default, NoDefault);

    /// <summary>The same argument, allowed to be absent (then its default is used).</summary>
    public Argument MayBeAbsent(string note) => this with { Role = ArgumentRole.Optional, Note = note };

    /// <summary>The argument as a signature shows it: <c>name=default</c>, or just the name.</summary>
    public override string ToString() => HasDefault ? $"{Name}={Show(Default)}" : Name;

    /// <summary>A value written as Python would print it.</summary>
    internal static string Show(object? value) => value switch
    {
        null => "None",
        bool b => b ? "True" : "False",
        double d => d.ToString("R", CultureInfo.InvariantCulture).Replace("E", "e", StringComparison.Ordinal),
        int i => i.ToString(CultureInfo.InvariantCulture),
        string s => $"'{s}'",
        ValueTuple<double, double> p => $"({Show(p.Item1)}, {Show(p.Item2)})",
        ValueTuple<double, double, double> p => $"({Show(p.Item1)}, {Show(p.Item2)}, {Show(p.Item3)})",
        _ => value.ToString() ?? "",
    };
}

/// <summary>
/// One row of the compatibility table: a reference constructor, every argument it takes (with its default),
/// and the Lookahead composition built from those arguments.
/// </summary>
/// <param name="Name">The reference class, as a case's <c>optimizer</c> field names it.</param>
/// <param name="Arguments">Every constructor argument; any other hyperparameter in a case is an error.</param>
/// <param name="Factory">Builds the composition; it must read every mapped or optional argument, and no other.</param>
public sealed record Mapping(string Name, IReadOnlyList<Argument> Arguments, Func<ArgumentValues, IGradientTransformation> Factory)
{
    /// <summary>Other class names with the same constructor and the same maths.</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];

    /// <summary>
    /// For a constructor that takes param groups with their own hyperparameters: the rows that map one group.
    /// Empty for the others, and then a case may hold only one param group.
    /// </summary>
    public IReadOnlyList<Mapping> GroupRows { get; init; } = [];

    /// <summary>The argument called <paramref name="name"/>, or null.</summary>
    public Argument? Find(string name) => Arguments.FirstOrDefault(a => a.Name == name);

    /// <summary>
    /// Checks <paramref name="hyperparameters"/> against <see cref="Arguments"/> (missing, unmapped, ill-typed,
    /// refused), then builds the composition and checks that the factory read exactly the arguments the row lists.
    /// </summary>
    /// <param name="hyperparameters">The constructor's arguments, defaults filled in.</param>
    /// <param name="parameterNames">The parameter names, in order.</param>
    /// <param name="runtime">How the reference ran (numerics, routing, param groups).</param>
    /// <param name="calledAs">The name for messages (an alias, a param group), or null for <see cref="Name"/>.</param>
    public IGradientTransformation Bind(JsonElement hyperparameters, IReadOnlyList<string> parameterNames, Compatibility.Runtime runtime, string? calledAs = null)
    {
        var values = new ArgumentValues(calledAs ?? Name, this, hyperparameters, parameterNames, runtime);
        var tx = Factory(values);
        values.CheckEverythingRead();
        return tx;
    }
}

/// <summary>A case's hyperparameters after checking them against a <see cref="Mapping"/>: what its factory reads.</summary>
public sealed class ArgumentValues
{
    readonly string _where;
    readonly Mapping _mapping;
    readonly Dictionary<string, object?> _values = new();
    readonly HashSet<string> _read = new();

    internal ArgumentValues(string where, Mapping mapping, JsonElement h, IReadOnlyList<string> parameterNames, Compatibility.Runtime runtime)
    {
        _where = where;
        _mapping = mapping;
        ParameterNames = parameterNames;
        Runtime = runtime;
        bool isObject = h.ValueKind == JsonValueKind.Object;
        foreach (var a in mapping.Arguments)
        {
            if (isObject && h.TryGetProperty(a.Name, out var v))
            {
                var value = Parse(a, v);
                if (a.Role == ArgumentRole.Refused && value is true) throw new CompatibilityException($"{where}: {a.Name} = true is not supported");
                _values[a.Name] = value;
            }
            else if (a.Role == ArgumentRole.Mapped)
                throw new CompatibilityException($"{where}: hyperparameter '{a.Name}' is missing (the case must record every constructor argument, defaults filled in)");
            else
                _values[a.Name] = a.Default;
        }
        if (!isObject) return;
        foreach (var p in h.EnumerateObject())
            if (mapping.Find(p.Name) is null)
                throw new CompatibilityException($"{where}: hyperparameter '{p.Name}' is not mapped (value {p.Value.GetRawText()}); refusing to guess its meaning");
    }

    /// <summary>The parameter names, in order (for routing).</summary>
    public IReadOnlyList<string> ParameterNames { get; }

    /// <summary>How the reference ran.</summary>
    public Compatibility.Runtime Runtime { get; }

    /// <summary>The name messages use.</summary>
    public string Optimizer => _where;

    /// <summary>A number argument.</summary>
    public double Num(string name) => (double)Value(name, ArgumentKind.Number)!;

    /// <summary>A whole-number argument.</summary>
    public int Int(string name) => (int)Value(name, ArgumentKind.Integer)!;

    /// <summary>A number argument whose reference default is None.</summary>
    public double? NumOrNone(string name) => (double?)Value(name, ArgumentKind.Number);

    /// <summary>A whole-number argument whose reference default is None.</summary>
    public int? IntOrNone(string name) => (int?)Value(name, ArgumentKind.Integer);

    /// <summary>Three numbers.</summary>
    public (double, double, double) Triple(string name) => ((double, double, double))Value(name, ArgumentKind.Triple)!;

    /// <summary>An argument of any JSON type, interpreted by the row's factory (which must refuse what it cannot honour).</summary>
    public JsonElement Raw(string name) => (JsonElement)Value(name, ArgumentKind.Any)!;

    /// <summary>A flag argument whose default is True or False.</summary>
    public bool Flag(string name) => Value(name, ArgumentKind.Flag) as bool? ?? throw Bug($"reads '{name}' as a flag, but its value may be None (use FlagOrNone)");

    /// <summary>A flag argument whose reference default is None.</summary>
    public bool? FlagOrNone(string name) => (bool?)Value(name, ArgumentKind.Flag);

    /// <summary>A string argument.</summary>
    public string Text(string name) => (string)Value(name, ArgumentKind.Text)!;

    /// <summary>A pair of numbers.</summary>
    public (double, double) Pair(string name) => ((double, double))Value(name, ArgumentKind.Pair)!;

    /// <summary>A string argument that selects one of a few values; any other string is an error naming it.</summary>
    public T Choose<T>(string name, params (string Text, T Value)[] options)
    {
        string s = Text(name);
        foreach (var (text, value) in options) if (text == s) return value;
        throw new CompatibilityException($"{_where}: {name} '{s}' is not one of {string.Join(", ", options.Select(o => o.Text))}");
    }

    object? Value(string name, ArgumentKind kind)
    {
        var a = _mapping.Find(name) ?? throw Bug($"reads '{name}', which its row does not list");
        if (a.Kind != kind || a.Role is ArgumentRole.Accepted or ArgumentRole.Refused)
            throw Bug($"reads '{name}' as {kind}, but its row lists it as {a.Kind}, {a.Role}");
        _read.Add(name);
        return _values[name];
    }

    internal void CheckEverythingRead()
    {
        foreach (var a in _mapping.Arguments)
            if (a.Role is ArgumentRole.Mapped or ArgumentRole.Optional && !_read.Contains(a.Name))
                throw Bug($"lists '{a.Name}', but its factory never reads it");
    }

    InvalidOperationException Bug(string what) => new($"compatibility table, row {_mapping.Name}: the row {what}");

    object? Parse(Argument a, JsonElement v)
    {
        string Bad(string expected) => $"{_where}: hyperparameter '{a.Name}' must be {expected}, got {v.GetRawText()}";
        switch (a.Kind)
        {
            case ArgumentKind.Any:
                return v.Clone();
            case ArgumentKind.Number:
                if (v.ValueKind == JsonValueKind.Null && a.HasDefault && a.Default is null) return null;
                // A non-finite float is written as a string ("inf", "-inf"); NaN is never a valid hyperparameter here.
                if (v.ValueKind == JsonValueKind.String && v.GetString() is "inf" or "Infinity") return double.PositiveInfinity;
                if (v.ValueKind == JsonValueKind.String && v.GetString() is "-inf" or "-Infinity") return double.NegativeInfinity;
                return v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw new CompatibilityException(Bad("a number"));
            case ArgumentKind.Integer:
            {
                if (v.ValueKind == JsonValueKind.Null && a.HasDefault && a.Default is null) return null;
                double x = v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw new CompatibilityException(Bad("a number"));
                if (x != Math.Floor(x) || Math.Abs(x) > int.MaxValue) throw new CompatibilityException($"{_where}: hyperparameter '{a.Name}' must be an integer, got {x}");
                return (int)x;
            }
            case ArgumentKind.Flag:
                return v.ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    JsonValueKind.Null when a.HasDefault && a.Default is null => null,
                    _ => throw new CompatibilityException(Bad("true or false")),
                };
            case ArgumentKind.Text:
                return v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new CompatibilityException(Bad("a string"));
            case ArgumentKind.Pair:
                if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() != 2 || v.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.Number))
                    throw new CompatibilityException(Bad("a pair of numbers"));
                return (v[0].GetDouble(), v[1].GetDouble());
            case ArgumentKind.Triple:
                if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() != 3 || v.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.Number))
                    throw new CompatibilityException(Bad("three numbers"));
                return (v[0].GetDouble(), v[1].GetDouble(), v[2].GetDouble());
            default:
                throw Bug($"has an argument '{a.Name}' of unknown kind {a.Kind}");
        }
    }
}

/// <summary>
/// The compatibility map: the Lookahead composition equivalent to a reference optimizer's constructor
/// (torch.optim, MARS, MARS-M, Muon, MoMo, qhoptim, ARSG), from its name and hyperparameters as the
/// oracle case files record them. It is one table, <see cref="Table"/>: a row per constructor with every
/// argument it accepts and that argument's default in the reference code. A hyperparameter the row does not
/// list, a missing one, or a value the composition cannot reproduce is an error — never a silent default.
/// </summary>
public static class Compatibility
{
    /// <summary>What else a case says about how the reference ran.</summary>
    /// <param name="BFloat16">Newton–Schulz ran in bfloat16.</param>
    /// <param name="Torch113">The reference ran on torch 1.13 (affects single-tensor NAdam).</param>
    /// <param name="ConstructorKwargs">The constructor's keyword arguments (routing lists such as muon_params), or null.</param>
    /// <param name="ParamGroups">The param groups as the optimizer held them, or null.</param>
    /// <param name="Float32Basis">SOAP's official float32 casts in its basis computations were kept.</param>
    public sealed record Runtime(bool BFloat16 = false, bool Torch113 = false, JsonElement? ConstructorKwargs = null, JsonElement? ParamGroups = null, bool Float32Basis = false);

    // Argument builders, so that each row below reads like the reference signature.
    static Argument Num(string name, double d) => new(name, ArgumentKind.Number, d);
    static Argument Num(string name) => new(name, ArgumentKind.Number, Argument.NoDefault);
    static Argument Int(string name, int d) => new(name, ArgumentKind.Integer, d);
    static Argument Flag(string name, bool? d) => new(name, ArgumentKind.Flag, d);
    static Argument Text(string name, string d) => new(name, ArgumentKind.Text, d);
    static Argument Pair(string name, double a, double b) => new(name, ArgumentKind.Pair, (a, b));
    static Argument Triple(string name, double a, double b, double c) => new(name, ArgumentKind.Triple, (a, b, c));
    static Argument NumOrNone(string name) => new(name, ArgumentKind.Number, null);
    static Argument IntOrNone(string name) => new(name, ArgumentKind.Integer, null);
    static Argument Raw(string name, object? d) => new(name, ArgumentKind.Any, d);
    static Argument Accepted(string name, object? d, string why) => new(name, ArgumentKind.Any, d, ArgumentRole.Accepted, why);
    static Argument Refused(string name, string why) => new(name, ArgumentKind.Flag, false, ArgumentRole.Refused, why);

    const string NewerTorch = "only in newer torch versions";

    /// <summary>
    /// A torch.optim row: the constructor's own arguments, then the keyword-only flags torch.optim shares. Those
    /// only choose kernels (same maths) and their set differs between torch versions, so each may be absent;
    /// maximize = True is refused. A row that maps one of them itself (NAdam's foreach) keeps its own entry.
    /// Defaults are torch 1.13's, the version the oracle cases were recorded with.
    /// </summary>
    static Argument[] Torch(params Argument[] own)
    {
        Argument[] shared =
        [
            Accepted("foreach", null, "kernel choice"),
            Refused("maximize", "Lookahead minimises"),
            Accepted("capturable", false, "kernel choice"),
            Accepted("differentiable", false, "kernel choice"),
            Accepted("fused", false, "kernel choice"),
        ];
        return [.. own, .. shared.Where(s => own.All(o => o.Name != s.Name))];
    }

    /// <summary>The row for a param group of SingleDeviceMuonWithAuxAdam with <c>use_muon</c> = True.</summary>
    public static Mapping MuonGroupRow { get; } =
        new("SingleDeviceMuonWithAuxAdam group (use_muon=True)",
            [Accepted("params", Argument.NoDefault, "routing"), Accepted("use_muon", Argument.NoDefault, "picks this row"),
             Num("lr", 0.02), Num("momentum", 0.95), Num("weight_decay", 0)],
            a => Optim.Muon(a.Num("lr"), a.Num("weight_decay"), a.Num("momentum"), nesterov: true, bf16: a.Runtime.BFloat16));

    /// <summary>The row for a param group of SingleDeviceMuonWithAuxAdam with <c>use_muon</c> = False (its auxiliary Adam).</summary>
    public static Mapping AuxAdamGroupRow { get; } =
        new("SingleDeviceMuonWithAuxAdam group (use_muon=False)",
            [Accepted("params", Argument.NoDefault, "routing"), Accepted("use_muon", Argument.NoDefault, "picks this row"),
             Num("lr", 3e-4), Pair("betas", 0.9, 0.95), Num("eps", 1e-10), Num("weight_decay", 0)],
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                return Optim.AdamW(a.Num("lr"), b1, b2, a.Num("eps"), a.Num("weight_decay"));
            });

    /// <summary>The rows: every reference constructor the map knows, in the order --help lists them.</summary>
    public static IReadOnlyList<Mapping> Table { get; } =
    [
        new("torch.optim.SGD",
            Torch(Num("lr"), Num("momentum", 0), Num("dampening", 0), Num("weight_decay", 0), Flag("nesterov", false)),
            a => Optim.Sgd(a.Num("lr"), a.Num("momentum"), a.Num("dampening"), a.Num("weight_decay"), a.Flag("nesterov"))),

        new("torch.optim.Adam",
            Torch(Num("lr", 1e-3), Pair("betas", 0.9, 0.999), Num("eps", 1e-8), Num("weight_decay", 0), Flag("amsgrad", false),
                Flag("decoupled_weight_decay", false).MayBeAbsent(NewerTorch)),
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                return a.Flag("decoupled_weight_decay")
                    ? Optim.AdamW(a.Num("lr"), b1, b2, a.Num("eps"), a.Num("weight_decay"), a.Flag("amsgrad"))
                    : Optim.Adam(a.Num("lr"), b1, b2, a.Num("eps"), a.Num("weight_decay"), a.Flag("amsgrad"));
            }),

        new("torch.optim.AdamW",
            Torch(Num("lr", 1e-3), Pair("betas", 0.9, 0.999), Num("eps", 1e-8), Num("weight_decay", 1e-2), Flag("amsgrad", false)),
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                return Optim.AdamW(a.Num("lr"), b1, b2, a.Num("eps"), a.Num("weight_decay"), a.Flag("amsgrad"));
            }),

        new("torch.optim.NAdam",
            Torch(Num("lr", 2e-3), Pair("betas", 0.9, 0.999), Num("eps", 1e-8), Num("weight_decay", 0), Num("momentum_decay", 4e-3),
                Flag("decoupled_weight_decay", false).MayBeAbsent(NewerTorch),
                Flag("foreach", null).MayBeAbsent("None or False is the single-tensor path, which on torch 1.13 has its NAdam bug")),
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                bool singleTensor = a.FlagOrNone("foreach") != true;
                return Optim.NAdam(a.Num("lr"), b1, b2, a.Num("eps"), a.Num("weight_decay"), a.Num("momentum_decay"),
                    a.Flag("decoupled_weight_decay"), torch113: singleTensor && a.Runtime.Torch113);
            }),

        new("torch.optim.RAdam",
            Torch(Num("lr", 1e-3), Pair("betas", 0.9, 0.999), Num("eps", 1e-8), Num("weight_decay", 0),
                Flag("decoupled_weight_decay", false).MayBeAbsent(NewerTorch)),
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                return Optim.RAdam(a.Num("lr"), b1, b2, a.Num("eps"), a.Num("weight_decay"), a.Flag("decoupled_weight_decay"));
            }),

        new("torch.optim.RMSprop",
            Torch(Num("lr", 1e-2), Num("alpha", 0.99), Num("eps", 1e-8), Num("weight_decay", 0), Num("momentum", 0), Flag("centered", false)),
            a => Optim.RmsProp(a.Num("lr"), a.Num("alpha"), a.Num("eps"), a.Num("weight_decay"), a.Num("momentum"), a.Flag("centered"))),

        new("torch.optim.Adagrad",
            Torch(Num("lr", 1e-2), Num("lr_decay", 0), Num("weight_decay", 0), Num("initial_accumulator_value", 0), Num("eps", 1e-10)),
            a => Optim.Adagrad(a.Num("lr"), a.Num("lr_decay"), a.Num("weight_decay"), a.Num("initial_accumulator_value"), a.Num("eps"))),

        // AGI-Arena/MARS: gamma, eps and mars_type are constructor-wide; is_approx = False is the exact scheme.
        new("MARS",
            [Num("lr", 3e-3), Pair("betas", 0.95, 0.99), Num("eps", 1e-8), Num("weight_decay", 0), Flag("amsgrad", false), Num("gamma", 0.025),
             Flag("is_approx", true), Text("mars_type", "mars-adamw"), Flag("optimize_1d", false), Num("lr_1d", 3e-3),
             Pair("betas_1d", 0.9, 0.95), Num("weight_decay_1d", 0.1)],
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                return Optim.Mars(a.Num("lr"), b1, b2, a.Num("eps"), a.Num("weight_decay"), a.Flag("amsgrad"), a.Num("gamma"),
                    exact: !a.Flag("is_approx"),
                    type: a.Choose("mars_type", ("mars-adamw", MarsType.AdamW), ("mars-lion", MarsType.Lion), ("mars-shampoo", MarsType.Shampoo)),
                    optimize1d: a.Flag("optimize_1d"), lr1d: a.Num("lr_1d"), betas1d: a.Pair("betas_1d"), weightDecay1d: a.Num("weight_decay_1d"));
            }),

        // MARS-M: muon_params / adamw_params are routing lists, read from the case's constructor_kwargs.
        new("MARS_M",
            [Num("lr", 1e-3), Num("wd", 0.1), Num("momentum", 0.95), Int("ns_steps", 5), Pair("adamw_betas", 0.9, 0.95), Num("adamw_eps", 1e-8),
             Num("gamma", 0.025), Accepted("clip_c", false, "stored but never read by the official code: c is always clipped"), Flag("is_approx", true)],
            a => Optim.MarsM(a.Num("lr"), a.Num("wd"), a.Num("momentum"), a.Int("ns_steps"), a.Pair("adamw_betas"), a.Num("adamw_eps"),
                a.Num("gamma"), clip: true, exact: !a.Flag("is_approx"), isMatrixParameter: MuonRoute(a), bf16: a.Runtime.BFloat16)),

        new("MARS_M_Efficient",
            [Num("lr", 1e-3), Num("wd", 0.1), Num("momentum", 0.95), Int("ns_steps", 5), Pair("adamw_betas", 0.9, 0.95), Num("adamw_eps", 1e-8),
             Num("gamma", 0.025)],
            a => Optim.MarsMEfficient(a.Num("lr"), a.Num("wd"), a.Num("momentum"), a.Int("ns_steps"), a.Pair("adamw_betas"), a.Num("adamw_eps"),
                a.Num("gamma"), isMatrixParameter: MuonRoute(a), bf16: a.Runtime.BFloat16)),

        // KellerJordan/Muon: always Nesterov. Muon is the distributed class with the same maths.
        new("SingleDeviceMuon",
            [Num("lr", 0.02), Num("weight_decay", 0), Num("momentum", 0.95)],
            a => Optim.Muon(a.Num("lr"), a.Num("weight_decay"), a.Num("momentum"), nesterov: true, bf16: a.Runtime.BFloat16))
        { Aliases = ["Muon"] },

        // Its only argument is the list of param groups; each group is mapped by MuonGroupRow or AuxAdamGroupRow.
        new("SingleDeviceMuonWithAuxAdam",
            [Accepted("param_groups", Argument.NoDefault, "each group is mapped from the case's param_groups"),
             Accepted("defaults_filled_by_constructor", Argument.NoDefault, "a remark of the case generator")],
            MuonWithAuxAdam)
        { Aliases = ["MuonWithAuxAdam"], GroupRows = [MuonGroupRow, AuxAdamGroupRow] },

        // fabian-sp/MoMo: use_fstar is online lower-bound estimation.
        new("Momo",
            [Num("lr", 1.0), Num("weight_decay", 0), Num("beta", 0.9), Num("lb", 0), Flag("bias_correction", false), Flag("use_fstar", false)],
            a => Optim.Momo(a.Num("lr"), a.Num("weight_decay"), a.Num("beta"), a.Num("lb"), a.Flag("bias_correction"), a.Flag("use_fstar"))),

        new("MomoAdam",
            [Num("lr", 1e-2), Pair("betas", 0.9, 0.999), Num("eps", 1e-8), Num("weight_decay", 0), Num("lb", 0), Flag("divide", true), Flag("use_fstar", false)],
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                return Optim.MomoAdam(a.Num("lr"), b1, b2, a.Num("eps"), a.Num("weight_decay"), a.Num("lb"), a.Flag("divide"), a.Flag("use_fstar"));
            }),

        // facebookresearch/qhoptim.
        new("qhoptim.pyt.QHM",
            [Num("lr"), Num("momentum"), Num("nu"), Num("weight_decay", 0), Text("weight_decay_type", "grad")],
            a => Optim.Qhm(a.Num("lr"), a.Num("momentum"), a.Num("nu"), a.Num("weight_decay"),
                a.Choose("weight_decay_type", ("grad", QhmWeightDecay.Gradient), ("direct", QhmWeightDecay.Direct)))),

        new("qhoptim.pyt.QHAdam",
            [Num("lr", 1e-3), Pair("betas", 0.9, 0.999), Pair("nus", 1.0, 1.0), Num("weight_decay", 0), Flag("decouple_weight_decay", false), Num("eps", 1e-8)],
            QhAdam),

        new("qhoptim.pyt.QHAdamW",
            [Num("lr", 1e-3), Pair("betas", 0.9, 0.999), Pair("nus", 1.0, 1.0), Num("weight_decay", 0), Num("eps", 1e-8),
             Flag("decouple_weight_decay", true).MayBeAbsent("QHAdamW passes True to QHAdam itself")],
            QhAdam),

        // rationalspark/NAMSG: adaptive = False is RSG, which ignores amsgrad, β₂ and ε (the constructor forces
        // amsgrad off); nLA > 1 turns on its built-in slow/fast weights.
        new("Arsg",
            [Num("lr", 1e-3), Pair("betas", 0.999, 0.99), Num("eps", 1e-8), Num("weight_decay", 0), Num("mu", 0.1), Flag("adaptive", true),
             Flag("amsgrad", true), Int("nLA", -1), Num("alphaLA", 0.5)],
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                double lr = a.Num("lr"), eps = a.Num("eps"), wd = a.Num("weight_decay"), mu = a.Num("mu"), alphaLA = a.Num("alphaLA");
                bool amsgrad = a.Flag("amsgrad");
                int nLA = a.Int("nLA");
                var tx = a.Flag("adaptive") ? Optim.Arsg(lr, b1, b2, eps, wd, mu, amsgrad) : Optim.Rsg(lr, b1, mu, wd);
                return nLA > 1 ? Transforms.SlowFastWeights(tx, nLA, alphaLA) : tx;
            }),

        // facebookresearch/schedule_free: the parameters hold y; the cases also record x after each step.
        new("SGDScheduleFree",
            [Num("lr", 1.0), Num("momentum", 0.9), Num("weight_decay", 0), Int("warmup_steps", 0), Num("r", 0), Num("weight_lr_power", 2), Accepted("foreach", null, "kernel choice")],
            a => Optim.ScheduleFreeSgd(a.Num("lr"), a.Num("momentum"), a.Num("weight_decay"), a.Int("warmup_steps"), a.Num("r"), a.Num("weight_lr_power"))),

        new("AdamWScheduleFree",
            [Num("lr", 0.0025), Pair("betas", 0.9, 0.999), Num("eps", 1e-8), Num("weight_decay", 0), Int("warmup_steps", 0), Num("r", 0), Num("weight_lr_power", 2),
             Num("inner_momentum", 0).MayBeAbsent("only in newer schedule_free versions"), Accepted("foreach", null, "kernel choice")],
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                return Optim.ScheduleFreeAdamW(a.Num("lr"), b1, b2, a.Num("eps"), a.Num("weight_decay"), a.Int("warmup_steps"), a.Num("r"), a.Num("weight_lr_power"), a.Num("inner_momentum"));
            }),

        // apple/ml-ademamix.
        new("AdEMAMix",
            [Num("lr", 1e-3), Triple("betas", 0.9, 0.999, 0.9999), Num("alpha", 2), IntOrNone("beta3_warmup"), IntOrNone("alpha_warmup"), Num("eps", 1e-8), Num("weight_decay", 0)],
            a =>
            {
                var (b1, b2, b3) = a.Triple("betas");
                return Optim.AdEMAMix(a.Num("lr"), b1, b2, b3, a.Num("alpha"), a.IntOrNone("beta3_warmup"), a.IntOrNone("alpha_warmup"), a.Num("eps"), a.Num("weight_decay"));
            }),

        // iShohei220/adopt (single-tensor and foreach paths have the same maths).
        new("ADOPT",
            Torch(Num("lr", 1e-3), Pair("betas", 0.9, 0.9999), Num("eps", 1e-6), Raw("clip_lambda", "default: lambda step: step**0.25"), Num("weight_decay", 0), Flag("decouple", false),
                Accepted("fused", null, "kernel choice")),
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                return Optim.Adopt(a.Num("lr"), b1, b2, a.Num("eps"), a.Num("weight_decay"), a.Flag("decouple"), AdoptClip(a));
            }),

        // kyleliang919/C-Optim: its AdamW has two code paths with different arithmetic (foreach puts ε after the
        // bias correction and always corrects).
        new("C-Optim AdamW (cautious)",
            [Num("lr", 1e-3), Pair("betas", 0.9, 0.999), Num("eps", 1e-6), Num("weight_decay", 0), Flag("correct_bias", true), Flag("foreach", true),
             Accepted("no_deprecation_warning", false, "a warning switch"), Refused("fused", "no fused path in C-Optim's AdamW")],
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                bool correct = a.Flag("correct_bias"), foreachPath = a.Flag("foreach");
                return Optim.CautiousAdamW(a.Num("lr"), b1, b2, a.Num("eps"), a.Num("weight_decay"), foreachPath || correct,
                    foreachPath ? EpsilonPlacement.Corrected : EpsilonPlacement.Uncorrected);
            }),

        new("C-Optim Lion (cautious)",
            [Num("lr", 1e-4), Pair("betas", 0.95, 0.98), Num("weight_decay", 0)],
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                return Optim.CautiousLion(a.Num("lr"), b1, b2, a.Num("weight_decay"));
            }),

        // nikhilvyas/SOAP: shampoo_beta < 0 means β₂; the float32 casts of the basis computations follow the case's numerics.
        new("SOAP",
            [Num("lr", 3e-3), Pair("betas", 0.95, 0.95), Num("shampoo_beta", -1), Num("eps", 1e-8), Num("weight_decay", 0.01), Int("precondition_frequency", 10),
             Int("max_precond_dim", 10000), Refused("merge_dims", "dimensions are not merged"), Flag("precondition_1d", false), Flag("normalize_grads", false),
             Text("data_format", "channels_first"), Flag("correct_bias", true)],
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                double sb = a.Num("shampoo_beta");
                _ = a.Choose("data_format", ("channels_first", 0));   // channels_last only reorders 4-D convolution kernels, which the cases do not hold
                return Optim.Soap(a.Num("lr"), b1, b2, sb < 0 ? null : sb, a.Num("eps"), a.Num("weight_decay"), a.Int("precondition_frequency"), a.Int("max_precond_dim"),
                    a.Flag("precondition_1d"), a.Flag("normalize_grads"), a.Flag("correct_bias"), a.Runtime.Float32Basis);
            }),

        // konstmish/prodigy.
        new("Prodigy",
            [Num("lr", 1.0), Pair("betas", 0.9, 0.999), NumOrNone("beta3"), Num("eps", 1e-8), Num("weight_decay", 0), Flag("decouple", true), Flag("use_bias_correction", false),
             Flag("safeguard_warmup", false), Num("d0", 1e-6), Num("d_coef", 1.0), Num("growth_rate", double.PositiveInfinity), Refused("fsdp_in_use", "one process"), Int("slice_p", 1)],
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                return Optim.Prodigy(a.Num("lr"), b1, b2, a.NumOrNone("beta3"), a.Num("eps"), a.Num("weight_decay"), a.Flag("decouple"), a.Flag("use_bias_correction"),
                    a.Flag("safeguard_warmup"), a.Num("d0"), a.Num("d_coef"), a.Num("growth_rate"), a.Int("slice_p"));
            }),

        // gbaydin/hypergradient-descent: the rate moves before the update that uses it; SGDHD dots over all
        // parameters at once, AdamHD once per parameter inside its loop.
        new("SGDHD",
            [Num("lr"), Num("momentum", 0), Num("dampening", 0), Num("weight_decay", 0), Flag("nesterov", false), Num("hypergrad_lr", 1e-6)],
            a => Optim.SgdHD(a.Num("lr"), a.Num("momentum"), a.Num("dampening"), a.Num("weight_decay"), a.Flag("nesterov"), a.Num("hypergrad_lr"))),

        new("AdamHD",
            [Num("lr", 1e-3), Pair("betas", 0.9, 0.999), Num("eps", 1e-8), Num("weight_decay", 0), Num("hypergrad_lr", 1e-8)],
            a =>
            {
                var (b1, b2) = a.Pair("betas");
                return Optim.AdamHD(a.Num("lr"), b1, b2, a.Num("eps"), a.Num("weight_decay"), a.Num("hypergrad_lr"));
            }),
    ];

    /// <summary>ADOPT's <c>clip_lambda</c>: the official default (step^0.25) or None; any other function cannot be read from a case.</summary>
    static double? AdoptClip(ArgumentValues a)
    {
        var v = a.Raw("clip_lambda");
        if (v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.String && v.GetString() is { } text && text.Replace(" ", "").EndsWith("lambdastep:step**0.25", StringComparison.Ordinal)) return 0.25;
        throw new CompatibilityException($"{a.Optimizer}: clip_lambda {v.GetRawText()} is not supported (only the default 'lambda step: step**0.25' and None)");
    }

    /// <summary>Every class name the table accepts (rows and their aliases): the known optimizers.</summary>
    public static IReadOnlyList<string> Optimizers { get; } = Table.SelectMany(m => m.Aliases.Prepend(m.Name)).ToArray();

    /// <summary>The row for a class name (or alias), or null.</summary>
    public static Mapping? Find(string optimizer) => Table.FirstOrDefault(m => m.Name == optimizer || m.Aliases.Contains(optimizer));

    /// <summary>
    /// The Lookahead optimizer for <paramref name="optimizer"/> with <paramref name="hyperparameters"/>.
    /// </summary>
    /// <param name="optimizer">The reference class, as in the case's <c>optimizer</c> field.</param>
    /// <param name="hyperparameters">The constructor's arguments with defaults filled in.</param>
    /// <param name="parameterNames">The parameter names, in order (for param groups and routing).</param>
    /// <param name="runtime">Numerics and routing of the reference run.</param>
    public static IGradientTransformation Build(string optimizer, JsonElement hyperparameters, IReadOnlyList<string> parameterNames, Runtime? runtime = null)
    {
        var rt = runtime ?? new Runtime();
        var row = Find(optimizer) ?? throw new CompatibilityException($"unknown optimizer '{optimizer}' (known: {string.Join(", ", Optimizers)})");
        if (row.GroupRows.Count == 0 && rt.ParamGroups is { ValueKind: JsonValueKind.Array } groups && groups.GetArrayLength() > 1)
            throw new CompatibilityException($"{optimizer}: {groups.GetArrayLength()} param groups; only one group is mapped for this optimizer");
        try
        {
            return row.Bind(hyperparameters, parameterNames, rt, optimizer);
        }
        catch (ArgumentException e)
        {
            throw new CompatibilityException($"{optimizer}: {e.Message}");
        }
    }

    /// <summary>The table as <c>lookahead replay --help</c> prints it: a block per row, its arguments grouped by role.</summary>
    public static IEnumerable<string> Describe() => Table.SelectMany(m => Describe(m, "  "));

    static IEnumerable<string> Describe(Mapping m, string indent)
    {
        yield return m.Aliases.Count == 0 ? $"{indent}{m.Name}" : $"{indent}{m.Name} (also {string.Join(", ", m.Aliases)})";
        foreach (var g in m.Arguments.GroupBy(a => (a.Role, a.Note)).OrderBy(g => g.Key.Role))
        {
            string args = string.Join(", ", g);
            yield return g.Key.Role switch
            {
                ArgumentRole.Mapped => $"{indent}    {args}",
                ArgumentRole.Optional => $"{indent}    may be absent ({g.Key.Note}): {args}",
                ArgumentRole.Accepted => $"{indent}    accepted, not used ({g.Key.Note}): {args}",
                _ => $"{indent}    True refused ({g.Key.Note}): {string.Join(", ", g.Select(a => a.Name))}",
            };
        }
        foreach (var r in m.GroupRows)
            foreach (var line in Describe(r, indent + "    ")) yield return line;
    }

    static string[] Names(JsonElement? list, string what)
    {
        if (list is not { ValueKind: JsonValueKind.Array } a) return [];
        return a.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.String ? x.GetString()! : throw new CompatibilityException($"{what} must list parameter names")).ToArray();
    }

    static JsonElement? Kwarg(Runtime runtime, string name) =>
        runtime.ConstructorKwargs is { ValueKind: JsonValueKind.Object } k && k.TryGetProperty(name, out var v) ? v : null;

    /// <summary>MARS-M's routing: the parameters in muon_params take the matrix branch; without lists, Lookahead's default routing.</summary>
    static Func<ParameterInfo, bool>? MuonRoute(ArgumentValues a)
    {
        var muonNames = Names(Kwarg(a.Runtime, "muon_params"), "muon_params");
        var adamwNames = Names(Kwarg(a.Runtime, "adamw_params"), "adamw_params");
        foreach (var n in muonNames.Concat(adamwNames))
            if (!a.ParameterNames.Contains(n)) throw new CompatibilityException($"{a.Optimizer}: routed parameter '{n}' is not among the parameters [{string.Join(", ", a.ParameterNames)}]");
        return muonNames.Length + adamwNames.Length == 0 ? null : p => muonNames.Contains(p.Name);
    }

    static IGradientTransformation QhAdam(ArgumentValues a)
    {
        var (b1, b2) = a.Pair("betas");
        var (n1, n2) = a.Pair("nus");
        return Optim.QhAdam(a.Num("lr"), b1, b2, n1, n2, a.Num("eps"), a.Num("weight_decay"), a.Flag("decouple_weight_decay"));
    }

    /// <summary>One partition per param group of the case, each built by <see cref="MuonGroupRow"/> or <see cref="AuxAdamGroupRow"/>.</summary>
    static IGradientTransformation MuonWithAuxAdam(ArgumentValues a)
    {
        const string name = "SingleDeviceMuonWithAuxAdam";
        if (a.Runtime.ParamGroups is not { ValueKind: JsonValueKind.Array } groups)
            throw new CompatibilityException($"{name}: the case has no param_groups");
        var labelOf = new Dictionary<string, string>();
        var parts = new List<(string, IGradientTransformation)>();
        int index = 0;
        foreach (var g in groups.EnumerateArray())
        {
            string label = $"group{index++}";
            if (g.ValueKind != JsonValueKind.Object || !g.TryGetProperty("params", out var ps))
                throw new CompatibilityException($"{name}: {label} has no 'params'");
            foreach (var n in Names(ps, "params"))
            {
                if (!a.ParameterNames.Contains(n)) throw new CompatibilityException($"{name}: {label} lists '{n}', which is not a parameter");
                labelOf[n] = label;
            }
            if (!g.TryGetProperty("use_muon", out var u)) throw new CompatibilityException($"{name} {label}: hyperparameter 'use_muon' is missing");
            bool useMuon = u.ValueKind is JsonValueKind.True or JsonValueKind.False
                ? u.GetBoolean()
                : throw new CompatibilityException($"{name} {label}: hyperparameter 'use_muon' must be true or false, got {u.GetRawText()}");
            var row = useMuon ? MuonGroupRow : AuxAdamGroupRow;
            parts.Add((label, row.Bind(g, a.ParameterNames, a.Runtime, $"{name} {label}")));
        }
        foreach (var n in a.ParameterNames)
            if (!labelOf.ContainsKey(n)) throw new CompatibilityException($"{name}: parameter '{n}' is in no param group");
        return Transforms.Partition(p => labelOf[p.Name], parts.ToArray());
    }
}
