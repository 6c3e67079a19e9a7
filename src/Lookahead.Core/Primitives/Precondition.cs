using System.Runtime.CompilerServices;
using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>Where the outer ε of <see cref="Transforms.Precondition"/> is added.</summary>
public enum EpsilonPlacement
{
    /// <summary>On the bias-corrected root: D = sqrt(v̂) + ε (torch Adam, AdamW, NAdam, RMSprop, Adagrad).</summary>
    Corrected,
    /// <summary>On the uncorrected root: D = (sqrt(v) + ε)/sqrt(1−β₂ᵗ) (torch RAdam, MARS-M's AdamW branch).</summary>
    Uncorrected,
}

/// <summary>Variance rectification of <see cref="Transforms.Precondition"/>.</summary>
public enum Rectification
{
    /// <summary>None.</summary>
    None,
    /// <summary>
    /// RAdam (Liu et al. 2020): with ρ∞ = 2/(1−β₂)−1 and ρₜ = ρ∞ − 2tβ₂ᵗ/(1−β₂ᵗ), the output is the
    /// numerator alone while ρₜ ≤ 5, and numerator·rₜ/D after, rₜ = sqrt((ρₜ−4)(ρₜ−2)ρ∞/((ρ∞−4)(ρ∞−2)ρₜ)).
    /// </summary>
    RAdam,
}

/// <summary>Settings of the diagonal second-moment preconditioner (<see cref="Transforms.Precondition"/>).</summary>
public sealed record PreconditionOptions
{
    /// <summary>β₂ ∈ [0, 1]: decay of the second moment; default 0.999.</summary>
    public double Decay { get; init; } = 0.999;
    /// <summary>True: v ← β₂·v + (1−β₂)·g² (Adam, RMSprop). False: v ← β₂·v + g² (undamped; with β₂ = 1 Adagrad's sum).</summary>
    public bool Damped { get; init; } = true;
    /// <summary>Divide v by 1−β₂ᵗ (Adam). Needs a damped moment with β₂ &lt; 1.</summary>
    public bool BiasCorrection { get; init; } = true;
    /// <summary>AMSGrad: divide by the running maximum of v instead of v.</summary>
    public bool AmsGrad { get; init; }
    /// <summary>ε outside the root; ≥ 0, default 1e-8.</summary>
    public double Epsilon { get; init; } = 1e-8;
    /// <summary>Where the outer ε goes; default <see cref="EpsilonPlacement.Corrected"/>.</summary>
    public EpsilonPlacement EpsilonPlacement { get; init; } = EpsilonPlacement.Corrected;
    /// <summary>ε inside the root, D = sqrt(v̂ + ε_root) + ε; ≥ 0, default 0.</summary>
    public double EpsilonRoot { get; init; }
    /// <summary>Centered (RMSprop): subtract the square of an EMA of g from v. Needs a damped moment.</summary>
    public bool Centered { get; init; }
    /// <summary>Initial value of v (Adagrad's <c>initial_accumulator_value</c>); ≥ 0, default 0.</summary>
    public double InitialValue { get; init; }
    /// <summary>Initial value of the running maximum (AMSGrad); null means <see cref="InitialValue"/>. ARSG starts it at ε so that ε acts as a floor of the denominator.</summary>
    public double? MaxInitialValue { get; init; }
    /// <summary>
    /// ν₂ of QHAdam (Ma &amp; Yarats 2019): the denominator uses ν₂·v̂ + (1−ν₂)·g² in place of v̂ (the lookahead
    /// shift applied to the second moment); finite, default 1.
    /// </summary>
    public double SecondMomentNu { get; init; } = 1;
    /// <summary>Variance rectification; default none.</summary>
    public Rectification Rectification { get; init; } = Rectification.None;

    // Tensor hyperparameters (Hyper) for β₂ and ε, set by the optimizers' Hyper overloads. A tensor applies while its
    // value is the option's (a `with { Decay = … }` that changes the number leaves the tensor behind).
    internal Hyper? DecayHyper { get; init; }
    internal Hyper? EpsilonHyper { get; init; }
    internal Hyper Beta2 => DecayHyper is { } h && h.Value == Decay ? h : Decay;
    internal Hyper Eps => EpsilonHyper is { } h && h.Value == Epsilon ? h : Epsilon;
}

