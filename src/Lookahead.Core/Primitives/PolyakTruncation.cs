using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>The model of the loss that <see cref="Transforms.PolyakTruncation"/> truncates at the lower bound.</summary>
public enum PolyakModel
{
    /// <summary>
    /// MoMo's momentum model (Schaipp et al. 2024): the average of past linearisations, with EMAs
    /// f̄ (losses), d (gradients) and γ̄ (⟨x, g⟩) of decay β.
    /// </summary>
    Momentum,
    /// <summary>The plain stochastic model f(xₖ) + ⟨gₖ, x − xₖ⟩ of SPS (Loizou et al. 2021).</summary>
    Stochastic,
}

/// <summary>How weight decay λ enters a Polyak step.</summary>
public enum WeightDecayForm
{
    /// <summary>Proximal: x ← (x − τ·D⁻¹d)/(1 + αλ) (MoMo; MoMo-Adam with <c>divide = true</c>).</summary>
    Proximal,
    /// <summary>Decoupled: x ← x(1 − αλ) − τ·D⁻¹d (MoMo-Adam with <c>divide = false</c>, the AdamW form).</summary>
    Decoupled,
}

/// <summary>Settings of <see cref="Transforms.PolyakTruncation"/>.</summary>
public sealed record PolyakOptions
{
    /// <summary>Who is asking, for error messages (e.g. "momo"); default "polyak_truncation".</summary>
    public string Name { get; init; } = "polyak_truncation";
    /// <summary>α ≥ 0: the largest step (the user's learning rate); default 1.</summary>
    public double LearningRate { get; init; } = 1;
    /// <summary>The model; default <see cref="PolyakModel.Momentum"/>.</summary>
    public PolyakModel Model { get; init; } = PolyakModel.Momentum;
    /// <summary>β ∈ [0, 1) of the momentum model's averages; default 0.9.</summary>
    public double Beta { get; init; } = 0.9;
    /// <summary>
    /// Momentum model only. False (MoMo's default): the averages start at the first values and ρ = 1.
    /// True: they start at zero and ρ = 1 − βᵏ divides the cap and multiplies the lower bound (MoMo-Adam always).
    /// </summary>
    public bool BiasCorrection { get; init; }
    /// <summary>The lower bound f* of the loss (finite); default 0.</summary>
    public double LowerBound { get; init; }
    /// <summary>Estimate the lower bound online, never below <see cref="LowerBound"/> (MoMo's <c>use_fstar</c>).</summary>
    public bool EstimateLowerBound { get; init; }
    /// <summary>Stochastic model only: truncate the gap at zero (SPS+; default) or let a negative gap step uphill (SPS).</summary>
    public bool Positive { get; init; } = true;
    /// <summary>λ ≥ 0; default 0.</summary>
    public double WeightDecay { get; init; }
    /// <summary>How λ enters; default <see cref="WeightDecayForm.Proximal"/>.</summary>
    public WeightDecayForm WeightDecayForm { get; init; } = WeightDecayForm.Proximal;
    /// <summary>A diagonal preconditioner D built from the raw gradients (MoMo-Adam: Adam's); null means D = I.</summary>
    public PreconditionOptions? Preconditioner { get; init; }
    /// <summary>Added to ‖d‖²_D before dividing (optax's SPS ε); ≥ 0, default 0.</summary>
    public double Epsilon { get; init; }
}

public static partial class Transforms
{
    /// <summary>
    /// Polyak truncation: the step τ = min(α/ρ, (h·(f̄ − ρ·f*) + ⟨x, d⟩ − h·γ̄)₊ / ‖d‖²_D), h = 1 + αλ,
    /// applied as u = −τ·D⁻¹d (then the weight decay of <see cref="PolyakOptions.WeightDecayForm"/>).
    /// It is the proximal step on a model of the loss truncated at the lower bound f*: with the momentum
    /// model it is MoMo (Schaipp et al. 2024; MoMo-Adam with Adam's D), with the stochastic model SPS/SPS+
    /// (Loizou et al. 2021; Gower et al.). Reads the loss from <see cref="ContextKeys.Loss"/>.
    /// </summary>
    /// <remarks>
    /// <para>The direction d is an <see cref="Ema"/> of g (the momentum model) or g itself; D comes from the
    /// <see cref="Precondition"/> primitive's moment kernels. ‖d‖²_D = ⟨d, D⁻¹d⟩ is summed over all tensors,
    /// so the step is global. When ‖d‖²_D = 0 the step is 0.</para>
    /// <para>All reductions stay on the parameters' device as 0-d float64 tensors: no host round trip per step.</para>
    /// <para>Updates are the whole step (the learning rate is inside): do not follow it by a scale.</para>
    /// </remarks>
    public static IGradientTransformation PolyakTruncation(PolyakOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Check.NonNegative(options.LearningRate, "LearningRate", "largest step α");
        Check.UnitOpen(options.Beta, "Beta");
        Check.Finite(options.LowerBound, "LowerBound");
        Check.NonNegative(options.WeightDecay, "WeightDecay");
        Check.NonNegative(options.Epsilon, "Epsilon");
        if (options.Preconditioner is { } p && (p.Rectification != Rectification.None || p.SecondMomentNu != 1))
            throw new ArgumentException("PolyakTruncation's preconditioner must be a plain diagonal (no rectification, SecondMomentNu = 1)", nameof(options));
        IGradientTransformation direction = options.Model == PolyakModel.Momentum
            ? Ema(options.Beta, startAtFirstUpdate: !options.BiasCorrection)
            : Identity();
        return new PolyakTruncationTransform(options, direction);
    }
}

