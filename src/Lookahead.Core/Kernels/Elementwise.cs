using System.Runtime.CompilerServices;
using System;
using System.Collections.Generic;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Kernels;

/// <summary>
/// One elementwise step of a primitive, bound to its per-step constants (a bias correction, a learning rate at
/// this step): the same kernel runs on whatever array type an executor hands it. <c>arrays</c> are index-aligned,
/// in the order the primitive passes its trees to the executor (then any scratch it rented).
/// </summary>
/// <remarks>
/// Implement it as a small readonly struct that forwards to the primitive's generic kernel method; the executor
/// specialises the call per kernel type and per array type, so nothing is dispatched per element.
/// </remarks>
public interface IKernel
{
    /// <summary>Runs the kernel in place on one group (or one block of one group) of index-aligned arrays.</summary>
    void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> arrays) where TOps : struct, IArrayOps<TArray>;
}

/// <summary>
/// Where a primitive's elementwise phase goes: run now on TorchSharp tensors (<see cref="TensorOps"/>, any device:
/// the pure path, and the runner off the CPU), or, inside a runner step on the CPU, recorded by the fused executor
/// and run later with the rest of the step in one pass over memory.
/// </summary>
internal static class Elementwise
{
    [ThreadStatic] static IStageRecorder? _recorder;

    /// <summary>Runs <paramref name="kernel"/> over each group of <paramref name="groups"/> (see <see cref="Buffers.Groups(TensorTree[])"/>), with <paramref name="scratch"/> appended to every group's arrays.</summary>
    public static void Run<TKernel>(in TKernel kernel, IReadOnlyList<Tensor[]> groups, params Tensor[][]? scratch) where TKernel : struct, IKernel
    {
        if (_recorder is { } recorder)
        {
            recorder.Record(kernel, groups, scratch);
            return;
        }
        if (Graph.Active) { RunOn<TKernel, GraphOps>(kernel, groups, scratch); return; }
        RunOn<TKernel, TensorOps>(kernel, groups, scratch);
    }

    static void RunOn<TKernel, TOps>(in TKernel kernel, IReadOnlyList<Tensor[]> groups, Tensor[][]? scratch) where TKernel : struct, IKernel where TOps : struct, IArrayOps<Tensor>
    {
        var ops = default(TOps);
        for (int k = 0; k < groups.Count; k++)
        {
            var group = groups[k];
            if (scratch is null || scratch.Length == 0) { kernel.Run<Tensor, TOps>(ops, group); continue; }
            var arrays = new Tensor[group.Length + scratch.Length];
            group.CopyTo(arrays, 0);
            for (int s = 0; s < scratch.Length; s++) arrays[group.Length + s] = scratch[s][k];
            kernel.Run<Tensor, TOps>(ops, arrays);
        }
    }

    [ThreadStatic] static Tensor[][]? _oneScratch;

    /// <summary>As <see cref="Run{TKernel}(in TKernel, IReadOnlyList{Tensor[]}, Tensor[][])"/> with one scratch tensor per group (no argument array allocated).</summary>
    public static void Run<TKernel>(in TKernel kernel, IReadOnlyList<Tensor[]> groups, Tensor[] scratch) where TKernel : struct, IKernel
    {
        var wrapper = _oneScratch ??= new Tensor[1][];
        wrapper[0] = scratch;
        try { Run(kernel, groups, (Tensor[][]?)wrapper); }
        finally { wrapper[0] = null!; }
    }

    /// <summary>Runs <paramref name="kernel"/> over the groups of <paramref name="trees"/> (index-aligned trees).</summary>
    public static void Run<TKernel>(in TKernel kernel, params TensorTree[] trees) where TKernel : struct, IKernel =>
        Run(kernel, Buffers.Groups(trees), (Tensor[][]?)null);

    /// <inheritdoc cref="Run{TKernel}(in TKernel, TensorTree[])"/>
    public static void Run<TKernel>(in TKernel kernel, TensorTree a) where TKernel : struct, IKernel => Run(kernel, Buffers.Groups(a), (Tensor[][]?)null);

    /// <inheritdoc cref="Run{TKernel}(in TKernel, TensorTree[])"/>
    public static void Run<TKernel>(in TKernel kernel, TensorTree a, TensorTree b) where TKernel : struct, IKernel => Run(kernel, Buffers.Groups(a, b), (Tensor[][]?)null);

