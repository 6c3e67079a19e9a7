using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text.Json;

namespace Lookahead.Cli;

/// <summary>An optimizer description Lookahead cannot honour: unknown optimizer, unmapped or missing hyperparameter, bad value.</summary>
public sealed class CompatibilityException(string message) : Exception(message);

/// <summary>
/// The compatibility map: the Lookahead composition equivalent to a reference optimizer's constructor
/// (torch.optim, MARS, MARS-M, Muon, MoMo, qhoptim, ARSG), from its name and hyperparameters as the
/// oracle case files record them. Every hyperparameter a constructor accepts is mapped; an unknown one, or a
/// value the composition cannot reproduce, is an error — never a silent default.
/// </summary>
public static class Compatibility
{
    /// <summary>The reference optimizers this map knows.</summary>
    public static IReadOnlyList<string> Optimizers { get; } = new[]
    {
        "torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW", "torch.optim.NAdam", "torch.optim.RAdam",
        "torch.optim.RMSprop", "torch.optim.Adagrad", "MARS", "MARS_M", "MARS_M_Efficient", "SingleDeviceMuon",
        "SingleDeviceMuonWithAuxAdam", "Momo", "MomoAdam", "qhoptim.pyt.QHM", "qhoptim.pyt.QHAdam", "qhoptim.pyt.QHAdamW", "Arsg",
    };

    /// <summary>What else a case says about how the reference ran.</summary>
    /// <param name="BFloat16">Newton–Schulz ran in bfloat16.</param>
    /// <param name="Torch113">The reference ran on torch 1.13 (affects single-tensor NAdam).</param>
    /// <param name="ConstructorKwargs">The constructor's keyword arguments (routing lists such as muon_params), or null.</param>
    /// <param name="ParamGroups">The param groups as the optimizer held them, or null.</param>
    public sealed record Runtime(bool BFloat16 = false, bool Torch113 = false, JsonElement? ConstructorKwargs = null, JsonElement? ParamGroups = null);

    /// <summary>Reads hyperparameters and records which were read, so that the rest can be reported as unmapped.</summary>
    sealed class Reader(string optimizer, JsonElement h)
    {
        readonly HashSet<string> _read = new();

        JsonElement Get(string name)
        {
            _read.Add(name);
            if (h.ValueKind != JsonValueKind.Object || !h.TryGetProperty(name, out var v))
                throw new CompatibilityException($"{optimizer}: hyperparameter '{name}' is missing (the case must record every constructor argument, defaults filled in)");
            return v;
        }

        public bool Has(string name) => h.ValueKind == JsonValueKind.Object && h.TryGetProperty(name, out _);

        public double Num(string name)
        {
            var v = Get(name);
            if (v.ValueKind != JsonValueKind.Number) throw new CompatibilityException($"{optimizer}: hyperparameter '{name}' must be a number, got {v.GetRawText()}");
            return v.GetDouble();
        }

        public int Int(string name)
        {
            double x = Num(name);
            if (x != Math.Floor(x) || Math.Abs(x) > int.MaxValue) throw new CompatibilityException($"{optimizer}: hyperparameter '{name}' must be an integer, got {x}");
            return (int)x;
        }

        public bool Flag(string name)
        {
            var v = Get(name);
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new CompatibilityException($"{optimizer}: hyperparameter '{name}' must be true or false, got {v.GetRawText()}"),
            };
        }

        public string Text(string name)
        {
            var v = Get(name);
            return v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new CompatibilityException($"{optimizer}: hyperparameter '{name}' must be a string, got {v.GetRawText()}");
        }

