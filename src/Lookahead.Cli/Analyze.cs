using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;

namespace Lookahead.Cli;

/// <summary>
/// <c>lookahead analyze</c>: optimizers as linear dynamical systems. For each spec: linear, time-varying or not
/// linear (and why), the order, the stability interval and the worst and best rate over the curvatures asked for,
/// from the optimizer's own realisation (<see cref="Analysis"/>); optionally the error-variance limit, a JSON file
/// and plots. With <c>--equals</c>, decides whether two optimizers are the same algorithm, or solves for the free
/// argument that makes them so.
/// </summary>
public static class Analyze
{
    static readonly CultureInfo C = CultureInfo.InvariantCulture;

    /// <summary>The usage text.</summary>
    public static string Usage =>
        "Usage: lookahead analyze SPEC [SPEC...] [--curvature FROM:TO:N[:log]] [--noise] [--json PATH] [--out DIR]\n" +
        "       lookahead analyze SPEC --equals SPEC\n\n" +
        "Optimizers that are linear in their gradients as linear dynamical systems, from their own update (probed on one\n" +
        "scalar parameter): on f(θ) = ½λθ² the gain factor r_g(λ) (the spectral radius of the closed-loop gain matrix:\n" +
        "the contraction per step), the stability interval, the worst and best rate over the curvatures, and with --noise\n" +
        "the error-variance limit l_Var(λ) = lim Var(θ)/σ² for gradients λ(θ + δ), δ ~ N(0, σ²) (the ARSG paper's eq. 15).\n\n" +
        "  SPEC                 NAME[:ARG=VALUE,...][@MU]: an Optim factory (case-insensitive; underscores optional) and\n" +
        "                       its arguments by name, e.g. rsg:lr=1,momentum=0.999,mu=0.1 or heavy_ball:lr=0.1,momentum=0.9;\n" +
        "                       @MU evaluates the gradient at θ + MU·v (v the last update). Unknown names and arguments\n" +
        "                       are errors that list the valid ones.\n" +
        "  --curvature F:T:N    N curvatures from F to T, evenly spaced (default 1e-4:10:121:log); ':log' spaces them\n" +
        "                       geometrically (F, T > 0). Curvatures may be negative (non-convex directions).\n" +
        "  --noise              also print the error-variance limit (the JSON always has it)\n" +
        "  --json PATH          write {\"optimizers\":[{\"spec\",\"linear\",\"order\",\"curvature\",\"gain_factor\",\"variance_limit\"}]}\n" +
        "                       (null where the limit does not exist: r_g ≥ 1)\n" +
        "  --out DIR            write analyze.png (r_g, and l_Var with --noise) and analyze.html\n" +
        "  --equals SPEC        decide whether the first SPEC and this one are the same algorithm (the same points for every\n" +
        "                       start and gradient sequence); prints the first differing response otherwise. One argument of\n" +
        "                       this SPEC may be ARG=?LOW:HIGH: then the values in [LOW, HIGH] that make them equal are solved.\n" +
        "                       Exit code 0 equal (or a value found), 1 not equal (or none found), 2 bad input or not linear.\n\n" +
        "Optimizers: " + string.Join(", ", OptimizerSpec.Names) + "\n";

