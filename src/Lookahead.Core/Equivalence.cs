using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>
/// The parameter-space view of the generalised-Nesterov note: the map between the iterate θ and the
/// shifted point θ′ = θ + μ·v, where v is the velocity (the last update, θₜ − θₜ₋₁). An optimizer
/// written "gradient at the lookahead point" runs on θ; the same optimizer written "in shifted
/// coordinates" runs on θ′.
/// </summary>
public static class ShiftedCoordinates
{
    /// <summary>θ + μ·v as new tensors (owned by the caller).</summary>
    public static TensorTree Shift(TensorTree parameters, TensorTree velocity, double lookahead)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        parameters.CheckMatches(velocity, nameof(velocity), nameof(parameters));
        Check.Finite(lookahead, nameof(lookahead));
        using var noGrad = no_grad();
        using var mu = lookahead.ToScalar();
        return TensorTree.Of(parameters.Names, parameters.Tensors.Select((p, i) => p.detach().add(velocity.Tensors[i], alpha: mu)).ToArray());
    }

    /// <summary>θ′ − μ·v as new tensors (owned by the caller).</summary>
    public static TensorTree Unshift(TensorTree shifted, TensorTree velocity, double lookahead) =>
        Shift(shifted, velocity, -Check.Finite(lookahead, nameof(lookahead)));
}

/// <summary>One way of writing an optimizer, for <see cref="Equivalence"/>.</summary>
/// <param name="Transform">The transform.</param>
/// <param name="Lookahead">μ: gradients are evaluated at θ + μ·v (v the last update, zero before the first step), and that point is what the trajectory records. 0 for an ordinary loop.</param>
/// <param name="Label">Shown in reports; the transform's name if null.</param>
public sealed record OptimizerForm(IGradientTransformation Transform, double Lookahead = 0, string? Label = null)
{
    /// <inheritdoc />
    public override string ToString() => Label ?? (Lookahead == 0 ? Transform.Name : $"{Transform.Name} @ θ+{Lookahead}·v");
}

/// <summary>Where the gradients (and losses) of a comparison come from.</summary>
public interface IGradientOracle
{
    /// <summary>The starting parameters (borrowed; the runner copies them).</summary>
    TensorTree InitialParameters { get; }

    /// <summary>The gradient (a new tree, owned by the caller) and the loss at <paramref name="point"/> for step <paramref name="step"/> (0-based).</summary>
    (TensorTree Gradient, double? Loss) Evaluate(int step, TensorTree point);
}

/// <summary>A fixed stream of gradients (and losses): the point where they are "evaluated" is ignored.</summary>
/// <param name="InitialParameters">θ₀.</param>
/// <param name="Gradients">One tree per step.</param>
/// <param name="Losses">One loss per step, or null.</param>
public sealed record GradientStream(TensorTree InitialParameters, IReadOnlyList<TensorTree> Gradients, IReadOnlyList<double>? Losses = null) : IGradientOracle
{
    /// <inheritdoc />
    public (TensorTree, double?) Evaluate(int step, TensorTree point) => (Gradients[step].Clone(), Losses?[step]);
}

/// <summary>
/// A convex quadratic per tensor: f(θ) = Σᵢ ½(θᵢ − cᵢ)ᵀAᵢ(θᵢ − cᵢ) + f₀ over the flattened tensors, with
/// Aᵢ symmetric positive semi-definite; the gradient is Aᵢ(θᵢ − cᵢ).
/// </summary>
/// <remarks>The problem owns copies of its tensors, outside any dispose scope; dispose it when done.</remarks>
public sealed class QuadraticProblem : IGradientOracle, IDisposable
{
    readonly Tensor[] _a, _c;
    readonly double _offset;

