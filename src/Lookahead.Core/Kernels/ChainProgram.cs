using System;
using System.Collections.Generic;
using System.Linq;
using System.Linq.Expressions;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Lookahead.Kernels;

/// <summary>The operations a <see cref="ProgramRecorder"/> records, one per <see cref="IArrayOps{TArray}"/> operation (compound ones resolved as the lane path resolves them).</summary>
internal enum ProgramOp
{
    Copy, Mul, Div, Add, AddScaled, AddProduct, MulBy, DivBy, Max, ClampMin, Sqrt, Sign, MulAdd, MulAddProduct, SqrtOf, CopyDiv, DivAdd, Agree,
}

/// <summary>
/// A segment's kernels as a straight-line program over its distinct arrays: running each recorded kernel with
/// <see cref="RecordOps"/> (arrays are ids) writes its operations and their scalar coefficients here. The
/// coefficients change from step to step (a bias correction); the operations, which the compiled loop depends on,
/// usually do not.
/// </summary>
internal sealed class ProgramRecorder
{
    // Per operation: code, destination, up to three sources, first coefficient slot (−1 = none).
    public const int Width = 6;
    public int[] Ops = new int[64 * Width];
    public int OpCount;
    public double[] Constants = new double[32];
    public int ConstantCount;

    public void Clear() { OpCount = 0; ConstantCount = 0; }

    int Constant(double c)
    {
        if (ConstantCount == Constants.Length) Array.Resize(ref Constants, 2 * Constants.Length);
        Constants[ConstantCount] = c;
        return ConstantCount++;
    }

    public int Emit(ProgramOp op, int dst, int a = -1, int b = -1, int c = -1, double k0 = double.NaN, double k1 = double.NaN, int constants = 0)
    {
        if ((OpCount + 1) * Width > Ops.Length) Array.Resize(ref Ops, 2 * Ops.Length);
        int first = constants > 0 ? Constant(k0) : -1;
        if (constants > 1) Constant(k1);
        var o = Ops.AsSpan(OpCount * Width, Width);
        (o[0], o[1], o[2], o[3], o[4], o[5]) = ((int)op, dst, a, b, c, first);
        OpCount++;
        return dst;
    }

    /// <summary>Whether the operations recorded now are <paramref name="ops"/>.</summary>
    public bool Same(int[]? ops) => ops is not null && ops.AsSpan().SequenceEqual(Ops.AsSpan(0, OpCount * Width));
}

/// <summary><see cref="IArrayOps{TArray}"/> on array ids: records each operation (see <see cref="ProgramRecorder"/>).</summary>
internal readonly struct RecordOps(ProgramRecorder r) : IArrayOps<int>
{
    public int Copy(int into, int from) => into == from ? into : r.Emit(ProgramOp.Copy, into, from);
    public int Mul(int x, double s) => r.Emit(ProgramOp.Mul, x, k0: s, constants: 1);
    public int Div(int x, double s) => r.Emit(ProgramOp.Div, x, k0: s, constants: 1);
    public int Add(int x, double c) => r.Emit(ProgramOp.Add, x, k0: c, constants: 1);
    public int AddScaled(int y, int x, double w) => r.Emit(ProgramOp.AddScaled, y, x, k0: w, constants: 1);
    public int AddProduct(int y, int x, int z, double w) => r.Emit(ProgramOp.AddProduct, y, x, z, k0: w, constants: 1);
    public int MulBy(int x, int d) => r.Emit(ProgramOp.MulBy, x, d);
    public int DivBy(int x, int d) => r.Emit(ProgramOp.DivBy, x, d);
    public int Max(int m, int x) => r.Emit(ProgramOp.Max, m, x);
    public int ClampMin(int x, double lo) => r.Emit(ProgramOp.ClampMin, x, k0: lo, constants: 1);
    public int Sqrt(int x) => r.Emit(ProgramOp.Sqrt, x);
    public int Sign(int x) => r.Emit(ProgramOp.Sign, x);
    public int Agree(int x, int y) => r.Emit(ProgramOp.Agree, x, y);
    // As LaneOps: a unit factor is the simpler operation (the same bits as skipping the multiplication).
    public int MulAdd(int y, double a, int x, double w) => a == 1 ? AddScaled(y, x, w) : r.Emit(ProgramOp.MulAdd, y, x, k0: a, k1: w, constants: 2);
    public int MulAddProduct(int y, double a, int x, int z, double w) => a == 1 ? AddProduct(y, x, z, w) : r.Emit(ProgramOp.MulAddProduct, y, x, z, k0: a, k1: w, constants: 2);
    public int SqrtOf(int into, int from) => r.Emit(ProgramOp.SqrtOf, into, from);
    public int CopyDiv(int into, int from, double c) => r.Emit(ProgramOp.CopyDiv, into, from, k0: c, constants: 1);
    public int DivAdd(int x, double c, double e) => r.Emit(ProgramOp.DivAdd, x, k0: c, k1: e, constants: 2);
}

