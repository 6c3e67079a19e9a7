using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Threading;

namespace Lookahead.Kernels;

/// <summary>
/// The threads the fused executor splits a step over: background threads started once per process and kept, so that a
/// steady-state step neither allocates (as <see cref="System.Threading.Tasks.Parallel"/> does per call) nor starts a
/// thread. Part 0 of a job runs on the calling thread, parts 1… on the pool's threads.
/// </summary>
/// <remarks>
/// One job runs at a time. A caller that finds the pool busy (another runner stepping on another thread) runs every
/// part itself, in order: the executor's results do not depend on how its parts are spread, so only the time differs.
/// The pool holds the job's delegate only while the job runs, so it keeps no executor alive.
/// </remarks>
internal static class WorkerPool
{
    sealed class Worker
    {
        public readonly SemaphoreSlim Go = new(0);
        public int Part;
    }

    static readonly object Gate = new();
    static readonly List<Worker> Workers = new();
    static readonly ManualResetEventSlim Finished = new(false);
    static Action<int>? _body;
    static int _remaining;
    static Exception? _error;

    /// <summary>Runs <paramref name="body"/>(0 … <paramref name="parts"/> − 1) and returns when every part has finished; rethrows the first exception a part threw.</summary>
    public static void Run(int parts, Action<int> body)
    {
        // Inline when there is nothing to share, when another job runs, or when called from inside a job (the lock
        // is reentrant: a nested job on the calling thread must not replace the running one).
        if (parts <= 1 || _inJob || !Monitor.TryEnter(Gate))
        {
            for (int i = 0; i < parts; i++) body(i);
            return;
        }
        _inJob = true;
        try
        {
            while (Workers.Count < parts - 1) Start();
            _body = body;
            _error = null;
            _remaining = parts - 1;
            Finished.Reset();
            for (int i = 0; i < parts - 1; i++) { Workers[i].Part = i + 1; Workers[i].Go.Release(); }
            try { body(0); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
            Finished.Wait();
            _body = null;
            if (_error is { } error) { _error = null; ExceptionDispatchInfo.Capture(error).Throw(); }
        }
        finally { _inJob = false; Monitor.Exit(Gate); }
    }

    [ThreadStatic] static bool _inJob;

    static void Start()
    {
        var worker = new Worker();
        var thread = new Thread(() => Loop(worker)) { IsBackground = true, Name = $"Lookahead fused executor {Workers.Count + 1}" };
        Workers.Add(worker);
        thread.Start();
    }

    static void Loop(Worker worker)
    {
        while (true)
        {
            worker.Go.Wait();
            try { _body!(worker.Part); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
            if (Interlocked.Decrement(ref _remaining) == 0) Finished.Set();
        }
    }
}
