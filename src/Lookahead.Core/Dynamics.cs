using System;
using System.Collections.Generic;
using System.Linq;
using System.Numerics;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>
/// A linear, time-invariant optimizer on the one-dimensional quadratic f(θ) = ½λθ² (one eigen-direction of a
/// Hessian, minimum at 0), from its <see cref="Realisation"/>: the gradient at the recorded point y = C x is
/// g = λy (+ ζ with additive noise), so the state evolves as xₖ₊₁ = M(λ) xₖ + B ζₖ with the closed-loop
/// <see cref="GainMatrix"/> M(λ) = A + λ B C. Everything here is computed from that matrix; nothing is written
/// per optimizer. For a form that settles after a first-step special case (torch's buffer copy), the settled
/// step's matrices are used: the behaviour after the first steps.
/// </summary>
/// <remarks>
/// Curvatures may be negative (a non-convex direction; the gain factor then exceeds 1). The state includes every
/// coordinate of the transform's state, so a mode the point never sees still counts in the gain factor; the
/// realisations of this library's linear optimizers have none that is slower than the iterate's.
/// </remarks>
public sealed class QuadraticDynamics
{
    readonly double[,] _a;
    readonly double[] _b, _c;

    internal QuadraticDynamics(Realisation realisation)
    {
        Realisation = realisation;
        _a = realisation.A[^1];
        _b = realisation.B[^1];
        _c = realisation.C;
    }

    /// <summary>The realisation the dynamics come from.</summary>
    public Realisation Realisation { get; }

    /// <summary>Dimension of the state.</summary>
    public int Order => _b.Length;

    /// <summary>The closed-loop gain matrix M(λ) = A + λ B C: xₖ₊₁ = M xₖ with exact gradients at curvature λ.</summary>
    public double[,] GainMatrix(double curvature)
    {
        Check.Finite(curvature, nameof(curvature));
        int n = Order;
        var m = new double[n, n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) m[i, j] = _a[i, j] + curvature * _b[i] * _c[j];
        return m;
    }

    /// <summary>The eigenvalues of <see cref="GainMatrix"/>, largest modulus first.</summary>
    public Complex[] Eigenvalues(double curvature) => Analysis.Eigenvalues(GainMatrix(curvature));

    /// <summary>The gain factor r_g(λ): the spectral radius of M(λ), the asymptotic contraction per step with exact gradients (stable iff &lt; 1).</summary>
    public double GainFactor(double curvature) => Eigenvalues(curvature)[0].Magnitude;

