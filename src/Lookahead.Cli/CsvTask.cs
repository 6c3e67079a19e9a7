using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Lookahead.Cli;

/// <summary>Whether a CSV task predicts a number or a class.</summary>
public enum CsvTaskKind
{
    /// <summary>Mean squared error on the standardised target; metric R² on the validation rows.</summary>
    Regression,
    /// <summary>Cross-entropy over the target's distinct values; metric accuracy on the validation rows.</summary>
    Classification,
}

/// <summary>
/// A <c>lookahead compare</c> task on the user's data (<c>--data PATH.csv --target COLUMN</c>). The file is read and
/// checked once, when the task is built: a header row of distinct column names, then one row per example with as
/// many comma-separated fields as the header (fields may be double-quoted; a quote inside is doubled; blank lines
/// are skipped). Every column but the target (and the dropped ones) is a feature and must hold finite numbers in
/// invariant notation (<c>1.5</c>, <c>-2e-3</c>); nothing is filled in or coerced: an empty cell, a word or a
/// NaN is an error naming the line and the column.
/// <para>
/// The kind is <see cref="CsvTaskKind.Classification"/> when the target holds a value that is not a number, or
/// only integers with at most <see cref="MaxInferredClasses"/> distinct values; otherwise regression. Each seed
/// shuffles the rows into 80 % training and 20 % validation rows, standardises the features (and a regression
/// target) with the training rows' mean and standard deviation, and trains an MLP (features → 64 → 64 → outputs,
/// tanh) full batch on the training rows; the metric is measured on the validation rows.
/// </para>
/// </summary>
public sealed class CsvTask : CompareTask
{
    /// <summary>The most distinct integer values a target may have and still be inferred as classes.</summary>
    public const int MaxInferredClasses = 20;
    const int Hidden = 64;

    readonly double[][] _features;          // rows × features, as read
    readonly double[] _numericTarget;       // regression: the target values
    readonly long[] _classIndex;            // classification: the index of each row's class in Classes
    Tensor _trainX = null!, _trainY = null!, _validX = null!, _validY = null!;
    double _validVariance;

    /// <summary>The file's name without folder or extension (the task's name in tables and file names).</summary>
    public override string Name { get; }
    /// <summary>One line: file, rows, features, kind.</summary>
    public override string Description { get; }
    /// <summary>300 steps.</summary>
    public override int DefaultSteps => 300;
    /// <summary>Regression 0.2 of the first loss (the standardised target's variance is 1), classification 0.5.</summary>
    public override double TargetFraction => Kind == CsvTaskKind.Regression ? 0.2 : 0.5;
    /// <summary>Muon-type optimizers treat the MLP's middle layer (64 × 64) as the hidden matrix.</summary>
    public override Func<ParameterInfo, bool> HiddenMatrices => p => p.Rank >= 2 && p.Name.StartsWith("2.", StringComparison.Ordinal);

    /// <summary>Regression or classification, as given or inferred.</summary>
    public CsvTaskKind Kind { get; }
    /// <summary>How the kind was decided, for the report.</summary>
    public string KindReason { get; }
    /// <summary>The target column's name.</summary>
    public string Target { get; }
    /// <summary>The feature columns' names, in file order.</summary>
    public IReadOnlyList<string> Features { get; }
    /// <summary>The classes (distinct target values, numerically ordered when they are numbers); empty for regression.</summary>
    public IReadOnlyList<string> Classes { get; }
    /// <summary>How many example rows the file holds.</summary>
    public int Rows => _features.Length;

    /// <summary>Reads and checks <paramref name="path"/>; throws <see cref="ArgumentException"/> naming the line and column of what is wrong.</summary>
    /// <param name="path">The CSV file.</param>
    /// <param name="target">The column to predict.</param>
    /// <param name="kind">Regression or classification; null to infer it from the target column.</param>
    /// <param name="drop">Columns to leave out (identifiers, text).</param>
    public CsvTask(string path, string target, CsvTaskKind? kind = null, IReadOnlyCollection<string>? drop = null)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new ArgumentException("--data: expected the path of a CSV file");
        if (string.IsNullOrWhiteSpace(target)) throw new ArgumentException("--target: expected the name of the column to predict");
        if (!File.Exists(path)) throw new ArgumentException($"--data: no such file '{path}'");
        drop ??= Array.Empty<string>();
        Name = TaskName(path);
        Target = target;

