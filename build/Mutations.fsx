// Scripted mutation testing of src/Lookahead.Core, run by `dotnet fsi build.fsx mutate [-- options]`.
//
// build/mutations.json lists small hand-picked faults (a text to find, exactly once, and its replacement)
// with the Expecto filter that selects the tests meant to notice each one. The repository is copied once to
// a temporary folder and built there; then, one mutation at a time, the file is mutated, the test project
// rebuilt (only Lookahead.Core recompiles: its public surface does not change), the filtered tests run with
// a timeout, and the file restored. The checkout itself is never modified.
//
// Outcomes: killed (a selected test failed, or the run crashed), killed by the compiler (the mutant does
// not build), timed out (counted as killed), survived (every selected test passed), no tests (the filter
// selected nothing: an error in the list, left out of the score and failing the target).
//
// Options (after "--"):
//   --only ID[,ID...]      run only these mutations (repeatable)
//   --list                 check every entry (its text occurs exactly once) and print the list; build nothing
//   --timeout SECONDS      per test run (default 900; an entry's "timeout" overrides it)
//   --build-timeout SECONDS per build (default 1800)
//   --baseline             first run each selected filter on the unmutated copy; all must pass
//   --fail-under PERCENT   fail the target when the score is below PERCENT
//   --keep                 keep the temporary copy (its path is printed)
//   --mutations PATH       another data file (default build/mutations.json)
// Logs of every build and test run: artifacts/mutate/ID.log.

open System
open System.Diagnostics
open System.IO
open System.Text
open System.Text.Json
open System.Text.RegularExpressions

type Mutation =
    { Id: string
      File: string
      Find: string
      Replace: string
      Filter: string
      What: string
      Timeout: int option }

type Outcome =
    | Killed of detail: string
    | KilledByCompiler of detail: string
    | TimedOut
    | Survived of detail: string
    | NoTests

type Options =
    { Only: string list
      ListOnly: bool
      TestTimeout: int
      BuildTimeout: int
      Baseline: bool
      FailUnder: float option
      Keep: bool
      DataFile: string option }

let private defaults =
    { Only = []; ListOnly = false; TestTimeout = 900; BuildTimeout = 1800; Baseline = false
      FailUnder = None; Keep = false; DataFile = None }

let parseOptions (args: string list) =
    let positiveInt name (v: string) =
        match Int32.TryParse v with
        | true, n when n > 0 -> n
        | _ -> failwithf "mutate: %s needs a positive whole number of seconds, got '%s'" name v
    let rec go o args =
        // Accept both "--name value" and "--name=value".
        match args with
        | [] -> o
        | (a: string) :: rest when a.StartsWith "--" && a.Contains "=" ->
            let i = a.IndexOf '='
            go o (a.Substring(0, i) :: a.Substring(i + 1) :: rest)
        | "--only" :: v :: rest ->
            let ids = v.Split([| ',' |], StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries) |> List.ofArray
            go { o with Only = o.Only @ ids } rest
        | "--list" :: rest -> go { o with ListOnly = true } rest
        | "--timeout" :: v :: rest -> go { o with TestTimeout = positiveInt "--timeout" v } rest
        | "--build-timeout" :: v :: rest -> go { o with BuildTimeout = positiveInt "--build-timeout" v } rest
        | "--baseline" :: rest -> go { o with Baseline = true } rest
        | "--fail-under" :: v :: rest ->
            match Double.TryParse(v, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture) with
            | true, p when p >= 0.0 && p <= 100.0 -> go { o with FailUnder = Some p } rest
            | _ -> failwithf "mutate: --fail-under needs a percentage in [0, 100], got '%s'" v
        | "--keep" :: rest -> go { o with Keep = true } rest
        | "--mutations" :: v :: rest -> go { o with DataFile = Some v } rest
        | [ ("--only" | "--timeout" | "--build-timeout" | "--fail-under" | "--mutations") as a ] ->
            failwithf "mutate: %s needs a value" a
        | a :: _ ->
            failwithf "mutate: unknown option '%s' (options: --only ID[,ID], --list, --timeout S, --build-timeout S, --baseline, --fail-under P, --keep, --mutations PATH)" a
    go defaults args

