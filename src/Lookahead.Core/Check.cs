using System;
using System.Globalization;

namespace Lookahead;

/// <summary>Validation of hyperparameters at construction time. Each error names the argument, its value and the valid range.</summary>
public static class Check
{
    static string F(double x) => x.ToString("R", CultureInfo.InvariantCulture);

    static ArgumentOutOfRangeException Fail(string name, double value, string range, string? what) =>
        new(name, value, $"{name} = {F(value)} is outside its valid range {range}{(what is null ? "" : $" ({what})")}");

    /// <summary>Requires a finite value.</summary>
    public static double Finite(double value, string name, string? what = null) =>
        double.IsFinite(value) ? value : throw Fail(name, value, "(-∞, ∞), finite", what);

    /// <summary>Requires a finite value ≥ 0.</summary>
    public static double NonNegative(double value, string name, string? what = null) =>
        double.IsFinite(value) && value >= 0 ? value : throw Fail(name, value, "[0, ∞)", what);

    /// <summary>Requires a finite value &gt; 0.</summary>
    public static double Positive(double value, string name, string? what = null) =>
        double.IsFinite(value) && value > 0 ? value : throw Fail(name, value, "(0, ∞)", what);

    /// <summary>Requires 0 ≤ value &lt; 1.</summary>
    public static double UnitOpen(double value, string name, string? what = null) =>
        value >= 0 && value < 1 ? value : throw Fail(name, value, "[0, 1)", what);

    /// <summary>Requires 0 ≤ value ≤ 1.</summary>
    public static double Unit(double value, string name, string? what = null) =>
        value >= 0 && value <= 1 ? value : throw Fail(name, value, "[0, 1]", what);

    // The same checks of a hyperparameter's value (a tensor hyperparameter passes through unchanged).

    /// <summary>Requires a finite value.</summary>
    internal static Hyper Finite(Hyper value, string name, string? what = null) { Finite(value.Value, name, what); return value; }

    /// <summary>Requires a finite value ≥ 0.</summary>
    internal static Hyper NonNegative(Hyper value, string name, string? what = null) { NonNegative(value.Value, name, what); return value; }

    /// <summary>Requires 0 ≤ value &lt; 1.</summary>
    internal static Hyper UnitOpen(Hyper value, string name, string? what = null) { UnitOpen(value.Value, name, what); return value; }

    /// <summary>Requires 0 ≤ value ≤ 1.</summary>
    internal static Hyper Unit(Hyper value, string name, string? what = null) { Unit(value.Value, name, what); return value; }

    /// <summary>Requires a finite value ≤ <paramref name="max"/>.</summary>
    public static double AtMost(double value, double max, string name, string? what = null) =>
        double.IsFinite(value) && value <= max ? value : throw Fail(name, value, $"(-∞, {F(max)}]", what);

    /// <summary>Requires an integer ≥ <paramref name="min"/>.</summary>
    public static long AtLeast(long value, long min, string name, string? what = null) =>
        value >= min ? value : throw new ArgumentOutOfRangeException(name, value,
            $"{name} = {value} is outside its valid range [{min}, ∞){(what is null ? "" : $" ({what})")}");

    /// <summary>Requires a non-null argument.</summary>
    public static T NotNull<T>(T? value, string name) where T : class =>
        value ?? throw new ArgumentNullException(name, $"{name} must not be null");
}
