using System;
using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Kernels;

/// <summary>
/// <see cref="IArrayOps{TArray}"/> on TorchSharp tensors with autograd recording: the executor of the differentiable
/// path (<see cref="Lookahead.Differentiable"/>). It runs the primitives' own kernels, unchanged, so the differentiable
/// step is the pure step's arithmetic, not a second copy of it.
/// </summary>
/// <remarks>
/// <para>A kernel writes its results into its first argument, and the tensor keeps its identity (the state and the
/// updates trees hold it). Autograd allows that for a tensor inside a graph, but refuses at backward time to use a
/// value that an operation saved and a later in-place write changed. So each operation here either needs no saved
/// value (a scale, a shift, a weighted add, a copy: done in place, as <see cref="TensorOps"/> does), or computes its
/// result out of place from fresh copies of its operands, which nothing writes again, and copies the result into the
/// first argument. The copies are what the graph saves: the memory of a recorded step is that of the values its
/// backward needs, as for any out-of-place graph.</para>
/// <para>The numbers are those of <see cref="TensorOps"/> (the same torch operations, the same order); the tests
/// compare the two paths within 1e-12 + 1e-10·|b| in float64.</para>
/// <para>Derivatives taken at non-smooth points: <see cref="Max"/> (AMSGrad's running maximum) passes the gradient to
/// the operand it selected (to the new value on a tie, as torch's <c>clamp</c>); <see cref="ClampMin"/> passes none
/// where it clamps; <see cref="Sqrt"/> of 0 has an infinite derivative (an Adam second moment that is exactly zero with
/// ε = 0 gives NaN hypergradients, as in torch). <see cref="Sign"/> and <see cref="Agree"/> have derivative zero; the
/// transforms built on them are refused by <see cref="Lookahead.Differentiable"/> rather than silently giving zero.</para>
/// </remarks>
internal readonly struct GraphOps : IArrayOps<Tensor>
{
    static Tensor Into(Tensor x, Tensor result)
    {
        x.copy_(result);
        result.Dispose();
        return x;
    }

    /// <inheritdoc />
    public Tensor Copy(Tensor into, Tensor from) => into.copy_(from);

    // With a tensor coefficient s (a hyperparameter in the graph): its gradient needs the array's value, so the product
    // is taken from a copy that nothing writes again.

    /// <summary>x ← s·x for a 0-d tensor s.</summary>
    internal static Tensor Mul(Tensor x, Tensor s)
    {
        using var xc = x.clone();
        return Into(x, xc.mul(s));
    }

    /// <summary>x ← x / s for a 0-d tensor s.</summary>
    internal static Tensor Div(Tensor x, Tensor s)
    {
        using var xc = x.clone();
        return Into(x, xc.div(s));
    }

    /// <summary>y ← y + w·x for a 0-d tensor w.</summary>
    internal static Tensor AddScaled(Tensor y, Tensor x, Tensor w)
    {
        using var xc = x.clone();
        using var p = xc.mul(w);
        return y.add_(p);
    }

    /// <summary>y ← y + (w·x)·z for a 0-d tensor w.</summary>
    internal static Tensor AddProduct(Tensor y, Tensor x, Tensor z, Tensor w)
    {
        using var xc = x.clone();
        using var zc = ReferenceEquals(x, z) ? null : z.clone();
        using var wx = xc.mul(w);
        using var one = 1.0.ToScalar();
        return y.addcmul_(wx, zc ?? xc, value: one);
    }

    /// <inheritdoc />
    public Tensor Mul(Tensor x, double s) { using var c = s.ToScalar(); return x.mul_(c); }

    /// <inheritdoc />
    public Tensor Div(Tensor x, double s) { using var c = s.ToScalar(); return x.div_(c); }

    /// <inheritdoc />
    public Tensor Add(Tensor x, double c) { using var s = c.ToScalar(); return x.add_(s); }

    /// <inheritdoc />
    public Tensor AddScaled(Tensor y, Tensor x, double w) { using var s = w.ToScalar(); return y.add_(x, alpha: s); }

    /// <inheritdoc />
    public Tensor AddProduct(Tensor y, Tensor x, Tensor z, double w)
    {
        using var s = w.ToScalar();
        using var xc = x.clone();
        using var zc = ReferenceEquals(x, z) ? null : z.clone();
        return y.addcmul_(xc, zc ?? xc, value: s);
    }

    /// <inheritdoc />
    public Tensor MulBy(Tensor x, Tensor d)
    {
        using var xc = x.clone();
        using var dc = d.clone();
        return Into(x, xc.mul(dc));
    }

    /// <inheritdoc />
    public Tensor DivBy(Tensor x, Tensor d)
    {
        using var xc = x.clone();
        using var dc = d.clone();
        return Into(x, xc.div(dc));
    }

    /// <inheritdoc />
    public Tensor Max(Tensor m, Tensor x)
    {
        using var mc = m.clone();
        using var xc = x.clone();
        return Into(m, mc.clamp(xc, null!));
    }

    /// <inheritdoc />
    public Tensor ClampMin(Tensor x, double lo)
    {
        using var s = lo.ToScalar();
        using var xc = x.clone();
        return Into(x, xc.clamp_min(s));
    }

    /// <inheritdoc />
    public Tensor Sqrt(Tensor x)
    {
        using var xc = x.clone();
        return Into(x, xc.sqrt());
    }

    /// <inheritdoc />
    public Tensor Sign(Tensor x) => x.sign_();

    /// <inheritdoc />
    public Tensor Agree(Tensor x, Tensor y)
    {
        using var zero = 0.0.ToScalar();
        using var product = x.mul(y);
        using var agree = product.gt(zero);
        return x.copy_(agree);
    }

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
}

