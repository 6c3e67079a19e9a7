using System;
using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>
/// A hyperparameter's value: a number, or a number that is also a 0-d tensor gradients can reach. Optimizers built
/// with tensor hyperparameters (<see cref="Of"/>) are the same optimizers as with their values on every path (the
/// pure update, the runner, checkpoints); under <see cref="Differentiable"/> the step's coefficients are computed from
/// the tensors, so that a learning rate, a β, a weight decay or a lookahead factor receives a gradient through the
/// unrolled steps.
/// </summary>
/// <remarks>
/// <para>A plain number converts implicitly (<c>Hyper h = 0.9;</c>); nothing converts back implicitly, so a tensor
/// hyperparameter is never dropped silently by an API that takes doubles.</para>
/// <para>Arithmetic on hyperparameters (1 − β, βᵗ, γβ/(1 − β), …) is done in doubles, and also on the tensors when
/// there are any (with autograd on, as new tensors that the current dispose scope tracks); the double result is what
/// every executor uses, so the values never depend on whether a tensor is attached.</para>
/// <para><b>Ownership.</b> The tensor is borrowed: <see cref="Of"/> neither copies nor disposes it, and its value is
/// read once, there (change the tensor, then build the optimizer again to use the new value). Building an optimizer
/// from tensor hyperparameters makes tensors of their arithmetic (−lr, 1 − ν, …) that belong to the dispose scope
/// current at the time: build the optimizer inside the scope that runs its recorded steps, as the examples do.</para>
/// </remarks>
public readonly struct Hyper : IEquatable<Hyper>
{
    Hyper(double value, Tensor? tensor) { Value = value; Tensor = tensor; }

    /// <summary>The value every executor uses.</summary>
    public double Value { get; }

    /// <summary>The 0-d float64 tensor gradients reach, or null for a plain number.</summary>
    public Tensor? Tensor { get; }

    /// <summary>Whether there is a tensor.</summary>
    public bool IsTensor => Tensor is not null;

    /// <summary>A plain number.</summary>
    public static implicit operator Hyper(double value) => new(value, null);

    /// <summary>
    /// A hyperparameter that is <paramref name="tensor"/> (0-d, floating point, finite; borrowed). Its value is read now.
    /// </summary>
    public static Hyper Of(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.dim() != 0) throw new ArgumentException($"a tensor hyperparameter must be 0-d (a scalar); got shape [{string.Join(", ", tensor.shape)}]", nameof(tensor));
        if (!tensor.is_floating_point()) throw new ArgumentException($"a tensor hyperparameter must be floating point; got {tensor.dtype}", nameof(tensor));
        double value;
        using (no_grad()) value = tensor.item<double>();
        if (!double.IsFinite(value)) throw new ArgumentException($"a tensor hyperparameter must be finite; got {value}", nameof(tensor));
        return new Hyper(value, tensor);
    }

    // Inside a step that does not record (the pure path, the runner), the tensors are not needed: arithmetic there
    // stays in doubles (no tensor made per step). Building an optimizer, or a recorded step, keeps them.
    [ThreadStatic] static int _numbersOnly;

    static bool KeepTensors => _numbersOnly == 0 || Kernels.Graph.Active;

    /// <summary>Until disposed, arithmetic on this thread drops tensors, unless a recorded step is running (entered by every step).</summary>
    internal static NumbersScope NumbersOnly()
    {
        bool enter = !Kernels.Graph.Active;
        if (enter) _numbersOnly++;
        return new NumbersScope(enter);
    }

    internal readonly struct NumbersScope(bool entered) : IDisposable
    {
        public void Dispose() { if (entered) _numbersOnly--; }
    }

    static Hyper Combine(Hyper a, Hyper b, double value, Func<Tensor, Tensor, Tensor> both, Func<Tensor, double, Tensor> left, Func<double, Tensor, Tensor> right)
    {
        if ((a.Tensor is null && b.Tensor is null) || !KeepTensors) return new Hyper(value, null);
        using var grad = enable_grad();
        var t = a.Tensor is not null && b.Tensor is not null ? both(a.Tensor, b.Tensor)
            : a.Tensor is not null ? left(a.Tensor, b.Value) : right(a.Value, b.Tensor!);
        return new Hyper(value, t);
    }

    static Hyper Map(Hyper a, double value, Func<Tensor, Tensor> f)
    {
        if (a.Tensor is null || !KeepTensors) return new Hyper(value, null);
        using var grad = enable_grad();
        return new Hyper(value, f(a.Tensor));
    }

    // Scalars reach TorchSharp as explicit Scalar objects disposed after the call (see Kernels.Moments).
    static Tensor AddC(Tensor x, double c) { using var s = c.ToScalar(); return x.add(s); }
    static Tensor MulC(Tensor x, double c) { using var s = c.ToScalar(); return x.mul(s); }
    static Tensor DivC(Tensor x, double c) { using var s = c.ToScalar(); return x.div(s); }
    static Tensor CMinus(double c, Tensor y) { using var s = c.ToScalar(); using var n = y.neg(); return n.add(s); }
    static Tensor COver(double c, Tensor y) { using var s = c.ToScalar(); using var r = y.reciprocal(); return r.mul(s); }

    /// <summary>a + b.</summary>
    public static Hyper operator +(Hyper a, Hyper b) => Combine(a, b, a.Value + b.Value, (x, y) => x.add(y), AddC, (c, y) => AddC(y, c));
    /// <summary>a − b.</summary>
    public static Hyper operator -(Hyper a, Hyper b) => Combine(a, b, a.Value - b.Value, (x, y) => x.sub(y), (x, c) => AddC(x, -c), CMinus);
    /// <summary>a·b.</summary>
    public static Hyper operator *(Hyper a, Hyper b) => Combine(a, b, a.Value * b.Value, (x, y) => x.mul(y), MulC, (c, y) => MulC(y, c));
    /// <summary>a / b.</summary>
    public static Hyper operator /(Hyper a, Hyper b) => Combine(a, b, a.Value / b.Value, (x, y) => x.div(y), DivC, COver);
    /// <summary>−a.</summary>
    public static Hyper operator -(Hyper a) => Map(a, -a.Value, x => x.neg());

    /// <summary>aᵗ for a step count t ≥ 0 (<see cref="Math.Pow"/> on the value).</summary>
    public static Hyper Pow(Hyper a, long t) => Pow(a, (double)t);
    /// <summary>aᵇ with a real exponent.</summary>
    public static Hyper Pow(Hyper a, double b) =>
        a.Tensor is null || !KeepTensors ? new Hyper(Math.Pow(a.Value, b), null)   // no closure on the runner's path
            : Map(a, Math.Pow(a.Value, b), x => { using var e = b.ToScalar(); return x.pow(e); });
    /// <summary>bᵉ for a number base b and a hyperparameter exponent e (the tensor as exp(e·ln b)).</summary>
    public static Hyper Pow(double b, Hyper e) =>
        e.Tensor is null || !KeepTensors ? new Hyper(Math.Pow(b, e.Value), null)
            : Map(e, Math.Pow(b, e.Value), x => { using var l = Math.Log(b).ToScalar(); using var p = x.mul(l); return p.exp(); });
    /// <summary>√a.</summary>
    public static Hyper Sqrt(Hyper a) => Map(a, Math.Sqrt(a.Value), x => x.sqrt());
    /// <summary>ln a.</summary>
    public static Hyper Log(Hyper a) => Map(a, Math.Log(a.Value), x => x.log());
    /// <summary>eᵃ.</summary>
    public static Hyper Exp(Hyper a) => Map(a, Math.Exp(a.Value), x => x.exp());

    /// <summary>The value (and the tensor's identity) are equal.</summary>
    public bool Equals(Hyper other) => Value.Equals(other.Value) && ReferenceEquals(Tensor, other.Tensor);
    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is Hyper h && Equals(h);
    /// <inheritdoc />
    public override int GetHashCode() => Value.GetHashCode();
    /// <summary>The value (with "tensor" when there is one).</summary>
    public override string ToString() => Value.ToString("R", CultureInfo.InvariantCulture) + (Tensor is null ? "" : " (tensor)");
}
