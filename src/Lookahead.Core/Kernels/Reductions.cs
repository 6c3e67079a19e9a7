using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Kernels;

/// <summary>What a <see cref="Reduction"/> sums.</summary>
public enum ReductionKind
{
    /// <summary>Σ x² (a squared Frobenius norm).</summary>
    SumOfSquares,
    /// <summary>Σ x·y.</summary>
    Dot,
    /// <summary>The number of NaN and ±∞ entries.</summary>
    NonFiniteCount,
    /// <summary>The number of entries that are not ±0 (NaN counts).</summary>
    NonZeroCount,
}

/// <summary>Over what a <see cref="Reduction"/> sums.</summary>
public enum ReductionScope
{
    /// <summary>One value per tensor of the tree.</summary>
    PerTensor,
    /// <summary>One value for the whole tree: the per-tensor values summed in tree order.</summary>
    Global,
}

/// <summary>
/// A reduction that a primitive declares: the executor computes it, in its own phase, before the elementwise
/// phase that uses the result (a global-norm clip needs the norm of every tensor before it scales any of them).
/// </summary>
/// <remarks>
/// <para>Operands are named: <c>"updates"</c> and <c>"parameters"</c> (the step's inputs), a per-parameter slot of
/// the primitive's state, or an intermediate the primitive names in its docs (Polyak's direction d and D⁻¹d).</para>
/// <para>Every executor accumulates in float64 and adds per-tensor (or per-buffer) values in tree order. The fused
/// CPU executor also fixes the order inside a buffer (partials of 4096 elements added in order), so its result never
/// depends on how many threads computed the partials; the TorchSharp executor sums each tensor with torch's own
/// reduction, whose grouping is torch's (on the CPU it may change with torch's thread count).</para>
/// </remarks>
/// <param name="Kind">What is summed.</param>
/// <param name="Scope">Per tensor or over the tree.</param>
/// <param name="First">The operand.</param>
/// <param name="Second">The second operand of a <see cref="ReductionKind.Dot"/>, else null.</param>
public sealed record Reduction(ReductionKind Kind, ReductionScope Scope, string First, string? Second = null)
{
    /// <summary>The reduction in words, e.g. "global Σ updates·parameters".</summary>
    public override string ToString() => (Scope == ReductionScope.Global ? "global " : "per-tensor ") + Kind switch
    {
        ReductionKind.SumOfSquares => $"Σ {First}²",
        ReductionKind.Dot => $"Σ {First}·{Second}",
        ReductionKind.NonZeroCount => $"non-zero count of {First}",
        _ => $"non-finite count of {First}",
    };

    /// <summary>The reductions <paramref name="transform"/> and the transforms it runs declare, in the order they run.</summary>
    public static IReadOnlyList<Reduction> Of(IGradientTransformation transform)
    {
        var found = new List<Reduction>();
        void Walk(IGradientTransformation t)
        {
            if (t is IReducing r) found.AddRange(r.Reductions);
            if (t is IComposite c) foreach (var child in c.Children) Walk(child);
        }
        Walk(Check.NotNull(transform, nameof(transform)));
        return found;
    }
}

/// <summary>A transform whose step needs reductions before its elementwise phase (see <see cref="Reduction"/>).</summary>
public interface IReducing
{
    /// <summary>The reductions of one step, in the order the step uses them.</summary>
    IReadOnlyList<Reduction> Reductions { get; }
}

/// <summary>
/// The reduction operations of an executor: partial sums of one array (a tensor, or a block of a flat buffer) as
/// a float64 value of the executor's scalar type <typeparamref name="TSum"/>, and the elementwise use of such a value.
/// </summary>
/// <typeparam name="TArray">The executor's array type.</typeparam>
/// <typeparam name="TSum">Its reduced value: a 0-d float64 tensor on the array's device (<see cref="TensorOps"/>; no host round trip) or a double.</typeparam>
public interface IReductionOps<TArray, TSum>
{
    /// <summary>Σ x² over <paramref name="x"/>, in float64.</summary>
    TSum SumOfSquares(TArray x);
    /// <summary>Σ x·y over the two arrays, in float64.</summary>
    TSum Dot(TArray x, TArray y);
    /// <summary>The number of NaN and ±∞ entries of <paramref name="x"/>.</summary>
    TSum NonFiniteCount(TArray x);
    /// <summary>The number of entries of <paramref name="x"/> that are not ±0 (NaN counts).</summary>
    TSum NonZeroCount(TArray x);
    /// <summary>x ← s·x, with the reduced value <paramref name="s"/> in the array's precision.</summary>
    TArray ScaleBy(TArray x, TSum s);
    /// <summary>x ← x / s, with the reduced value <paramref name="s"/> in the array's precision.</summary>
    TArray DivideBy(TArray x, TSum s);
}

