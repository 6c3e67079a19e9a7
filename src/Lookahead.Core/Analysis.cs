using System;
using System.Collections.Generic;
using System.Linq;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>
/// One optimizer written as a linear system, found by probing its own update on one scalar parameter (no
/// per-optimizer formulas). The state x is the transform's state (every tensor entry), the iterate θ and, for a form
/// with a lookahead μ, the velocity v (the last update). A step is xₖ₊₁ = Aₖ xₖ + Bₖ gₖ, where gₖ is the gradient at
/// the point recorded after step k − 1 (θ₀ before the first); the recorded point is yₖ = C xₖ₊₁ = θₖ₊₁ + μ·vₖ₊₁; the
/// start is x₀ = E θ₀.
/// </summary>
/// <param name="Form">The optimizer form realised.</param>
/// <param name="Linear">Whether every probed step passed the superposition checks (zero in, zero out; additivity; scaling).</param>
/// <param name="NotLinearBecause">Why not, naming the primitive, when <paramref name="Linear"/> is false.</param>
/// <param name="StateNames">The names of x's coordinates (state leaf paths, then "θ" and, with a lookahead, "v").</param>
/// <param name="A">Aₖ for the probed steps k = 1 … (index k − 1).</param>
/// <param name="B">Bₖ for the probed steps.</param>
/// <param name="C">The output row.</param>
/// <param name="E">The start column (x₀ = E θ₀).</param>
/// <param name="SettlesAt">The first step from which every probed step has the same matrices (1: time-invariant).</param>
public sealed record Realisation(OptimizerForm Form, bool Linear, string? NotLinearBecause, IReadOnlyList<string> StateNames,
    IReadOnlyList<double[,]> A, IReadOnlyList<double[]> B, double[] C, double[] E, int SettlesAt)
{
    /// <summary>Dimension of the state.</summary>
    public int Order => StateNames.Count;

    /// <summary>Whether the probed steps all have the same matrices.</summary>
    public bool TimeInvariant => Linear && SettlesAt == 1;

    /// <summary>Whether the last probed steps share their matrices (false: time-varying over the whole horizon probed, e.g. a bias correction or a schedule).</summary>
    public bool Settled => Linear && SettlesAt < A.Count;

    /// <inheritdoc />
    public override string ToString() =>
        !Linear ? $"{Form}: not linear ({NotLinearBecause})"
        : TimeInvariant ? $"{Form}: linear, time-invariant, order {Order}"
        : Settled ? $"{Form}: linear, time-invariant from step {SettlesAt}, order {Order}"
        : $"{Form}: linear, time-varying over the {A.Count} steps probed, order {Order}";
}

/// <summary>The result of an exact equivalence decision.</summary>
/// <param name="Decided">Whether both forms were linear, so the decision is exact (else see <paramref name="Reason"/>).</param>
/// <param name="Equal">Whether the two forms give the same recorded points for every start and gradient sequence (over the horizon, for time-varying forms).</param>
/// <param name="Horizon">Steps compared (enough for time-invariant forms: the Cayley–Hamilton bound plus the steps before they settle).</param>
/// <param name="FirstDifference">Where the responses first differ, when not equal.</param>
/// <param name="Reason">Why the decision is not exact, or what it relied on.</param>
public sealed record ExactEquivalence(bool Decided, bool Equal, int Horizon, string? FirstDifference, string Reason)
{
    /// <inheritdoc />
    public override string ToString() => !Decided ? $"not decided: {Reason}" : Equal ? $"equal ({Reason})" : $"not equal: {FirstDifference}";
}

/// <summary>
/// Optimizers as linear dynamical systems: their realisation (<see cref="Realise"/>) and exact equivalence
/// (<see cref="Equal"/>), for every form linear in its gradients.
/// </summary>
public static partial class Analysis
{
    /// <summary>Steps probed by default: enough to see a first-step special case and a schedule's change.</summary>
    public const int DefaultSteps = 12;

