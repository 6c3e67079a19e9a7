using System;
using System.Collections.Generic;
using System.Linq;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>One named leaf of an optimizer state: a tensor or a scalar.</summary>
/// <param name="Path">Slash-separated path, e.g. <c>"1/mu/fc1.weight"</c> or <c>"0/count"</c>.</param>
/// <param name="Tensor">The tensor, or null for a scalar leaf.</param>
/// <param name="Scalar">The scalar, or null for a tensor leaf.</param>
public readonly record struct StateLeaf(string Path, Tensor? Tensor, double? Scalar);

/// <summary>
/// The state of a transform: immutable data made of scalars and tensors. Lookahead's own transforms
/// declare their slots once (<see cref="StateLayout"/>) and hold a <see cref="DeclaredState"/>; a transform
/// written elsewhere may implement this interface itself.
/// </summary>
/// <remarks>
/// <para><b>Ownership.</b> A state owns its tensor handles. <see cref="IGradientTransformation.Update"/>
/// returns a state whose handles are all new, so the old state stays valid until its owner disposes it
/// with <see cref="OptState.Dispose"/>, and disposing one never invalidates the other.</para>
/// <para>Compare states leaf by leaf (<see cref="Leaves"/>), never with record equality: tensors compare by
/// reference there.</para>
/// </remarks>
public interface IOptState
{
    /// <summary>Every leaf, depth first, in a fixed order. Tensor leaves are the state's own handles.</summary>
    IEnumerable<StateLeaf> Leaves();

    /// <summary>A state of the same structure whose tensors are <paramref name="f"/>(path, tensor).</summary>
    IOptState MapTensors(Func<string, Tensor, Tensor> f);

    /// <summary>
    /// A state of the same structure and tensors whose scalar leaves are <paramref name="f"/>(path, value)
    /// (integer leaves must stay integers). With <see cref="MapTensors"/> this rebuilds a state from its leaves
    /// (checkpoints).
    /// </summary>
    IOptState MapScalars(Func<string, double, double> f);
}

/// <summary>The state of a stateless transform.</summary>
public sealed class EmptyState : IOptState
{
    EmptyState() { }

    /// <summary>The one instance.</summary>
    public static EmptyState Instance { get; } = new();

    /// <inheritdoc />
    public IEnumerable<StateLeaf> Leaves() => Enumerable.Empty<StateLeaf>();

    /// <inheritdoc />
    public IOptState MapTensors(Func<string, Tensor, Tensor> f) => this;

    /// <inheritdoc />
    public IOptState MapScalars(Func<string, double, double> f) => this;
}

/// <summary>Operations on any <see cref="IOptState"/>.</summary>
public static class OptState
{
    /// <summary>Every tensor of the state, depth first.</summary>
    public static IEnumerable<Tensor> Tensors(IOptState state) =>
        state.Leaves().Where(l => l.Tensor is not null).Select(l => l.Tensor!);

    /// <summary>
    /// Adds the tensors of <paramref name="state"/> to <paramref name="into"/>, in leaf order, without building leaf
    /// paths for declared states (the runner's per-step bookkeeping: no allocation beyond the list's growth).
    /// </summary>
    internal static void CollectTensors(IOptState state, List<Tensor> into)
    {
        if (state is DeclaredState declared) { declared.CollectTensors(into); return; }
        foreach (var leaf in state.Leaves()) if (leaf.Tensor is not null) into.Add(leaf.Tensor);
    }

    /// <summary>Disposes every tensor handle of a state you own.</summary>
    public static void Dispose(IOptState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        foreach (var t in Tensors(state)) t.Dispose();
    }

    /// <summary>
    /// Detaches every tensor of the state from the dispose scope it was moved to (the caller's, if any), so
    /// that a state returned inside a per-step scope outlives it. Returns the same state; dispose it
    /// yourself with <see cref="Dispose"/>.
    /// </summary>
    public static T Detach<T>(T state) where T : IOptState
    {
        foreach (var t in Tensors(state)) t.DetachFromDisposeScope();
        return state;
    }

    /// <summary>A state of the same structure and values, with fresh copies of every tensor.</summary>
    public static IOptState Clone(IOptState state) => state.MapTensors((_, t) => TensorTree.CloneDetached(t));

    /// <summary>As <see cref="Clone"/>, but each copy stays in its original's autograd graph (the differentiable path).</summary>
    internal static IOptState CloneInGraph(IOptState state) => state.MapTensors((_, t) => t.clone());

    /// <summary>Leaf helper for records: a scalar leaf.</summary>
    public static StateLeaf Scalar(string name, double value) => new(name, null, value);

    /// <summary>Leaf helper for records: the tensors of a tree under <paramref name="slot"/>.</summary>
    public static IEnumerable<StateLeaf> Tree(string slot, TensorTree tree) =>
        tree.Select(kv => new StateLeaf(Join(slot, kv.Key), kv.Value, null));

    /// <summary>Leaf helper for records: the leaves of a nested state under <paramref name="prefix"/>.</summary>
    public static IEnumerable<StateLeaf> Nested(string prefix, IOptState inner) =>
        inner.Leaves().Select(l => l with { Path = Join(prefix, l.Path) });

    /// <summary>Map helper for records: maps the tensors of a tree stored under <paramref name="slot"/>.</summary>
    public static TensorTree MapTree(string slot, TensorTree tree, Func<string, Tensor, Tensor> f) =>
        tree.Map((n, t) => f(Join(slot, n), t));

    /// <summary>Map helper for records: maps a nested state stored under <paramref name="prefix"/>.</summary>
    public static IOptState MapNested(string prefix, IOptState inner, Func<string, Tensor, Tensor> f) =>
        inner.MapTensors((p, t) => f(Join(prefix, p), t));

    /// <summary>Map helper for records: maps the scalars of a nested state stored under <paramref name="prefix"/>.</summary>
    public static IOptState MapNestedScalars(string prefix, IOptState inner, Func<string, double, double> f) =>
        inner.MapScalars((p, v) => f(Join(prefix, p), v));

    /// <summary>Map helper for records: an integer scalar leaf mapped by <paramref name="f"/>; a non-integral result is an error naming the leaf.</summary>
    public static long Integer(string path, long value, Func<string, double, double> f)
    {
        double x = f(path, value);
        if (x != Math.Floor(x) || double.IsInfinity(x) || Math.Abs(x) > 9e15)
            throw new ArgumentException($"state leaf '{path}' is an integer; got {x}");
        return (long)x;
    }

    static string Join(string a, string b) => a.Length == 0 ? b : a + "/" + b;
}
