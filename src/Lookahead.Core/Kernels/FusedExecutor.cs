using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Kernels;

/// <summary>
/// The fused CPU executor: runs a whole runner step's elementwise phases in one pass over memory. While a step is
/// recorded (<see cref="Elementwise.Record"/>), every primitive's kernel call becomes a stage; at the end the stages
/// run over the runner's flat buffers chunk by chunk (each chunk small enough for the L1/L2 cache), on several
/// threads over disjoint ranges of chunks. The kernels are the primitives' own: the executor only chooses the array type.
/// </summary>
/// <remarks>
/// <para><b>One compiled loop per recorded program.</b> The stages that cover a range of a run (a segment: the whole
/// buffer, or one part of a partition) run each step once on array ids (<see cref="RecordOps"/>), which records
/// their operations and this step's coefficients as a straight-line program over the segment's distinct arrays.
/// <see cref="ChainCompiler"/> compiles a program once (cached for the process) into a loop in which every distinct
/// array is a vector local: loaded once per vector unless its first use overwrites it, passed between operations in
/// registers, stored once if written and not per-chunk scratch (nor, in the step's last pass, the runner's own update
/// buffer), and read and written directly in bfloat16 where it is. The operations are <see cref="ProgramMath{T}"/>'s,
/// which are <see cref="ElementMath{T}"/>'s. The last elements of a chunk (fewer than four vectors) run stage by stage
/// through <see cref="BlockOps{T}"/> on the same definitions, so the bits do not depend on where a chunk ends. With
/// <c>LOOKAHEAD_FUSED_CHAIN=1</c> a segment runs instead as its stages composed into one value type,
/// <c>Link&lt;K₁, Link&lt;K₂, … End&gt;&gt;</c>, over <see cref="LaneOps{T}"/> (same bits; each operation through L1).</para>
/// <para><b>What it fuses.</b> The runner records the gradient copy, the transform's step and the final p ← p + u.
/// When every node of the tree is elementwise and declares no reduction (<see cref="Fusion.Fusable"/>), and the step
/// reads the gradients the runner keeps (<see cref="Runner.Step(StepContext?)"/> with
/// <see cref="RunnerOptions.KeepGradients"/>), the update buffer is never written to memory: its chunk lives in
/// per-thread scratch, loaded from the gradient chunk by the first stage. Scratch a primitive rents from the
/// workspace becomes per-thread scratch too, unless it is still rented when the recording is run in the middle of a
/// step (a reduction, or a node that runs on tensors: see <see cref="IFusable"/>); from then on it lives in its memory.
/// A strided tensor the runner does not own (a context input) is read through a contiguous copy in such a step.</para>
/// <para><b>16-bit arrays.</b> In a float32 run, a bfloat16 or float16 array (the parameters and gradients of a runner
/// with <see cref="StatePrecision.Float32"/>) is widened, chunk by chunk, into per-thread float32 staging before the
/// chain runs, and rounded back (nearest, ties to even: <see cref="NarrowFloats"/>) after it if a stage writes it;
/// which stages write which arrays is found once per recorded stage by running its kernel on array indices
/// (<see cref="WriteProbe"/>). Reductions widen the same way, block by block.</para>
/// <para><b>Steady state.</b> A step that records what the last one recorded (the same kernel types over the same
/// operands) reuses its stages, with this step's kernel values, and its segments and compiled chains; the threads are
/// a pool kept for the process (<see cref="WorkerPool"/>). Such a step allocates nothing managed in the executor.</para>
/// <para><b>Results.</b> Elementwise kernels do not depend on the chunk size or the thread count, and reductions add
/// fixed 4096-element partials in order, so results are bit-identical for any number of threads.</para>
/// <para><b>Other devices.</b> A GPU executor would plug in at the same place: record the stages of a step as this
/// executor does, then run them as one generated kernel (each stage's <see cref="IKernel.Run{TArray, TOps}"/> with an
/// array type whose operations emit code for one element instead of running it, compiled once per recorded sequence
/// and cached, as the chain type is here), launched over the flat buffers on the parameters' device, with the
/// reductions as a preceding kernel writing fixed-order partials. Until then the runner uses the TorchSharp executor
/// off the CPU (one native kernel per operation, all on the device); this machine has no GPU.</para>
/// <para><b>Ownership.</b> The executor owns its per-thread scratch (native memory, freed by <see cref="Dispose"/> or,
/// for a runner never disposed, by its finalizer) and the step's contiguous copies (freed when the step has run);
/// the buffers it runs over are the runner's. Its address cache holds tensors weakly.</para>
/// </remarks>
internal sealed unsafe class FusedExecutor : IStageRecorder, IDisposable
{
    /// <summary>Elements per block: 2048 floats are 8 KB per array, so a kernel's arrays stay in the L1/L2 cache.</summary>
    public const int DefaultBlock = 2048;

    /// <summary>Elements per partial sum of a reduction, fixed (not the block size) so a reduced value is the same for any block size and thread count.</summary>
    public const int ReductionBlock = 4096;

    readonly int _block, _threads;
    readonly Workspace _workspace;
    readonly List<Item> _items = new();
    readonly List<Area> _scratch = new();
    readonly Dictionary<nint, Area> _scratchAreas = new();
    // This step's scratch tensors, by area index − 1, and the starts of those that live in memory from a flush on.
    readonly List<Tensor> _scratchTensors = new();
    readonly HashSet<nint> _materialized = new();
    // The update buffers whose blocks live in scratch during a step (the runner's own; see Begin).
    readonly List<Area> _virtual = new();
    readonly List<Run> _runs = new();
    byte*[] _threadScratch = new byte*[0];
    long _threadScratchBytes;

