using System;
using System.Collections.Generic;
using System.Linq;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Hyperparameters as state (Optax's <c>inject_hyperparams</c>): the transform at every step is
    /// <paramref name="factory"/>(the current values), and the values live in the state, one real slot each
    /// (<c>hyperparameter_NAME</c>), so that they are read (<see cref="Hyperparameters.Get"/>), set between steps
    /// without rebuilding anything (<see cref="Hyperparameters.Set"/>, <see cref="Runner.SetHyperparameter"/>) and saved
    /// with checkpoints. The inner state carries over; the factory must build the same optimizer structure for any
    /// values. It is called once here with <paramref name="initial"/>, so an invalid start is an error now.
    /// </summary>
    /// <param name="factory">The optimizer for given values, e.g. <c>h =&gt; Optim.AdamW(h["lr"], weightDecay: h["wd"])</c>.</param>
    /// <param name="initial">The names and starting values (names: letters, digits and underscores).</param>
    public static IGradientTransformation InjectHyperparameters(Func<IReadOnlyDictionary<string, double>, IGradientTransformation> factory, params (string Name, double Value)[] initial)
    {
        Check.NotNull(factory, nameof(factory));
        Check.NotNull(initial, nameof(initial));
        if (initial.Length == 0) throw new ArgumentException("give at least one hyperparameter", nameof(initial));
        foreach (var (name, value) in initial)
        {
            if (string.IsNullOrEmpty(name) || !name.All(c => char.IsLetterOrDigit(c) || c == '_'))
                throw new ArgumentException($"hyperparameter name '{name}' must be letters, digits and underscores", nameof(initial));
            Check.Finite(value, name);
        }
        var duplicate = initial.GroupBy(p => p.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"hyperparameter '{duplicate.Key}' is given twice", nameof(initial));
        var values = initial.ToDictionary(p => p.Name, p => p.Value);
        _ = factory(values) ?? throw new ArgumentException("the factory returned null", nameof(factory));
        return new InjectedTransform(factory, initial.Select(p => p.Name).ToArray(), values);
    }
}

/// <summary>Reading and setting injected hyperparameters (<see cref="Transforms.InjectHyperparameters"/>) in a state.</summary>
public static class Hyperparameters
{
    /// <summary>The current value of hyperparameter <paramref name="name"/> in a state of <paramref name="transform"/>.</summary>
    public static double Get(IGradientTransformation transform, IOptState state, string name)
    {
        var (_, path) = Find(transform, state, name);
        return state.Leaves().First(l => l.Path == path).Scalar!.Value;
    }

    /// <summary>Every injected hyperparameter of the state, by name.</summary>
    public static IReadOnlyDictionary<string, double> All(IGradientTransformation transform, IOptState state)
    {
        var node = Node(transform);
        return node.Names.ToDictionary(n => n, n => Get(transform, state, n));
    }

    /// <summary>
    /// A state equal to <paramref name="state"/> but with <paramref name="name"/> = <paramref name="value"/> (the tensors are
    /// shared, not copied). The optimizer for the new values is built first, so a value it refuses is an error here and
    /// nothing changes.
    /// </summary>
    public static IOptState Set(IGradientTransformation transform, IOptState state, string name, double value)
    {
        var (node, path) = Find(transform, state, name);
        Check.Finite(value, name);
        var values = All(transform, state).ToDictionary(p => p.Key, p => p.Value);
        values[name] = value;
        try { _ = node.Build(values); }
        catch (ArgumentException e) { throw new ArgumentException($"hyperparameter '{name}' = {value} is refused by the optimizer: {e.Message}", nameof(value), e); }
        return state.MapScalars((p, v) => p == path ? value : v);
    }

    static InjectedTransform Node(IGradientTransformation transform)
    {
        ArgumentNullException.ThrowIfNull(transform);
        var nodes = Nodes(transform).ToArray();
        return nodes.Length == 1 ? nodes[0]
            : throw new ArgumentException($"{transform.Name} has {nodes.Length} InjectHyperparameters nodes; exactly one is needed", nameof(transform));
    }

    static (InjectedTransform Node, string Path) Find(IGradientTransformation transform, IOptState state, string name)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(name);
        var node = Node(transform);
        if (!node.Names.Contains(name))
            throw new ArgumentException($"no injected hyperparameter '{name}' (there are: {string.Join(", ", node.Names)})", nameof(name));
        string slot = InjectedTransform.SlotOf(name);
        var paths = state.Leaves().Where(l => l.Tensor is null && (l.Path == slot || l.Path.EndsWith("/" + slot, StringComparison.Ordinal))).Select(l => l.Path).ToArray();
        if (paths.Length != 1) throw new ArgumentException($"the state has {paths.Length} slots '{slot}' (is it this transform's state?)", nameof(state));
        return (node, paths[0]);
    }

    static IEnumerable<InjectedTransform> Nodes(IGradientTransformation t) =>
        t is InjectedTransform i ? new[] { i } : t is IComposite c ? c.Children.SelectMany(Nodes) : Enumerable.Empty<InjectedTransform>();
}

sealed class InjectedTransform : DeclaredTransform, IComposite, IDifferentiable
{
    readonly Func<IReadOnlyDictionary<string, double>, IGradientTransformation> _factory;
    readonly IReadOnlyDictionary<string, double> _initial;
    readonly StateLayout _layout;
    readonly Slot<double>[] _values;
    readonly Slot<IOptState> _inner;

    internal static string SlotOf(string name) => "hyperparameter_" + name;

    internal InjectedTransform(Func<IReadOnlyDictionary<string, double>, IGradientTransformation> factory, string[] names, IReadOnlyDictionary<string, double> initial)
    {
        _factory = factory;
        _initial = initial;
        Names = names;
        _layout = new StateLayout("inject_hyperparameters");
        _values = names.Select(n => _layout.Real(SlotOf(n), initial[n])).ToArray();
        _inner = _layout.Child("inner", p => factory(initial).Init(p));
        _layout.Seal();
    }

    internal string[] Names { get; }

    internal IGradientTransformation Build(IReadOnlyDictionary<string, double> values) =>
        _factory(values) ?? throw new InvalidOperationException("InjectHyperparameters: the factory returned null");

    protected override StateLayout Declare() => _layout;

    public IEnumerable<IGradientTransformation> Children => new[] { Build(_initial) };

    public override Spec Spec
    {
        get
        {
            var spec = Spec.Of("inject_hyperparameters");
            foreach (var n in Names) spec = spec.With(n, _initial[n]);
            return spec.With("inner", Build(_initial));
        }
    }

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        var values = new Dictionary<string, double>(Names.Length);
        for (int i = 0; i < Names.Length; i++) values[Names[i]] = state.Get(_values[i]);
        var inner = InPlace.Step(Build(values), updates, state.Get(_inner), parameters, context);
        return state.With(_inner, inner);
    }
}