/// Reads the data file; every entry needs id, file, find, replace and filter, and ids are unique.
let load (path: string) : Mutation list =
    use doc = JsonDocument.Parse(File.ReadAllText path)
    let entries =
        [ for e in doc.RootElement.GetProperty("mutations").EnumerateArray() ->
            let text name =
                match e.TryGetProperty(name: string) with
                | true, v when v.ValueKind = JsonValueKind.String -> v.GetString()
                | _ -> null
            let id = text "id"
            // "replace" may be empty (a deletion); the other fields may not.
            let required name =
                match text name with
                | null -> failwithf "%s: entry '%s' lacks \"%s\"" path id name
                | "" when name <> "replace" -> failwithf "%s: entry '%s' has an empty \"%s\"" path id name
                | v -> v
            if String.IsNullOrWhiteSpace id then failwithf "%s: an entry lacks \"id\"" path
            { Id = id
              File = required "file"
              Find = required "find"
              Replace = required "replace"
              Filter = required "filter"
              What = (match text "what" with null -> "" | w -> w)
              Timeout =
                match e.TryGetProperty "timeout" with
                | true, v when v.ValueKind = JsonValueKind.Number -> Some(v.GetInt32())
                | _ -> None } ]
    match entries |> List.countBy (fun m -> m.Id) |> List.filter (fun (_, n) -> n > 1) with
    | [] -> ()
    | dups -> failwithf "%s: duplicate ids: %s" path (dups |> List.map fst |> String.concat ", ")
    for m in entries do
        if m.Find = m.Replace then failwithf "%s: entry '%s' replaces its text by itself" path m.Id
    entries

/// Occurrences of `find` in `text`, overlapping ones included (so "exactly once" is strict).
let occurrences (text: string) (find: string) =
    let rec count from n =
        match text.IndexOf(find, from, StringComparison.Ordinal) with
        | -1 -> n
        | i -> count (i + 1) (n + 1)
    count 0 0

let private utf8 = UTF8Encoding(false)

/// Problems of one entry against the files under `root` (empty when it applies cleanly).
let problems (root: string) (m: Mutation) =
    let path = Path.Combine(root, m.File)
    if not (m.File.Replace('\\', '/').StartsWith "src/Lookahead.Core/") then
        [ sprintf "%s: %s is not under src/Lookahead.Core" m.Id m.File ]
    elif not (File.Exists path) then
        [ sprintf "%s: %s does not exist" m.Id m.File ]
    else
        match occurrences (utf8.GetString(File.ReadAllBytes path)) m.Find with
        | 1 -> []
        | n -> [ sprintf "%s: the text to find occurs %d times in %s (it must occur exactly once): %s" m.Id n m.File m.Find ]

/// Folders never copied: version control, build outputs, generated results.
let private skipped = set [ ".git"; "bin"; "obj"; "artifacts"; "TestResults"; "BenchmarkDotNet.Artifacts"; "lookahead-compare"; ".fake"; ".ionide"; ".vs"; "node_modules" ]

let rec private copyTree (source: string) (target: string) =
    Directory.CreateDirectory target |> ignore
    for file in Directory.GetFiles source do
        if Path.GetFileName file <> ".git" then   // a worktree's .git is a file
            File.Copy(file, Path.Combine(target, Path.GetFileName file))
    for dir in Directory.GetDirectories source do
        if not (skipped.Contains(Path.GetFileName dir)) then copyTree dir (Path.Combine(target, Path.GetFileName dir))

type private RunResult = { ExitCode: int option; Lines: string list; Seconds: float }

/// Runs a command, its output going to `log` (never to the console); None as the exit code on a timeout,
/// after killing the whole process tree.
let private runLogged (workDir: string) (env: (string * string) list) (log: TextWriter) (timeoutSeconds: int) (file: string) (arguments: string) =
    let psi = ProcessStartInfo(file, arguments, WorkingDirectory = workDir, UseShellExecute = false,
                               RedirectStandardOutput = true, RedirectStandardError = true)
    for k, v in env do psi.Environment[k] <- v
    log.WriteLine(sprintf "$ %s %s" file arguments)
    log.Flush()
    let lines = ResizeArray<string>()
    let gate = obj ()
    let onLine (e: DataReceivedEventArgs) =
        if not (isNull e.Data) then lock gate (fun () -> lines.Add e.Data; log.WriteLine e.Data)
    use p = new Process(StartInfo = psi)
    p.OutputDataReceived.Add onLine
    p.ErrorDataReceived.Add onLine
    let clock = Stopwatch.StartNew()
    p.Start() |> ignore
    p.BeginOutputReadLine()
    p.BeginErrorReadLine()
    let exited = p.WaitForExit(timeoutSeconds * 1000)
    if not exited then
        (try p.Kill true with _ -> ())
        p.WaitForExit(30_000) |> ignore
    else
        p.WaitForExit()   // drains the asynchronous readers
    let code = if exited then Some p.ExitCode else None
    lock gate (fun () ->
        log.WriteLine(match code with Some c -> sprintf "[exit code %d after %.0f s]" c clock.Elapsed.TotalSeconds | None -> sprintf "[killed after the %d s timeout]" timeoutSeconds)
        log.Flush()
        { ExitCode = code; Lines = List.ofSeq lines; Seconds = clock.Elapsed.TotalSeconds })

