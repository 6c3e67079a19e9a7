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
    /// Adam (Kingma &amp; Ba 2015) is this with N = <see cref="Ema"/>(β₁, debias); RMSprop (Tieleman &amp;
    /// Hinton 2012) with N = identity and no bias correction; Adagrad (Duchi et al. 2011) with an
    /// undamped sum (β₂ = 1); AMSGrad (Reddi et al. 2018) with <see cref="PreconditionOptions.AmsGrad"/>.
    /// The numerator is a transform rather than a chain predecessor because v must see the raw g.
    /// </remarks>
    /// <param name="options">See <see cref="PreconditionOptions"/>.</param>
    /// <param name="numerator">N; null means identity.</param>
    public static IGradientTransformation Precondition(PreconditionOptions options, IGradientTransformation? numerator = null)
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
        return new PreconditionTransform(options, numerator ?? Identity());
    }
}

/// <summary>State of <see cref="Transforms.Precondition"/>.</summary>
/// <param name="Count">Steps taken so far.</param>
/// <param name="SecondMoment">v.</param>
/// <param name="MaxSecondMoment">Running maximum of v (AMSGrad), else null.</param>
/// <param name="Mean">EMA of g (centered), else null.</param>
/// <param name="Numerator">State of the numerator transform.</param>
public sealed record PreconditionState(long Count, TensorTree SecondMoment, TensorTree? MaxSecondMoment, TensorTree? Mean, IOptState Numerator) : IOptState
{
    /// <inheritdoc />
    public IEnumerable<StateLeaf> Leaves()
    {
        yield return OptState.Scalar("count", Count);
        foreach (var l in OptState.Tree("nu", SecondMoment)) yield return l;
        if (MaxSecondMoment is not null) foreach (var l in OptState.Tree("nu_max", MaxSecondMoment)) yield return l;
        if (Mean is not null) foreach (var l in OptState.Tree("mean", Mean)) yield return l;
        foreach (var l in OptState.Nested("numerator", Numerator)) yield return l;
    }

    /// <inheritdoc />
    public IOptState MapTensors(Func<string, Tensor, Tensor> f) => this with
    {
        SecondMoment = OptState.MapTree("nu", SecondMoment, f),
        MaxSecondMoment = MaxSecondMoment is null ? null : OptState.MapTree("nu_max", MaxSecondMoment, f),
        Mean = Mean is null ? null : OptState.MapTree("mean", Mean, f),
        Numerator = OptState.MapNested("numerator", Numerator, f),
    };

    /// <inheritdoc />
    public IOptState MapScalars(Func<string, double, double> f) =>
        this with { Count = OptState.Integer("count", Count, f), Numerator = OptState.MapNestedScalars("numerator", Numerator, f) };
}

sealed class PreconditionTransform(PreconditionOptions o, IGradientTransformation numerator) : Transform<PreconditionState>, IComposite
{
    public IEnumerable<IGradientTransformation> Children => new[] { numerator };

    public override Spec Spec => Spec.FromRecord("precondition", o).With("numerator", numerator);

    protected override PreconditionState InitState(TensorTree parameters) => new(
        0,
        Filled(parameters, o.InitialValue),
        o.AmsGrad ? Filled(parameters, o.MaxInitialValue ?? o.InitialValue) : null,
        o.Centered ? parameters.ZerosLike() : null,
        numerator.Init(parameters));

    static TensorTree Filled(TensorTree parameters, double value)
    {
        using var s = value.ToScalar();
        return parameters.Map(p => full_like(p, s));
    }

    public override PreconditionState Step(TensorTree updates, PreconditionState state, TensorTree parameters, StepContext context)
    {
        var accumulated = Accumulate(updates, state, context);
        if (o.SecondMomentNu == 1)
        {
            var numeratorState = InPlace.Step(numerator, updates, state.Numerator, parameters, context);
            var next = accumulated with { Numerator = numeratorState };
            Divide(updates, next, context);
            return next;
        }
        // QHAdam's D needs the raw g: build it before the numerator overwrites the buffer, divide after.
        var groups = Buffers.Groups(Trees(updates, accumulated));
        var denominators = new Tensor[groups.Count];
        try
        {
            for (int k = 0; k < groups.Count; k++) denominators[k] = Denominator(groups[k], accumulated.Count, context);
            var next = accumulated with { Numerator = InPlace.Step(numerator, updates, state.Numerator, parameters, context) };
            for (int k = 0; k < groups.Count; k++) groups[k][0].div_(denominators[k]);
            return next;
        }
        finally
        {
            foreach (var d in denominators) if (d is not null) Buffers.Return(d);
        }
    }

