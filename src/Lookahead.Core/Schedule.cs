using System;
using System.Globalization;

namespace Lookahead;

/// <summary>
/// A hyperparameter as a function of the step. <see cref="At"/> takes the step being taken, t = 1, 2, …;
/// the formulas below are written in e = t − 1, the number of steps taken before it (torch's scheduler
/// epoch, optax's count), so a schedule here and the torch scheduler of the same name give the same value
/// for the same optimizer step.
/// </summary>
/// <remarks>Use one in any hyperparameter with <see cref="Transforms.Scheduled"/> (the transform is rebuilt
/// with the step's values; the state carries over), or as a factor with <see cref="Transforms.ScaleBySchedule(Schedule)"/>.</remarks>
public sealed class Schedule
{
    readonly Func<long, double> _value;

    Schedule(string name, Func<long, double> value) { Name = name; _value = value; }

    /// <summary>A description, e.g. <c>cosine(peak=0.001, steps=1000, final=0)</c>.</summary>
    public string Name { get; }

    /// <summary>The value at step <paramref name="t"/> (1, 2, …).</summary>
    public double At(long t)
    {
        if (t < 1) throw new ArgumentOutOfRangeException(nameof(t), t, $"{Name}: steps count from 1; got t = {t}");
        return _value(t - 1);
    }

    /// <summary>The schedule as a function of t.</summary>
    public Func<long, double> AsFunction() => At;

    /// <inheritdoc />
    public override string ToString() => Name;

    static string F(double x) => x.ToString("g6", CultureInfo.InvariantCulture);

    /// <summary>A custom schedule from a function of t (1, 2, …).</summary>
    public static Schedule Of(Func<long, double> valueAtStep, string name = "custom")
    {
        ArgumentNullException.ThrowIfNull(valueAtStep);
        return new(name, e => valueAtStep(e + 1));
    }

    /// <summary>The same value at every step.</summary>
    public static Schedule Constant(double value)
    {
        Check.Finite(value, nameof(value));
        return new($"constant({F(value)})", _ => value);
    }

    /// <summary>Linear warm-up: start + (peak − start)·min(e, W)/W, then peak (torch's LinearLR, optax's linear_schedule).</summary>
    /// <param name="peak">The value reached after <paramref name="warmupSteps"/> steps.</param>
    /// <param name="warmupSteps">W ≥ 1.</param>
    /// <param name="start">The value at the first step; default 0.</param>
    public static Schedule LinearWarmup(double peak, long warmupSteps, double start = 0)
    {
        Check.Finite(peak, nameof(peak)); Check.Finite(start, nameof(start)); Check.AtLeast(warmupSteps, 1, nameof(warmupSteps));
        return new($"linear_warmup(start={F(start)}, peak={F(peak)}, steps={warmupSteps})",
            e => start + (peak - start) * Math.Min(e, warmupSteps) / warmupSteps);
    }

    /// <summary>
    /// Cosine decay (Loshchilov &amp; Hutter's SGDR without restarts; torch's CosineAnnealingLR over one half
    /// period): final + (peak − final)·(1 + cos(π·e/T))/2 for e ≤ T, then final; with an optional linear
    /// warm-up from 0 over the first <paramref name="warmupSteps"/> steps, the cosine then spanning the rest.
    /// </summary>
    /// <param name="peak">The starting (post-warm-up) value.</param>
    /// <param name="totalSteps">T ≥ 1, warm-up included.</param>
    /// <param name="final">The value from step T on; default 0.</param>
    /// <param name="warmupSteps">Linear warm-up length, 0 ≤ W &lt; T; default 0.</param>
    public static Schedule Cosine(double peak, long totalSteps, double final = 0, long warmupSteps = 0)
    {
        Check.Finite(peak, nameof(peak)); Check.Finite(final, nameof(final)); Check.AtLeast(totalSteps, 1, nameof(totalSteps));
        Check.AtLeast(warmupSteps, 0, nameof(warmupSteps));
        if (warmupSteps >= totalSteps) throw new ArgumentOutOfRangeException(nameof(warmupSteps), warmupSteps, $"warmupSteps = {warmupSteps} must be below totalSteps = {totalSteps}");
        long span = totalSteps - warmupSteps;
        return new($"cosine(peak={F(peak)}, steps={totalSteps}, final={F(final)}, warmup={warmupSteps})", e =>
        {
            if (e < warmupSteps) return peak * e / warmupSteps;
            long k = Math.Min(e - warmupSteps, span);
            return final + (peak - final) * (1 + Math.Cos(Math.PI * k / span)) / 2;
        });
    }

