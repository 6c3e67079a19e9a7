using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>Coefficients (a, b, c) of the odd polynomial p(x) = a·x + b·x³ + c·x⁵ that one Newton–Schulz step applies to every singular value.</summary>
/// <param name="A">a.</param>
/// <param name="B">b.</param>
/// <param name="C">c.</param>
public sealed record NewtonSchulzCoefficients(double A, double B, double C)
{
    /// <summary>
    /// Muon's quintic (3.4445, −4.7750, 2.0315) (Jordan et al. 2024): fast to leave zero, but it does
    /// not converge to 1; after 5 steps singular values lie in roughly (0.7, 1.2). Muon and MARS-M use it.
    /// </summary>
    public static NewtonSchulzCoefficients Muon { get; } = new(3.4445, -4.7750, 2.0315);

    /// <summary>A convergent quintic (2, −1.5, 0.5): p(1) = 1 and p′(1) = 0, so enough steps reach the polar factor.</summary>
    public static NewtonSchulzCoefficients Convergent { get; } = new(2, -1.5, 0.5);
}

/// <summary>How the products of a Newton–Schulz step are arranged (the same maths, different rounding).</summary>
public enum NewtonSchulzArrangement
{
    /// <summary>Muon's: A = XXᵀ, B = b·A + (c·A)·A, X ← a·X + B·X; the Frobenius norm is taken after the cast to the compute dtype.</summary>
    Muon,
    /// <summary>MARS's: A = XXᵀ, B = A·X, X ← a·X + b·B + (c·A)·B; the norm is taken of the input, before the cast.</summary>
    Mars,
}

/// <summary>What the orthogonaliser does with tensors of rank greater than 2.</summary>
public enum HigherRankPolicy
{
    /// <summary>View as a matrix (shape[0], product of the rest), as Muon does with convolution kernels.</summary>
    FlattenTrailing,
    /// <summary>Treat leading dimensions as a batch of matrices formed by the last two.</summary>
    Batch,
    /// <summary>Reject them with an error naming the tensor.</summary>
    Reject,
}

/// <summary>Settings of <see cref="Transforms.Orthogonalise"/>.</summary>
public sealed record OrthogonaliserOptions
{
    /// <summary>Polynomial coefficients; default <see cref="NewtonSchulzCoefficients.Muon"/>.</summary>
    public NewtonSchulzCoefficients Coefficients { get; init; } = NewtonSchulzCoefficients.Muon;
    /// <summary>Arrangement of the products; default <see cref="NewtonSchulzArrangement.Muon"/>.</summary>
    public NewtonSchulzArrangement Arrangement { get; init; } = NewtonSchulzArrangement.Muon;
    /// <summary>Number of Newton–Schulz steps; ≥ 0, default 5.</summary>
    public int Steps { get; init; } = 5;
    /// <summary>ε of the Frobenius pre-normalisation X/(‖X‖_F + ε); ≥ 0, default 1e-7.</summary>
    public double Epsilon { get; init; } = 1e-7;
    /// <summary>Run the iteration in bfloat16 as the official Muon code does (the result is cast back); default false.</summary>
    public bool BFloat16 { get; init; }
    /// <summary>Replace Newton–Schulz by the exact polar factor U·Vᵀ from an SVD (a reference; slow).</summary>
    public bool ExactPolar { get; init; }
    /// <summary>Tensors of rank &gt; 2; default <see cref="HigherRankPolicy.FlattenTrailing"/>.</summary>
    public HigherRankPolicy HigherRank { get; init; } = HigherRankPolicy.FlattenTrailing;
    /// <summary>
    /// Stack matrices of the same shape into one batch and iterate them together (fewer, larger kernels:
    /// worth it on a GPU). Null (default) batches on non-CPU devices; on the CPU each matrix runs in place
    /// in reused buffers, which allocates nothing.
    /// </summary>
    public bool? BatchSameShapes { get; init; }
}

/// <summary>Learning-rate scalings by matrix shape, for orthogonalised updates (<see cref="Transforms.ScaleByShape"/>).</summary>
public enum ShapeScaling
{
    /// <summary>√max(1, rows/cols) (Keller Jordan's Muon, MARS-Shampoo).</summary>
    Muon,
    /// <summary>0.2·√max(rows, cols) (Moonlight; MARS-M): matches AdamW's update RMS.</summary>
    Moonlight,
}

