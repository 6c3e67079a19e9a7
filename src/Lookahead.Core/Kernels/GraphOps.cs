using System;
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
