using System;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>How the new value of a 16-bit parameter is rounded (see <see cref="Transforms.LowPrecision"/>).</summary>
public enum ParameterRounding
{
    /// <summary>Round to nearest, ties to even (torch's <c>p.add_(u)</c>): an update under half a unit of θ is lost.</summary>
    Nearest,
    /// <summary>Stochastic rounding (<see cref="Transforms.StochasticRounding"/>): unbiased, no extra memory; bfloat16 only.</summary>
    Stochastic,
    /// <summary>A Kahan compensation buffer (<see cref="Transforms.KahanCompensation"/>): what θ could not absorb is carried to the next step.</summary>
    Compensated,
}

public static partial class Transforms
{
    /// <summary>
    /// An optimizer for 16-bit parameters with a declared rounding policy: <c>inner</c>, then the rounding stage
    /// (<see cref="StochasticRounding"/> or <see cref="KahanCompensation"/>; nothing for <see cref="ParameterRounding.Nearest"/>).
    /// Run it in a <see cref="Runner"/> over bfloat16 (or float16) parameters with <see cref="StatePrecision.Float32"/>
    /// (the default): state and arithmetic are float32 and θ lands exactly on the policy's rounding of θ + u.
    /// </summary>
    /// <param name="inner">The optimizer.</param>
    /// <param name="rounding">The policy.</param>
    /// <param name="format">The parameters' 16-bit format; default bfloat16 (stochastic rounding supports bfloat16 only).</param>
    /// <param name="seed">Seed of the stochastic rounding's noise.</param>
    public static IGradientTransformation LowPrecision(IGradientTransformation inner, ParameterRounding rounding, ScalarType format = ScalarType.BFloat16, long seed = 0)
    {
        Check.NotNull(inner, nameof(inner));
        if (format is not (ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentOutOfRangeException(nameof(format), format, "format must be BFloat16 or Float16 (the parameters' 16-bit type)");
        return rounding switch
        {
            ParameterRounding.Nearest => inner,
            ParameterRounding.Stochastic => format == ScalarType.BFloat16 ? Chain(inner, StochasticRounding(seed))
                : throw new ArgumentOutOfRangeException(nameof(format), format, "stochastic rounding is implemented for BFloat16 parameters; use ParameterRounding.Compensated for Float16"),
            ParameterRounding.Compensated => Chain(inner, KahanCompensation(format)),
            _ => throw new ArgumentOutOfRangeException(nameof(rounding), rounding, "not a defined ParameterRounding"),
        };
    }
}