        public (double, double) Pair(string name)
        {
            var v = Get(name);
            if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() != 2 || v.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.Number))
                throw new CompatibilityException($"{optimizer}: hyperparameter '{name}' must be a pair of numbers, got {v.GetRawText()}");
            return (v[0].GetDouble(), v[1].GetDouble());
        }

        /// <summary>Accepts a flag that only selects an execution strategy (same maths).</summary>
        public void Strategy(string name) { if (Has(name)) Get(name); }

        /// <summary>A flag whose true value Lookahead does not reproduce.</summary>
        public void MustBeFalse(string name)
        {
            if (Has(name) && Flag(name)) throw new CompatibilityException($"{optimizer}: {name} = true is not supported");
        }

        public double Optional(string name, double otherwise) => Has(name) ? Num(name) : otherwise;
        public bool OptionalFlag(string name, bool otherwise) => Has(name) ? Flag(name) : otherwise;

        public void Ignore(string name) { if (Has(name)) _read.Add(name); }

        public void Done()
        {
            if (h.ValueKind != JsonValueKind.Object) return;
            foreach (var p in h.EnumerateObject())
                if (!_read.Contains(p.Name))
                    throw new CompatibilityException($"{optimizer}: hyperparameter '{p.Name}' is not mapped (value {p.Value.GetRawText()}); refusing to guess its meaning");
        }
    }

    static string[] Names(JsonElement? list, string what)
    {
        if (list is not { ValueKind: JsonValueKind.Array } a) return Array.Empty<string>();
        return a.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.String ? x.GetString()! : throw new CompatibilityException($"{what} must list parameter names")).ToArray();
    }

    static JsonElement? Kwarg(Runtime runtime, string name) =>
        runtime.ConstructorKwargs is { ValueKind: JsonValueKind.Object } k && k.TryGetProperty(name, out var v) ? v : null;

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
        try
        {
            return BuildChecked(optimizer, hyperparameters, parameterNames, rt);
        }
        catch (ArgumentException e)
        {
            throw new CompatibilityException($"{optimizer}: {e.Message}");
        }
    }

    static IGradientTransformation BuildChecked(string optimizer, JsonElement hyperparameters, IReadOnlyList<string> names, Runtime rt)
    {
        var r = new Reader(optimizer, hyperparameters);
        IGradientTransformation tx;
        switch (optimizer)
        {
            case "torch.optim.SGD":
                TorchCommon(r);
                tx = Optim.Sgd(r.Num("lr"), r.Num("momentum"), r.Num("dampening"), r.Num("weight_decay"), r.Flag("nesterov"));
                break;
            case "torch.optim.Adam":
            case "torch.optim.AdamW":
            {
                TorchCommon(r);
                var (b1, b2) = r.Pair("betas");
                tx = optimizer.EndsWith("W", StringComparison.Ordinal)
                    ? Optim.AdamW(r.Num("lr"), b1, b2, r.Num("eps"), r.Num("weight_decay"), r.Flag("amsgrad"))
                    : r.OptionalFlag("decoupled_weight_decay", false)
                        ? Optim.AdamW(r.Num("lr"), b1, b2, r.Num("eps"), r.Num("weight_decay"), r.Flag("amsgrad"))
                        : Optim.Adam(r.Num("lr"), b1, b2, r.Num("eps"), r.Num("weight_decay"), r.Flag("amsgrad"));
                break;
            }
            case "torch.optim.NAdam":
            {
                TorchCommon(r);
                var (b1, b2) = r.Pair("betas");
                bool singleTensor = !r.OptionalFlag("foreach", false);
                tx = Optim.NAdam(r.Num("lr"), b1, b2, r.Num("eps"), r.Num("weight_decay"), r.Num("momentum_decay"),
                    r.OptionalFlag("decoupled_weight_decay", false), torch113: singleTensor && rt.Torch113);
                break;
            }
            case "torch.optim.RAdam":
            {
                TorchCommon(r);
                var (b1, b2) = r.Pair("betas");
                tx = Optim.RAdam(r.Num("lr"), b1, b2, r.Num("eps"), r.Num("weight_decay"), r.OptionalFlag("decoupled_weight_decay", false));
                break;
            }
            case "torch.optim.RMSprop":
                TorchCommon(r);
                tx = Optim.RmsProp(r.Num("lr"), r.Num("alpha"), r.Num("eps"), r.Num("weight_decay"), r.Num("momentum"), r.Flag("centered"));
                break;
            case "torch.optim.Adagrad":
                TorchCommon(r);
                tx = Optim.Adagrad(r.Num("lr"), r.Num("lr_decay"), r.Num("weight_decay"), r.Num("initial_accumulator_value"), r.Num("eps"));
                break;
            case "MARS":
            {
                var (b1, b2) = r.Pair("betas");
                string type = r.Text("mars_type");
                tx = Optim.Mars(r.Num("lr"), b1, b2, r.Num("eps"), r.Num("weight_decay"), r.Flag("amsgrad"), r.Num("gamma"),
                    exact: !r.Flag("is_approx"),
                    type: type switch
                    {
                        "mars-adamw" => MarsType.AdamW,
                        "mars-lion" => MarsType.Lion,
                        "mars-shampoo" => MarsType.Shampoo,
                        _ => throw new CompatibilityException($"MARS: mars_type '{type}' is not one of mars-adamw, mars-lion, mars-shampoo"),
                    },
                    optimize1d: r.Flag("optimize_1d"), lr1d: r.Num("lr_1d"), betas1d: r.Pair("betas_1d"), weightDecay1d: r.Num("weight_decay_1d"));
                break;
            }
            case "MARS_M":
            case "MARS_M_Efficient":
            {
                var muonNames = Names(Kwarg(rt, "muon_params"), "muon_params");
                var adamwNames = Names(Kwarg(rt, "adamw_params"), "adamw_params");
                foreach (var n in muonNames.Concat(adamwNames))
                    if (!names.Contains(n)) throw new CompatibilityException($"{optimizer}: routed parameter '{n}' is not among the parameters [{string.Join(", ", names)}]");
                Func<ParameterInfo, bool>? route = muonNames.Length + adamwNames.Length == 0 ? null : p => muonNames.Contains(p.Name);
                if (optimizer == "MARS_M")
                {
                    r.Ignore("clip_c");   // stored but never read by the official code: c is always clipped
                    tx = Optim.MarsM(r.Num("lr"), r.Num("wd"), r.Num("momentum"), r.Int("ns_steps"), r.Pair("adamw_betas"), r.Num("adamw_eps"),
                        r.Num("gamma"), clip: true, exact: !r.Flag("is_approx"), isMatrixParameter: route, bf16: rt.BFloat16);
                }
                else
                    tx = Optim.MarsMEfficient(r.Num("lr"), r.Num("wd"), r.Num("momentum"), r.Int("ns_steps"), r.Pair("adamw_betas"), r.Num("adamw_eps"),
                        r.Num("gamma"), isMatrixParameter: route, bf16: rt.BFloat16);
                break;
            }
            case "SingleDeviceMuon":
            case "Muon":
                tx = Optim.Muon(r.Num("lr"), r.Num("weight_decay"), r.Num("momentum"), nesterov: true, bf16: rt.BFloat16);
                break;
            case "SingleDeviceMuonWithAuxAdam":
            case "MuonWithAuxAdam":
                r.Ignore("param_groups");
                r.Ignore("defaults_filled_by_constructor");
                tx = MuonWithAuxAdam(rt, names);
                break;
            case "Momo":
                tx = Optim.Momo(r.Num("lr"), r.Num("weight_decay"), r.Num("beta"), r.Num("lb"), r.Flag("bias_correction"), r.Flag("use_fstar"));
                break;
            case "MomoAdam":
            {
                var (b1, b2) = r.Pair("betas");
                tx = Optim.MomoAdam(r.Num("lr"), b1, b2, r.Num("eps"), r.Num("weight_decay"), r.Num("lb"), r.Flag("divide"), r.Flag("use_fstar"));
                break;
            }
            case "qhoptim.pyt.QHM":
            {
                string type = r.Text("weight_decay_type");
                tx = Optim.Qhm(r.Num("lr"), r.Num("momentum"), r.Num("nu"), r.Num("weight_decay"), type switch
                {
                    "grad" => QhmWeightDecay.Gradient,
                    "direct" => QhmWeightDecay.Direct,
                    _ => throw new CompatibilityException($"QHM: weight_decay_type '{type}' is not 'grad' or 'direct'"),
                });
                break;
            }
            case "qhoptim.pyt.QHAdam":
            case "qhoptim.pyt.QHAdamW":
            {
                var (b1, b2) = r.Pair("betas");
                var (n1, n2) = r.Pair("nus");
                bool decoupled = optimizer.EndsWith("W", StringComparison.Ordinal) ? r.OptionalFlag("decouple_weight_decay", true) : r.Flag("decouple_weight_decay");
                tx = Optim.QhAdam(r.Num("lr"), b1, b2, n1, n2, r.Num("eps"), r.Num("weight_decay"), decoupled);
                break;
            }
            case "Arsg":
            {
                var (b1, b2) = r.Pair("betas");
                bool adaptive = r.Flag("adaptive");
                double lr = r.Num("lr"), eps = r.Num("eps"), wd = r.Num("weight_decay"), mu = r.Num("mu");
                bool amsgrad = r.Flag("amsgrad");
                int nLA = r.Int("nLA");
                double alphaLA = r.Num("alphaLA");
                // RSG ignores amsgrad, β₂ and ε (the constructor forces amsgrad off).
                tx = adaptive ? Optim.Arsg(lr, b1, b2, eps, wd, mu, amsgrad) : Optim.Rsg(lr, b1, mu, wd);
                if (nLA > 1) tx = Transforms.SlowFastWeights(tx, nLA, alphaLA);
                break;
            }
            default:
                throw new CompatibilityException($"no compatibility map for optimizer '{optimizer}'; known: {string.Join(", ", Optimizers)}");
        }
        r.Done();
        return tx;
    }

    /// <summary>torch.optim's flags: execution strategies are accepted, maximize must be false.</summary>
    static void TorchCommon(Reader r)
    {
        foreach (var s in new[] { "foreach", "differentiable", "capturable", "fused" }) r.Strategy(s);
        r.MustBeFalse("maximize");
    }

    static IGradientTransformation MuonWithAuxAdam(Runtime rt, IReadOnlyList<string> names)
    {
        if (rt.ParamGroups is not { ValueKind: JsonValueKind.Array } groups)
            throw new CompatibilityException("SingleDeviceMuonWithAuxAdam: the case has no param_groups");
        var labelOf = new Dictionary<string, string>();
        var parts = new List<(string, IGradientTransformation)>();
        int index = 0;
        foreach (var g in groups.EnumerateArray())
        {
            string label = $"group{index++}";
            var r = new Reader($"SingleDeviceMuonWithAuxAdam {label}", g);
            foreach (var n in Names(g.GetProperty("params"), "params"))
            {
                if (!names.Contains(n)) throw new CompatibilityException($"SingleDeviceMuonWithAuxAdam: {label} lists '{n}', which is not a parameter");
                labelOf[n] = label;
            }
            r.Ignore("params");
            IGradientTransformation tx = r.Flag("use_muon")
                ? Optim.Muon(r.Num("lr"), r.Num("weight_decay"), r.Num("momentum"), nesterov: true, bf16: rt.BFloat16)
                : AuxAdam(r);
            r.Done();
            parts.Add((label, tx));
        }
        foreach (var n in names)
            if (!labelOf.ContainsKey(n)) throw new CompatibilityException($"SingleDeviceMuonWithAuxAdam: parameter '{n}' is in no param group");
        return Transforms.Partition(p => labelOf[p.Name], parts.ToArray());
    }

    static IGradientTransformation AuxAdam(Reader r)
    {
        var (b1, b2) = r.Pair("betas");
        return Optim.AdamW(r.Num("lr"), b1, b2, r.Num("eps"), r.Num("weight_decay"));
    }

    /// <summary>A number for messages.</summary>
    internal static string F(double x) => x.ToString("g6", CultureInfo.InvariantCulture);
}
