using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>
/// What an allocation-free execution path lends to the primitives' in-place steps: scratch buffers that are
/// reused from step to step, and the flat layout of the buffers it owns, so that one elementwise primitive
/// is one kernel call per contiguous group of tensors instead of one per tensor.
/// </summary>
/// <remarks>
/// <para>Primitives reach it through <see cref="Buffers"/>, never directly: without a workspace in the
/// context (the pure <see cref="IGradientTransformation.Update"/>) the same code allocates and frees
/// temporaries and walks tensor by tensor. The arithmetic is the same in both paths.</para>
/// <para><b>Ownership.</b> The workspace owns its scratch buffers and the flat views it hands out;
/// <see cref="Dispose"/> frees them. Tensors registered with <see cref="Register"/> stay the caller's.</para>
/// <para>Not thread-safe: one workspace per runner, used by one step at a time.</para>
/// </remarks>
public sealed class Workspace : IDisposable
{
    readonly Dictionary<(string Shape, ScalarType DType, string Device), Stack<Tensor>> _free = new();
    readonly List<Tensor> _owned = new();
    readonly List<Tensor> _scratch = new();
    readonly HashSet<Tensor> _out = new(ReferenceEqualityComparer.Instance);
    readonly Dictionary<IntPtr, (Tensor Flat, long Offset, long Count)> _layout = new();
    readonly Dictionary<int, List<(IntPtr[] Handles, IReadOnlyList<Tensor[]> Groups)>> _groups = new();
    int _rented;

    /// <summary>Scratch tensors allocated so far (they are reused; in a steady state this stops growing).</summary>
    public int ScratchAllocations { get; private set; }

    /// <summary>Bytes held in scratch buffers.</summary>
    public long ScratchBytes { get; private set; }

    // Keys of tensors whose handles stay valid while the workspace lives (its own buffers and views, registered
    // views): computing a key reads the shape and device from native code and builds strings, so it is done once.
    readonly Dictionary<IntPtr, (string, ScalarType, string)> _keys = new();

    (string, ScalarType, string) KeyOf(Tensor like)
    {
        if (_keys.TryGetValue(like.Handle, out var key)) return key;
        key = KeyOf(like.shape, like.dtype, like.device);
        if (_layout.ContainsKey(like.Handle) || _ownedHandles.Contains(like.Handle)) _keys[like.Handle] = key;
        return key;
    }

    readonly HashSet<IntPtr> _ownedHandles = new();
    static (string, ScalarType, string) KeyOf(long[] shape, ScalarType dtype, Device device) => (string.Join(",", shape), dtype, device.ToString());

    /// <summary>A buffer shaped like <paramref name="like"/> (contents undefined) until <see cref="Return"/>.</summary>
    public Tensor Rent(Tensor like) => Rent(KeyOf(like), like);

    /// <summary>A buffer of <paramref name="shape"/>, <paramref name="dtype"/> on <paramref name="device"/> (contents undefined) until <see cref="Return"/>.</summary>
    public Tensor Rent(long[] shape, ScalarType dtype, Device device) => Rent(KeyOf(shape, dtype, device), null, shape, dtype, device);

    Tensor Rent((string, ScalarType, string) key, Tensor? like, long[]? shape = null, ScalarType dtype = default, Device? device = null)
    {
        _rented++;
        if (_free.TryGetValue(key, out var stack) && stack.Count > 0)
        {
            var reused = stack.Pop();
            _out.Add(reused);
            return reused;
        }
        var t = (like is null ? empty(shape!, dtype, device!) : empty(like.shape, like.dtype, like.device)).DetachFromDisposeScope();
        _owned.Add(t);
        _ownedHandles.Add(t.Handle);
        _scratch.Add(t);
        _out.Add(t);
        ScratchAllocations++;
        ScratchBytes += t.numel() * t.ElementSize;
        return t;
    }

