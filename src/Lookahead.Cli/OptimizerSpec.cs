using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Reflection;

namespace Lookahead.Cli;

/// <summary>
/// An optimizer named on the command line: <c>NAME[:ARG=VALUE,...][@MU]</c>. NAME is any <see cref="Optim"/>
/// factory, case-insensitive, with or without underscores and hyphens (<c>rsg</c>, <c>heavy_ball</c>,
/// <c>NesterovSgd</c>); ARG is one of its argument names (case-insensitive), VALUE a number, <c>true</c>/<c>false</c>
/// or an enum member; arguments not given take the factory's defaults. <c>@MU</c> evaluates the gradient at
/// θ + μ·v (an <see cref="OptimizerForm"/>'s lookahead). One argument may be <c>?LOW:HIGH</c>: a free scalar.
/// </summary>
public sealed class OptimizerSpec
{
    static readonly CultureInfo C = CultureInfo.InvariantCulture;

    OptimizerSpec(string text, MethodInfo factory, Dictionary<string, string> arguments, double lookahead, (string Name, double Low, double High)? free)
    {
        Text = text;
        Factory = factory;
        Arguments = arguments;
        Lookahead = lookahead;
        Free = free;
    }

    /// <summary>The spec as written.</summary>
    public string Text { get; }

    /// <summary>The <see cref="Optim"/> factory it names.</summary>
    public MethodInfo Factory { get; }

    /// <summary>The arguments given, by the factory's parameter name.</summary>
    public IReadOnlyDictionary<string, string> Arguments { get; }

    /// <summary>The lookahead μ of the form (0 without <c>@MU</c>).</summary>
    public double Lookahead { get; }

    /// <summary>The free scalar (<c>ARG=?LOW:HIGH</c>), if any.</summary>
    public (string Name, double Low, double High)? Free { get; }

    /// <summary>The factories a spec may name: <see cref="Optim"/>'s public static methods returning a transform.</summary>
    public static IReadOnlyList<MethodInfo> Factories { get; } = typeof(Optim).GetMethods(BindingFlags.Public | BindingFlags.Static)
        .Where(m => m.ReturnType == typeof(IGradientTransformation)).OrderBy(m => m.Name, StringComparer.Ordinal).ToArray();

    /// <summary>The factory names, in snake case as the usage text shows them.</summary>
    public static IEnumerable<string> Names => Factories.Select(f => Snake(f.Name)).Distinct();

    /// <summary>Parses <paramref name="text"/>; an unknown name, argument or a malformed value is an <see cref="ArgumentException"/> listing what is valid.</summary>
    public static OptimizerSpec Parse(string text, bool allowFree = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        string body = text.Trim();
        double lookahead = 0;
        int at = body.LastIndexOf('@');
        if (at >= 0)
        {
            string mu = body[(at + 1)..];
            if (!double.TryParse(mu, NumberStyles.Float, C, out lookahead) || !double.IsFinite(lookahead))
                throw new ArgumentException($"'{text}': the lookahead after '@' must be a finite number; got '{mu}'");
            body = body[..at];
        }
        int colon = body.IndexOf(':');
        string name = colon < 0 ? body : body[..colon];
        string rest = colon < 0 ? "" : body[(colon + 1)..];
        var candidates = Factories.Where(f => Key(f.Name) == Key(name)).ToArray();
        if (candidates.Length == 0)
            throw new ArgumentException($"'{text}': unknown optimizer '{name}'; known: {string.Join(", ", Names)}");
        var arguments = new Dictionary<string, string>(StringComparer.Ordinal);
        (string, double, double)? free = null;
        var given = new List<(string Name, string Value)>();
        foreach (var part in rest.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = part.IndexOf('=');
            if (eq <= 0) throw new ArgumentException($"'{text}': expected ARG=VALUE, got '{part}'");
            given.Add((part[..eq].Trim(), part[(eq + 1)..].Trim()));
        }
        // The overload that has every argument given (the one with fewest parameters when several do).
        var factory = candidates.Where(f => given.All(g => f.GetParameters().Any(p => Key(p.Name!) == Key(g.Name))))
            .OrderBy(f => f.GetParameters().Length).FirstOrDefault();
        if (factory is null)
        {
            var bad = given.First(g => !candidates.Any(f => f.GetParameters().Any(p => Key(p.Name!) == Key(g.Name))));
            throw new ArgumentException($"'{text}': {Snake(candidates[0].Name)} has no argument '{bad.Name}'; its arguments: {Describe(candidates[0])}");
        }
        foreach (var (argName, value) in given)
        {
            var p = factory.GetParameters().First(p => Key(p.Name!) == Key(argName));
            if (arguments.ContainsKey(p.Name!)) throw new ArgumentException($"'{text}': argument '{p.Name}' given twice");
            if (value.StartsWith('?'))
            {
                if (!allowFree) throw new ArgumentException($"'{text}': a free argument ('{argName}=?LOW:HIGH') is only allowed in --equals");
                if (free is not null) throw new ArgumentException($"'{text}': at most one free argument; '{free.Value.Item1}' and '{p.Name}' are both free");
                if (Underlying(p.ParameterType) != typeof(double)) throw new ArgumentException($"'{text}': the free argument '{p.Name}' must be a double; it is {TypeName(p.ParameterType)}");
                var range = value[1..].Split(':');
                if (range.Length != 2 || !double.TryParse(range[0], NumberStyles.Float, C, out double low) || !double.TryParse(range[1], NumberStyles.Float, C, out double high)
                    || !double.IsFinite(low) || !double.IsFinite(high) || !(high > low))
                    throw new ArgumentException($"'{text}': the free argument '{p.Name}' needs ?LOW:HIGH with finite LOW < HIGH; got '{value}'");
                free = (p.Name!, low, high);
                arguments[p.Name!] = value;
                continue;
            }
            _ = Convert(text, p, value);   // validate now
            arguments[p.Name!] = value;
        }
        foreach (var p in factory.GetParameters())
            if (!p.HasDefaultValue && !arguments.ContainsKey(p.Name!))
                throw new ArgumentException($"'{text}': {Snake(factory.Name)} needs '{p.Name}' ({TypeName(p.ParameterType)}); its arguments: {Describe(factory)}");
        return new OptimizerSpec(text, factory, arguments, lookahead, free);
    }

