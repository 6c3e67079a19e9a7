using static TorchSharp.torch;

namespace Lookahead.Kernels;

/// <summary>
/// The moment arithmetic shared by the primitives, written once as in-place kernels over buffers the
/// caller owns (plain tensor → tensor functions, kept apart from the transforms).
/// </summary>
public static class Moments
{
    /// <summary>m ← β·m + w·x, in place on <paramref name="m"/> (β = 1 skips the multiplication).</summary>
    public static Tensor Accumulate(Tensor m, Tensor x, double decay, double weight)
    {
        if (decay != 1) m.mul_(decay);
        return m.add_(x, alpha: weight);
    }

    /// <summary>v ← β·v + w·x², in place on <paramref name="v"/> (β = 1 skips the multiplication).</summary>
    public static Tensor AccumulateSquare(Tensor v, Tensor x, double decay, double weight)
    {
        if (decay != 1) v.mul_(decay);
        return v.addcmul_(x, x, value: weight);
    }

    /// <summary>m ← max(m, x), in place on <paramref name="m"/>.</summary>
    public static Tensor RunningMax(Tensor m, Tensor x)
    {
        using var larger = maximum(m, x);
        return m.copy_(larger);
    }
}