    /// <summary>Gives back a buffer from <see cref="Rent(Tensor)"/>.</summary>
    public void Return(Tensor buffer)
    {
        var key = KeyOf(buffer);
        if (!_free.TryGetValue(key, out var stack)) _free[key] = stack = new();
        stack.Push(buffer);
        _out.Remove(buffer);
        _rented--;
    }

    /// <summary>Whether <paramref name="buffer"/> is rented now (not yet returned).</summary>
    internal bool IsRented(Tensor buffer) => _out.Contains(buffer);

    /// <summary>Every scratch buffer this workspace has allocated.</summary>
    internal IReadOnlyList<Tensor> ScratchTensors => _scratch;

    /// <summary>Buffers rented and not yet returned (0 between steps).</summary>
    public int Outstanding => _rented;

    /// <summary>Declares that <paramref name="view"/> is elements [offset, offset + numel) of the contiguous 1-D tensor <paramref name="flat"/>.</summary>
    public void Register(Tensor view, Tensor flat, long offset)
    {
        ArgumentNullException.ThrowIfNull(view);
        ArgumentNullException.ThrowIfNull(flat);
        if (flat.dim() != 1 || !flat.is_contiguous()) throw new ArgumentException("flat must be a contiguous 1-D tensor", nameof(flat));
        _layout[view.Handle] = (flat, offset, view.numel());
        _groups.Clear();
    }

    /// <summary>Forgets a registered view (its handle may be reused after it is disposed).</summary>
    public void Unregister(Tensor view)
    {
        if (_layout.Remove(view.Handle)) _groups.Clear();
        _keys.Remove(view.Handle);
    }

    IntPtr[] _handles = new IntPtr[0];

    /// <summary>
    /// Index-aligned groups over <paramref name="trees"/> (equal lengths, like-shaped tensors): each group holds
    /// one tensor per tree, either a flat view over a run of tensors that are adjacent in every tree, or the
    /// tensors of one index. Cached per set of tensors.
    /// </summary>
    public IReadOnlyList<Tensor[]> Groups(IReadOnlyList<TensorTree> trees)
    {
        int n = trees[0].Count;
        // The handles of this call in a reused buffer (a step asks for the same groups several times): copied only when cached.
        if (_handles.Length < n * trees.Count) _handles = new IntPtr[n * trees.Count];
        var handles = _handles.AsSpan(0, n * trees.Count);
        int hash = 17, h = 0;
        for (int k = 0; k < trees.Count; k++)
        {
            var tree = trees[k];
            if (tree.Count != n) throw new ArgumentException($"trees of {n} and {tree.Count} tensors cannot be grouped index by index");
            var tensors = tree.Tensors;
            for (int j = 0; j < tensors.Count; j++) { handles[h++] = tensors[j].Handle; hash = hash * 31 + tensors[j].Handle.GetHashCode(); }
        }
        // Tensors the workspace did not lay out (e.g. a tree from the context) are walked one by one, uncached.
        foreach (var handle in handles) if (!_layout.ContainsKey(handle)) return PerIndex(trees);
        if (_groups.TryGetValue(hash, out var bucket))
            foreach (var (known, cached) in bucket)
                if (known.AsSpan().SequenceEqual(handles)) return cached;
        var groups = Build(trees, n);
        if (!_groups.TryGetValue(hash, out bucket)) _groups[hash] = bucket = new();
        bucket.Add((handles.ToArray(), groups));
        return groups;
    }

    /// <summary>The groups of <paramref name="trees"/> (a separate method: its closures are allocated only when groups are built, not on a cached call).</summary>
    List<Tensor[]> Build(IReadOnlyList<TensorTree> trees, int n)
    {
        var groups = new List<Tensor[]>();
        int i = 0;
        while (i < n)
        {
            int j = i + 1;
            while (j < n && trees.All(tree => Adjacent(tree.Tensors[j - 1], tree.Tensors[j]))) j++;
            if (j - i == 1) groups.Add(trees.Select(tree => tree.Tensors[i]).ToArray());
            else
            {
                var views = trees.Select(tree =>
                {
                    var (flat, offset, _) = _layout[tree.Tensors[i].Handle];
                    long total = 0;
                    for (int k = i; k < j; k++) total += tree.Tensors[k].numel();
                    var view = flat.narrow(0, offset, total).DetachFromDisposeScope();
                    _owned.Add(view);
                    _ownedHandles.Add(view.Handle);
                    return view;
                }).ToArray();
                groups.Add(views);
            }
            i = j;
        }
        return groups;
    }