public static partial class Transforms
{
    /// <summary>
    /// Orthogonaliser: replaces each matrix update G by an approximation of its polar factor U·Vᵀ
    /// (G = U·S·Vᵀ) with Newton–Schulz: X₀ = G/(‖G‖_F + ε), transposed when rows &gt; cols, then
    /// <c>Steps</c> times X ← a·X + b·(XXᵀ)X + c·(XXᵀ)²X; transposed back. Muon (Jordan et al. 2024),
    /// MARS-Shampoo and MARS-M (Yuan et al. 2024, 2025) apply it to their momentum. Stateless.
    /// </summary>
    /// <remarks>Scale-invariant up to ε: orthogonalising c·G gives the same result for any c &gt; 0.
    /// Rank-0 and rank-1 tensors are an error naming the tensor: route them elsewhere with
    /// <see cref="Partition(Func{ParameterInfo, bool}, IGradientTransformation, IGradientTransformation)"/>.</remarks>
    public static IGradientTransformation Orthogonalise(OrthogonaliserOptions? options = null)
    {
        var o = options ?? new OrthogonaliserOptions();
        Check.NotNull(o.Coefficients, "Coefficients");
        Check.Finite(o.Coefficients.A, "Coefficients.A"); Check.Finite(o.Coefficients.B, "Coefficients.B"); Check.Finite(o.Coefficients.C, "Coefficients.C");
        Check.AtLeast(o.Steps, 0, "Steps", "Newton–Schulz steps");
        Check.NonNegative(o.Epsilon, "Epsilon");
        return new OrthogonaliseTransform(o);
    }

    /// <summary>Multiplies each matrix update by a factor of its shape (rows, cols as the orthogonaliser sees them). Stateless.</summary>
    /// <param name="scaling">Which factor.</param>
    /// <param name="higherRank">How rank &gt; 2 tensors are seen as matrices.</param>
    /// <param name="bfloat16">Multiply in bfloat16, as Keller Jordan's Muon does with its bfloat16 Newton–Schulz output.</param>
    public static IGradientTransformation ScaleByShape(ShapeScaling scaling, HigherRankPolicy higherRank = HigherRankPolicy.FlattenTrailing, bool bfloat16 = false) =>
        new ScaleByShapeTransform(scaling, higherRank, bfloat16);

    /// <summary>The factor of <see cref="ScaleByShape"/> for a matrix of <paramref name="rows"/> × <paramref name="cols"/>.</summary>
    public static double ShapeFactor(ShapeScaling scaling, long rows, long cols) => scaling switch
    {
        ShapeScaling.Muon => Math.Sqrt(Math.Max(1.0, (double)rows / cols)),
        _ => 0.2 * Math.Sqrt(Math.Max(rows, cols)),
    };

    /// <summary>The (rows, cols) of a tensor as a matrix (or batch of matrices) under a policy; an error names the tensor otherwise.</summary>
    internal static (long Rows, long Cols) MatrixShape(string name, Tensor t, HigherRankPolicy policy, string requiredBy) =>
        MatrixShape(name, t.shape, policy, requiredBy);

    /// <summary>Adds a problem for every parameter that is not a matrix under <paramref name="policy"/>.</summary>
    internal static void ValidateMatrices(IReadOnlyList<ParameterInfo> parameters, HigherRankPolicy policy, string requiredBy, ValidationReport report)
    {
        foreach (var p in parameters)
        {
            try { MatrixShape(p.Name, p.Shape.ToArray(), policy, requiredBy); }
            catch (ArgumentException e) { report.Add(e.Message); }
        }
    }

    static (long Rows, long Cols) MatrixShape(string name, long[] shape, HigherRankPolicy policy, string requiredBy)
    {
        if (shape.Length < 2)
            throw new ArgumentException($"{requiredBy} needs matrices: tensor '{name}' has shape [{string.Join(", ", shape)}] (rank {shape.Length}); route rank < 2 tensors to another transform with Partition");
        if (shape.Length == 2) return (shape[0], shape[1]);
        return policy switch
        {
            HigherRankPolicy.FlattenTrailing => (shape[0], shape.Skip(1).Aggregate(1L, (a, b) => a * b)),
            HigherRankPolicy.Batch => (shape[^2], shape[^1]),
            _ => throw new ArgumentException($"{requiredBy}: tensor '{name}' has rank {shape.Length} and the policy is Reject; choose FlattenTrailing or Batch"),
        };
    }
}

