using System;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Threading.Tasks;
using static TorchSharp.torch;

namespace Lookahead.Benchmarks;

/// <summary>
/// The arrays one step of an optimizer must move, counted in parameter-sized float32 arrays: the ones it only
/// reads (the gradient g, at least), the ones it reads and writes back (the parameters p and every
/// per-parameter state slot), and the ones a reduction must read in a pass of its own before the elementwise
/// update can start (a clip factor, a non-finite count, a Polyak step size).
/// </summary>
/// <param name="ReadOnly">Arrays read once by the update pass and not written (g).</param>
/// <param name="ReadWrite">Arrays read and written once by the update pass (p, m, v, …).</param>
/// <param name="ReductionReads">Arrays read once more by a separate reduction pass.</param>
/// <param name="NarrowReadOnly">How many of the read-only arrays (the first ones) hold 16-bit floats (bfloat16 gradients).</param>
/// <param name="NarrowReadWrite">How many of the read-write arrays (the first ones) hold 16-bit floats (bfloat16 parameters).</param>
public sealed record Traffic(int ReadOnly, int ReadWrite, int ReductionReads, int NarrowReadOnly = 0, int NarrowReadWrite = 0)
{
    /// <summary>Passes over one parameter-sized array: every read and every write counts once.</summary>
    public int Passes => ReadOnly + 2 * ReadWrite + ReductionReads;

    /// <summary>Bytes moved for <paramref name="n"/> parameters: 4 per element of a float32 array, 2 of a 16-bit one.</summary>
    public long Bytes(long n) => (Passes * 4L - (NarrowReadOnly + 2 * NarrowReadWrite) * 2L) * n;

    /// <inheritdoc />
    public override string ToString() =>
        $"{ReadOnly} read + {ReadWrite} read-write" + (ReductionReads > 0 ? $" + {ReductionReads} reduction read" : "") + $" = {Passes} passes"
        + (NarrowReadOnly + NarrowReadWrite > 0 ? $" ({NarrowReadOnly} read and {NarrowReadWrite} read-write of them 16-bit)" : "");
}

/// <summary>
/// The unit of the quick benchmark's traffic ratios: a SIMD loop that moves exactly the memory of one fused
/// optimizer step (see <see cref="Traffic"/>) with trivial arithmetic, over float32 arrays allocated by torch
/// on the CPU (the same kind of memory as the optimizer's). It is what a fused CPU kernel would cost if its
/// arithmetic were free, so an optimizer's step time over this loop's time says how far it is from the
/// memory bound on this machine.
/// </summary>
/// <remarks>
/// The update pass walks the arrays element-block by element-block, as a fused kernel would (all streams at
/// once): it sums the read-only arrays into an accumulator, then for each read-write array loads a vector,
/// combines it with the accumulator and stores it back. The values stay bounded (each read-write array is
/// halved then added a bounded sum), so no denormals appear however often it runs. The optional reduction
/// pass runs first and sums the squares of the first <see cref="Traffic.ReductionReads"/> arrays (the same
/// memory as the update's arrays, as a real reduction re-reads them). With two threads each pass is split in
/// two disjoint halves run by <see cref="Parallel.For(int, int, Action{int})"/>.
/// </remarks>
public sealed unsafe class TrafficLoop : IDisposable
{
    readonly Tensor[] _tensors;
    readonly nint[] _readOnly, _readWrite, _reduced, _narrowReadOnly, _narrowReadWrite;
    readonly long _n;
    bool _disposed;

    /// <summary>The traffic this loop moves per run.</summary>
    public Traffic Traffic { get; }

    /// <summary>Elements per array.</summary>
    public long Length => _n;

    /// <summary>The last reduction's value (kept so that the reduction pass is observable).</summary>
    public double Sink { get; private set; }

