using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Kernels;

/// <summary>
/// The moment arithmetic shared by the primitives, written once as in-place kernels over buffers the
/// caller owns (plain tensor → tensor functions, kept apart from the transforms).
/// </summary>
/// <remarks>
/// Every scalar operand is an explicit <see cref="Scalar"/> held in a <c>using</c> until the native call
/// returns. TorchSharp's implicit double → Scalar conversion makes an object that no dispose scope
/// tracks and that the finalizer may free while the native call still reads it (seen here as
/// "Expected false to be true ... toDouble" under parallel load). Lookahead's primitives never use it.
/// </remarks>
public static class Moments
{
    /// <summary>m ← β·m + w·x, in place on <paramref name="m"/> (β = 1 skips the multiplication).</summary>
    public static Tensor Accumulate(Tensor m, Tensor x, double decay, double weight)
    {
        using Scalar b = decay.ToScalar(), w = weight.ToScalar();
        if (decay != 1) m.mul_(b);
        return m.add_(x, alpha: w);
    }

    /// <summary>v ← β·v + w·x², in place on <paramref name="v"/> (β = 1 skips the multiplication).</summary>
    public static Tensor AccumulateSquare(Tensor v, Tensor x, double decay, double weight)
    {
        using Scalar b = decay.ToScalar(), w = weight.ToScalar();
        if (decay != 1) v.mul_(b);
        return v.addcmul_(x, x, value: w);
    }

    /// <summary>m ← max(m, x), in place on <paramref name="m"/> (a clamp from below by x: no temporary).</summary>
    public static Tensor RunningMax(Tensor m, Tensor x) => m.clamp_(x, null!);
}