    /// <summary>A problem from its parts (tensors are copied).</summary>
    public QuadraticProblem(TensorTree initialParameters, IReadOnlyList<Tensor> curvatures, IReadOnlyList<Tensor> centres, double offset = 0)
    {
        using var noGrad = no_grad();
        InitialParameters = initialParameters.Map(t => t.detach().clone().DetachFromDisposeScope());
        _a = curvatures.Select(t => t.detach().clone().DetachFromDisposeScope()).ToArray();
        _c = centres.Select(t => t.detach().reshape(-1).clone().DetachFromDisposeScope()).ToArray();
        _offset = offset;
    }

    /// <summary>Frees the problem's tensors.</summary>
    public void Dispose()
    {
        InitialParameters.Dispose();
        foreach (var t in _a.Concat(_c)) t.Dispose();
    }

    /// <summary>
    /// A random problem for <paramref name="parameters"/>' shapes: Aᵢ = QᵀQ/n + λ·I with eigenvalues spread
    /// over about <paramref name="conditionNumber"/>, centres and θ₀ standard normal; float64 on the CPU.
    /// </summary>
    public static QuadraticProblem Random(TensorTree parameters, Generator generator, double conditionNumber = 100)
    {
        using var scope = NewDisposeScope();
        var a = new List<Tensor>();
        var c = new List<Tensor>();
        foreach (var p in parameters.Tensors)
        {
            long n = p.numel();
            var q = randn(new[] { n, n }, ScalarType.Float64, generator: generator);
            var (basis, _) = linalg.qr(q);
            var eig = logspace(0, Math.Log10(conditionNumber), n, dtype: ScalarType.Float64).div_(conditionNumber);
            a.Add(basis.matmul(diag(eig)).matmul(basis.mT));
            c.Add(randn(new[] { n }, ScalarType.Float64, generator: generator));
        }
        var theta0 = parameters.Map(p => randn(p.shape, ScalarType.Float64, generator: generator));
        return new QuadraticProblem(theta0, a, c, 1.0);
    }

    /// <inheritdoc />
    public TensorTree InitialParameters { get; }

    /// <inheritdoc />
    public (TensorTree, double?) Evaluate(int step, TensorTree point)
    {
        using var noGrad = no_grad();
        double loss = _offset;
        var grads = new Tensor[point.Count];
        for (int i = 0; i < point.Count; i++)
        {
            using var scope = NewDisposeScope();
            var x = point.Tensors[i].reshape(-1).to(ScalarType.Float64).sub(_c[i]);
            var g = _a[i].matmul(x);
            loss += 0.5 * x.dot(g).item<double>();
            grads[i] = g.reshape(point.Tensors[i].shape).to(point.Tensors[i].dtype).MoveToOuterDisposeScope();
        }
        return (TensorTree.Of(point.Names, grads), loss);
    }
}

/// <summary>Tolerance |a − b| ≤ Absolute + Relative·|b|.</summary>
public sealed record Tolerance(double Absolute = 1e-10, double Relative = 1e-8)
{
    /// <summary>Bit-for-bit equality.</summary>
    public static Tolerance Exact { get; } = new(0, 0);

    /// <summary>Whether <paramref name="a"/> is within tolerance of <paramref name="b"/> (NaN matches only NaN).</summary>
    public bool Accepts(double a, double b) =>
        (double.IsNaN(a) && double.IsNaN(b)) || a == b || Math.Abs(a - b) <= Absolute + Relative * Math.Abs(b);

    /// <inheritdoc />
    public override string ToString() => $"|a−b| ≤ {Absolute:g3} + {Relative:g3}·|b|";
}

