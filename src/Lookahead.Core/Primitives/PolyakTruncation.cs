using System.Runtime.CompilerServices;
using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;
using Lookahead.Kernels;

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
    /// <para>The direction d is an <c>Ema</c> of g (the momentum model) or g itself; D comes from the
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

sealed class PolyakTruncationTransform : DeclaredTransform, IValidating, IReducing, IFusable
{
    public bool FusesAlone => true;

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

    public IReadOnlyList<Reduction> Reductions => o.Model == PolyakModel.Momentum
        ? new Reduction[] { new(ReductionKind.Dot, ReductionScope.Global, "parameters", "updates"),
                            new(ReductionKind.Dot, ReductionScope.Global, "direction", "preconditioned_direction"),
                            new(ReductionKind.Dot, ReductionScope.Global, "parameters", "direction") }
        : new Reduction[] { new(ReductionKind.Dot, ReductionScope.Global, "parameters", "updates"),
                            new(ReductionKind.Dot, ReductionScope.Global, "direction", "preconditioned_direction") };

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        double f = context.Get(ContextKeys.Loss, Label);
        if (!double.IsFinite(f)) throw new ArgumentException($"{Label}: the loss in the context is {f}; a Polyak step needs a finite loss", nameof(context));
        long t = state.Get(_count) + 1;
        var device = state.Get(_lowerBound).device;
        bool momentum = o.Model == PolyakModel.Momentum;
        double beta = momentum ? o.Beta : 0;
        bool firstValueStart = !momentum || !o.BiasCorrection && t == 1;
        double rho = momentum && o.BiasCorrection ? 1 - Math.Pow(beta, t) : 1;
        double lossAverage = firstValueStart ? f : beta * state.Get(_lossAverage) + (1 - beta) * f;
        beta = firstValueStart ? 0 : beta;
        if (Elementwise.Recording) return Phases<double, ArrayBlockOps, FusedPhases>(default, new FusedPhases(this), updates, state, parameters, context, t, beta, rho, lossAverage);
        using var scope = NewDisposeScope();
        return Phases<Tensor, TensorOps, TensorPhases>(default, new TensorPhases(this, device), updates, state, parameters, context, t, beta, rho, lossAverage);
    }

    /// <summary>
    /// The step's phases, in order, for either executor: ⟨x, g⟩ before the direction overwrites g, D's moments from
    /// the raw g, the direction d, D⁻¹d, then ‖d‖²_D and (momentum model) ⟨x, d⟩, the scalar part, and the elementwise
    /// tail u = −τ·D⁻¹d with the weight decay. <typeparamref name="TPhases"/> says how a reduction is summed and where
    /// the scalars live: 0-d device tensors (TorchSharp) or doubles summed on the host (the fused executor).
    /// </summary>
    DeclaredState Phases<TSum, TOps, TPhases>(TOps s, TPhases x, TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context, long t, double beta, double rho, double lossAverage)
        where TOps : struct, IScalarOps<TSum> where TPhases : struct, IPolyakPhases<TSum>
    {
        bool momentum = o.Model == PolyakModel.Momentum;
        var gDotX = x.Dot(parameters, updates);
        var preState = pre is null ? null : pre.Accumulate(updates, (DeclaredState)state.Get(_preconditioner));
        var directionState = InPlace.Step(direction, updates, state.Get(_direction), parameters, context);   // updates now hold d
        var gamma = GradDotParams<TSum, TOps>(s, x.Read(state.Get(_gradDotParams)), gDotX, beta);
        var preconditioned = Preconditioned(updates, preState);
        try
        {
            var norm = x.Dot(updates, preconditioned);
            var dot = momentum ? x.Dot(parameters, updates) : gDotX;
            var (tau, lowerBound) = StepSize<TSum, TOps>(s, gDotX, gamma, dot, norm, x.Read(state.Get(_lowerBound)), lossAverage, rho);
            x.Store(state.Get(_gradDotParams), gamma);
            x.Store(state.Get(_lowerBound), lowerBound);
            x.Store(state.Get(_stepSize), tau);
            x.Tail(tau, updates, parameters, pre is null ? null : preconditioned);
            return Next(state, t, lossAverage, directionState, preState);
        }
        finally { Release(preconditioned, updates); }
    }

    /// <summary>How <see cref="Phases"/> sums, keeps and applies its scalars on one executor.</summary>
    interface IPolyakPhases<TSum>
    {
        /// <summary>Σ a·b over the trees (global, float64).</summary>
        TSum Dot(TensorTree a, TensorTree b);
        /// <summary>A 0-d state slot's value.</summary>
        TSum Read(Tensor slot);
        /// <summary>Writes <paramref name="value"/> into a 0-d state slot.</summary>
        void Store(Tensor slot, TSum value);
        /// <summary>u ← −τ·D⁻¹d (or −τ·u without a preconditioner), then the weight decay.</summary>
        void Tail(TSum tau, TensorTree updates, TensorTree parameters, TensorTree? preconditioned);
    }

    /// <summary>The TorchSharp executor: reductions and scalars as 0-d tensors on the device (no host round trip).</summary>
    readonly struct TensorPhases(PolyakTruncationTransform tx, Device device) : IPolyakPhases<Tensor>
    {
        public Tensor Dot(TensorTree a, TensorTree b) => Reducer.Global(ReductionKind.Dot, device, a, b);
        public Tensor Read(Tensor slot) => slot;
        public void Store(Tensor slot, Tensor value) => slot.copy_(value);
        public void Tail(Tensor tau, TensorTree updates, TensorTree parameters, TensorTree? preconditioned)
        {
            var ops = default(TensorOps);
            var negTau = tau.neg();
            foreach (var group in Buffers.Groups(preconditioned is null ? new[] { updates, parameters } : new[] { updates, parameters, preconditioned }))
            {
                if (preconditioned is not null) ops.Copy(group[0], group[2]);
                ops.ScaleBy(group[0], negTau);
                tx.Decay(ops, group[0], group[1]);
            }
        }
    }

    /// <summary>The fused executor: reductions summed on the host (<see cref="Elementwise.Reduce"/>), the tail recorded as a kernel.</summary>
    readonly struct FusedPhases(PolyakTruncationTransform tx) : IPolyakPhases<double>
    {
        public double Dot(TensorTree a, TensorTree b) => Sum(ReductionKind.Dot, a, b);
        public double Read(Tensor slot) => slot.item<double>();
        public void Store(Tensor slot, double value) { using var v = value.ToScalar(); slot.fill_(v); }
        public void Tail(double tau, TensorTree updates, TensorTree parameters, TensorTree? preconditioned)
        {
            if (preconditioned is null) Elementwise.Run(new Tail(tx, -tau, copy: false), updates, parameters);
            else Elementwise.Run(new Tail(tx, -tau, copy: true), updates, parameters, preconditioned);
        }
    }

    /// <summary>Σ over index-aligned tensors of <paramref name="a"/> and <paramref name="b"/>, on the fused executor (which runs what was recorded first).</summary>
    static double Sum(ReductionKind kind, TensorTree a, TensorTree b)
    {
        var groups = new Tensor[a.Count][];
        for (int i = 0; i < a.Count; i++) groups[i] = new[] { a.Tensors[i], b.Tensors[i] };
        double total = 0;
        foreach (var part in Elementwise.Reduce(kind, groups)!) total += part;
        return total;
    }

    /// <summary>D⁻¹d in rented buffers (given back by <see cref="Release"/>), or d itself without a preconditioner.</summary>
    TensorTree Preconditioned(TensorTree updates, DeclaredState? preState)
    {
        if (pre is null) return updates;
        var into = TensorTree.Of(updates.Names, updates.Tensors.Select(d => Buffers.Rent(d)).ToArray());
        pre.DivideInto(updates, into, preState!);
        return into;
    }

    static void Release(TensorTree preconditioned, TensorTree updates)
    {
        if (!ReferenceEquals(preconditioned, updates)) foreach (var r in preconditioned.Tensors) Buffers.Return(r);
    }

    DeclaredState Next(DeclaredState state, long t, double lossAverage, IOptState directionState, DeclaredState? preState)
    {
        var next = state.With(_count, t).With(_lossAverage, lossAverage).With(_direction, directionState);
        return preState is null ? next : next.With(_preconditioner, (IOptState)preState);
    }

    /// <summary>Over (u, x, [D⁻¹d]): u ← −τ·D⁻¹d (or −τ·u), then the weight decay.</summary>
    readonly struct Tail(PolyakTruncationTransform tx, double negTau, bool copy) : IKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, IArrayOps<TArray>
        {
            if (copy) ops.Copy(a[0], a[2]);
            ops.Mul(a[0], negTau);
            tx.Decay(ops, a[0], a[1]);
        }
    }

    /// <summary>γ̄ ← β·γ̄ + (1−β)·⟨x, g⟩ (β = 0: the first value, or the stochastic model's ⟨x, g⟩ itself).</summary>
    static TSum GradDotParams<TSum, TOps>(TOps s, TSum gamma, TSum gDotX, double beta) where TOps : struct, IScalarOps<TSum> =>
        beta == 0 ? s.Times(gDotX, 1.0) : s.Add(s.Times(gamma, beta), s.Times(gDotX, 1 - beta));

    /// <summary>
    /// The step size τ and the next lower-bound estimate from the reduced values: ⟨x, g⟩ (<paramref name="gDotX"/>),
    /// the updated γ̄, ⟨x, d⟩ (<paramref name="dot"/>; the momentum model only), ‖d‖²_D (<paramref name="norm"/>, before ε)
    /// and the current estimate <paramref name="lowerBound"/>.
    /// </summary>
    internal (TSum Tau, TSum LowerBound) StepSize<TSum, TOps>(TOps s, TSum gDotX, TSum gamma, TSum dot, TSum norm, TSum lowerBound, double lossAverage, double rho)
        where TOps : struct, IScalarOps<TSum>
    {
        bool momentum = o.Model == PolyakModel.Momentum;
        double c = o.LearningRate * o.WeightDecay, h = 1 + c;
        if (o.Epsilon != 0) norm = s.Plus(norm, o.Epsilon);
        // "extra" = ⟨x, d⟩ − h·γ̄: the momentum model's correction of the averaged linearisations. For the
        // stochastic model d = g and γ̄ = ⟨x, g⟩, so it reduces to −c·⟨x, g⟩ (0 without weight decay).
        TSum extra = momentum ? s.Sub(dot, s.Times(gamma, h)) : s.Times(gDotX, -c);
        TSum lb = lowerBound;
        if (o.EstimateLowerBound)
        {
            var cap = s.Plus(extra, h * lossAverage);                                   // h·f̄ + ⟨x,d⟩ − h·γ̄
            var lowered = s.Max(s.Over(cap, 2 * h * rho), o.LowerBound);
            lb = s.IfLess(cap, s.Times(lb, h * rho), lowered, lb);
        }
        // nom = h·(f̄ − ρ·f*) + extra
        var nom = s.Add(s.Times(s.Plus(s.Times(lb, -rho), lossAverage), h), extra);
        if (momentum || o.Positive) nom = s.Max(nom, 0);
        var tau = s.Min(s.IfPositive(norm, s.Div(nom, norm), s.Constant(nom, 0)), o.LearningRate / rho);
        if (o.EstimateLowerBound)
        {
            // f* ← max((f̄ + ⟨x,d⟩ − γ̄ − τ·‖d‖²_D/2)/ρ, f*₀); ⟨x,d⟩ − γ̄ is 0 for the stochastic model.
            var dotMinusGamma = momentum ? s.Sub(dot, gamma) : s.Constant(nom, 0);
            lb = s.Max(s.Over(s.Plus(s.Add(s.Times(s.Mul(tau, norm), -0.5), dotMinusGamma), lossAverage), rho), o.LowerBound);
        }
        return (tau, lb);
    }

    /// <summary>The weight decay after the step: u ← u − c·x, and u ← u/h for the proximal form (c = αλ, h = 1 + c).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Decay<TArray, TOps>(TOps ops, TArray u, TArray x) where TOps : struct, IArrayOps<TArray>
    {
        double c = o.LearningRate * o.WeightDecay;
        if (c == 0) return;
        ops.AddScaled(u, x, -c);
        if (o.WeightDecayForm == WeightDecayForm.Proximal) ops.Div(u, 1 + c);
    }
}