    /// <summary>Allocates the arrays of <paramref name="traffic"/>, <paramref name="n"/> float32 elements each.</summary>
    public TrafficLoop(Traffic traffic, long n)
    {
        ArgumentNullException.ThrowIfNull(traffic);
        if (traffic.ReadOnly < 1) throw new ArgumentException("a step reads at least the gradient", nameof(traffic));
        if (traffic.ReductionReads > traffic.ReadOnly + traffic.ReadWrite) throw new ArgumentException("a reduction re-reads the step's own arrays", nameof(traffic));
        if (traffic.NarrowReadOnly > traffic.ReadOnly || traffic.NarrowReadWrite > traffic.ReadWrite)
            throw new ArgumentException("the 16-bit arrays are some of the step's arrays", nameof(traffic));
        if (traffic.ReductionReads > 0 && traffic.NarrowReadOnly + traffic.NarrowReadWrite > 0) throw new ArgumentException("a reduction pass over 16-bit arrays is not modelled", nameof(traffic));
        Traffic = traffic;
        _n = n;
        // Random values, like gradients and state; contiguous so that the data pointer spans the whole array.
        Tensor Make(bool narrow) => (narrow ? randn(n).mul_(0.01).to(ScalarType.BFloat16) : randn(n).mul_(0.01)).contiguous().DetachFromDisposeScope();
        var readOnly = Enumerable.Range(0, traffic.ReadOnly).Select(k => Make(k < traffic.NarrowReadOnly)).ToArray();
        var readWrite = Enumerable.Range(0, traffic.ReadWrite).Select(k => Make(k < traffic.NarrowReadWrite)).ToArray();
        _tensors = readOnly.Concat(readWrite).ToArray();
        _narrowReadOnly = readOnly[..traffic.NarrowReadOnly].Select(Address).ToArray();
        _readOnly = readOnly[traffic.NarrowReadOnly..].Select(Address).ToArray();
        _narrowReadWrite = readWrite[..traffic.NarrowReadWrite].Select(Address).ToArray();
        _readWrite = readWrite[traffic.NarrowReadWrite..].Select(Address).ToArray();
        _reduced = _tensors.Take(traffic.ReductionReads).Select(Address).ToArray();
    }

    /// <summary>The address of a contiguous float32 or bfloat16 CPU tensor's first element: its storage's base plus its offset.</summary>
    public static nint Address(Tensor t)
    {
        if (t.dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || t.device_type != TorchSharp.DeviceType.CPU || !t.is_contiguous())
            throw new ArgumentException("the traffic loop needs contiguous float32 or bfloat16 tensors on the CPU", nameof(t));
        // LibTorchSharp's own export gives the first element's address. (TorchSharp's storage objects do not cover
        // bfloat16, and inside a dispose scope a storage object keeps its tensor's memory alive until the scope ends.)
        return THSTensor_data(t.Handle);
    }

    [System.Runtime.InteropServices.DllImport("LibTorchSharp")]
    static extern nint THSTensor_data(nint handle);

