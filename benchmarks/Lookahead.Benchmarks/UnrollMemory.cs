using System;
using System.Globalization;
using System.IO;
using System.Linq;
using Lookahead;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Benchmarks;

/// <summary>
/// The memory a recorded unroll keeps (Differentiable.Unroll): the process's resident memory with the graph of K steps
/// alive, minus before, for several K, as a slope per step in bytes and in copies of the parameters. Tensors of 1e6
/// float64 elements and more are allocated by mmap and returned on free, so the resident size follows the graph.
/// </summary>
public static class UnrollMemory
{
    // glibc raises its mmap threshold after large frees, after which freed tensors stay in the heap and the resident
    // size stops following the graph; fixing the threshold keeps every tensor of 128 KiB and more in its own mapping.
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mallopt")]
    static extern int MallOpt(int parameter, int value);
    const int MmapThreshold = -3;

    static long Resident()
    {
        // /proc/self/statm: size resident shared ... in pages.
        var fields = File.ReadAllText("/proc/self/statm").Split(' ');
        return long.Parse(fields[1], CultureInfo.InvariantCulture) * Environment.SystemPageSize;
    }

    public static int Run(long count)
    {
        if (!File.Exists("/proc/self/statm")) { Console.WriteLine("needs /proc/self/statm (Linux)"); return 1; }
        try { MallOpt(MmapThreshold, 128 * 1024); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { Console.WriteLine("glibc's mallopt is not available: resident sizes may lag frees"); }
        Console.WriteLine($"Recorded unroll memory, {count:N0} float64 parameters (one tensor), loss ½Σa(θ − c)²; resident bytes with the graph alive minus before");
        using var a = rand(count, dtype: float64).add_(0.5);
        using var c = randn(count, dtype: float64);
        Tensor Loss(TensorTree theta, long step)
        {
            using var d = theta["x"] - c;
            using var ad = a * d;
            using var e = ad * d;
            using var s = e.sum();
            return s * 0.5;
        }
        double bytesPerCopy = count * 8.0;
        foreach (var (name, tx) in new (string, IGradientTransformation)[] { ("SGD momentum", Optim.Sgd(0.1, momentum: 0.9)), ("Adam", Optim.Adam(0.01)), ("AdamW", Optim.AdamW(0.01, weightDecay: 0.1)) })
        {
            var ks = new[] { 2, 4, 8, 16 };
            var growth = new double[ks.Length];
            for (int i = 0; i < ks.Length; i++)
            {
                using var x0 = randn(count, dtype: float64);
                var initial = TensorTree.Of(("x", x0));
                GC.Collect();
                long before = Resident();
                var unrolled = Differentiable.Unroll(tx, initial, Loss, ks[i]);
                long during = Resident();
                using (var j = unrolled.Parameters["x"].sum()) j.backward();
                unrolled.Dispose();
                GC.Collect();
                GC.WaitForPendingFinalizers();
                long after = Resident();
                growth[i] = during - before;
                Console.WriteLine($"  {name,-13} K = {ks[i],2}: +{(during - before) / 1e6,8:F1} MB with the graph ({(during - before) / bytesPerCopy,5:F1} parameter copies); after backward and Dispose {(after - before) / 1e6,6:F1} MB");
            }
            // Least-squares slope over K.
            double mk = ks.Average(), mg = growth.Average();
            double slope = ks.Select((k, i) => (k - mk) * (growth[i] - mg)).Sum() / ks.Select(k => (k - mk) * (k - mk)).Sum();
            Console.WriteLine($"  {name,-13} per recorded step: {slope / 1e6:F1} MB = {slope / bytesPerCopy:F1} copies of the parameters");
        }
        {
            using var x0 = randn(count, dtype: float64);
            var initial = TensorTree.Of(("x", x0));
            GC.Collect();
            long before = Resident();
            var unrolled = Differentiable.Unroll(Optim.Adam(0.01), initial, Loss, 16, truncate: 4);
            long during = Resident();
            unrolled.Dispose();
            Console.WriteLine($"  Adam K = 16 recording the last 4: +{(during - before) / 1e6:F1} MB ({(during - before) / bytesPerCopy:F1} copies)");
        }
        return 0;
    }
}