        using var reader = new StreamReader(path, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        int line = 0;
        string[]? header = null;
        var rows = new List<(int Line, string[] Fields)>();
        for (string? text; (text = reader.ReadLine()) is not null;)
        {
            line++;
            if (text.Trim().Length == 0) continue;
            var fields = Split(text, path, line);
            if (header is null)
            {
                header = fields.Select(f => f.Trim()).ToArray();
                for (int c = 0; c < header.Length; c++)
                {
                    if (header[c].Length == 0) throw new ArgumentException($"{path}: line {line} (the header), column {c + 1}: empty column name");
                    int first = Array.IndexOf(header, header[c]);
                    if (first < c) throw new ArgumentException($"{path}: line {line} (the header): column name '{header[c]}' appears twice (columns {first + 1} and {c + 1})");
                }
                continue;
            }
            if (fields.Length != header.Length)
                throw new ArgumentException($"{path}: line {line}: {fields.Length} fields, expected {header.Length} as in the header");
            rows.Add((line, fields));
        }
        if (header is null) throw new ArgumentException($"{path}: the file is empty; expected a header row of column names, then one row per example");
        int targetColumn = Array.IndexOf(header, target);
        if (targetColumn < 0) throw new ArgumentException($"--target: no column '{target}' in {path}; its columns: {string.Join(", ", header)}");
        foreach (var d in drop)
        {
            if (Array.IndexOf(header, d) < 0) throw new ArgumentException($"--drop: no column '{d}' in {path}; its columns: {string.Join(", ", header)}");
            if (d == target) throw new ArgumentException($"--drop: '{d}' is the --target column");
        }
        var featureColumns = Enumerable.Range(0, header.Length).Where(c => c != targetColumn && !drop.Contains(header[c])).ToArray();
        if (featureColumns.Length == 0) throw new ArgumentException($"{path}: no feature column left besides the target '{target}'");
        Features = featureColumns.Select(c => header[c]).ToArray();

        _features = new double[rows.Count][];
        for (int r = 0; r < rows.Count; r++)
        {
            var x = _features[r] = new double[featureColumns.Length];
            for (int j = 0; j < featureColumns.Length; j++)
            {
                int c = featureColumns[j];
                x[j] = Number(rows[r].Fields[c], out var problem)
                    ?? throw new ArgumentException($"{path}: line {rows[r].Line}, column {c + 1} ('{header[c]}'): {problem}" +
                        (rows[r].Fields[c].Trim().Length > 0 ? $" (features must be numbers; use --drop {header[c]} to leave the column out)" : ""));
            }
        }

        var targetText = rows.Select(r => r.Fields[targetColumn].Trim()).ToArray();
        for (int r = 0; r < rows.Count; r++)
            if (targetText[r].Length == 0) throw new ArgumentException($"{path}: line {rows[r].Line}, column {targetColumn + 1} ('{target}'): empty target cell (no value is filled in: remove the row or give the value)");
        if (rows.Count < 10) throw new ArgumentException($"{path}: {rows.Count} example row{(rows.Count == 1 ? "" : "s")}; at least 10 are needed (80 % for training, 20 % for validation)");
        var numeric = targetText.Select(t => Number(t, out _)).ToArray();
        int firstNonNumeric = Array.FindIndex(numeric, v => v is null);
        if (kind is null)
        {
            if (firstNonNumeric >= 0) { Kind = CsvTaskKind.Classification; KindReason = $"inferred: '{target}' holds labels ('{targetText[firstNonNumeric]}' on line {rows[firstNonNumeric].Line})"; }
            else
            {
                var distinct = numeric.Select(v => v!.Value).Distinct().Count();
                bool integers = numeric.All(v => v!.Value == Math.Floor(v.Value));
                Kind = integers && distinct <= MaxInferredClasses ? CsvTaskKind.Classification : CsvTaskKind.Regression;
                KindReason = Kind == CsvTaskKind.Classification
                    ? $"inferred: '{target}' holds {distinct} distinct integers (at most {MaxInferredClasses}); --task-kind regression to predict them as numbers"
                    : integers ? $"inferred: '{target}' holds {distinct} distinct integers (more than {MaxInferredClasses})" : $"inferred: '{target}' holds non-integer numbers";
            }
        }
        else
        {
            Kind = kind.Value;
            KindReason = "--task-kind";
            if (Kind == CsvTaskKind.Regression && firstNonNumeric >= 0)
                throw new ArgumentException($"{path}: line {rows[firstNonNumeric].Line}, column {targetColumn + 1} ('{target}'): {NumberProblem(targetText[firstNonNumeric])}; --task-kind regression needs a numeric target");
        }

        if (Kind == CsvTaskKind.Regression)
        {
            _numericTarget = numeric.Select(v => v!.Value).ToArray();
            _classIndex = Array.Empty<long>();
            Classes = Array.Empty<string>();
        }
        else
        {
            // Classes in numeric order when every label is a number (so 2 < 10; "1" and "1.0" are one class), else in ordinal text order.
            string[] classes;
            if (firstNonNumeric < 0)
            {
                var values = numeric.Select(v => v!.Value).Distinct().OrderBy(v => v).ToArray();
                var byValue = values.Select((v, i) => (v, i)).ToDictionary(p => p.v, p => (long)p.i);
                classes = values.Select(v => targetText[Array.FindIndex(numeric, x => x == v)]).ToArray();
                _classIndex = numeric.Select(v => byValue[v!.Value]).ToArray();
            }
            else
            {
                classes = targetText.Distinct().OrderBy(t => t, StringComparer.Ordinal).ToArray();
                var byText = classes.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => (long)p.i);
                _classIndex = targetText.Select(t => byText[t]).ToArray();
            }
            if (classes.Length < 2) throw new ArgumentException($"{path}: the target '{target}' has a single value ('{classes[0]}'); classification needs at least two classes");
            _numericTarget = Array.Empty<double>();
            Classes = classes;
        }
        string what = Kind == CsvTaskKind.Regression ? $"regression of '{target}'" : $"classification of '{target}' ({Classes.Count} classes)";
        Description = $"{Path.GetFileName(path)}: {Rows} rows × {Features.Count} features, {what}; 80/20 split; MLP {Features.Count}→{Hidden}→{Hidden}→{Outputs}";
    }

    int Outputs => Kind == CsvTaskKind.Regression ? 1 : Classes.Count;

    /// <summary>The task name for a file: its name without extension, other characters than letters, digits, '-' and '_' as '_'.</summary>
    public static string TaskName(string path)
    {
        var stem = Path.GetFileNameWithoutExtension(path);
        var name = new string(stem.Select(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' ? ch : '_').ToArray());
        return name.Length == 0 ? "data" : name;
    }

    /// <summary>One line split at commas outside double quotes; "" inside quotes is one quote.</summary>
    static string[] Split(string text, string path, int line)
    {
        var fields = new List<string>();
        var field = new StringBuilder();
        bool quoted = false, wasQuoted = false;
        for (int i = 0; i < text.Length; i++)
        {
            char ch = text[i];
            if (quoted)
            {
                if (ch == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                else if (ch == '"') quoted = false;
                else field.Append(ch);
            }
            else if (ch == ',') { fields.Add(field.ToString()); field.Clear(); wasQuoted = false; }
            else if (ch == '"')
            {
                if (wasQuoted || field.ToString().Trim().Length > 0)
                    throw new ArgumentException($"{path}: line {line}, column {fields.Count + 1}: a quote inside an unquoted field (quote the whole field and double the quote)");
                field.Clear(); quoted = true; wasQuoted = true;
            }
            else if (wasQuoted && !char.IsWhiteSpace(ch))
                throw new ArgumentException($"{path}: line {line}, column {fields.Count + 1}: text after a closing quote");
            else field.Append(ch);
        }
        if (quoted) throw new ArgumentException($"{path}: line {line}, column {fields.Count + 1}: a quoted field is not closed on its line (fields spanning lines are not read)");
        fields.Add(field.ToString());
        return fields.ToArray();
    }

    static double? Number(string text, out string problem)
    {
        problem = NumberProblem(text);
        return problem.Length == 0 ? double.Parse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture) : null;
    }

    static string NumberProblem(string text)
    {
        var t = text.Trim();
        if (t.Length == 0) return "empty cell (missing values are not filled in: remove the row or give the value)";
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var v)) return $"'{t}' is not a number";
        if (!double.IsFinite(v)) return $"'{t}' is not a finite number";
        return "";
    }

    /// <summary>Shuffles the rows with the seed, splits 80/20, standardises with the training rows' statistics.</summary>
    public override void Prepare(long seed)
    {
        foreach (var t in new[] { _trainX, _trainY, _validX, _validY }) t?.Dispose();
        int n = Rows, d = Features.Count, nValid = Math.Max(1, n / 5), nTrain = n - nValid;
        var order = new Random(unchecked((int)seed ^ (int)(seed >> 32))).Shuffle(n);
        var mean = new double[d];
        var sd = new double[d];
        for (int j = 0; j < d; j++)
        {
            double m = 0;
            for (int k = 0; k < nTrain; k++) m += _features[order[k]][j];
            m /= nTrain;
            double s = 0;
            for (int k = 0; k < nTrain; k++) s += (_features[order[k]][j] - m) * (_features[order[k]][j] - m);
            s = Math.Sqrt(s / nTrain);
            (mean[j], sd[j]) = (m, s > 0 ? s : 1);   // a constant column stays 0 after centring
        }
        float[] Block(int from, int count)
        {
            var block = new float[count * d];
            for (int k = 0; k < count; k++)
                for (int j = 0; j < d; j++) block[k * d + j] = (float)((_features[order[from + k]][j] - mean[j]) / sd[j]);
            return block;
        }
        _trainX = tensor(Block(0, nTrain), new long[] { nTrain, d }).DetachFromDisposeScope();
        _validX = tensor(Block(nTrain, nValid), new long[] { nValid, d }).DetachFromDisposeScope();
        if (Kind == CsvTaskKind.Regression)
        {
            double m = Enumerable.Range(0, nTrain).Average(k => _numericTarget[order[k]]);
            double s = Math.Sqrt(Enumerable.Range(0, nTrain).Average(k => (_numericTarget[order[k]] - m) * (_numericTarget[order[k]] - m)));
            if (s == 0) s = 1;
            float[] Y(int from, int count) => Enumerable.Range(from, count).Select(k => (float)((_numericTarget[order[k]] - m) / s)).ToArray();
            var validY = Y(nTrain, nValid);
            double vm = validY.Average(v => (double)v);
            _validVariance = validY.Average(v => (v - vm) * (v - vm));
            _trainY = tensor(Y(0, nTrain), new long[] { nTrain, 1 }).DetachFromDisposeScope();
            _validY = tensor(validY, new long[] { nValid, 1 }).DetachFromDisposeScope();
        }
        else
        {
            _trainY = tensor(Enumerable.Range(0, nTrain).Select(k => _classIndex[order[k]]).ToArray()).DetachFromDisposeScope();
            _validY = tensor(Enumerable.Range(nTrain, nValid).Select(k => _classIndex[order[k]]).ToArray()).DetachFromDisposeScope();
        }
    }

    /// <summary>features → 64 → 64 → outputs, tanh between.</summary>
    public override Module<Tensor, Tensor> Model() =>
        Sequential(Linear(Features.Count, Hidden), Tanh(), Linear(Hidden, Hidden), Tanh(), Linear(Hidden, Outputs));

    /// <summary>MSE on the standardised target, or cross-entropy, over the training rows.</summary>
    public override Tensor Loss(Module<Tensor, Tensor> model) => Kind == CsvTaskKind.Regression
        ? functional.mse_loss(model.forward(_trainX), _trainY)
        : functional.cross_entropy(model.forward(_trainX), _trainY);

    /// <summary>Validation R² (1 − residual / variance of the validation targets) or validation accuracy.</summary>
    public override (string Name, double Value) Metric(Module<Tensor, Tensor> model)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        if (Kind == CsvTaskKind.Classification)
            return ("val acc", model.forward(_validX).argmax(1).eq(_validY).to(float32).mean().item<float>());
        double residual = model.forward(_validX).sub(_validY).pow(2).mean().item<float>();
        return ("val R²", _validVariance > 0 ? 1 - residual / _validVariance : double.NaN);
    }
}

static class ShuffleExtension
{
    /// <summary>A permutation of 0 … n − 1 (Fisher–Yates with this generator).</summary>
    public static int[] Shuffle(this Random random, int n)
    {
        var order = Enumerable.Range(0, n).ToArray();
        for (int i = n - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }
}