/// <summary>The vector arithmetic a compiled program calls: <see cref="ElementMath{T}"/>'s, the lane path's, so the bits are the same.</summary>
public static unsafe class ProgramMath<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>The vector at element <paramref name="i"/> of the array at <paramref name="p"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Load(nint p, long i) => Vector256.Load((T*)p + i);
    /// <summary>Stores <paramref name="v"/> at element <paramref name="i"/> of the array at <paramref name="p"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<T> v, nint p, long i) => Vector256.Store(v, (T*)p + i);
    /// <summary>The 8 bfloat16 values at element <paramref name="i"/> of the array at <paramref name="p"/>, widened (exactly; float only).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> LoadBFloat16(nint p, long i) => NarrowFloats.WidenBFloat16((ushort*)p + i).As<float, T>();
    /// <summary>Stores <paramref name="v"/> as 8 bfloat16 values at element <paramref name="i"/>, rounded as <see cref="NarrowFloats"/> rounds (float only).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreBFloat16(Vector256<T> v, nint p, long i)
    {
        var bits = NarrowFloats.RoundToBFloat16(v.As<T, uint>());
        Vector128.Store(Vector256.Narrow(bits, bits).GetLower(), (ushort*)p + i);
    }
    /// <summary>c in every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Broadcast(T c) => Vector256.Create(c);
    /// <summary>a·b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Mul(Vector256<T> a, Vector256<T> b) => a * b;
    /// <summary>a/b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Div(Vector256<T> a, Vector256<T> b) => a / b;
    /// <summary>a + b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Add(Vector256<T> a, Vector256<T> b) => a + b;
    /// <summary>√a.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Sqrt(Vector256<T> a) => Vector256.Sqrt(a);
    /// <summary>y + w·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> AddScaled(Vector256<T> y, Vector256<T> x, Vector256<T> w) => ElementMath<T>.AddScaled(y, x, w);
    /// <summary>y + (w·x)·z.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> AddProduct(Vector256<T> y, Vector256<T> x, Vector256<T> z, Vector256<T> w) => ElementMath<T>.AddProduct(y, x, z, w);
    /// <summary>a·y + w·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> MulAdd(Vector256<T> y, Vector256<T> a, Vector256<T> x, Vector256<T> w) => ElementMath<T>.MulAdd(y, a, x, w);
    /// <summary>a·y + (w·x)·z.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> MulAddProduct(Vector256<T> y, Vector256<T> a, Vector256<T> x, Vector256<T> z, Vector256<T> w) => ElementMath<T>.MulAddProduct(y, a, x, z, w);
    /// <summary>max(m, x), NaN-propagating as torch's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Max(Vector256<T> m, Vector256<T> x) => ElementMath<T>.Max(m, x);
    /// <summary>max(x, lo).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> ClampMin(Vector256<T> x, Vector256<T> lo) => ElementMath<T>.ClampMin(x, lo);
    /// <summary>sign(x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Sign(Vector256<T> x) => ElementMath<T>.Sign(x);
    /// <summary>1 where x·y &gt; 0, else 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Agree(Vector256<T> x, Vector256<T> y) => ElementMath<T>.Agree(x, y);
    /// <summary>x/c + e.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> DivAdd(Vector256<T> x, Vector256<T> c, Vector256<T> e) => ElementMath<T>.DivAdd(x, c, e);
}

/// <summary>A compiled segment loop: over <c>count</c> elements (a multiple of the vector width) of the arrays at <c>bases</c>, with this step's coefficients.</summary>
internal delegate void ProgramLoop<T>(nint[] bases, T[] constants, long count);

/// <summary>
/// Compiles a recorded program into one loop (a <see cref="ProgramLoop{T}"/>) in which every distinct array is a local
/// vector: loaded once per vector (unless its first use overwrites it), passed from operation to operation in
/// registers, and stored once if the program writes it and it is memory that outlives the chunk. The compiled loops
/// are cached by program for the process.
/// </summary>
internal static class ChainCompiler
{
    static readonly Dictionary<string, Delegate> Cache = new();

