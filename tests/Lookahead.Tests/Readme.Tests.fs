/// The README's examples are the code the tests compile and run.
module Lookahead.Tests.Readme

open System
open System.IO
open System.Reflection
open Expecto

let repoRoot =
    Assembly.GetExecutingAssembly().GetCustomAttributes<AssemblyMetadataAttribute>()
    |> Seq.find (fun a -> a.Key = "RepoRoot")
    |> fun a -> Path.GetFullPath a.Value

/// The lines of a file between `// README:<tag>-begin` and `// README:<tag>-end`.
let region (file: string) (tag: string) =
    let lines = File.ReadAllLines file
    let b = lines |> Array.findIndex (fun l -> l.Trim() = sprintf "// README:%s-begin" tag)
    let e = lines |> Array.findIndex (fun l -> l.Trim() = sprintf "// README:%s-end" tag)
    let body = lines.[b + 1 .. e - 1] |> Array.map (fun l -> l.TrimEnd())
    // Dedent by the common indentation, so a region inside a method reads as the README shows it.
    let indent = body |> Array.filter (fun l -> l <> "") |> Array.map (fun l -> l.Length - l.TrimStart().Length) |> Array.fold min Int32.MaxValue
    body |> Array.map (fun l -> if l = "" then l else l.Substring indent) |> String.concat "\n"

/// The fenced code block of a language that follows a marker comment in the README.
let readmeBlock (marker: string) (lang: string) =
    let text = File.ReadAllText(Path.Combine(repoRoot, "README.md")).Replace("\r\n", "\n")
    let at = text.IndexOf(sprintf "<!-- %s -->" marker)
    if at < 0 then failtestf "README.md has no <!-- %s --> marker" marker
    let start = text.IndexOf(sprintf "```%s\n" lang, at) + lang.Length + 4
    let stop = text.IndexOf("\n```", start)
    text.Substring(start, stop - start).Split('\n') |> Array.map (fun l -> l.TrimEnd()) |> String.concat "\n"

[<Tests>]
let tests =
    testSequenced <| testList "README" [
        test "the C# example in the README is the compiled example, and it trains" {
            Expect.equal (readmeBlock "example:csharp" "csharp") (region (Path.Combine(repoRoot, "examples/Lookahead.Examples/Quickstart.cs")) "csharp") "README block = examples/Lookahead.Examples/Quickstart.cs"
            let loss = Quickstart.Run()
            Expect.isLessThan loss 0.02 "the line is fitted (noise variance 0.01)"
        }
        test "the equivalence-checker example in the README is compiled code, and it passes" {
            Expect.equal (readmeBlock "example:equivalence" "csharp") (region (Path.Combine(repoRoot, "examples/Lookahead.Examples/EquivalenceExample.cs")) "equivalence") "README block = examples/Lookahead.Examples/EquivalenceExample.cs"
            let struct (exact, sampled) = EquivalenceExample.Run()
            Expect.isTrue exact.Passed (string exact)
            Expect.equal exact.Method "exact" "both forms are linear: decided exactly"
            Expect.isTrue sampled.Passed (string sampled)
            Expect.equal sampled.Method "sampled" "sampling asked for"
            Expect.equal sampled.Cases 50 "all 50 cases ran"
        }
        test "the hypergradient examples in the README are compiled code: the rate grows from a too-small start" {
            Expect.equal (readmeBlock "example:hypergradient" "csharp") (region (Path.Combine(repoRoot, "examples/Lookahead.Examples/HypergradientExample.cs")) "hypergradient") "README block = examples/Lookahead.Examples/HypergradientExample.cs"
            Expect.equal (readmeBlock "example:hypergradient-fsharp" "fsharp") (region (Path.Combine(repoRoot, "tests/Lookahead.Tests/ReadmeExample.fs")) "hypergradient-fsharp") "README block = tests/Lookahead.Tests/ReadmeExample.fs"
            let struct (rate, loss, plainLoss) = HypergradientExample.Run()
            Expect.isGreaterThan rate 1e-2 "SGD-HD's rate grew more than tenfold from 1e-3"
            Expect.isLessThan loss (plainLoss / 10.0) "and its loss is a tenth of plain SGD's at the starting rate"
            let adamRate, adamLoss = ReadmeExample.trainLineAdamHD ()
            Expect.isGreaterThan adamRate 1e-3 "Adam-HD's rate grew"
            Expect.isLessThan adamLoss 0.05 "and the line is fitted"
        }
        test "the differentiable-optimizer examples in the README are compiled code: bad labels found, an initialisation learned" {
            Expect.equal (readmeBlock "example:differentiable" "csharp") (region (Path.Combine(repoRoot, "examples/Lookahead.Examples/DifferentiableExample.cs")) "differentiable") "README block = examples/Lookahead.Examples/DifferentiableExample.cs"
            Expect.equal (readmeBlock "example:differentiable-fsharp" "fsharp") (region (Path.Combine(repoRoot, "tests/Lookahead.Tests/ReadmeExample.fs")) "differentiable-fsharp") "README block = tests/Lookahead.Tests/ReadmeExample.fs"
            let struct (corrupted, flagged) = DifferentiableExample.Run()
            Expect.sequenceEqual flagged corrupted "the six largest ∂L_val/∂weight are the six corrupted examples"
            Expect.equal (readmeBlock "example:hyperparameter-gradient" "csharp") (region (Path.Combine(repoRoot, "examples/Lookahead.Examples/DifferentiableExample.cs")) "hyperparameter-gradient") "README block = DifferentiableExample.LearnRate"
            let struct (struct (lr0, b0, loss0), struct (lr1, b1, loss1)) = DifferentiableExample.LearnRate()
            Expect.floatClose Accuracy.veryHigh lr0 1e-3 "the starting rate (exp of its log)"
            Expect.equal b0 0.5 "the starting β₁"
            Expect.isGreaterThan lr1 (10.0 * lr0) "the learning rate learned by gradient grew more than tenfold"
            Expect.isGreaterThan b1 b0 "β₁ moved up"
            Expect.isLessThan loss1 (loss0 / 10.0) "the loss after 30 steps fell more than tenfold"
            let before, after = ReadmeExample.learnInitialisation ()
            Expect.isLessThan after (before / 10.0) "the learned initialisation fits a new task in 5 steps ten times better than θ₀ = 0"
        }
        test "the F# example in the README is the compiled example, and it trains" {
            Expect.equal (readmeBlock "example:fsharp" "fsharp") (region (Path.Combine(repoRoot, "tests/Lookahead.Tests/ReadmeExample.fs")) "fsharp") "README block = tests/Lookahead.Tests/ReadmeExample.fs"
            let loss = ReadmeExample.trainLine ()
            Expect.isLessThan loss 0.02 "the line is fitted (noise variance 0.01)"
        }
    ]
