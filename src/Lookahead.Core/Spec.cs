using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Lookahead;

/// <summary>
/// The identity of a transform: its kind and every hyperparameter, as an ordered tree of text values and
/// child specs. The human-readable <see cref="IGradientTransformation.Name"/> and the
/// <see cref="Fingerprint"/> that checkpoints check are both made from it.
/// </summary>
/// <remarks>
/// <para><b>Stable.</b> Values are formatted once, when the spec is built, in the invariant culture
/// (doubles as round-trip text, so 0.1 and 0.1 + 1e-17 differ only if the doubles do). A spec, its
/// <see cref="Canonical"/> text and its fingerprint are the same in every process, culture and machine.</para>
/// <para><b>Functions.</b> A hyperparameter given as a function (a schedule, a factory, a condition) has no
/// text of its own; transforms record it by its values at fixed probe points (<see cref="ProbeSteps"/>).
/// Routing functions (partition labels, parameter predicates) are recorded only as "function": which
/// parameters they route where shows in the state's structure, which checkpoints check too. A function's
/// method name is never used: it changes when unrelated code around a lambda is edited.</para>
/// </remarks>
public sealed class Spec : IEquatable<Spec>
{
    readonly List<KeyValuePair<string, object>> _entries = new();   // value: string or Spec

    Spec(string kind) => Kind = kind;

    /// <summary>The kind of transform, e.g. <c>"trace"</c> or <c>"adam"</c>.</summary>
    public string Kind { get; }

    /// <summary>The entries in order: each value is a <see cref="string"/> (a formatted hyperparameter) or a child <see cref="Spec"/>.</summary>
    public IReadOnlyList<KeyValuePair<string, object>> Entries => _entries;

    /// <summary>The steps at which function-valued hyperparameters are probed.</summary>
    public static IReadOnlyList<long> ProbeSteps { get; } = new long[] { 1, 2, 3, 5, 10, 30, 100, 300, 1000, 3000, 10000, 100000 };

    /// <summary>A spec of <paramref name="kind"/> with no entries yet.</summary>
    public static Spec Of(string kind)
    {
        if (string.IsNullOrEmpty(kind)) throw new ArgumentException("a spec needs a non-empty kind", nameof(kind));
        return new(kind);
    }

    /// <summary>
    /// Adds a hyperparameter (a number, bool, enum, string, null, an option record, a spec or a transform);
    /// returns this spec. Keys are unique.
    /// </summary>
    public Spec With(string key, object? value)
    {
        if (string.IsNullOrEmpty(key)) throw new ArgumentException("a spec entry needs a non-empty key", nameof(key));
        if (_entries.Any(e => e.Key == key)) throw new ArgumentException($"spec '{Kind}' already has an entry '{key}'", nameof(key));
        _entries.Add(new(key, Value(value)));
        return this;
    }

    /// <summary>Adds the probed values of <paramref name="f"/> at <see cref="ProbeSteps"/> under <paramref name="key"/>.</summary>
    public Spec WithProbes(string key, Func<long, double> f)
    {
        ArgumentNullException.ThrowIfNull(f);
        var probes = Of("probes");
        foreach (long t in ProbeSteps) probes.With("t" + t.ToString(CultureInfo.InvariantCulture), Probe(() => Format(f(t))));
        return With(key, probes);
    }

    /// <summary>Adds the specs of the transforms <paramref name="factory"/> builds at <paramref name="points"/> under <paramref name="key"/> (each point's key is <paramref name="label"/> + the point; repeated specs are written once).</summary>
    public Spec WithFactoryProbes<T>(string key, Func<T, IGradientTransformation> factory, IEnumerable<T> points, string label)
    {
        ArgumentNullException.ThrowIfNull(factory);
        var probes = Of("probes");
        Spec? previous = null;
        foreach (var x in points)
        {
            string pointKey = label + Format(x);
            Spec s;
            try
            {
                var tx = factory(x);
                s = tx is null ? Of("null") : tx.Spec;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or ArithmeticException)
            {
                s = Of("throws").With("type", e.GetType().Name);
            }
            if (previous is null || !previous.Equals(s)) probes.With(pointKey, s);
            previous = s;
        }
        return With(key, probes);
    }

