using System;
using System.Linq;
using Lookahead.Cli;

string usage = """
    lookahead — gradient optimizers as values

    Usage:
      lookahead replay PATH...   Replay reference optimizer cases (files, or folders of *.json) against
                                 Lookahead's compositions; prints one line per case
                                 'NAME max_abs=… max_rel=… ok|FAIL' and 'N passed, N failed'.
                                 Exit code 1 if any case fails.
      lookahead compare [...]    Train the built-in tasks with several optimizers: live table, final table,
                                 loss curves (PNG, HTML). 'lookahead compare --help' for its options.
      lookahead analyze SPEC...  Optimizers linear in their gradients as linear systems: linear or not (and why),
                                 order, stability interval, worst rate, error-variance limit; --equals decides
                                 equivalence exactly. 'lookahead analyze --help' for the SPEC syntax and options.
      lookahead --help           This text.

    Tolerance: |a − b| ≤ 1e-10 + 1e-8·|b| on every parameter after every step (and every torch.optim state slot).
    Known optimizers: 
    """ + string.Join(", ", Compatibility.Optimizers);

if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
{
    Console.WriteLine(usage);
    return args.Length == 0 ? 2 : 0;
}

switch (args[0])
{
    case "replay":
    {
        if (args.Length < 2 || args.Skip(1).Any(a => a is "--help" or "-h"))
        {
            Console.WriteLine("Usage: lookahead replay PATH...  (case files or folders of *.json)");
            Console.WriteLine();
            Console.WriteLine("The compatibility table: each reference constructor with its arguments and their reference defaults.");
            Console.WriteLine("A case must record every argument on the unlabelled line; it may hold no argument its row does not list.");
            foreach (var line in Compatibility.Describe()) Console.WriteLine(line);
            return args.Length < 2 ? 2 : 0;
        }
        int passed = 0, failed = 0;
        try
        {
            foreach (var file in Replay.CaseFiles(args.Skip(1)))
            {
                var r = Replay.Run(file);
                Console.WriteLine(r.Line);
                if (!r.Passed && r.Detail is not null) Console.WriteLine($"  {r.Detail}");
                if (r.Passed) passed++; else failed++;
            }
        }
        catch (System.IO.FileNotFoundException e)
        {
            Console.Error.WriteLine($"lookahead replay: {e.Message}");
            return 2;
        }
        Console.WriteLine($"{passed} passed, {failed} failed");
        return failed == 0 && passed > 0 ? 0 : 1;
    }
    case "compare":
        try { return Compare.Execute(args.Skip(1).ToArray()); }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"lookahead compare: {e.Message}");
            return 2;
        }
    case "analyze":
        try { return Analyze.Execute(args.Skip(1).ToArray(), Console.Out); }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"lookahead analyze: {e.Message}");
            return 2;
        }
    default:
        Console.Error.WriteLine($"lookahead: unknown command '{args[0]}'\n\n{usage}");
        return 2;
}