    /// <summary>
    /// lim Var(yₖ) / σ² when every gradient carries independent additive noise of variance σ² (g = λy + ζ): the
    /// stationary covariance P of the discrete Lyapunov equation P = M P Mᵀ + B Bᵀ, seen through C. +∞ when
    /// the gain factor is not below 1.
    /// </summary>
    public double PointVariance(double curvature)
    {
        if (!(GainFactor(curvature) < 1)) return double.PositiveInfinity;
        var m = GainMatrix(curvature);
        int n = Order;
        // (I − M ⊗ M) vec P = vec(B Bᵀ), vec row-major: (M P Mᵀ)[i, j] = Σₖₗ M[i, k] P[k, l] M[j, l].
        var k = new double[n * n, n * n];
        var q = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                int r = i * n + j;
                q[r] = _b[i] * _b[j];
                for (int a = 0; a < n; a++)
                    for (int b = 0; b < n; b++) k[r, a * n + b] = (r == a * n + b ? 1 : 0) - m[i, a] * m[j, b];
            }
        var p = Analysis.SolveLinear(k, q);
        double v = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) v += _c[i] * p[i * n + j] * _c[j];
        return v;
    }

    /// <summary>
    /// The error-variance limit l_Var of the ARSG paper (eq. 15): lim Var(yₖ)/σ_δ² when the gradient is
    /// λ(y + δ), noise measured in the point's units, δ ~ N(0, σ_δ²). Equals λ²·<see cref="PointVariance"/>.
    /// </summary>
    public double VarianceLimit(double curvature) => curvature * curvature * PointVariance(curvature);

    /// <summary>
    /// The interval of positive curvatures (Low, High) on which the gain factor is below 1, the one that starts
    /// at the smallest stable curvature, bracketed on a geometric grid over [1e-12, 1e12] and refined by
    /// bisection (High = +∞ when stable up to 1e12; (NaN, NaN) when stable nowhere on the grid).
    /// </summary>
    public (double Low, double High) StabilityInterval()
    {
        bool Stable(double l) => GainFactor(l) < 1;
        const int PerDecade = 20;
        double At(int i) => Math.Pow(10, -12 + (double)i / PerDecade);
        int count = 24 * PerDecade;
        int first = Enumerable.Range(0, count + 1).FirstOrDefault(i => Stable(At(i)), -1);
        if (first < 0) return (double.NaN, double.NaN);
        double low = first == 0 ? 0 : Boundary(At(first - 1), At(first), Stable);
        int last = first;
        while (last < count && Stable(At(last + 1))) last++;
        double high = last == count ? double.PositiveInfinity : Boundary(At(last + 1), At(last), Stable);
        return (low, high);
    }

    /// <summary>The worst (largest) gain factor over curvatures [<paramref name="low"/>, <paramref name="high"/>] and where it is attained: the convergence rate guaranteed for every eigenvalue of a Hessian in that range.</summary>
    public (double Rate, double Curvature) WorstRate(double low, double high) => Extreme(low, high, worst: true);

    /// <summary>The smallest gain factor over [<paramref name="low"/>, <paramref name="high"/>] and the curvature that attains it (argmin over λ of r_g).</summary>
    public (double Rate, double Curvature) BestRate(double low, double high) => Extreme(low, high, worst: false);

    /// <summary>
    /// The curvature at which the optimizer converges fastest (argmin over λ of r_g inside the
    /// <see cref="StabilityInterval"/>) and that rate. For RSG with α = 1 it is the paper's argmin over τ of r_g,
    /// which the observation boost keeps fixed (<see cref="Optim.ArsgObsb"/>). NaN when stable nowhere.
    /// </summary>
    public (double Rate, double Curvature) FastestCurvature()
    {
        var (low, high) = StabilityInterval();
        if (double.IsNaN(low)) return (double.NaN, double.NaN);
        double from = Math.Max(low, 1e-12), to = double.IsPositiveInfinity(high) ? 1e12 : high;
        // Inside the interval by a hair at both ends (the rate is 1 at its edges).
        return BestRate(from * (1 + 1e-9), to * (1 - 1e-9));
    }

    (double, double) Extreme(double low, double high, bool worst)
    {
        Check.Finite(low, nameof(low));
        Check.Finite(high, nameof(high));
        if (!(high >= low)) throw new ArgumentException($"high = {high} must be ≥ low = {low}", nameof(high));
        double sign = worst ? 1 : -1;
        double F(double l) => sign * GainFactor(l);
        // A grid, geometric when the range is positive and wide, then golden-section search around the best point.
        const int N = 400;
        bool geometric = low > 0 && high / low > 10;
        double At(int i) => i == N ? high : geometric ? low * Math.Pow(high / low, (double)i / N) : low + (high - low) * i / N;
        int best = 0;
        double bestValue = F(At(0));
        for (int i = 1; i <= N; i++) { double v = F(At(i)); if (v > bestValue) (best, bestValue) = (i, v); }
        double a = At(Math.Max(best - 1, 0)), b = At(Math.Min(best + 1, N));
        double x = At(best);
        const double Phi = 0.6180339887498949;
        for (int it = 0; it < 100 && b - a > 1e-15 * Math.Max(Math.Abs(a), Math.Abs(b)); it++)
        {
            double c = b - Phi * (b - a), d = a + Phi * (b - a);
            if (F(c) >= F(d)) b = d; else a = c;
            double m = (a + b) / 2, fm = F(m);
            if (fm > bestValue) (x, bestValue) = (m, fm);
        }
        return (sign * bestValue, x);
    }

    static double Boundary(double outside, double inside, Func<double, bool> stable)
    {
        for (int i = 0; i < 200 && Math.Abs(outside - inside) > 1e-15 * Math.Abs(inside); i++)
        {
            double m = (outside + inside) / 2;
            if (stable(m)) inside = m; else outside = m;
        }
        return (outside + inside) / 2;
    }
}