/// <summary>The outcome of comparing two trajectories.</summary>
/// <param name="Equivalent">Whether every value agreed within the tolerance.</param>
/// <param name="Steps">Steps compared.</param>
/// <param name="MaxAbs">Largest |a − b|.</param>
/// <param name="MaxRel">Largest |a − b|/|b| (over |b| &gt; 0).</param>
/// <param name="FirstDifference">Where they first disagreed (step, tensor, index, values), or null.</param>
public sealed record TrajectoryComparison(bool Equivalent, int Steps, double MaxAbs, double MaxRel, string? FirstDifference)
{
    /// <inheritdoc />
    public override string ToString() =>
        (Equivalent ? "equivalent" : "NOT equivalent: " + FirstDifference) +
        string.Create(CultureInfo.InvariantCulture, $" ({Steps} steps, max_abs={MaxAbs:g3}, max_rel={MaxRel:g3})");
}

/// <summary>Settings of <see cref="Equivalence.Check"/>.</summary>
public sealed record EquivalenceOptions
{
    /// <summary>Random cases; default 100.</summary>
    public int Cases { get; init; } = 100;
    /// <summary>Steps per case; default 40.</summary>
    public int Steps { get; init; } = 40;
    /// <summary>Seed of the case generator; default 0.</summary>
    public long Seed { get; init; }
    /// <summary>Tolerance; default 1e-10 + 1e-8·|b|.</summary>
    public Tolerance Tolerance { get; init; } = new();
    /// <summary>Also run every case on a random convex quadratic (gradients evaluated where each form says); default true.</summary>
    public bool Quadratic { get; init; } = true;
    /// <summary>Lower end of the random losses of the gradient streams; default 0.</summary>
    public double LossLow { get; init; }
    /// <summary>Upper end of the random losses; default 10.</summary>
    public double LossHigh { get; init; } = 10;
    /// <summary>How to decide; default <see cref="EquivalenceMethod.Auto"/> (exact when both forms are linear).</summary>
    public EquivalenceMethod Method { get; init; } = EquivalenceMethod.Auto;
}

/// <summary>How <see cref="Equivalence.Check"/> decides.</summary>
public enum EquivalenceMethod
{
    /// <summary>Exactly (<see cref="Analysis.Equal"/>) when both forms are linear in their gradients, else by sampling.</summary>
    Auto,
    /// <summary>Exactly only: a form that is not linear is an error naming the primitive.</summary>
    Exact,
    /// <summary>By sampling only: random gradient streams and quadratics, compared within the tolerance.</summary>
    Sampled,
}

/// <summary>The outcome of <see cref="Equivalence.Check"/>.</summary>
/// <param name="Passed">Whether every case agreed.</param>
/// <param name="Cases">Cases run (stopping at the first failure).</param>
/// <param name="MaxAbs">Largest |a − b| over all cases.</param>
/// <param name="MaxRel">Largest relative difference over all cases.</param>
/// <param name="Counterexample">The first failing case, described, or null.</param>
/// <remarks>An exact decision (<see cref="Method"/> "exact") runs no cases: <see cref="Cases"/>, <see cref="MaxAbs"/> and <see cref="MaxRel"/> are 0 and <see cref="Exact"/> holds the decision.</remarks>
public sealed record EquivalenceReport(bool Passed, int Cases, double MaxAbs, double MaxRel, string? Counterexample)
{
    /// <summary>"exact" (decided from the linear realisations) or "sampled" (random cases within the tolerance).</summary>
    public string Method { get; init; } = "sampled";

    /// <summary>The exact decision, when <see cref="Method"/> is "exact".</summary>
    public ExactEquivalence? Exact { get; init; }

    /// <inheritdoc />
    public override string ToString() =>
        Exact is not null ? (Passed ? "passed" : "FAILED: " + Counterexample) + $" (exact: {Exact.Reason})"
        : (Passed ? "passed" : "FAILED: " + Counterexample) +
          string.Create(CultureInfo.InvariantCulture, $" (sampled: {Cases} cases, max_abs={MaxAbs:g3}, max_rel={MaxRel:g3})");
}

