using System;
using System.Linq;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Prodigy's D-adapted Adam step (Mishchenko &amp; Defazio 2023, "Prodigy: An Expeditiously Adaptive Parameter-Free
    /// Learner"; konstmish/prodigy), over all parameters together. With the estimate d (from d₀), k steps taken,
    /// bc = √(1 − β₂ᵏ⁺¹)/(1 − β₁ᵏ⁺¹) (or 1) and dlr = d·lr·bc: Δ = Σ (d/d₀)·dlr·⟨g, x₀ − θ⟩ (x₀ the parameters at the
    /// start), m ← β₁m + d(1 − β₁)g, v ← β₂v + d²(1 − β₂)g², s ← β₃s + (d/d₀)·(safeguard ? d : dlr)·g, S = Σ|s|;
    /// d̂ = d_coef·(β₃N + Δ)/S (N the previous numerator), d_max ← max(d_max, d̂), d ← min(d_max, d·growth) (the
    /// first step: max(d₀, d̂)); the update is −dlr·m/(√v + d_new·ε), minus dlr·λθ with decoupled decay. dlr, m, v and
    /// s use the old d, ε the new one, as the official code. Every <paramref name="slice"/>-th entry enters Δ and s.
    /// When S = 0 (all gradients zero so far) d is kept.
    /// </summary>
    public static IGradientTransformation DAdaptedAdam(double lr, double beta1, double beta2, double beta3, double eps, double weightDecay, bool useBiasCorrection, bool safeguardWarmup, double d0, double dCoef, double growthRate, int slice)
    {
        Check.NonNegative(lr, nameof(lr), "learning rate");
        Check.UnitOpen(beta1, nameof(beta1));
        Check.UnitOpen(beta2, nameof(beta2));
        Check.Unit(beta3, nameof(beta3));
        Check.NonNegative(eps, nameof(eps));
        Check.NonNegative(weightDecay, nameof(weightDecay));
        Check.Positive(d0, nameof(d0));
        Check.Positive(dCoef, nameof(dCoef));
        if (!(growthRate >= 1)) throw new ArgumentOutOfRangeException(nameof(growthRate), growthRate, "growthRate must be ≥ 1 (∞ for no cap)");
        Check.AtLeast(slice, 1, nameof(slice));
        return new DAdaptationTransform(lr, beta1, beta2, beta3, eps, weightDecay, useBiasCorrection, safeguardWarmup, d0, dCoef, growthRate, slice);
    }
}

sealed class DAdaptationTransform(double lr, double beta1, double beta2, double beta3, double eps, double weightDecay, bool useBiasCorrection, bool safeguardWarmup, double d0, double dCoef, double growthRate, int slice) : DeclaredTransform
{
    static readonly StateLayout StateOf = new("d_adaptation");
    static readonly Slot<long> Count = StateOf.Integer("count");
    /// <summary>d and d_max (NaN until the first step sets them from d₀: the layout's starts are constants).</summary>
    static readonly Slot<double> D = StateOf.Real("d", double.NaN), DMax = StateOf.Real("d_max", double.NaN);
    /// <summary>The numerator Σ of the d estimate, decayed by β₃ each step.</summary>
    static readonly Slot<double> Numerator = StateOf.Real("d_numerator");
    static readonly Slot<TensorTree> Start = StateOf.PerParameter("x0", SlotStart.CopyOfParameters);
    static readonly Slot<TensorTree> M = StateOf.PerParameter("momentum", SlotStart.Zeros);
    static readonly Slot<TensorTree> V = StateOf.PerParameter("nu", SlotStart.Zeros);
    static readonly Slot<TensorTree> S = StateOf.PerParameter("s", SlotStart.Zeros);

    protected override StateLayout Declare() => StateOf;

    public override Spec Spec => Spec.Of("d_adaptation").With("lr", lr).With("beta1", beta1).With("beta2", beta2).With("beta3", beta3).With("eps", eps)
        .With("weight_decay", weightDecay).With("use_bias_correction", useBiasCorrection).With("safeguard_warmup", safeguardWarmup).With("d0", d0)
        .With("d_coef", dCoef).With("growth_rate", growthRate).With("slice", slice);

    Tensor Sliced(Tensor t) => slice == 1 ? t.view(-1) : t.view(-1).slice(0, 0, t.numel(), slice);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long k = state.Get(Count);
        // d and d_max start at d₀ (a NaN start marks "not yet": the layout's start values are constants).
        double d = state.Get(D) is var dd && double.IsNaN(dd) ? d0 : dd;
        double dMax = state.Get(DMax) is var dm && double.IsNaN(dm) ? d0 : dm;
        double bc = useBiasCorrection ? Math.Sqrt(1 - Math.Pow(beta2, k + 1)) / (1 - Math.Pow(beta1, k + 1)) : 1;
        double dlr = d * lr * bc;
        double numerator = beta3 * state.Get(Numerator);
        double delta = 0, denominator = 0;
        TensorTree x0 = state.Get(Start), m = state.Get(M), v = state.Get(V), s = state.Get(S);
        // The moments take d·(1 − β₁) and d²·(1 − β₂) as scalars of the parameters' dtype: once d outgrows it (an
        // unbounded problem, gradients that do not shrink), say so before anything is changed.
        double largest = new[] { d * (1 - beta1), d * d * (1 - beta2), d / d0 * (safeguardWarmup ? d : dlr), dlr, weightDecay * dlr }.Max(Math.Abs);
        for (int i = 0; i < updates.Count; i++)
            if (updates.Tensors[i].dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 && !(largest <= float.MaxValue))
                throw new InvalidOperationException($"{Label}: the step-size estimate d = {d:G6} at step {k + 1} has outgrown the {updates.Tensors[i].dtype} range of '{updates.Names[i]}' (a moment's scalar, up to {largest:G3}, overflows): the problem looks unbounded; cap d with growthRate or train in float64");
        for (int i = 0; i < updates.Count; i++)
        {
            using var scope = NewDisposeScope();
            Tensor g = updates.Tensors[i], p = parameters.Tensors[i];
            var gs = Sliced(g);
            delta += d / d0 * dlr * gs.dot(Sliced(x0.Tensors[i]).sub(Sliced(p))).to(ScalarType.Float64).item<double>();
            m.Tensors[i].mul_(beta1).add_(g, d * (1 - beta1));
            v.Tensors[i].mul_(beta2).addcmul_(g, g, d * d * (1 - beta2));
            var si = Sliced(s.Tensors[i]);
            si.mul_(beta3).add_(gs, d / d0 * (safeguardWarmup ? d : dlr));
            denominator += si.abs().sum().to(ScalarType.Float64).item<double>();
        }
        double dHat = double.NaN, dNew = d;
        if (denominator > 0)
        {
            dHat = dCoef * (numerator + delta) / denominator;
            if (d == d0) dNew = Math.Max(d, dHat);
            dMax = Math.Max(dMax, dHat);
            dNew = Math.Min(dMax, dNew * growthRate);
        }
        for (int i = 0; i < updates.Count; i++)
        {
            using var scope = NewDisposeScope();
            Tensor u = updates.Tensors[i], p = parameters.Tensors[i];
            var denom = v.Tensors[i].sqrt().add_(dNew * eps);
            u.copy_(m.Tensors[i]).div_(denom).mul_(-dlr);
            if (weightDecay != 0) u.add_(p, -weightDecay * dlr);
        }
        return state.With(Count, k + 1).With(D, dNew).With(DMax, dMax).With(Numerator, numerator + delta);
    }
}
