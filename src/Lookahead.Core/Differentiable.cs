using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>
/// Optimizers as differentiable functions: the pure update run with autograd recording, so that parameters after
/// K steps are a function of the initial parameters and of the data that gradients can flow through (meta-learning,
/// learning data weights, differentiating a training run). The step's arithmetic is the primitives' own kernels, run
/// by an executor that records the graph (Kernels.GraphOps); the values are those of the pure path.
/// </summary>
/// <remarks>
/// <para><b>What is differentiable.</b> The elementwise primitives and the combinators that route, chain, schedule
/// or mix them: scale (constant or scheduled), trace and EMA, decayed weights, the diagonal preconditioner (Adam,
/// AMSGrad, RMSprop, QHAdam's ν₂, RAdam's rectifier), the lookahead shift (Nesterov, QHM, RSG), MARS's gradient
/// correction without its clip, mix (AdEMAMix), chain, partition, schedules, injected hyperparameters, when, and
/// every optimizer composed only of these. Anything else is refused before a step runs, by an error that names the
/// node and why (<see cref="Refusal"/>): sign (Lion, signSGD: derivative zero almost everywhere, so a hypergradient
/// through it is zero and says nothing), MARS's clip and global-norm clipping (a kink at the boundary; their
/// norms are computed as host numbers outside the graph), Polyak's min/max truncation (SPS, MoMo), Newton–Schulz
/// (Muon; its bf16 variant has no useful derivative and the float one is not recorded), and the transforms whose
/// scalars come from reductions over the arrays (D-Adaptation, Prodigy, trust ratios, cautious masks, guards).
/// AMSGrad's running maximum passes the gradient to the operand it keeps.</para>
/// <para><b>Hyperparameters.</b> A hyperparameter given as a tensor (<see cref="Hyper.Of"/>, through the Hyper
/// overloads of the optimizers) reaches the recorded kernels as a tensor coefficient, so it receives a gradient;
/// one given as a number is a constant. The states a transform's <c>Init</c> creates are constants (every
/// differentiable primitive starts from zeros or a fill).</para>
/// <para><b>Ownership.</b> As <see cref="IGradientTransformation.Update"/>: arguments are borrowed, results owned
/// by the caller. The graph lives as long as some result tensor refers to it; backward with the default
/// <c>retain_graph = false</c> frees its saved values, and disposing the results frees the rest.</para>
/// </remarks>
public static class Differentiable
{
    /// <summary>
    /// Null if <paramref name="transform"/> (and everything it runs) has a differentiable form; else why not, naming
    /// the first node that has none.
    /// </summary>
    public static string? Refusal(IGradientTransformation transform)
    {
        ArgumentNullException.ThrowIfNull(transform);
        if (transform is not IDifferentiable d)
            return $"{Describe(transform)} has no differentiable form: {Reason(transform)}";
        if (d.Refusal is { } own) return $"{Describe(transform)} is not differentiable: {own}";
        if (transform is IComposite c)
            foreach (var child in c.Children)
                if (Refusal(child) is { } inner) return inner;
        return null;
    }

    /// <summary>Throws a <see cref="NotSupportedException"/> naming the node of <paramref name="transform"/> that is not differentiable, if any.</summary>
    public static void Require(IGradientTransformation transform)
    {
        if (Refusal(transform) is { } why) throw new NotSupportedException(why);
    }

    /// <summary>
    /// One pure update (<see cref="IGradientTransformation.Update"/>) with autograd recording: the updates and the
    /// new state are functions of <paramref name="gradients"/>, of the tensors of <paramref name="state"/> and of
    /// <paramref name="parameters"/> that gradients flow through. Same values as the pure update.
    /// </summary>
    /// <exception cref="NotSupportedException">A node of <paramref name="transform"/> has no differentiable form (the message names it).</exception>
    public static (TensorTree Updates, IOptState State) Update(IGradientTransformation transform, TensorTree gradients, IOptState state, TensorTree parameters, StepContext context)
    {
        Require(transform);
        using var graph = Kernels.Graph.Record();
        return transform.Update(gradients, state, parameters, context);
    }