/// The closing line of the test program: "N passed, N failed" (optionally ", N skipped").
let private summaryPattern = Regex(@"^(\d+) passed, (\d+) failed(, (\d+) skipped)?$")

/// Expecto resets the colour (ESC [0m) even under --colours 0; escape sequences are dropped before matching.
let private escapes = Regex("\u001b\\[[0-9;?]*[A-Za-z]")

let private summary (lines: string list) =
    lines
    |> List.rev
    |> List.tryPick (fun l ->
        let m = summaryPattern.Match(escapes.Replace(l, "").Trim())
        if m.Success then Some(int m.Groups[1].Value, int m.Groups[2].Value) else None)

let private firstError (lines: string list) =
    lines
    |> List.tryFind (fun l -> l.Contains ": error ")
    |> Option.map (fun l -> let l = l.Trim() in if l.Length > 220 then l.Substring(0, 220) + "…" else l)
    |> Option.defaultValue "the build failed"

let private label outcome =
    match outcome with
    | Killed _ -> "killed"
    | KilledByCompiler _ -> "killed by the compiler"
    | TimedOut -> "timed out (killed)"
    | Survived _ -> "SURVIVED"
    | NoTests -> "NO TESTS (filter matched nothing)"

let private execute (root: string) (o: Options) (selected: Mutation list) =
    let logs = Path.Combine(root, "artifacts", "mutate")
    Directory.CreateDirectory logs |> ignore
    let temp = Path.Combine(Path.GetTempPath(), sprintf "lookahead-mutate-%s" (Guid.NewGuid().ToString("N").Substring(0, 8)))
    let copy = Path.Combine(temp, "repo")
    // The oracle cases the checkout itself would use (the copy's relative path to ../shared is lost).
    let oracle =
        match Environment.GetEnvironmentVariable "LOOKAHEAD_ORACLE_DIR" with
        | null | "" ->
            let shared = Path.GetFullPath(Path.Combine(root, "..", "shared", "oracle", "cases"))
            if Directory.Exists shared then shared else Path.Combine(copy, "tests", "oracle", "cases")
        | dir -> dir
    let env = [ "LOOKAHEAD_ORACLE_DIR", oracle; "MSBUILDDISABLENODEREUSE", "1"; "DOTNET_CLI_TELEMETRY_OPTOUT", "1"; "DOTNET_NOLOGO", "1" ]
    let build log = runLogged copy env log o.BuildTimeout "dotnet" "build tests/Lookahead.Tests -c Release -nologo"
    let test log (filter: string) timeout =
        runLogged copy env log timeout "dotnet" ("run --project tests/Lookahead.Tests -c Release --no-build -- --sequenced --no-spinner --colours 0 " + filter)
    let mutable cancelled = false
    let onCancel = ConsoleCancelEventHandler(fun _ e -> e.Cancel <- true; cancelled <- true; eprintfn "mutate: stopping after the current mutation")
    Console.CancelKeyPress.AddHandler onCancel
    let results = ResizeArray<Mutation * Outcome * float>()
    try
        printfn "mutate: %d mutation(s); copying the repository to %s" selected.Length copy
        copyTree root copy
        printfn "mutate: building the unmutated copy (log: %s)" (Path.Combine(logs, "_unmutated.log"))
        do
            use log = new StreamWriter(Path.Combine(logs, "_unmutated.log"))
            let b = build log
            if b.ExitCode <> Some 0 then
                failwithf "mutate: the unmutated copy does not build (%s); see %s" (firstError b.Lines) (Path.Combine(logs, "_unmutated.log"))
            if o.Baseline then
                for filter in selected |> List.map (fun m -> m.Filter) |> List.distinct do
                    printfn "mutate: baseline %s" filter
                    let r = test log filter o.TestTimeout
                    match r.ExitCode, summary r.Lines with
                    | Some 0, Some(p, 0) when p > 0 -> printfn "  %d passed (%.0f s)" p r.Seconds
                    | _, Some(0, 0) -> failwithf "mutate: the baseline filter %s selects no tests" filter
                    | None, _ -> failwithf "mutate: the baseline run of %s timed out" filter
                    | _, s -> failwithf "mutate: the unmutated tests fail under %s (%A); fix them first" filter s

        let n = selected.Length
        for (k, m) in List.indexed selected do
            if not cancelled then
                let path = Path.Combine(copy, m.File)
                let original = File.ReadAllBytes path
                let text = utf8.GetString original
                match occurrences text m.Find with
                | 1 -> ()
                | c -> failwithf "mutate: %s: the text to find occurs %d times in the copy of %s" m.Id c m.File
                let clock = Stopwatch.StartNew()
                let outcome =
                    use log = new StreamWriter(Path.Combine(logs, m.Id + ".log"))
                    log.WriteLine(sprintf "mutation %s (%s)\n%s\n- %s\n+ %s\n" m.Id m.What m.File m.Find m.Replace)
                    try
                        File.WriteAllBytes(path, utf8.GetBytes(text.Replace(m.Find, m.Replace)))
                        let b = build log
                        match b.ExitCode with
                        | Some 0 ->
                            let r = test log m.Filter (defaultArg m.Timeout o.TestTimeout)
                            match r.ExitCode, summary r.Lines with
                            | None, _ -> TimedOut
                            | _, Some(0, 0) -> NoTests
                            | Some 0, Some(p, f) when f = 0 -> Survived(sprintf "%d passed" p)
                            | Some 0, None -> Survived "exit code 0, no summary line"
                            | Some _, Some(p, f) -> Killed(sprintf "%d of %d tests failed" f (p + f))
                            | Some c, None -> Killed(sprintf "exit code %d, no summary line (crashed?)" c)
                        | Some _ -> KilledByCompiler(firstError b.Lines)
                        | None -> failwithf "mutate: %s: the build timed out after %d s" m.Id o.BuildTimeout
                    finally
                        File.WriteAllBytes(path, original)
                let seconds = clock.Elapsed.TotalSeconds
                results.Add((m, outcome, seconds))
                let detail = match outcome with Killed d | KilledByCompiler d | Survived d -> " (" + d + ")" | _ -> ""
                printfn "[%d/%d] %s: %s%s, %.0f s" (k + 1) n m.Id (label outcome) detail seconds
    finally
        Console.CancelKeyPress.RemoveHandler onCancel
        if o.Keep then printfn "mutate: kept the copy at %s" copy
        elif Directory.Exists temp then
            try Directory.Delete(temp, true)
            with e -> eprintfn "mutate: could not remove %s: %s" temp e.Message

    let rs = List.ofSeq results
    let count f = rs |> List.filter (fun (_, x, _) -> f x) |> List.length
    let byTests = count (function Killed _ -> true | _ -> false)
    let byCompiler = count (function KilledByCompiler _ -> true | _ -> false)
    let timedOut = count (function TimedOut -> true | _ -> false)
    let noTests = rs |> List.filter (fun (_, x, _) -> x = NoTests) |> List.map (fun (m, _, _) -> m.Id)
    let survivors = rs |> List.filter (fun (_, x, _) -> match x with Survived _ -> true | _ -> false) |> List.map (fun (m, _, _) -> m.Id)
    let scored = rs.Length - noTests.Length
    let killed = byTests + byCompiler + timedOut
    printfn ""
    printfn "mutation results (logs in %s):" logs
    for (m, x, s) in rs do printfn "  %-34s %-24s %5.0f s  %s" m.Id (label x) s m.What
    let percent = if scored = 0 then 0.0 else 100.0 * float killed / float scored
    printfn "mutation score: %d killed of %d (%.1f %%)" killed scored percent
    printfn "  by the tests: %d; by the compiler: %d; timed out: %d" byTests byCompiler timedOut
    printfn "survivors: %s" (if survivors.IsEmpty then "none" else String.concat ", " survivors)
    if cancelled then printfn "(interrupted: %d of %d mutations ran)" rs.Length selected.Length
    if not noTests.IsEmpty then
        failwithf "mutate: the filters of %s select no tests; fix build/mutations.json" (String.concat ", " noTests)
    match o.FailUnder with
    | Some p when percent < p -> failwithf "mutate: score %.1f %% is below --fail-under %.1f %%" percent p
    | _ -> ()

let run (root: string) (args: string list) =
    let o = parseOptions args
    let dataFile = match o.DataFile with Some p -> Path.GetFullPath(p, root) | None -> Path.Combine(root, "build", "mutations.json")
    let all = load dataFile
    let unknown = o.Only |> List.filter (fun id -> not (all |> List.exists (fun m -> m.Id = id)))
    if not unknown.IsEmpty then
        failwithf "mutate: unknown mutation id(s): %s (see `dotnet fsi build.fsx mutate -- --list`)" (String.concat ", " unknown)
    let selected = if o.Only.IsEmpty then all else all |> List.filter (fun m -> List.contains m.Id o.Only)
    // Every selected entry must apply cleanly before anything is built.
    match selected |> List.collect (problems root) with
    | [] -> ()
    | errors -> failwithf "mutate: %d entr%s of %s cannot be applied:\n  %s" errors.Length (if errors.Length = 1 then "y" else "ies") dataFile (String.concat "\n  " errors)

    if o.ListOnly then
        printfn "%d mutations in %s (each text occurs exactly once):" selected.Length dataFile
        for m in selected do printfn "  %-34s %s: %s" m.Id m.File m.What
    else execute root o selected