    /// <param name="workspace">The runner's workspace, whose rented scratch becomes per-thread scratch.</param>
    /// <param name="threads">Threads a step runs on (≥ 1).</param>
    /// <param name="block">Elements per block (≥ 8).</param>
    public FusedExecutor(Workspace workspace, int threads, int block = DefaultBlock)
    {
        _workspace = workspace;
        _threads = (int)Check.AtLeast(threads, 1, nameof(threads));
        _block = (int)Check.AtLeast(block, 8, nameof(block));
        _part = Part;
    }

    /// <summary>Threads a step runs on.</summary>
    public int Threads => _threads;

    /// <summary>A range of native memory: a flat buffer, or a scratch tensor.</summary>
    readonly record struct Area(nint Start, long Bytes, ScalarType DType)
    {
        public bool Contains(nint p) => p >= Start && p < Start + Bytes;
        public int ElementSize => DType is ScalarType.Float64 or ScalarType.Int64 ? 8 : DType is ScalarType.BFloat16 or ScalarType.Float16 ? 2 : 4;
    }

    /// <summary>The runs of a step: one per flat update buffer (one per dtype on the CPU).</summary>
    sealed class Run(Area updates)
    {
        public readonly Area Updates = updates;
        /// <summary>Whether the update buffer is the runner's own, so that its values are dead once the step's last pass has run.</summary>
        public bool Separate;
        public readonly List<int> Items = new();
    }

    /// <summary>
    /// An operand: memory at an element offset, or a scratch area (index; −1 = none) at an element offset from the group
    /// start; <paramref name="Narrow"/> marks memory holding 16-bit floats in a float32 run (<see cref="NarrowFloats.Code"/>).
    /// </summary>
    readonly record struct Operand(nint Pointer, int Scratch, byte Narrow = 0);

    /// <summary>One stage over one group: the elements [Start, Start + Length) of a run.</summary>
    sealed class Item(Stage stage, int run, long start, long length, ReadOnlySpan<Operand> operands, ulong writes)
    {
        public readonly Stage Stage = stage;
        /// <summary>Which operands the stage writes (bit j: operand j).</summary>
        public readonly ulong Writes = writes;
        public readonly int Run = run;
        public readonly long Start = start, Length = length;
        /// <summary>The operands as recorded; <see cref="Operands"/> starts as a copy (a flush may move scratch operands to memory).</summary>
        public readonly Operand[] Recorded = operands.ToArray();
        public readonly Operand[] Operands = operands.ToArray();

        /// <summary>Whether a stage recorded now with these values is this item again (its kernel's constants aside).</summary>
        public bool Matches(Type kernel, int run, long start, long length, ReadOnlySpan<Operand> operands, ulong writes) =>
            Stage.KernelType == kernel && Run == run && Start == start && Length == length && Writes == writes && operands.SequenceEqual(Recorded);

        /// <summary>Makes the item ready for another step: the recorded operands again.</summary>
        public void Reset() => Recorded.CopyTo(Operands, 0);
    }

    abstract class Stage
    {
        public abstract Type KernelType { get; }
        public abstract void Run32(ReadOnlySpan<Block<float>> arrays);
        public abstract void Run64(ReadOnlySpan<Block<double>> arrays);
        /// <summary>Records the kernel's operations over array ids (<see cref="ProgramRecorder"/>).</summary>
        public abstract void Record(RecordOps ops, ReadOnlySpan<int> ids);
    }

    sealed class Stage<TKernel>(TKernel kernel) : Stage where TKernel : struct, IKernel
    {
        TKernel _kernel = kernel;
        public TKernel Kernel => _kernel;
        /// <summary>This step's kernel (a reused stage gets the step's constants).</summary>
        public void Set(in TKernel kernel) => _kernel = kernel;
        public override Type KernelType => typeof(TKernel);
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Run32(ReadOnlySpan<Block<float>> arrays) => _kernel.Run<Block<float>, BlockOps<float>>(default, arrays);
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Run64(ReadOnlySpan<Block<double>> arrays) => _kernel.Run<Block<double>, BlockOps<double>>(default, arrays);
        public override void Record(RecordOps ops, ReadOnlySpan<int> ids) => _kernel.Run<int, RecordOps>(ops, ids);
    }

    // Addresses by tensor object: asking TorchSharp for a storage makes a tracked object, so it is asked once per
    // tensor (the runner's buffers, views and scratch are the same objects from step to step). The table holds its
    // keys weakly: a tensor the caller passed in (a context tensor) is not kept alive by the executor.
    readonly ConditionalWeakTable<Tensor, StrongBox<nint>> _addresses = new();

    nint AddressOf(Tensor t)
    {
        if (_addresses.TryGetValue(t, out var a)) return a.Value;
        var box = new StrongBox<nint>(Address(t));
        _addresses.AddOrUpdate(t, box);
        return box.Value;
    }

    // Contiguous copies of strided operands made for this step (see Record); freed once the step has run.
    readonly List<Tensor> _copies = new();

    /// <summary>The address of <paramref name="t"/>'s first element (a contiguous CPU float32, float64, bfloat16 or float16 tensor).</summary>
    internal static nint Address(Tensor t) => t.dtype switch
    {
        ScalarType.Float32 or ScalarType.Float64 or ScalarType.BFloat16 or ScalarType.Float16 when NarrowFloats.DataPointer(t) is var p && p != 0 => p,
        _ => throw new NotSupportedException($"the fused executor runs float32, float64, bfloat16 and float16 tensors, not {t.dtype}"),
    };

    Area AreaOf(Tensor t) => new(AddressOf(t), t.numel() * t.ElementSize, t.dtype);

