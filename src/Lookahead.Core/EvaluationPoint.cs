using System;
using System.Collections.Generic;
using System.Linq;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>
/// A transform whose parameters are not the point to evaluate: Schedule-Free's average x, a parameter average
/// (EMA or SWA). The point is computed per parameter from one per-parameter slot of the transform's own state.
/// </summary>
interface IEvaluationPoint
{
    /// <summary>The name of the per-parameter slot the point is computed from (unique in a state).</summary>
    string SlotName { get; }

    /// <summary>The evaluation point of one parameter (a new tensor).</summary>
    Tensor Evaluation(Tensor slot, Tensor parameter);

    /// <summary>Whether the training parameters follow from the evaluation point and the slot (else the runner keeps a copy).</summary>
    bool Invertible { get; }

    /// <summary>In place, for an invertible point: a parameter holding the training value becomes the evaluation point, or back.</summary>
    void Switch(Tensor slot, Tensor parameter, bool toEvaluation);
}

/// <summary>
/// The point to evaluate an optimizer at, when it is not the parameters: Schedule-Free's average x
/// (<see cref="Transforms.ScheduleFreeAverage"/>) or a parameter average (<see cref="Transforms.AverageParameters"/>).
/// <see cref="Runner.UseEvaluationParameters"/> switches a runner's parameters to it.
/// </summary>
public static class Evaluation
{
    /// <summary>Whether <paramref name="transform"/> defines an evaluation point of its own.</summary>
    public static bool Defined(IGradientTransformation transform) => Nodes(Check.NotNull(transform, nameof(transform))).Any();

    /// <summary>
    /// The evaluation point for each parameter, new tensors (the caller owns them), from the training parameters and
    /// the state of <paramref name="transform"/>, which must define exactly one.
    /// </summary>
    public static TensorTree Parameters(IGradientTransformation transform, IOptState state, TensorTree parameters)
    {
        var (node, slots) = Find(transform, state, parameters);
        using var noGrad = no_grad();
        return TensorTree.Of(parameters.Names, parameters.Tensors.Select((p, i) => node.Evaluation(slots[i], p.detach())).ToArray());
    }

    internal static IEnumerable<IEvaluationPoint> Nodes(IGradientTransformation t) =>
        t is IEvaluationPoint e ? new[] { e } : t is IComposite c ? c.Children.SelectMany(Nodes) : Enumerable.Empty<IEvaluationPoint>();

    internal static (IEvaluationPoint Node, Tensor[] Slots) Find(IGradientTransformation transform, IOptState state, TensorTree parameters)
    {
        ArgumentNullException.ThrowIfNull(transform);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(parameters);
        var nodes = Nodes(transform).ToArray();
        if (nodes.Length != 1)
            throw new ArgumentException($"{transform.Name} defines {nodes.Length} evaluation points (Schedule-Free averages or parameter averages); exactly one is needed", nameof(transform));
        string slot = nodes[0].SlotName;
        var leaves = state.Leaves().Where(l => l.Tensor is not null && l.Path.Split('/').Contains(slot)).ToDictionary(l => l.Path.Split('/')[^1], l => l.Tensor!);
        var tensors = parameters.Names.Select(n => leaves.TryGetValue(n, out var t) ? t
            : throw new ArgumentException($"the state has no '{slot}' for parameter '{n}' (is it this transform's state?)", nameof(state))).ToArray();
        for (int i = 0; i < tensors.Length; i++)
            if (!tensors[i].shape.SequenceEqual(parameters.Tensors[i].shape))
                throw new ArgumentException($"parameter '{parameters.Names[i]}' has shape [{string.Join(", ", parameters.Tensors[i].shape)}] but its '{slot}' has [{string.Join(", ", tensors[i].shape)}]", nameof(parameters));
        return (nodes[0], tensors);
    }
}