    /// <summary>One run: the reduction pass (if any), then the update pass, on 1 or 2 threads.</summary>
    public void Run(int threads)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (threads is not (1 or 2)) throw new ArgumentOutOfRangeException(nameof(threads), threads, "1 or 2 threads");
        if (_reduced.Length > 0)
        {
            if (threads == 1) Sink = SumOfSquares(_reduced, 0, _n);
            else
            {
                var partial = new double[2];
                Parallel.For(0, 2, k => partial[k] = SumOfSquares(_reduced, Half(k).Start, Half(k).End));
                Sink = partial[0] + partial[1];
            }
        }
        if (_narrowReadOnly.Length + _narrowReadWrite.Length > 0)
        {
            if (threads == 1) UpdateMixed(_narrowReadOnly, _readOnly, _narrowReadWrite, _readWrite, 0, _n);
            else Parallel.For(0, 2, k => UpdateMixed(_narrowReadOnly, _readOnly, _narrowReadWrite, _readWrite, Half(k).Start, Half(k).End));
        }
        else if (threads == 1) Update(_readOnly, _readWrite, 0, _n);
        else Parallel.For(0, 2, k => Update(_readOnly, _readWrite, Half(k).Start, Half(k).End));
    }

    /// <summary>The k-th of two disjoint halves of [0, n), split on a 64-element boundary (whole cache lines).</summary>
    (long Start, long End) Half(int k)
    {
        long middle = (_n / 2) & ~63L;
        return k == 0 ? (0, middle) : (middle, _n);
    }

    /// <summary>The update pass on [start, end): acc = Σ read-only; then x ← x/2 + acc for each read-write array.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Update(nint[] readOnly, nint[] readWrite, long start, long end)
    {
        int nr = readOnly.Length, nw = readWrite.Length;
        float** r = stackalloc float*[nr];
        float** w = stackalloc float*[nw];
        for (int k = 0; k < nr; k++) r[k] = (float*)readOnly[k];
        for (int k = 0; k < nw; k++) w[k] = (float*)readWrite[k];
        var half = Vector256.Create(0.5f);
        int lanes = Vector256<float>.Count;
        long i = start;
        for (; i + lanes <= end; i += lanes)
        {
            var acc = Vector256.Load(r[0] + i);
            for (int k = 1; k < nr; k++) acc += Vector256.Load(r[k] + i);
            for (int k = 0; k < nw; k++)
            {
                float* x = w[k] + i;
                Vector256.Store(Vector256.Load(x) * half + acc, x);
            }
        }
        for (; i < end; i++)
        {
            float acc = r[0][i];
            for (int k = 1; k < nr; k++) acc += r[k][i];
            for (int k = 0; k < nw; k++) w[k][i] = w[k][i] * 0.5f + acc;
        }
    }

    /// <summary>
    /// The update pass with 16-bit arrays (bfloat16): as <see cref="Update"/>, a 16-bit array widened on load (a shift)
    /// and narrowed on store (truncated: the loop's arithmetic is trivial on purpose).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void UpdateMixed(nint[] narrowReadOnly, nint[] readOnly, nint[] narrowReadWrite, nint[] readWrite, long start, long end)
    {
        int nnr = narrowReadOnly.Length, nr = readOnly.Length, nnw = narrowReadWrite.Length, nw = readWrite.Length;
        ushort** hr = stackalloc ushort*[Math.Max(nnr, 1)];
        float** r = stackalloc float*[Math.Max(nr, 1)];
        ushort** hw = stackalloc ushort*[Math.Max(nnw, 1)];
        float** w = stackalloc float*[Math.Max(nw, 1)];
        for (int k = 0; k < nnr; k++) hr[k] = (ushort*)narrowReadOnly[k];
        for (int k = 0; k < nr; k++) r[k] = (float*)readOnly[k];
        for (int k = 0; k < nnw; k++) hw[k] = (ushort*)narrowReadWrite[k];
        for (int k = 0; k < nw; k++) w[k] = (float*)readWrite[k];
        var half = Vector256.Create(0.5f);
        int lanes = Vector256<float>.Count;
        static Vector256<float> Widen(ushort* p) => Vector256.ShiftLeft(Vector256.WidenLower(Vector256.Create(Vector128.Load(p), Vector128<ushort>.Zero)), 16).AsSingle();
        long i = start;
        for (; i + lanes <= end; i += lanes)
        {
            var acc = Vector256<float>.Zero;
            for (int k = 0; k < nr; k++) acc += Vector256.Load(r[k] + i);
            for (int k = 0; k < nnr; k++) acc += Widen(hr[k] + i);
            for (int k = 0; k < nnw; k++)
            {
                var x = Widen(hw[k] + i) * half + acc;
                var bits = Vector256.ShiftRightLogical(x.AsUInt32(), 16);
                Vector128.Store(Vector256.Narrow(bits, bits).GetLower(), hw[k] + i);
            }
            for (int k = 0; k < nw; k++)
            {
                float* x = w[k] + i;
                Vector256.Store(Vector256.Load(x) * half + acc, x);
            }
        }
        for (; i < end; i++)
        {
            float acc = 0;
            for (int k = 0; k < nr; k++) acc += r[k][i];
            for (int k = 0; k < nnr; k++) acc += BitConverter.UInt32BitsToSingle((uint)hr[k][i] << 16);
            for (int k = 0; k < nnw; k++) hw[k][i] = (ushort)(BitConverter.SingleToUInt32Bits(BitConverter.UInt32BitsToSingle((uint)hw[k][i] << 16) * 0.5f + acc) >> 16);
            for (int k = 0; k < nw; k++) w[k][i] = w[k][i] * 0.5f + acc;
        }
    }

    /// <summary>The reduction pass on [start, end): Σ x² over every listed array.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static double SumOfSquares(nint[] arrays, long start, long end)
    {
        int na = arrays.Length;
        float** a = stackalloc float*[na];
        for (int k = 0; k < na; k++) a[k] = (float*)arrays[k];
        var acc = Vector256<float>.Zero;
        int lanes = Vector256<float>.Count;
        long i = start;
        for (; i + lanes <= end; i += lanes)
            for (int k = 0; k < na; k++)
            {
                var x = Vector256.Load(a[k] + i);
                acc += x * x;
            }
        double sum = Vector256.Sum(acc);
        for (; i < end; i++)
            for (int k = 0; k < na; k++) sum += a[k][i] * a[k][i];
        return sum;
    }

    /// <summary>Frees the arrays.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _tensors) t.Dispose();
    }
}