    /// <inheritdoc cref="Run{TKernel}(in TKernel, TensorTree[])"/>
    public static void Run<TKernel>(in TKernel kernel, TensorTree a, TensorTree b, TensorTree c) where TKernel : struct, IKernel => Run(kernel, Buffers.Groups(a, b, c), (Tensor[][]?)null);

    /// <inheritdoc cref="Run{TKernel}(in TKernel, TensorTree[])"/>
    public static void Run<TKernel>(in TKernel kernel, TensorTree a, TensorTree b, TensorTree c, TensorTree d) where TKernel : struct, IKernel => Run(kernel, Buffers.Groups(a, b, c, d), (Tensor[][]?)null);

    /// <summary>While the returned scope lives, this thread's elementwise phases are recorded by <paramref name="recorder"/>.</summary>
    public static RecordingScope Record(IStageRecorder recorder) => new(recorder);

    /// <summary>
    /// Runs the phases recorded so far and stops recording until the returned scope is disposed: what runs in
    /// between (a transform that is not elementwise) sees up-to-date buffers and runs its kernels at once.
    /// </summary>
    public static RecordingScope Suspend()
    {
        var recorder = _recorder ?? throw new InvalidOperationException("nothing is being recorded");
        recorder.Flush();
        return new RecordingScope(null);
    }

    /// <summary>
    /// Under the fused executor: <paramref name="kind"/> over each group (one value per group, as doubles) of the
    /// values the recorded stages give them. The executor runs what was recorded first, unless all that is pending is
    /// the copy of the gradients into the update buffer (then it reads the gradients and the copy joins the next
    /// pass): call <see cref="Flush"/> before touching a buffer directly. Otherwise null: the caller reduces on tensors
    /// (<see cref="Reducer"/>).
    /// </summary>
    public static double[]? Reduce(ReductionKind kind, IReadOnlyList<Tensor[]> groups) => _recorder?.Reduce(kind, groups);

    /// <summary>
    /// Under the fused executor, runs what was recorded so far, so that the buffers may be touched directly (after a
    /// <see cref="Reduce"/>, whose result may have been computed without running the pending stages); else nothing.
    /// </summary>
    public static void Flush() => _recorder?.Flush();

    /// <summary>Whether elementwise phases on this thread are being recorded.</summary>
    public static bool Recording => _recorder is not null;

    internal readonly struct RecordingScope : IDisposable
    {
        readonly IStageRecorder? _previous;

        internal RecordingScope(IStageRecorder? recorder) { _previous = _recorder; _recorder = recorder; }

        public void Dispose() => _recorder = _previous;
    }
}

/// <summary>What records elementwise phases instead of running them (the fused executor).</summary>
internal interface IStageRecorder
{
    /// <summary>Records <paramref name="kernel"/> over <paramref name="groups"/> (each group's arrays followed by the scratch tensors of that group).</summary>
    void Record<TKernel>(in TKernel kernel, IReadOnlyList<Tensor[]> groups, Tensor[][]? scratch) where TKernel : struct, IKernel;

    /// <summary>Runs what has been recorded so far.</summary>
    void Flush();

    /// <summary>Runs what has been recorded so far, then the reduction of each group.</summary>
    double[] Reduce(ReductionKind kind, IReadOnlyList<Tensor[]> groups);
}

/// <summary>a[1] ← a[0] (a copy kept while later kernels overwrite the first array).</summary>
internal readonly struct CopyOutKernel : IKernel
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, IArrayOps<TArray> => ops.Copy(a[1], a[0]);
}

/// <summary>a[0] ← a[1] (the runner's update buffer filled from the gradients).</summary>
internal readonly struct CopyInKernel : IKernel
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, IArrayOps<TArray> => ops.Copy(a[0], a[1]);
}

/// <summary>a[0] ← s·a[0].</summary>
internal readonly struct ScaleKernel(Hyper factor) : IKernel
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, IArrayOps<TArray> => Coefficients.Mul(ops, a[0], factor);
}

/// <summary>The runner's last stage: θ ← θ + u over (u, θ).</summary>
internal readonly struct ApplyKernel : IKernel
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Run<TArray, TOps>(TOps ops, ReadOnlySpan<TArray> a) where TOps : struct, IArrayOps<TArray> => ops.AddScaled(a[1], a[0], 1);
}