public static partial class Transforms
{
    /// <summary>
    /// Diagonal second-moment preconditioner: v ← β₂·v + c·g² from the incoming updates g (c = 1−β₂
    /// damped, 1 undamped), then u ← N(g) / D where N is the <paramref name="numerator"/> transform
    /// (identity by default) and D = sqrt(v̂ + ε_root) + ε, v̂ = v/(1−β₂ᵗ) with bias correction, v
    /// replaced by its running maximum for AMSGrad and by v − (EMA of g)² when centered.
    /// </summary>
    /// <remarks>
    /// Adam (Kingma &amp; Ba 2015) is this with N = <c>Ema</c>(β₁, debias); RMSprop (Tieleman &amp;
    /// Hinton 2012) with N = identity and no bias correction; Adagrad (Duchi et al. 2011) with an
    /// undamped sum (β₂ = 1); AMSGrad (Reddi et al. 2018) with <see cref="PreconditionOptions.AmsGrad"/>.
    /// The numerator is a transform rather than a chain predecessor because v must see the raw g.
    /// </remarks>
    /// <param name="options">See <see cref="PreconditionOptions"/>.</param>
    /// <param name="numerator">N; null means identity.</param>
    public static IGradientTransformation Precondition(PreconditionOptions options, IGradientTransformation? numerator = null)
    {
        DiagonalPreconditioner.CheckOptions(options);
        return new PreconditionTransform(options, numerator ?? Identity());
    }
}

sealed class PreconditionTransform : DeclaredTransform, IComposite, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    readonly PreconditionOptions o;
    readonly IGradientTransformation numerator;
    // Slots, in leaf order: count, nu, [nu_max], [mean] (the diagonal's), then numerator.
    readonly StateLayout _layout;
    readonly DiagonalPreconditioner _diagonal;
    readonly Slot<IOptState> _numerator;

    public PreconditionTransform(PreconditionOptions options, IGradientTransformation numerator)
    {
        o = options;
        this.numerator = numerator;
        _layout = new StateLayout("precondition");
        _diagonal = new DiagonalPreconditioner(options, _layout);
        _numerator = _layout.Child("numerator", numerator.Init);
        _layout.Seal();
    }

    protected override StateLayout Declare() => _layout;

    public IEnumerable<IGradientTransformation> Children => new[] { numerator };

    public override Spec Spec => Spec.FromRecord("precondition", o).With("numerator", numerator);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        var accumulated = _diagonal.Accumulate(updates, state);
        if (o.SecondMomentNu == 1)
        {
            var next = accumulated.With(_numerator, InPlace.Step(numerator, updates, state.Get(_numerator), parameters, context));
            _diagonal.Divide(updates, next);
            return next;
        }
        // QHAdam's D needs the raw g: build it before the numerator overwrites the buffer, divide after.
        var groups = _diagonal.Groups(updates, accumulated);
        var denominators = DiagonalPreconditioner.Rent(groups);
        try
        {
            long t = accumulated.Get(_diagonal.Count);
            Kernels.Elementwise.Run(new DiagonalPreconditioner.DenominatorOnly(_diagonal, _diagonal.SqrtCorrection(t)), groups, denominators);
            var next = accumulated.With(_numerator, InPlace.Step(numerator, updates, state.Get(_numerator), parameters, context));
            var quotients = new Tensor[groups.Count][];
            for (int k = 0; k < groups.Count; k++) quotients[k] = new[] { groups[k][0] };
            Kernels.Elementwise.Run(default(DiagonalPreconditioner.DivideBy), quotients, denominators);
            return next;
        }
        finally { DiagonalPreconditioner.Return(denominators); }
    }
}

