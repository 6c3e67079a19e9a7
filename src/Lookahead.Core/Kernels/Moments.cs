using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Kernels;

/// <summary>
/// The moment arithmetic shared by the primitives, written once as generic kernels over
/// <see cref="IArrayOps{TArray}"/> (in place on their first array), with tensor overloads that run them through
/// <see cref="TensorOps"/>.
/// </summary>
/// <remarks>
/// Every scalar operand reaches TorchSharp as an explicit <see cref="Scalar"/> held in a <c>using</c> until the
/// native call returns (<see cref="TensorOps"/>). TorchSharp's implicit double → Scalar conversion makes an
/// object that no dispose scope tracks and that the finalizer may free while the native call still reads it
/// (seen here as "Expected false to be true ... toDouble" under parallel load). Lookahead's primitives never use it.
/// </remarks>
public static class Moments
{
    /// <summary>m ← β·m + w·x (β = 1 skips the multiplication).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray Accumulate<TArray, TOps>(TOps ops, TArray m, TArray x, double decay, double weight) where TOps : struct, IArrayOps<TArray>
        => ops.MulAdd(m, decay, x, weight);

    /// <summary>v ← β·v + w·x² (β = 1 skips the multiplication).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray AccumulateSquare<TArray, TOps>(TOps ops, TArray v, TArray x, double decay, double weight) where TOps : struct, IArrayOps<TArray>
        => ops.MulAddProduct(v, decay, x, x, weight);

    /// <summary>m ← β·m + w·x with hyperparameter coefficients (<see cref="Coefficients"/>; a plain β = 1 skips the multiplication).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray Accumulate<TArray, TOps>(TOps ops, TArray m, TArray x, Hyper decay, Hyper weight) where TOps : struct, IArrayOps<TArray>
        => Coefficients.MulAdd(ops, m, decay, x, weight);

    /// <summary>v ← β·v + w·x² with hyperparameter coefficients (<see cref="Coefficients"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray AccumulateSquare<TArray, TOps>(TOps ops, TArray v, TArray x, Hyper decay, Hyper weight) where TOps : struct, IArrayOps<TArray>
        => Coefficients.MulAddProduct(ops, v, decay, x, x, weight);

    /// <summary>m ← max(m, x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TArray RunningMax<TArray, TOps>(TOps ops, TArray m, TArray x) where TOps : struct, IArrayOps<TArray> => ops.Max(m, x);

    /// <summary>m ← β·m + w·x, in place on <paramref name="m"/>.</summary>
    public static Tensor Accumulate(Tensor m, Tensor x, double decay, double weight) => Accumulate<Tensor, TensorOps>(default, m, x, decay, weight);

    /// <summary>v ← β·v + w·x², in place on <paramref name="v"/>.</summary>
    public static Tensor AccumulateSquare(Tensor v, Tensor x, double decay, double weight) => AccumulateSquare<Tensor, TensorOps>(default, v, x, decay, weight);

    /// <summary>m ← max(m, x), in place on <paramref name="m"/> (a clamp from below by x: no temporary).</summary>
    public static Tensor RunningMax(Tensor m, Tensor x) => RunningMax<Tensor, TensorOps>(default, m, x);
}