public static partial class Analysis
{
    /// <summary>
    /// The dynamics of <paramref name="form"/> on one-dimensional quadratics (see <see cref="QuadraticDynamics"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The form is not linear (the message names the primitive), or it is time-varying over every step probed (a bias correction, a schedule), so it has no single gain matrix.</exception>
    public static QuadraticDynamics Dynamics(OptimizerForm form)
    {
        var r = RequireLinear(form, nameof(form));
        if (!r.Settled)
            throw new ArgumentException($"{form} is linear but time-varying over the {r.A.Count} steps probed, so it has no single gain matrix; compare it with Analysis.Equal over a horizon instead", nameof(form));
        return new QuadraticDynamics(r);
    }

    /// <summary>The realisation of <paramref name="form"/>, or an <see cref="ArgumentException"/> naming the primitive that makes it not linear.</summary>
    public static Realisation RequireLinear(OptimizerForm form, string parameterName = "form")
    {
        var r = Realise(form);
        if (!r.Linear) throw new ArgumentException($"{form} is not linear, so it has no exact analysis: {r.NotLinearBecause}", parameterName);
        return r;
    }

    /// <summary>
    /// The hyperparameters h (starting from <paramref name="start"/>) that minimise the worst gain factor over
    /// curvatures [<paramref name="low"/>, <paramref name="high"/>] of <c>family(h)</c>, by Nelder–Mead on the
    /// worst rate; a family member that cannot be built (its constructor throws) or is not linear counts as
    /// unstable. Returns the best h found and its worst rate.
    /// </summary>
    public static (double[] Hyperparameters, double Rate) Optimise(Func<double[], OptimizerForm> family, double[] start, double low, double high, int iterations = 400)
    {
        ArgumentNullException.ThrowIfNull(family);
        ArgumentNullException.ThrowIfNull(start);
        if (start.Length == 0) throw new ArgumentException("start needs at least one hyperparameter", nameof(start));
        double Cost(double[] h)
        {
            try
            {
                var r = Realise(family(h));
                return r.Linear && r.Settled ? new QuadraticDynamics(r).WorstRate(low, high).Rate : double.PositiveInfinity;
            }
            catch (ArgumentException) { return double.PositiveInfinity; }
        }
        int n = start.Length;
        var simplex = new double[n + 1][];
        simplex[0] = (double[])start.Clone();
        for (int i = 0; i < n; i++)
        {
            simplex[i + 1] = (double[])start.Clone();
            simplex[i + 1][i] = start[i] == 0 ? 0.05 : start[i] * 1.1;
        }
        var cost = simplex.Select(Cost).ToArray();
        for (int it = 0; it < iterations; it++)
        {
            var order = Enumerable.Range(0, n + 1).OrderBy(i => cost[i]).ToArray();
            simplex = order.Select(i => simplex[i]).ToArray();
            cost = order.Select(i => cost[i]).ToArray();
            if (Math.Abs(cost[n] - cost[0]) <= 1e-15 && it > 10) break;
            var centroid = new double[n];
            for (int i = 0; i < n; i++) for (int d = 0; d < n; d++) centroid[d] += simplex[i][d] / n;
            double[] Towards(double t) => centroid.Select((c, d) => c + t * (simplex[n][d] - c)).ToArray();
            var reflected = Towards(-1);
            double fr = Cost(reflected);
            if (fr < cost[0])
            {
                var expanded = Towards(-2);
                double fe = Cost(expanded);
                (simplex[n], cost[n]) = fe < fr ? (expanded, fe) : (reflected, fr);
            }
            else if (fr < cost[n - 1]) (simplex[n], cost[n]) = (reflected, fr);
            else
            {
                var contracted = Towards(fr < cost[n] ? -0.5 : 0.5);
                double fc = Cost(contracted);
                if (fc < Math.Min(fr, cost[n])) (simplex[n], cost[n]) = (contracted, fc);
                else
                    for (int i = 1; i <= n; i++)
                    {
                        simplex[i] = simplex[i].Select((v, d) => simplex[0][d] + 0.5 * (v - simplex[0][d])).ToArray();
                        cost[i] = Cost(simplex[i]);
                    }
            }
        }
        int bestIndex = Array.IndexOf(cost, cost.Min());
        return (simplex[bestIndex], cost[bestIndex]);
    }