/// <summary>
/// Checks that two differently written optimizers are the same algorithm: both run from the same start on
/// the same gradients (or the same function, each evaluating where its form says), and their recorded
/// points are compared at every step. The library's own property tests use this.
/// </summary>
public static class Equivalence
{
    /// <summary>
    /// The points recorded by <paramref name="form"/> on <paramref name="oracle"/> after each of
    /// <paramref name="steps"/> steps: θₜ + μ·vₜ (θₜ for μ = 0), as flat float64 arrays per tensor.
    /// </summary>
    public static double[][][] Trajectory(OptimizerForm form, IGradientOracle oracle, int steps)
    {
        ArgumentNullException.ThrowIfNull(form);
        ArgumentNullException.ThrowIfNull(oracle);
        Lookahead.Check.AtLeast(steps, 0, nameof(steps));
        using var scope = NewDisposeScope();
        var tx = form.Transform;
        var theta = oracle.InitialParameters.Clone();
        var velocity = theta.ZerosLike();
        var state = tx.Init(theta);
        var result = new double[steps][][];
        for (int k = 0; k < steps; k++)
        {
            using var stepScope = NewDisposeScope();
            var point = form.Lookahead == 0 ? theta : ShiftedCoordinates.Shift(theta, velocity, form.Lookahead);
            var (grad, loss) = oracle.Evaluate(k, point);
            var context = loss is double f ? StepContext.Empty.WithLoss(f) : StepContext.Empty;
            var (updates, next) = tx.Update(grad, state, theta, context);   // the transform sees the iterate θ (weight decay acts on it)
            var nextTheta = Updates.Apply(theta, updates);
            var recorded = form.Lookahead == 0 ? nextTheta : ShiftedCoordinates.Shift(nextTheta, updates, form.Lookahead);
            result[k] = recorded.Tensors.Select(t => t.to(ScalarType.Float64).cpu().contiguous().data<double>().ToArray()).ToArray();
            stepScope.MoveToOuter(nextTheta.Tensors.Concat(updates.Tensors).Concat(OptState.Tensors(next)).Cast<IDisposable>());
            OptState.Dispose(state);
            theta.Dispose(); velocity.Dispose();
            theta = nextTheta; velocity = updates; state = next;
        }
        return result;
    }

    /// <summary>Runs both forms on the same oracle and compares their recorded points at every step.</summary>
    public static TrajectoryComparison Compare(OptimizerForm a, OptimizerForm b, IGradientOracle oracle, int steps, Tolerance? tolerance = null)
    {
        var tol = tolerance ?? new Tolerance();
        var names = oracle.InitialParameters.Names;
        var ta = Trajectory(a, oracle, steps);
        var tb = Trajectory(b, oracle, steps);
        double maxAbs = 0, maxRel = 0;
        string? first = null;
        for (int k = 0; k < steps; k++)
            for (int i = 0; i < ta[k].Length; i++)
                for (int j = 0; j < ta[k][i].Length; j++)
                {
                    double x = ta[k][i][j], y = tb[k][i][j], d = Math.Abs(x - y);
                    if (!double.IsNaN(d))
                    {
                        maxAbs = Math.Max(maxAbs, d);
                        if (y != 0) maxRel = Math.Max(maxRel, d / Math.Abs(y));
                    }
                    if (first is null && !tol.Accepts(x, y))
                        first = string.Create(CultureInfo.InvariantCulture,
                            $"step {k + 1}, tensor '{names[i]}', index {j}: {a} gives {x:R}, {b} gives {y:R} (|Δ| = {d:g3}; allowed {tol})");
                }
        return new(first is null, steps, maxAbs, maxRel, first);
    }

