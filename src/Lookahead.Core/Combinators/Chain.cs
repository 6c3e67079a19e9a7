using System;
using System.Collections.Generic;
using System.Linq;
using static TorchSharp.torch;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Sequential composition: the updates of each transform are the input of the next. The state is
    /// the sequence of the sub-states. <c>Chain()</c> is the identity; chaining is associative.
    /// </summary>
    public static IGradientTransformation Chain(params IGradientTransformation[] transforms) =>
        Chain((IEnumerable<IGradientTransformation>)transforms);

    /// <inheritdoc cref="Chain(IGradientTransformation[])"/>
    public static IGradientTransformation Chain(IEnumerable<IGradientTransformation> transforms)
    {
        ArgumentNullException.ThrowIfNull(transforms);
        var list = transforms.ToArray();
        for (int i = 0; i < list.Length; i++)
            if (list[i] is null) throw new ArgumentNullException(nameof(transforms), $"transform #{i} of the chain is null");
        return new ChainTransform(list);
    }

    /// <summary>
    /// Sequential composition with named stages: like <see cref="Chain(IGradientTransformation[])"/>,
    /// but the state maps each name to its stage's state, so a stage's state can be found by name.
    /// </summary>
    public static IGradientTransformation NamedChain(params (string Name, IGradientTransformation Transform)[] stages)
    {
        ArgumentNullException.ThrowIfNull(stages);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tx) in stages)
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("every stage of a named chain needs a non-empty name", nameof(stages));
            if (!seen.Add(name)) throw new ArgumentException($"stage name '{name}' occurs twice in the named chain", nameof(stages));
            if (tx is null) throw new ArgumentNullException(nameof(stages), $"stage '{name}' is null");
        }
        return new NamedChainTransform(stages.ToArray());
    }
}

/// <summary>State of <see cref="Transforms.Chain(IGradientTransformation[])"/>: one state per stage, in order.</summary>
public sealed record ChainState(IReadOnlyList<IOptState> States) : IOptState
{
    /// <inheritdoc />
    public IEnumerable<StateLeaf> Leaves() => States.SelectMany((s, i) => OptState.Nested(i.ToString(), s));

    /// <inheritdoc />
    public IOptState MapTensors(Func<string, Tensor, Tensor> f) =>
        new ChainState(States.Select((s, i) => OptState.MapNested(i.ToString(), s, f)).ToArray());

    /// <inheritdoc />
    public IOptState MapScalars(Func<string, double, double> f) =>
        new ChainState(States.Select((st, i) => OptState.MapNestedScalars(i.ToString(System.Globalization.CultureInfo.InvariantCulture), st, f)).ToArray());
}

/// <summary>State of <see cref="Transforms.NamedChain"/>: each stage's state under its name, in order.</summary>
public sealed record NamedChainState(IReadOnlyList<KeyValuePair<string, IOptState>> States) : IOptState
{
    /// <summary>The state of the stage called <paramref name="name"/>.</summary>
    public IOptState this[string name] => States.FirstOrDefault(kv => kv.Key == name).Value
        ?? throw new KeyNotFoundException($"no stage named '{name}' (stages: {string.Join(", ", States.Select(kv => kv.Key))})");

    /// <inheritdoc />
    public IEnumerable<StateLeaf> Leaves() => States.SelectMany(kv => OptState.Nested(kv.Key, kv.Value));

    /// <inheritdoc />
    public IOptState MapTensors(Func<string, Tensor, Tensor> f) =>
        new NamedChainState(States.Select(kv => new KeyValuePair<string, IOptState>(kv.Key, OptState.MapNested(kv.Key, kv.Value, f))).ToArray());

    /// <inheritdoc />
    public IOptState MapScalars(Func<string, double, double> f) =>
        new NamedChainState(States.Select(kv => new KeyValuePair<string, IOptState>(kv.Key, OptState.MapNestedScalars(kv.Key, kv.Value, f))).ToArray());
}

sealed class ChainTransform(IGradientTransformation[] stages) : Transform<ChainState>, IComposite
{
    public System.Collections.Generic.IEnumerable<IGradientTransformation> Children => stages;

    public override Spec Spec
    {
        get
        {
            var spec = Spec.Of("chain");
            for (int i = 0; i < stages.Length; i++) spec.With(i.ToString(System.Globalization.CultureInfo.InvariantCulture), stages[i]);
            return spec;
        }
    }

    protected override ChainState InitState(TensorTree parameters) => new(stages.Select(s => s.Init(parameters)).ToArray());

    public override ChainState Step(TensorTree updates, ChainState state, TensorTree parameters, StepContext context)
    {
        if (state.States.Count != stages.Length)
            throw new ArgumentException($"{Label} has {stages.Length} stages but the state has {state.States.Count}", nameof(state));
        var next = new IOptState[stages.Length];
        for (int i = 0; i < stages.Length; i++)
            next[i] = InPlace.Step(stages[i], updates, state.States[i], parameters, context);
        return new(next);
    }
}

sealed class NamedChainTransform((string Name, IGradientTransformation Transform)[] stages) : Transform<NamedChainState>, IComposite
{
    public System.Collections.Generic.IEnumerable<IGradientTransformation> Children => stages.Select(s => s.Transform);

    public override Spec Spec
    {
        get
        {
            var spec = Spec.Of("named_chain");
            foreach (var (name, tx) in stages) spec.With(name, tx);
            return spec;
        }
    }

    protected override NamedChainState InitState(TensorTree parameters) =>
        new(stages.Select(s => new KeyValuePair<string, IOptState>(s.Name, s.Transform.Init(parameters))).ToArray());

    public override NamedChainState Step(TensorTree updates, NamedChainState state, TensorTree parameters, StepContext context)
    {
        if (!state.States.Select(kv => kv.Key).SequenceEqual(stages.Select(s => s.Name)))
            throw new ArgumentException($"{Label}: the state's stages [{string.Join(", ", state.States.Select(kv => kv.Key))}] do not match", nameof(state));
        var next = new KeyValuePair<string, IOptState>[stages.Length];
        for (int i = 0; i < stages.Length; i++)
            next[i] = new(stages[i].Name, InPlace.Step(stages[i].Transform, updates, state.States[i].Value, parameters, context));
        return new(next);
    }
}
