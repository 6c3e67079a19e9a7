using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Cli;

/// <summary>
/// <c>lookahead compare</c>: trains the built-in tasks with several optimizers (seeded, deterministic, no
/// download), shows progress and a live table, prints the final table and writes loss curves (PNG per task,
/// one HTML page) and the raw losses (CSV).
/// </summary>
public static class Compare
{
    static readonly CultureInfo C = CultureInfo.InvariantCulture;

    /// <summary>
    /// The optimizers compare knows: name, description (at its default rate), default learning rate (the centre of
    /// its sweep and the --quick rate: for the default selection, set where the best rates of a wider sweep on the
    /// built-in tasks fell, so that they lie inside the default sweep rather than at its edge), and the
    /// transform for a task at a learning rate (for <c>muon</c> the Muon rate; its AdamW part takes 0.15 of it);
    /// <c>OwnSchedule</c> marks an optimizer that is not put on the warm-up + cosine schedule (Schedule-Free: its
    /// own warm-up over the first 5 % of the steps, no decay).
    /// </summary>
    public static readonly (string Name, string Description, double Lr, bool OwnSchedule, Func<CompareTask, double, int, IGradientTransformation> Make)[] Catalog =
    {
        ("sgd", "SGD, momentum 0.9, lr 0.1", 0.1, false, (_, lr, _) => Optim.Sgd(lr, 0.9)),
        ("adam", "Adam, lr 1e-2", 1e-2, false, (_, lr, _) => Optim.Adam(lr)),
        ("adamw", "AdamW, lr 1e-2, weight decay 0.01", 1e-2, false, (_, lr, _) => Optim.AdamW(lr, weightDecay: 0.01)),
        ("mars", "MARS-AdamW, lr 1e-2, γ 0.025", 1e-2, false, (_, lr, _) => Optim.Mars(lr)),
        ("muon", "Muon (lr 0.05) on hidden matrices, AdamW (0.15 × the Muon rate) on the rest", 0.05, false, (t, lr, _) => Optim.MuonWithAuxAdam(Optim.Muon(lr), adamLr: 0.15 * lr, isMuonParameter: t.HiddenMatrices)),
        ("mars-m", "MARS-M (lr 1e-2) on hidden matrices, AdamW on the rest", 1e-2, false, (t, lr, _) => Optim.MarsM(lr, weightDecay: 0.01, isMatrixParameter: t.HiddenMatrices)),
        ("momo-adam", "MoMo-Adam, lr 3e-2 (Polyak-capped)", 3e-2, false, (_, lr, _) => Optim.MomoAdam(lr)),
        ("arsg", "ARSG, lr 1e-2, μ 0.1", 1e-2, false, (_, lr, _) => Optim.Arsg(lr)),
        ("momo", "MoMo, lr 1", 1.0, false, (_, lr, _) => Optim.Momo(lr)),
        ("nadam", "NAdam, lr 1e-2", 1e-2, false, (_, lr, _) => Optim.NAdam(lr)),
        ("lion", "Lion, lr 3e-4", 3e-4, false, (_, lr, _) => Optim.Lion(lr)),
        ("qhm", "QHM, lr 0.5, β 0.9, ν 0.7", 0.5, false, (_, lr, _) => Optim.Qhm(lr, 0.9, 0.7)),
        ("sf-adamw", "Schedule-Free AdamW, lr 1e-2, warm-up over 5 % of the steps (metric at the average x)", 1e-2, true, (_, lr, steps) => Optim.ScheduleFreeAdamW(lr, warmupSteps: Math.Max(1, steps / 20))),
        ("ademamix", "AdEMAMix, lr 1e-2, α 5 warmed up over the run's first 100 steps", 1e-2, false, (_, lr, _) => Optim.AdEMAMix(lr, alpha: 5, alphaWarmup: 100, beta3Warmup: 100)),
        ("adopt", "ADOPT, lr 1e-2", 1e-2, false, (_, lr, _) => Optim.Adopt(lr)),
        ("c-adamw", "C-AdamW, lr 1e-2, weight decay 0.01", 1e-2, false, (_, lr, _) => Optim.CautiousAdamW(lr, weightDecay: 0.01)),
        ("prodigy", "Prodigy (lr 1: the step size is estimated)", 1.0, false, (_, lr, _) => Optim.Prodigy(lr)),
        ("soap", "SOAP, lr 1e-2, bases refreshed every 10 steps", 1e-2, false, (_, lr, _) => Optim.Soap(lr)),
        ("adam-hd", "Adam-HD, lr 1e-2 at the start, hypergradient rate 1e-7 (the rate adapts itself: no schedule)", 1e-2, true, (_, lr, _) => Optim.AdamHD(lr, hypergradientLr: 1e-7)),
        ("sgd-hd", "SGD-HD, momentum 0.9, lr 0.1 at the start, hypergradient rate 1e-4 (no schedule)", 0.1, true, (_, lr, _) => Optim.SgdHD(lr, 0.9, hypergradientLr: 1e-4)),
    };