/// <summary>
/// Arithmetic on reduced values, so that the scalar part of a step (a clip factor, Polyak's step size) is written
/// once for every executor. Every operation returns a new value.
/// </summary>
/// <typeparam name="TSum">The executor's reduced value (see <see cref="IReductionOps{TArray, TSum}"/>).</typeparam>
public interface IScalarOps<TSum>
{
    /// <summary>The constant <paramref name="c"/>, as a value like <paramref name="like"/> (same device).</summary>
    TSum Constant(TSum like, double c);
    /// <summary>a + b.</summary>
    TSum Add(TSum a, TSum b);
    /// <summary>a + c.</summary>
    TSum Plus(TSum a, double c);
    /// <summary>a − b.</summary>
    TSum Sub(TSum a, TSum b);
    /// <summary>c·a.</summary>
    TSum Times(TSum a, double c);
    /// <summary>a·b.</summary>
    TSum Mul(TSum a, TSum b);
    /// <summary>a / b.</summary>
    TSum Div(TSum a, TSum b);
    /// <summary>a / c.</summary>
    TSum Over(TSum a, double c);
    /// <summary>√a.</summary>
    TSum Sqrt(TSum a);
    /// <summary>min(a, c).</summary>
    TSum Min(TSum a, double c);
    /// <summary>max(a, c).</summary>
    TSum Max(TSum a, double c);
    /// <summary><paramref name="ifLess"/> when a &lt; b, else <paramref name="otherwise"/>.</summary>
    TSum IfLess(TSum a, TSum b, TSum ifLess, TSum otherwise);
    /// <summary><paramref name="ifPositive"/> when a &gt; 0, else <paramref name="otherwise"/>.</summary>
    TSum IfPositive(TSum a, TSum ifPositive, TSum otherwise);
}

/// <summary>Runs declared reductions: over a tree of tensors (the TorchSharp executor) and over blocks of a flat array.</summary>
public static class Reducer
{
    /// <summary>One array's partial sum of <paramref name="kind"/>.</summary>
    public static TSum Partial<TArray, TSum, TOps>(TOps ops, ReductionKind kind, TArray first, TArray second)
        where TOps : struct, IReductionOps<TArray, TSum> => kind switch
    {
        ReductionKind.SumOfSquares => ops.SumOfSquares(first),
        ReductionKind.Dot => ops.Dot(first, second),
        ReductionKind.NonZeroCount => ops.NonZeroCount(first),
        _ => ops.NonFiniteCount(first),
    };

    /// <summary>
    /// The per-tensor values of <paramref name="kind"/> over <paramref name="first"/> (and, for a dot,
    /// <paramref name="second"/>, index-aligned), as 0-d float64 tensors on each tensor's device. The caller owns them.
    /// </summary>
    public static Tensor[] PerTensor(ReductionKind kind, TensorTree first, TensorTree? second = null)
    {
        if (kind == ReductionKind.Dot) first.CheckMatches(Check.NotNull(second, nameof(second))!, "first", "second");
        var result = new Tensor[first.Count];
        for (int i = 0; i < first.Count; i++)
            result[i] = Partial<Tensor, Tensor, TensorOps>(default, kind, first.Tensors[i], second?.Tensors[i]!);
        return result;
    }

    /// <summary>
    /// The value of <paramref name="kind"/> over the whole tree, as a 0-d float64 tensor on <paramref name="device"/>:
    /// partials per contiguous group (one per flat buffer in a runner, one per tensor otherwise) added in order.
    /// The caller owns it.
    /// </summary>
    public static Tensor Global(ReductionKind kind, Device device, TensorTree first, TensorTree? second = null)
    {
        var groups = kind == ReductionKind.Dot ? Buffers.Groups(first, Check.NotNull(second, nameof(second))!) : Buffers.Groups(first);
        var total = zeros(Array.Empty<long>(), ScalarType.Float64, device);
        foreach (var group in groups)
        {
            using var part = Partial<Tensor, Tensor, TensorOps>(default, kind, group[0], group.Length > 1 ? group[1] : null!);
            using var here = part.to(device);
            total.add_(here);
        }
        return total;
    }

    /// <summary>
    /// The value of <paramref name="kind"/> over a host array (and <paramref name="second"/> for a dot), computed as
    /// partial sums of blocks of <paramref name="blockSize"/> on up to <paramref name="threads"/> threads and added in
    /// block order: the result is the same for every thread count.
    /// </summary>
    public static double Blocks(ReductionKind kind, double[] first, double[]? second, int blockSize, int threads)
    {
        Check.AtLeast(blockSize, 1, nameof(blockSize));
        Check.AtLeast(threads, 1, nameof(threads));
        if (kind == ReductionKind.Dot && (second is null || second.Length != first.Length))
            throw new ArgumentException($"a dot product needs a second array of {first.Length} elements, got {second?.Length.ToString() ?? "none"}", nameof(second));
        int count = (first.Length + blockSize - 1) / blockSize;
        var partials = new double[count];
        void One(int b)
        {
            int offset = b * blockSize, length = Math.Min(blockSize, first.Length - offset);
            partials[b] = Partial<ArrayBlock, double, ArrayBlockOps>(default, kind,
                new ArrayBlock(first, offset, length), second is null ? default : new ArrayBlock(second, offset, length));
        }
        if (threads == 1) for (int b = 0; b < count; b++) One(b);
        else Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, One);
        double total = 0;
        foreach (var p in partials) total += p;
        return total;
    }
}
