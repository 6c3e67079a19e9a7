using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Lookahead.Kernels;

/// <summary>
/// A block of native memory: <see cref="Length"/> elements of <typeparamref name="T"/> from <see cref="Pointer"/>
/// (a range of a runner's flat buffer, or of an executor's per-thread scratch). The array type of <see cref="BlockOps{T}"/>.
/// </summary>
public readonly unsafe struct Block<T> where T : unmanaged
{
    /// <summary>The first element.</summary>
    public readonly T* Pointer;
    /// <summary>The number of elements.</summary>
    public readonly int Length;

    /// <summary>The block of <paramref name="length"/> elements at <paramref name="pointer"/>.</summary>
    public Block(T* pointer, int length) { Pointer = pointer; Length = length; }

    /// <summary>The elements.</summary>
    public Span<T> Span => new(Pointer, Length);
}

/// <summary>
/// The per-element arithmetic of the fused CPU executor, each operation written once in its vector form and, next to
/// it, its scalar form with the same roundings: <see cref="BlockOps{T}"/> loops them over a block (the scalar form on
/// the tail), <see cref="LaneOps{T}"/> runs the vector form once per vector of a composed chain.
/// </summary>
/// <remarks>
/// Arithmetic follows TorchSharp's CPU kernels: a double scalar is rounded to <typeparamref name="T"/> first,
/// <c>add_(x, alpha)</c> and <c>addcmul_</c> fuse their multiply into the add, a maximum keeps NaN.
/// </remarks>
internal static class ElementMath<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>A double coefficient in <typeparamref name="T"/>'s precision.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T S(double s) => T.CreateChecked(s);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Fma(Vector256<T> a, Vector256<T> b, Vector256<T> c)
    {
        if (typeof(T) == typeof(float)) return Vector256.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
        return Vector256.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
    }

    /// <summary>y + w·x, fused.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> AddScaled(Vector256<T> y, Vector256<T> x, Vector256<T> w) => Fma(w, x, y);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T AddScaled(T y, T x, T w) => T.FusedMultiplyAdd(w, x, y);

    /// <summary>y + (w·x)·z, the product (w·x)·z fused into the sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> AddProduct(Vector256<T> y, Vector256<T> x, Vector256<T> z, Vector256<T> w) => Fma(w * x, z, y);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T AddProduct(T y, T x, T z, T w) => T.FusedMultiplyAdd(w * x, z, y);

    /// <summary>a·y + w·x: the product a·y rounded, then w·x fused into the sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> MulAdd(Vector256<T> y, Vector256<T> a, Vector256<T> x, Vector256<T> w) => Fma(w, x, y * a);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T MulAdd(T y, T a, T x, T w) => T.FusedMultiplyAdd(w, x, y * a);

    /// <summary>a·y + (w·x)·z: a·y rounded, then (w·x)·z fused into the sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> MulAddProduct(Vector256<T> y, Vector256<T> a, Vector256<T> x, Vector256<T> z, Vector256<T> w) => Fma(w * x, z, y * a);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T MulAddProduct(T y, T a, T x, T z, T w) => T.FusedMultiplyAdd(w * x, z, y * a);

    /// <summary>max(m, x), keeping m where it is NaN or greater; ties take x, as torch's clamp does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Max(Vector256<T> m, Vector256<T> x) => Vector256.ConditionalSelect(~Vector256.Equals(m, m) | Vector256.GreaterThan(m, x), m, x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Max(T m, T x) => T.IsNaN(m) || m > x ? m : x;

    /// <summary>max(x, lo), with NaN kept.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> ClampMin(Vector256<T> x, Vector256<T> lo) => Vector256.ConditionalSelect(Vector256.LessThan(x, lo), lo, x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T ClampMin(T x, T lo) => x < lo ? lo : x;

    /// <summary>sign(x): ±1, 0 at ±0, NaN kept.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Sign(Vector256<T> x)
    {
        var one = Vector256.Create(T.One); var zero = Vector256<T>.Zero;
        var s = (Vector256.GreaterThan(x, zero) & one) - (Vector256.LessThan(x, zero) & one);
        return Vector256.ConditionalSelect(Vector256.Equals(x, x), s, x);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Sign(T x) => T.IsNaN(x) ? x : x > T.Zero ? T.One : x < T.Zero ? -T.One : T.Zero;

    /// <summary>1 where x·y &gt; 0, else 0 (NaN disagrees).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Agree(Vector256<T> x, Vector256<T> y) => Vector256.GreaterThan(x * y, Vector256<T>.Zero) & Vector256.Create(T.One);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Agree(T x, T y) => x * y > T.Zero ? T.One : T.Zero;

    /// <summary>x / c + e (the quotient rounded, then the sum).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> DivAdd(Vector256<T> x, Vector256<T> c, Vector256<T> e) => x / c + e;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T DivAdd(T x, T c, T e) => x / c + e;
}

