using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Kernels;

/// <summary>
/// The array operations that Lookahead's elementwise kernels are written against, so that one kernel (one
/// formula) runs on more than one executor: <see cref="TensorOps"/> runs it on TorchSharp tensors of any
/// device (the pure path and the runner), <see cref="ArrayBlockOps"/> on blocks of a host array (the shape a
/// fused CPU executor needs: the same kernel applied block by block over flat buffers).
/// </summary>
/// <remarks>
/// <para>Every operation works in place on its first argument and returns it, so a kernel reads like the
/// maths: <c>ops.AddScaled(ops.Mul(m, β), u, 1 − δ)</c> is m ← β·m + (1−δ)·u. Scalar coefficients are
/// doubles; an executor applies them in its array's precision the way TorchSharp does (a double scalar
/// against a float tensor rounds the product to float).</para>
/// <para>Implementations are structs so that a generic kernel <c>K&lt;TArray, TOps&gt;</c> is specialised per
/// executor by the JIT, with no interface dispatch in a fused loop.</para>
/// </remarks>
/// <typeparam name="TArray">The executor's array type.</typeparam>
public interface IArrayOps<TArray>
{
    /// <summary>into ← from.</summary>
    TArray Copy(TArray into, TArray from);
    /// <summary>x ← s·x.</summary>
    TArray Mul(TArray x, double s);
    /// <summary>x ← x / s.</summary>
    TArray Div(TArray x, double s);
    /// <summary>x ← x + c.</summary>
    TArray Add(TArray x, double c);
    /// <summary>y ← y + w·x.</summary>
    TArray AddScaled(TArray y, TArray x, double w);
    /// <summary>y ← y + (w·x)·z (grouped as torch's <c>addcmul</c> groups it).</summary>
    TArray AddProduct(TArray y, TArray x, TArray z, double w);
    /// <summary>x ← x·d (elementwise).</summary>
    TArray MulBy(TArray x, TArray d);
    /// <summary>x ← x / d (elementwise).</summary>
    TArray DivBy(TArray x, TArray d);
    /// <summary>m ← max(m, x) (elementwise).</summary>
    TArray Max(TArray m, TArray x);
    /// <summary>x ← max(x, lo).</summary>
    TArray ClampMin(TArray x, double lo);
    /// <summary>x ← √x.</summary>
    TArray Sqrt(TArray x);
    /// <summary>x ← sign(x) (0 at 0).</summary>
    TArray Sign(TArray x);
    /// <summary>x ← 1 where x·y &gt; 0, else 0 (where the two agree in sign; NaN disagrees), as torch's <c>x.mul_(y).gt_(0)</c>.</summary>
    TArray Agree(TArray x, TArray y);

    // Compound operations: each is defined as the sequence of the operations above that its summary names, with
    // the same roundings, so that an executor can run it in one pass instead of several.

    /// <summary>y ← a·y + w·x: <see cref="Mul"/> (skipped when a = 1), then <see cref="AddScaled"/>.</summary>
    TArray MulAdd(TArray y, double a, TArray x, double w);
    /// <summary>y ← a·y + (w·x)·z: <see cref="Mul"/> (skipped when a = 1), then <see cref="AddProduct"/>.</summary>
    TArray MulAddProduct(TArray y, double a, TArray x, TArray z, double w);
    /// <summary>into ← √from: <see cref="Copy"/>, then <see cref="Sqrt"/>.</summary>
    TArray SqrtOf(TArray into, TArray from);
    /// <summary>into ← from / c: <see cref="Copy"/>, then <see cref="Div"/>.</summary>
    TArray CopyDiv(TArray into, TArray from, double c);
    /// <summary>x ← x / c + e: <see cref="Div"/>, then <see cref="Add"/>.</summary>
    TArray DivAdd(TArray x, double c, double e);
}

