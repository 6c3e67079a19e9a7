using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>Applying updates to parameters.</summary>
public static class Updates
{
    /// <summary>
    /// The new parameters θ + u, as fresh tensors owned by the caller; <paramref name="parameters"/> and
    /// <paramref name="updates"/> are unchanged. Updates are added: descent optimizers produce negative steps.
    /// </summary>
    public static TensorTree Apply(TensorTree parameters, TensorTree updates)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        parameters.CheckMatches(updates, nameof(updates), nameof(parameters));
        using var noGrad = no_grad();
        using var one = 1.0.ToScalar();
        return parameters.Map((name, p) => p.add(updates[name], one));   // under no_grad: no graph, no detach needed
    }

    /// <summary>
    /// θ ← θ + u in place, under <c>no_grad</c>: for training a module whose parameters must keep their
    /// identity. The only Lookahead function that mutates a caller's tensors.
    /// </summary>
    public static void ApplyInPlace(TensorTree parameters, TensorTree updates)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        parameters.CheckMatches(updates, nameof(updates), nameof(parameters));
        using var noGrad = no_grad();
        using var one = 1.0.ToScalar();
        for (int i = 0; i < parameters.Count; i++) parameters.Tensors[i].add_(updates.Tensors[i], one);
    }
}
