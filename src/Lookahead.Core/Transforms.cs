namespace Lookahead;

/// <summary>
/// The primitives and combinators of the algebra, as factories of <see cref="IGradientTransformation"/>.
/// Each factory validates its arguments eagerly; each primitive lives in its own file with its state
/// record (<c>Primitives/</c>, <c>Combinators/</c>).
/// </summary>
public static partial class Transforms;
