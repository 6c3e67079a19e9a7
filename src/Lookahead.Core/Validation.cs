using System;
using System.Collections.Generic;
using System.Linq;

namespace Lookahead;

/// <summary>The problems structural validation found (<see cref="IValidating"/>).</summary>
public sealed class ValidationReport
{
    readonly List<string> _problems = new();

    /// <summary>Each problem: what is wrong and with which tensor, and what would fix it.</summary>
    public IReadOnlyList<string> Problems => _problems;

    /// <summary>Records a problem.</summary>
    public void Add(string problem) => _problems.Add(Check.NotNull(problem, nameof(problem)));

    /// <summary>Throws an <see cref="ArgumentException"/> listing every problem, if there is one.</summary>
    public void ThrowIfAny(string parameterName)
    {
        if (_problems.Count == 1) throw new ArgumentException(_problems[0], parameterName);
        if (_problems.Count > 1) throw new ArgumentException($"{_problems.Count} problems: " + string.Join("; ", _problems), parameterName);
    }
}

/// <summary>A context key that a transform reads, and from which of its steps on.</summary>
/// <param name="Key">The key (a <see cref="ContextKey{T}"/>).</param>
/// <param name="KeyName">Its name, for messages.</param>
/// <param name="RequiredBy">Who reads it.</param>
/// <param name="FromStep">The first step (1, 2, …) that needs it.</param>
public sealed record ContextRequirement(object Key, string KeyName, string RequiredBy, long FromStep = 1)
{
    /// <summary>A requirement for <paramref name="key"/>.</summary>
    public static ContextRequirement For<T>(ContextKey<T> key, string requiredBy, long fromStep = 1) => new(key, key.Name, requiredBy, fromStep);
}

/// <summary>
/// A transform with structural needs: checked when a runner (or <see cref="IGradientTransformation.Init"/>,
/// or the pure update) first meets the parameters, before any state exists or changes. Composites that route
/// parameters (partitions) pass each child only its own parameters; other composites pass all of them.
/// </summary>
public interface IValidating
{
    /// <summary>Adds a problem to <paramref name="report"/> for every parameter this transform (or a child) cannot handle.</summary>
    void Validate(IReadOnlyList<ParameterInfo> parameters, ValidationReport report);

    /// <summary>The context keys this transform itself reads (not its children's).</summary>
    IEnumerable<ContextRequirement> Requirements => Array.Empty<ContextRequirement>();
}

/// <summary>Running structural validation over a composition.</summary>
public static class Validation
{
    // Init of a composite runs its children's Init: only the outermost call validates the whole tree.
    [ThreadStatic] internal static int InitDepth;

    /// <summary>Validates <paramref name="transform"/> for <paramref name="parameters"/>: an <see cref="IValidating"/> validates itself, any other composite its children with all the parameters.</summary>
    public static void Child(IGradientTransformation transform, IReadOnlyList<ParameterInfo> parameters, ValidationReport report)
    {
        ArgumentNullException.ThrowIfNull(transform);
        if (transform is IValidating v) v.Validate(parameters, report);
        else if (transform is IComposite c) foreach (var child in c.Children) Child(child, parameters, report);
    }

    /// <summary>Throws an <see cref="ArgumentException"/> naming every tensor that <paramref name="transform"/> cannot handle.</summary>
    public static void Check(IGradientTransformation transform, TensorTree parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var report = new ValidationReport();
        Child(transform, parameters.Select(kv => new ParameterInfo(kv.Key, kv.Value.shape, kv.Value.dtype)).ToArray(), report);
        report.ThrowIfAny(nameof(parameters));
    }

    /// <summary>Every context key the composition reads, depth first.</summary>
    public static IReadOnlyList<ContextRequirement> Requirements(IGradientTransformation transform)
    {
        var list = new List<ContextRequirement>();
        void Walk(IGradientTransformation t)
        {
            if (t is IValidating v) list.AddRange(v.Requirements);
            if (t is IComposite c) foreach (var child in c.Children) Walk(child);
        }
        Walk(transform);
        return list;
    }

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first key that <paramref name="context"/> lacks for step <paramref name="step"/>.</summary>
    public static void CheckContext(IReadOnlyList<ContextRequirement> requirements, StepContext context, long step)
    {
        for (int i = 0; i < requirements.Count; i++)
            if (requirements[i] is var r && step >= r.FromStep && !context.ContainsKey(r.Key))
                throw new ArgumentException(
                    $"{r.RequiredBy} needs the step context to carry '{r.KeyName}' at step {step}, but it does not; supply it with StepContext.With", "context");
    }
}
