using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>
/// An ordered tree of named tensors: parameters, gradients, updates, or one slot of an optimizer's state.
/// Names are the ones <c>named_parameters()</c> gives (<c>"fc1.weight"</c>), order is significant.
/// </summary>
/// <remarks>
/// <para>A tree is an immutable container: its names and tensor handles never change. The tensors it
/// refers to may be owned by someone else; a tree does not imply ownership. <see cref="Dispose"/>
/// disposes every handle and is for trees that the caller owns (for example the updates returned by
/// <see cref="IGradientTransformation.Update"/>).</para>
/// </remarks>
public sealed class TensorTree : IReadOnlyList<KeyValuePair<string, Tensor>>, IDisposable
{
    readonly string[] _names;
    readonly Tensor[] _tensors;
    readonly Dictionary<string, int> _index;

    TensorTree(string[] names, Tensor[] tensors)
    {
        _names = names;
        _tensors = tensors;
        _index = new Dictionary<string, int>(names.Length, StringComparer.Ordinal);
        for (int i = 0; i < names.Length; i++)
        {
            if (string.IsNullOrEmpty(names[i]))
                throw new ArgumentException($"tensor #{i} has an empty name; every tensor of a tree needs a unique non-empty name", "names");
            if (tensors[i] is null)
                throw new ArgumentNullException("tensors", $"tensor '{names[i]}' is null");
            if (!_index.TryAdd(names[i], i))
                throw new ArgumentException($"the name '{names[i]}' occurs twice; names in a tree must be unique", "names");
        }
    }

    /// <summary>The empty tree.</summary>
    public static TensorTree Empty { get; } = new(Array.Empty<string>(), Array.Empty<Tensor>());

    /// <summary>A tree from (name, tensor) pairs, in the order given. The tree borrows the tensors.</summary>
    public static TensorTree Of(IEnumerable<(string Name, Tensor Tensor)> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        var list = items.ToList();
        return new TensorTree(list.Select(x => x.Name).ToArray(), list.Select(x => x.Tensor).ToArray());
    }

    /// <summary>A tree from (name, tensor) pairs, in the order given. The tree borrows the tensors.</summary>
    public static TensorTree Of(params (string Name, Tensor Tensor)[] items) => Of((IEnumerable<(string, Tensor)>)items);

    /// <summary>A tree from parallel lists of names and tensors. The tree borrows the tensors.</summary>
    public static TensorTree Of(IReadOnlyList<string> names, IReadOnlyList<Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(tensors);
        if (names.Count != tensors.Count)
            throw new ArgumentException($"got {names.Count} names but {tensors.Count} tensors; they must pair up", nameof(tensors));
        return new TensorTree(names.ToArray(), tensors.ToArray());
    }

    /// <summary>The parameters of a module, as <c>named_parameters()</c> lists them. The tree borrows them.</summary>
    public static TensorTree FromParameters(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return Of(module.named_parameters().Select(p => (p.name, (Tensor)p.parameter)));
    }

    /// <summary>The gradients of a module's parameters, by the parameters' names. Every parameter must have one.</summary>
    public static TensorTree GradientsOf(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return Of(module.named_parameters().Select(p => (p.name,
            p.parameter.grad ?? throw new InvalidOperationException(
                $"parameter '{p.name}' has no gradient; run backward() before reading gradients"))));
    }

    /// <summary>Number of tensors.</summary>
    public int Count => _names.Length;

    /// <summary>The names, in order.</summary>
    public IReadOnlyList<string> Names => _names;

    /// <summary>The tensors, in order.</summary>
    public IReadOnlyList<Tensor> Tensors => _tensors;

    /// <summary>The i-th (name, tensor) pair.</summary>
    public KeyValuePair<string, Tensor> this[int index] => new(_names[index], _tensors[index]);

    /// <summary>The tensor called <paramref name="name"/>.</summary>
    public Tensor this[string name] => _index.TryGetValue(name, out var i)
        ? _tensors[i]
        : throw new KeyNotFoundException($"no tensor named '{name}' in this tree (it has: {string.Join(", ", _names)})");

    /// <summary>Whether a tensor is called <paramref name="name"/>.</summary>
    public bool Contains(string name) => _index.ContainsKey(name);