/// <summary>Whether this thread's elementwise phases record autograd graphs (see <see cref="GraphOps"/>).</summary>
internal static class Graph
{
    [ThreadStatic] static int _depth;

    /// <summary>True inside <see cref="Record"/>.</summary>
    public static bool Active => _depth > 0;

    /// <summary>Until the returned scope is disposed, pure updates on this thread run with autograd on, through <see cref="GraphOps"/>.</summary>
    public static Scope Record() { _depth++; return new Scope(enable_grad()); }

    internal readonly struct Scope(IDisposable grad) : IDisposable
    {
        public void Dispose() { grad.Dispose(); _depth--; }
    }
}

/// <summary>
/// The array operations with a hyperparameter (<see cref="Hyper"/>) as the coefficient: on every executor the
/// operation of <see cref="IArrayOps{TArray}"/> with the value, except under <see cref="GraphOps"/> with a tensor
/// hyperparameter, where the coefficient is the tensor, so that its gradient is recorded. A kernel whose coefficients
/// come from hyperparameters calls these instead of the <c>ops</c> methods; its arithmetic is still written once.
/// </summary>
public static class Coefficients
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static bool Recorded<TOps>(in Hyper h) => typeof(TOps) == typeof(GraphOps) && h.Tensor is not null;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Tensor AsTensor<TArray>(TArray x) => (Tensor)(object)x!;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static TArray AsArray<TArray>(Tensor x) => (TArray)(object)x;

    /// <summary>x ← s·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray Mul<TArray, TOps>(TOps ops, TArray x, Hyper s) where TOps : struct, IArrayOps<TArray> =>
        Recorded<TOps>(s) ? AsArray<TArray>(GraphOps.Mul(AsTensor(x), s.Tensor!)) : ops.Mul(x, s.Value);

    /// <summary>x ← x / s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray Div<TArray, TOps>(TOps ops, TArray x, Hyper s) where TOps : struct, IArrayOps<TArray> =>
        Recorded<TOps>(s) ? AsArray<TArray>(GraphOps.Div(AsTensor(x), s.Tensor!)) : ops.Div(x, s.Value);

    /// <summary>x ← x + c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray Add<TArray, TOps>(TOps ops, TArray x, Hyper c) where TOps : struct, IArrayOps<TArray> =>
        Recorded<TOps>(c) ? AsArray<TArray>(AsTensor(x).add_(c.Tensor!)) : ops.Add(x, c.Value);

    /// <summary>y ← y + w·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray AddScaled<TArray, TOps>(TOps ops, TArray y, TArray x, Hyper w) where TOps : struct, IArrayOps<TArray> =>
        Recorded<TOps>(w) ? AsArray<TArray>(GraphOps.AddScaled(AsTensor(y), AsTensor(x), w.Tensor!)) : ops.AddScaled(y, x, w.Value);

    /// <summary>y ← y + (w·x)·z.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray AddProduct<TArray, TOps>(TOps ops, TArray y, TArray x, TArray z, Hyper w) where TOps : struct, IArrayOps<TArray> =>
        Recorded<TOps>(w) ? AsArray<TArray>(GraphOps.AddProduct(AsTensor(y), AsTensor(x), AsTensor(z), w.Tensor!)) : ops.AddProduct(y, x, z, w.Value);

    /// <summary>y ← a·y + w·x (<see cref="Mul{TArray, TOps}"/> skipped for a plain a = 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray MulAdd<TArray, TOps>(TOps ops, TArray y, Hyper a, TArray x, Hyper w) where TOps : struct, IArrayOps<TArray> =>
        Recorded<TOps>(a) || Recorded<TOps>(w) ? AddScaled(ops, a.Value == 1 && a.Tensor is null ? y : Mul(ops, y, a), x, w) : ops.MulAdd(y, a.Value, x, w.Value);

    /// <summary>y ← a·y + (w·x)·z (<see cref="Mul{TArray, TOps}"/> skipped for a plain a = 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray MulAddProduct<TArray, TOps>(TOps ops, TArray y, Hyper a, TArray x, TArray z, Hyper w) where TOps : struct, IArrayOps<TArray> =>
        Recorded<TOps>(a) || Recorded<TOps>(w) ? AddProduct(ops, a.Value == 1 && a.Tensor is null ? y : Mul(ops, y, a), x, z, w) : ops.MulAddProduct(y, a.Value, x, z, w.Value);

    /// <summary>into ← from / c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray CopyDiv<TArray, TOps>(TOps ops, TArray into, TArray from, Hyper c) where TOps : struct, IArrayOps<TArray> =>
        Recorded<TOps>(c) ? Div(ops, ops.Copy(into, from), c) : ops.CopyDiv(into, from, c.Value);

    /// <summary>x ← x / c + e.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray DivAdd<TArray, TOps>(TOps ops, TArray x, Hyper c, Hyper e) where TOps : struct, IArrayOps<TArray> =>
        Recorded<TOps>(c) || Recorded<TOps>(e) ? Add(ops, Div(ops, x, c), e) : ops.DivAdd(x, c.Value, e.Value);
}
