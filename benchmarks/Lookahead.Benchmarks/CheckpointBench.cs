using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Lookahead;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Benchmarks;

/// <summary>
/// Checkpoint save and load of Adam's state against a plain file stream that writes and reads the same bytes
/// from and into the same tensors' memory (1 MB chunks, flushed to disk like a save), in interleaved rounds.
/// </summary>
public static class CheckpointBench
{
    /// <summary>Runs the comparison for <paramref name="parameters"/> float32 parameters in <paramref name="directory"/>; returns the exit code.</summary>
    public static int Run(long parameters, string directory, int rounds = 5)
    {
        Directory.CreateDirectory(directory);
        string ckpt = Path.Combine(directory, "bench.ckpt"), raw = Path.Combine(directory, "bench.raw");
        using var scope = NewDisposeScope();
        var theta = TensorTree.Of(("w", randn(parameters)));
        var adam = Optim.Adam(1e-3);
        var state = adam.Init(theta);
        using (var g = theta.Map(t => randn_like(t).mul_(0.01)))
        {
            var (u, next) = adam.Update(g, state, theta, StepContext.Empty);
            u.Dispose();
            OptState.Dispose(state);
            state = next;
        }
        var tensors = theta.Tensors.Concat(OptState.Tensors(state)).ToArray();
        long bytes = tensors.Sum(t => t.numel() * t.ElementSize);
        var targets = tensors.Select(t => empty_like(t)).ToArray();
        Console.WriteLine($"checkpoint: {parameters:N0} parameters of Adam, {tensors.Length} tensors, {bytes / 1e9:0.00} GB, in {directory}");
        void ReadIntoNew()
        {
            var made = tensors.Skip(theta.Count).Select(t => empty(t.shape, dtype: t.dtype)).ToArray();
            RawRead(ckpt, targets.Take(theta.Count).Concat(made).ToArray(), skipHeader: true);
            foreach (var t in made) t.Dispose();
        }
        long residentBefore = 0;
        double[] save = new double[rounds], load = new double[rounds], write = new double[rounds], read = new double[rounds], fresh = new double[rounds];
        long saveAllocated = 0, loadAllocated = 0;
        for (int r = 0; r < rounds; r++)
        {
            long a0 = GC.GetAllocatedBytesForCurrentThread();
            Settle(ckpt);
            save[r] = Time(() => Checkpoint.Save(ckpt, adam, state, theta));
            saveAllocated = GC.GetAllocatedBytesForCurrentThread() - a0;
            Settle(raw);
            write[r] = Time(() => RawWrite(raw, tensors));
            read[r] = Time(() => RawRead(raw, targets));
            // As a load does, from the checkpoint file itself: the parameters' bytes are read (and checked) but not
            // kept, the state's go to new tensors.
            fresh[r] = Time(ReadIntoNew);
            a0 = GC.GetAllocatedBytesForCurrentThread();
            load[r] = Time(() => OptState.Dispose(Checkpoint.Load(ckpt, adam, theta)));
            loadAllocated = GC.GetAllocatedBytesForCurrentThread() - a0;
            if (r == 0) residentBefore = Resident();
        }
        double hash = Time(() => Hash(tensors));
        double init = Time(() => OptState.Dispose(adam.Init(theta)));
        Console.WriteLine($"info XXH3-128 (the checksum) of the same bytes from memory {hash:0} ms; the optimizer's Init {init:0} ms");
        double Median(double[] x) => x.OrderBy(v => v).ElementAt(x.Length / 2);
        double s = Median(save), w = Median(write), l = Median(load), rd = Median(read), rf = Median(fresh);
        // On a VM the first touch of memory the host has not backed yet costs several times more than reused
        // memory, and which of two allocating readers gets which pages varies: the best of the rounds is shown too.
        Console.WriteLine($"info best of {rounds} rounds: save {save.Min():0} ms, plain write {write.Min():0} ms (ratio {save.Min() / write.Min():0.00}); load {load.Min():0} ms, plain read into new tensors {fresh.Min():0} ms (ratio {load.Min() / fresh.Min():0.00})");
        Console.WriteLine($"target checkpoint-save-vs-file-stream ratio={s / w:0.00} goal=<=1.5 {(s / w <= 1.5 ? "met" : "not met")}    (save {s:0} ms, plain write {w:0} ms, {bytes / 1e3 / w:0} MB/s; managed bytes allocated by a save {saveAllocated:N0})");
        // A load hands out new tensors (it cannot fill the caller's: a corrupt file would leave them half written),
        // so its baseline reads the same bytes into new tensors too; into existing tensors is shown beside it.
        Console.WriteLine($"target checkpoint-load-vs-file-stream ratio={l / rf:0.00} goal=<=1.5 {(l / rf <= 1.5 ? "met" : "not met")}    (load {l:0} ms, plain read into new tensors {rf:0} ms, {bytes / 1e3 / rf:0} MB/s; into existing tensors {rd:0} ms, ratio {l / rd:0.00}; managed bytes allocated by a load {loadAllocated:N0})");
        Console.WriteLine($"info resident memory after the last round minus after the first: {(Resident() - residentBefore) / 1e6:0} MB (nothing a round makes outlives it)");

        // The same comparison where the allocator keeps freed memory (glibc told not to map large blocks): a load's
        // new tensors then get pages the process already holds instead of pages fresh from the kernel, so what is
        // left is the load's own work (header, checks, checksum). One untimed round first takes the memory.
        if (TryKeepFreedMemory())
        {
            OptState.Dispose(Checkpoint.Load(ckpt, adam, theta));
            ReadIntoNew();
            double[] heldLoad = new double[rounds], heldFresh = new double[rounds], heldExisting = new double[rounds];
            for (int r = 0; r < rounds; r++)
            {
                heldFresh[r] = Time(ReadIntoNew);
                heldLoad[r] = Time(() => OptState.Dispose(Checkpoint.Load(ckpt, adam, theta)));
                heldExisting[r] = Time(() => RawRead(ckpt, targets, skipHeader: true));
            }
            double hl = Median(heldLoad), hf = Median(heldFresh), he = Median(heldExisting);
            Console.WriteLine($"info with freed memory kept by the allocator: load {hl:0} ms, plain read into new tensors {hf:0} ms (ratio {hl / hf:0.00}), into existing tensors {he:0} ms (ratio {hl / he:0.00})");
        }
        File.Delete(ckpt);
        File.Delete(raw);
        return 0;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mallopt")] static extern int MallOpt(int parameter, int value);

    /// <summary>glibc: no block goes to its own mapping (M_MMAP_MAX = 0) and the heap is never trimmed (M_TRIM_THRESHOLD), so freed tensors' pages are reused.</summary>
    static bool TryKeepFreedMemory()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { return MallOpt(-4, 0) == 1 && MallOpt(-1, int.MaxValue) == 1; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }

    static long Resident() => File.Exists("/proc/self/statm")
        ? long.Parse(File.ReadAllText("/proc/self/statm").Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture) * Environment.SystemPageSize
        : 0;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "sync")] static extern void PosixSync();

    /// <summary>
    /// Deletes the previous file and flushes the file system, untimed: on a file system mounted with online discard
    /// (this VM's ext4), freeing a 1 GB file's blocks costs seconds at the next journal commit, which would otherwise
    /// land on whichever of the two writers runs next.
    /// </summary>
    static void Settle(string path)
    {
        File.Delete(path);
        if (OperatingSystem.IsLinux()) PosixSync();
    }

    static double Time(Action a)
    {
        var sw = Stopwatch.StartNew();
        a();
        return sw.Elapsed.TotalMilliseconds;
    }

    static unsafe void RawWrite(string path, Tensor[] tensors)
    {
        using var f = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0);
        foreach (var t in tensors)
        {
            var p = (byte*)TrafficLoop.Address(t);
            long n = t.numel() * t.ElementSize;
            for (long o = 0; o < n; o += 1 << 20) f.Write(new ReadOnlySpan<byte>(p + o, (int)Math.Min(1 << 20, n - o)));
        }
        f.Flush(flushToDisk: true);
    }

    static unsafe void Hash(Tensor[] tensors)
    {
        var sha = new System.IO.Hashing.XxHash128();
        foreach (var t in tensors)
        {
            var p = (byte*)TrafficLoop.Address(t);
            long n = t.numel() * t.ElementSize;
            for (long o = 0; o < n; o += 1 << 20) sha.Append(new ReadOnlySpan<byte>(p + o, (int)Math.Min(1 << 20, n - o)));
        }
        sha.GetHashAndReset();
    }

    /// <summary>Reads the tensors' bytes in order; with <paramref name="skipHeader"/> from a checkpoint file, after its header (the same file and cache state as the load).</summary>
    static unsafe void RawRead(string path, Tensor[] targets, bool skipHeader = false)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0);
        if (skipHeader)
        {
            Span<byte> len = stackalloc byte[8];
            f.ReadExactly(len);
            f.Position = 8 + (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(len);
        }
        foreach (var t in targets)
        {
            var p = (byte*)TrafficLoop.Address(t);
            long n = t.numel() * t.ElementSize;
            for (long o = 0; o < n; o += 1 << 20) f.ReadExactly(new Span<byte>(p + o, (int)Math.Min(1 << 20, n - o)));
        }
    }
}
