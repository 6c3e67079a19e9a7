// Build script: dotnet fsi build.fsx [target]
// Targets (any case): clean, build, notebooks, test (the default; runs the notebooks first), compare (the main job), demo,
// pack (packages + a check of the installed tool), soak (the long memory soak), bench, bench-quick (performance targets), replay (the official implementations' trajectories from ../shared/oracle/cases, else the vendored
// tests/oracle/cases; LOOKAHEAD_ORACLE_DIR overrides the folder), mutate (mutation testing of Lookahead.Core from
// build/mutations.json, in a temporary copy; not part of CI; `mutate -- --only ID[,ID]` runs a subset, `-- --list` lists them).
// System.Reactive pinned to a served version: Fake's dependency asks for 4.4.1, which the registry lacks.
#r "nuget: System.Reactive, 5.0.0"
#r "nuget: Fake.Core.Target, 5.20.3"
#load "build/Mutations.fsx"
#load "build/Notebooks.fsx"

open System
open System.Diagnostics
open System.IO
open Fake.Core
open System.Text.Json

// FAKE 5 targets outside the fake runner need an execution context.
let args =
    match fsi.CommandLineArgs |> Array.skip 1 |> List.ofArray with
    | target :: rest when not (target.StartsWith "-") -> "--target" :: target.ToLowerInvariant() :: rest
    | other -> other
args
|> Context.FakeExecutionContext.Create false "build.fsx"
|> Context.RuntimeContext.Fake
|> Context.setExecutionContext

let root = __SOURCE_DIRECTORY__
let configuration = Environment.environVarOrDefault "CONFIGURATION" "Release"

/// Runs a command in the repository root, streaming its output; fails the target on a non-zero exit.
let run (file: string) (arguments: string) =
    let psi = ProcessStartInfo(file, arguments, WorkingDirectory = root, UseShellExecute = false)
    use p = Process.Start psi
    p.WaitForExit()
    if p.ExitCode <> 0 then failwithf "'%s %s' exited with %d" file arguments p.ExitCode

Target.create "clean" (fun _ ->
    for dir in [ "src"; "tests"; "examples" ] do
        for sub in Directory.EnumerateDirectories(Path.Combine(root, dir), "*", SearchOption.AllDirectories) |> Seq.toList do
            let name = Path.GetFileName sub
            if (name = "bin" || name = "obj") && Directory.Exists sub then Directory.Delete(sub, true))

// The build also makes TorchSharp's native library loadable on this host (build/TorchSharpNative.targets).
Target.create "build" (fun _ -> run "dotnet" (sprintf "build Lookahead.sln -c %s -nologo" configuration))

// Ends with the line "N passed, N failed".
Target.create "test" (fun _ ->
    // The fused executor's other loop form (kernels composed into one value type instead of a compiled program),
    // which LOOKAHEAD_FUSED_CHAIN=1 selects: its own tests in that form first (fewer cases), then the whole suite (whose summary
    // line comes last, the one CI reads).
    for list in [ "fused executor"; "mixed precision" ] do
        let psi = ProcessStartInfo("dotnet", sprintf "run --project tests/Lookahead.Tests -c %s --no-build -- --sequenced --no-spinner --colours 0 --filter-test-list \"%s\"" configuration list, WorkingDirectory = root, UseShellExecute = false)
        psi.Environment.["LOOKAHEAD_FUSED_CHAIN"] <- "1"
        // 25 generated cases per property here (100 in the main run, which covers the compiled form).
        psi.Environment.["LOOKAHEAD_PROPERTY_CASES"] <- "25"
        use p = Process.Start psi
        p.WaitForExit()
        if p.ExitCode <> 0 then failwithf "the '%s' tests with LOOKAHEAD_FUSED_CHAIN=1 exited with %d" list p.ExitCode
    run "dotnet" (sprintf "run --project tests/Lookahead.Tests -c %s --no-build -- --sequenced --no-spinner --colours 0" configuration))

