using System;
using System.Collections.Generic;
using System.Linq;
using Lookahead.Kernels;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>Over what <see cref="Transforms.HypergradientDescent"/> takes the dot product that moves the learning rate.</summary>
public enum HypergradientScope
{
    /// <summary>
    /// One dot over all parameters together, and one change of the rate per step, which every parameter's update
    /// uses (the official <c>SGDHD</c>).
    /// </summary>
    Global,
    /// <summary>
    /// One dot per parameter, in tree order, each moving the rate before that parameter's update: parameter i steps
    /// with α − β·(h₁ + … + hᵢ), and the state keeps the rate after the last one (the official <c>AdamHD</c>).
    /// </summary>
    PerParameter,
}

public static partial class Transforms
{
    /// <summary>
    /// Hypergradient descent on the learning rate (Baydin, Cornish, Martínez Rubio, Schmidt &amp; Wood, ICLR 2018,
    /// "Online Learning Rate Adaptation with Hypergradient Descent"; gbaydin/hypergradient-descent) around any
    /// optimizer whose step is a learning rate α times a unit step: <paramref name="unitStep"/> is that optimizer
    /// built with learning rate 1, so that its update uₜ is the step per unit of α. With the incoming gradient gₜ
    /// and the previous unit step uₜ₋₁ (zero at the first step), θₜ = θₜ₋₁ + αₜ₋₁·uₜ₋₁ gives
    /// ∂f(θₜ)/∂α = ⟨gₜ, uₜ₋₁⟩, and the rate takes one gradient step on it before this step's update, which already
    /// uses the new rate: αₜ = αₜ₋₁ − β·⟨gₜ, uₜ₋₁⟩; the update is αₜ·uₜ.
    /// </summary>
    /// <remarks>
    /// <para>The rate is neither clipped nor kept positive, as in the official code. The first step's dot is 0, so
    /// it is the inner optimizer's step at α₀. Weight decay coupled to the gradient goes before this combinator
    /// (<c>Chain(AddDecayedWeights(λ), HypergradientDescent(…))</c>), so that gₜ is the decayed gradient the
    /// official code dots; SGD-HD, SGDN-HD and Adam-HD are <see cref="Optim.SgdHD"/> and <see cref="Optim.AdamHD"/>.</para>
    /// <para>State: <c>adapted_lr</c> (the current rate: <see cref="Hypergradient.LearningRate"/>, set with
    /// <see cref="Hypergradient.WithLearningRate"/>), <c>previous</c> (uₜ₋₁, one
    /// tensor like each parameter) and <c>inner</c>. The dots are float64 sums on the parameters' device
    /// (<see cref="Reducer"/>), brought to the host once per step. The combinator runs on the TorchSharp executor
    /// (the runner does not fuse it); besides the inner optimizer's traffic, the dots read g and uₜ₋₁, then uₜ
    /// is copied into uₜ₋₁ and scaled in place (three more reads and two writes of the parameters' size per step).
    /// A step that would make the rate non-finite (a gradient with NaN or ±∞ entries, or β too large) is refused
    /// before this combinator changes anything; stateful transforms chained before it have stepped by then (a
    /// runner changes its state in place), so keep such a step atomic by putting them inside
    /// <paramref name="unitStep"/>, where they run after the check.</para>
    /// <para>α₀ only seeds the state: the running rate is the state's, so a schedule or an injected value of
    /// <paramref name="lr"/> (<see cref="Transforms.Scheduled"/>, <see cref="Transforms.InjectHyperparameters"/>)
    /// does not change it after the first step; scale the update after this combinator instead, or set the rate
    /// between steps with <see cref="Hypergradient.WithLearningRate"/>.</para>
    /// </remarks>
    /// <param name="unitStep">The inner optimizer with learning rate 1 (its update is the step per unit rate).</param>
    /// <param name="lr">The initial rate α₀ ≥ 0.</param>
    /// <param name="hypergradientLr">The rate's own step size β ≥ 0 (0: a constant rate, the inner optimizer at α₀).</param>
    /// <param name="scope">One dot over all parameters, or one per parameter as Adam-HD does; default <see cref="HypergradientScope.Global"/>.</param>
    public static IGradientTransformation HypergradientDescent(IGradientTransformation unitStep, double lr, double hypergradientLr, HypergradientScope scope = HypergradientScope.Global)
    {
        Check.NotNull(unitStep, nameof(unitStep));
        Check.NonNegative(lr, nameof(lr), "learning rate");
        Check.NonNegative(hypergradientLr, nameof(hypergradientLr), "hypergradient learning rate");
        if (!Enum.IsDefined(scope)) throw new ArgumentOutOfRangeException(nameof(scope), scope, "not a HypergradientScope");
        return new HypergradientDescentTransform(unitStep, lr, hypergradientLr, scope);
    }
}

/// <summary>Reading the learning rate that <see cref="Transforms.HypergradientDescent"/> keeps in a state.</summary>
public static class Hypergradient
{
    /// <summary>The name of the state leaf that holds the rate.</summary>
    public const string Leaf = "adapted_lr";

