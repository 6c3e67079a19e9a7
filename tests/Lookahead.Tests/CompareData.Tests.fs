/// `lookahead compare --data PATH.csv --target COLUMN`: reading the user's file (kinds inferred or given, classes,
/// quoting), malformed files refused with the line and column, and the sweep's outputs on such a task; the sweep's
/// extension past an edge and `--quick` on the built-in tasks.
module Lookahead.Tests.CompareData

open System
open System.IO
open Expecto
open Lookahead.Cli

/// A fresh folder for one test's files.
let private folder () =
    let dir = Path.Combine(Path.GetTempPath(), sprintf "lookahead-csv-%d" (Random.Shared.Next()))
    Directory.CreateDirectory dir |> ignore
    dir

let private write (dir: string) (name: string) (lines: string seq) =
    let path = Path.Combine(dir, name)
    File.WriteAllLines(path, lines)
    path

/// Two interleaved half-moons with a label column and an identifier, seeded (written here, not by the code under test).
let private moons (n: int) =
    let r = Random 11
    seq {
        "id,x,y,label"
        for i in 0 .. n - 1 do
            let upper = i % 2 = 0
            let t = Math.PI * r.NextDouble()
            let x, y = if upper then cos t, sin t else 1.0 - cos t, 0.5 - sin t
            sprintf "%d,%.4f,%.4f,%s" i (x + 0.1 * (r.NextDouble() - 0.5)) (y + 0.1 * (r.NextDouble() - 0.5)) (if upper then "upper" else "lower")
    }

/// A header and n rows of three numeric features and the given target values, cycled.
let private numeric (targets: string list) (n: int) =
    seq {
        "a,b,c,t"
        for i in 0 .. n - 1 do
            sprintf "%d,%d.5,%g,%s" i (i % 7) (float i * 1e-3) targets.[i % targets.Length]
    }