    /// <summary>The form, with the free argument (if any) set to <paramref name="free"/>.</summary>
    public OptimizerForm Build(double? free = null)
    {
        var values = Factory.GetParameters().Select(p =>
            Free is { } f && f.Name == p.Name ? (object?)(free ?? throw new ArgumentException($"'{Text}': a value for the free argument '{f.Name}' is needed"))
            : Arguments.TryGetValue(p.Name!, out var v) ? Convert(Text, p, v)
            : p.DefaultValue).ToArray();
        try
        {
            var tx = (IGradientTransformation)Factory.Invoke(null, values)!;
            return new OptimizerForm(tx, Lookahead, Text);
        }
        catch (TargetInvocationException e) when (e.InnerException is ArgumentException inner)
        {
            throw new ArgumentException($"'{Text}': {inner.Message}", inner);
        }
    }

    /// <summary>Every argument of a factory with its type and default.</summary>
    public static string Describe(MethodInfo factory) =>
        string.Join(", ", factory.GetParameters().Select(p =>
            $"{p.Name} ({TypeName(p.ParameterType)}{(p.HasDefaultValue ? $", default {Show(p.DefaultValue)}" : ", required")})"));

    static object Convert(string text, System.Reflection.ParameterInfo p, string value)
    {
        var type = Underlying(p.ParameterType);
        bool ok;
        object? result = null;
        if (type == typeof(double)) { ok = double.TryParse(value, NumberStyles.Float, C, out var d) && !double.IsNaN(d); result = d; }
        else if (type == typeof(int)) { ok = int.TryParse(value, NumberStyles.Integer, C, out var i); result = i; }
        else if (type == typeof(long)) { ok = long.TryParse(value, NumberStyles.Integer, C, out var l); result = l; }
        else if (type == typeof(bool)) { ok = bool.TryParse(value, out var b); result = b; }
        else if (type.IsEnum) { ok = Enum.TryParse(type, value, ignoreCase: true, out result) && Enum.IsDefined(type, result!); }
        else throw new ArgumentException($"'{text}': argument '{p.Name}' is a {TypeName(p.ParameterType)}, which a command line cannot give; leave it at its default");
        if (!ok) throw new ArgumentException($"'{text}': argument '{p.Name}' expects {TypeName(p.ParameterType)}; got '{value}'");
        return result!;
    }

    static Type Underlying(Type t) => Nullable.GetUnderlyingType(t) ?? t;

    static string TypeName(Type t)
    {
        var u = Underlying(t);
        string name = u == typeof(double) ? "double" : u == typeof(int) ? "int" : u == typeof(long) ? "long" : u == typeof(bool) ? "bool"
            : u.IsEnum ? $"{u.Name}: {string.Join("|", Enum.GetNames(u))}" : u.Name;
        return Nullable.GetUnderlyingType(t) is null ? name : name + "?";
    }

    static string Show(object? v) => v switch
    {
        null => "none",
        double d => d.ToString("R", C),
        bool b => b ? "true" : "false",
        _ => System.Convert.ToString(v, C) ?? "",
    };

    static string Key(string name) => name.Replace("_", "").Replace("-", "").ToLowerInvariant();

    /// <summary>PascalCase to snake_case (HeavyBall → heavy_ball; MarsM → mars_m).</summary>
    public static string Snake(string name)
    {
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < name.Length; i++)
        {
            if (char.IsUpper(name[i]) && i > 0 && (char.IsLower(name[i - 1]) || (i + 1 < name.Length && char.IsLower(name[i + 1])) || char.IsDigit(name[i - 1]))) sb.Append('_');
            sb.Append(char.ToLowerInvariant(name[i]));
        }
        return sb.ToString();
    }
}