// The main job: `lookahead compare` trains the built-in tasks with several optimizers (tables, PNG and
// HTML loss curves in ./lookahead-compare). Extra arguments after "--" go to the command.
Target.create "compare" (fun p ->
    let extra = p.Context.Arguments |> String.concat " "
    run "dotnet" (sprintf "run --project src/Lookahead.Cli -c %s --no-build -- compare %s" configuration extra))

// A small F# Interactive script that trains an MLP with a composed optimizer.
// Its TorchSharp is found as the notebooks' is (Notebooks.withTorchNatives: robust to another libtorch on the host).
Target.create "demo" (fun _ ->
    let psi = Notebooks.withTorchNatives root (ProcessStartInfo("dotnet", "fsi examples/train.fsx", WorkingDirectory = root, UseShellExecute = false))
    use p = Process.Start psi
    p.WaitForExit()
    if p.ExitCode <> 0 then failwithf "'dotnet fsi examples/train.fsx' exited with %d" p.ExitCode)

// Replays every reference case through the compatibility map; ends with "N passed, N failed".
Target.create "replay" (fun _ ->
    let shared = Path.Combine(root, "..", "shared", "oracle", "cases")
    let fallback = if Directory.Exists shared then shared else Path.Combine(root, "tests", "oracle", "cases")
    let cases = Environment.environVarOrDefault "LOOKAHEAD_ORACLE_DIR" fallback
    run "dotnet" (sprintf "run --project src/Lookahead.Cli -c %s --no-build -- replay \"%s\"" configuration cases))

// Performance: the BenchmarkDotNet suite (long), and the quick check of every target (under 5 minutes),
// which ends with one line per target: "target NAME ratio=X goal=Y met" (or "not met").
Target.create "bench" (fun _ ->
    run "dotnet" (sprintf "run --project benchmarks/Lookahead.Benchmarks -c %s --no-build -- --filter *" configuration))
// Extra arguments after "--" go to the quick check, e.g. `bench-quick -- --runner NAME=VALUE` (a RunnerOptions
// property for every runner it builds), `--matrices K`, `--rounds R`.
Target.create "bench-quick" (fun p ->
    let extra = p.Context.Arguments |> String.concat " "
    run "dotnet" (sprintf "run --project benchmarks/Lookahead.Benchmarks -c %s --no-build -- --quick %s" configuration extra))

// Executes every notebook in the real .NET Interactive kernel (dotnet-repl, pinned in .config/dotnet-tools.json):
// a cell error fails the target; each executed notebook is exported with its outputs and charts to
// docs/notebooks/NAME.html (build/Notebooks.fsx).
Target.create "notebooks" (fun _ ->
    let timings = Notebooks.runAll root
    printfn "notebooks: %d ran in the kernel in %.0f s" timings.Length (timings |> List.sumBy snd))