    /// <summary>The eigenvalues of a real square matrix, largest modulus first: 1×1 and 2×2 from their characteristic polynomial, larger ones by libtorch (float64).</summary>
    public static Complex[] Eigenvalues(double[,] matrix)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        int n = matrix.GetLength(0);
        if (n != matrix.GetLength(1)) throw new ArgumentException($"matrix must be square; got {n}×{matrix.GetLength(1)}", nameof(matrix));
        if (n == 0) return Array.Empty<Complex>();
        if (n == 1) return new[] { new Complex(matrix[0, 0], 0) };
        if (n == 2)
        {
            // The roots of z² − tr·z + det, the larger-magnitude real root first (no cancellation), the other from det.
            double tr = matrix[0, 0] + matrix[1, 1], det = matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0];
            double half = tr / 2, disc = half * half - det;
            if (disc < 0) { double im = Math.Sqrt(-disc); return new[] { new Complex(half, im), new Complex(half, -im) }; }
            double big = half + Math.CopySign(Math.Sqrt(disc), half);
            double small = big != 0 ? det / big : 0;
            return new[] { new Complex(big, 0), new Complex(small, 0) }.OrderByDescending(z => z.Magnitude).ToArray();
        }
        using var scope = NewDisposeScope();
        var flat = new double[n * n];
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) flat[i * n + j] = matrix[i, j];
        var values = view_as_real(linalg.eigvals(tensor(flat, dtype: ScalarType.Float64).reshape(n, n))).contiguous().data<double>().ToArray();
        return Enumerable.Range(0, n).Select(i => new Complex(values[2 * i], values[2 * i + 1])).OrderByDescending(z => z.Magnitude).ToArray();
    }

    /// <summary>Solves K p = q by Gaussian elimination with partial pivoting (small dense systems).</summary>
    internal static double[] SolveLinear(double[,] k, double[] q)
    {
        int n = q.Length;
        var a = (double[,])k.Clone();
        var b = (double[])q.Clone();
        for (int col = 0; col < n; col++)
        {
            int pivot = col;
            for (int r = col + 1; r < n; r++) if (Math.Abs(a[r, col]) > Math.Abs(a[pivot, col])) pivot = r;
            if (a[pivot, col] == 0) throw new InvalidOperationException("singular Lyapunov system (a gain-matrix eigenvalue pair with product 1)");
            if (pivot != col)
            {
                for (int c = 0; c < n; c++) (a[col, c], a[pivot, c]) = (a[pivot, c], a[col, c]);
                (b[col], b[pivot]) = (b[pivot], b[col]);
            }
            for (int r = col + 1; r < n; r++)
            {
                double f = a[r, col] / a[col, col];
                if (f == 0) continue;
                for (int c = col; c < n; c++) a[r, c] -= f * a[col, c];
                b[r] -= f * b[col];
            }
        }
        var x = new double[n];
        for (int r = n - 1; r >= 0; r--)
        {
            double s = b[r];
            for (int c = r + 1; c < n; c++) s -= a[r, c] * x[c];
            x[r] = s / a[r, r];
        }
        return x;
    }
}