    /// <summary>
    /// Decides whether two forms are the same algorithm. When both are linear in their gradients (and
    /// <see cref="EquivalenceOptions.Method"/> allows), exactly, from their realisations (<see cref="Analysis.Equal"/>;
    /// time-varying forms over <see cref="EquivalenceOptions.Steps"/> steps); the report's
    /// <see cref="EquivalenceReport.Method"/> is then "exact". Otherwise by sampling: the forms are compared on
    /// <see cref="EquivalenceOptions.Cases"/> random problems (random parameter trees of 1–4 tensors of rank 0–3,
    /// random gradient streams of mixed scales with random losses, and, if asked, a random convex quadratic),
    /// stopping at the first counterexample.
    /// </summary>
    /// <exception cref="ArgumentException">With <see cref="EquivalenceMethod.Exact"/>, a form that is not linear (naming the primitive).</exception>
    public static EquivalenceReport Check(OptimizerForm a, OptimizerForm b, EquivalenceOptions? options = null)
    {
        var o = options ?? new EquivalenceOptions();
        Lookahead.Check.AtLeast(o.Cases, 1, "Cases");
        Lookahead.Check.AtLeast(o.Steps, 1, "Steps");
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (o.Method != EquivalenceMethod.Sampled)
        {
            var exact = Analysis.Equal(a, b, o.Steps);
            if (exact.Decided)
                return new(exact.Equal, 0, 0, 0, exact.Equal ? null : $"{a} against {b}: {exact.FirstDifference}") { Method = "exact", Exact = exact };
            if (o.Method == EquivalenceMethod.Exact)
                throw new ArgumentException($"an exact decision needs two linear forms: {exact.Reason}", a.Transform is not null && !Analysis.Realise(a).Linear ? nameof(a) : nameof(b));
        }
        var random = new Random(unchecked((int)o.Seed));
        using var generator = new Generator((ulong)o.Seed);
        double maxAbs = 0, maxRel = 0;
        for (int c = 0; c < o.Cases; c++)
        {
            using var scope = NewDisposeScope();
            var shapes = Enumerable.Range(0, random.Next(1, 5)).Select(_ => RandomShape(random)).ToArray();
            var names = shapes.Select((s, i) => $"p{i}.{(s.Length >= 2 ? "weight" : "bias")}").ToArray();
            var theta0 = TensorTree.Of(names, shapes.Select(s => randn(s, ScalarType.Float64, generator: generator)).ToArray());
            var grads = Enumerable.Range(0, o.Steps).Select(_ =>
            {
                using var s = (new[] { 1e-3, 0.03, 0.3, 1.0, 5.0 }[random.Next(5)]).ToScalar();
                return theta0.Map(p => randn(p.shape, ScalarType.Float64, generator: generator).mul_(s));
            }).ToArray();
            var losses = Enumerable.Range(0, o.Steps).Select(_ => o.LossLow + random.NextDouble() * (o.LossHigh - o.LossLow)).ToArray();
            var oracles = new List<(string, IGradientOracle)> { ("gradient stream", new GradientStream(theta0, grads, losses)) };
            using var quadratic = o.Quadratic ? QuadraticProblem.Random(theta0, generator) : null;
            if (quadratic is not null) oracles.Add(("quadratic", quadratic));
            foreach (var (kind, oracle) in oracles)
            {
                var r = Compare(a, b, oracle, o.Steps, o.Tolerance);
                maxAbs = Math.Max(maxAbs, r.MaxAbs);
                maxRel = Math.Max(maxRel, r.MaxRel);
                if (!r.Equivalent)
                    return new(false, c + 1, maxAbs, maxRel,
                        $"case {c + 1} (seed {o.Seed}, {kind}, shapes {string.Join(" ", shapes.Select(s => "[" + string.Join(",", s) + "]"))}): {r.FirstDifference}");
            }
        }
        return new(true, o.Cases, maxAbs, maxRel, null);
    }

    static long[] RandomShape(Random r) => r.Next(4) switch
    {
        0 => Array.Empty<long>(),
        1 => new long[] { r.Next(1, 33) },
        2 => new long[] { r.Next(1, 9), r.Next(1, 9) },
        _ => new long[] { r.Next(1, 4), r.Next(1, 4), r.Next(1, 4) },
    };
}