// Packages: Lookahead.Core, Lookahead.Fs and the `lookahead` .NET tool (README, licence, XML docs, symbols)
// in artifacts/packages; then the packaged tool is installed into a temporary tool path and must answer
// `--help` and replay one reference case, and a script referencing the packages must take an optimizer step.
Target.create "pack" (fun _ ->
    let out = Path.Combine(root, "artifacts", "packages")
    for project in [ "src/Lookahead.Core"; "src/Lookahead.Fs" ] do
        run "dotnet" (sprintf "pack %s -c %s --no-build -nologo -o \"%s\"" project configuration out)
    // The tool is packed per platform (src/Lookahead.Cli: RuntimeIdentifiers), so it is built for each here.
    run "dotnet" (sprintf "pack src/Lookahead.Cli -c %s -nologo -o \"%s\"" configuration out)
    for package in Directory.GetFiles(out, "*.nupkg") |> Array.sort do
        printfn "package %s: %.3f MB" (Path.GetFileName package) (float (FileInfo(package).Length) / 1e6)
    let toolPath = Path.Combine(Path.GetTempPath(), sprintf "lookahead-tool-%d" (Random().Next()))
    try
        run "dotnet" (sprintf "tool install Lookahead.Cli --version 0.1.0 --tool-path \"%s\" --add-source \"%s\"" toolPath out)
        let tool = Path.Combine(toolPath, "lookahead")
        run tool "--help"
        let shared = Path.Combine(root, "..", "shared", "oracle", "cases")
        let cases = if Directory.Exists shared then shared else Path.Combine(root, "tests", "oracle", "cases")
        run tool (sprintf "replay \"%s\"" (Path.Combine(cases, "mars_adamw_defaults.json")))
    finally
        if Directory.Exists toolPath then Directory.Delete(toolPath, true)
    // A script that references the packages from the folder, as the README's "Packages" section shows (the folder
    // as a source, Lookahead.Fs and a native bundle), must take an Adam step. NuGet caches a package by version,
    // so this version's Lookahead packages are removed from the cache first (as the README tells a user to do).
    let cache =
        match Environment.GetEnvironmentVariable "NUGET_PACKAGES" with
        | null | "" -> Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.UserProfile, ".nuget", "packages")
        | folder -> folder
    for id in [ "lookahead.core"; "lookahead.fs" ] do
        let cached = Path.Combine(cache, id, "0.1.0")
        if Directory.Exists cached then Directory.Delete(cached, true)
    let script = Path.Combine(Path.GetTempPath(), sprintf "lookahead-package-check-%d.fsx" (Random().Next()))
    File.WriteAllLines(script, [
        sprintf "#i \"nuget: %s\"" out
        "#r \"nuget: Lookahead.Fs, 0.1.0\""
        "#r \"nuget: TorchSharp-cpu, 0.107.0\""
        "open TorchSharp"
        "open Lookahead"
        "let theta = TensorTree.Of(struct (\"w\", torch.ones(3L)))"
        "let adam = Optim.Adam(0.1)"
        "let struct (u, _) = adam.Update(theta.Map(fun t -> torch.ones_like t), adam.Init theta, theta, StepContext.Empty)"
        "let values = u.[\"w\"].data<float32>().ToArray()"
        "// Adam's first step with a gradient of ones is -lr / (1 + eps) per entry."
        "if values |> Array.exists (fun v -> abs (float v + 0.1) > 1e-6) then failwithf \"unexpected update %A\" values"
        "printfn \"package check: a script referencing the packages took an Adam step %A\" values" ])
    try
        let psi = Notebooks.withTorchNatives root (ProcessStartInfo("dotnet", sprintf "fsi \"%s\"" script, WorkingDirectory = root, UseShellExecute = false))
        use p = Process.Start psi
        p.WaitForExit()
        if p.ExitCode <> 0 then failwithf "the script referencing the packages (%s) exited with %d" script p.ExitCode
    finally
        File.Delete script)

// The long soak: 100,000 runner steps per optimizer on 256 × 128 matrices (the test command runs 20,000 on 8 × 4).
Target.create "soak" (fun _ ->
    Environment.SetEnvironmentVariable("LOOKAHEAD_SOAK_STEPS", "100000")
    Environment.SetEnvironmentVariable("LOOKAHEAD_SOAK_SIZE", "256")
    run "dotnet" (sprintf "run --project tests/Lookahead.Tests -c %s --no-build -- --sequenced --no-spinner --colours 0 --filter-test-case soak" configuration))

// Mutation testing (build/Mutations.fsx): each mutation of build/mutations.json is applied in a temporary
// copy of the repository, the tests its filter selects run against it, and the target prints one line per
// mutation and "mutation score: K killed of N (P %)" with the survivors. Slow; not part of CI.
// Options after "--": --only ID[,ID], --list, --timeout S, --baseline, --fail-under P, --keep.
Target.create "mutate" (fun p -> Mutations.run root (List.ofSeq p.Context.Arguments))

Target.create "default" ignore

open Fake.Core.TargetOperators
"clean" ?=> "build" |> ignore
"build" ==> "notebooks" ==> "test" ==> "default" |> ignore
"build" ==> "demo" |> ignore
"build" ==> "compare" |> ignore
"build" ==> "replay" |> ignore
"build" ==> "bench" |> ignore
"build" ==> "bench-quick" |> ignore
"build" ==> "pack" |> ignore
"build" ==> "soak" |> ignore

// With arguments: the options after "--" reach the target (compare, mutate).
Target.runOrDefaultWithArguments "default"