    /// <summary>Realises <paramref name="form"/> over its first <paramref name="steps"/> steps (see <see cref="Realisation"/>).</summary>
    public static Realisation Realise(OptimizerForm form, int steps = DefaultSteps)
    {
        ArgumentNullException.ThrowIfNull(form);
        Check.AtLeast(steps, 2, nameof(steps));
        try { return Probe(form, steps); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            // A transform that refuses a one-scalar parameter (it needs a matrix, a name, a context value) has no
            // realisation here; the reason is its own message.
            return NotLinear(form, $"{form.Transform.Name} cannot be probed on one scalar parameter: {e.Message}");
        }
    }

    static Realisation Probe(OptimizerForm form, int steps)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var tx = form.Transform;
        double mu = form.Lookahead;
        if (Unrealisable(tx) is { } why)
            return NotLinear(form, why);
        var requirements = Validation.Requirements(tx);
        if (requirements.Count > 0)
            return NotLinear(form, $"{string.Join(", ", requirements.Select(r => r.RequiredBy).Distinct())} reads the step context ('{string.Join("', '", requirements.Select(r => r.KeyName).Distinct())}'), which a linear realisation does not model");

        var zero = Scalar(0);
        var initial = tx.Init(zero);
        var paths = initial.Leaves().Where(l => l.Tensor is not null).Select(l => (l.Path, Count: (int)l.Tensor!.numel())).ToArray();
        var names = new List<string>();
        foreach (var (path, count) in paths) for (int i = 0; i < count; i++) names.Add(count == 1 ? path : $"{path}[{i}]");
        int ns = names.Count;
        names.Add("θ");
        if (mu != 0) names.Add("v");
        int n = names.Count;

        // The start: x₀ = E θ₀, linear in θ₀ (Init may copy θ, e.g. slow weights).
        var e1 = StateOf(tx.Init(Scalar(1)), paths);
        var e2 = StateOf(tx.Init(Scalar(2)), paths);
        var e0 = StateOf(initial, paths);
        if (e0.Any(x => x != 0) || e1.Zip(e2).Any(p => !Close(2 * p.First, p.Second)))
            return NotLinear(form, $"{tx.Name}'s initial state is not linear in θ₀");
        var E = new double[n];
        e1.CopyTo(E, 0);
        E[ns] = 1;

        var C = new double[n];
        C[ns] = 1;
        if (mu != 0) C[ns + 1] = mu;