    /// <summary>
    /// Starts recording a step over the runner's flat update buffers <paramref name="updates"/>; when
    /// <paramref name="virtualUpdates"/>, their blocks live in scratch (the first stage must fill them).
    /// </summary>
    /// <param name="updates">The runner's flat update buffers, one run each.</param>
    /// <param name="virtualUpdates">Whether their blocks live in per-thread scratch for the whole step.</param>
    /// <param name="separate">Per buffer, whether it is the runner's own (not the gradients): the step's last pass then
    /// need not store it (default: none is).</param>
    public void Begin(IReadOnlyList<Tensor> updates, bool virtualUpdates, IReadOnlyList<bool>? separate = null)
    {
        _items.Clear(); _scratch.Clear(); _scratchTensors.Clear(); _materialized.Clear(); _virtual.Clear(); _alignment.Clear();
        (_previousItems, _stepItems) = (_stepItems, _previousItems);
        _stepItems.Clear();
        for (int c = 0; c < _copies.Count; c++) _copies[c].Dispose();
        _copies.Clear();
        // The runs of the last step again when the buffers are the same (the runner's are).
        bool same = _runs.Count == updates.Count;
        for (int k = 0; k < updates.Count && same; k++) same = _runs[k].Updates == AreaOf(updates[k]);
        if (!same)
        {
            _runs.Clear();
            _segmentCache.Clear();
            for (int k = 0; k < updates.Count; k++) _runs.Add(new Run(AreaOf(updates[k])));
        }
        for (int k = 0; k < _runs.Count; k++)
        {
            _runs[k].Separate = separate is not null && separate[k];
            _runs[k].Items.Clear();
            if (virtualUpdates) _virtual.Add(_runs[k].Updates);
        }
    }

    /// <summary>Runs the stages recorded so far (before a transform that is not elementwise reads the buffers).</summary>
    public void Flush()
    {
        if (_virtual.Count > 0 && _items.Count > 0)
            throw new InvalidOperationException("fused executor: a transform that is not elementwise ran inside a step whose update buffer lives in scratch");
        // Scratch still rented now is read after the flush (a shift's copy of g kept across a transform that runs on
        // tensors, Polyak's D⁻¹d read by a reduction): the kernels recorded so far write it to its memory instead, and
        // so does every kernel after, for the rest of the step.
        foreach (var item in _items)
            for (int j = 0; j < item.Operands.Length; j++)
                if (item.Operands[j].Scratch >= 1 && _workspace.IsRented(_scratchTensors[item.Operands[j].Scratch - 1]))
                {
                    var area = _scratch[item.Operands[j].Scratch - 1];
                    _materialized.Add(area.Start);
                    item.Operands[j] = new Operand(area.Start, -1);
                }
        Execute();
    }

    /// <inheritdoc />
    public void Record<TKernel>(in TKernel kernel, IReadOnlyList<Tensor[]> groups, Tensor[][]? scratch) where TKernel : struct, IKernel
    {
        Span<Operand> operandBuffer = stackalloc Operand[16];
        for (int k = 0; k < groups.Count; k++)
        {
            var group = groups[k];
            int extra = scratch?.Length ?? 0;
            var first = group[0];
            long length = first.numel();
            if (length == 0) continue;
            // The group's arrays then its scratch, in a buffer the executor reuses (no allocation per step).
            int arity = group.Length + extra;
            if (_arrays.Length < arity) _arrays = new Tensor[Math.Max(arity, 2 * _arrays.Length)];
            var arrays = _arrays.AsSpan(0, arity);
            group.CopyTo(arrays);
            for (int s = 0; s < extra; s++) arrays[group.Length + s] = scratch![s][k];
            int run = -1;
            long start = 0;
            if (first.device_type == DeviceType.CPU && first.dtype is ScalarType.Float32 or ScalarType.Float64 && first.is_contiguous())
            {
                nint p0 = AddressOf(first);
                for (int r = 0; r < _runs.Count && run < 0; r++)
                    if (_runs[r].Updates.Contains(p0) && _runs[r].Updates.DType == first.dtype) { run = r; start = (p0 - _runs[r].Updates.Start) / first.ElementSize; }
                // Scratch laid out like the update (a copy a transform runs on, Mix's): the run indices it was aligned with.
                if (run < 0 && AlignedScratch(p0, first.dtype) is var (r0, s0)) (run, start) = (r0, s0);
            }
            if (run >= 0 && _virtual.Count > 0)
                for (int j = 0; j < arrays.Length; j++)
                    if (!arrays[j].is_contiguous() && arrays[j].dtype == first.dtype && arrays[j].numel() == length && arrays[j].device_type == DeviceType.CPU)
                    {
                        // A strided tensor the runner does not own (a context input, read only): the step cannot be
                        // run in the middle here (its update buffer lives in scratch), so the kernel reads a
                        // contiguous copy made now, while nothing has run yet.
                        var copy = arrays[j].contiguous().DetachFromDisposeScope();
                        _copies.Add(copy);
                        arrays[j] = copy;
                    }
            int unaddressable = -1;
            for (int j = 0; j < arrays.Length && unaddressable < 0; j++) if (!Addressable(arrays[j], first, length)) unaddressable = j;
            if (run < 0 || unaddressable >= 0)
            {
                // Arrays this executor cannot address (a strided tensor from the context, another dtype): run what was
                // recorded, then this group on tensors, now.
                if (_virtual.Count > 0)
                {
                    var bad = unaddressable >= 0 ? arrays[unaddressable] : first;
                    throw new InvalidOperationException($"fused executor: a kernel reads a {(bad.is_contiguous() ? "" : "strided ")}{bad.dtype} tensor of {bad.numel()} elements on {bad.device} where contiguous {first.dtype} CPU arrays of {length} elements were expected, inside a step whose update buffer lives in scratch (use RunnerExecutor.TorchSharp, or KeepGradients = false)");
                }
                Flush();
                kernel.Run<Tensor, TensorOps>(default, arrays);
                continue;
            }
            var operands = arity <= operandBuffer.Length ? operandBuffer[..arity] : new Operand[arity];
            for (int j = 0; j < operands.Length; j++)
                operands[j] = NarrowFloats.IsNarrow(arrays[j].dtype)
                    ? new Operand(AddressOf(arrays[j]), -1, NarrowFloats.Code(arrays[j].dtype))
                    : Locate(AddressOf(arrays[j]), (int)first.ElementSize, start, run);
            ulong writes = WriteProbe.Writes(kernel, arity);
            // The step records what the last one did, item for item: the same item again, with this step's kernel.
            Item item;
            int position = _stepItems.Count;
            if (position < _previousItems.Count && _previousItems[position].Matches(typeof(TKernel), run, start, length, operands, writes))
            {
                item = _previousItems[position];
                ((Stage<TKernel>)item.Stage).Set(kernel);
                item.Reset();
            }
            // One stage per item, so that a reused item's kernel is its own (never shared with another item).
            else item = new Item(new Stage<TKernel>(kernel), run, start, length, operands, writes);
            _stepItems.Add(item);
            _runs[run].Items.Add(_items.Count);
            _items.Add(item);
        }
        Array.Clear(_arrays);
    }