/// <summary>
/// <see cref="IArrayOps{TArray}"/> on blocks of native float32 or float64 memory, with 256-bit SIMD and a scalar
/// tail (<see cref="ElementMath{T}"/>): what the fused CPU executor runs a kernel with on a block's sub-vector tail,
/// and what the tests compare element for element with <see cref="ArrayBlockOps"/>. Each operation is one pass over a
/// block small enough to stay in the L1/L2 cache.
/// </summary>
/// <remarks>
/// <para>In float64 the results equal <see cref="TensorOps"/>' bit for bit except √, which the hardware rounds
/// correctly where torch's vectorised root may be 1 ulp off; in float32 they agree to a few ulps (torch's float
/// kernels group some products differently).</para>
/// <para>Every operation is compiled fully optimised at once (<see cref="MethodImplOptions.AggressiveOptimization"/>):
/// without it the first thousands of blocks run in the JIT's unoptimised first tier, at a third of the speed.</para>
/// </remarks>
/// <typeparam name="T">float or double.</typeparam>
public readonly unsafe struct BlockOps<T> : IArrayOps<Block<T>>, IReductionOps<Block<T>, double> where T : unmanaged, IFloatingPointIeee754<T>
{
    static int Width => Vector256<T>.Count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static T S(double s) => ElementMath<T>.S(s);

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> Copy(Block<T> into, Block<T> from)
    {
        if (into.Pointer != from.Pointer) Buffer.MemoryCopy(from.Pointer, into.Pointer, (long)into.Length * sizeof(T), (long)from.Length * sizeof(T));
        return into;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> Mul(Block<T> x, double s)
    {
        T c = S(s); var vc = Vector256.Create(c); T* p = x.Pointer; int i = 0, n = x.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(Vector256.Load(p + i) * vc, p + i);
        for (; i < n; i++) p[i] *= c;
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> Div(Block<T> x, double s)
    {
        T c = S(s); var vc = Vector256.Create(c); T* p = x.Pointer; int i = 0, n = x.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(Vector256.Load(p + i) / vc, p + i);
        for (; i < n; i++) p[i] /= c;
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> Add(Block<T> x, double s)
    {
        T c = S(s); var vc = Vector256.Create(c); T* p = x.Pointer; int i = 0, n = x.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(Vector256.Load(p + i) + vc, p + i);
        for (; i < n; i++) p[i] += c;
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> AddScaled(Block<T> y, Block<T> x, double w)
    {
        T c = S(w); var vc = Vector256.Create(c); T* py = y.Pointer, px = x.Pointer; int i = 0, n = y.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(ElementMath<T>.AddScaled(Vector256.Load(py + i), Vector256.Load(px + i), vc), py + i);
        for (; i < n; i++) py[i] = ElementMath<T>.AddScaled(py[i], px[i], c);
        return y;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> AddProduct(Block<T> y, Block<T> x, Block<T> z, double w)
    {
        T c = S(w); var vc = Vector256.Create(c); T* py = y.Pointer, px = x.Pointer, pz = z.Pointer; int i = 0, n = y.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(ElementMath<T>.AddProduct(Vector256.Load(py + i), Vector256.Load(px + i), Vector256.Load(pz + i), vc), py + i);
        for (; i < n; i++) py[i] = ElementMath<T>.AddProduct(py[i], px[i], pz[i], c);
        return y;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> MulBy(Block<T> x, Block<T> d)
    {
        T* px = x.Pointer, pd = d.Pointer; int i = 0, n = x.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(Vector256.Load(px + i) * Vector256.Load(pd + i), px + i);
        for (; i < n; i++) px[i] *= pd[i];
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> DivBy(Block<T> x, Block<T> d)
    {
        T* px = x.Pointer, pd = d.Pointer; int i = 0, n = x.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(Vector256.Load(px + i) / Vector256.Load(pd + i), px + i);
        for (; i < n; i++) px[i] /= pd[i];
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> Max(Block<T> m, Block<T> x)
    {
        T* pm = m.Pointer, px = x.Pointer; int i = 0, n = m.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(ElementMath<T>.Max(Vector256.Load(pm + i), Vector256.Load(px + i)), pm + i);
        for (; i < n; i++) pm[i] = ElementMath<T>.Max(pm[i], px[i]);
        return m;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> ClampMin(Block<T> x, double lo)
    {
        T c = S(lo); var vc = Vector256.Create(c); T* p = x.Pointer; int i = 0, n = x.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(ElementMath<T>.ClampMin(Vector256.Load(p + i), vc), p + i);
        for (; i < n; i++) p[i] = ElementMath<T>.ClampMin(p[i], c);
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> Sqrt(Block<T> x)
    {
        T* p = x.Pointer; int i = 0, n = x.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(Vector256.Sqrt(Vector256.Load(p + i)), p + i);
        for (; i < n; i++) p[i] = T.Sqrt(p[i]);
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> Sign(Block<T> x)
    {
        T* p = x.Pointer; int i = 0, n = x.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(ElementMath<T>.Sign(Vector256.Load(p + i)), p + i);
        for (; i < n; i++) p[i] = ElementMath<T>.Sign(p[i]);
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> Agree(Block<T> x, Block<T> y)
    {
        T* px = x.Pointer, py = y.Pointer; int i = 0, n = x.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(ElementMath<T>.Agree(Vector256.Load(px + i), Vector256.Load(py + i)), px + i);
        for (; i < n; i++) px[i] = ElementMath<T>.Agree(px[i], py[i]);
        return x;
    }

    // Compound operations in one pass, with the roundings of their sequences.

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> MulAdd(Block<T> y, double a, Block<T> x, double w)
    {
        if (a == 1) return AddScaled(y, x, w);
        T ca = S(a), cw = S(w); var va = Vector256.Create(ca); var vw = Vector256.Create(cw);
        T* py = y.Pointer, px = x.Pointer; int i = 0, n = y.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(ElementMath<T>.MulAdd(Vector256.Load(py + i), va, Vector256.Load(px + i), vw), py + i);
        for (; i < n; i++) py[i] = ElementMath<T>.MulAdd(py[i], ca, px[i], cw);
        return y;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> MulAddProduct(Block<T> y, double a, Block<T> x, Block<T> z, double w)
    {
        if (a == 1) return AddProduct(y, x, z, w);
        T ca = S(a), cw = S(w); var va = Vector256.Create(ca); var vw = Vector256.Create(cw);
        T* py = y.Pointer, px = x.Pointer, pz = z.Pointer; int i = 0, n = y.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(ElementMath<T>.MulAddProduct(Vector256.Load(py + i), va, Vector256.Load(px + i), Vector256.Load(pz + i), vw), py + i);
        for (; i < n; i++) py[i] = ElementMath<T>.MulAddProduct(py[i], ca, px[i], pz[i], cw);
        return y;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> SqrtOf(Block<T> into, Block<T> from)
    {
        T* pi = into.Pointer, pf = from.Pointer; int i = 0, n = into.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(Vector256.Sqrt(Vector256.Load(pf + i)), pi + i);
        for (; i < n; i++) pi[i] = T.Sqrt(pf[i]);
        return into;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> CopyDiv(Block<T> into, Block<T> from, double c)
    {
        T cc = S(c); var vc = Vector256.Create(cc);
        T* pi = into.Pointer, pf = from.Pointer; int i = 0, n = into.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(Vector256.Load(pf + i) / vc, pi + i);
        for (; i < n; i++) pi[i] = pf[i] / cc;
        return into;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Block<T> DivAdd(Block<T> x, double c, double e)
    {
        T cc = S(c), ce = S(e); var vc = Vector256.Create(cc); var ve = Vector256.Create(ce);
        T* p = x.Pointer; int i = 0, n = x.Length;
        for (; i <= n - Width; i += Width) Vector256.Store(ElementMath<T>.DivAdd(Vector256.Load(p + i), vc, ve), p + i);
        for (; i < n; i++) p[i] = ElementMath<T>.DivAdd(p[i], cc, ce);
        return x;
    }

    // Reductions of one block: float64 partial sums, SIMD over the block, lanes combined in a fixed order (the
    // executor adds block partials in block order).

    /// <inheritdoc />
    public double SumOfSquares(Block<T> x) => Partial(ReductionKind.SumOfSquares, x, x);

    /// <inheritdoc />
    public double Dot(Block<T> x, Block<T> y)
    {
        if (y.Length != x.Length) throw new ArgumentException($"a dot product needs blocks of the same length ({x.Length} and {y.Length})", nameof(y));
        return Partial(ReductionKind.Dot, x, y);
    }

    /// <inheritdoc />
    public double NonFiniteCount(Block<T> x) => Partial(ReductionKind.NonFiniteCount, x, x);

    /// <inheritdoc />
    public double NonZeroCount(Block<T> x) => Partial(ReductionKind.NonZeroCount, x, x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static double Partial(ReductionKind kind, Block<T> x, Block<T> y) => typeof(T) == typeof(float)
        ? BlockReductions.Partial(kind, (float*)x.Pointer, (float*)y.Pointer, x.Length)
        : BlockReductions.Partial(kind, (double*)x.Pointer, (double*)y.Pointer, x.Length);

    /// <inheritdoc />
    public Block<T> ScaleBy(Block<T> x, double s) => Mul(x, s);

    /// <inheritdoc />
    public Block<T> DivideBy(Block<T> x, double s) => Div(x, s);
}

/// <summary>
/// The SIMD bodies of <see cref="BlockOps{T}"/>' reductions: the partial sums of one block, accumulated in float64 with 256-bit SIMD
/// (float32 lanes widened first) and combined in a fixed lane order, so a block's partial never depends on the thread
/// that computes it.
/// </summary>
internal static unsafe class BlockReductions
{
    /// <summary>The block's partial of <paramref name="kind"/> over <paramref name="x"/> (and <paramref name="y"/> for a dot).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Partial(ReductionKind kind, float* x, float* y, int n)
    {
        var acc0 = Vector256<double>.Zero; var acc1 = Vector256<double>.Zero;
        int i = 0;
        if (kind == ReductionKind.NonFiniteCount)
        {
            long count = 0;
            for (; i <= n - 8; i += 8)
            {
                var v = Vector256.Load(x + i);
                count += BitOperations.PopCount(~Vector256.Equals(v - v, Vector256<float>.Zero).ExtractMostSignificantBits() & 0xFFu);
            }
            for (; i < n; i++) if (!float.IsFinite(x[i])) count++;
            return count;
        }
        if (kind == ReductionKind.NonZeroCount)
        {
            long count = 0;
            for (; i <= n - 8; i += 8)
                count += BitOperations.PopCount(~Vector256.Equals(Vector256.Load(x + i), Vector256<float>.Zero).ExtractMostSignificantBits() & 0xFFu);
            for (; i < n; i++) if (x[i] != 0) count++;
            return count;
        }
        for (; i <= n - 8; i += 8)
        {
            var (lo, hi) = Vector256.Widen(Vector256.Load(x + i));
            if (kind == ReductionKind.Dot)
            {
                var (ylo, yhi) = Vector256.Widen(Vector256.Load(y + i));
                acc0 = Vector256.FusedMultiplyAdd(lo, ylo, acc0); acc1 = Vector256.FusedMultiplyAdd(hi, yhi, acc1);
            }
            else { acc0 = Vector256.FusedMultiplyAdd(lo, lo, acc0); acc1 = Vector256.FusedMultiplyAdd(hi, hi, acc1); }
        }
        double total = Lanes(acc0 + acc1);
        for (; i < n; i++) total += kind == ReductionKind.Dot ? (double)x[i] * y[i] : (double)x[i] * x[i];
        return total;
    }

    /// <inheritdoc cref="Partial(ReductionKind, float*, float*, int)"/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Partial(ReductionKind kind, double* x, double* y, int n)
    {
        var acc = Vector256<double>.Zero;
        int i = 0;
        if (kind == ReductionKind.NonFiniteCount)
        {
            long count = 0;
            for (; i <= n - 4; i += 4)
            {
                var v = Vector256.Load(x + i);
                count += BitOperations.PopCount(~Vector256.Equals(v - v, Vector256<double>.Zero).ExtractMostSignificantBits() & 0xFu);
            }
            for (; i < n; i++) if (!double.IsFinite(x[i])) count++;
            return count;
        }
        if (kind == ReductionKind.NonZeroCount)
        {
            long count = 0;
            for (; i <= n - 4; i += 4)
                count += BitOperations.PopCount(~Vector256.Equals(Vector256.Load(x + i), Vector256<double>.Zero).ExtractMostSignificantBits() & 0xFu);
            for (; i < n; i++) if (x[i] != 0) count++;
            return count;
        }
        for (; i <= n - 4; i += 4)
        {
            var v = Vector256.Load(x + i);
            acc = Vector256.FusedMultiplyAdd(v, kind == ReductionKind.Dot ? Vector256.Load(y + i) : v, acc);
        }
        double total = Lanes(acc);
        for (; i < n; i++) total += kind == ReductionKind.Dot ? x[i] * y[i] : x[i] * x[i];
        return total;
    }

    /// <summary>The four lanes added in a fixed order.</summary>
    static double Lanes(Vector256<double> v) => (v.GetElement(0) + v.GetElement(1)) + (v.GetElement(2) + v.GetElement(3));
}