    /// <summary>Runs the verb; returns the exit code. Bad input throws <see cref="ArgumentException"/>.</summary>
    public static int Execute(string[] args, TextWriter output)
    {
        if (args.Length == 0 || args.Any(a => a is "--help" or "-h"))
        {
            output.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        var specs = new List<string>();
        string curvature = "1e-4:10:121:log";
        string? json = null, outDir = null, equals = null;
        bool noise = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Value(string option) => i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal)
                ? args[++i] : throw new ArgumentException($"{option} needs a value");
            switch (args[i])
            {
                case "--curvature": curvature = Value("--curvature"); break;
                case "--json": json = Value("--json"); break;
                case "--out": outDir = Value("--out"); break;
                case "--equals": equals = Value("--equals"); break;
                case "--noise": noise = true; break;
                default:
                    if (args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unknown option '{args[i]}'; see 'lookahead analyze --help'");
                    specs.Add(args[i]);
                    break;
            }
        }
        if (specs.Count == 0) throw new ArgumentException("give at least one SPEC; see 'lookahead analyze --help'");
        var parsed = specs.Select(s => OptimizerSpec.Parse(s)).ToList();
        if (equals is not null)
        {
            if (parsed.Count != 1) throw new ArgumentException($"--equals compares one SPEC with another; got {parsed.Count} SPECs before it");
            return Decide(parsed[0], OptimizerSpec.Parse(equals, allowFree: true), output);
        }
        var lambdas = Curvatures(curvature);
        var results = parsed.Select(s => Describe(s, lambdas, noise, output)).ToList();
        if (json is not null)
        {
            WriteJson(json, results);
            output.WriteLine($"wrote {json}");
        }
        if (outDir is not null)
        {
            Directory.CreateDirectory(outDir);
            bool geometric = curvature.EndsWith(":log", StringComparison.OrdinalIgnoreCase);
            WritePng(Path.Combine(outDir, "analyze.png"), results, noise, geometric);
            WriteHtml(Path.Combine(outDir, "analyze.html"), results, noise, geometric);
            output.WriteLine($"wrote {Path.Combine(outDir, "analyze.png")} and analyze.html");
        }
        return 0;
    }

    /// <summary>One optimizer's analysis over the curvatures (empty arrays when not linear or time-varying).</summary>
    public sealed record Result(string Spec, string Name, bool Linear, int? Order, string Summary, double[] Curvature, double[] GainFactor, double[] VarianceLimit);

    /// <summary>Parses FROM:TO:N[:log].</summary>
    public static double[] Curvatures(string text)
    {
        var parts = text.Split(':');
        bool log = parts.Length == 4 && parts[3].Equals("log", StringComparison.OrdinalIgnoreCase);
        if (!(parts.Length == 3 || log)
            || !double.TryParse(parts[0], NumberStyles.Float, C, out double from) || !double.TryParse(parts[1], NumberStyles.Float, C, out double to)
            || !int.TryParse(parts[2], NumberStyles.Integer, C, out int n))
            throw new ArgumentException($"--curvature expects FROM:TO:N or FROM:TO:N:log (numbers, N an integer); got '{text}'");
        if (!double.IsFinite(from) || !double.IsFinite(to) || !(to > from)) throw new ArgumentException($"--curvature needs finite FROM < TO; got '{text}'");
        if (n < 2 || n > 100_000) throw new ArgumentException($"--curvature needs 2 ≤ N ≤ 100000 points; got {n}");
        if (log && !(from > 0)) throw new ArgumentException($"--curvature ':log' needs FROM > 0; got {from.ToString("R", C)}");
        return Enumerable.Range(0, n).Select(i => i == n - 1 ? to : log ? from * Math.Pow(to / from, (double)i / (n - 1)) : from + (to - from) * i / (n - 1)).ToArray();
    }

    static Result Describe(OptimizerSpec spec, double[] lambdas, bool noise, TextWriter output)
    {
        var form = spec.Build();
        var r = Analysis.Realise(form);
        output.WriteLine($"{spec.Text}  ({form.Transform.Name}{(form.Lookahead != 0 ? $", gradient at θ + {F(form.Lookahead)}·v" : "")})");
        if (!r.Linear)
        {
            output.WriteLine($"  not linear: {r.NotLinearBecause}");
            return new(spec.Text, form.Transform.Name, false, null, "not linear: " + r.NotLinearBecause, Array.Empty<double>(), Array.Empty<double>(), Array.Empty<double>());
        }
        string state = string.Join(", ", r.StateNames);
        if (!r.Settled)
        {
            string why = $"linear, time-varying over the {r.A.Count} steps probed (no single gain matrix), order {r.Order}";
            output.WriteLine($"  {why}; state {state}");
            return new(spec.Text, form.Transform.Name, true, r.Order, why, Array.Empty<double>(), Array.Empty<double>(), Array.Empty<double>());
        }
        var d = Analysis.Dynamics(form);
        string kind = r.TimeInvariant ? "linear, time-invariant" : $"linear, time-invariant from step {r.SettlesAt} (the first steps differ)";
        output.WriteLine($"  {kind}, order {r.Order}; state {state}");
        var (low, high) = d.StabilityInterval();
        output.WriteLine(double.IsNaN(low) ? "  stable for no positive curvature in [1e-12, 1e12]"
            : $"  stable for curvature λ in ({F(low)}, {(double.IsPositiveInfinity(high) ? "∞" : F(high))})");
        var (worst, worstAt) = d.WorstRate(lambdas[0], lambdas[^1]);
        var (best, bestAt) = d.BestRate(lambdas[0], lambdas[^1]);
        output.WriteLine($"  over λ ∈ [{F(lambdas[0])}, {F(lambdas[^1])}]: worst rate r_g = {F(worst)} at λ = {F(worstAt)}; best r_g = {F(best)} at λ = {F(bestAt)}");
        var gains = lambdas.Select(d.GainFactor).ToArray();
        var variances = lambdas.Select(d.VarianceLimit).ToArray();
        if (noise)
        {
            var finite = variances.Where(double.IsFinite).ToArray();
            output.WriteLine(finite.Length == 0 ? "  error-variance limit: none (unstable at every curvature)"
                : $"  error-variance limit l_Var from {F(finite.Min())} to {F(finite.Max())} over the stable curvatures ({finite.Length} of {lambdas.Length})");
        }
        return new(spec.Text, form.Transform.Name, true, r.Order, $"{kind}, order {r.Order}", lambdas, gains, variances);
    }