/// <summary>
/// <see cref="IArrayOps{TArray}"/> on TorchSharp tensors, in place, on the tensors' own device. Every scalar is an
/// explicit <see cref="Scalar"/> disposed when the native call returns (see <see cref="Moments"/>).
/// </summary>
public readonly struct TensorOps : IArrayOps<Tensor>, IReductionOps<Tensor, Tensor>, IScalarOps<Tensor>
{
    /// <inheritdoc />
    public Tensor Copy(Tensor into, Tensor from) => into.copy_(from);

    /// <inheritdoc />
    public Tensor Mul(Tensor x, double s) { using var c = s.ToScalar(); return x.mul_(c); }

    /// <inheritdoc />
    public Tensor Div(Tensor x, double s) { using var c = s.ToScalar(); return x.div_(c); }

    /// <inheritdoc />
    public Tensor Add(Tensor x, double c) { using var s = c.ToScalar(); return x.add_(s); }

    /// <inheritdoc />
    public Tensor AddScaled(Tensor y, Tensor x, double w) { using var s = w.ToScalar(); return y.add_(x, alpha: s); }

    /// <inheritdoc />
    public Tensor AddProduct(Tensor y, Tensor x, Tensor z, double w) { using var s = w.ToScalar(); return y.addcmul_(x, z, value: s); }

    /// <inheritdoc />
    public Tensor MulBy(Tensor x, Tensor d) => x.mul_(d);

    /// <inheritdoc />
    public Tensor DivBy(Tensor x, Tensor d) => x.div_(d);

    /// <inheritdoc />
    public Tensor Max(Tensor m, Tensor x) => m.clamp_(x, null!);

    /// <inheritdoc />
    public Tensor ClampMin(Tensor x, double lo) { using var s = lo.ToScalar(); return x.clamp_min_(s); }

    /// <inheritdoc />
    public Tensor Sqrt(Tensor x) => x.sqrt_();

    /// <inheritdoc />
    public Tensor Sign(Tensor x) => x.sign_();

    /// <inheritdoc />
    public Tensor Agree(Tensor x, Tensor y) { using var zero = 0.0.ToScalar(); return x.mul_(y).gt_(zero); }

    /// <inheritdoc />
    public Tensor MulAdd(Tensor y, double a, Tensor x, double w) => AddScaled(a == 1 ? y : Mul(y, a), x, w);

    /// <inheritdoc />
    public Tensor MulAddProduct(Tensor y, double a, Tensor x, Tensor z, double w) => AddProduct(a == 1 ? y : Mul(y, a), x, z, w);

    /// <inheritdoc />
    public Tensor SqrtOf(Tensor into, Tensor from) => Sqrt(Copy(into, from));

    /// <inheritdoc />
    public Tensor CopyDiv(Tensor into, Tensor from, double c) => Div(Copy(into, from), c);

    /// <inheritdoc />
    public Tensor DivAdd(Tensor x, double c, double e) => Add(Div(x, c), e);

    // Reductions: 0-d float64 tensors on the array's device (a float64 copy of a lower-precision array while it is summed).

    /// <inheritdoc />
    public Tensor SumOfSquares(Tensor x)
    {
        if (x.dtype == ScalarType.Float64) return x.square().sum();
        using var wide = x.to(ScalarType.Float64);
        return wide.mul_(wide).sum();
    }

    /// <inheritdoc />
    public Tensor Dot(Tensor x, Tensor y)
    {
        using var wx = x.to(ScalarType.Float64);
        using var wy = y.to(ScalarType.Float64);
        using var a = wx.flatten();
        using var b = wy.flatten();
        return a.dot(b);
    }

    /// <inheritdoc />
    public Tensor NonFiniteCount(Tensor x)
    {
        using var finite = isfinite(x);
        using var bad = finite.logical_not_();
        return bad.sum(ScalarType.Float64);
    }

    /// <inheritdoc />
    public Tensor NonZeroCount(Tensor x)
    {
        using var zero = 0.0.ToScalar();
        using var nonZero = x.ne(zero);
        return nonZero.sum(ScalarType.Float64);
    }

    /// <inheritdoc />
    public Tensor ScaleBy(Tensor x, Tensor s)
    {
        using var c = s.to(x.dtype, x.device);
        return x.mul_(c);
    }

    /// <inheritdoc />
    public Tensor DivideBy(Tensor x, Tensor s)
    {
        using var c = s.to(x.dtype, x.device);
        return x.div_(c);
    }

    // Scalar arithmetic on 0-d tensors (new tensors; a dispose scope around the step frees them).

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.Constant(Tensor like, double c) => full(Array.Empty<long>(), c, ScalarType.Float64, like.device);

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.Add(Tensor a, Tensor b) => a.add(b);

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.Plus(Tensor a, double c) { using var s = c.ToScalar(); return a.add(s); }

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.Sub(Tensor a, Tensor b) => a.sub(b);

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.Times(Tensor a, double c) { using var s = c.ToScalar(); return a.mul(s); }

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.Mul(Tensor a, Tensor b) => a.mul(b);

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.Div(Tensor a, Tensor b) => a.div(b);

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.Over(Tensor a, double c) { using var s = c.ToScalar(); return a.div(s); }

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.Sqrt(Tensor a) => a.sqrt();

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.Min(Tensor a, double c) { using var s = c.ToScalar(); return a.clamp_max(s); }

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.Max(Tensor a, double c) { using var s = c.ToScalar(); return a.clamp_min(s); }

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.IfLess(Tensor a, Tensor b, Tensor ifLess, Tensor otherwise) { using var lt = a.lt(b); return where(lt, ifLess, otherwise); }

    /// <inheritdoc />
    Tensor IScalarOps<Tensor>.IfPositive(Tensor a, Tensor ifPositive, Tensor otherwise)
    {
        using var zero = 0.0.ToScalar();
        using var gt = a.gt(zero);
        return where(gt, ifPositive, otherwise);
    }
}