    // A buffer for one group's arrays while it is recorded; this step's items in order, and the last step's.
    Tensor[] _arrays = new Tensor[8];
    List<Item> _stepItems = new(), _previousItems = new();

    /// <summary>
    /// Whether a kernel's array can run in the fused loop next to <paramref name="first"/>: a contiguous CPU array of
    /// the same length and dtype, or of a 16-bit float next to float32 (widened on load, rounded on store).
    /// </summary>
    static bool Addressable(Tensor t, Tensor first, long length) =>
        t.numel() == length && t.device_type == DeviceType.CPU && t.is_contiguous() &&
        (t.dtype == first.dtype || first.dtype == ScalarType.Float32 && NarrowFloats.IsNarrow(t.dtype));

    /// <summary>
    /// Where an operand lives: a virtual update buffer or rented scratch (by area: a chunk's scratch holds the chunk's
    /// run indices), else memory. A scratch area used at its start is aligned with the item's run indices from
    /// then on in the step; one used further in must be where that alignment puts it.
    /// </summary>
    Operand Locate(nint p, int elementSize, long start, int run)
    {
        for (int v = 0; v < _virtual.Count; v++)
            if (_virtual[v].Contains(p))
            {
                long index = (p - _virtual[v].Start) / elementSize;
                if (v != run || index != start) throw new InvalidOperationException("fused executor: an update array is not aligned with its group");
                return new Operand(0, 0);
            }
        for (int pass = 0; pass < 2; pass++)
        {
            for (int s = 0; s < _scratch.Count; s++)
                if (_scratch[s].Contains(p))
                {
                    long offset = (p - _scratch[s].Start) / elementSize;
                    if (offset == 0) _alignment[s] = (run, start);
                    else if (!(_alignment.TryGetValue(s, out var at) && at.Run == run && at.Start + offset == start))
                        throw new InvalidOperationException("fused executor: a kernel uses scratch from other than its start, where it is not aligned with the kernel's elements");
                    return _materialized.Contains(_scratch[s].Start) ? new Operand(p, -1) : new Operand(0, 1 + s);
                }
            if (pass == 0 && !RefreshScratch(p)) break;
        }
        return new Operand(p, -1);
    }

    // This step's scratch areas (by index in _scratch) used at their start, with the run and run index they started at.
    readonly Dictionary<int, (int Run, long Start)> _alignment = new();

    /// <summary>The run and run index of <paramref name="p"/> when it lies in a scratch area aligned with a run in this step.</summary>
    (int Run, long Start)? AlignedScratch(nint p, ScalarType dtype)
    {
        for (int pass = 0; pass < 2; pass++)
        {
            for (int s = 0; s < _scratch.Count; s++)
                if (_scratch[s].Contains(p))
                {
                    if (_scratch[s].DType != dtype || !_alignment.TryGetValue(s, out var at) || _runs[at.Run].Updates.DType != dtype) return null;
                    return (at.Run, at.Start + (p - _scratch[s].Start) / _scratch[s].ElementSize);
                }
            if (pass == 0 && !RefreshScratch(p)) break;
        }
        return null;
    }

    /// <summary>Adds the workspace's scratch tensor holding <paramref name="p"/>, if any, to this step's scratch areas.</summary>
    bool RefreshScratch(nint p)
    {
        var tensors = _workspace.ScratchTensors;
        for (int k = 0; k < tensors.Count; k++)
        {
            var t = tensors[k];
            if (!_scratchAreas.TryGetValue(t.Handle, out var area)) _scratchAreas[t.Handle] = area = AreaOf(t);
            if (area.Contains(p) && !_scratch.Contains(area)) { _scratch.Add(area); _scratchTensors.Add(t); return true; }
        }
        return false;
    }