    /// <summary>
    /// K steps of <paramref name="transform"/> on <paramref name="loss"/> from <paramref name="initial"/>, recorded for
    /// autograd: θₜ = θₜ₋₁ + uₜ with uₜ the update for gₜ = ∇loss(θₜ₋₁, t), the gradient itself recorded
    /// (<c>create_graph</c>), so that the result is differentiable through every step, second-order terms included.
    /// </summary>
    /// <param name="transform">The optimizer; refused (naming the node) unless differentiable (<see cref="Refusal"/>).</param>
    /// <param name="initial">θ₀ (borrowed). Tensors that require grad are the leaves gradients reach; any that do not are
    /// started as new leaves (their gradient is needed for the steps).</param>
    /// <param name="loss">The training loss at step t = 1…K of the given parameters: a scalar tensor. It may read data
    /// tensors that require grad (a differentiable function of the data).</param>
    /// <param name="steps">K ≥ 1.</param>
    /// <param name="truncate">Record only the last k of the K steps (truncated backpropagation, 1 ≤ k ≤ K): the first
    /// K − k run on the pure path with nothing kept, and θ and the state after them are constants. Memory then grows with
    /// k, not K. Null (the default) records all K.</param>
    public static Unrolled Unroll(IGradientTransformation transform, TensorTree initial, Func<TensorTree, long, Tensor> loss, int steps, int? truncate = null)
    {
        ArgumentNullException.ThrowIfNull(transform);
        ArgumentNullException.ThrowIfNull(initial);
        ArgumentNullException.ThrowIfNull(loss);
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "steps must be at least 1");
        if (truncate is int k && (k < 1 || k > steps))
            throw new ArgumentOutOfRangeException(nameof(truncate), truncate, $"truncate must be in [1, steps = {steps}] (or null to record every step)");
        if (initial.Count == 0) throw new ArgumentException("the initial parameters are empty", nameof(initial));
        foreach (var (name, t) in initial)
            if (!t.is_floating_point())
                throw new ArgumentException($"initial parameter '{name}' has dtype {t.dtype}; differentiating needs a floating-point dtype", nameof(initial));
        Require(transform);
        int recorded = truncate ?? steps;
        int firstRecorded = steps - recorded + 1;

        var losses = new List<Tensor>(steps);
        var owned = new List<Tensor>();   // the leaves θ starts from when recording begins (disposed with the result)
        TensorTree theta = firstRecorded == 1 ? Leaves(initial, owned) : initial;
        bool thetaOwned = false;
        IOptState state = transform.Init(initial);
        try
        {
            for (long t = 1; t <= steps; t++)
            {
                bool record = t >= firstRecorded;
                if (!record)
                {
                    // The pure path: a gradient of a detached leaf, the ordinary update, nothing kept.
                    using var leaf = Leaves(theta, null);
                    using var l = Evaluate(loss, leaf, t);
                    using var g = Gradients(l, leaf, createGraph: false);
                    var (u, next) = transform.Update(g, state, theta, StepContext.Empty.WithLoss(l.item<double>()));
                    using (u)
                    {
                        var moved = Updates.Apply(theta, u);
                        if (thetaOwned) theta.Dispose();
                        theta = moved;
                        thetaOwned = true;
                    }
                    OptState.Dispose(state);
                    state = next;
                    losses.Add(l.detach());
                    if (t + 1 == firstRecorded)
                    {
                        var start = Leaves(theta, owned);
                        theta.Dispose();
                        theta = start;
                        thetaOwned = false;   // its tensors are in `owned`
                    }
                    continue;
                }
                var lt = Evaluate(loss, theta, t);
                losses.Add(lt);
                using var grads = Gradients(lt, theta, createGraph: true);
                var (updates, after) = Update(transform, grads, state, theta, StepContext.Empty.WithLoss(lt.item<double>()));
                using (updates)
                {
                    TensorTree moved;
                    using (enable_grad())
                    {
                        using var one = 1.0.ToScalar();
                        moved = theta.Map((name, p) => p.add(updates[name], one));
                    }
                    if (thetaOwned) theta.Dispose();
                    theta = moved;
                    thetaOwned = true;
                }
                OptState.Dispose(state);
                state = after;
            }
            var result = new Unrolled(thetaOwned ? theta : theta.Alias(), state, losses, recorded, owned);
            return result;
        }
        catch
        {
            if (thetaOwned) theta.Dispose();
            OptState.Dispose(state);
            foreach (var l in losses) l.Dispose();
            foreach (var o in owned) o.Dispose();
            throw;
        }
    }

    /// <summary>
    /// For each tensor, one that requires grad: a new handle to the tensor itself when it already requires grad and
    /// <paramref name="keep"/> is given (gradients reach the caller's leaf), else a detached handle to the same storage
    /// with its own autograd state (the caller's tensor is neither written nor marked).
    /// </summary>
    static TensorTree Leaves(TensorTree tree, List<Tensor>? keep)
    {
        var leaves = tree.Map(t =>
        {
            if (keep is not null && t.requires_grad) return t.alias();
            var leaf = t.detach();
            leaf.requires_grad_(true);
            return leaf;
        });
        keep?.AddRange(leaves.Tensors);
        return leaves;
    }

    static Tensor Evaluate(Func<TensorTree, long, Tensor> loss, TensorTree theta, long t)
    {
        using var grad = enable_grad();
        var l = loss(theta, t) ?? throw new InvalidOperationException($"the loss returned null at step {t}");
        if (l.numel() != 1 || !l.is_floating_point())
        {
            var what = $"a {l.dtype} tensor of shape [{string.Join(", ", l.shape)}]";
            l.Dispose();
            throw new InvalidOperationException($"the loss at step {t} is {what}; it must be a floating-point scalar");
        }
        if (!l.requires_grad)
        {
            l.Dispose();
            throw new InvalidOperationException($"the loss at step {t} does not depend on the parameters (it does not require grad)");
        }
        return l;
    }

    static TensorTree Gradients(Tensor l, TensorTree theta, bool createGraph)
    {
        using var grad = enable_grad();
        var g = torch.autograd.grad(new[] { l }, theta.Tensors.ToArray(), null, retain_graph: createGraph, create_graph: createGraph, allow_unused: true);
        var tensors = new Tensor[theta.Count];
        for (int i = 0; i < tensors.Length; i++)
            tensors[i] = g[i] is { } gi && gi.Handle != IntPtr.Zero ? gi : zeros_like(theta.Tensors[i]);
        return TensorTree.Of(theta.Names, tensors);
    }

    static string Describe(IGradientTransformation t) => $"'{t.Spec.Kind}' ({t.Name})";

    static string Reason(IGradientTransformation t) => t.Spec.Kind switch
    {
        "sign" => "the sign's derivative is zero almost everywhere, so a hypergradient through it would be zero",
        "clip_by_global_norm" => "clipping has a kink at the boundary and its norm is taken outside the graph",
        "polyak_truncation" => "Polyak's min/max truncation switches between branches (SPS, MoMo)",
        "orthogonalise" => "Newton–Schulz iterations are not recorded (in bf16 they have no useful derivative)",
        _ => "its step uses operations outside the recorded kernels (reductions, host numbers or native code)",
    };
}