    /// <summary>Adds the values of a step condition at <see cref="ProbeSteps"/> (with an empty context) under <paramref name="key"/>; a probe that throws (a condition that reads the context) is recorded as such.</summary>
    public Spec WithConditionProbes(string key, Func<long, StepContext, bool> condition)
    {
        ArgumentNullException.ThrowIfNull(condition);
        var probes = Of("probes");
        foreach (long t in ProbeSteps) probes.With("t" + t.ToString(CultureInfo.InvariantCulture), Probe(() => condition(t, StepContext.Empty) ? "true" : "false"));
        return With(key, probes);
    }

    static string Probe(Func<string> f)
    {
        try { return f(); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or ArithmeticException) { return "throws " + e.GetType().Name; }
    }

    /// <summary>A spec made of the public properties of an option record, in declaration order.</summary>
    public static Spec FromRecord(string kind, object record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var spec = Of(kind);
        foreach (var p in record.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance)
                     .Where(p => p.GetIndexParameters().Length == 0 && p.Name != "EqualityContract").OrderBy(p => p.MetadataToken))
            spec.With(p.Name, p.GetValue(record));
        return spec;
    }

    static object Value(object? value) => value switch
    {
        null => "null",
        Spec s => s,
        IGradientTransformation t => t.Spec,
        string s => s,
        bool b => b ? "true" : "false",
        double d => Format(d),
        Hyper h => Format(h.Value),   // a tensor hyperparameter is the same optimizer as its value
        float f => Format((double)f),
        Enum e => e.ToString(),
        IConvertible c when value is int or long or short or byte or uint or ulong => c.ToString(CultureInfo.InvariantCulture),
        IShiftSchedule shift => ShiftSpec(shift),
        Delegate => "function",   // by value where it matters (probes); routing shows in the state's structure
        ITuple tuple => TupleSpec(tuple),
        _ when value.GetType().GetProperty("EqualityContract", BindingFlags.NonPublic | BindingFlags.Instance) is not null => FromRecord(value.GetType().Name, value),
        _ => throw new ArgumentException($"a spec value must be a number, bool, enum, string, option record, spec or transform; got {value.GetType().Name}"),
    };

    static Spec TupleSpec(ITuple tuple)
    {
        var s = Of("tuple");
        for (int i = 0; i < tuple.Length; i++) s.With("item" + (i + 1).ToString(CultureInfo.InvariantCulture), tuple[i]);
        return s;
    }

    static Spec ShiftSpec(IShiftSchedule shift)
    {
        // Shift schedules are probed: their coefficients at the first steps, with the carry they thread.
        var s = Of("shift_schedule").With("type", shift.GetType().Name);
        double carry = shift.InitialCarry;
        foreach (long t in ProbeSteps)
        {
            var (a, b, next) = shift.At(t, carry);
            s.With("t" + t.ToString(CultureInfo.InvariantCulture), Format(a) + " " + Format(b));
            carry = next;
        }
        return s;
    }

    /// <summary>A value's invariant, round-trip text.</summary>
    public static string Format(object? value) => value switch
    {
        null => "null",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => ((double)f).ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        IFormattable x => x.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    /// <summary>The canonical text: compact JSON, entries in order, every value a string or an object.</summary>
    public string Canonical => ToJson().ToJsonString();

    JsonObject ToJson()
    {
        var o = new JsonObject { ["kind"] = Kind };
        foreach (var (k, v) in _entries) o[k == "kind" ? "_kind" : k] = v is Spec s ? s.ToJson() : JsonValue.Create((string)v);
        return o;
    }

    /// <summary>Reads a spec from its <see cref="Canonical"/> text.</summary>
    public static Spec Parse(string canonical)
    {
        ArgumentNullException.ThrowIfNull(canonical);
        var node = JsonNode.Parse(canonical) as JsonObject ?? throw new FormatException("a spec is a JSON object");
        return FromJson(node);
    }

    static Spec FromJson(JsonObject o)
    {
        var kind = (string?)o["kind"] ?? throw new FormatException("a spec object needs a 'kind'");
        var s = new Spec(kind);
        foreach (var (k, v) in o)
        {
            if (k == "kind") continue;
            string key = k == "_kind" ? "kind" : k;
            s._entries.Add(new(key, v switch
            {
                JsonObject child => FromJson(child),
                JsonValue value when value.TryGetValue<string>(out var text) => text,
                _ => throw new FormatException($"spec entry '{k}' is neither a string nor an object"),
            }));
        }
        return s;
    }

    /// <summary>SHA-256 of <see cref="Canonical"/>, as 64 hex digits.</summary>
    public string Fingerprint => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(Canonical))).ToLowerInvariant();

    /// <summary>
    /// Where <paramref name="other"/> differs from this spec: one entry per differing hyperparameter, with
    /// its path (child keys and the hyperparameter's key, separated by '/') and both values ("absent" when a
    /// side lacks it; a differing kind is reported at the path of the child).
    /// </summary>
    public IReadOnlyList<SpecDifference> Differences(Spec other)
    {
        ArgumentNullException.ThrowIfNull(other);
        var list = new List<SpecDifference>();
        Diff(this, other, Kind, list);
        return list;
    }

    static void Diff(Spec a, Spec b, string path, List<SpecDifference> into)
    {
        if (a.Kind != b.Kind) { into.Add(new(path, a.Kind, b.Kind)); return; }
        var bMap = b._entries.ToDictionary(e => e.Key, e => e.Value);
        var aKeys = new HashSet<string>(a._entries.Select(e => e.Key));
        foreach (var (k, va) in a._entries)
        {
            string p = path + "/" + k;
            if (!bMap.TryGetValue(k, out var vb)) into.Add(new(p, Show(va), "absent"));
            else if (va is Spec sa && vb is Spec sb) Diff(sa, sb, p, into);
            else if (!Same(va, vb)) into.Add(new(p, Show(va), Show(vb)));
        }
        foreach (var (k, vb) in b._entries)
            if (!aKeys.Contains(k)) into.Add(new(path + "/" + k, "absent", Show(vb)));
    }

    static bool Same(object a, object b) => a is string sa && b is string sb ? sa == sb : a is Spec x && b is Spec y && x.Equals(y);

    static string Show(object v) => v is Spec s ? s.ToString() : (string)v;

    /// <summary>The human-readable form: <c>kind(key=value, child=kind(…))</c>; probe tables are abbreviated.</summary>
    public override string ToString()
    {
        if (_entries.Count == 0) return Kind;
        var sb = new StringBuilder(Kind).Append('(');
        bool first = true;
        foreach (var (k, v) in _entries)
        {
            if (!first) sb.Append(", ");
            first = false;
            sb.Append(k).Append('=').Append(v is Spec s ? (s.Kind == "probes" ? s.ProbeSummary() : s.ToString()) : (string)v);
        }
        return sb.Append(')').ToString();
    }

    string ProbeSummary() =>
        _entries.Count == 0 ? "…" : _entries[0].Value is Spec s ? s.ToString() : $"[{_entries[0].Key}: {_entries[0].Value}, …]";

    /// <inheritdoc />
    public bool Equals(Spec? other) => other is not null && Canonical == other.Canonical;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is Spec s && Equals(s);

    /// <inheritdoc />
    public override int GetHashCode() => Canonical.GetHashCode(StringComparison.Ordinal);
}

/// <summary>One hyperparameter on which two specs differ (<see cref="Spec.Differences"/>).</summary>
/// <param name="Path">Where: the root kind, child keys and the hyperparameter's key, joined by '/'.</param>
/// <param name="First">Its value in the spec <c>Differences</c> was called on.</param>
/// <param name="Second">Its value in the other spec.</param>
public sealed record SpecDifference(string Path, string First, string Second);