sealed class PolyakTruncationTransform : DeclaredTransform, IValidating
{
    readonly PolyakOptions o;
    readonly IGradientTransformation direction;
    /// <summary>D's arithmetic (the same as <see cref="Transforms.Precondition"/>'s), or null for D = I.</summary>
    readonly DiagonalPreconditioner? pre;
    readonly StateLayout _layout;
    /// <summary>Steps taken so far.</summary>
    readonly Slot<long> _count;
    /// <summary>f̄ (the latest loss for the stochastic model).</summary>
    readonly Slot<double> _lossAverage;
    /// <summary>γ̄, the average of ⟨xₖ, gₖ⟩ summed over tensors (0-d, float64).</summary>
    readonly Slot<Tensor> _gradDotParams;
    /// <summary>The current lower-bound estimate (0-d, float64).</summary>
    readonly Slot<Tensor> _lowerBound;
    /// <summary>The last step τ (0-d, float64), for diagnostics.</summary>
    readonly Slot<Tensor> _stepSize;
    /// <summary>State of the direction EMA.</summary>
    readonly Slot<IOptState> _direction;
    /// <summary>D's moments (count, nu, …: the leaves of a precondition's state without a numerator), or empty without one.</summary>
    readonly Slot<IOptState> _preconditioner;

    public PolyakTruncationTransform(PolyakOptions options, IGradientTransformation direction)
    {
        o = options;
        this.direction = direction;
        StateLayout? moments = null;
        if (options.Preconditioner is { } p)
        {
            moments = new StateLayout("precondition");
            pre = new DiagonalPreconditioner(p, moments);
            moments.Seal();
        }
        _layout = new StateLayout("polyak_truncation");
        _count = _layout.Integer("count");
        _lossAverage = _layout.Real("loss_average");
        _gradDotParams = _layout.Tensor("grad_dot_params", ps => Number(ps, 0));
        _lowerBound = _layout.Tensor("lower_bound", ps => Number(ps, options.LowerBound));
        _stepSize = _layout.Tensor("step_size", ps => Number(ps, 0));
        _direction = _layout.Child("direction", direction.Init);
        _preconditioner = _layout.Child("preconditioner", ps => moments is null ? EmptyState.Instance : moments.Start(ps));
        _layout.Seal();
    }

    /// <summary>A 0-d float64 tensor on the parameters' device.</summary>
    static Tensor Number(TensorTree parameters, double x) => tensor(x, dtype: ScalarType.Float64, device: parameters.Tensors[0].device);

    protected override StateLayout Declare() => _layout;

    public override Spec Spec => Spec.FromRecord("polyak_truncation", o);

    protected override string Label => o.Name;

    public void Validate(IReadOnlyList<ParameterInfo> parameters, ValidationReport report)
    {
        if (parameters.Count == 0) report.Add($"{Label}: the parameter tree is empty");
    }

    public IEnumerable<ContextRequirement> Requirements => new[] { ContextRequirement.For(ContextKeys.Loss, Label) };

    protected override DeclaredState InitState(TensorTree parameters)
    {
        if (parameters.Count == 0) throw new ArgumentException($"{Label}: the parameter tree is empty", nameof(parameters));
        return base.InitState(parameters);
    }

    /// <summary>Σ ⟨a, b⟩ over the groups of (a, b), as a 0-d float64 tensor on <paramref name="device"/>.</summary>
    static Tensor SumDots(StepContext context, TensorTree a, TensorTree b, Device device)
    {
        var total = zeros(Array.Empty<long>(), ScalarType.Float64, device);
        foreach (var group in Buffers.Groups(a, b))
        {
            using var x = group[0].flatten();
            using var y = group[1].flatten();
            using var dot = x.dot(y);
            using var wide = dot.to(ScalarType.Float64, device);
            total.add_(wide);
        }
        return total;
    }

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        double f = context.Get(ContextKeys.Loss, Label);
        if (!double.IsFinite(f)) throw new ArgumentException($"{Label}: the loss in the context is {f}; a Polyak step needs a finite loss", nameof(context));
        long t = state.Get(_count) + 1;
        var device = state.Get(_lowerBound).device;
        bool momentum = o.Model == PolyakModel.Momentum;
        double beta = momentum ? o.Beta : 0;
        bool firstValueStart = momentum && !o.BiasCorrection && t == 1;
        double rho = momentum && o.BiasCorrection ? 1 - Math.Pow(beta, t) : 1;
        double c = o.LearningRate * o.WeightDecay, h = 1 + c;