/// <summary>
/// The arithmetic of the diagonal second-moment preconditioner, written once and shared by
/// <see cref="Transforms.Precondition"/> and <see cref="Transforms.PolyakTruncation"/> (MoMo-Adam's D): the
/// public surface through which a transform of your own can compose Adam's D.
/// </summary>
/// <remarks>
/// <para>It owns no state: it declares its slots into a <see cref="StateLayout"/> it is given (in this order:
/// <c>count</c>; <c>nu</c>, v; <c>nu_max</c>, the running maximum of v, only with AMSGrad; <c>mean</c>, the EMA
/// of g, only when centered) and reads and writes them in a <see cref="DeclaredState"/> of that layout. The
/// owner may declare further slots after these (the precondition's numerator).</para>
/// <para>A step is <see cref="Accumulate"/> on the raw g (the moments, in place, and the count), then
/// <see cref="Divide"/> of whatever the owner wants preconditioned, u ← u/D at the new count. Both run in
/// place over <see cref="Buffers"/> groups, so they serve the pure path and the runner alike.</para>
/// </remarks>
public sealed class DiagonalPreconditioner
{
    readonly PreconditionOptions o;

    /// <summary>Refuses options that no preconditioner can run, naming the option (<see cref="Transforms.Precondition"/> uses it too).</summary>
    public static void CheckOptions(PreconditionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Check.Unit(options.Decay, "Decay", "second-moment decay β₂");
        Check.NonNegative(options.Epsilon, "Epsilon");
        Check.NonNegative(options.EpsilonRoot, "EpsilonRoot");
        Check.NonNegative(options.InitialValue, "InitialValue");
        if (options.MaxInitialValue is double m) Check.NonNegative(m, "MaxInitialValue");
        Check.Finite(options.SecondMomentNu, "SecondMomentNu");
        if (options.MaxInitialValue is not null && !options.AmsGrad)
            throw new ArgumentException("MaxInitialValue needs AmsGrad = true (it starts the running maximum)", nameof(options));
        if (options.SecondMomentNu != 1 && (options.Centered || options.Rectification != Rectification.None || options.AmsGrad))
            throw new ArgumentException($"SecondMomentNu = {options.SecondMomentNu} cannot be combined with Centered, AmsGrad or a rectification", nameof(options));
        if (options.BiasCorrection && (!options.Damped || options.Decay >= 1))
            throw new ArgumentException($"BiasCorrection needs a damped second moment with Decay in [0, 1); got Damped = {options.Damped}, Decay = {options.Decay}", nameof(options));
        if (options.Centered && !options.Damped)
            throw new ArgumentException("Centered needs a damped second moment (the mean is an EMA with the same decay)", nameof(options));
        if (options.Rectification == Rectification.RAdam && (!options.Damped || options.Decay >= 1 || options.Decay <= 0))
            throw new ArgumentException($"RAdam rectification needs a damped second moment with Decay in (0, 1); got Decay = {options.Decay}", nameof(options));
    }

    /// <summary>Declares the moments of <paramref name="options"/> into <paramref name="layout"/> (which must not be sealed yet).</summary>
    public DiagonalPreconditioner(PreconditionOptions options, StateLayout layout)
    {
        CheckOptions(options);
        ArgumentNullException.ThrowIfNull(layout);
        o = options;
        Count = layout.Integer("count");
        SecondMoment = layout.PerParameter("nu", SlotStart.Fill(options.InitialValue));
        if (options.AmsGrad) MaxSecondMoment = layout.PerParameter("nu_max", SlotStart.Fill(options.MaxInitialValue ?? options.InitialValue));
        if (options.Centered) Mean = layout.PerParameter("mean", SlotStart.Zeros);
    }

    /// <summary>Steps taken so far (the t of the bias correction and the rectification).</summary>
    public Slot<long> Count { get; }

    /// <summary>v.</summary>
    public Slot<TensorTree> SecondMoment { get; }

    /// <summary>The running maximum of v (AMSGrad), else null (not declared).</summary>
    public Slot<TensorTree>? MaxSecondMoment { get; }

    /// <summary>The EMA of g (centered), else null (not declared).</summary>
    public Slot<TensorTree>? Mean { get; }

