using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Lookahead.Kernels;

/// <summary>
/// An array of native <typeparamref name="T"/> seen one vector at a time: the array type of <see cref="LaneOps{T}"/>.
/// It holds the array's first element; the operations carry which vector of it they touch.
/// </summary>
public readonly unsafe struct Lane<T> where T : unmanaged
{
    /// <summary>The array's first element (a chunk of a runner's flat buffer, or of an executor's per-thread scratch).</summary>
    public readonly T* Pointer;

    /// <summary>The array starting at <paramref name="pointer"/>.</summary>
    public Lane(T* pointer) { Pointer = pointer; }
}

/// <summary>
/// <see cref="IArrayOps{TArray}"/> on <see cref="Unroll"/> consecutive 256-bit vectors of each <see cref="Lane{T}"/>: the
/// elements [<see cref="Offset"/>, <see cref="Offset"/> + <see cref="Elements"/>). The fused CPU executor runs a
/// whole recorded chain of kernels with these operations, four vectors after four, in one compiled loop (see
/// <see cref="FusedExecutor"/>): a value stays in the L1 cache (and often in a register) from one kernel to the next
/// instead of making a pass over a block per operation.
/// </summary>
/// <remarks>
/// The arithmetic is <see cref="ElementMath{T}"/>'s vector form, the one <see cref="BlockOps{T}"/> runs, so a kernel
/// gives the same bits through either.
/// </remarks>
/// <typeparam name="T">float or double.</typeparam>
public readonly unsafe struct LaneOps<T> : IArrayOps<Lane<T>> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>The first element of the vector these operations touch, counted from each lane's start.</summary>
    public readonly nint Offset;

    /// <summary>Operations on the vector at <paramref name="offset"/> (a multiple of the vector width, in elements).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public LaneOps(nint offset) { Offset = offset; }

    /// <summary>Vectors each operation touches (unrolled), so per-operation costs (a branch, a broadcast) are shared.</summary>
    public const int Unroll = 4;

    /// <summary>Elements each operation touches.</summary>
    public static int Elements => Unroll * Vector256<T>.Count;

    static int W => Vector256<T>.Count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<T> C(double s) => Vector256.Create(ElementMath<T>.S(s));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    T* At(Lane<T> x) => x.Pointer + Offset;

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> Copy(Lane<T> into, Lane<T> from)
    {
        if (into.Pointer == from.Pointer) return into;
        T* d = At(into), f = At(from);
        for (int k = 0; k < Unroll; k++) Vector256.Store(Vector256.Load(f + k * W), d + k * W);
        return into;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> Mul(Lane<T> x, double s)
    {
        var c = C(s); T* p = At(x);
        for (int k = 0; k < Unroll; k++) Vector256.Store(Vector256.Load(p + k * W) * c, p + k * W);
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> Div(Lane<T> x, double s)
    {
        var c = C(s); T* p = At(x);
        for (int k = 0; k < Unroll; k++) Vector256.Store(Vector256.Load(p + k * W) / c, p + k * W);
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> Add(Lane<T> x, double s)
    {
        var c = C(s); T* p = At(x);
        for (int k = 0; k < Unroll; k++) Vector256.Store(Vector256.Load(p + k * W) + c, p + k * W);
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> AddScaled(Lane<T> y, Lane<T> x, double w)
    {
        var c = C(w); T* py = At(y), px = At(x);
        for (int k = 0; k < Unroll; k++) Vector256.Store(ElementMath<T>.AddScaled(Vector256.Load(py + k * W), Vector256.Load(px + k * W), c), py + k * W);
        return y;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> AddProduct(Lane<T> y, Lane<T> x, Lane<T> z, double w)
    {
        var c = C(w); T* py = At(y), px = At(x), pz = At(z);
        for (int k = 0; k < Unroll; k++) Vector256.Store(ElementMath<T>.AddProduct(Vector256.Load(py + k * W), Vector256.Load(px + k * W), Vector256.Load(pz + k * W), c), py + k * W);
        return y;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> MulBy(Lane<T> x, Lane<T> d)
    {
        T* px = At(x), pd = At(d);
        for (int k = 0; k < Unroll; k++) Vector256.Store(Vector256.Load(px + k * W) * Vector256.Load(pd + k * W), px + k * W);
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> DivBy(Lane<T> x, Lane<T> d)
    {
        T* px = At(x), pd = At(d);
        for (int k = 0; k < Unroll; k++) Vector256.Store(Vector256.Load(px + k * W) / Vector256.Load(pd + k * W), px + k * W);
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> Max(Lane<T> m, Lane<T> x)
    {
        T* pm = At(m), px = At(x);
        for (int k = 0; k < Unroll; k++) Vector256.Store(ElementMath<T>.Max(Vector256.Load(pm + k * W), Vector256.Load(px + k * W)), pm + k * W);
        return m;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> ClampMin(Lane<T> x, double lo)
    {
        var c = C(lo); T* p = At(x);
        for (int k = 0; k < Unroll; k++) Vector256.Store(ElementMath<T>.ClampMin(Vector256.Load(p + k * W), c), p + k * W);
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> Sqrt(Lane<T> x)
    {
        T* p = At(x);
        for (int k = 0; k < Unroll; k++) Vector256.Store(Vector256.Sqrt(Vector256.Load(p + k * W)), p + k * W);
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> Sign(Lane<T> x)
    {
        T* p = At(x);
        for (int k = 0; k < Unroll; k++) Vector256.Store(ElementMath<T>.Sign(Vector256.Load(p + k * W)), p + k * W);
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> Agree(Lane<T> x, Lane<T> y)
    {
        T* px = At(x), py = At(y);
        for (int k = 0; k < Unroll; k++) Vector256.Store(ElementMath<T>.Agree(Vector256.Load(px + k * W), Vector256.Load(py + k * W)), px + k * W);
        return x;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> MulAdd(Lane<T> y, double a, Lane<T> x, double w)
    {
        if (a == 1) return AddScaled(y, x, w);
        var ca = C(a); var cw = C(w); T* py = At(y), px = At(x);
        for (int k = 0; k < Unroll; k++) Vector256.Store(ElementMath<T>.MulAdd(Vector256.Load(py + k * W), ca, Vector256.Load(px + k * W), cw), py + k * W);
        return y;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> MulAddProduct(Lane<T> y, double a, Lane<T> x, Lane<T> z, double w)
    {
        if (a == 1) return AddProduct(y, x, z, w);
        var ca = C(a); var cw = C(w); T* py = At(y), px = At(x), pz = At(z);
        for (int k = 0; k < Unroll; k++) Vector256.Store(ElementMath<T>.MulAddProduct(Vector256.Load(py + k * W), ca, Vector256.Load(px + k * W), Vector256.Load(pz + k * W), cw), py + k * W);
        return y;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> SqrtOf(Lane<T> into, Lane<T> from)
    {
        T* pi = At(into), pf = At(from);
        for (int k = 0; k < Unroll; k++) Vector256.Store(Vector256.Sqrt(Vector256.Load(pf + k * W)), pi + k * W);
        return into;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> CopyDiv(Lane<T> into, Lane<T> from, double c)
    {
        var vc = C(c); T* pi = At(into), pf = At(from);
        for (int k = 0; k < Unroll; k++) Vector256.Store(Vector256.Load(pf + k * W) / vc, pi + k * W);
        return into;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Lane<T> DivAdd(Lane<T> x, double c, double e)
    {
        var vc = C(c); var ve = C(e); T* p = At(x);
        for (int k = 0; k < Unroll; k++) Vector256.Store(ElementMath<T>.DivAdd(Vector256.Load(p + k * W), vc, ve), p + k * W);
        return x;
    }
}

/// <summary>
/// A recorded sequence of kernels composed into one value type, so that the JIT compiles the whole sequence for one
/// step of the loop (<see cref="LaneOps{T}.Unroll"/> vectors) as a single body (every kernel's <see cref="IKernel.Run{TArray, TOps}"/> inlined with
/// <see cref="LaneOps{T}"/>): <see cref="Link{TKernel, TNext}"/>s ending in <see cref="End"/>.
/// </summary>
internal unsafe interface ILaneChain<TSelf> where TSelf : struct, ILaneChain<TSelf>
{
    /// <summary>The chain of the stages <paramref name="stages"/>[<paramref name="index"/>..], with their arities.</summary>
    static abstract TSelf Build(IKernelSource stages, int index);

    /// <summary>Runs every kernel of the chain on the vectors from element <paramref name="offset"/> of its lanes (consecutive, each kernel's own).</summary>
    void Step<T>(nint offset, Lane<T>* lanes) where T : unmanaged, IFloatingPointIeee754<T>;
}

/// <summary>Where a chain takes its kernels and their arities from (the fused executor's recorded stages).</summary>
internal interface IKernelSource
{
    /// <summary>The kernel of stage <paramref name="index"/> (its type is the chain's).</summary>
    TKernel Kernel<TKernel>(int index) where TKernel : struct, IKernel;

    /// <summary>How many arrays stage <paramref name="index"/> reads and writes.</summary>
    int Arity(int index);
}

/// <summary>The empty chain.</summary>
internal readonly unsafe struct End : ILaneChain<End>
{
    public static End Build(IKernelSource stages, int index) => default;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Step<T>(nint offset, Lane<T>* lanes) where T : unmanaged, IFloatingPointIeee754<T> { }
}

/// <summary>One kernel, then the rest of the chain.</summary>
internal readonly unsafe struct Link<TKernel, TNext> : ILaneChain<Link<TKernel, TNext>>
    where TKernel : struct, IKernel where TNext : struct, ILaneChain<TNext>
{
    readonly TKernel _kernel;
    readonly int _arity;
    readonly TNext _next;

    Link(TKernel kernel, int arity, TNext next) { _kernel = kernel; _arity = arity; _next = next; }

    public static Link<TKernel, TNext> Build(IKernelSource stages, int index) =>
        new(stages.Kernel<TKernel>(index), stages.Arity(index), TNext.Build(stages, index + 1));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Step<T>(nint offset, Lane<T>* lanes) where T : unmanaged, IFloatingPointIeee754<T>
    {
        _kernel.Run<Lane<T>, LaneOps<T>>(new LaneOps<T>(offset), new ReadOnlySpan<Lane<T>>(lanes, _arity));
        _next.Step(offset, lanes + _arity);
    }
}

/// <summary>The compiled chain of one recorded sequence of kernel types; <see cref="Bind"/> gives it this step's kernels.</summary>
internal abstract unsafe class ChainLoop
{
    /// <summary>The chain with the kernels of <paramref name="stages"/> (built once per segment and step: building reads every stage).</summary>
    public abstract BoundChain Bind(IKernelSource stages);

    /// <summary>The loop for the kernel types <paramref name="kernels"/>, in order.</summary>
    public static ChainLoop For(ReadOnlySpan<Type> kernels)
    {
        var chain = typeof(End);
        for (int k = kernels.Length - 1; k >= 0; k--) chain = typeof(Link<,>).MakeGenericType(kernels[k], chain);
        return (ChainLoop)Activator.CreateInstance(typeof(ChainLoop<>).MakeGenericType(chain))!;
    }
}

internal sealed class ChainLoop<TChain> : ChainLoop where TChain : struct, ILaneChain<TChain>
{
    public override BoundChain Bind(IKernelSource stages) => new BoundChain<TChain>(TChain.Build(stages, 0));
}

/// <summary>A chain with its kernels: runs them over a chunk, <see cref="LaneOps{T}.Unroll"/> vectors at a time.</summary>
internal abstract unsafe class BoundChain
{
    /// <summary>Runs the chain on <paramref name="vectors"/> consecutive vectors of <paramref name="lanes"/> (a multiple of <see cref="LaneOps{T}.Unroll"/>).</summary>
    public abstract void Run32(Lane<float>* lanes, long vectors);

    /// <inheritdoc cref="Run32"/>
    public abstract void Run64(Lane<double>* lanes, long vectors);

    /// <summary>Takes the kernels of <paramref name="stages"/> (the same kernel types, this step's constants) instead of the bound ones.</summary>
    public abstract void Rebind(IKernelSource stages);
}

internal sealed unsafe class BoundChain<TChain>(TChain chain) : BoundChain where TChain : struct, ILaneChain<TChain>
{
    TChain _chain = chain;

    public override void Rebind(IKernelSource stages) => _chain = TChain.Build(stages, 0);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run32(Lane<float>* lanes, long vectors)
    {
        var chain = _chain;
        nint end = (nint)(vectors * Vector256<float>.Count), step = LaneOps<float>.Elements;
        for (nint i = 0; i < end; i += step) chain.Step(i, lanes);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run64(Lane<double>* lanes, long vectors)
    {
        var chain = _chain;
        nint end = (nint)(vectors * Vector256<double>.Count), step = LaneOps<double>.Elements;
        for (nint i = 0; i < end; i += step) chain.Step(i, lanes);
    }
}
