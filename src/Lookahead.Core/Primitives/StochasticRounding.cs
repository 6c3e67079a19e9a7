using System;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Stochastic rounding of the new parameters to bfloat16 (Gupta et al. 2015; Zamirai et al. 2020, "Revisiting
    /// BFloat16 Training"): the update becomes u ← SR(θ + u) − θ, where SR rounds the float32 value θ + u to one of
    /// its two neighbouring bfloat16 values, the farther one with probability (distance to the nearer)/(their spacing) (unbiased: E[SR(x)] = x). Applied
    /// with round-to-nearest (the runner's θ₁₆ ← round(float32(θ₁₆) + u), or <see cref="Updates.Apply"/> followed
    /// by a cast), θ lands exactly on SR(θ + u), so updates far smaller than half a bfloat16 step of θ still move it in
    /// expectation instead of being lost. Place it last in a chain. The random bits come from a generator seeded by
    /// (seed, step, tensor index) on the parameters' device: the same run gives the same bits on the pure path and in
    /// the runner, and a restored checkpoint (which holds the step count) continues the same stream. θ + u is formed
    /// in float32 (a float64 update is rounded to float32 first).
    /// </summary>
    /// <param name="seed">Seed of the rounding noise.</param>
    public static IGradientTransformation StochasticRounding(long seed = 0) => new StochasticRoundingTransform(seed);
}

sealed class StochasticRoundingTransform(long seed) : DeclaredTransform
{
    static readonly StateLayout State = new("stochastic_rounding");
    /// <summary>Steps taken so far (with the seed, it fixes the noise of the next step).</summary>
    static readonly Slot<long> Count = State.Integer("count");

    protected override StateLayout Declare() => State;

    public override Spec Spec => Spec.Of("stochastic_rounding").With("format", "bfloat16").With("seed", seed);

    /// <summary>A 64-bit mix of (seed, step, tensor) for the generator's seed (splitmix64's finaliser).</summary>
    static ulong StreamSeed(long seed, long step, int tensor)
    {
        ulong z = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)step * 0xBF58476D1CE4E5B9UL + (ulong)tensor * 0x94D049BB133111EBUL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long t = state.Get(Count) + 1;
        // Rounding to bfloat16 would coarsen a float16 parameter's grid: refuse it rather than round it silently.
        for (int i = 0; i < parameters.Count; i++)
            if (parameters.Tensors[i].dtype == ScalarType.Float16)
                throw new InvalidOperationException($"{Label}: parameter '{parameters.Names[i]}' is float16; stochastic rounding rounds to bfloat16 (use KahanCompensation(Float16) for float16 parameters)");
        for (int i = 0; i < updates.Count; i++)
        {
            using var scope = NewDisposeScope();
            Tensor u = updates.Tensors[i], theta = parameters.Tensors[i];
            var before = theta.to(ScalarType.Float32);
            var sum = before.add(u.to(ScalarType.Float32));
            using var generator = new Generator(StreamSeed(seed, t, i), u.device);
            // In float64, where every step below is exact: |x| = m·2^e with m ∈ [0.5, 1), so bfloat16's 8
            // significant bits space its values by 2^(e − 8) around x (2^−133 below the normal range, e ≥ −125).
            // q = |x|/2^(e − 8) lies between two integers; round up with probability equal to its fractional part.
            var x = sum.to(ScalarType.Float64);
            var (_, exponent) = x.frexp();
            var shift = exponent.to(ScalarType.Float64).clamp_min_(-125).sub_(8);
            var unit = full_like(x, 2.0).pow_(shift);
            var q = x.abs().div_(unit);
            var floor = q.floor();
            var up = rand(x.shape, dtype: ScalarType.Float64, device: x.device, generator: generator).lt_(q.sub_(floor)).to(ScalarType.Float64);
            var value = floor.add_(up).mul_(unit).copysign_(x).to(ScalarType.Float32);
            // Non-finite sums stay as they are.
            value = where(sum.isfinite(), value, sum);
            u.copy_(value.sub_(before));
        }
        return state.With(Count, t);
    }
}
