using System;
using System.Collections.Generic;
using System.Linq;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>Settings of <see cref="Transforms.EigenbasisAdam"/> (SOAP's preconditioner).</summary>
public sealed record EigenbasisOptions
{
    /// <summary>β₁ ∈ [0, 1) of the first moment (in the rotated basis); default 0.95.</summary>
    public double Beta1 { get; init; } = 0.95;
    /// <summary>β₂ ∈ [0, 1) of the second moment (in the rotated basis); default 0.95.</summary>
    public double Beta2 { get; init; } = 0.95;
    /// <summary>The decay of the Kronecker factors GGᵢ ∈ [0, 1); null: <see cref="Beta2"/> (the official <c>shampoo_beta = -1</c>).</summary>
    public double? ShampooBeta { get; init; }
    /// <summary>ε ≥ 0 on the root of the second moment; default 1e-8.</summary>
    public double Epsilon { get; init; } = 1e-8;
    /// <summary>Refresh the eigenbases every this many steps (≥ 1); default 10.</summary>
    public int PreconditionFrequency { get; init; } = 10;
    /// <summary>A dimension larger than this gets no factor (it is left in the parameter basis); default 10000.</summary>
    public int MaxPreconditionDimension { get; init; } = 10000;
    /// <summary>Give 1-D parameters a factor too (the official <c>precondition_1d</c>); default false: 1-D parameters are plain Adam.</summary>
    public bool Precondition1D { get; init; }
    /// <summary>Divide the update by its root mean square (the official <c>normalize_grads</c>); default false.</summary>
    public bool NormalizeGrads { get; init; }
    /// <summary>Adam's bias correction √(1 − β₂ᵗ)/(1 − β₁ᵗ) on the update; default true.</summary>
    public bool CorrectBias { get; init; } = true;
    /// <summary>The official code's float32 casts in the basis computations (GG rounded to float32 before eigh; the refresh in float32); default false (float64 throughout).</summary>
    public bool Float32Basis { get; init; }
}

public static partial class Transforms
{
    /// <summary>
    /// SOAP's preconditioner (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam"; nikhilvyas/SOAP):
    /// Adam run in the eigenbasis of Shampoo's Kronecker factors. For each dimension i of a parameter (of size at most
    /// <see cref="EigenbasisOptions.MaxPreconditionDimension"/>), a factor GGᵢ ← lerp(GGᵢ, G₍ᵢ₎G₍ᵢ₎ᵀ, 1 − β_sh) and its
    /// eigenbasis Qᵢ. Step 1 only starts them (GGᵢ = (1 − β_sh)G₍ᵢ₎G₍ᵢ₎ᵀ, Qᵢ its eigenvectors by descending eigenvalue)
    /// and outputs 0. Later steps t = 1, 2, …: ĝ = g rotated by every Qᵢ; m ← β₁m + (1 − β₁)ĝ, v ← β₂v + (1 − β₂)ĝ²
    /// (both in the rotated basis); u = (m/(√v + ε)) rotated back, × √(1 − β₂ᵗ)/(1 − β₁ᵗ). Then the factors take g;
    /// every <see cref="EigenbasisOptions.PreconditionFrequency"/> steps the bases are refreshed by one power-iteration
    /// step with QR, after v is permuted by the new order of the estimated eigenvalues; m follows each basis change.
    /// </summary>
    public static IGradientTransformation EigenbasisAdam(EigenbasisOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Check.UnitOpen(options.Beta1, "Beta1");
        Check.UnitOpen(options.Beta2, "Beta2");
        if (options.ShampooBeta is double sb) Check.UnitOpen(sb, "ShampooBeta");
        Check.NonNegative(options.Epsilon, "Epsilon");
        Check.AtLeast(options.PreconditionFrequency, 1, "PreconditionFrequency");
        Check.AtLeast(options.MaxPreconditionDimension, 1, "MaxPreconditionDimension");
        return new EigenbasisAdamTransform(options);
    }
}

sealed class EigenbasisAdamTransform(EigenbasisOptions o) : DeclaredTransform
{
    readonly (StateLayout Layout, Slot<long> Count, Slot<TensorTree> M, Slot<TensorTree> V, Slot<Tensor> Factors, Slot<Tensor> Bases) _state = Declared(o);

    static (StateLayout, Slot<long>, Slot<TensorTree>, Slot<TensorTree>, Slot<Tensor>, Slot<Tensor>) Declared(EigenbasisOptions o)
    {
        var layout = new StateLayout("eigenbasis_adam");
        // Calls so far (the first only starts the factors), the moments in the rotated basis, and every factor GGᵢ
        // and basis Qᵢ of every parameter, flat and one after another (row-major nᵢ × nᵢ blocks, in parameter then
        // dimension order; a dimension without a factor takes no room).
        var count = layout.Integer("count");
        var m = layout.PerParameter("momentum", SlotStart.Zeros);
        var v = layout.PerParameter("nu", SlotStart.Zeros);
        long Size(TensorTree p) => p.Tensors.Sum(t => Dims(o, t.shape).Sum(n => n * n));
        Tensor Flat(TensorTree p) => zeros(new[] { Size(p) }, dtype: p.Count > 0 ? p.Tensors[0].dtype : ScalarType.Float64, device: p.Count > 0 ? p.Tensors[0].device : CPU);
        var factors = layout.Tensor("factors", Flat);
        var bases = layout.Tensor("bases", Flat);
        return (layout.Seal(), count, m, v, factors, bases);
    }

    protected override StateLayout Declare() => _state.Layout;

    public override Spec Spec => Spec.FromRecord("eigenbasis_adam", o);

    /// <summary>The size of each dimension's factor, 0 where a dimension gets none.</summary>
    static long[] Dims(EigenbasisOptions o, long[] shape) =>
        shape.Length == 0 || (shape.Length == 1 && !o.Precondition1D) ? shape.Select(_ => 0L).ToArray()
        : shape.Select(n => n <= o.MaxPreconditionDimension ? n : 0L).ToArray();

    public override DeclaredState Step(TensorTree updates, DeclaredState state, TensorTree parameters, StepContext context)
    {
        long calls = state.Get(_state.Count);
        double shampooBeta = o.ShampooBeta ?? o.Beta2;
        Tensor factors = state.Get(_state.Factors), bases = state.Get(_state.Bases);
        TensorTree m = state.Get(_state.M), v = state.Get(_state.V);
        long offset = 0;
        long t = calls;   // the official step counter after its increment (1 at the second call; the first only starts the factors)
        for (int i = 0; i < updates.Count; i++)
        {
            using var scope = NewDisposeScope();
            Tensor g = updates.Tensors[i];
            var dims = Dims(o, g.shape);
            var gg = new Tensor?[dims.Length];
            var q = new Tensor?[dims.Length];
            for (int d = 0; d < dims.Length; d++)
            {
                if (dims[d] == 0) continue;
                long n = dims[d];
                gg[d] = factors.narrow(0, offset, n * n).view(n, n);
                q[d] = bases.narrow(0, offset, n * n).view(n, n);
                offset += n * n;
            }
            var grad = g.clone();
            if (calls == 0)
            {
                for (int d = 0; d < dims.Length; d++)
                {
                    if (gg[d] is null) continue;
                    gg[d]!.add_(Outer(grad, d), 1 - shampooBeta);
                    q[d]!.copy_(Eigenbasis(gg[d]!));
                }
                g.zero_();
                continue;
            }
            // Adam in the rotated basis.
            var rotated = Project(grad, q, back: false);
            Tensor mi = m.Tensors[i], vi = v.Tensors[i];
            mi.mul_(o.Beta1).add_(rotated, 1 - o.Beta1);
            vi.mul_(o.Beta2).addcmul_(rotated, rotated, 1 - o.Beta2);
            var ratio = mi.div(vi.sqrt().add_(o.Epsilon));
            var u = Project(ratio, q, back: true);
            if (o.NormalizeGrads) u.div_(u.square().mean().sqrt().add_(1e-30));
            double scale = o.CorrectBias ? Math.Sqrt(1 - Math.Pow(o.Beta2, t)) / (1 - Math.Pow(o.Beta1, t)) : 1;
            g.copy_(u).mul_(scale);
            // The factors take this gradient; m goes back to the parameter basis and into the (possibly refreshed) one.
            if (q.All(x => x is null)) continue;
            var mParam = Project(mi, q, back: true);
            for (int d = 0; d < dims.Length; d++)
                if (gg[d] is not null) gg[d]!.lerp_(Outer(grad, d), 1 - shampooBeta);
            if (t % o.PreconditionFrequency == 0)
                for (int d = 0; d < dims.Length; d++)
                {
                    if (gg[d] is null) continue;
                    var (basis, order) = Refresh(gg[d]!, q[d]!);
                    vi.copy_(vi.index_select(d, order));
                    q[d]!.copy_(basis);
                }
            mi.copy_(Project(mParam, q, back: false));
        }
        return state.With(_state.Count, calls + 1);
    }

    /// <summary>G₍d₎G₍d₎ᵀ: the product of g with itself over every dimension but d (n_d × n_d).</summary>
    static Tensor Outer(Tensor g, int d)
    {
        var others = Enumerable.Range(0, (int)g.dim()).Where(k => k != d).Select(k => (long)k).ToArray();
        return others.Length == 0 ? g.outer(g) : tensordot(g, g, others, others);
    }

    /// <summary>
    /// Rotates every dimension d of x by Q_d (x ×_d Q_dᵀ forward, x ×_d Q_d back); a dimension without a basis is
    /// only cycled, so that after all dimensions the order is the original one.
    /// </summary>
    static Tensor Project(Tensor x, Tensor?[] q, bool back)
    {
        var y = x;
        int rank = (int)x.dim();
        for (int d = 0; d < rank; d++)
        {
            if (q[d] is { } basis) y = tensordot(y, basis, new long[] { 0 }, new long[] { back ? 1 : 0 });
            else y = y.permute(Enumerable.Range(1, rank - 1).Append(0).Select(k => (long)k).ToArray());
        }
        return y.contiguous();
    }

    /// <summary>The eigenvectors of GG (+ 1e-30·I), by descending eigenvalue; with the official casts, GG rounded to float32 first.</summary>
    Tensor Eigenbasis(Tensor gg)
    {
        var input = o.Float32Basis ? gg.to(ScalarType.Float32).to(gg.dtype) : gg;
        var (_, vectors) = linalg.eigh(input.add(eye(gg.shape[0], dtype: gg.dtype, device: gg.device), 1e-30));
        return vectors.flip(1);
    }

    /// <summary>One refresh: the eigenvalue estimates diag(QᵀGG·Q), their descending order, and QR(GG·Q[:, order]).Q.</summary>
    (Tensor Basis, Tensor Order) Refresh(Tensor gg, Tensor q)
    {
        var (a, b) = o.Float32Basis ? (gg.to(ScalarType.Float32), q.to(ScalarType.Float32)) : (gg, q);
        var estimates = b.t().matmul(a).matmul(b).diagonal();
        var order = estimates.argsort(descending: true);
        var (basis, _) = linalg.qr(a.matmul(b.index_select(1, order)));
        return (basis.to(q.dtype), order);
    }
}