    /// <summary>The default selection.</summary>
    public static readonly string[] Defaults = { "sgd", "adam", "adamw", "mars", "muon", "momo-adam", "arsg" };

    /// <summary>
    /// The default learning-rate multipliers of the sweep: 5 rates, log-spaced over 2 decades around each default
    /// (half a decade apart). A 3-decade sweep of 5 rates was tried: the coarser grid (0.75 of a decade) missed
    /// modular addition's narrow good range for the Adam family, and logistic regression's best rate stayed at the
    /// top edge at any width (its loss still falls at rate 0.3 after 300 steps), so the finer grid is kept.
    /// </summary>
    public static readonly double[] DefaultMultipliers = { 0.1, 0.316, 1, 3.16, 10 };

    /// <summary>
    /// The learning rate's shape over a run of <paramref name="steps"/> steps, at step t = 1, 2, …: a linear warm-up
    /// to 1 over the first 5 % of the steps (t/W), then a cosine decay to 0.01 at the last step.
    /// </summary>
    public static double WarmupCosine(long t, int steps)
    {
        int warmup = Math.Max(1, steps / 20);
        if (t <= warmup) return (double)t / warmup;
        double progress = steps == warmup ? 1 : Math.Min(1.0, (double)(t - warmup) / (steps - warmup));
        return 0.01 + 0.99 * (1 + Math.Cos(Math.PI * progress)) / 2;
    }

    /// <summary>The usage text.</summary>
    public static string Usage =>
        "Usage: lookahead compare [--task NAMES] [--optimizers NAMES] [--steps N] [--seed N] [--seeds N] [--lrs F,F,...]\n" +
        "                         [--data PATH.csv --target COLUMN [--task-kind regression|classification] [--drop COLUMNS]]\n" +
        "                         [--quick] [--out DIR]\n\n" +
        "Trains built-in tasks on generated data with several optimizers and compares them fairly: for each optimizer a\n" +
        "learning-rate sweep (multipliers of its default rate) × seeds, every run on a linear warm-up (5 % of the steps)\n" +
        "+ cosine schedule. The table shows each optimizer's best rate (lowest mean final loss over the seeds) and, at\n" +
        "that rate, the mean ± standard deviation over seeds of the final loss and the metric, and steps to target;\n" +
        "where an optimizer's best rate is the lowest or highest tried, the default sweep goes on past it, half a\n" +
        "decade at a time (up to " + MaxExtensions + " times), until the best rate is inside; one still at an end is marked (edge).\n" +
        "Writes loss curves (at the best rate, mean over seeds) and learning-rate sensitivity plots (mean final loss\n" +
        "against the rate, band from the best to the worst seed) as PNG and HTML, the runs as CSV. Seeded and\n" +
        "deterministic: the files are identical across runs on one machine; no download.\n" +
        "'Steps to target' is the first step whose loss is at most a fraction of the first step's loss\n" +
        "(logistic 0.9, mlp and modadd 0.1, a CSV task 0.2 for regression and 0.5 for classification): the median over\n" +
        "the seeds that reach it, and how many do.\n\n" +
        "  --task NAMES        comma-separated tasks; default all:\n" +
        string.Concat(CompareTask.All.Select(t => $"                        {t.Name,-10} {t.Description} ({t.DefaultSteps} steps)\n")) +
        "  --optimizers NAMES  comma-separated; default " + string.Join(",", Defaults) + ". Known (default rates):\n" +
        string.Concat(Catalog.Select(c => $"                        {c.Name,-10} {c.Description}\n")) +
        "  --steps N           steps per run (default: each task's own)\n" +
        "  --seed N            first seed of data and initialisation (default 1)\n" +
        "  --seeds N           seeds per rate: seed, seed + 1, … (default 3)\n" +
        "  --lrs F,F,...       learning-rate multipliers of each optimizer's default (default " + string.Join(",", DefaultMultipliers.Select(m => m.ToString(C))) + ",\n" +
        "                      extended past an edge); a grid given here is run as given\n" +
        "  --data PATH.csv     your own data instead of the built-in tasks (with --task, in addition to them): a header\n" +
        "                      row, then one example per row; every column but the target is a numeric feature. Each\n" +
        "                      seed splits the rows 80/20 (training/validation), standardises the features with the\n" +
        "                      training rows' statistics and trains an MLP (64, 64, tanh) full batch; the metric is\n" +
        "                      on the validation rows. Malformed files are refused with the line and column.\n" +
        "  --target COLUMN     the column to predict (needed with --data)\n" +
        "  --task-kind KIND    regression or classification; default inferred: classes when the target holds text or at\n" +
        "                      most " + CsvTask.MaxInferredClasses + " distinct integers, else regression\n" +
        "  --drop COLUMNS      comma-separated columns of the file to leave out (identifiers, text)\n" +
        "  --quick             one run per optimizer at its default rate, one seed, constant rate (no sweep)\n" +
        "  --out DIR           output folder (default ./lookahead-compare)\n";