sealed class OrthogonaliseTransform(OrthogonaliserOptions o) : Transform<EmptyState>, IValidating
{
    public void Validate(IReadOnlyList<ParameterInfo> parameters, ValidationReport report) =>
        Transforms.ValidateMatrices(parameters, o.HigherRank, Label, report);

    public override Spec Spec => Spec.FromRecord("orthogonalise", o);

    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        var batched = new HashSet<int>();
        if (!o.ExactPolar)
        {
            // Same-shaped matrices (as the orthogonaliser sees them) in one stacked batch.
            var byShape = Enumerable.Range(0, updates.Count)
                .Where(i => updates.Tensors[i].dim() >= 2 && (o.BatchSameShapes ?? updates.Tensors[i].device_type != DeviceType.CPU))
                .GroupBy(i =>
                {
                    var (r, c) = Transforms.MatrixShape(updates.Names[i], updates.Tensors[i], o.HigherRank, Label);
                    var t = updates.Tensors[i];
                    return (r, c, t.dtype, t.device.ToString(), t.dim() > 2 && o.HigherRank == HigherRankPolicy.Batch ? string.Join(",", t.shape) : "");
                })
                .Where(g => g.Count() > 1 && g.Key.Item5 == "");
            foreach (var group in byShape)
            {
                using var scope = NewDisposeScope();
                var members = group.ToArray();
                var stack = torch.stack(members.Select(i => updates.Tensors[i].reshape(group.Key.r, group.Key.c)));
                NewtonSchulz(stack);
                for (int k = 0; k < members.Length; k++) updates.Tensors[members[k]].copy_(stack[k].reshape(updates.Tensors[members[k]].shape));
                batched.UnionWith(members);
            }
        }
        for (int i = 0; i < updates.Count; i++)
        {
            if (batched.Contains(i)) continue;
            using var scope = NewDisposeScope();
            Tensor u = updates.Tensors[i];
            var (rows, cols) = Transforms.MatrixShape(updates.Names[i], u, o.HigherRank, Label);
            // One matrix is a batch of one; the Batch policy folds the leading dimensions into the batch.
            using var matrices = u.shape.Length > 2 && o.HigherRank == HigherRankPolicy.Batch ? u.view(-1, u.shape[^2], u.shape[^1]) : u.view(1, rows, cols);
            if (o.ExactPolar) matrices.copy_(Polar(matrices));
            else NewtonSchulz(matrices);
        }
        return state;
    }

    /// <summary>
    /// into ← β·into + p·q for batches of matrices (β is 0 or 1). A batch of one runs in place on its 2-D views
    /// (<c>addmm_</c>: no allocation, the runner's CPU path); larger batches use one batched product and a copy
    /// (TorchSharp has no in-place batched product; on CUDA, where batches are formed, allocation is cheap).
    /// </summary>
    static Tensor Gemm(Tensor into, Tensor p, Tensor q, float beta)
    {
        if (into.shape[0] == 1)
        {
            using Tensor i0 = into[0], p0 = p[0], q0 = q[0];
            i0.addmm_(p0, q0, beta, 1);
            return into;
        }
        using var product = p.bmm(q);
        return beta == 0 ? into.copy_(product) : into.add_(product);
    }

    /// <summary>The exact polar factor U·Vᵀ of each matrix of a batch, from the SVD (the reference the iterations approximate).</summary>
    static Tensor Polar(Tensor g)
    {
        var (left, _, rightT) = linalg.svd(g, fullMatrices: false);
        return left.matmul(rightT);
    }

    /// <summary>
    /// Newton–Schulz on a batch of matrices (B, r, c), overwriting it with the approximate polar factors: the one
    /// definition of the iteration, for a single CPU matrix (B = 1, in place, as the runner runs it) and for
    /// stacked batches alike. Each matrix is normalised by its own Frobenius norm (+ ε); a tall matrix is iterated
    /// as its transpose. With X (m × n, m ≤ n) and A = XXᵀ, one step is X ← a·X + (b·A + (c·A)·A)·X in Muon's
    /// arrangement and X ← a·X + b·(AX) + (c·A)·(AX) in MARS's, the products grouped as the official code groups
    /// them. Scratch: four buffers (five in Muon's arrangement) from the executor (reused by the runner), products by <see cref="Gemm"/>, the
    /// coefficients applied in double precision. With <see cref="OrthogonaliserOptions.BFloat16"/> the iteration
    /// runs in bfloat16 (MARS normalises before the cast, Muon after it, as their code does).
    /// </summary>
    void NewtonSchulz(Tensor g)
    {
        long batch = g.shape[0];
        bool tall = g.shape[1] > g.shape[2];
        long m = Math.Min(g.shape[1], g.shape[2]), n = Math.Max(g.shape[1], g.shape[2]);
        var dtype = o.BFloat16 ? ScalarType.BFloat16 : g.dtype;
        Tensor x = Buffers.Rent(new[] { batch, m, n }, dtype, g.device), y = Buffers.Rent(new[] { batch, m, n }, dtype, g.device);
        Tensor a = Buffers.Rent(new[] { batch, m, m }, dtype, g.device), s = Buffers.Rent(new[] { batch, m, m }, dtype, g.device);
        Tensor? p = o.Arrangement == NewtonSchulzArrangement.Muon ? Buffers.Rent(new[] { batch, m, m }, dtype, g.device) : null;
        try
        {
            using Scalar eps = o.Epsilon.ToScalar(), ca = o.Coefficients.A.ToScalar(), cb = o.Coefficients.B.ToScalar(), cc = o.Coefficients.C.ToScalar();
            using (var gt = tall ? g.mT : g.alias())
            {
                if (o.BFloat16 && o.Arrangement == NewtonSchulzArrangement.Mars)
                {
                    using var norm = linalg.matrix_norm(gt, "fro", dims: new long[] { -2, -1 }, keepdim: true);
                    using var scaled = gt.div(norm.add_(eps));
                    x.copy_(scaled);
                }
                else
                {
                    x.copy_(gt);
                    using var norm = linalg.matrix_norm(x, "fro", dims: new long[] { -2, -1 }, keepdim: true);
                    x.div_(norm.add_(eps));
                }
            }
            for (int k = 0; k < o.Steps; k++)
            {
                using (var xt = x.mT) Gemm(a, x, xt, 0);               // A = XXᵀ
                s.copy_(a).mul_(cc);                                    // c·A
                if (o.Arrangement == NewtonSchulzArrangement.Muon)
                {
                    Gemm(p!, s, a, 0).add_(a, alpha: cb);               // B = (c·A)·A + b·A
                    Gemm(y.copy_(x).mul_(ca), p!, x, 1);                // a·X + B·X
                    (x, y) = (y, x);
                }
                else
                {
                    Gemm(y, a, x, 0);                                   // AX
                    Gemm(x.mul_(ca).add_(y, alpha: cb), s, y, 1);       // a·X + b·AX + (c·A)·AX
                }
            }
            g.copy_(tall ? x.mT : x);
        }
        finally
        {
            Buffers.Return(x); Buffers.Return(y); Buffers.Return(a); Buffers.Return(s);
            if (p is not null) Buffers.Return(p);
        }
    }
}

sealed class ScaleByShapeTransform(ShapeScaling scaling, HigherRankPolicy policy, bool bfloat16) : Transform<EmptyState>, IValidating
{
    public void Validate(IReadOnlyList<ParameterInfo> parameters, ValidationReport report) =>
        Transforms.ValidateMatrices(parameters, policy, Label, report);

    public override Spec Spec => Spec.Of("scale_by_shape").With("scaling", scaling).With("higher_rank", policy).With("bf16", bfloat16);
    protected override EmptyState InitState(TensorTree parameters) => EmptyState.Instance;

    public override EmptyState Step(TensorTree updates, EmptyState state, TensorTree parameters, StepContext context)
    {
        for (int i = 0; i < updates.Count; i++)
        {
            var (rows, cols) = Transforms.MatrixShape(updates.Names[i], updates.Tensors[i], policy, Label);
            using var s = Transforms.ShapeFactor(scaling, rows, cols).ToScalar();
            if (!bfloat16) { updates.Tensors[i].mul_(s); continue; }
            using var low = updates.Tensors[i].to(ScalarType.BFloat16);
            updates.Tensors[i].copy_(low.mul_(s));
        }
        return state;
    }
}