    internal static IReadOnlyList<Tensor[]> PerIndex(IReadOnlyList<TensorTree> trees)
    {
        int n = trees[0].Count;
        var groups = new Tensor[n][];
        for (int i = 0; i < n; i++)
        {
            var g = new Tensor[trees.Count];
            for (int k = 0; k < trees.Count; k++) g[k] = trees[k].Tensors[i];
            groups[i] = g;
        }
        return groups;
    }

    bool Adjacent(Tensor a, Tensor b) =>
        _layout.TryGetValue(a.Handle, out var la) && _layout.TryGetValue(b.Handle, out var lb) &&
        ReferenceEquals(la.Flat, lb.Flat) && la.Offset + la.Count == lb.Offset;

    // Scratch trees laid out like another tree (RentLike): per hash of the tree's and the rented buffers' handles,
    // the known trees; and the buffers of each tree handed out, by tree.
    readonly Dictionary<int, List<(IntPtr[] Handles, TensorTree Tree)>> _likeTrees = new();
    readonly Dictionary<TensorTree, Tensor[]> _likeBuffers = new(ReferenceEqualityComparer.Instance);
    readonly List<Tensor> _likeRented = new();
    readonly TensorTree[] _likeArgument = new TensorTree[1];

    /// <summary>
    /// A tree of scratch tensors (contents undefined) shaped like <paramref name="like"/> and grouped as it is: one
    /// rented 1-D buffer per group of <paramref name="like"/>, the tree's tensors views into it, registered, so that
    /// <see cref="Groups"/> over this tree next to <paramref name="like"/> gives the same groups. Give it back with
    /// <see cref="ReturnLike"/>. The tree and its views are the workspace's (reused when the same buffers come back).
    /// </summary>
    internal TensorTree RentLike(TensorTree like)
    {
        _likeArgument[0] = like;
        var groups = Groups(_likeArgument);
        _likeArgument[0] = null!;
        var rented = _likeRented;
        rented.Clear();
        int hash = 17;
        for (int k = 0; k < groups.Count; k++)
        {
            var first = groups[k][0];
            var buffer = Rent(first);
            rented.Add(buffer);
            hash = hash * 31 + buffer.Handle.GetHashCode();
        }
        foreach (var t in like.Tensors) hash = hash * 31 + t.Handle.GetHashCode();
        if (_likeTrees.TryGetValue(hash, out var bucket))
            foreach (var (handles, tree) in bucket)
                if (SameHandles(handles, rented, like) && !_likeBuffers.ContainsKey(tree))
                {
                    _likeBuffers[tree] = BuffersOf(tree, rented);
                    rented.Clear();
                    return tree;
                }
        // A new tree: views of each group's buffer at the offsets of the group's tensors.
        var views = new Tensor[like.Count];
        int index = 0;
        for (int k = 0; k < groups.Count; k++)
        {
            // A group of several tensors is a flat view, so its buffer is 1-D; a single tensor's has its shape.
            var flat = rented[k].dim() == 1 ? rented[k] : Own(rented[k].reshape(-1));
            long offset = 0, total = flat.numel();
            while (offset < total)
            {
                var t = like.Tensors[index];
                var view = Own(flat.narrow(0, offset, t.numel()).view(t.shape));
                Register(view, flat, offset);
                views[index++] = view;
                offset += t.numel();
            }
        }
        if (index != like.Count) throw new InvalidOperationException("workspace: the groups of a tree do not cover its tensors in order");
        var made = TensorTree.Of(like.Names, views);
        var key = new IntPtr[rented.Count + like.Count];
        for (int k = 0; k < rented.Count; k++) key[k] = rented[k].Handle;
        for (int j = 0; j < like.Count; j++) key[rented.Count + j] = like.Tensors[j].Handle;
        if (!_likeTrees.TryGetValue(hash, out bucket)) _likeTrees[hash] = bucket = new();
        bucket.Add((key, made));
        _likeBuffers[made] = rented.ToArray();
        rented.Clear();
        return made;
    }