        using var scope = NewDisposeScope();
        // ⟨x, g⟩ before the direction overwrites g; D's moments from the raw g.
        var gDotX = SumDots(context, parameters, updates, device);
        var preState = pre is null ? null : pre.Accumulate(updates, (DeclaredState)state.Get(_preconditioner));
        var directionState = InPlace.Step(direction, updates, state.Get(_direction), parameters, context);   // updates now hold d

        double lossAverage;
        Tensor gamma = state.Get(_gradDotParams);
        if (!momentum || firstValueStart) { lossAverage = f; gamma.copy_(gDotX); }
        else
        {
            lossAverage = beta * state.Get(_lossAverage) + (1 - beta) * f;
            Kernels.Moments.Accumulate(gamma, gDotX, beta, 1 - beta);
        }

        // D⁻¹d in scratch buffers (d itself without a preconditioner).
        var preconditioned = updates;
        if (pre is not null)
        {
            preconditioned = TensorTree.Of(updates.Names, updates.Tensors.Select(d => Buffers.Rent(d).copy_(d)).ToArray());
            pre.Divide(preconditioned, preState!);
        }
        try
        {
        var norm = SumDots(context, updates, preconditioned, device);
        if (o.Epsilon != 0) { using var e = o.Epsilon.ToScalar(); norm.add_(e); }

        using Scalar sH = h.ToScalar(), sC = c.ToScalar(), sRho = rho.ToScalar(), sLoss = lossAverage.ToScalar(),
            sCap = (o.LearningRate / rho).ToScalar(), zero = 0.0.ToScalar(), half = 0.5.ToScalar(), lb0 = o.LowerBound.ToScalar(),
            sTwoHRho = (2 * h * rho).ToScalar(), sHRho = (h * rho).ToScalar();
        // "extra" = ⟨x, d⟩ − h·γ̄: the momentum model's correction of the averaged linearisations. For the
        // stochastic model d = g and γ̄ = ⟨x, g⟩, so it reduces to −c·⟨x, g⟩ (0 without weight decay).
        Tensor extra, dotMinusGamma;
        if (momentum)
        {
            var dot = SumDots(context, parameters, updates, device);
            extra = dot.sub(gamma.mul(sH));
            dotMinusGamma = dot.sub(gamma);
        }
        else
        {
            extra = gDotX.mul(sC).neg_();
            dotMinusGamma = zeros_like(gDotX);
        }

        Tensor lb = state.Get(_lowerBound);
        if (o.EstimateLowerBound)
        {
            var cap = extra.add(sLoss, alpha: sH);                       // h·f̄ + ⟨x,d⟩ − h·γ̄
            var lowered = cap.div(sTwoHRho).clamp_min_(lb0);
            lb.copy_(where(cap.lt(lb.mul(sHRho)), lowered, lb));
        }
        // nom = h·(f̄ − ρ·f*) + extra
        var nom = lb.mul(sRho).neg_().add_(sLoss).mul_(sH).add_(extra);
        if (momentum || o.Positive) nom.clamp_min_(zero);
        var tau = where(norm.gt(zero), nom.div(norm), zeros_like(nom)).clamp_max_(sCap);
        state.Get(_stepSize).copy_(tau);
        if (o.EstimateLowerBound)
        {
            // f* ← max((f̄ + ⟨x,d⟩ − γ̄ − τ·‖d‖²_D/2)/ρ, f*₀)
            var estimate = tau.mul(norm).mul_(half).neg_().add_(dotMinusGamma).add_(sLoss).div_(sRho).clamp_min_(lb0);
            lb.copy_(estimate);
        }

        var negTau = tau.neg();
        using var sNegC = (-c).ToScalar();
        var trees = pre is null ? new[] { updates, parameters } : new[] { updates, parameters, preconditioned };
        foreach (var group in Buffers.Groups(trees))
        {
            Tensor u = group[0];
            if (pre is not null) u.copy_(group[2]);
            u.mul_(negTau);
            if (c != 0)
            {
                u.add_(group[1], alpha: sNegC);
                if (o.WeightDecayForm == WeightDecayForm.Proximal) u.div_(sH);
            }
        }
        var next = state.With(_count, t).With(_lossAverage, lossAverage).With(_direction, directionState);
        return preState is null ? next : next.With(_preconditioner, (IOptState)preState);
        }
        finally
        {
            if (pre is not null) foreach (var r in preconditioned.Tensors) Buffers.Return(r);
        }
    }
}