    /// <summary>
    /// Every hypergradient-descent rate in <paramref name="state"/> (a runner's <see cref="Runner.State"/>, or a pure
    /// state), by leaf path: one per <see cref="Transforms.HypergradientDescent"/> node (several under a partition).
    /// </summary>
    public static IReadOnlyDictionary<string, double> LearningRates(IOptState state) =>
        Check.NotNull(state, nameof(state)).Leaves()
            .Where(l => l.Scalar is not null && (l.Path == Leaf || l.Path.EndsWith("/" + Leaf, StringComparison.Ordinal)))
            .ToDictionary(l => l.Path, l => l.Scalar!.Value);

    /// <summary>
    /// A state equal to <paramref name="state"/> (tensors shared, not copied) whose one hypergradient-descent rate is
    /// <paramref name="lr"/>: the rate the next step starts from.
    /// </summary>
    public static IOptState WithLearningRate(IOptState state, double lr)
    {
        Check.Finite(lr, nameof(lr));
        _ = LearningRate(state);
        return state.MapScalars((path, v) => path == Leaf || path.EndsWith("/" + Leaf, StringComparison.Ordinal) ? lr : v);
    }

    /// <summary>The rate of the one hypergradient-descent node in <paramref name="state"/>: the rate its last step used (α₀ before the first).</summary>
    public static double LearningRate(IOptState state)
    {
        var rates = LearningRates(state);
        return rates.Count == 1 ? rates.Values.First()
            : throw new ArgumentException(rates.Count == 0
                ? "the state holds no hypergradient-descent rate (its optimizer has no HypergradientDescent node)"
                : $"the state holds {rates.Count} hypergradient-descent rates ({string.Join(", ", rates.Keys)}): read them with LearningRates", nameof(state));
    }
}

sealed class HypergradientDescentTransform(IGradientTransformation unitStep, double lr, double hypergradientLr, HypergradientScope scope) : DeclaredTransform, IComposite
{
    // Leaves: adapted_lr (the rate the last step used, α₀ before the first), previous (the last unit step), inner/….
    readonly (StateLayout Layout, Slot<double> Lr, Slot<TensorTree> Previous, Slot<IOptState> Inner) _state = Declared(unitStep, lr);

    static (StateLayout, Slot<double>, Slot<TensorTree>, Slot<IOptState>) Declared(IGradientTransformation unitStep, double lr)
    {
        var layout = new StateLayout("hypergradient_descent");
        var rate = layout.Real(Hypergradient.Leaf, lr);
        var previous = layout.PerParameter("previous", SlotStart.Zeros);
        var inner = layout.Child("inner", unitStep.Init);
        return (layout.Seal(), rate, previous, inner);
    }

    protected override StateLayout Declare() => _state.Layout;

    public IEnumerable<IGradientTransformation> Children => new[] { unitStep };

    public override Spec Spec => Spec.Of("hypergradient_descent").With("lr", lr).With("hypergradient_lr", hypergradientLr).With("scope", scope.ToString()).With("unit_step", unitStep);

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        var previous = state.Get(_state.Previous);
        double rate = state.Get(_state.Lr);
        if (!double.IsFinite(rate)) throw new InvalidOperationException($"{Label}: the learning rate in the state is {rate}; hypergradient descent needs a finite rate (lower hypergradientLr)");
        // The rate each parameter's update uses: one global change, or one change per parameter in tree order.
        var rates = new double[updates.Count];
        if (hypergradientLr != 0 && updates.Count > 0)
        {
            var dots = Dots(updates, previous);
            if (scope == HypergradientScope.Global)
            {
                double h = 0;
                foreach (var d in dots) h += d;
                rate -= hypergradientLr * h;
                Array.Fill(rates, rate);
            }
            else
                for (int i = 0; i < dots.Length; i++) rates[i] = rate -= hypergradientLr * dots[i];
            if (!double.IsFinite(rate))
            {
                for (int i = 0; i < dots.Length; i++)
                    if (!double.IsFinite(dots[i]))
                        throw new ArgumentException($"{Label}: the hypergradient ⟨g, u⟩ of '{updates.Names[i]}' is {dots[i]}: the gradient or the previous step holds NaN or ±∞ entries; nothing was changed", "gradients");
                throw new InvalidOperationException($"{Label}: the learning rate became {rate} (hypergradient {string.Join(", ", dots.Select(d => d.ToString("G6")))}): lower hypergradientLr; nothing was changed");
            }
        }
        else Array.Fill(rates, rate);
        var inner = InPlace.Step(unitStep, updates, state.Get(_state.Inner), parameters, context);
        for (int i = 0; i < updates.Count; i++)
        {
            previous.Tensors[i].copy_(updates.Tensors[i]);
            updates.Tensors[i].mul_(rates[i]);
        }
        return state.With(_state.Lr, rate).With(_state.Inner, inner);
    }

    /// <summary>⟨gᵢ, uₜ₋₁,ᵢ⟩ per parameter, in float64 (on the device, then to the host together).</summary>
    static double[] Dots(TensorTree gradients, TensorTree previous)
    {
        using var scope = NewDisposeScope();
        var perTensor = Reducer.PerTensor(ReductionKind.Dot, gradients, previous);
        return stack(perTensor.Select(t => t.cpu()).ToArray()).data<double>().ToArray();
    }
}