    Tensor Own(Tensor view)
    {
        view.DetachFromDisposeScope();
        _owned.Add(view);
        _ownedHandles.Add(view.Handle);
        return view;
    }

    static bool SameHandles(IntPtr[] handles, List<Tensor> rented, TensorTree like)
    {
        if (handles.Length != rented.Count + like.Count) return false;
        for (int k = 0; k < rented.Count; k++) if (handles[k] != rented[k].Handle) return false;
        for (int j = 0; j < like.Count; j++) if (handles[rented.Count + j] != like.Tensors[j].Handle) return false;
        return true;
    }

    // The buffer array kept for a known tree (allocated once, when the tree was made; refilled here).
    readonly Dictionary<TensorTree, Tensor[]> _likeArrays = new(ReferenceEqualityComparer.Instance);

    Tensor[] BuffersOf(TensorTree tree, List<Tensor> rented)
    {
        if (!_likeArrays.TryGetValue(tree, out var array) || array.Length != rented.Count) _likeArrays[tree] = array = new Tensor[rented.Count];
        rented.CopyTo(array);
        return array;
    }

    /// <summary>Gives back a tree from <see cref="RentLike"/> (its buffers).</summary>
    internal void ReturnLike(TensorTree tree)
    {
        if (!_likeBuffers.Remove(tree, out var buffers)) throw new InvalidOperationException("workspace: this tree was not rented with RentLike");
        _likeArrays[tree] = buffers;
        foreach (var b in buffers) Return(b);
    }

    /// <summary>Frees the scratch buffers and flat views.</summary>
    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
        _ownedHandles.Clear();
        _keys.Clear();
        _scratch.Clear();
        _free.Clear();
        _layout.Clear();
        _groups.Clear();
        _likeTrees.Clear();
        _likeBuffers.Clear();
        _likeArrays.Clear();
    }
}

/// <summary>
/// How a primitive's in-place step gets scratch buffers and walks its tensors: through the
/// <see cref="Workspace"/> of the executor running the step on this thread, if there is one (the
/// <see cref="Runner"/> installs its own for the duration of a step), else with plain allocations and a walk
/// tensor by tensor (the pure <see cref="IGradientTransformation.Update"/>). The step's
/// <see cref="StepContext"/> carries only the user's extras, never execution details.
/// </summary>
internal static class Buffers
{
    [ThreadStatic] static Workspace? _current;

    /// <summary>Makes <paramref name="workspace"/> the current thread's workspace until the returned scope is disposed (scopes nest).</summary>
    internal static Scope Use(Workspace workspace) => new(workspace);

    internal readonly struct Scope : IDisposable
    {
        readonly Workspace? _previous;

        internal Scope(Workspace workspace) { _previous = _current; _current = workspace; }

        public void Dispose() => _current = _previous;
    }

    // Arrays of tensor handles a step lends out and takes back (one per group: a primitive's scratch), by length, per thread.
    [ThreadStatic] static Dictionary<int, Stack<Tensor[]>>? _arrays;

    /// <summary>An array of <paramref name="length"/> tensor slots (cleared), reused across steps; give it back with <see cref="ReturnArray"/>.</summary>
    public static Tensor[] RentArray(int length)
    {
        var pool = _arrays ??= new();
        return pool.TryGetValue(length, out var stack) && stack.Count > 0 ? stack.Pop() : new Tensor[length];
    }

    /// <summary>Takes back an array from <see cref="RentArray"/> (its slots are cleared; the tensors are not disposed).</summary>
    public static void ReturnArray(Tensor[] array)
    {
        Array.Clear(array);
        var pool = _arrays ??= new();
        if (!pool.TryGetValue(array.Length, out var stack)) pool[array.Length] = stack = new();
        if (stack.Count < 64) stack.Push(array);
    }

