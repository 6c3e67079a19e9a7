using System;

namespace Lookahead.Kernels;

/// <summary>
/// Finds which of a kernel's arrays it writes, by running the kernel once on array indices instead of arrays:
/// every operation writes its first argument, so each call marks that index. The fused executor asks it once per
/// recorded stage, to know which 16-bit arrays of a chunk must be rounded and stored back after the chunk has run.
/// </summary>
internal readonly unsafe struct WriteProbe : IArrayOps<int>
{
    readonly ulong* _written;

    WriteProbe(ulong* written) { _written = written; }

    /// <summary>The bit set of the arrays (of <paramref name="arity"/>, at most 64) that <paramref name="kernel"/> writes.</summary>
    public static ulong Writes<TKernel>(in TKernel kernel, int arity) where TKernel : struct, IKernel
    {
        if (arity > 64) throw new InvalidOperationException($"a kernel of {arity} arrays: at most 64 are supported");
        ulong written = 0;
        Span<int> indices = stackalloc int[arity];
        for (int k = 0; k < arity; k++) indices[k] = k;
        kernel.Run<int, WriteProbe>(new WriteProbe(&written), indices);
        return written;
    }

    int W(int x) { *_written |= 1UL << x; return x; }

    /// <inheritdoc />
    public int Copy(int into, int from) => W(into);
    /// <inheritdoc />
    public int Mul(int x, double s) => W(x);
    /// <inheritdoc />
    public int Div(int x, double s) => W(x);
    /// <inheritdoc />
    public int Add(int x, double c) => W(x);
    /// <inheritdoc />
    public int AddScaled(int y, int x, double w) => W(y);
    /// <inheritdoc />
    public int AddProduct(int y, int x, int z, double w) => W(y);
    /// <inheritdoc />
    public int MulBy(int x, int d) => W(x);
    /// <inheritdoc />
    public int DivBy(int x, int d) => W(x);
    /// <inheritdoc />
    public int Max(int m, int x) => W(m);
    /// <inheritdoc />
    public int ClampMin(int x, double lo) => W(x);
    /// <inheritdoc />
    public int Sqrt(int x) => W(x);
    /// <inheritdoc />
    public int Sign(int x) => W(x);
    /// <inheritdoc />
    public int Agree(int x, int y) => W(x);
    /// <inheritdoc />
    public int MulAdd(int y, double a, int x, double w) => W(y);
    /// <inheritdoc />
    public int MulAddProduct(int y, double a, int x, int z, double w) => W(y);
    /// <inheritdoc />
    public int SqrtOf(int into, int from) => W(into);
    /// <inheritdoc />
    public int CopyDiv(int into, int from, double c) => W(into);
    /// <inheritdoc />
    public int DivAdd(int x, double c, double e) => W(x);
}