    /// <summary>
    /// Runs the recorded stages: each run is cut into segments over which the same stages apply, each segment into
    /// chunks of the block size, and the chunks are shared out in order over the executor's threads. A chunk runs
    /// its segment's compiled chain (<see cref="ChainLoop"/>) vector by vector, then its sub-vector tail stage by
    /// stage through <see cref="BlockOps{T}"/>.
    /// </summary>
    /// <param name="last">The step's last pass: the values of a separate update buffer are not needed after it.</param>
    public void Execute(bool last = false)
    {
        _segments.Clear();
        int staged = 0;
        for (int r = 0; r < _runs.Count; r++)
        {
            var run = _runs[r];
            var segments = run.Items.Count == 0 ? null : CachedSegments(run);
            _segments.Add(segments);
            if (segments is not null) for (int k = 0; k < segments.Count; k++) staged = Math.Max(staged, segments[k].Staged.Length);
        }
        _stagingArea = 1 + _scratch.Count;
        int arrays = 0;
        foreach (var list in _segments) if (list is not null) foreach (var segment in list) arrays = Math.Max(arrays, segment.Arrays);
        if (_bases.Length != _threads || _bases[0].Length < arrays)
        {
            _bases = new nint[_threads][];
            for (int t = 0; t < _threads; t++) _bases[t] = new nint[Math.Max(arrays, 16)];
        }
        long bytesPerThread = (long)(_stagingArea + staged) * _block * sizeof(double) + 64;
        EnsureThreadScratch(bytesPerThread);
        for (int r = 0; r < _runs.Count; r++)
        {
            var run = _runs[r];
            var segments = _segments[r];
            if (segments is null) continue;
            long chunks = 0;
            for (int k = 0; k < segments.Count; k++)
            {
                var segment = segments[k];
                // This step's kernels into the segment's chain (a reused segment keeps its chain object).
                if (segment.Bound is null) segment.Bound = segment.Loop.Bind(segment); else segment.Bound.Rebind(segment);
                bool dropUpdates = last && run.Separate;
                if (Compiled) { if (run.Updates.DType == ScalarType.Float32) segment.Prepare<float>(dropUpdates); else segment.Prepare<double>(dropUpdates); }
                segment.FirstChunk = chunks;
                chunks += (segment.End - segment.Start + _block - 1) / _block;
            }
            int threads = (int)Math.Min(_threads, chunks);
            bool single = run.Updates.DType == ScalarType.Float32;
            if (threads <= 1) { if (single) Chunks<float>(segments, 0, 0, chunks); else Chunks<double>(segments, 0, 0, chunks); continue; }
            (_jobSegments, _jobChunks, _jobThreads, _jobSingle) = (segments, chunks, threads, single);
            try { WorkerPool.Run(threads, _part); }
            finally { _jobSegments = null; }
        }
        _items.Clear();
        _segments.Clear();
        for (int r = 0; r < _runs.Count; r++) _runs[r].Items.Clear();
        for (int c = 0; c < _copies.Count; c++) _copies[c].Dispose();
        _copies.Clear();
    }

    // The job the worker pool runs: its part t takes the t-th share of the run's chunks, in order.
    List<Segment>? _jobSegments;
    long _jobChunks;
    int _jobThreads;
    bool _jobSingle;
    readonly Action<int> _part;

    void Part(int t)
    {
        long from = _jobChunks * t / _jobThreads, to = _jobChunks * (t + 1) / _jobThreads;
        if (_jobSingle) Chunks<float>(_jobSegments!, t, from, to); else Chunks<double>(_jobSegments!, t, from, to);
    }

    /// <summary>The segments of a run recorded as in an earlier step (the same items with the same operands) are that step's, else new ones.</summary>
    List<Segment> CachedSegments(Run run)
    {
        var first = _items[run.Items[0]];
        if (_segmentCache.TryGetValue(first, out var cached) && cached.Items.Length == run.Items.Count)
        {
            bool same = true;
            for (int k = 0; k < cached.Items.Length && same; k++)
            {
                var item = _items[run.Items[k]];
                same = ReferenceEquals(item, cached.Items[k]) && item.Operands.AsSpan().SequenceEqual(cached.Operands[k]);
            }
            if (same) return cached.Segments;
        }
        var segments = Segments(run);
        if (_segmentCache.Count >= 256) _segmentCache.Clear();
        var items = new Item[run.Items.Count];
        for (int k = 0; k < items.Length; k++) items[k] = _items[run.Items[k]];
        _segmentCache[first] = (items, items.Select(i => i.Operands.ToArray()).ToArray(), segments);
        return segments;
    }

    readonly Dictionary<Item, (Item[] Items, Operand[][] Operands, List<Segment> Segments)> _segmentCache = new(ReferenceEqualityComparer.Instance);

    readonly List<List<Segment>?> _segments = new();
    // Per thread: the base addresses of a chunk's distinct arrays, for a compiled program.
    nint[][] _bases = new nint[0][];

    /// <summary>Whether segments run as compiled programs (else as composed chains); set LOOKAHEAD_FUSED_CHAIN=1 to compare.</summary>
    internal static readonly bool Compiled = Environment.GetEnvironmentVariable("LOOKAHEAD_FUSED_CHAIN") != "1";
    // The first per-thread scratch area (in blocks) that holds the float32 copies of a chunk's 16-bit arrays.
    int _stagingArea;

    /// <summary>A range of a run over which the same stages apply, in recording order, with their compiled chain.</summary>
    sealed class Segment : IKernelSource
    {
        public readonly long Start, End;
        public readonly Item[] Items;
        public readonly ChainLoop Loop;
        public readonly int Lanes;
        public long FirstChunk;
        public BoundChain? Bound;

        /// <summary>The distinct 16-bit arrays of the segment (their element at run index 0), each widened into a float32 staging area per chunk.</summary>
        public readonly Staging[] Staged;

        /// <summary>Per lane (operand of every item, in order): its staging area, or −1.</summary>
        public readonly int[] StagedLane;

        /// <summary>Per lane: the id of the distinct array it is (lanes of the same memory, scratch or staging share one).</summary>
        public readonly int[] LaneIds;
        /// <summary>Distinct arrays; per id, whether it outlives the chunk (memory or staging: stored) or is per-chunk scratch.</summary>
        public readonly int Arrays;
        public readonly bool[] Kept;
        /// <summary>Per id: bfloat16 memory the compiled program reads and writes directly; per staged array: its id.</summary>
        public readonly bool[] BFloat16;
        public readonly int[] StagedId;
        /// <summary>This step's program (operations and coefficients), and the compiled loop of the last program seen.</summary>
        public readonly ProgramRecorder Recorder = new();
        public int[]? ProgramOps;
        public Delegate? Program;
        public Array? Constants;