    /// <summary>A scratch buffer shaped like <paramref name="like"/>; give it back with <see cref="Return(Tensor)"/>.</summary>
    public static Tensor Rent(Tensor like) => _current is { } ws ? ws.Rent(like) : empty_like(like);

    /// <summary>A scratch buffer of a given shape, dtype and device; give it back with <see cref="Return"/>.</summary>
    public static Tensor Rent(long[] shape, ScalarType dtype, Device device) =>
        _current is { } ws ? ws.Rent(shape, dtype, device) : empty(shape, dtype, device);

    /// <summary>
    /// Scratch tensors shaped like <paramref name="like"/> (contents undefined), grouped as it is under a workspace
    /// (<see cref="Workspace.RentLike"/>); without one, new tensors. Give them back with <see cref="ReturnLike"/>.
    /// </summary>
    public static TensorTree RentLike(TensorTree like) =>
        _current is { } ws ? ws.RentLike(like) : TensorTree.Of(like.Names, like.Tensors.Select(t => empty_like(t)).ToArray());

    /// <summary>Gives back a tree from <see cref="RentLike"/> (without a workspace its tensors are disposed).</summary>
    public static void ReturnLike(TensorTree tree)
    {
        if (_current is { } ws) ws.ReturnLike(tree);
        else tree.Dispose();
    }

    /// <summary>Gives back a buffer from <see cref="Rent(Tensor)"/> (without a workspace it is disposed).</summary>
    public static void Return(Tensor buffer)
    {
        if (_current is { } ws) ws.Return(buffer);
        else buffer.Dispose();
    }

    /// <summary>
    /// The index-aligned groups of like-shaped trees an elementwise step loops over: flat views over
    /// contiguous runs when the current workspace laid them out, else one group per tensor index.
    /// </summary>
    public static IReadOnlyList<Tensor[]> Groups(params TensorTree[] trees) => GroupsOf(trees);

    // Reused argument arrays for the fixed-arity overloads (a step asks for groups many times; the arrays are not kept).
    [ThreadStatic] static TensorTree[]? _one, _two, _three, _four;

    /// <inheritdoc cref="Groups(TensorTree[])"/>
    public static IReadOnlyList<Tensor[]> Groups(TensorTree a) { var t = _one ??= new TensorTree[1]; t[0] = a; return Release(t, GroupsOf(t)); }

    /// <inheritdoc cref="Groups(TensorTree[])"/>
    public static IReadOnlyList<Tensor[]> Groups(TensorTree a, TensorTree b) { var t = _two ??= new TensorTree[2]; (t[0], t[1]) = (a, b); return Release(t, GroupsOf(t)); }

    /// <inheritdoc cref="Groups(TensorTree[])"/>
    public static IReadOnlyList<Tensor[]> Groups(TensorTree a, TensorTree b, TensorTree c) { var t = _three ??= new TensorTree[3]; (t[0], t[1], t[2]) = (a, b, c); return Release(t, GroupsOf(t)); }

    /// <inheritdoc cref="Groups(TensorTree[])"/>
    public static IReadOnlyList<Tensor[]> Groups(TensorTree a, TensorTree b, TensorTree c, TensorTree d) { var t = _four ??= new TensorTree[4]; (t[0], t[1], t[2], t[3]) = (a, b, c, d); return Release(t, GroupsOf(t)); }

    static IReadOnlyList<Tensor[]> Release(TensorTree[] arguments, IReadOnlyList<Tensor[]> groups)
    {
        Array.Clear(arguments);
        return groups;
    }

    static IReadOnlyList<Tensor[]> GroupsOf(TensorTree[] trees)
    {
        if (_current is { } ws) return ws.Groups(trees);
        foreach (var tree in trees)
            if (tree.Count != trees[0].Count) throw new ArgumentException($"trees of {trees[0].Count} and {tree.Count} tensors cannot be grouped index by index");
        return Workspace.PerIndex(trees);
    }
}
