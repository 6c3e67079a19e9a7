using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>What a state slot holds.</summary>
public enum SlotKind
{
    /// <summary>An integer scalar (a step count, a level).</summary>
    Integer,
    /// <summary>A real scalar (a running sum, a carry).</summary>
    Real,
    /// <summary>One tensor per parameter, shaped like it (a moment m, v, v_max, g_prev, a slow copy).</summary>
    PerParameter,
    /// <summary>One tensor for the whole tree (a 0-d reduction kept across steps).</summary>
    Tensor,
    /// <summary>The state of a child transform.</summary>
    Child,
}

/// <summary>How a per-parameter slot starts.</summary>
public abstract record SlotStart
{
    SlotStart() { }

    /// <summary>Zeros like each parameter.</summary>
    public static SlotStart Zeros { get; } = new Filled(0);

    /// <summary>Every entry <paramref name="value"/>.</summary>
    public static SlotStart Fill(double value) => new Filled(value);

    /// <summary>A copy of each parameter (slow weights).</summary>
    public static SlotStart CopyOfParameters { get; } = new Copy();

    /// <summary>No tensors (a slot that a context key fills instead).</summary>
    public static SlotStart None { get; } = new Empty();

    internal sealed record Filled(double Value) : SlotStart;
    internal sealed record Copy : SlotStart;
    internal sealed record Empty : SlotStart;
}

/// <summary>A declared slot of a <see cref="StateLayout"/>: its name, kind and position. Read and write it through <see cref="DeclaredState"/>.</summary>
public abstract class Slot
{
    private protected Slot(string name, SlotKind kind, int index) { Name = name; Kind = kind; Index = index; }

    /// <summary>The slot's name: the first segment of its leaves' paths.</summary>
    public string Name { get; }

    /// <summary>What it holds.</summary>
    public SlotKind Kind { get; }

    internal int Index { get; }

    /// <inheritdoc />
    public override string ToString() => $"{Name}: {Kind}";
}

/// <summary>A slot holding a <typeparamref name="T"/>.</summary>
public sealed class Slot<T> : Slot
{
    internal Slot(string name, SlotKind kind, int index) : base(name, kind, index) { }
}

/// <summary>
/// The declaration of one transform's state: its slots, in order, each with its kind and how it starts.
/// <see cref="DeclaredState"/> derives from it everything a state must do (leaf paths, cloning, mapping,
/// checkpoint save and load, the runner's flat relayout), so no primitive writes a state record by hand.
/// </summary>
/// <remarks>A layout is built once per transform value (the slots present may depend on its options, e.g.
/// AMSGrad's running maximum) and is immutable after <see cref="Seal"/>.</remarks>
public sealed class StateLayout
{
    readonly List<(Slot Slot, object? Start)> _slots = new();
    bool _sealed;
    string? _signature;

    /// <summary>A layout for the state of <paramref name="kind"/>.</summary>
    public StateLayout(string kind) => Kind = Check.NotNull(kind, nameof(kind));

    /// <summary>The transform kind the state belongs to (for messages).</summary>
    public string Kind { get; }

    /// <summary>The slots in order (fixed once the layout is sealed).</summary>
    public IReadOnlyList<Slot> Slots => _sealed ? _sealedSlots ??= _slots.Select(s => s.Slot).ToArray() : _slots.Select(s => s.Slot).ToArray();

    Slot[]? _sealedSlots;

    /// <summary>"kind[name: Kind, …]": two layouts with the same signature hold interchangeable states.</summary>
    public string Signature => _signature ??= $"{Kind}[{string.Join(", ", _slots.Select(s => s.Slot.ToString()))}]";

    Slot<T> Add<T>(string name, SlotKind kind, object? start)
    {
        if (_sealed) throw new InvalidOperationException($"the state layout of {Kind} is sealed");
        if (string.IsNullOrEmpty(name) || name.Contains('/')) throw new ArgumentException($"slot names are non-empty and contain no '/'; got '{name}'", nameof(name));
        if (_slots.Any(s => s.Slot.Name == name)) throw new ArgumentException($"{Kind} declares the slot '{name}' twice", nameof(name));
        var slot = new Slot<T>(name, kind, _slots.Count);
        _slots.Add((slot, start));
        return slot;
    }

    /// <summary>An integer scalar slot starting at <paramref name="start"/>.</summary>
    public Slot<long> Integer(string name, long start = 0) => Add<long>(name, SlotKind.Integer, start);

    /// <summary>A real scalar slot starting at <paramref name="start"/>.</summary>
    public Slot<double> Real(string name, double start = 0) => Add<double>(name, SlotKind.Real, start);