        /// <summary>Per id: the run's update buffer in memory (its stores may be dropped in the step's last pass).</summary>
        public readonly bool[] IsUpdate;
        readonly bool[] _keptNow;
        bool[]? _programKept;

        public Segment(long start, long end, Item[] items, ChainLoop loop, int elementSize, nint updates)
        {
            (Start, End, Items, Loop) = (start, end, items, loop);
            Lanes = items.Sum(i => i.Operands.Length);
            var staged = new List<Staging>();
            StagedLane = new int[Lanes];
            LaneIds = new int[Lanes];
            var ids = new Dictionary<(int Kind, nint Key), int>();
            var kept = new List<bool>();
            var isUpdate = new List<bool>();
            var bf16 = new List<bool>();
            var stagedIds = new List<int>();
            int lane = 0;
            foreach (var item in items)
                for (int j = 0; j < item.Operands.Length; j++, lane++)
                {
                    var operand = item.Operands[j];
                    StagedLane[lane] = -1;
                    (int Kind, nint Key) identity;
                    if (operand.Narrow == 0)
                        identity = operand.Scratch >= 0 ? (1, operand.Scratch) : (0, operand.Pointer - (nint)(item.Start * elementSize));
                    else
                    {
                        nint origin = operand.Pointer - (nint)(item.Start * 2);
                        int index = staged.FindIndex(x => x.Origin == origin);
                        if (index < 0) { index = staged.Count; staged.Add(new Staging(origin, operand.Narrow, false)); }
                        if ((item.Writes >> j & 1) != 0) staged[index] = staged[index] with { Written = true };
                        StagedLane[lane] = index;
                        identity = (2, index);
                    }
                    if (!ids.TryGetValue(identity, out int id))
                    {
                        ids[identity] = id = ids.Count;
                        kept.Add(identity.Kind != 1);
                        isUpdate.Add(identity.Kind == 0 && identity.Key == updates);
                        bf16.Add(identity.Kind == 2 && operand.Narrow == 1);
                        if (identity.Kind == 2) stagedIds.Add(id);
                    }
                    LaneIds[lane] = id;
                }
            Staged = staged.ToArray();
            Arrays = ids.Count;
            Kept = kept.ToArray();
            BFloat16 = bf16.ToArray();
            IsUpdate = isUpdate.ToArray();
            _keptNow = new bool[Arrays];
            StagedId = stagedIds.ToArray();
        }

        /// <summary>Records this step's program; compiles (or finds) its loop when the operations differ from the last step's.</summary>
        /// <param name="dropUpdates">Whether the update buffer's stores may be dropped (its values are dead after this pass).</param>
        public void Prepare<T>(bool dropUpdates) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
        {
            for (int k = 0; k < Arrays; k++) _keptNow[k] = Kept[k] && !(dropUpdates && IsUpdate[k]);
            Recorder.Clear();
            var ops = new RecordOps(Recorder);
            int lane = 0;
            foreach (var item in Items)
            {
                int arity = item.Operands.Length;
                item.Stage.Record(ops, LaneIds.AsSpan(lane, arity));
                lane += arity;
            }
            if (!Recorder.Same(ProgramOps) || !_keptNow.AsSpan().SequenceEqual(_programKept))
            {
                ProgramOps = Recorder.Ops.AsSpan(0, Recorder.OpCount * ProgramRecorder.Width).ToArray();
                _programKept = (bool[])_keptNow.Clone();
                Program = ChainCompiler.For<T>(ProgramOps, Arrays, _programKept, BFloat16, Recorder.ConstantCount);
            }
            if (Constants is not T[] constants || constants.Length < Recorder.ConstantCount) Constants = constants = new T[Math.Max(Recorder.ConstantCount, 8)];
            for (int k = 0; k < Recorder.ConstantCount; k++) constants[k] = ElementMath<T>.S(Recorder.Constants[k]);
        }

        public TKernel Kernel<TKernel>(int index) where TKernel : struct, IKernel => ((Stage<TKernel>)Items[index].Stage).Kernel;

        public int Arity(int index) => Items[index].Operands.Length;
    }

    // The compiled chains, by their sequence of kernel types (compiled once per process).
    static readonly Dictionary<string, ChainLoop> Loops = new();

    static ChainLoop LoopFor(Item[] items)
    {
        var types = new Type[items.Length];
        for (int k = 0; k < items.Length; k++) types[k] = items[k].Stage.KernelType;
        var key = string.Join(";", types.Select(t => t.TypeHandle.Value.ToString()));
        lock (Loops)
        {
            if (!Loops.TryGetValue(key, out var loop)) Loops[key] = loop = ChainLoop.For(types);
            return loop;
        }
    }

    /// <summary>A 16-bit array a segment reads (and, when <paramref name="Written"/>, writes): its element at run index 0 and its format.</summary>
    readonly record struct Staging(nint Origin, byte Code, bool Written);