    static int Decide(OptimizerSpec a, OptimizerSpec b, TextWriter output)
    {
        var fa = a.Build();
        Analysis.RequireLinear(fa, a.Text);
        if (b.Free is { } free)
        {
            var found = Analysis.SolveScalar(s => b.Build(s), fa, free.Low, free.High);
            if (found.Count == 0)
            {
                output.WriteLine($"no {free.Name} in [{F(free.Low)}, {F(free.High)}] makes {b.Text} the same algorithm as {a.Text}");
                return 1;
            }
            foreach (var s in found)
                output.WriteLine($"{free.Name} = {s.ToString("R", C)} makes {b.Text} the same algorithm as {a.Text} (decided exactly)");
            return 0;
        }
        var fb = b.Build();
        Analysis.RequireLinear(fb, b.Text);
        var e = Analysis.Equal(fa, fb);
        output.WriteLine(e.Equal ? $"equal: {a.Text} ≡ {b.Text} ({e.Reason})" : $"not equal: {e.FirstDifference}");
        return e.Equal ? 0 : 1;
    }

    static string F(double x) => x.ToString("g6", C);

    static void WriteJson(string path, List<Result> results)
    {
        using var stream = File.Create(path);
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteStartArray("optimizers");
        foreach (var r in results)
        {
            w.WriteStartObject();
            w.WriteString("spec", r.Spec);
            w.WriteString("name", r.Name);
            w.WriteBoolean("linear", r.Linear);
            if (r.Order is int o) w.WriteNumber("order", o); else w.WriteNull("order");
            w.WriteString("summary", r.Summary);
            Numbers(w, "curvature", r.Curvature);
            Numbers(w, "gain_factor", r.GainFactor);
            Numbers(w, "variance_limit", r.VarianceLimit);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    static void Numbers(Utf8JsonWriter w, string name, double[] values)
    {
        w.WriteStartArray(name);
        foreach (var v in values) if (double.IsFinite(v)) w.WriteNumberValue(v); else w.WriteNullValue();
        w.WriteEndArray();
    }

    static void WritePng(string path, List<Result> results, bool noise, bool geometric)
    {
        var plotted = results.Where(r => r.Curvature.Length > 0).ToList();
        int panels = noise ? 2 : 1;
        var gain = new ScottPlot.Plot();
        var variance = new ScottPlot.Plot();
        foreach (var r in plotted)
        {
            var xs = r.Curvature.Select(x => geometric ? Math.Log10(x) : x).ToArray();
            var line = gain.Add.ScatterLine(xs, r.GainFactor);
            line.LegendText = r.Spec;
            line.LineWidth = 2;
            if (noise)
            {
                var stable = Enumerable.Range(0, xs.Length).Where(i => double.IsFinite(r.VarianceLimit[i]) && r.VarianceLimit[i] > 0).ToArray();
                if (stable.Length > 0)
                {
                    var v = variance.Add.ScatterLine(stable.Select(i => xs[i]).ToArray(), stable.Select(i => Math.Log10(r.VarianceLimit[i])).ToArray());
                    v.LegendText = r.Spec;
                    v.LineWidth = 2;
                }
            }
        }
        string x = geometric ? "log10 curvature λ" : "curvature λ";
        gain.Title("gain factor r_g (contraction per step)");
        gain.XLabel(x);
        gain.YLabel("r_g");
        gain.ShowLegend(ScottPlot.Alignment.UpperRight);
        variance.Title("error-variance limit l_Var");
        variance.XLabel(x);
        variance.YLabel("log10 l_Var");
        variance.ShowLegend(ScottPlot.Alignment.UpperLeft);
        if (panels == 1) { gain.SavePng(path, 1000, 600); return; }
        // Two panels side by side in one image.
        var multiplot = new ScottPlot.Multiplot();
        ScottPlot.IMultiplotExtensions.Reset(multiplot, gain);
        ScottPlot.IMultiplotExtensions.AddPlot(multiplot, variance);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Columns();
        ScottPlot.IMultiplotExtensions.SavePng(multiplot, path, 1600, 600);
    }

    static void WriteHtml(string path, List<Result> results, bool noise, bool geometric)
    {
        string[] colours = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" };
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>lookahead analyze</title><style>body{font-family:sans-serif;margin:2em}svg{background:#fafafa;border:1px solid #ddd}</style></head><body><h1>lookahead analyze</h1><ul>");
        foreach (var r in results) sb.Append(C, $"<li><code>{Html(r.Spec)}</code>: {Html(r.Summary)}</li>");
        sb.Append("</ul>");
        var plotted = results.Where(r => r.Curvature.Length > 0).ToList();
        void Panel(string title, Func<Result, double[]> ys, bool logY)
        {
            const int w = 900, h = 400, pad = 50;
            double X(double l) => geometric ? Math.Log10(l) : l;
            double Y(double v) => logY ? Math.Log10(v) : v;
            var all = plotted.SelectMany(r => ys(r).Where(v => double.IsFinite(v) && (!logY || v > 0)).Select(Y)).ToArray();
            if (all.Length == 0) return;
            double x0 = X(plotted.Min(r => r.Curvature[0])), x1 = X(plotted.Max(r => r.Curvature[^1]));
            double y0 = all.Min(), y1 = all.Max();
            if (y1 - y0 < 1e-12) y1 = y0 + 1;
            sb.Append(C, $"<h2>{Html(title)}</h2><svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">");
            sb.Append(C, $"<text x=\"{pad}\" y=\"{h - 10}\" font-size=\"12\">{(geometric ? "log10 λ" : "λ")} {x0:g4} … {x1:g4}</text><text x=\"5\" y=\"{pad - 10}\" font-size=\"12\">{(logY ? "log10 " : "")}{y1:g4}</text><text x=\"5\" y=\"{h - pad + 15}\" font-size=\"12\">{y0:g4}</text>");
            for (int i = 0; i < plotted.Count; i++)
            {
                var r = plotted[i];
                var v = ys(r);
                var pts = Enumerable.Range(0, r.Curvature.Length).Where(k => double.IsFinite(v[k]) && (!logY || v[k] > 0))
                    .Select(k => string.Create(C, $"{pad + (w - 2 * pad) * (X(r.Curvature[k]) - x0) / (x1 - x0):0.#},{h - pad - (h - 2 * pad) * (Y(v[k]) - y0) / (y1 - y0):0.#}"));
                string colour = colours[i % colours.Length];
                sb.Append(C, $"<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{string.Join(" ", pts)}\"><title>{Html(r.Spec)}</title></polyline>");
                sb.Append(C, $"<text x=\"{w - pad - 300}\" y=\"{pad + 16 * i}\" font-size=\"13\" fill=\"{colour}\">{Html(r.Spec)}</text>");
            }
            sb.Append("</svg>");
        }
        Panel("gain factor r_g (contraction per step)", r => r.GainFactor, false);
        if (noise) Panel("error-variance limit l_Var", r => r.VarianceLimit, true);
        sb.Append("</body></html>");
        File.WriteAllText(path, sb.ToString());
    }

    static string Html(string s) => System.Net.WebUtility.HtmlEncode(s);
}