        var As = new List<double[,]>();
        var Bs = new List<double[]>();
        var rng = new Random(12345);
        var counts = initial;
        for (int k = 1; k <= steps; k++)
        {
            // The state at step k: the start's structure with its counters advanced by k − 1 zero steps.
            Func<double[], double[]> step = z => Step(tx, counts, paths, ns, mu, z);
            double[] At(int i) { var z = new double[n + 1]; z[i] = 1; return step(z); }
            var zeroOut = step(new double[n + 1]);
            if (zeroOut.Any(x => x != 0))
                return NotLinear(form, $"{Culprit(tx)} at step {k}: a zero state and gradient give a nonzero result");
            var columns = Enumerable.Range(0, n + 1).Select(At).ToArray();
            // Superposition: random combinations of mixed magnitudes against the same combination of the columns.
            // The last two trials are far larger and far smaller than the first three, so a clip or a threshold that
            // binds only at some magnitudes shows.
            for (int trial = 0; trial < 5; trial++)
            {
                double magnitude = trial switch { 3 => 1e12, 4 => 1e-12, _ => 1 };
                var z = Enumerable.Range(0, n + 1).Select(_ => magnitude * (rng.NextDouble() * 2 - 1) * Math.Pow(10, rng.Next(-3, 3))).ToArray();
                var direct = step(z);
                var combined = new double[n];
                for (int i = 0; i <= n; i++) for (int r = 0; r < n; r++) combined[r] += columns[i][r] * z[i];
                for (int r = 0; r < n; r++)
                    if (!Close(direct[r], combined[r], Enumerable.Range(0, n + 1).Sum(i => Math.Abs(columns[i][r] * z[i]))))
                        return NotLinear(form, $"{Culprit(tx)} at step {k}: {names[r]} is not linear in the state and the gradient ({direct[r]:g6} against {combined[r]:g6} from superposition)");
            }
            var A = new double[n, n];
            for (int i = 0; i < n; i++) for (int r = 0; r < n; r++) A[r, i] = columns[i][r];
            As.Add(A);
            Bs.Add(columns[n]);
            // Advance the counters with a zero step (the values stay zero for a linear form).
            var (_, next) = tx.Update(Tree(zero), counts, zero, StepContext.Empty);
            counts = next;
        }
        // The first step from which every probed step equals the last one.
        int settles = As.Count;
        while (settles > 1 && SameStep(As[settles - 2], Bs[settles - 2], As[^1], Bs[^1])) settles--;
        return new Realisation(form, true, null, names, As, Bs, C, E, settles);
    }

    /// <summary>
    /// Decides whether <paramref name="a"/> and <paramref name="b"/> are the same algorithm: the same recorded points
    /// for every start θ₀ and every gradient sequence. Exact when both are linear and settle within the steps probed:
    /// their responses to θ₀ and to a gradient at each step up to the later settling step are compared over the
    /// settling step plus both orders plus one (Cayley–Hamilton), within a bound of rounding. Time-varying forms are
    /// compared over <paramref name="horizon"/> steps. Not decided (and no answer) when either is not linear.
    /// </summary>
    public static ExactEquivalence Equal(OptimizerForm a, OptimizerForm b, int horizon = 40)
    {
        var ra = Realise(a, Math.Max(DefaultSteps, 2));
        var rb = Realise(b, Math.Max(DefaultSteps, 2));
        if (!ra.Linear) return new(false, false, 0, null, $"{a} is not linear: {ra.NotLinearBecause}");
        if (!rb.Linear) return new(false, false, 0, null, $"{b} is not linear: {rb.NotLinearBecause}");
        bool settled = ra.Settled && rb.Settled;
        if (!settled)
        {
            // Time-varying: every step's own matrices over the whole horizon (not the last probed step's, repeated).
            Check.AtLeast(horizon, 1, nameof(horizon));
            if (!ra.Settled && ra.A.Count < horizon) ra = Realise(a, Math.Max(horizon, 2));
            if (!rb.Settled && rb.A.Count < horizon) rb = Realise(b, Math.Max(horizon, 2));
            if (!ra.Linear) return new(false, false, 0, null, $"{a} is not linear: {ra.NotLinearBecause}");
            if (!rb.Linear) return new(false, false, 0, null, $"{b} is not linear: {rb.NotLinearBecause}");
        }
        int from = Math.Max(ra.SettlesAt, rb.SettlesAt);
        int steps = settled ? from + ra.Order + rb.Order + 1 : (int)Check.AtLeast(horizon, 1, nameof(horizon));
        int inputs = settled ? from : steps;
        string basis = settled
            ? $"exact: both linear and time-invariant from step {from}; responses compared over {steps} steps (orders {ra.Order} and {rb.Order})"
            : $"exact over {steps} steps: linear, time-varying";
        // Responses: to θ₀ (input −1), and to a unit gradient at step j.
        for (int input = -1; input < inputs; input++)
        {
            var ya = Response(ra, input, steps);
            var yb = Response(rb, input, steps);
            for (int k = 0; k < steps; k++)
            {
                double scale = Math.Max(ya.Magnitude[k], yb.Magnitude[k]);
                if (!Close(ya.Values[k], yb.Values[k], scale))
                {
                    string what = input < 0 ? "θ₀" : $"a unit gradient at step {input + 1}";
                    double ulps = Math.Abs(ya.Values[k] - yb.Values[k]) / (Math.Max(scale, 1e-300) * Rounding);
                    return new(true, false, steps, $"the point after step {k + 1} in response to {what}: {ya.Values[k]:g17} against {yb.Values[k]:g17} ({ulps:g3} roundings of the terms' size)", basis);
                }
            }
        }
        return new(true, true, steps, null, basis);
    }

    /// <summary>
    /// The values s in [<paramref name="low"/>, <paramref name="high"/>] for which <c>family(s)</c> is the same
    /// algorithm as <paramref name="target"/> (decided by <see cref="Equal"/>): e.g. the lookahead μ, the ν or the
    /// learning-rate scale that makes two forms equal. The responses' differences are scanned on
    /// <paramref name="grid"/> points, each local minimum of their size is refined by Gauss–Newton with
    /// central differences, and a candidate is kept only if the exact decision says equal. Empty when none is.
    /// </summary>
    /// <exception cref="ArgumentException">The target is not linear (the message names the primitive), or the range is empty.</exception>
    public static IReadOnlyList<double> SolveScalar(Func<double, OptimizerForm> family, OptimizerForm target, double low, double high, int grid = 64)
    {
        ArgumentNullException.ThrowIfNull(family);
        var rt = RequireLinear(target, nameof(target));
        Check.Finite(low, nameof(low));
        Check.Finite(high, nameof(high));
        if (!(high > low)) throw new ArgumentException($"high = {high} must be > low = {low}", nameof(high));
        Check.AtLeast(grid, 3, nameof(grid));
        int steps = 3 * rt.Order + rt.SettlesAt + 8;
        var reference = Enumerable.Range(-1, steps + 1).Select(input => Response(rt, input, steps)).ToArray();
        // The differences of every response, each relative to its terms' size; null where the family cannot be built.
        double[]? Residual(double s)
        {
            Realisation r;
            try { r = Realise(family(s)); } catch (ArgumentException) { return null; }
            if (!r.Linear) return null;
            var d = new List<double>();
            for (int input = -1; input < steps; input++)
            {
                var y = Response(r, input, steps);
                var yt = reference[input + 1];
                for (int k = 0; k < steps; k++) d.Add((y.Values[k] - yt.Values[k]) / Math.Max(Math.Max(y.Magnitude[k], yt.Magnitude[k]), 1e-300));
            }
            return d.ToArray();
        }
        double Size(double[]? d) => d is null ? double.PositiveInfinity : Math.Sqrt(d.Sum(x => x * x));
        var at = Enumerable.Range(0, grid).Select(i => low + (high - low) * i / (grid - 1)).ToArray();
        var size = at.Select(s => Size(Residual(s))).ToArray();
        var found = new List<double>();
        for (int i = 0; i < grid; i++)
        {
            if (double.IsInfinity(size[i]) || (i > 0 && size[i - 1] < size[i]) || (i < grid - 1 && size[i + 1] < size[i])) continue;
            double s = at[i];
            for (int it = 0; it < 60; it++)
            {
                double h = 1e-6 * Math.Max(Math.Abs(s), (high - low) / grid);
                var r0 = Residual(s);
                var rp = Residual(s + h);
                var rm = Residual(s - h);
                if (r0 is null || rp is null || rm is null) break;
                double num = 0, den = 0;
                for (int j = 0; j < r0.Length; j++) { double dj = (rp[j] - rm[j]) / (2 * h); num += dj * r0[j]; den += dj * dj; }
                if (den == 0) break;
                double next = s - num / den;
                if (!(next >= low && next <= high) || next == s) { s = Math.Clamp(next, low, high); break; }
                bool done = Math.Abs(next - s) <= 1e-15 * Math.Max(Math.Abs(s), 1e-300);
                s = next;
                if (done) break;
            }
            if (found.Any(f => Math.Abs(f - s) <= 1e-9 * Math.Max(1, Math.Abs(s)))) continue;
            OptimizerForm candidate;
            try { candidate = family(s); } catch (ArgumentException) { continue; }
            if (Equal(candidate, target).Equal) found.Add(s);
        }
        return found;
    }

    /// <summary>The recorded points after each step in response to θ₀ = 1 (<paramref name="input"/> −1) or to a unit gradient at step input + 1, with the sum of the terms' magnitudes (for the rounding bound).</summary>
    static (double[] Values, double[] Magnitude) Response(Realisation r, int input, int steps)
    {
        int n = r.Order;
        var x = input < 0 ? (double[])r.E.Clone() : new double[n];
        var m = x.Select(Math.Abs).ToArray();
        var values = new double[steps];
        var magnitude = new double[steps];
        for (int k = 0; k < steps; k++)
        {
            var A = r.A[Math.Min(k, r.A.Count - 1)];
            var B = r.B[Math.Min(k, r.B.Count - 1)];
            double g = k == input ? 1 : 0;
            var next = new double[n];
            var nextM = new double[n];
            for (int i = 0; i < n; i++)
            {
                double s = B[i] * g, a = Math.Abs(B[i] * g);
                for (int j = 0; j < n; j++) { s += A[i, j] * x[j]; a += Math.Abs(A[i, j]) * m[j]; }
                (next[i], nextM[i]) = (s, a);
            }
            (x, m) = (next, nextM);
            for (int i = 0; i < n; i++) { values[k] += r.C[i] * x[i]; magnitude[k] += Math.Abs(r.C[i]) * m[i]; }
        }
        return (values, magnitude);
    }

    static Realisation NotLinear(OptimizerForm form, string why) =>
        new(form, false, why, Array.Empty<string>(), Array.Empty<double[,]>(), Array.Empty<double[]>(), Array.Empty<double>(), Array.Empty<double>(), 0);

    /// <summary>One step from state values z[0..n) and gradient z[n]: the next (state, θ, [v]).</summary>
    static double[] Step(IGradientTransformation tx, IOptState structure, (string Path, int Count)[] paths, int ns, double mu, double[] z)
    {
        using var scope = NewDisposeScope();
        var byPath = new Dictionary<string, double[]>();
        int o = 0;
        foreach (var (path, count) in paths) { byPath[path] = z[o..(o + count)]; o += count; }
        var state = structure.MapTensors((path, t) => tensor(byPath[path], dtype: ScalarType.Float64).reshape(t.shape));
        var theta = Scalar(z[ns]);
        var grad = Scalar(z[^1]);
        var (updates, next) = tx.Update(Tree(grad), state, theta, StepContext.Empty);
        double u = updates.Tensors[0].item<double>();
        var result = new List<double>(StateOf(next, paths)) { z[ns] + u };
        if (mu != 0) result.Add(u);
        return result.ToArray();
    }

    static double[] StateOf(IOptState state, (string Path, int Count)[] paths)
    {
        var leaves = state.Leaves().Where(l => l.Tensor is not null).ToDictionary(l => l.Path, l => l.Tensor!);
        return paths.SelectMany(p => leaves[p.Path].to(ScalarType.Float64).contiguous().data<double>().ToArray()).ToArray();
    }

    static TensorTree Scalar(double value) => TensorTree.Of(("w", tensor(new[] { value }, dtype: ScalarType.Float64)));

    static TensorTree Tree(TensorTree t) => t;

    /// <summary>The first primitive of the tree that is not linear on its own (probed alone), or the transform itself.</summary>
    static string Culprit(IGradientTransformation tx)
    {
        if (tx is IComposite c)
            foreach (var child in c.Children)
                if (!Realise(new OptimizerForm(child), 3).Linear) return Culprit(child);
        return tx.Name;
    }

    /// <summary>
    /// Why the first transform of the tree that a one-scalar realisation cannot represent is so (a partition routes
    /// parameters by name or shape; the orthogonaliser and the shape scaling act on whole matrices), or null.
    /// </summary>
    static string? Unrealisable(IGradientTransformation tx) =>
        tx switch
        {
            PartitionTransform => $"{tx.Name} routes parameters by name or shape, which a one-parameter realisation does not represent",
            OrthogonaliseTransform => $"{tx.Name} (Newton–Schulz) is a matrix function of the update, not linear in it",
            ScaleByShapeTransform => $"{tx.Name} scales each matrix by a factor of its shape, which a one-parameter realisation does not represent",
            IComposite c => c.Children.Select(Unrealisable).FirstOrDefault(n => n is not null),
            _ => null,
        };

    static bool SameStep(double[,] a1, double[] b1, double[,] a2, double[] b2)
    {
        for (int i = 0; i < b1.Length; i++)
        {
            if (!Close(b1[i], b2[i])) return false;
            for (int j = 0; j < b1.Length; j++) if (!Close(a1[i, j], a2[i, j])) return false;
        }
        return true;
    }

    /// <summary>Equal within 64 roundings of the larger of the values and <paramref name="scale"/> (the terms' size).</summary>
    static bool Close(double a, double b, double scale = 0) =>
        a == b || Math.Abs(a - b) <= 64 * Rounding * Math.Max(Math.Max(Math.Abs(a), Math.Abs(b)), scale);

    /// <summary>One rounding of float64 (the unit roundoff's double, 2⁻⁵²).</summary>
    const double Rounding = 2.220446049250313e-16;
}
