using System;
using System.Collections.Immutable;

namespace Lookahead;

/// <summary>A typed key for a value carried by a <see cref="StepContext"/>.</summary>
/// <typeparam name="T">Type of the value.</typeparam>
/// <param name="Name">Name shown in error messages.</param>
public sealed record ContextKey<T>(string Name)
{
    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>The keys that Lookahead's own primitives read.</summary>
public static partial class ContextKeys
{
    /// <summary>The loss at the current parameters on the current batch (Polyak-type steps read it).</summary>
    public static readonly ContextKey<double> Loss = new("loss");
}

/// <summary>
/// The extras of one step (the loss value, and so on), as an immutable map from typed keys to values.
/// New extras are new keys: no signature changes. Reading a key that a primitive requires and the
/// caller did not supply is an error that names the primitive and the key.
/// </summary>
public sealed class StepContext
{
    readonly ImmutableDictionary<object, object?> _values;

    StepContext(ImmutableDictionary<object, object?> values) => _values = values;

    /// <summary>The context with no extras.</summary>
    public static StepContext Empty { get; } = new(ImmutableDictionary<object, object?>.Empty);

    /// <summary>This context with <paramref name="key"/> set to <paramref name="value"/> (this one is unchanged).</summary>
    public StepContext With<T>(ContextKey<T> key, T value)
    {
        ArgumentNullException.ThrowIfNull(key);
        return new(_values.SetItem(key, value));
    }

    /// <summary>This context with the loss set.</summary>
    public StepContext WithLoss(double loss) => With(ContextKeys.Loss, loss);

    /// <summary>Reads <paramref name="key"/> if present.</summary>
    public bool TryGet<T>(ContextKey<T> key, out T value)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (_values.TryGetValue(key, out var v) && v is T typed) { value = typed; return true; }
        value = default!;
        return false;
    }

    /// <summary>Reads <paramref name="key"/>; throws naming <paramref name="requiredBy"/> if it is absent.</summary>
    public T Get<T>(ContextKey<T> key, string requiredBy)
    {
        if (TryGet(key, out var v)) return v;
        throw new ArgumentException(
            $"{requiredBy} needs the step context to carry '{key.Name}', but it does not; supply it with StepContext.With", "context");
    }

    /// <summary>Whether <paramref name="key"/> is present.</summary>
    public bool Contains<T>(ContextKey<T> key) => _values.ContainsKey(key);

    /// <summary>Whether an untyped key (a <see cref="ContextKey{T}"/>) is present.</summary>
    internal bool ContainsKey(object key) => _values.ContainsKey(key);
}