/// <summary>A transform whose step runs only recorded kernels and differentiable combinators (see <see cref="Differentiable"/>).</summary>
internal interface IDifferentiable
{
    /// <summary>Why this instance (with its options) is not differentiable after all, or null.</summary>
    string? Refusal => null;
}

/// <summary>
/// The result of <see cref="Differentiable.Unroll"/>: the final parameters, state and per-step losses, as tensors in
/// the recorded graph. Owned by the caller: dispose it after backward.
/// </summary>
public sealed class Unrolled : IDisposable
{
    readonly List<Tensor> _leaves;

    internal Unrolled(TensorTree parameters, IOptState state, List<Tensor> losses, int recordedSteps, List<Tensor> leaves)
    {
        Parameters = parameters;
        State = state;
        Losses = losses;
        RecordedSteps = recordedSteps;
        _leaves = leaves;
    }

    /// <summary>θ_K.</summary>
    public TensorTree Parameters { get; }

    /// <summary>The optimizer's state after step K.</summary>
    public IOptState State { get; }

    /// <summary>loss(θₜ₋₁, t) for t = 1…K (those of steps before a truncation are detached).</summary>
    public IReadOnlyList<Tensor> Losses { get; }

    /// <summary>How many of the steps were recorded (the last ones).</summary>
    public int RecordedSteps { get; }

    /// <summary>Σ of the recorded losses, a new scalar tensor in the graph (the usual meta-objective of a training run).</summary>
    public Tensor SumOfLosses()
    {
        var recorded = Losses.Skip(Losses.Count - RecordedSteps).ToArray();
        using var grad = enable_grad();
        using var stacked = stack(recorded);
        return stacked.sum();
    }

    /// <summary>Disposes every tensor of the result (after backward this frees what is left of the graph).</summary>
    public void Dispose()
    {
        Parameters.Dispose();
        OptState.Dispose(State);
        foreach (var l in Losses) l.Dispose();
        foreach (var l in _leaves) l.Dispose();
    }
}