    /// <summary>A tree with the same names and <paramref name="f"/> applied to each tensor.</summary>
    public TensorTree Map(Func<Tensor, Tensor> f) => new(_names, _tensors.Select(f).ToArray());

    /// <summary>A tree with the same names and <paramref name="f"/>(name, tensor) for each tensor.</summary>
    public TensorTree Map(Func<string, Tensor, Tensor> f) =>
        new(_names, _names.Select((n, i) => f(n, _tensors[i])).ToArray());

    /// <summary>The sub-tree of the tensors at <paramref name="indices"/>, in that order (same handles).</summary>
    public TensorTree Select(IReadOnlyList<int> indices) =>
        new(indices.Select(i => _names[i]).ToArray(), indices.Select(i => _tensors[i]).ToArray());

    /// <summary>A tree of fresh copies (owned by the caller).</summary>
    public TensorTree Clone() => Map(CloneDetached);

    /// <summary>A copy of <paramref name="t"/> outside any autograd graph (the intermediate handle is disposed).</summary>
    internal static Tensor CloneDetached(Tensor t)
    {
        using var detached = t.detach();
        return detached.clone();
    }

    /// <summary>A tree of fresh handles to the same storage (owned by the caller).</summary>
    public TensorTree Alias() => Map(t => t.alias());

    /// <summary>Zeros shaped like each tensor (same dtype and device).</summary>
    public TensorTree ZerosLike() => Map(t => zeros_like(t));

    /// <summary>
    /// Checks that <paramref name="other"/> pairs up with this tree: same names in the same order, and
    /// for each name the same shape, dtype and device. Throws an <see cref="ArgumentException"/> that
    /// names the first mismatching tensor and what was expected.
    /// </summary>
    /// <param name="other">The tree to check.</param>
    /// <param name="otherName">What <paramref name="other"/> is, for the message (e.g. "gradients").</param>
    /// <param name="thisName">What this tree is, for the message (e.g. "parameters").</param>
    public void CheckMatches(TensorTree other, string otherName, string thisName)
    {
        ArgumentNullException.ThrowIfNull(other, otherName);
        if (other.Count != Count || !other._names.SequenceEqual(_names, StringComparer.Ordinal))
        {
            var missing = _names.Except(other._names).ToList();
            var extra = other._names.Except(_names).ToList();
            string detail = missing.Count + extra.Count == 0
                ? $"same names in a different order: expected [{string.Join(", ", _names)}], got [{string.Join(", ", other._names)}]"
                : $"missing [{string.Join(", ", missing)}], unexpected [{string.Join(", ", extra)}]";
            throw new ArgumentException($"{otherName} do not match the {thisName}: {detail}", otherName);
        }
        for (int i = 0; i < Count; i++)
        {
            Tensor a = _tensors[i], b = other._tensors[i];
            if (!a.shape.SequenceEqual(b.shape))
                throw new ArgumentException(
                    $"{otherName} tensor '{_names[i]}' has shape [{string.Join(", ", b.shape)}]; expected [{string.Join(", ", a.shape)}] as in the {thisName}", otherName);
            if (a.dtype != b.dtype)
                throw new ArgumentException(
                    $"{otherName} tensor '{_names[i]}' has dtype {b.dtype}; expected {a.dtype} as in the {thisName}", otherName);
            if (a.device_type != b.device_type || a.device_index != b.device_index)
                throw new ArgumentException(
                    $"{otherName} tensor '{_names[i]}' is on {b.device}; expected {a.device} as in the {thisName}", otherName);
        }
    }

    /// <summary>Disposes every tensor handle of the tree. Only for trees whose tensors you own.</summary>
    public void Dispose()
    {
        foreach (var t in _tensors) t.Dispose();
    }

    /// <inheritdoc />
    public IEnumerator<KeyValuePair<string, Tensor>> GetEnumerator()
    {
        for (int i = 0; i < _names.Length; i++) yield return this[i];
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <inheritdoc />
    public override string ToString() =>
        "{" + string.Join(", ", _names.Select((n, i) => $"{n}: [{string.Join("x", _tensors[i].shape)}] {_tensors[i].dtype}")) + "}";
}
