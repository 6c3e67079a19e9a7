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
    /// but the state holds each stage's state under its name (<c>state["momentum"]</c> of the <see cref="DeclaredState"/>).
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

sealed class ChainTransform(IGradientTransformation[] stages) : DeclaredTransform, IComposite, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    // One child slot per stage, named by its position: "0", "1", …
    readonly (StateLayout Layout, Slot<IOptState>[] Stages) _state = Declared("chain", stages.Select((s, i) => (i.ToString(System.Globalization.CultureInfo.InvariantCulture), s)));

    internal static (StateLayout, Slot<IOptState>[]) Declared(string kind, IEnumerable<(string Name, IGradientTransformation Transform)> stages)
    {
        var layout = new StateLayout(kind);
        var slots = stages.Select(s => layout.Child(s.Name, s.Transform.Init)).ToArray();
        return (layout.Seal(), slots);
    }

    protected override StateLayout Declare() => _state.Layout;

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

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        for (int i = 0; i < stages.Length; i++)
            state = state.With(_state.Stages[i], InPlace.Step(stages[i], updates, state.Get(_state.Stages[i]), parameters, context));
        return state;
    }
}

sealed class NamedChainTransform((string Name, IGradientTransformation Transform)[] stages) : DeclaredTransform, IComposite, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    // One child slot per stage, under the stage's name.
    readonly (StateLayout Layout, Slot<IOptState>[] Stages) _state = ChainTransform.Declared("named_chain", stages);

    protected override StateLayout Declare() => _state.Layout;

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

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        for (int i = 0; i < stages.Length; i++)
            state = state.With(_state.Stages[i], InPlace.Step(stages[i].Transform, updates, state.Get(_state.Stages[i]), parameters, context));
        return state;
    }
}