    /// <summary>Step decay (torch's StepLR): initial·γ^⌊e/stepSize⌋.</summary>
    /// <param name="initial">The first value.</param>
    /// <param name="stepSize">Steps between decays, ≥ 1.</param>
    /// <param name="gamma">γ, the factor per decay, finite.</param>
    public static Schedule Step(double initial, long stepSize, double gamma)
    {
        Check.Finite(initial, nameof(initial)); Check.AtLeast(stepSize, 1, nameof(stepSize)); Check.Finite(gamma, nameof(gamma));
        return new($"step(initial={F(initial)}, every={stepSize}, gamma={F(gamma)})", e => initial * Math.Pow(gamma, e / stepSize));
    }

    /// <summary>
    /// One-cycle (Smith &amp; Topin 2019; torch's OneCycleLR with cosine annealing, two phases): from
    /// max/<paramref name="divFactor"/> up to <paramref name="maxValue"/> over the first
    /// <paramref name="pctStart"/> of the steps, then down to max/(divFactor·finalDivFactor) at the last step.
    /// </summary>
    /// <param name="maxValue">The peak.</param>
    /// <param name="totalSteps">Steps in the cycle, ≥ 2.</param>
    /// <param name="pctStart">Fraction of the cycle spent rising, in (0, 1); default 0.3.</param>
    /// <param name="divFactor">Initial value = max/divFactor; &gt; 0, default 25.</param>
    /// <param name="finalDivFactor">Final value = initial/finalDivFactor; &gt; 0, default 1e4.</param>
    public static Schedule OneCycle(double maxValue, long totalSteps, double pctStart = 0.3, double divFactor = 25, double finalDivFactor = 1e4)
    {
        Check.Finite(maxValue, nameof(maxValue)); Check.AtLeast(totalSteps, 2, nameof(totalSteps));
        if (!(pctStart > 0 && pctStart < 1)) throw new ArgumentOutOfRangeException(nameof(pctStart), pctStart, $"pctStart = {pctStart} is outside its valid range (0, 1)");
        Check.Positive(divFactor, nameof(divFactor)); Check.Positive(finalDivFactor, nameof(finalDivFactor));
        double initial = maxValue / divFactor, min = initial / finalDivFactor;
        double riseEnd = pctStart * totalSteps - 1, end = totalSteps - 1;
        static double Anneal(double from, double to, double pct) => to + (from - to) / 2 * (Math.Cos(Math.PI * pct) + 1);
        return new($"one_cycle(max={F(maxValue)}, steps={totalSteps}, pct_start={F(pctStart)}, div={F(divFactor)}, final_div={F(finalDivFactor)})", e =>
        {
            if (e <= riseEnd) return Anneal(initial, maxValue, riseEnd <= 0 ? 1 : e / riseEnd);
            return Anneal(maxValue, min, Math.Min(1, (e - riseEnd) / (end - riseEnd)));
        });
    }

    /// <summary>
    /// Warmup–stable–decay ("trapezoidal"; Hu et al. 2024, MiniCPM): linear from 0 to peak over
    /// <paramref name="warmupSteps"/>, constant for <paramref name="stableSteps"/>, linear down to
    /// <paramref name="final"/> over <paramref name="decaySteps"/>, then final.
    /// </summary>
    public static Schedule WarmupStableDecay(double peak, long warmupSteps, long stableSteps, long decaySteps, double final = 0)
    {
        Check.Finite(peak, nameof(peak)); Check.Finite(final, nameof(final));
        Check.AtLeast(warmupSteps, 0, nameof(warmupSteps)); Check.AtLeast(stableSteps, 0, nameof(stableSteps)); Check.AtLeast(decaySteps, 1, nameof(decaySteps));
        return new($"wsd(peak={F(peak)}, warmup={warmupSteps}, stable={stableSteps}, decay={decaySteps}, final={F(final)})", e =>
        {
            if (e < warmupSteps) return peak * e / warmupSteps;
            long d = e - warmupSteps - stableSteps;
            if (d <= 0) return peak;
            return peak + (final - peak) * Math.Min(d, decaySteps) / decaySteps;
        });
    }
}

public static partial class Transforms
{
    /// <summary>Scales the updates by a schedule: u ← s(t)·u.</summary>
    public static IGradientTransformation ScaleBySchedule(Schedule schedule) =>
        ScaleBySchedule(Check.NotNull(schedule, nameof(schedule)).AsFunction(), schedule.Name);
}
