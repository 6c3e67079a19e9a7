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
    /// original order). The state holds each label's transform's state under the label
    /// (<c>state["bias"]</c> of the <see cref="DeclaredState"/>).
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
            if (l.Length == 0 || l.Contains('/'))
                throw new ArgumentException($"label '{l}' must be non-empty and contain no '/' (it names the part's state: '{l}/…')", nameof(transforms));
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

sealed class PartitionTransform(Func<ParameterInfo, string> label, (string Label, IGradientTransformation Transform)[] parts) : DeclaredTransform, IComposite, IValidating, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    // One child slot per label, in the order the labels were given; each child starts from its transform's
    // Init on the parameters routed to that label.
    readonly (StateLayout Layout, Slot<IOptState>[] Parts) _state = Declared(label, parts);

    static (StateLayout, Slot<IOptState>[]) Declared(Func<ParameterInfo, string> label, (string Label, IGradientTransformation Transform)[] parts)
    {
        var layout = new StateLayout("partition");
        var slots = new Slot<IOptState>[parts.Length];
        for (int k = 0; k < parts.Length; k++)
        {
            int part = k;
            slots[k] = layout.Child(parts[k].Label, p => parts[part].Transform.Init(p.Select(Groups(label, parts, p)[part])));
        }
        return (layout.Seal(), slots);
    }

    protected override StateLayout Declare() => _state.Layout;

    public void Validate(IReadOnlyList<ParameterInfo> parameters, ValidationReport report)
    {
        var routed = parts.Select(_ => new List<ParameterInfo>()).ToArray();
        foreach (var p in parameters)
        {
            int k = PartOf(label, parts, p, out var problem);
            if (k < 0) report.Add(problem!);
            else routed[k].Add(p);
        }
        for (int k = 0; k < parts.Length; k++) Validation.Child(parts[k].Transform, routed[k], report);
    }

    /// <summary>The index of the part <paramref name="p"/> is routed to, or −1 with the problem described.</summary>
    static int PartOf(Func<ParameterInfo, string> label, (string Label, IGradientTransformation Transform)[] parts, ParameterInfo p, out string? problem)
    {
        var l = label(p);
        int k = Array.FindIndex(parts, x => x.Label == l);
        problem = k >= 0 ? null
            : $"parameter '{p.Name}' got the label '{l}', which has no transform (labels: {string.Join(", ", parts.Select(x => x.Label))})";
        return k;
    }

    public IEnumerable<IGradientTransformation> Children => parts.Select(p => p.Transform);
    public string? Route(ParameterInfo parameter) => label(parameter);

    public override Spec Spec
    {
        get
        {
            var spec = Spec.Of("partition");
            var labels = Spec.Of("parts");
            foreach (var (l, t) in parts) labels.With(l, t);
            return spec.With("parts", labels);
        }
    }

    /// <summary>The indices of the parameters routed to each part, in the parts' order.</summary>
    static List<int>[] Groups(Func<ParameterInfo, string> label, (string Label, IGradientTransformation Transform)[] parts, TensorTree parameters)
    {
        var groups = parts.Select(_ => new List<int>()).ToArray();
        for (int i = 0; i < parameters.Count; i++)
        {
            var t = parameters.Tensors[i];
            int k = PartOf(label, parts, new ParameterInfo(parameters.Names[i], t.shape, t.dtype), out var problem);
            if (k < 0) throw new ArgumentException(problem, nameof(parameters));
            groups[k].Add(i);
        }
        return groups;
    }

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        var groups = Groups(label, parts, parameters);
        for (int k = 0; k < parts.Length; k++)
        {
            var slot = _state.Parts[k];
            state = state.With(slot, InPlace.Step(parts[k].Transform, updates.Select(groups[k]), state.Get(slot), parameters.Select(groups[k]), context));
        }
        return state;
    }
}