    /// <summary>The run's segments: cut wherever a stage's range starts or ends; each lists the stages covering it.</summary>
    List<Segment> Segments(Run run)
    {
        var cuts = new SortedSet<long>();
        foreach (int index in run.Items) { cuts.Add(_items[index].Start); cuts.Add(_items[index].Start + _items[index].Length); }
        var segments = new List<Segment>();
        long previous = -1;
        foreach (long cut in cuts)
        {
            if (previous >= 0)
            {
                var covering = run.Items.Select(i => _items[i]).Where(item => item.Start <= previous && item.Start + item.Length >= cut).ToArray();
                if (covering.Length > 0) segments.Add(new Segment(previous, cut, covering, LoopFor(covering), run.Updates.DType == ScalarType.Float32 ? 4 : 8, run.Updates.Start));
            }
            previous = cut;
        }
        return segments;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void Chunks<T>(List<Segment> segments, int thread, long firstChunk, long endChunk) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        byte* scratch = _threadScratch[thread];
        int width = System.Runtime.Intrinsics.Vector256<T>.Count;
        int s = 0;
        int most = 0;
        for (int k = 0; k < segments.Count; k++) most = Math.Max(most, segments[k].Lanes);
        Span<Lane<T>> lanes = most <= 64 ? stackalloc Lane<T>[64] : new Lane<T>[most];
        Span<Block<T>> blocks = stackalloc Block<T>[16];
        for (long c = firstChunk; c < endChunk; c++)
        {
            while (c >= segments[s].FirstChunk + (segments[s].End - segments[s].Start + _block - 1) / _block) s++;
            var segment = segments[s];
            long o = segment.Start + (c - segment.FirstChunk) * _block, e = Math.Min(segment.End, o + _block);
            long length = e - o;
            long vectors = length / (width * LaneOps<T>.Unroll) * LaneOps<T>.Unroll;
            var program = segment.Program as ProgramLoop<T>;
            // 16-bit arrays: widened into float32 staging areas for the chunk (and rounded back after it, if written);
            // a compiled program reads and writes bfloat16 memory itself, so only the tail is staged.
            for (int st = 0; st < segment.Staged.Length; st++)
            {
                long from = program is not null && segment.Staged[st].Code == 1 ? vectors * width : 0;
                NarrowFloats.Widen(segment.Staged[st].Code, (ushort*)segment.Staged[st].Origin + o + from, (float*)StagingArea(scratch, st) + from, length - from);
            }
            int lane = 0;
            foreach (var item in segment.Items)
                foreach (var operand in item.Operands)
                {
                    lanes[lane] = new Lane<T>(operand.Narrow != 0 ? (T*)StagingArea(scratch, segment.StagedLane[lane])
                        : operand.Scratch < 0
                        ? (T*)operand.Pointer + (o - item.Start)
                        : (T*)(scratch + (long)operand.Scratch * _block * sizeof(T)));
                    lane++;
                }
            fixed (Lane<T>* l = lanes)
            {
                if (vectors > 0)
                {
                    if (program is not null)
                    {
                        // The compiled program: each distinct array's chunk once.
                        var bases = _bases[thread];
                        for (int k = 0; k < segment.Lanes; k++) bases[segment.LaneIds[k]] = (nint)l[k].Pointer;
                        for (int st = 0; st < segment.Staged.Length; st++)
                            if (segment.Staged[st].Code == 1) bases[segment.StagedId[st]] = (nint)((ushort*)segment.Staged[st].Origin + o);
                        program(bases, (T[])segment.Constants!, vectors * width);
                    }
                    else if (typeof(T) == typeof(float)) segment.Bound!.Run32((Lane<float>*)l, vectors);
                    else segment.Bound!.Run64((Lane<double>*)l, vectors);
                }
                int tail = (int)(length - vectors * width);
                if (tail > 0)
                {
                lane = 0;
                foreach (var item in segment.Items)
                {
                    int arity = item.Operands.Length;
                    if (arity > blocks.Length) blocks = new Block<T>[arity];
                    for (int j = 0; j < arity; j++) blocks[j] = new Block<T>(l[lane + j].Pointer + vectors * width, tail);
                    lane += arity;
                    if (typeof(T) == typeof(float)) item.Stage.Run32(MemoryMarshal.Cast<Block<T>, Block<float>>(blocks[..arity]));
                    else item.Stage.Run64(MemoryMarshal.Cast<Block<T>, Block<double>>(blocks[..arity]));
                }
                }
            }
            for (int st = 0; st < segment.Staged.Length; st++)
                if (segment.Staged[st].Written)
                {
                    long from = program is not null && segment.Staged[st].Code == 1 ? vectors * width : 0;
                    NarrowFloats.Narrow(segment.Staged[st].Code, (float*)StagingArea(scratch, st) + from, (ushort*)segment.Staged[st].Origin + o + from, length - from);
                }
        }
    }

    byte* StagingArea(byte* scratch, int index) => scratch + (long)(_stagingArea + index) * _block * sizeof(double);

