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
public sealed record Traffic(int ReadOnly, int ReadWrite, int ReductionReads)
{
    /// <summary>Passes over one parameter-sized array: every read and every write counts once.</summary>
    public int Passes => ReadOnly + 2 * ReadWrite + ReductionReads;

    /// <summary>Bytes moved for <paramref name="n"/> float32 parameters.</summary>
    public long Bytes(long n) => Passes * n * sizeof(float);

    /// <inheritdoc />
    public override string ToString() =>
        $"{ReadOnly} read + {ReadWrite} read-write" + (ReductionReads > 0 ? $" + {ReductionReads} reduction read" : "") + $" = {Passes} passes";
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
    readonly nint[] _readOnly, _readWrite, _reduced;
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
        Traffic = traffic;
        _n = n;
        // Random values, like gradients and state; contiguous so that the data pointer spans the whole array.
        _tensors = Enumerable.Range(0, traffic.ReadOnly + traffic.ReadWrite)
            .Select(_ => randn(n).mul_(0.01).contiguous().DetachFromDisposeScope()).ToArray();
        var addresses = _tensors.Select(Address).ToArray();
        _readOnly = addresses[..traffic.ReadOnly];
        _readWrite = addresses[traffic.ReadOnly..];
        _reduced = addresses[..traffic.ReductionReads];
    }

    /// <summary>The address of a contiguous float32 CPU tensor's first element: its storage's base plus its offset.</summary>
    public static nint Address(Tensor t)
    {
        if (t.dtype != ScalarType.Float32 || t.device_type != TorchSharp.DeviceType.CPU || !t.is_contiguous())
            throw new ArgumentException("the traffic loop needs contiguous float32 tensors on the CPU", nameof(t));
        using var storage = t.storage<float>();
        return storage.data_ptr() + (nint)(t.storage_offset() * sizeof(float));
    }

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
        if (threads == 1) Update(_readOnly, _readWrite, 0, _n);
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
