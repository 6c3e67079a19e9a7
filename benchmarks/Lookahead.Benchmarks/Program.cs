using System;
using System.Linq;
using BenchmarkDotNet.Running;
using Lookahead.Benchmarks;

// dotnet run -c Release -- --quick [--matrices K]   the one-command check of the targets (minutes)
// dotnet run -c Release -- [BenchmarkDotNet args]    the BenchmarkDotNet suite (long)
if (args.Contains("--quick"))
{
    int i = Array.IndexOf(args, "--matrices");
    int matrices = i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1]) : 8;
    return Quick.Run(matrices);
}
BenchmarkSwitcher.FromAssembly(typeof(Cases).Assembly).Run(args);
return 0;