[<Tests>]
let tests =
    testSequenced <| testList "compare: CSV files and the sweep" [
        test "kinds: text labels and few integers are classes (numeric order, 1 and 1.0 one class), non-integers and many integers regression, --task-kind overrides" {
            let dir = folder ()
            try
                let text = CsvTask(write dir "text.csv" (moons 40), "label", Nullable(), [| "id" |])
                Expect.equal text.Kind CsvTaskKind.Classification "text labels"
                Expect.sequenceEqual text.Classes [ "lower"; "upper" ] "classes in ordinal text order"
                Expect.sequenceEqual text.Features [ "x"; "y" ] "the identifier is dropped, the target is not a feature"
                let ints = CsvTask(write dir "ints.csv" (numeric [ "10"; "2"; "1"; "1.0"; "2" ] 30), "t")
                Expect.equal ints.Kind CsvTaskKind.Classification "few distinct integers"
                Expect.sequenceEqual ints.Classes [ "1"; "2"; "10" ] "numeric order, 1 and 1.0 the same class"
                let reals = CsvTask(write dir "reals.csv" (numeric [ "0.5"; "1"; "2" ] 30), "t")
                Expect.equal reals.Kind CsvTaskKind.Regression "a non-integer value"
                Expect.isEmpty reals.Classes "no classes for regression"
                let many = CsvTask(write dir "many.csv" (numeric [ for k in 0 .. CsvTask.MaxInferredClasses -> string k ] 60), "t")
                Expect.equal many.Kind CsvTaskKind.Regression (sprintf "%d distinct integers" (CsvTask.MaxInferredClasses + 1))
                let atMost = CsvTask(write dir "atmost.csv" (numeric [ for k in 1 .. CsvTask.MaxInferredClasses -> string k ] 60), "t")
                Expect.equal atMost.Kind CsvTaskKind.Classification (sprintf "%d distinct integers" CsvTask.MaxInferredClasses)
                Expect.equal (CsvTask(write dir "given.csv" (numeric [ "10"; "2" ] 30), "t", Nullable CsvTaskKind.Regression)).Kind CsvTaskKind.Regression "--task-kind regression"
                Expect.equal (CsvTask(write dir "given2.csv" (numeric [ "0.5"; "1.5" ] 30), "t", Nullable CsvTaskKind.Classification)).Classes.Count 2 "--task-kind classification on reals"
            finally Directory.Delete(dir, true)
        }

        test "quoted fields (a comma and a doubled quote inside), blank lines and a byte-order mark are read" {
            let dir = folder ()
            try
                let path = Path.Combine(dir, "quoted file.csv")
                let lines = [ yield "\"size, m²\",\"say \"\"hi\"\"\",target"; yield ""; for i in 0 .. 11 -> sprintf "\"%d.25\",%d,%s" i (i % 3) (if i % 2 = 0 then "\"yes, really\"" else "no") ]
                File.WriteAllText(path, String.Join("\n", lines) + "\n", Text.UTF8Encoding(true))
                let t = CsvTask(path, "target")
                Expect.sequenceEqual t.Features [ "size, m²"; "say \"hi\"" ] "header names unquoted"
                Expect.sequenceEqual t.Classes [ "no"; "yes, really" ] "quoted labels"
                Expect.equal t.Rows 12 "the blank line is skipped"
                Expect.equal t.Name "quoted_file" "the task's name: the file name, other characters as _"
            finally Directory.Delete(dir, true)
        }

        test "malformed files and bad options are refused, naming the line and column (or the option)" {
            let dir = folder ()
            try
                let rows10 = [ for i in 1 .. 10 -> sprintf "%d,2,%d" i (i % 2) ]
                let cases =
                    [ "a,b,y" :: rows10 @ [ "1,x,0" ], "y", "line 12, column 2 ('b'): 'x' is not a number"
                      "a,b,y" :: "1,,0" :: rows10, "y", "line 2, column 2 ('b'): empty cell"
                      "a,b,y" :: rows10 @ [ "1,2" ], "y", "line 12: 2 fields, expected 3"
                      "a,b,y" :: rows10 @ [ "1,2,3,4" ], "y", "line 12: 4 fields, expected 3"
                      "a,b,y" :: rows10 @ [ "1,NaN,0" ], "y", "line 12, column 2 ('b'): 'NaN' is not a finite number"
                      "a,b,y" :: rows10 @ [ "1,1e999,0" ], "y", "line 12, column 2 ('b'): '1e999' is not a finite number"
                      "a,b,y" :: rows10 @ [ "1,2,\"0" ], "y", "line 12, column 3: a quoted field is not closed"
                      "a,b,y" :: rows10 @ [ "1,2\"x\",0" ], "y", "line 12, column 2: a quote inside an unquoted field"
                      "a,b,y" :: rows10 @ [ "1,\"2\"x,0" ], "y", "line 12, column 2: text after a closing quote"
                      "a,b,y" :: rows10 @ [ "1,2, " ], "y", "line 12, column 3 ('y'): empty target cell"
                      "a,a,y" :: rows10, "y", "line 1 (the header): column name 'a' appears twice (columns 1 and 2)"
                      "a,,y" :: rows10, "y", "line 1 (the header), column 2: empty column name"
                      "a,b,y" :: rows10, "z", "--target: no column 'z'"
                      "a,b,y" :: List.take 9 rows10, "y", "9 example rows; at least 10 are needed"
                      "a,b,y" :: [ for i in 1 .. 10 -> sprintf "%d,2,7" i ], "y", "the target 'y' has a single value ('7')"
                      [], "y", "the file is empty" ]
                for i, (lines, target, expected) in List.indexed cases do
                    let path = write dir (sprintf "bad%d.csv" i) lines
                    let message = try CsvTask(path, target) |> ignore; "(no error)" with :? ArgumentException as e -> e.Message
                    Expect.stringContains message expected (sprintf "case %d: an ArgumentException naming the place" i)
                let labels = write dir "labels.csv" ("a,y" :: [ for i in 1 .. 10 -> sprintf "%d,%s" i (if i = 4 then "cat" else "1.5") ])
                Expect.stringContains (try CsvTask(labels, "y", Nullable CsvTaskKind.Regression) |> ignore; "(no error)" with :? ArgumentException as e -> e.Message)
                    "line 5, column 2 ('y'): 'cat' is not a number; --task-kind regression needs a numeric target" "a text target under --task-kind regression"
                let good = write dir "good.csv" (moons 20)
                for args, expected in
                    [ sprintf "compare --data \"%s\"" good, "--data needs --target COLUMN"
                      "compare --target label", "--target applies to a CSV task: give --data PATH.csv too"
                      sprintf "compare --data \"%s\" --target label --task-kind ordinal" good, "--task-kind: expected 'regression' or 'classification', got 'ordinal'"
                      sprintf "compare --data \"%s\" --target label --drop nope" good, "--drop: no column 'nope'"
                      sprintf "compare --data \"%s\" --target label --drop label" good, "--drop: 'label' is the --target column"
                      sprintf "compare --data \"%s\" --target label" (Path.Combine(dir, "absent.csv")), "--data: no such file"
                      sprintf "compare --data \"%s\" --target label --quick --seeds 2" good, "--quick runs one rate and one seed" ] do
                    let code, lines = Oracle.lookahead args
                    Expect.equal code 2 (sprintf "exit code of %s" args)
                    Expect.isTrue (lines |> Array.exists (fun l -> l.Contains expected)) (sprintf "%s: expected '%s' in\n%s" args expected (String.Join("\n", lines)))
            finally Directory.Delete(dir, true)
        }

        test "the sweep on a CSV task writes its table and sensitivity plot, byte-identical across two runs; with --task the built-in task runs too" {
            let dir = folder ()
            try
                let data = write dir "moons.csv" (moons 200)
                let run out extra = Oracle.lookahead (sprintf "compare --data \"%s\" --target label --drop id --optimizers adam,sgd --steps 10 --seeds 2 --lrs 0.3,1,3 --out \"%s\"%s" data out extra)
                let code, lines = run (Path.Combine(dir, "a")) ""
                Expect.equal code 0 (String.Join("\n", lines))
                Expect.isTrue (lines |> Array.exists (fun l -> l.Contains "moons.csv: 200 rows × 2 features, classification of 'label' (2 classes)")) "the task is described"
                let summary = File.ReadAllLines(Path.Combine(dir, "a", "summary.md"))
                Expect.equal summary.Length (2 + 2) "a header, a rule and one row per optimizer"
                Expect.isTrue (summary.[2].StartsWith "| moons | adam |" && summary.[2].Contains "val acc") "the row names the task, the optimizer and the validation metric"
                let runs = File.ReadAllLines(Path.Combine(dir, "a", "runs.csv"))
                Expect.equal runs.Length (1 + 2 * 3 * 2) "one line per optimizer, rate and seed (a grid given with --lrs is not extended)"
                for f in [ "losses.csv"; "report.html"; "loss-moons.png"; "lr-moons.png" ] do
                    Expect.isTrue (File.Exists(Path.Combine(dir, "a", f))) (sprintf "%s written" f)
                let code2, _ = run (Path.Combine(dir, "b")) ""
                Expect.equal code2 0 "second run"
                for f in [ "summary.md"; "runs.csv"; "losses.csv"; "report.html"; "loss-moons.png"; "lr-moons.png" ] do
                    Expect.sequenceEqual (File.ReadAllBytes(Path.Combine(dir, "b", f))) (File.ReadAllBytes(Path.Combine(dir, "a", f))) (sprintf "%s byte-identical" f)
                let code3, lines3 = run (Path.Combine(dir, "c")) " --task logistic --lrs 1 --seeds 1"
                Expect.equal code3 0 (String.Join("\n", lines3))
                let both = File.ReadAllLines(Path.Combine(dir, "c", "summary.md"))
                Expect.equal (both |> Array.filter (fun l -> l.StartsWith "| logistic |") |> Array.length) 2 "the built-in task's rows"
                Expect.equal (both |> Array.filter (fun l -> l.StartsWith "| moons |") |> Array.length) 2 "the file's rows"
            finally Directory.Delete(dir, true)
        }
    
        test "the default sweep goes on past an edge half a decade at a time until the best rate is inside, at most 3 times" {
            let dir = folder ()
            try
                let out = Path.Combine(dir, "sweep")
                let code, lines = Oracle.lookahead (sprintf "compare --task logistic,mlp --optimizers sgd,adam --steps 40 --seeds 2 --out \"%s\"" out)
                Expect.equal code 0 (String.Join("\n", lines))
                // runs.csv: task,optimizer,lr,seed,steps,final_loss,... (a diverged run has no final loss: +∞ here)
                let rows =
                    File.ReadAllLines(Path.Combine(out, "runs.csv")).[1..]
                    |> Array.map (fun l -> l.Split ',')
                    |> Array.map (fun f -> (f.[0], f.[1]), float f.[2], (if f.[5] = "" then infinity else float f.[5]))
                let defaults = dict [ "sgd", 0.1; "adam", 0.01 ]
                // The half-decade grid written out here: 10^(k/2) to 3 significant digits.
                let grid = dict [ -5, 0.00316; -4, 0.01; -3, 0.0316; -2, 0.1; -1, 0.316; 0, 1.0; 1, 3.16; 2, 10.0; 3, 31.6; 4, 100.0; 5, 316.0 ]
                let mutable extendedPairs = 0
                for (task, opt), group in rows |> Array.groupBy (fun (k, _, _) -> k) do
                    let name = sprintf "%s/%s" task opt
                    let byRate = group |> Array.groupBy (fun (_, lr, _) -> lr) |> Array.map (fun (lr, rs) -> lr, rs |> Array.averageBy (fun (_, _, f) -> f), rs.Length) |> Array.sortBy (fun (lr, _, _) -> lr)
                    for (lr, _, n) in byRate do Expect.equal n 2 (sprintf "%s: lr %g has a run per seed" name lr)
                    let ks = byRate |> Array.map (fun (lr, _, _) -> grid |> Seq.find (fun kv -> abs (kv.Value * defaults.[opt] - lr) <= 1e-12 * lr) |> fun kv -> kv.Key)
                    Expect.sequenceEqual ks [| ks.[0] .. ks.[ks.Length - 1] |] (sprintf "%s: consecutive half-decades" name)
                    Expect.isTrue (ks.[0] <= -2 && ks.[ks.Length - 1] >= 2) (sprintf "%s: the default grid is all there" name)
                    let extra = ks.Length - 5
                    Expect.isLessThanOrEqual extra 3 (sprintf "%s: at most 3 extensions" name)
                    Expect.isFalse (ks.[0] < -2 && ks.[ks.Length - 1] > 2) (sprintf "%s: extended on one side only" name)
                    let best (rates: (float * float * int)[]) = rates |> Array.mapi (fun i (_, m, _) -> i, m) |> Array.minBy snd |> fst
                    let up = ks.[ks.Length - 1] > 2
                    // Each extension was due: before it, the best was at the end it extends.
                    for j in 0 .. extra - 1 do
                        let before = if up then byRate.[.. 4 + j] else byRate.[extra - j ..]
                        let b = best before
                        Expect.equal b (if up then before.Length - 1 else 0) (sprintf "%s: extension %d followed a best rate at the %s end" name (j + 1) (if up then "top" else "bottom"))
                    // And it stopped for a reason: the best is inside, or 3 extensions were made.
                    let b = best byRate
                    Expect.isTrue ((b > 0 && b < byRate.Length - 1) || extra = 3) (sprintf "%s: stopped with the best rate inside or after 3 extensions (best %d of %d)" name b byRate.Length)
                    let row = File.ReadAllLines(Path.Combine(out, "summary.md")) |> Array.find (fun l -> l.StartsWith(sprintf "| %s | %s |" task opt))
                    Expect.equal (row.Contains "(edge)") (b = 0 || b = byRate.Length - 1) (sprintf "%s: (edge) exactly when the best rate is at an end: %s" name row)
                    if extra > 0 then extendedPairs <- extendedPairs + 1
                Expect.isGreaterThan extendedPairs 0 "some pair was extended (the test reaches the branch)"
                Expect.isTrue (lines |> Array.exists (fun l -> l.Contains "more runs past the edges of the sweep")) "the extension is reported"
            finally Directory.Delete(dir, true)
        }
    
        test "--quick runs each optimizer once, at its default rate with one seed, and writes no sensitivity plot" {
            let dir = folder ()
            try
                let out = Path.Combine(dir, "quick")
                let code, lines = Oracle.lookahead (sprintf "compare --task logistic --optimizers sgd,adam --quick --steps 5 --out \"%s\"" out)
                Expect.equal code 0 (String.Join("\n", lines))
                let runs = File.ReadAllLines(Path.Combine(out, "runs.csv")).[1..] |> Array.map (fun l -> l.Split ',')
                Expect.equal (runs |> Array.map (fun f -> f.[1], float f.[2], f.[3], f.[4])) [| "sgd", 0.1, "1", "5"; "adam", 0.01, "1", "5" |] "one run each: optimizer, its default rate, seed 1, 5 steps"
                Expect.isFalse (File.Exists(Path.Combine(out, "lr-logistic.png"))) "no sensitivity plot without a sweep"
                Expect.isTrue (File.Exists(Path.Combine(out, "loss-logistic.png"))) "the loss plot"
                Expect.isFalse (File.ReadAllText(Path.Combine(out, "summary.md")).Contains "(edge)") "one rate is no sweep: no edge"
            finally Directory.Delete(dir, true)
        }
    ]
