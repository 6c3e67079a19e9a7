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

    /// <summary>The optimizers compare knows: name, description, factory for a task.</summary>
    public static readonly (string Name, string Description, Func<CompareTask, IGradientTransformation> Make)[] Catalog =
    {
        ("sgd", "SGD, momentum 0.9, lr 0.05", _ => Optim.Sgd(0.05, 0.9)),
        ("adam", "Adam, lr 3e-3", _ => Optim.Adam(3e-3)),
        ("adamw", "AdamW, lr 3e-3, weight decay 0.01", _ => Optim.AdamW(3e-3, weightDecay: 0.01)),
        ("mars", "MARS-AdamW, lr 3e-3, γ 0.025", _ => Optim.Mars(3e-3)),
        ("muon", "Muon (lr 0.02) on hidden matrices, AdamW (3e-3) on the rest", t => Optim.MuonWithAuxAdam(Optim.Muon(0.02), adamLr: 3e-3, isMuonParameter: t.HiddenMatrices)),
        ("mars-m", "MARS-M (lr 3e-3) on hidden matrices, AdamW on the rest", t => Optim.MarsM(3e-3, weightDecay: 0.01, isMatrixParameter: t.HiddenMatrices)),
        ("momo-adam", "MoMo-Adam, lr 1e-2 (Polyak-capped)", _ => Optim.MomoAdam(1e-2)),
        ("arsg", "ARSG, lr 3e-3, μ 0.1", _ => Optim.Arsg(3e-3)),
        ("momo", "MoMo, lr 1", _ => Optim.Momo(1.0)),
        ("nadam", "NAdam, lr 3e-3", _ => Optim.NAdam(3e-3)),
        ("lion", "Lion, lr 3e-4", _ => Optim.Lion(3e-4)),
        ("qhm", "QHM, lr 0.5, β 0.9, ν 0.7", _ => Optim.Qhm(0.5, 0.9, 0.7)),
        ("sf-adamw", "Schedule-Free AdamW, lr 3e-3 (metric at the average x)", _ => Optim.ScheduleFreeAdamW(3e-3)),
        ("ademamix", "AdEMAMix, lr 3e-3, α 5 warmed up over the run's first 100 steps", _ => Optim.AdEMAMix(3e-3, alpha: 5, alphaWarmup: 100, beta3Warmup: 100)),
        ("adopt", "ADOPT, lr 3e-3", _ => Optim.Adopt(3e-3)),
        ("c-adamw", "C-AdamW, lr 3e-3, weight decay 0.01", _ => Optim.CautiousAdamW(3e-3, weightDecay: 0.01)),
        ("prodigy", "Prodigy (lr 1: the step size is estimated)", _ => Optim.Prodigy()),
        ("soap", "SOAP, lr 3e-3, bases refreshed every 10 steps", _ => Optim.Soap(3e-3)),
    };

    /// <summary>The default selection.</summary>
    public static readonly string[] Defaults = { "sgd", "adam", "adamw", "mars", "muon", "momo-adam", "arsg" };

    /// <summary>The usage text.</summary>
    public static string Usage =>
        "Usage: lookahead compare [--task NAMES] [--optimizers NAMES] [--steps N] [--seed N] [--out DIR]\n\n" +
        "Trains built-in tasks on generated data with several optimizers and compares them: live table, final table,\n" +
        "loss curves as PNG (one per task) and HTML, losses as CSV. Seeded and deterministic; no download.\n" +
        "'Steps to target' is the first step whose loss is at most a fraction of the first step's loss\n" +
        "(logistic 0.9, mlp and modadd 0.1).\n\n" +
        "  --task NAMES        comma-separated tasks; default all:\n" +
        string.Concat(CompareTask.All.Select(t => $"                        {t.Name,-10} {t.Description} ({t.DefaultSteps} steps)\n")) +
        "  --optimizers NAMES  comma-separated; default " + string.Join(",", Defaults) + ". Known:\n" +
        string.Concat(Catalog.Select(c => $"                        {c.Name,-10} {c.Description}\n")) +
        "  --steps N           steps per run (default: each task's own)\n" +
        "  --seed N            seed of data and initialisation (default 1)\n" +
        "  --out DIR           output folder (default ./lookahead-compare)\n";

    sealed record Run(CompareTask Task, string Optimizer)
    {
        public List<double> Losses { get; } = new();
        public int? StepsToTarget { get; set; }
        public string MetricName { get; set; } = "";
        public double Metric { get; set; } = double.NaN;
        public double MsPerStep { get; set; } = double.NaN;
        public bool Diverged { get; set; }
        public int Total { get; set; }
    }

    /// <summary>Runs the command with its arguments; returns the exit code.</summary>
    public static int Execute(string[] args)
    {
        var tasks = CompareTask.All.ToList();
        var optimizers = Defaults.ToList();
        int? steps = null;
        long seed = 1;
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
                    break;
                case "--optimizers":
                    optimizers = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
                    foreach (var o in optimizers)
                        if (!Catalog.Any(c => c.Name == o)) throw new ArgumentException($"--optimizers: unknown optimizer '{o}'; known: {string.Join(", ", Catalog.Select(c => c.Name))}");
                    break;
                case "--steps":
                    steps = int.TryParse(Next(), NumberStyles.Integer, C, out var s) && s >= 1 ? s : throw new ArgumentException($"--steps: expected a positive integer, got '{args[i]}'");
                    break;
                case "--seed":
                    seed = long.TryParse(Next(), NumberStyles.Integer, C, out var sd) ? sd : throw new ArgumentException($"--seed: expected an integer, got '{args[i]}'");
                    break;
                case "--out": output = Next(); break;
                default: throw new ArgumentException($"compare: unknown option '{args[i]}'\n\n{Usage}");
            }
        }
        if (tasks.Count == 0 || optimizers.Count == 0) throw new ArgumentException("compare: nothing to run (no task or no optimizer)");

        var runs = tasks.SelectMany(t => optimizers.Select(o => new Run(t, o) { Total = steps ?? t.DefaultSteps })).ToList();
        var clock = Stopwatch.StartNew();
        AnsiConsole.MarkupLine($"[bold]lookahead compare[/]: {runs.Count} runs ({string.Join(", ", tasks.Select(t => t.Name))} × {string.Join(", ", optimizers)}), seed {seed}");
        var table = LiveTable(runs);
        AnsiConsole.Live(table).AutoClear(false).Start(ctx =>
        {
            foreach (var group in runs.GroupBy(r => r.Task))
            {
                using (var scope = NewDisposeScope()) group.Key.Prepare(seed);
                foreach (var run in group)
                {
                    Train(run, seed, () => { Refresh(table, runs); ctx.Refresh(); });
                    Refresh(table, runs);
                    ctx.Refresh();
                }
            }
        });
        Directory.CreateDirectory(output);
        WriteCsv(Path.Combine(output, "losses.csv"), runs);
        foreach (var t in tasks) WritePng(Path.Combine(output, $"loss-{t.Name}.png"), t, runs.Where(r => r.Task == t).ToList());
        WriteHtml(Path.Combine(output, "report.html"), tasks, runs, seed);
        File.WriteAllText(Path.Combine(output, "summary.md"), Markdown(runs));
        AnsiConsole.WriteLine();
        AnsiConsole.Write(FinalTable(runs));
        AnsiConsole.MarkupLine($"wrote [bold]{Markup.Escape(Path.GetFullPath(output))}[/]: losses.csv, summary.md, report.html, {string.Join(", ", tasks.Select(t => $"loss-{t.Name}.png"))} ({clock.Elapsed.TotalSeconds:0} s)");
        return 0;
    }

    static void Train(Run run, long seed, Action progress)
    {
        using var scope = NewDisposeScope();
        manual_seed(seed + 1);
        var model = run.Task.Model();
        var tx = Catalog.Single(c => c.Name == run.Optimizer).Make(run.Task);
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

    static Table FinalTable(List<Run> runs)
    {
        var t = new Table().Border(TableBorder.Rounded).Title("results");
        foreach (var h in new[] { "task", "optimizer", "final loss", "best loss", "metric", "steps to target", "ms/step" }) t.AddColumn(h);
        foreach (var r in runs)
            t.AddRow(r.Task.Name, r.Optimizer,
                r.Diverged ? "[red]diverged[/]" : r.Losses[^1].ToString("0.0000", C),
                r.Losses.Count == 0 ? "" : r.Losses.Min().ToString("0.0000", C),
                double.IsNaN(r.Metric) ? "" : $"{r.MetricName} {r.Metric.ToString("0.000", C)}",
                r.StepsToTarget?.ToString(C) ?? $"— (> {r.Total})",
                r.MsPerStep.ToString("0.00", C));
        return t;
    }

    static string Markdown(List<Run> runs)
    {
        var sb = new StringBuilder("| task | optimizer | final loss | best loss | metric | steps to target | ms/step |\n|---|---|---|---|---|---|---|\n");
        foreach (var r in runs)
            sb.Append(C, $"| {r.Task.Name} | {r.Optimizer} | {(r.Diverged ? "diverged" : r.Losses[^1].ToString("0.0000", C))} | {(r.Losses.Count == 0 ? "" : r.Losses.Min().ToString("0.0000", C))} | {r.MetricName} {r.Metric.ToString("0.000", C)} | {(r.StepsToTarget?.ToString(C) ?? $"— (> {r.Total})")} | {r.MsPerStep.ToString("0.00", C)} |\n");
        return sb.ToString();
    }

    static void WriteCsv(string path, List<Run> runs)
    {
        var sb = new StringBuilder("task,optimizer,step,loss\n");
        foreach (var r in runs)
            for (int k = 0; k < r.Losses.Count; k++) sb.Append(C, $"{r.Task.Name},{r.Optimizer},{k + 1},{r.Losses[k].ToString("R", C)}\n");
        File.WriteAllText(path, sb.ToString());
    }

    static void WritePng(string path, CompareTask task, List<Run> runs)
    {
        using var plot = new ScottPlot.Plot();
        foreach (var r in runs.Where(r => r.Losses.Count > 0))
        {
            var xs = Enumerable.Range(1, r.Losses.Count).Select(i => (double)i).ToArray();
            var ys = r.Losses.Select(l => Math.Log10(Math.Max(l, 1e-12))).ToArray();
            var line = plot.Add.ScatterLine(xs, ys);
            line.LegendText = r.Optimizer;
            line.LineWidth = 2;
        }
        plot.Title($"{task.Name}: training loss");
        plot.XLabel("step");
        plot.YLabel("log10 training loss");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        plot.SavePng(path, 1000, 600);
    }

    static void WriteHtml(string path, List<CompareTask> tasks, List<Run> runs, long seed)
    {
        string[] colours = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939" };
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>lookahead compare</title><style>body{font-family:sans-serif;margin:2em}svg{background:#fafafa;border:1px solid #ddd}td,th{padding:2px 8px;text-align:right}</style></head><body>");
        sb.Append(C, $"<h1>lookahead compare</h1><p>seed {seed}; training loss per step (log scale). Hover a line for its optimizer.</p>");
        foreach (var task in tasks)
        {
            var rs = runs.Where(r => r.Task == task && r.Losses.Count > 0).ToList();
            if (rs.Count == 0) continue;
            double lo = rs.Min(r => Math.Log10(Math.Max(r.Losses.Min(), 1e-12))), hi = rs.Max(r => Math.Log10(Math.Max(r.Losses.Max(), 1e-12)));
            if (hi - lo < 1e-9) hi = lo + 1;
            int n = rs.Max(r => r.Losses.Count);
            const int w = 900, h = 400, pad = 50;
            sb.Append(C, $"<h2>{task.Name}</h2><p>{System.Net.WebUtility.HtmlEncode(task.Description)}</p><svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">");
            sb.Append(C, $"<text x=\"{pad}\" y=\"{h - 10}\" font-size=\"12\">step 1 … {n}</text><text x=\"5\" y=\"{pad - 10}\" font-size=\"12\">log10 loss {hi:0.00}</text><text x=\"5\" y=\"{h - pad + 15}\" font-size=\"12\">{lo:0.00}</text>");
            for (int i = 0; i < rs.Count; i++)
            {
                var pts = rs[i].Losses.Select((l, k) => string.Create(C, $"{pad + (w - 2 * pad) * (n == 1 ? 0 : k / (double)(n - 1)):0.#},{h - pad - (h - 2 * pad) * (Math.Log10(Math.Max(l, 1e-12)) - lo) / (hi - lo):0.#}"));
                string colour = colours[i % colours.Length];
                sb.Append(C, $"<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{string.Join(" ", pts)}\"><title>{rs[i].Optimizer}</title></polyline>");
                sb.Append(C, $"<text x=\"{w - pad - 90}\" y=\"{pad + 16 * i}\" font-size=\"13\" fill=\"{colour}\">{rs[i].Optimizer}</text>");
            }
            sb.Append("</svg>");
        }
        sb.Append("<h2>results</h2><table><tr><th>task</th><th>optimizer</th><th>final loss</th><th>metric</th><th>steps to target</th><th>ms/step</th></tr>");
        foreach (var r in runs)
            sb.Append(C, $"<tr><td>{r.Task.Name}</td><td>{r.Optimizer}</td><td>{(r.Diverged ? "diverged" : r.Losses[^1].ToString("0.0000", C))}</td><td>{System.Net.WebUtility.HtmlEncode(r.MetricName)} {r.Metric.ToString("0.000", C)}</td><td>{r.StepsToTarget?.ToString(C) ?? "—"}</td><td>{r.MsPerStep.ToString("0.00", C)}</td></tr>");
        sb.Append("</table></body></html>");
        File.WriteAllText(path, sb.ToString());
    }
}
