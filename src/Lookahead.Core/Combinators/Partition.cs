using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>What a partition's labelling function sees of a parameter.</summary>
/// <param name="Name">The parameter's name.</param>
/// <param name="Shape">Its shape.</param>
/// <param name="DType">Its dtype.</param>
public sealed record ParameterInfo(string Name, IReadOnlyList<long> Shape, ScalarType DType)
{
    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Count;
}

/// <summary>Predicates on parameters, for <see cref="Transforms.Partition(Func{ParameterInfo, bool}, IGradientTransformation, IGradientTransformation)"/>.</summary>
public static class Parameters
{
    /// <summary>Parameters whose name matches a regular expression.</summary>
    public static Func<ParameterInfo, bool> NameMatches(string pattern)
    {
        var re = new Regex(Check.NotNull(pattern, nameof(pattern)), RegexOptions.CultureInvariant);
        return p => re.IsMatch(p.Name);
    }

    /// <summary>Parameters of exactly this rank.</summary>
    public static Func<ParameterInfo, bool> RankIs(int rank) => p => p.Rank == rank;

    /// <summary>Parameters of at least this rank (e.g. 2 for the matrices that Muon orthogonalises).</summary>
    public static Func<ParameterInfo, bool> RankAtLeast(int rank) => p => p.Rank >= rank;

    /// <summary>Parameters of exactly this shape.</summary>
    public static Func<ParameterInfo, bool> ShapeIs(params long[] shape) => p => p.Shape.SequenceEqual(shape);
}

public static partial class Transforms
{
    /// <summary>
    /// Partition by label: <paramref name="label"/> gives each parameter a label, and the parameters of
    /// each label are updated by that label's transform alone, which sees only them (a sub-tree in the
    /// original order). The state maps each label to its transform's state.
    /// </summary>
    /// <param name="label">Labelling function; every label it returns must be a key of <paramref name="transforms"/>.</param>
    /// <param name="transforms">Transform per label, in a fixed order.</param>
    public static IGradientTransformation Partition(Func<ParameterInfo, string> label, params (string Label, IGradientTransformation Transform)[] transforms)
    {
        ArgumentNullException.ThrowIfNull(label);
        ArgumentNullException.ThrowIfNull(transforms);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (l, tx) in transforms)
        {
            if (l is null || !seen.Add(l)) throw new ArgumentException($"label '{l}' is null or occurs twice", nameof(transforms));
            if (tx is null) throw new ArgumentNullException(nameof(transforms), $"the transform for label '{l}' is null");
        }
        return new PartitionTransform(label, transforms.ToArray());
    }

    /// <summary>
    /// Partition by a predicate: parameters for which <paramref name="predicate"/> holds are updated by
    /// <paramref name="whenTrue"/>, the others by <paramref name="whenFalse"/> (labels "true" and "false").
    /// </summary>
    public static IGradientTransformation Partition(Func<ParameterInfo, bool> predicate, IGradientTransformation whenTrue, IGradientTransformation whenFalse)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        return Partition(p => predicate(p) ? "true" : "false", ("true", whenTrue), ("false", whenFalse));
    }
}

/// <summary>State of <see cref="Transforms.Partition(Func{ParameterInfo, string}, ValueTuple{string, IGradientTransformation}[])"/>: each label's state.</summary>
public sealed record PartitionState(IReadOnlyList<KeyValuePair<string, IOptState>> States) : IOptState
{
    /// <inheritdoc />
    public IEnumerable<StateLeaf> Leaves() => States.SelectMany(kv => OptState.Nested(kv.Key, kv.Value));

    /// <inheritdoc />
    public IOptState MapTensors(Func<string, Tensor, Tensor> f) =>
        new PartitionState(States.Select(kv => new KeyValuePair<string, IOptState>(kv.Key, OptState.MapNested(kv.Key, kv.Value, f))).ToArray());

    /// <inheritdoc />
    public IOptState MapScalars(Func<string, double, double> f) =>
        new PartitionState(States.Select(kv => new KeyValuePair<string, IOptState>(kv.Key, OptState.MapNestedScalars(kv.Key, kv.Value, f))).ToArray());
}

sealed class PartitionTransform(Func<ParameterInfo, string> label, (string Label, IGradientTransformation Transform)[] parts) : Transform<PartitionState>, IComposite, IValidating
{
    public void Validate(IReadOnlyList<ParameterInfo> parameters, ValidationReport report)
    {
        var routed = parts.Select(_ => new List<ParameterInfo>()).ToArray();
        foreach (var p in parameters)
        {
            var l = label(p);
            int k = Array.FindIndex(parts, x => x.Label == l);
            if (k < 0) report.Add($"parameter '{p.Name}' got the label '{l}', which has no transform (labels: {string.Join(", ", parts.Select(x => x.Label))})");
            else routed[k].Add(p);
        }
        for (int k = 0; k < parts.Length; k++) Validation.Child(parts[k].Transform, routed[k], report);
    }

    public IEnumerable<IGradientTransformation> Children => parts.Select(p => p.Transform);
    public string? Route(ParameterInfo parameter) => label(parameter);

    public override Spec Spec
    {
        get
        {
            var spec = Spec.Of("partition").WithFunction("label", label);
            var labels = Spec.Of("parts");
            foreach (var (l, t) in parts) labels.With(l, t);
            return spec.With("parts", labels);
        }
    }

    List<int>[] Groups(TensorTree parameters)
    {
        var groups = parts.Select(_ => new List<int>()).ToArray();
        for (int i = 0; i < parameters.Count; i++)
        {
            var t = parameters.Tensors[i];
            var info = new ParameterInfo(parameters.Names[i], t.shape, t.dtype);
            var l = label(info);
            int k = Array.FindIndex(parts, p => p.Label == l);
            if (k < 0)
                throw new ArgumentException(
                    $"parameter '{info.Name}' got the label '{l}', which has no transform (labels: {string.Join(", ", parts.Select(p => p.Label))})", nameof(parameters));
            groups[k].Add(i);
        }
        return groups;
    }

    protected override PartitionState InitState(TensorTree parameters)
    {
        var groups = Groups(parameters);
        return new(parts.Select((p, k) => new KeyValuePair<string, IOptState>(p.Label, p.Transform.Init(parameters.Select(groups[k])))).ToArray());
    }

    public override PartitionState Step(TensorTree updates, PartitionState state, TensorTree parameters, StepContext context)
    {
        var groups = Groups(parameters);
        var next = new KeyValuePair<string, IOptState>[parts.Length];
        for (int k = 0; k < parts.Length; k++)
            next[k] = new(parts[k].Label, InPlace.Step(parts[k].Transform, updates.Select(groups[k]), state.States[k].Value, parameters.Select(groups[k]), context));
        return new(next);
    }
}