    /// <summary>A per-parameter tensor slot (same shape, dtype and device as each parameter).</summary>
    public Slot<TensorTree> PerParameter(string name, SlotStart start) => Add<TensorTree>(name, SlotKind.PerParameter, Check.NotNull(start, nameof(start)));

    /// <summary>One tensor for the whole tree, made from the parameters by <paramref name="start"/> (e.g. a 0-d float64 on their device).</summary>
    public Slot<Tensor> Tensor(string name, Func<TensorTree, Tensor> start) => Add<Tensor>(name, SlotKind.Tensor, Check.NotNull(start, nameof(start)));

    /// <summary>A child transform's state, started by <paramref name="start"/> (usually the child's <c>Init</c>, on the parameters it is given).</summary>
    public Slot<IOptState> Child(string name, Func<TensorTree, IOptState> start) => Add<IOptState>(name, SlotKind.Child, Check.NotNull(start, nameof(start)));

    /// <summary>Ends the declaration; returns the layout.</summary>
    public StateLayout Seal() { _sealed = true; return this; }

    /// <summary>The initial state for <paramref name="parameters"/>: every slot as declared.</summary>
    public DeclaredState Start(TensorTree parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        _sealed = true;
        var values = new object?[_slots.Count];
        for (int i = 0; i < _slots.Count; i++)
        {
            var (slot, start) = _slots[i];
            values[i] = slot.Kind switch
            {
                SlotKind.Integer or SlotKind.Real => start,
                SlotKind.PerParameter => start switch
                {
                    SlotStart.Filled f when f.Value == 0 => parameters.ZerosLike(),
                    SlotStart.Filled f => Filled(parameters, f.Value),
                    SlotStart.Copy => parameters.Clone(),
                    _ => TensorTree.Empty,
                },
                SlotKind.Tensor => ((Func<TensorTree, Tensor>)start!)(parameters),
                _ => ((Func<TensorTree, IOptState>)start!)(parameters),
            };
        }
        return new DeclaredState(this, values);
    }

    static TensorTree Filled(TensorTree parameters, double value)
    {
        using var s = value.ToScalar();
        return parameters.Map(p => full_like(p, s));
    }

    internal void CheckOwns(Slot slot)
    {
        if (slot.Index >= _slots.Count || _slots[slot.Index].Slot.Name != slot.Name || _slots[slot.Index].Slot.Kind != slot.Kind)
            throw new ArgumentException($"the slot '{slot.Name}' is not part of the state of {Kind} ({Signature})", nameof(slot));
    }
}

/// <summary>
/// The state of a transform whose slots are declared by a <see cref="StateLayout"/>: immutable, one value per
/// slot. Leaf paths are <c>slot</c> for scalars and whole-tree tensors, <c>slot/parameter</c> for per-parameter
/// slots, and <c>slot/…</c> for a child's leaves.
/// </summary>
/// <remarks>Ownership as for every <see cref="IOptState"/>: the state owns its tensor handles.</remarks>
public sealed class DeclaredState : IOptState
{
    readonly object?[] _values;

    internal DeclaredState(StateLayout layout, object?[] values) { Layout = layout; _values = values; }

    /// <summary>The declaration.</summary>
    public StateLayout Layout { get; }

    /// <summary>The value of <paramref name="slot"/>.</summary>
    public T Get<T>(Slot<T> slot)
    {
        Layout.CheckOwns(slot);
        return (T)_values[slot.Index]!;
    }

    /// <summary>The value of the slot called <paramref name="name"/> (for inspection).</summary>
    public object this[string name]
    {
        get
        {
            var slot = Layout.Slots.FirstOrDefault(s => s.Name == name)
                ?? throw new KeyNotFoundException($"the state of {Layout.Kind} has no slot '{name}' (slots: {string.Join(", ", Layout.Slots.Select(s => s.Name))})");
            return _values[slot.Index]!;
        }
    }

    /// <summary>This state with <paramref name="slot"/> set to <paramref name="value"/> (this one is unchanged).</summary>
    public DeclaredState With<T>(Slot<T> slot, T value)
    {
        Layout.CheckOwns(slot);
        var copy = (object?[])_values.Clone();
        copy[slot.Index] = value;
        return new DeclaredState(Layout, copy);
    }