/// <summary>A block of a host float64 array: the array type of <see cref="ArrayBlockOps"/>.</summary>
/// <param name="Array">The backing array.</param>
/// <param name="Offset">The first element of the block.</param>
/// <param name="Length">Its length.</param>
public readonly record struct ArrayBlock(double[] Array, int Offset, int Length)
{
    /// <summary>The whole of <paramref name="array"/>.</summary>
    public static ArrayBlock Of(double[] array) => new(array, 0, array.Length);

    /// <summary>The block's elements.</summary>
    public Span<double> Span => Array.AsSpan(Offset, Length);
}

/// <summary>
/// <see cref="IArrayOps{TArray}"/> over blocks of host float64 arrays: plain loops with IEEE double arithmetic, the
/// same operations in the same order as <see cref="TensorOps"/> on a float64 tensor on the CPU (including where
/// torch fuses a multiply into an add), so the results are bit-identical; the one exception is <see cref="Sqrt(ArrayBlock)"/>,
/// which torch computes with a vectorised approximation that can differ from the correctly rounded root by 1 ulp.
/// It shows (and the tests prove) that the kernels do not depend on TorchSharp; a fused CPU executor runs them this
/// way, block by block.
/// </summary>
public readonly struct ArrayBlockOps : IArrayOps<ArrayBlock>, IReductionOps<ArrayBlock, double>, IScalarOps<double>
{
    /// <inheritdoc />
    public ArrayBlock Copy(ArrayBlock into, ArrayBlock from) { from.Span.CopyTo(into.Span); return into; }

    /// <inheritdoc />
    public ArrayBlock Mul(ArrayBlock x, double s) { foreach (ref var v in x.Span) v *= s; return x; }

    /// <inheritdoc />
    public ArrayBlock Div(ArrayBlock x, double s) { foreach (ref var v in x.Span) v /= s; return x; }

    /// <inheritdoc />
    public ArrayBlock Add(ArrayBlock x, double c) { foreach (ref var v in x.Span) v += c; return x; }

    /// <inheritdoc />
    public ArrayBlock AddScaled(ArrayBlock y, ArrayBlock x, double w)
    {
        Span<double> ys = y.Span, xs = x.Span;
        for (int i = 0; i < ys.Length; i++) ys[i] = Math.FusedMultiplyAdd(w, xs[i], ys[i]);   // torch's CPU add with alpha fuses it
        return y;
    }

    /// <inheritdoc />
    public ArrayBlock AddProduct(ArrayBlock y, ArrayBlock x, ArrayBlock z, double w)
    {
        Span<double> ys = y.Span, xs = x.Span, zs = z.Span;
        for (int i = 0; i < ys.Length; i++) ys[i] = Math.FusedMultiplyAdd(w * xs[i], zs[i], ys[i]);   // (w·x)·z fused into the sum, as torch's CPU addcmul
        return y;
    }

    /// <inheritdoc />
    public ArrayBlock MulBy(ArrayBlock x, ArrayBlock d)
    {
        Span<double> xs = x.Span, ds = d.Span;
        for (int i = 0; i < xs.Length; i++) xs[i] *= ds[i];
        return x;
    }

    /// <inheritdoc />
    public ArrayBlock DivBy(ArrayBlock x, ArrayBlock d)
    {
        Span<double> xs = x.Span, ds = d.Span;
        for (int i = 0; i < xs.Length; i++) xs[i] /= ds[i];
        return x;
    }

    /// <inheritdoc />
    public ArrayBlock Max(ArrayBlock m, ArrayBlock x)
    {
        Span<double> ms = m.Span, xs = x.Span;
        for (int i = 0; i < ms.Length; i++) if (!(ms[i] > xs[i]) || double.IsNaN(ms[i])) ms[i] = double.IsNaN(ms[i]) ? ms[i] : xs[i];   // ties take x, as torch's clamp does
        return m;
    }

    /// <inheritdoc />
    public ArrayBlock ClampMin(ArrayBlock x, double lo) { foreach (ref var v in x.Span) if (v < lo) v = lo; return x; }

    /// <inheritdoc />
    public ArrayBlock Sqrt(ArrayBlock x) { foreach (ref var v in x.Span) v = Math.Sqrt(v); return x; }

    /// <inheritdoc />
    public ArrayBlock Sign(ArrayBlock x) { foreach (ref var v in x.Span) v = double.IsNaN(v) ? v : Math.Sign(v); return x; }

    /// <inheritdoc />
    public ArrayBlock Agree(ArrayBlock x, ArrayBlock y)
    {
        Span<double> xs = x.Span, ys = y.Span;
        for (int i = 0; i < xs.Length; i++) xs[i] = xs[i] * ys[i] > 0 ? 1 : 0;
        return x;
    }

    /// <inheritdoc />
    public ArrayBlock MulAdd(ArrayBlock y, double a, ArrayBlock x, double w) => AddScaled(a == 1 ? y : Mul(y, a), x, w);

    /// <inheritdoc />
    public ArrayBlock MulAddProduct(ArrayBlock y, double a, ArrayBlock x, ArrayBlock z, double w) => AddProduct(a == 1 ? y : Mul(y, a), x, z, w);

    /// <inheritdoc />
    public ArrayBlock SqrtOf(ArrayBlock into, ArrayBlock from) => Sqrt(Copy(into, from));

    /// <inheritdoc />
    public ArrayBlock CopyDiv(ArrayBlock into, ArrayBlock from, double c) => Div(Copy(into, from), c);

    /// <inheritdoc />
    public ArrayBlock DivAdd(ArrayBlock x, double c, double e) => Add(Div(x, c), e);
    // Reductions: float64 sums in index order over the block (an executor adds block partials in block order).

    /// <inheritdoc />
    public double SumOfSquares(ArrayBlock x) { double s = 0; foreach (var v in x.Span) s += v * v; return s; }

    /// <inheritdoc />
    public double Dot(ArrayBlock x, ArrayBlock y)
    {
        Span<double> xs = x.Span, ys = y.Span;
        double s = 0;
        for (int i = 0; i < xs.Length; i++) s += xs[i] * ys[i];
        return s;
    }

    /// <inheritdoc />
    public double NonFiniteCount(ArrayBlock x) { double n = 0; foreach (var v in x.Span) if (!double.IsFinite(v)) n++; return n; }

    /// <inheritdoc />
    public double NonZeroCount(ArrayBlock x) { double n = 0; foreach (var v in x.Span) if (v != 0) n++; return n; }

    /// <inheritdoc />
    public ArrayBlock ScaleBy(ArrayBlock x, double s) => Mul(x, s);

    /// <inheritdoc />
    public ArrayBlock DivideBy(ArrayBlock x, double s) => Div(x, s);

    // Scalar arithmetic on doubles.

    /// <inheritdoc />
    public double Constant(double like, double c) => c;

    /// <inheritdoc />
    public double Add(double a, double b) => a + b;

    /// <inheritdoc />
    public double Plus(double a, double c) => a + c;

    /// <inheritdoc />
    public double Sub(double a, double b) => a - b;

    /// <inheritdoc />
    public double Mul(double a, double b) => a * b;

    /// <inheritdoc />
    public double Times(double a, double c) => c * a;

    /// <inheritdoc />
    public double Div(double a, double b) => a / b;

    /// <inheritdoc />
    public double Over(double a, double c) => a / c;

    /// <inheritdoc />
    public double Sqrt(double a) => Math.Sqrt(a);

    /// <inheritdoc />
    public double Min(double a, double c) => a > c ? c : a;   // as torch's clamp: NaN and ties keep a

    /// <inheritdoc />
    public double Max(double a, double c) => a < c ? c : a;

    /// <inheritdoc />
    public double IfLess(double a, double b, double ifLess, double otherwise) => a < b ? ifLess : otherwise;

    /// <inheritdoc />
    public double IfPositive(double a, double ifPositive, double otherwise) => a > 0 ? ifPositive : otherwise;
}