    sealed record Run(CompareTask Task, string Optimizer, double Multiplier, long Seed)
    {
        public List<double> Losses { get; } = new();
        public int? StepsToTarget { get; set; }
        public string MetricName { get; set; } = "";
        public double Metric { get; set; } = double.NaN;
        public double MsPerStep { get; set; } = double.NaN;
        public bool Diverged { get; set; }
        public int Total { get; set; }
        public double Lr { get; set; }
        /// <summary>The final loss; +∞ for a run that diverged.</summary>
        public double Final => Diverged || Losses.Count == 0 ? double.PositiveInfinity : Losses[^1];
    }

    /// <summary>One optimizer on one task: its runs by rate, and the best rate's.</summary>
    sealed record Result(CompareTask Task, string Optimizer, IReadOnlyList<(double Lr, Run[] Runs)> ByRate, int Best)
    {
        public Run[] BestRuns => ByRate[Best].Runs;
        public double BestLr => ByRate[Best].Lr;
        /// <summary>The best rate, marked "(edge)" when it is the lowest or highest of a sweep (the optimum may lie beyond).</summary>
        public string BestLrText => BestLr.ToString("g3", CultureInfo.InvariantCulture) + (ByRate.Count > 1 && (Best == 0 || Best == ByRate.Count - 1) ? " (edge)" : "");
    }

    /// <summary>Runs the command with its arguments; returns the exit code.</summary>
    public static int Execute(string[] args)
    {
        var tasks = CompareTask.All.ToList();
        var optimizers = Defaults.ToList();
        int? steps = null;
        long seed = 1;
        int seeds = 3;
        var multipliers = DefaultMultipliers.ToList();
        bool quick = false, seedsGiven = false, lrsGiven = false, tasksGiven = false;
        string? data = null, target = null;
        CsvTaskKind? kind = null;
        var drop = new List<string>();
        string output = "lookahead-compare";
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--help" or "-h": Console.WriteLine(Usage); return 0;
                case "--task" or "--tasks":
                    var names = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                    tasks = names.Select(n => CompareTask.All.FirstOrDefault(t => t.Name == n)
                        ?? throw new ArgumentException($"--task: unknown task '{n}'; known: {string.Join(", ", CompareTask.All.Select(t => t.Name))}")).ToList();
                    tasksGiven = true;
                    break;
                case "--data": data = Next(); break;
                case "--target": target = Next(); break;
                case "--task-kind":
                    kind = Next() switch
                    {
                        "regression" => CsvTaskKind.Regression,
                        "classification" => CsvTaskKind.Classification,
                        var other => throw new ArgumentException($"--task-kind: expected 'regression' or 'classification', got '{other}'"),
                    };
                    break;
                case "--drop":
                    drop.AddRange(Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
                    break;
                case "--optimizers":
                    optimizers = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
                    foreach (var o in optimizers)
                        if (!Catalog.Any(c => c.Name == o)) throw new ArgumentException($"--optimizers: unknown optimizer '{o}'; known: {string.Join(", ", Catalog.Select(c => c.Name))}");
                    if (optimizers.Distinct().Count() != optimizers.Count) throw new ArgumentException("--optimizers: an optimizer is named twice");
                    break;
                case "--steps":
                    steps = int.TryParse(Next(), NumberStyles.Integer, C, out var s) && s >= 1 ? s : throw new ArgumentException($"--steps: expected a positive integer, got '{args[i]}'");
                    break;
                case "--seed":
                    seed = long.TryParse(Next(), NumberStyles.Integer, C, out var sd) ? sd : throw new ArgumentException($"--seed: expected an integer, got '{args[i]}'");
                    break;
                case "--seeds":
                    seeds = int.TryParse(Next(), NumberStyles.Integer, C, out var n) && n >= 1 ? n : throw new ArgumentException($"--seeds: expected a positive integer (how many seeds), got '{args[i]}'");
                    seedsGiven = true;
                    break;
                case "--lrs":
                    var text = Next();
                    multipliers = text.Split(',', StringSplitOptions.TrimEntries).Select(m =>
                        double.TryParse(m, NumberStyles.Float, C, out var f) && double.IsFinite(f) && f > 0 ? f
                        : throw new ArgumentException($"--lrs: expected comma-separated positive multipliers of each optimizer's default rate, got '{m}' in '{text}'")).ToList();
                    if (multipliers.Distinct().Count() != multipliers.Count) throw new ArgumentException($"--lrs: a multiplier is given twice in '{text}'");
                    multipliers.Sort();
                    lrsGiven = true;
                    break;
                case "--quick": quick = true; break;
                case "--out": output = Next(); break;
                default: throw new ArgumentException($"compare: unknown option '{args[i]}'\n\n{Usage}");
            }
        }
        if (data is null && (target is not null || kind is not null || drop.Count > 0))
            throw new ArgumentException($"{(target is not null ? "--target" : kind is not null ? "--task-kind" : "--drop")} applies to a CSV task: give --data PATH.csv too");
        if (data is not null)
        {
            if (target is null) throw new ArgumentException("--data needs --target COLUMN (the column to predict)");
            var own = new CsvTask(data, target, kind, drop);
            if (!tasksGiven) tasks.Clear();
            if (tasks.Any(t => t.Name == own.Name))
                throw new ArgumentException($"--data: the file's task name '{own.Name}' is also a built-in task's; rename the file");
            tasks.Add(own);
            AnsiConsole.MarkupLine(Markup.Escape($"{own.Name}: {own.Description} ({own.KindReason})"));
        }
        if (tasks.Count == 0 || optimizers.Count == 0) throw new ArgumentException("compare: nothing to run (no task or no optimizer)");
        if (quick && (seedsGiven || lrsGiven)) throw new ArgumentException("compare: --quick runs one rate and one seed; it cannot be combined with --lrs or --seeds");
        if (quick) { multipliers = new List<double> { 1 }; seeds = 1; }