    /// <summary>The tensors of <see cref="Leaves"/>, in the same order, added to <paramref name="into"/> (no paths built).</summary>
    internal void CollectTensors(List<Tensor> into)
    {
        var slots = Layout.Slots;
        for (int i = 0; i < slots.Count; i++)
            switch (slots[i].Kind)
            {
                case SlotKind.Integer: case SlotKind.Real: break;
                case SlotKind.PerParameter:
                    var tensors = ((TensorTree)_values[i]!).Tensors;
                    for (int k = 0; k < tensors.Count; k++) into.Add(tensors[k]);
                    break;
                case SlotKind.Tensor: into.Add((Tensor)_values[i]!); break;
                default: OptState.CollectTensors((IOptState)_values[i]!, into); break;
            }
    }

    /// <inheritdoc />
    public IEnumerable<StateLeaf> Leaves()
    {
        var slots = Layout.Slots;
        for (int i = 0; i < slots.Count; i++)
        {
            var (name, v) = (slots[i].Name, _values[i]);
            switch (slots[i].Kind)
            {
                case SlotKind.Integer: yield return OptState.Scalar(name, (long)v!); break;
                case SlotKind.Real: yield return OptState.Scalar(name, (double)v!); break;
                case SlotKind.PerParameter: foreach (var l in OptState.Tree(name, (TensorTree)v!)) yield return l; break;
                case SlotKind.Tensor: yield return new StateLeaf(name, (Tensor)v!, null); break;
                default: foreach (var l in OptState.Nested(name, (IOptState)v!)) yield return l; break;
            }
        }
    }

    /// <inheritdoc />
    public IOptState MapTensors(Func<string, Tensor, Tensor> f) => Map(f, null);

    /// <inheritdoc />
    public IOptState MapScalars(Func<string, double, double> f) => Map(null, f);

    DeclaredState Map(Func<string, Tensor, Tensor>? tensors, Func<string, double, double>? scalars)
    {
        var slots = Layout.Slots;
        var next = new object?[_values.Length];
        for (int i = 0; i < slots.Count; i++)
        {
            var (name, v) = (slots[i].Name, _values[i]);
            next[i] = slots[i].Kind switch
            {
                SlotKind.Integer => scalars is null ? v : OptState.Integer(name, (long)v!, scalars),
                SlotKind.Real => scalars is null ? v : scalars(name, (double)v!),
                SlotKind.PerParameter => tensors is null ? v : OptState.MapTree(name, (TensorTree)v!, tensors),
                SlotKind.Tensor => tensors is null ? v : tensors(name, (Tensor)v!),
                _ => tensors is not null ? OptState.MapNested(name, (IOptState)v!, tensors) : OptState.MapNestedScalars(name, (IOptState)v!, scalars!),
            };
        }
        return new DeclaredState(Layout, next);
    }

    /// <summary>
    /// Every per-parameter slot in this state and its children's, with its path prefix (e.g. <c>"1/nu"</c>):
    /// what the runner lays out flat, found from the declarations rather than from leaf paths.
    /// </summary>
    public static IEnumerable<(string Prefix, TensorTree Tree)> PerParameterSlots(IOptState state, string prefix = "")
    {
        if (state is not DeclaredState d) yield break;
        var slots = d.Layout.Slots;
        for (int i = 0; i < slots.Count; i++)
        {
            string path = prefix.Length == 0 ? slots[i].Name : prefix + "/" + slots[i].Name;
            if (slots[i].Kind == SlotKind.PerParameter) yield return (path, (TensorTree)d._values[i]!);
            else if (slots[i].Kind == SlotKind.Child)
                foreach (var x in PerParameterSlots((IOptState)d._values[i]!, path)) yield return x;
        }
    }

    /// <inheritdoc />
    public override string ToString() => Layout.Signature;
}

/// <summary>
/// Base class of the transforms whose state is declared (<see cref="StateLayout"/>): <c>Init</c> starts every
/// slot as declared, and a state from another layout is refused by name.
/// </summary>
public abstract class DeclaredTransform : Transform<DeclaredState>
{
    StateLayout? _layout;

    /// <summary>The state's declaration (built once, on first use, by <see cref="Declare"/>).</summary>
    protected StateLayout Layout => _layout ??= Declare().Seal();

    /// <summary>Declares the state's slots. Called once per transform value.</summary>
    protected abstract StateLayout Declare();

    /// <inheritdoc />
    protected override DeclaredState InitState(TensorTree parameters) => Layout.Start(parameters);

    /// <inheritdoc />
    protected override void CheckState(DeclaredState state)
    {
        if (state.Layout != Layout && state.Layout.Signature != Layout.Signature)
            throw new ArgumentException(
                $"{Label} expects its own state ({Layout.Signature}, from its own Init), got {state.Layout.Signature}", nameof(state));
    }
}
