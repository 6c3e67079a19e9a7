using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>
/// A gradient transformation: a pair of pure functions, <c>init(params) → state</c> and
/// <c>update(grads, state, params, context) → (updates, state)</c>. An optimizer is one of these;
/// so is each of its parts. Values of this type are immutable and safe to share between threads.
/// </summary>
/// <remarks>
/// <para><b>Ownership.</b> Every argument is borrowed: <see cref="Update"/> neither mutates nor disposes
/// any of them. Every result is owned by the caller: the updates tree and each tensor of the new state
/// are fresh handles that no other object refers to. Temporaries die inside the call (it runs in its
/// own TorchSharp dispose scope, under <c>no_grad</c>). So a training loop disposes the old state
/// (<see cref="OptState.Dispose"/>) and the updates once it has applied them.</para>
/// <para><b>Sign.</b> Updates are added to the parameters (<see cref="Updates.Apply"/>); descent
/// optimizers end in a negative scale.</para>
/// </remarks>
public interface IGradientTransformation
{
    /// <summary>A short description, e.g. <c>"trace(decay=0.9, dampening=0)"</c> (made from <see cref="Spec"/>; the same in every culture).</summary>
    string Name { get; }

    /// <summary>
    /// The transform's identity: its kind and every hyperparameter (<see cref="Lookahead.Spec"/>). Checkpoints
    /// store its fingerprint and name the hyperparameter that differs on load. A transform written outside
    /// Lookahead gets its type and name by default; override it to list the hyperparameters.
    /// </summary>
    Spec Spec => Spec.Of("external").With("type", GetType().FullName).With("name", Name);

    /// <summary>The initial state for <paramref name="parameters"/>.</summary>
    IOptState Init(TensorTree parameters);

    /// <summary>One step: the outgoing updates and the next state.</summary>
    /// <param name="gradients">Incoming updates (gradients at the start of a chain); same names, shapes, dtypes and devices as <paramref name="parameters"/>.</param>
    /// <param name="state">The state returned by <see cref="Init"/> or by the previous <see cref="Update"/>.</param>
    /// <param name="parameters">The current parameters.</param>
    /// <param name="context">The step's extras (loss, ...).</param>
    (TensorTree Updates, IOptState State) Update(TensorTree gradients, IOptState state, TensorTree parameters, StepContext context);
}

/// <summary>
/// Base class of Lookahead's transforms. A subclass writes its arithmetic once, as an in-place step
/// over buffers it is given (<see cref="Step"/>); the pure <see cref="Update"/> is that step applied to
/// fresh copies of the incoming updates and of the state.
/// </summary>
/// <remarks>
/// <para>This split is what makes a later allocation-free execution path possible without a second
/// copy of any formula: such a path hands <see cref="Step"/> buffers it owns and reuses instead of
/// copies. <see cref="Update"/> stays the reference semantics.</para>
/// </remarks>
/// <typeparam name="TState">The state record of this transform.</typeparam>
public abstract class Transform<TState> : IGradientTransformation, IInPlaceTransform where TState : class, IOptState
{

    /// <inheritdoc />
    public virtual string Name => Spec.ToString();

    /// <inheritdoc />
    public abstract Spec Spec { get; }

    /// <summary>A short label for error messages (the spec's kind unless a transform knows a better one).</summary>
    protected virtual string Label => Spec.Kind;

    /// <summary>Creates the state. Runs under <c>no_grad</c> in a dispose scope; the tensors of the returned state are kept.</summary>
    protected abstract TState InitState(TensorTree parameters);

    /// <summary>
    /// The transform's arithmetic, in place: on entry <paramref name="updates"/> holds the incoming
    /// updates and <paramref name="state"/> the current state; on exit <paramref name="updates"/>'s
    /// tensors hold the outgoing updates, and the returned record is the next state. The step may
    /// mutate the tensors of <paramref name="updates"/> and of <paramref name="state"/> (the caller gave
    /// buffers it owns), never <paramref name="parameters"/>. Tensors of the returned state are
    /// <paramref name="state"/>'s own (mutated) or new.
    /// </summary>
    public abstract TState Step(TensorTree updates, TState state, TensorTree parameters, StepContext context);

    /// <inheritdoc />
    public IOptState Init(TensorTree parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (Validation.InitDepth == 0) Validation.Check(this, parameters);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        TState state;
        Validation.InitDepth++;
        try { state = InitState(parameters); }
        finally { Validation.InitDepth--; }
        scope.MoveToOuter(OptState.Tensors(state).Cast<IDisposable>().ToList());
        return state;
    }