    /// <summary>The loop for <paramref name="ops"/> over <paramref name="arrays"/> distinct arrays; <paramref name="kept"/>[id] false for arrays whose stores may be skipped (per-chunk scratch).</summary>
    /// <paramref name="bfloat16"/>[id] marks arrays of bfloat16 memory, widened on load and rounded on store.
    public static ProgramLoop<T> For<T>(int[] ops, int arrays, bool[] kept, bool[] bfloat16, int constants) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var key = $"{typeof(T).Name}|{arrays}|{constants}|{string.Join(",", ops)}|{string.Concat(kept.Select(k => k ? '1' : '0'))}|{string.Concat(bfloat16.Select(k => k ? '1' : '0'))}";
        lock (Cache)
        {
            if (!Cache.TryGetValue(key, out var loop)) Cache[key] = loop = Compile<T>(ops, arrays, kept, bfloat16, constants);
            return (ProgramLoop<T>)loop;
        }
    }

    static ProgramLoop<T> Compile<T>(int[] ops, int arrays, bool[] kept, bool[] bfloat16, int constants) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var math = typeof(ProgramMath<T>);
        Expression Call(string name, params Expression[] args) => Expression.Call(math.GetMethod(name)!, args);
        var V = typeof(Vector256<T>);
        var bases = Expression.Parameter(typeof(nint[]), "bases");
        var cs = Expression.Parameter(typeof(T[]), "constants");
        var count = Expression.Parameter(typeof(long), "count");
        var i = Expression.Variable(typeof(long), "i");
        var p = Enumerable.Range(0, arrays).Select(k => Expression.Variable(typeof(nint), "p" + k)).ToArray();
        var v = Enumerable.Range(0, arrays).Select(k => Expression.Variable(V, "v" + k)).ToArray();
        var c = Enumerable.Range(0, constants).Select(k => Expression.Variable(V, "c" + k)).ToArray();

        // Which arrays must be loaded (read before any overwrite) and which are written.
        var loaded = new bool[arrays];
        var seen = new bool[arrays];
        var written = new bool[arrays];
        int n = ops.Length / ProgramRecorder.Width;
        for (int k = 0; k < n; k++)
        {
            var op = (ProgramOp)ops[k * ProgramRecorder.Width];
            int dst = ops[k * ProgramRecorder.Width + 1];
            for (int s = 2; s <= 4; s++)
                if (ops[k * ProgramRecorder.Width + s] is int src && src >= 0 && !seen[src]) { seen[src] = true; loaded[src] = true; }
            bool overwrites = op is ProgramOp.Copy or ProgramOp.SqrtOf or ProgramOp.CopyDiv;
            if (!seen[dst]) { seen[dst] = true; loaded[dst] = !overwrites; }
            written[dst] = true;
        }

        var body = new List<Expression>();
        for (int k = 0; k < arrays; k++) if (loaded[k]) body.Add(Expression.Assign(v[k], Call(bfloat16[k] ? "LoadBFloat16" : "Load", p[k], i)));
        for (int k = 0; k < n; k++)
        {
            var o = ops[(k * ProgramRecorder.Width)..((k + 1) * ProgramRecorder.Width)];
            var op = (ProgramOp)o[0];
            var d = v[o[1]];
            Expression A() => v[o[2]];
            Expression B() => v[o[3]];
            Expression K0() => c[o[5]];
            Expression K1() => c[o[5] + 1];
            Expression value = op switch
            {
                ProgramOp.Copy => A(),
                ProgramOp.Mul => Call("Mul", d, K0()),
                ProgramOp.Div => Call("Div", d, K0()),
                ProgramOp.Add => Call("Add", d, K0()),
                ProgramOp.AddScaled => Call("AddScaled", d, A(), K0()),
                ProgramOp.AddProduct => Call("AddProduct", d, A(), B(), K0()),
                ProgramOp.MulBy => Call("Mul", d, A()),
                ProgramOp.DivBy => Call("Div", d, A()),
                ProgramOp.Max => Call("Max", d, A()),
                ProgramOp.ClampMin => Call("ClampMin", d, K0()),
                ProgramOp.Sqrt => Call("Sqrt", d),
                ProgramOp.Sign => Call("Sign", d),
                ProgramOp.Agree => Call("Agree", d, A()),
                ProgramOp.MulAdd => Call("MulAdd", d, K0(), A(), K1()),
                ProgramOp.MulAddProduct => Call("MulAddProduct", d, K0(), A(), B(), K1()),
                ProgramOp.SqrtOf => Call("Sqrt", A()),
                ProgramOp.CopyDiv => Call("Div", A(), K0()),
                ProgramOp.DivAdd => Call("DivAdd", d, K0(), K1()),
                _ => throw new InvalidOperationException($"no compiled form for {op}"),
            };
            body.Add(Expression.Assign(d, value));
        }
        for (int k = 0; k < arrays; k++) if (written[k] && kept[k]) body.Add(Call(bfloat16[k] ? "StoreBFloat16" : "Store", v[k], p[k], i));
        body.Add(Expression.AddAssign(i, Expression.Constant((long)Vector256<T>.Count)));

        var prologue = new List<Expression>();
        for (int k = 0; k < arrays; k++) prologue.Add(Expression.Assign(p[k], Expression.ArrayIndex(bases, Expression.Constant(k))));
        for (int k = 0; k < constants; k++) prologue.Add(Expression.Assign(c[k], Call("Broadcast", Expression.ArrayIndex(cs, Expression.Constant(k)))));
        prologue.Add(Expression.Assign(i, Expression.Constant(0L)));
        var end = Expression.Label("end");
        prologue.Add(Expression.Loop(
            Expression.IfThenElse(Expression.LessThan(i, count), Expression.Block(body), Expression.Break(end)), end));
        var lambda = Expression.Lambda<ProgramLoop<T>>(Expression.Block(p.Concat(v).Concat(c).Append(i), prologue), bases, cs, count);
        return lambda.Compile();
    }
}
