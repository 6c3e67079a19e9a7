using System;
using System.Linq;
using BenchmarkDotNet.Running;
using Lookahead.Benchmarks;

// dotnet run -c Release -- --quick [--matrices K] [--rounds R] [--runner NAME=VALUE]... [--only NAME,NAME]
//     the one-command check of the targets (minutes). --runner sets a RunnerOptions property for every runner
//     of the benchmark (by reflection, so options added to the runner later can be chosen without code changes).
// dotnet run -c Release -- --checkpoint [PARAMETERS] [DIRECTORY]
//     checkpoint save/load of Adam's state (default 1e8 parameters) against a plain file stream of the same bytes.
// dotnet run -c Release -- --unroll-memory [PARAMETERS]
//     the resident memory a recorded Differentiable.Unroll keeps per step (default 1e6 parameters).
// dotnet run -c Release -- [BenchmarkDotNet args]    the BenchmarkDotNet suite (long)
if (args.Length > 0 && args[0] == "--checkpoint")
{
    long count = args.Length > 1 ? long.Parse(args[1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture) : 100_000_000;
    string directory = args.Length > 2 ? args[2] : System.IO.Path.Combine(System.IO.Path.GetTempPath(), "lookahead-checkpoint-bench");
    return CheckpointBench.Run(count, directory);
}
if (args.Length > 0 && args[0] == "--unroll-memory")
    return UnrollMemory.Run(args.Length > 1 ? long.Parse(args[1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture) : 1_000_000);
if (args.Contains("--quick"))
{
    int Value(string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture) : fallback;
    }
    for (int i = 0; i + 1 < args.Length; i++)
    {
        if (args[i] != "--runner") continue;
        var parts = args[i + 1].Split('=', 2);
        if (parts.Length != 2) throw new ArgumentException($"--runner wants NAME=VALUE, got '{args[i + 1]}'");
        Cases.Override(parts[0], parts[1]);
    }
    int only = Array.IndexOf(args, "--only");
    return Quick.Run(new QuickOptions(Matrices: Value("--matrices", 8), Rounds: Value("--rounds", 7),
        Only: only >= 0 && only + 1 < args.Length ? args[only + 1].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : null));
}
BenchmarkSwitcher.FromAssembly(typeof(Cases).Assembly).Run(args);
return 0;