    /// <inheritdoc />
    public (TensorTree Updates, IOptState State) Update(TensorTree gradients, IOptState state, TensorTree parameters, StepContext context)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(context);
        parameters.CheckMatches(gradients, nameof(gradients), nameof(parameters));
        var typed = CastState(state);
        Validation.Check(this, parameters);
        // Differentiable.Update/Unroll: autograd stays on and the copies keep their graph (see Kernels.GraphOps).
        bool graph = Kernels.Graph.Active;
        using var noGrad = graph ? null : no_grad();
        using var numbers = Hyper.NumbersOnly();
        using var scope = NewDisposeScope();
        var updates = graph ? gradients.Map(t => t.clone()) : gradients.Clone();
        var next = Step(updates, (TState)(graph ? OptState.CloneInGraph(typed) : OptState.Clone(typed)), parameters, context);
        var kept = updates.Tensors.Concat(OptState.Tensors(next)).ToList();
        if (kept.Distinct(ReferenceEqualityComparer.Instance).Count() != kept.Count)
            throw new InvalidOperationException($"{Label}: a tensor handle is returned twice (updates and state must not share handles)");
        scope.MoveToOuter(kept.Cast<IDisposable>());
        return (updates, next);
    }

    IOptState IInPlaceTransform.StepInPlace(TensorTree updates, IOptState state, TensorTree parameters, StepContext context) =>
        Step(updates, CastState(state), parameters, context);

    TState CastState(IOptState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var typed = state as TState ?? throw new ArgumentException(
            $"{Label} expects a state of type {typeof(TState).Name} (from its own Init), got {DescribeState(state)}", nameof(state));
        CheckState(typed);
        return typed;
    }

    static string DescribeState(IOptState state) => state is DeclaredState d ? d.Layout.Signature : state.GetType().Name;

    /// <summary>Further checks that <paramref name="state"/> is this transform's own (e.g. its declared layout); throws an <see cref="ArgumentException"/> if not.</summary>
    protected virtual void CheckState(TState state) { }

    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>A transform that can run its step in place over buffers owned by the caller (see <see cref="Transform{TState}.Step"/>).</summary>
public interface IInPlaceTransform
{
    /// <summary>The in-place step with an untyped state.</summary>
    IOptState StepInPlace(TensorTree updates, IOptState state, TensorTree parameters, StepContext context);
}

/// <summary>Running any transform inside another's in-place step.</summary>
public static class InPlace
{
    /// <summary>
    /// Runs <paramref name="transform"/> on the buffer <paramref name="updates"/> (overwritten with its
    /// outgoing updates) and returns its next state. Lookahead's own transforms step in place; any other
    /// <see cref="IGradientTransformation"/> runs its pure update, whose result is copied into the buffer.
    /// </summary>
    public static IOptState Step(IGradientTransformation transform, TensorTree updates, IOptState state, TensorTree parameters, StepContext context)
    {
        // Under the fused executor, a node that is not elementwise runs (with its subtree) on tensors, after the
        // kernels recorded so far have run.
        if (Kernels.Graph.Active && (transform is not IDifferentiable d || d.Refusal is not null))
            throw new NotSupportedException(Differentiable.Refusal(transform) ?? $"{transform.Name} has no differentiable form");
        if (Kernels.Elementwise.Recording && transform is not Kernels.IFusable { FusesAlone: true })
        {
            using var direct = Kernels.Elementwise.Suspend();
            return Step(transform, updates, state, parameters, context);
        }
        using var numbers = Hyper.NumbersOnly();
        if (transform is IInPlaceTransform inPlace) return inPlace.StepInPlace(updates, state, parameters, context);
        var (result, next) = transform.Update(updates, state, parameters, context);
        updates.CheckMatches(result, $"updates returned by {transform.Name}", "incoming updates");
        for (int i = 0; i < updates.Count; i++) updates.Tensors[i].copy_(result.Tensors[i]);
        result.Dispose();
        return next;
    }
}

/// <summary>
/// A transform built from other transforms. The runner walks this to find where parameters are routed
/// (partitions), so that parameters routed alike are laid out next to each other.
/// </summary>
public interface IComposite
{
    /// <summary>The transforms this one runs.</summary>
    IEnumerable<IGradientTransformation> Children { get; }

    /// <summary>The label this transform routes <paramref name="parameter"/> to, or null if it does not route.</summary>
    string? Route(ParameterInfo parameter) => null;
}