    /// <summary>
    /// Runs what was recorded, then <paramref name="kind"/> over each group of index-aligned arrays (a dot product
    /// reads two): float64 partial sums of <see cref="ReductionBlock"/> elements, on the executor's threads, added in
    /// order, so the result is the same for every thread count and block size.
    /// </summary>
    public double[] Reduce(ReductionKind kind, IReadOnlyList<Tensor[]> groups)
    {
        // When all that is pending is the copy of the gradients into the update buffer, a reduction of the update
        // buffer reads the gradients instead and nothing runs yet: the copy then joins the rest of the step's pass.
        bool forwarded = Forwardable();
        if (!forwarded) Flush();
        var result = new double[groups.Count];
        for (int k = 0; k < groups.Count; k++)
        {
            var group = groups[k];
            var first = group[0];
            long n = first.numel();
            if (n == 0) continue;
            var second = kind == ReductionKind.Dot && group.Length >= 2 ? group[1] : first;
            // A 16-bit array is summed as the float32 values it widens to (exactly), next to float32.
            ScalarType Wide(Tensor t) => NarrowFloats.IsNarrow(t.dtype) ? ScalarType.Float32 : t.dtype;
            if (kind == ReductionKind.Dot && (group.Length < 2 || second.numel() != n || Wide(second) != Wide(first)))
                throw new InvalidOperationException("fused executor: a dot product needs two arrays of the same length and dtype");
            nint a = AddressOf(first), b = AddressOf(second);
            byte codeA = NarrowFloats.Code(first.dtype), codeB = NarrowFloats.Code(second.dtype);
            if (forwarded && !(Source(first, ref a, ref codeA) && Source(second, ref b, ref codeB)))
            {
                // An update array the pending copy does not cover (not expected): run the copy, read the buffer.
                Flush();
                forwarded = false;
                (a, b, codeA, codeB) = (AddressOf(first), AddressOf(second), NarrowFloats.Code(first.dtype), NarrowFloats.Code(second.dtype));
            }
            long blocks = (n + ReductionBlock - 1) / ReductionBlock;
            var partials = new double[blocks];
            bool single = Wide(first) == ScalarType.Float32;
            void Range(long from, long to)
            {
                // Float32 copies of a block of each 16-bit array (native, freed when the range is done).
                float* wa = codeA != 0 ? (float*)NativeMemory.Alloc(ReductionBlock, sizeof(float)) : null;
                float* wb = codeB != 0 ? (float*)NativeMemory.Alloc(ReductionBlock, sizeof(float)) : null;
                try
                {
                    for (long blk = from; blk < to; blk++)
                    {
                        long o = blk * ReductionBlock;
                        int len = (int)Math.Min(ReductionBlock, n - o);
                        if (single)
                        {
                            float* x = (float*)a + o, y = (float*)b + o;
                            if (codeA != 0) { NarrowFloats.Widen(codeA, (ushort*)a + o, wa, len); x = wa; }
                            if (codeB != 0) { NarrowFloats.Widen(codeB, (ushort*)b + o, wb, len); y = wb; }
                            partials[blk] = Reducer.Partial<Block<float>, double, BlockOps<float>>(default, kind, new Block<float>(x, len), new Block<float>(y, len));
                        }
                        else
                            partials[blk] = Reducer.Partial<Block<double>, double, BlockOps<double>>(default, kind, new Block<double>((double*)a + o, len), new Block<double>((double*)b + o, len));
                    }
                }
                finally
                {
                    if (wa is not null) NativeMemory.Free(wa);
                    if (wb is not null) NativeMemory.Free(wb);
                }
            }
            int threads = (int)Math.Min(_threads, blocks);
            if (threads <= 1) Range(0, blocks);
            else Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t => Range(blocks * t / threads, blocks * (t + 1) / threads));
            double total = 0;
            foreach (var p in partials) total += p;
            result[k] = total;
        }
        return result;
    }

    /// <summary>Whether every stage recorded since the last run is the gradient copy into the update buffer.</summary>
    bool Forwardable()
    {
        if (_items.Count == 0) return false;
        foreach (var item in _items) if (item.Stage.KernelType != typeof(CopyInKernel) || item.Operands[1].Scratch >= 0) return false;
        return true;
    }

    /// <summary>
    /// Where the current values of <paramref name="t"/> are while only gradient copies are pending: an update array
    /// reads from the gradients it is about to be copied from (its pointer and 16-bit code replaced); any other
    /// array is unaffected by the copies. False when an update array is not covered by one copy.
    /// </summary>
    bool Source(Tensor t, ref nint address, ref byte code)
    {
        for (int r = 0; r < _runs.Count; r++)
        {
            var run = _runs[r];
            if (!run.Updates.Contains(address) || run.Updates.DType != t.dtype) continue;
            long index = (address - run.Updates.Start) / t.ElementSize, length = t.numel();
            foreach (int i in run.Items)
            {
                var item = _items[i];
                if (item.Start > index || index + length > item.Start + item.Length) continue;
                var from = item.Operands[1];
                address = from.Pointer + (nint)((index - item.Start) * (from.Narrow != 0 ? 2 : t.ElementSize));
                code = from.Narrow;
                return true;
            }
            return false;
        }
        return true;
    }

    void EnsureThreadScratch(long bytes)
    {
        if (_threadScratch.Length == _threads && _threadScratchBytes >= bytes) return;
        FreeThreadScratch();
        _threadScratch = new byte*[_threads];
        for (int t = 0; t < _threads; t++) _threadScratch[t] = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        _threadScratchBytes = bytes;
    }

    void FreeThreadScratch()
    {
        foreach (var p in _threadScratch) if (p is not null) NativeMemory.AlignedFree(p);
        _threadScratch = new byte*[0];
        _threadScratchBytes = 0;
    }

    /// <summary>Frees the per-thread scratch (native memory) and this step's copies.</summary>
    public void Dispose()
    {
        FreeThreadScratch();
        foreach (var copy in _copies) copy.Dispose();
        _copies.Clear();
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees the per-thread scratch of an executor whose runner was never disposed.</summary>
    ~FusedExecutor() => FreeThreadScratch();
}

/// <summary>Which transforms the fused executor can run: those whose every node is elementwise.</summary>
internal interface IFusable
{
    /// <summary>
    /// Whether this node's own step is safe under recording (children are asked separately): it runs its arithmetic
    /// through <see cref="Elementwise.Run{TKernel}(in TKernel, TensorTree[])"/> and its reductions through
    /// <see cref="Elementwise.Reduce"/>, and touches buffers directly only right after a reduction.
    /// </summary>
    bool FusesAlone { get; }

    /// <summary>
    /// Whether its step may run what was recorded before it in the middle of the step for a reason other than a
    /// declared reduction (it runs a transform known only at that step), so that the update buffer must stay in
    /// memory. A node that declares reductions (<see cref="IReducing"/>) flushes anyway: <see cref="Fusion"/> reads them.
    /// </summary>
    bool Flushes => false;
}

/// <summary>Decides whether a transform tree runs on the fused executor in one pass (its update buffer in scratch).</summary>
internal static class Fusion
{
    /// <summary>True when every node of <paramref name="transform"/>'s tree is elementwise and none reduces (declares a <see cref="Reduction"/>) or otherwise flushes.</summary>
    public static bool Fusable(IGradientTransformation transform)
    {
        if (transform is not IFusable { FusesAlone: true } f || f.Flushes) return false;
        if (transform is IReducing { Reductions.Count: > 0 }) return false;
        if (transform is IComposite c) foreach (var child in c.Children) if (!Fusable(child)) return false;
        return true;
    }
}
