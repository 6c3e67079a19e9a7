using System;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Compensated (Kahan) summation of the updates into 16-bit parameters: with c the part of earlier updates the
    /// parameters could not hold, y = u + c, θ' = round(θ + y) to <paramref name="format"/> (nearest, ties to even),
    /// u ← θ' − θ and c ← y − u. Applied with round-to-nearest (the runner's θ₁₆ ← round(float32(θ₁₆) + u)), θ lands
    /// exactly on θ', and θ + c tracks the exactly summed parameters to the precision of c, so small updates accumulate
    /// in c until they move θ. c is state (checkpointed) in the state's precision: float32 for bfloat16/float16
    /// parameters under <see cref="StatePrecision.Float32"/>, 4 bytes per parameter. Place it last in a chain.
    /// </summary>
    /// <param name="format">The parameters' 16-bit format: <see cref="ScalarType.BFloat16"/> (default) or <see cref="ScalarType.Float16"/>.</param>
    public static IGradientTransformation KahanCompensation(ScalarType format = ScalarType.BFloat16) =>
        format is ScalarType.BFloat16 or ScalarType.Float16 ? new KahanCompensationTransform(format)
        : throw new ArgumentOutOfRangeException(nameof(format), format, "format must be BFloat16 or Float16 (the parameters' 16-bit type)");
}

sealed class KahanCompensationTransform(ScalarType format) : DeclaredTransform
{
    static readonly StateLayout State = new("kahan_compensation");
    /// <summary>c: what the 16-bit parameters have not yet absorbed, shaped like the parameters.</summary>
    static readonly Slot<TensorTree> Compensation = State.PerParameter("compensation", SlotStart.Zeros);

    protected override StateLayout Declare() => State;

    public override Spec Spec => Spec.Of("kahan_compensation").With("format", format.ToString());

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        var c = state.Get(Compensation);
        for (int i = 0; i < updates.Count; i++)
        {
            using var scope = NewDisposeScope();
            Tensor u = updates.Tensors[i], ci = c.Tensors[i], theta = parameters.Tensors[i];
            var before = theta.to(ScalarType.Float32);
            var y = u.to(ScalarType.Float32).add_(ci.to(ScalarType.Float32));
            var after = before.add(y).to(format).to(ScalarType.Float32);
            var step = after.sub_(before);
            ci.copy_(y.sub_(step));
            u.copy_(step);
        }
        return state;
    }
}