    /// <summary>The moment updates from the raw g, in place on the state's tensors; returns the state at the new count.</summary>
    internal PreconditionState Accumulate(TensorTree g, PreconditionState state, StepContext context)
    {
        double beta = o.Decay;
        var trees = new List<TensorTree> { g, state.SecondMoment };
        if (state.Mean is not null) trees.Add(state.Mean);
        if (state.MaxSecondMoment is not null) trees.Add(state.MaxSecondMoment);
        foreach (var group in Buffers.Groups(trees.ToArray()))
        {
            Tensor gi = group[0], v = group[1];
            Kernels.Moments.AccumulateSquare(v, gi, beta, o.Damped ? 1 - beta : 1);
            if (state.Mean is not null) Kernels.Moments.Accumulate(group[2], gi, beta, 1 - beta);
            if (state.MaxSecondMoment is not null) Kernels.Moments.RunningMax(group[^1], v);
        }
        return state with { Count = state.Count + 1 };
    }

    /// <summary>The trees a denominator reads, index-aligned: (u, v or v_max, [mean]).</summary>
    static TensorTree[] Trees(TensorTree u, PreconditionState state) =>
        state.Mean is null ? new[] { u, state.MaxSecondMoment ?? state.SecondMoment } : new[] { u, state.MaxSecondMoment ?? state.SecondMoment, state.Mean };

    /// <summary>u ← u/D at step <c>state.Count</c> (u·rₜ/D or u itself under a rectification), in place.</summary>
    internal void Divide(TensorTree u, PreconditionState state, StepContext context)
    {
        double rect = 1;
        if (o.Rectification == Rectification.RAdam)
        {
            double beta = o.Decay, rhoInf = 2 / (1 - beta) - 1, betaT = Math.Pow(beta, state.Count);
            double rhoT = rhoInf - 2 * state.Count * betaT / (1 - betaT);
            if (rhoT <= 5) return;
            rect = Math.Sqrt((rhoT - 4) * (rhoT - 2) * rhoInf / ((rhoInf - 4) * (rhoInf - 2) * rhoT));
        }
        using var rectification = rect.ToScalar();
        foreach (var group in Buffers.Groups(Trees(u, state)))
        {
            var denom = Denominator(group, state.Count, context);
            try
            {
                group[0].div_(denom);
                if (rect != 1) group[0].mul_(rectification);
            }
            finally { Buffers.Return(denom); }
        }
    }

    /// <summary>
    /// D for one group (u, v or v_max, [mean]) in a scratch buffer the caller returns: sqrt(v)/sqrt(bc) + ε
    /// (torch Adam's order), or (sqrt(v) + ε)/sqrt(bc) (ε on the uncorrected root), with ε_root inside the
    /// root, centering, and QHAdam's sqrt(ν₂·v̂ + (1−ν₂)·g²) + ε where u still holds g.
    /// </summary>
    Tensor Denominator(Tensor[] group, long t, StepContext context)
    {
        double sqrtCorrection = o.BiasCorrection ? Math.Sqrt(1 - Math.Pow(o.Decay, t)) : 1;
        double nu = o.SecondMomentNu;
        using Scalar minusOne = (-1.0).ToScalar(), zero = 0.0.ToScalar(), eps = o.Epsilon.ToScalar(),
            correction = sqrtCorrection.ToScalar(), squareCorrection = (sqrtCorrection * sqrtCorrection).ToScalar(),
            sNu = nu.ToScalar(), sOneMinusNu = (1 - nu).ToScalar(),
            epsRoot = (o.EpsilonPlacement == EpsilonPlacement.Corrected ? o.EpsilonRoot * sqrtCorrection * sqrtCorrection : o.EpsilonRoot).ToScalar(),
            epsRootCorrected = o.EpsilonRoot.ToScalar();
        var denom = Buffers.Rent(group[0]).copy_(group[1]);
        // v − ḡ² ≥ 0 in exact arithmetic; rounding (or an FMA) can leave it a hair below zero, where
        // torch's sqrt gives NaN. Clamping at 0 differs from torch only where torch would return NaN.
        if (group.Length > 2) denom.addcmul_(group[2], group[2], value: minusOne).clamp_min_(zero);
        if (nu != 1)
        {
            var g = group[0];
            denom.div_(squareCorrection).mul_(sNu).addcmul_(g, g, value: sOneMinusNu);
            if (o.EpsilonRoot != 0) denom.add_(epsRootCorrected);   // v̂ is already corrected here
            return denom.sqrt_().add_(eps);
        }
        if (o.EpsilonRoot != 0) denom.add_(epsRoot);
        denom.sqrt_();
        return o.EpsilonPlacement == EpsilonPlacement.Corrected ? denom.div_(correction).add_(eps) : denom.add_(eps).div_(correction);
    }
}
