using System;
using System.Collections.Generic;
using System.Linq;

namespace Lookahead;

public static partial class Transforms
{
    /// <summary>
    /// Names a composition after the arguments a user gave: the result behaves exactly as
    /// <paramref name="definition"/> (same state, same paths, same updates), but its name and
    /// <see cref="Spec"/> list <paramref name="hyperparameters"/> first, so that a checkpoint saved for
    /// <c>Optim.Momo(lr: 1)</c> and loaded into <c>Optim.Momo(lr: 0.5)</c> is rejected naming <c>momo/lr</c>.
    /// The definition's own spec is kept under <c>definition</c>, so a change of the maths is caught too.
    /// Every <c>Optim.*</c> factory is one of these.
    /// </summary>
    /// <param name="kind">The optimizer's name, e.g. <c>"adam"</c>.</param>
    /// <param name="definition">The composition.</param>
    /// <param name="hyperparameters">The arguments, in the factory's order, with the values given.</param>
    public static IGradientTransformation Define(string kind, IGradientTransformation definition, params (string Name, object? Value)[] hyperparameters)
    {
        ArgumentNullException.ThrowIfNull(definition);
        ArgumentNullException.ThrowIfNull(hyperparameters);
        var head = Spec.Of(kind);
        foreach (var (name, value) in hyperparameters) head.With(name, value);
        return new DefinedTransform(head, definition);
    }
}

/// <summary>A composition under the name and arguments of the factory that built it (<see cref="Transforms.Define"/>).</summary>
sealed class DefinedTransform(Spec head, IGradientTransformation definition) : IGradientTransformation, IInPlaceTransform, IComposite, IValidating, Kernels.IFusable, IDifferentiable
{
    public bool FusesAlone => true;

    /// <summary>The factory's arguments only.</summary>
    public string Name => head.ToString();

    public Spec Spec
    {
        get
        {
            var spec = Spec.Of(head.Kind);
            foreach (var (k, v) in head.Entries) spec.With(k, v);
            return spec.With("definition", definition.Spec);
        }
    }

    public IEnumerable<IGradientTransformation> Children => new[] { definition };

    public IOptState Init(TensorTree parameters) => definition.Init(parameters);

    public (TensorTree Updates, IOptState State) Update(TensorTree gradients, IOptState state, TensorTree parameters, StepContext context) =>
        definition.Update(gradients, state, parameters, context);

    public IOptState StepInPlace(TensorTree updates, IOptState state, TensorTree parameters, StepContext context) =>
        InPlace.Step(definition, updates, state, parameters, context);

    public void Validate(IReadOnlyList<ParameterInfo> parameters, ValidationReport report) =>
        Validation.Child(definition, parameters, report);

    public override string ToString() => Name;
}