        var runs = (from t in tasks
                    from sd in Enumerable.Range(0, seeds).Select(k => seed + k)
                    from o in optimizers
                    from m in multipliers
                    select new Run(t, o, m, sd) { Total = steps ?? t.DefaultSteps, Lr = m * Catalog.Single(c => c.Name == o).Lr }).ToList();
        var clock = Stopwatch.StartNew();
        AnsiConsole.MarkupLine(quick
            ? $"[bold]lookahead compare --quick[/]: {runs.Count} runs ({string.Join(", ", tasks.Select(t => t.Name))} × {string.Join(", ", optimizers)}), each at its default rate, constant; seed {seed}"
            : $"[bold]lookahead compare[/]: {runs.Count} runs ({tasks.Count} tasks × {optimizers.Count} optimizers × {multipliers.Count} rates × {seeds} seeds), warm-up + cosine; seeds {seed}…{seed + seeds - 1}");
        if (quick)
        {
            var table = LiveTable(runs);
            AnsiConsole.Live(table).AutoClear(false).Start(ctx =>
            {
                foreach (var group in runs.GroupBy(r => (r.Task, r.Seed)))
                {
                    using (var scope = NewDisposeScope()) group.Key.Task.Prepare(group.Key.Seed);
                    foreach (var run in group)
                    {
                        Train(run, quick, () => { Refresh(table, runs); ctx.Refresh(); });
                        Refresh(table, runs);
                        ctx.Refresh();
                    }
                }
            });
        }
        else
        {
            // The default grid is extended past an edge (below); an explicit --lrs grid is run as given.
            int extended = 0;
            AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var bars = tasks.ToDictionary(t => t, t => ctx.AddTask(t.Name, maxValue: runs.Count(r => r.Task == t)));
                    var pending = runs.ToList();
                    for (int round = 0; pending.Count > 0; round++)
                    {
                        foreach (var group in pending.GroupBy(r => (r.Task, r.Seed)))
                        {
                            using (var scope = NewDisposeScope()) group.Key.Task.Prepare(group.Key.Seed);
                            foreach (var run in group)
                            {
                                bars[run.Task].Description = $"{run.Task.Name}: {run.Optimizer} lr {run.Lr.ToString("g3", C)} seed {run.Seed}";
                                Train(run, quick, () => { });
                                bars[run.Task].Increment(1);
                            }
                            bars[group.Key.Task].Description = group.Key.Task.Name;
                        }
                        pending = lrsGiven || round == MaxExtensions ? new List<Run>() : Extension(runs, seed, seeds);
                        runs.AddRange(pending);
                        extended += pending.Count;
                        foreach (var t in tasks) bars[t].MaxValue = runs.Count(r => r.Task == t);
                    }
                });
            if (extended > 0) AnsiConsole.MarkupLine($"{extended} more runs past the edges of the sweep, where an optimizer's best rate was the lowest or highest tried");
        }
        var results = (from t in tasks
                       from o in optimizers
                       let byRate = runs.Where(r => r.Task == t && r.Optimizer == o).Select(r => r.Multiplier).Distinct().OrderBy(m => m)
                           .Select(m => (Lr: m * Catalog.Single(c => c.Name == o).Lr, Runs: runs.Where(r => r.Task == t && r.Optimizer == o && r.Multiplier == m).ToArray())).ToList()
                       select new Result(t, o, byRate, BestIndex(byRate.Select(b => b.Runs).ToList()))).ToList();
        Directory.CreateDirectory(output);
        WriteCsv(Path.Combine(output, "losses.csv"), runs);
        WriteRunsCsv(Path.Combine(output, "runs.csv"), runs);
        foreach (var t in tasks)
        {
            var here = results.Where(r => r.Task == t).ToList();
            WritePng(Path.Combine(output, $"loss-{t.Name}.png"), t, here);
            if (!quick) WriteSensitivityPng(Path.Combine(output, $"lr-{t.Name}.png"), t, here);
        }
        WriteHtml(Path.Combine(output, "report.html"), tasks, results, seed, seeds, quick);
        File.WriteAllText(Path.Combine(output, "summary.md"), Markdown(results));
        AnsiConsole.WriteLine();
        AnsiConsole.Write(FinalTable(results));
        var files = new List<string> { "losses.csv", "runs.csv", "summary.md", "report.html" };
        files.AddRange(tasks.Select(t => $"loss-{t.Name}.png"));
        if (!quick) files.AddRange(tasks.Select(t => $"lr-{t.Name}.png"));
        AnsiConsole.MarkupLine($"wrote [bold]{Markup.Escape(Path.GetFullPath(output))}[/]: {string.Join(", ", files)} ({clock.Elapsed.TotalSeconds:0} s)");
        return 0;
    }

    /// <summary>How many times the default sweep is extended past an edge, half a decade each time (at most 1.5 decades further).</summary>
    public const int MaxExtensions = 3;

    /// <summary>
    /// The default grid's multiplier k half-decades from 1 (10^(k/2), to 3 significant digits: 0.1, 0.316, 1, 3.16, 10
    /// for k = −2…2, then 31.6, 100, 316, … and 0.0316, 0.01, …).
    /// </summary>
    public static double GridMultiplier(int k) => double.Parse(Math.Pow(10, k / 2.0).ToString("g3", C), C);

    /// <summary>
    /// New runs (every seed) one half-decade past the edge for each task and optimizer whose best rate so far is the
    /// lowest or the highest it was run at; none once every best rate is inside its sweep.
    /// </summary>
    static List<Run> Extension(List<Run> runs, long seed, int seeds)
    {
        var more = new List<Run>();
        foreach (var pair in runs.GroupBy(r => (r.Task, r.Optimizer)))
        {
            var byRate = pair.GroupBy(r => r.Multiplier).OrderBy(g => g.Key).Select(g => g.ToArray()).ToList();
            int best = BestIndex(byRate);
            if (byRate.Count < 2 || (best != 0 && best != byRate.Count - 1)) continue;
            int k = (int)Math.Round(2 * Math.Log10(byRate[best][0].Multiplier)) + (best == 0 ? -1 : 1);
            double m = GridMultiplier(k);
            var entry = Catalog.Single(c => c.Name == pair.Key.Optimizer);
            more.AddRange(Enumerable.Range(0, seeds).Select(j => new Run(pair.Key.Task, pair.Key.Optimizer, m, seed + j)
                { Total = byRate[best][0].Total, Lr = m * entry.Lr }));
        }
        return more;
    }

    /// <summary>The rate whose runs have the lowest mean final loss (a diverged run counts as +∞); the first such on ties.</summary>
    static int BestIndex(IReadOnlyList<Run[]> byRate)
    {
        int best = 0;
        for (int k = 1; k < byRate.Count; k++)
            if (MeanFinal(byRate[k]) < MeanFinal(byRate[best])) best = k;
        return best;
    }

    static double MeanFinal(Run[] runs) => runs.Average(r => r.Final);

    static (double Mean, double Sd) Spread(IEnumerable<double> values)
    {
        var v = values.ToArray();
        double mean = v.Average();
        double sd = v.Length < 2 ? 0 : Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1));
        return (mean, sd);
    }

    static string MeanSd(IEnumerable<double> values, string format)
    {
        var v = values.ToArray();
        if (v.Any(x => !double.IsFinite(x))) return v.All(x => !double.IsFinite(x)) ? "diverged" : $"diverged in {v.Count(x => !double.IsFinite(x))}/{v.Length}";
        var (mean, sd) = Spread(v);
        return $"{mean.ToString(format, C)} ± {sd.ToString(format, C)}";
    }

    static string StepsToTarget(Run[] runs)
    {
        var reached = runs.Where(r => r.StepsToTarget is not null).Select(r => r.StepsToTarget!.Value).OrderBy(x => x).ToArray();
        if (reached.Length == 0) return $"— (0/{runs.Length})";
        double median = reached.Length % 2 == 1 ? reached[reached.Length / 2] : (reached[reached.Length / 2 - 1] + reached[reached.Length / 2]) / 2.0;
        return $"{median.ToString("0.#", C)} ({reached.Length}/{runs.Length})";
    }

    static void Train(Run run, bool quick, Action progress)
    {
        using var scope = NewDisposeScope();
        manual_seed(run.Seed + 1);
        var model = run.Task.Model();
        var entry = Catalog.Single(c => c.Name == run.Optimizer);
        int total = run.Total;
        // The sweep's schedule: the optimizer rebuilt at each step with the step's rate (the state carries over).
        var tx = quick || entry.OwnSchedule
            ? entry.Make(run.Task, run.Lr, total)
            : Transforms.Scheduled(t => entry.Make(run.Task, run.Lr * WarmupCosine(t, total), total), "warmup_cosine");
        using var runner = new Runner(tx, model);
        var clock = new Stopwatch();
        for (int step = 1; step <= run.Total; step++)
        {
            using var stepScope = NewDisposeScope();
            clock.Start();
            runner.ZeroGrad();
            var loss = run.Task.Loss(model);
            loss.backward();
            double value = loss.item<float>();
            if (!double.IsFinite(value)) { run.Diverged = true; clock.Stop(); break; }
            runner.Step(StepContext.Empty.WithLoss(value));
            clock.Stop();
            run.Losses.Add(value);
            if (run.StepsToTarget is null && value <= run.Task.TargetFraction * run.Losses[0]) run.StepsToTarget = step;
            if (step % 25 == 0) progress();
        }
        run.MsPerStep = clock.Elapsed.TotalMilliseconds / Math.Max(1, run.Losses.Count);
        // Schedule-Free trains at y and is evaluated at its average x (likewise a parameter average).
        if (Evaluation.Defined(tx)) runner.UseEvaluationParameters();
        (run.MetricName, run.Metric) = run.Task.Metric(model);
        if (run.Diverged) run.Metric = double.NaN;
    }

    static Table LiveTable(List<Run> runs)
    {
        var t = new Table().Border(TableBorder.Rounded).Title("training");
        foreach (var h in new[] { "task", "optimizer", "progress", "loss", "metric", "steps to target", "ms/step" }) t.AddColumn(h);
        foreach (var r in runs) t.AddRow(r.Task.Name, r.Optimizer, "", "", "", "", "");
        return t;
    }

    static string Bar(Run r)
    {
        int done = r.Losses.Count, width = 20;
        int filled = r.Total == 0 ? 0 : done * width / r.Total;
        return (r.Diverged ? "[red]" : "[green]") + new string('█', filled) + "[/][grey]" + new string('░', width - filled) + $"[/] {done}/{r.Total}";
    }

    static void Refresh(Table table, List<Run> runs)
    {
        for (int i = 0; i < runs.Count; i++)
        {
            var r = runs[i];
            table.UpdateCell(i, 2, new Markup(Bar(r)));
            table.UpdateCell(i, 3, r.Losses.Count == 0 ? "" : r.Losses[^1].ToString("0.0000", C));
            table.UpdateCell(i, 4, double.IsNaN(r.Metric) ? "" : $"{r.MetricName} {r.Metric.ToString("0.000", C)}");
            table.UpdateCell(i, 5, r.StepsToTarget?.ToString(C) ?? "");
            table.UpdateCell(i, 6, double.IsNaN(r.MsPerStep) ? "" : r.MsPerStep.ToString("0.00", C));
        }
    }

    static Table FinalTable(List<Result> results)
    {
        var t = new Table().Border(TableBorder.Rounded).Title("results (at each optimizer's best rate; mean ± sd over seeds)");
        foreach (var h in new[] { "task", "optimizer", "best lr", "final loss", "metric", "steps to target", "ms/step" }) t.AddColumn(h);
        foreach (var r in results)
            t.AddRow(r.Task.Name, r.Optimizer, r.BestLrText, Markup.Escape(MeanSd(r.BestRuns.Select(x => x.Final), "0.0000")),
                Markup.Escape(MetricText(r.BestRuns)), Markup.Escape(StepsToTarget(r.BestRuns)),
                r.BestRuns.Average(x => x.MsPerStep).ToString("0.00", C));
        return t;
    }

    static string MetricText(Run[] runs) => $"{runs[0].MetricName} {MeanSd(runs.Select(x => x.Metric), "0.000")}".Replace("diverged", "—");

    // The files hold no timings, so that two runs on one machine write the same bytes.
    static string Markdown(List<Result> results)
    {
        var sb = new StringBuilder("| task | optimizer | best lr | final loss | metric | steps to target |\n|---|---|---|---|---|---|\n");
        foreach (var r in results)
            sb.Append(C, $"| {r.Task.Name} | {r.Optimizer} | {r.BestLrText} | {MeanSd(r.BestRuns.Select(x => x.Final), "0.0000")} | {MetricText(r.BestRuns)} | {StepsToTarget(r.BestRuns)} |\n");
        return sb.ToString();
    }

    static void WriteCsv(string path, List<Run> runs)
    {
        var sb = new StringBuilder("task,optimizer,lr,seed,step,loss\n");
        foreach (var r in runs)
            for (int k = 0; k < r.Losses.Count; k++) sb.Append(C, $"{r.Task.Name},{r.Optimizer},{r.Lr.ToString("R", C)},{r.Seed},{k + 1},{r.Losses[k].ToString("R", C)}\n");
        File.WriteAllText(path, sb.ToString());
    }

    static void WriteRunsCsv(string path, List<Run> runs)
    {
        var sb = new StringBuilder("task,optimizer,lr,seed,steps,final_loss,metric_name,metric,steps_to_target,diverged\n");
        foreach (var r in runs)
            sb.Append(C, $"{r.Task.Name},{r.Optimizer},{r.Lr.ToString("R", C)},{r.Seed},{r.Losses.Count},{(r.Diverged ? "" : r.Final.ToString("R", C))},{r.MetricName},{(double.IsNaN(r.Metric) ? "" : r.Metric.ToString("R", C))},{r.StepsToTarget?.ToString(C) ?? ""},{(r.Diverged ? "true" : "false")}\n");
        File.WriteAllText(path, sb.ToString());
    }

    /// <summary>The mean loss per step over runs that did not diverge (shortest length when lengths differ).</summary>
    static double[] MeanCurve(Run[] runs)
    {
        var ok = runs.Where(r => !r.Diverged && r.Losses.Count > 0).ToArray();
        if (ok.Length == 0) return Array.Empty<double>();
        int n = ok.Min(r => r.Losses.Count);
        return Enumerable.Range(0, n).Select(k => ok.Average(r => r.Losses[k])).ToArray();
    }

    static double Log(double x) => Math.Log10(Math.Max(x, 1e-12));

    static void WritePng(string path, CompareTask task, List<Result> results)
    {
        using var plot = new ScottPlot.Plot();
        foreach (var r in results)
        {
            var curve = MeanCurve(r.BestRuns);
            if (curve.Length == 0) continue;
            var line = plot.Add.ScatterLine(Enumerable.Range(1, curve.Length).Select(i => (double)i).ToArray(), curve.Select(Log).ToArray());
            line.LegendText = $"{r.Optimizer} (lr {r.BestLr.ToString("g3", C)})";
            line.Color = ScottPlot.Color.FromHex(Colours[results.IndexOf(r) % Colours.Length]);
            line.LineWidth = 2;
        }
        plot.Title($"{task.Name}: training loss at each optimizer's best rate (mean over seeds)");
        plot.XLabel("step");
        plot.YLabel("log10 training loss");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        plot.SavePng(path, 1000, 600);
    }

    /// <summary>Per rate of one optimizer: log10 of the mean, lowest and highest final loss over seeds; rates where a run diverged are left out.</summary>
    static (double[] X, double[] Mean, double[] Low, double[] High) Sensitivity(Result r)
    {
        var kept = r.ByRate.Where(b => b.Runs.All(x => !x.Diverged)).ToArray();
        return (kept.Select(b => Math.Log10(b.Lr)).ToArray(), kept.Select(b => Log(b.Runs.Average(x => x.Final))).ToArray(),
            kept.Select(b => Log(b.Runs.Min(x => x.Final))).ToArray(), kept.Select(b => Log(b.Runs.Max(x => x.Final))).ToArray());
    }

    static void WriteSensitivityPng(string path, CompareTask task, List<Result> results)
    {
        using var plot = new ScottPlot.Plot();
        foreach (var r in results)
        {
            var (x, mean, low, high) = Sensitivity(r);
            if (x.Length == 0) continue;
            var line = plot.Add.ScatterLine(x, mean);
            line.LegendText = r.Optimizer;
            // One colour per optimizer, the same as in the loss plot (the bands would otherwise advance the palette).
            line.Color = ScottPlot.Color.FromHex(Colours[results.IndexOf(r) % Colours.Length]);
            line.LineWidth = 2;
            line.MarkerSize = 6;
            if (x.Length > 1)
            {
                var band = plot.Add.FillY(x, low, high);
                band.FillColor = line.Color.WithAlpha(0.2);
                band.LineWidth = 0;
            }
        }
        plot.Title($"{task.Name}: final loss against the learning rate (mean; band: best to worst seed; diverged rates left out)");
        plot.XLabel("log10 learning rate");
        plot.YLabel("log10 final training loss");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        plot.SavePng(path, 1000, 600);
    }

    static readonly string[] Colours = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939" };

    /// <summary>An SVG chart of lines (and optional bands) in data coordinates.</summary>
    static void Svg(StringBuilder sb, string xLabel, string yLabel, IReadOnlyList<(string Name, double[] X, double[] Y, double[]? Low, double[]? High)> series)
    {
        const int w = 900, h = 400, pad = 50;
        var all = series.Where(s => s.X.Length > 0).ToList();
        if (all.Count == 0) return;
        double x0 = all.Min(s => s.X.Min()), x1 = all.Max(s => s.X.Max());
        double y0 = all.Min(s => (s.Low ?? s.Y).Min()), y1 = all.Max(s => (s.High ?? s.Y).Max());
        if (x1 - x0 < 1e-9) x1 = x0 + 1;
        if (y1 - y0 < 1e-9) y1 = y0 + 1;
        string P(double x, double y) => string.Create(C, $"{pad + (w - 2 * pad) * (x - x0) / (x1 - x0):0.#},{h - pad - (h - 2 * pad) * (y - y0) / (y1 - y0):0.#}");
        sb.Append(C, $"<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">");
        sb.Append(C, $"<text x=\"{pad}\" y=\"{h - 10}\" font-size=\"12\">{xLabel} {x0:0.##} … {x1:0.##}</text><text x=\"5\" y=\"{pad - 10}\" font-size=\"12\">{yLabel} {y1:0.00}</text><text x=\"5\" y=\"{h - pad + 15}\" font-size=\"12\">{y0:0.00}</text>");
        for (int i = 0; i < series.Count; i++)
        {
            var s = series[i];
            if (s.X.Length == 0) continue;
            string colour = Colours[i % Colours.Length];
            if (s.Low is { } lo && s.High is { } hi && s.X.Length > 1)
            {
                var ring = s.X.Select((x, k) => P(x, hi[k])).Concat(s.X.Select((x, k) => P(x, lo[k])).Reverse());
                sb.Append(C, $"<polygon fill=\"{colour}\" fill-opacity=\"0.15\" stroke=\"none\" points=\"{string.Join(" ", ring)}\"/>");
            }
            sb.Append(C, $"<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{string.Join(" ", s.X.Select((x, k) => P(x, s.Y[k])))}\"><title>{System.Net.WebUtility.HtmlEncode(s.Name)}</title></polyline>");
            sb.Append(C, $"<text x=\"{w - pad - 150}\" y=\"{pad + 16 * i}\" font-size=\"13\" fill=\"{colour}\">{System.Net.WebUtility.HtmlEncode(s.Name)}</text>");
        }
        sb.Append("</svg>");
    }

    static void WriteHtml(string path, List<CompareTask> tasks, List<Result> results, long seed, int seeds, bool quick)
    {
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>lookahead compare</title><style>body{font-family:sans-serif;margin:2em}svg{background:#fafafa;border:1px solid #ddd}td,th{padding:2px 8px;text-align:right}</style></head><body>");
        sb.Append(C, $"<h1>lookahead compare</h1><p>{(quick ? $"quick run: each optimizer at its default rate, constant, seed {seed}" : $"learning-rate sweep × seeds {seed}…{seed + seeds - 1}, warm-up + cosine; curves at each optimizer's best rate, mean over seeds")}. Hover a line for its optimizer.</p>");
        foreach (var task in tasks)
        {
            var here = results.Where(r => r.Task == task).ToList();
            sb.Append(C, $"<h2>{task.Name}</h2><p>{System.Net.WebUtility.HtmlEncode(task.Description)}</p><h3>training loss</h3>");
            Svg(sb, "step", "log10 loss", here.Select(r => { var c = MeanCurve(r.BestRuns); return ($"{r.Optimizer} (lr {r.BestLr.ToString("g3", C)})", Enumerable.Range(1, c.Length).Select(i => (double)i).ToArray(), c.Select(Log).ToArray(), (double[]?)null, (double[]?)null); }).ToList());
            if (!quick)
            {
                sb.Append("<h3>learning-rate sensitivity</h3><p>final loss against the rate: mean over seeds, band from the best to the worst seed; rates where a run diverged are left out.</p>");
                Svg(sb, "log10 lr", "log10 final loss", here.Select(r => { var (x, m, lo, hi) = Sensitivity(r); return (r.Optimizer, x, m, (double[]?)lo, (double[]?)hi); }).ToList());
            }
        }
        sb.Append("<h2>results</h2><table><tr><th>task</th><th>optimizer</th><th>best lr</th><th>final loss</th><th>metric</th><th>steps to target</th></tr>");
        foreach (var r in results)
            sb.Append(C, $"<tr><td>{r.Task.Name}</td><td>{r.Optimizer}</td><td>{r.BestLrText}</td><td>{MeanSd(r.BestRuns.Select(x => x.Final), "0.0000")}</td><td>{System.Net.WebUtility.HtmlEncode(MetricText(r.BestRuns))}</td><td>{StepsToTarget(r.BestRuns)}</td></tr>");
        sb.Append("</table></body></html>");
        File.WriteAllText(path, sb.ToString());
    }
}