    /// <summary>The moment updates from the raw <paramref name="g"/>, in place on the state's tensors; returns the state at the new count.</summary>
    public DeclaredState Accumulate(TensorTree g, DeclaredState state)
    {
        Hyper beta = o.Beta2;
        var v = state.Get(SecondMoment);
        var kernel = new Moments(this);
        // Over (g, v, [mean], [v_max]).
        if (Mean is null && MaxSecondMoment is null) Kernels.Elementwise.Run(kernel, g, v);
        else if (MaxSecondMoment is null) Kernels.Elementwise.Run(kernel, g, v, state.Get(Mean!));
        else if (Mean is null) Kernels.Elementwise.Run(kernel, g, v, state.Get(MaxSecondMoment));
        else Kernels.Elementwise.Run(kernel, g, v, state.Get(Mean), state.Get(MaxSecondMoment));
        return state.With(Count, state.Get(Count) + 1);
    }

    /// <summary>Over (g, v, [mean], [v_max]).</summary>
    readonly struct Moments(DiagonalPreconditioner d) : Kernels.IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray> => d.AccumulateKernel(ops, a);
    }

    /// <summary>The moment updates on one block of (g, v, [mean], [v_max]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void AccumulateKernel<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray>
    {
        Hyper beta = o.Beta2;
        Kernels.Moments.AccumulateSquare(ops, a[1], a[0], beta, o.Damped ? 1 - beta : (Hyper)1);
        if (Mean is not null) Kernels.Moments.Accumulate(ops, a[2], a[0], beta, 1 - beta);
        if (MaxSecondMoment is not null) Kernels.Moments.RunningMax(ops, a[^1], a[1]);
    }

    /// <summary>u ← u/D at the state's count (u·rₜ/D, or u itself, under a rectification), in place.</summary>
    public void Divide(TensorTree u, DeclaredState state)
    {
        long t = state.Get(Count);
        if (Rectifier(t) is not double rect) return;
        var groups = Groups(u, state);
        var denominators = Rent(groups);
        try { Kernels.Elementwise.Run(new Quotient(this, SqrtCorrection(t), rect, into: false), groups, denominators); }
        finally { Return(denominators); }
    }

    /// <summary>
    /// <paramref name="into"/> ← u/D at the state's count (u·rₜ/D, or u itself, under a rectification), with u
    /// unchanged: a preconditioned copy (Polyak's D⁻¹d). <paramref name="into"/> is shaped like u.
    /// </summary>
    public void DivideInto(TensorTree u, TensorTree into, DeclaredState state)
    {
        u.CheckMatches(into, nameof(into), nameof(u));
        long t = state.Get(Count);
        if (Rectifier(t) is not double rect)
        {
            Kernels.Elementwise.Run(default(Kernels.CopyOutKernel), u, into);
            return;
        }
        var v = state.Get(MaxSecondMoment ?? SecondMoment);
        var groups = Mean is null ? Buffers.Groups(u, v, into) : Buffers.Groups(u, v, state.Get(Mean), into);
        var denominators = Rent(groups);
        try { Kernels.Elementwise.Run(new Quotient(this, SqrtCorrection(t), rect, into: true), groups, denominators); }
        finally { Return(denominators); }
    }

    /// <summary>RAdam's rₜ (1 without a rectification), or null where the rectified step skips D.</summary>
    double? Rectifier(long t)
    {
        if (o.Rectification != Rectification.RAdam) return 1;
        double beta = o.Decay, rhoInf = 2 / (1 - beta) - 1, betaT = Math.Pow(beta, t);
        double rhoT = rhoInf - 2 * t * betaT / (1 - betaT);
        if (rhoT <= 5) return null;
        return Math.Sqrt((rhoT - 4) * (rhoT - 2) * rhoInf / ((rhoInf - 4) * (rhoInf - 2) * rhoT));
    }

    /// <summary>One scratch buffer per group, shaped like its first array (give them back with <see cref="Return"/>).</summary>
    internal static Tensor[] Rent(IReadOnlyList<Tensor[]> groups)
    {
        var scratch = Buffers.RentArray(groups.Count);
        for (int k = 0; k < groups.Count; k++) scratch[k] = Buffers.Rent(groups[k][0]);
        return scratch;
    }

    internal static void Return(Tensor[] scratch)
    {
        foreach (var s in scratch) if (s is not null) Buffers.Return(s);
        Buffers.ReturnArray(scratch);
    }

    /// <summary>Over (u, v or v_max, [mean], [into], scratch): u ← u/D (·r), or into ← u/D (·r) with u unchanged.</summary>
    readonly struct Quotient(DiagonalPreconditioner d, Hyper sqrtCorrection, double rect, bool into) : Kernels.IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray>
        {
            bool centered = d.Mean is not null;
            var target = into ? ops.Copy(a[^2], a[0]) : a[0];
            var denom = d.Denominator(ops, a[^1], a[1], centered, centered ? a[2] : a[1], a[0], sqrtCorrection);
            ops.DivBy(target, denom);
            if (rect != 1) ops.Mul(target, rect);
        }
    }

    /// <summary>Over (g, v, [mean], scratch): scratch ← D, read from the raw g (QHAdam's D, built before the numerator overwrites g).</summary>
    internal readonly struct DenominatorOnly(DiagonalPreconditioner d, Hyper sqrtCorrection) : Kernels.IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray> =>
            d.Denominator(ops, a[^1], a[1], d.Mean is not null, d.Mean is not null ? a[2] : a[1], a[0], sqrtCorrection);
    }

    /// <summary>Over (u, D): u ← u/D.</summary>
    internal readonly struct DivideBy : Kernels.IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, Kernels.IArrayOps<TArray> => ops.DivBy(a[0], a[1]);
    }

    /// <summary>The index-aligned groups a denominator reads: (u, v or v_max, [mean]).</summary>
    internal IReadOnlyList<Tensor[]> Groups(TensorTree u, DeclaredState state)
    {
        var v = state.Get(MaxSecondMoment ?? SecondMoment);
        return Mean is null ? Buffers.Groups(u, v) : Buffers.Groups(u, v, state.Get(Mean));
    }


    /// <summary>√(1 − βᵗ) at count <paramref name="t"/> (1 without bias correction): computed once per step, outside the kernels.</summary>
    internal Hyper SqrtCorrection(long t) => o.BiasCorrection ? Hyper.Sqrt(1 - Hyper.Pow(o.Beta2, t)) : 1;

    /// <summary>
    /// D on one block into <paramref name="denom"/>, from v (or v_max), the centred mean (read only when
    /// <paramref name="centered"/>), and g (read only when
    /// ν₂ ≠ 1): the elementwise kernel behind <see cref="Divide"/>, over any <see cref="Kernels.IArrayOps{TArray}"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal TArray Denominator<TArray, TOps>(TOps ops, TArray denom, TArray v, bool centered, TArray mean, TArray g, Hyper sqrtCorrection) where TOps : struct, Kernels.IArrayOps<TArray>
    {
        double nu = o.SecondMomentNu;
        if (!centered && nu == 1 && o.EpsilonRoot == 0) ops.SqrtOf(denom, v);   // Adam's case: √v in one pass
        else
        {
            ops.Copy(denom, v);
            // v − ḡ² ≥ 0 in exact arithmetic; rounding (or an FMA) can leave it a hair below zero, where
            // torch's sqrt gives NaN. Clamping at 0 differs from torch only where torch would return NaN.
            if (centered) ops.ClampMin(ops.AddProduct(denom, mean, mean, -1), 0);
            if (nu != 1)
            {
                ops.AddProduct(ops.Mul(Kernels.Coefficients.Div(ops, denom, sqrtCorrection * sqrtCorrection), nu), g, g, 1 - nu);
                if (o.EpsilonRoot != 0) ops.Add(denom, o.EpsilonRoot);   // v̂ is already corrected here
                return Kernels.Coefficients.Add(ops, ops.Sqrt(denom), o.Eps);
            }
            if (o.EpsilonRoot != 0) Kernels.Coefficients.Add(ops, denom, o.EpsilonPlacement == EpsilonPlacement.Corrected ? o.EpsilonRoot * sqrtCorrection * sqrtCorrection : (Hyper)o.EpsilonRoot);
            ops.Sqrt(denom);
        }
        return o.EpsilonPlacement == EpsilonPlacement.Corrected
            ? Kernels.Coefficients.DivAdd(ops, denom, sqrtCorrection, o.Eps)
            : Kernels.Coefficients.Div(ops, Kernels.Coefficients.Add(ops, denom, o.Eps), sqrtCorrection);
    }
}
