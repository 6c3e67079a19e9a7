/// Agreement with the official implementations: every case in shared/oracle/cases replayed through the
/// compatibility map of the `lookahead` tool (Lookahead.Cli.Replay). Tolerance |a − b| ≤ 1e-10 + 1e-8·|b| on
/// every parameter after every step, and on every torch.optim state slot.
module Lookahead.Tests.Oracle

open System
open System.IO
open System.Reflection
open System.Text.Json
open Expecto
open Lookahead
open Lookahead.Cli

/// The folder named by the environment variable if set; else the build's folder next to the checkout (it may hold
/// more cases than were handed over); else the copy vendored in tests/oracle.
let private caseFolder (variable: string) (sharedKey: string) (vendoredKey: string) =
    let fromEnv = Environment.GetEnvironmentVariable variable
    let metadata key =
        Assembly.GetExecutingAssembly().GetCustomAttributes<AssemblyMetadataAttribute>()
        |> Seq.find (fun a -> a.Key = key)
        |> fun a -> Path.GetFullPath a.Value
    if not (String.IsNullOrEmpty fromEnv) then fromEnv
    elif Directory.Exists(metadata sharedKey) then metadata sharedKey
    else metadata vendoredKey

/// LOOKAHEAD_ORACLE_DIR, else shared/oracle/cases, else tests/oracle/cases.
let oracleDir = caseFolder "LOOKAHEAD_ORACLE_DIR" "OracleDir" "VendoredOracleDir"

let caseFiles () =
    if Directory.Exists oracleDir then Directory.GetFiles(oracleDir, "*.json") |> Array.sort else [||]

/// The families recorded later (schedule-free, AdEMAMix, ADOPT, cautious, Prodigy, SOAP, hypergradient descent):
/// LOOKAHEAD_NEW_FAMILIES_DIR, else shared/oracle/new-families, else tests/oracle/new-families.
let newFamiliesDir = caseFolder "LOOKAHEAD_NEW_FAMILIES_DIR" "NewFamiliesDir" "VendoredNewFamiliesDir"

/// Families of the new set that Lookahead does not build yet, with where they are planned.
let private notYetBuilt : (string * string) list = []

let newFamilyFiles () =
    if Directory.Exists newFamiliesDir then Directory.GetFiles(newFamiliesDir, "*.json") |> Array.sort else [||]

/// Replays `file` after `edit` changed its JSON (for the negative tests).
let private replayEdited (file: string) (edit: Nodes.JsonObject -> unit) =
    let node = Nodes.JsonNode.Parse(File.ReadAllText file).AsObject()
    edit node
    use doc = JsonDocument.Parse(node.ToJsonString())
    Replay.Run("edited", doc.RootElement)

/// Runs the built `lookahead` tool (copied next to the tests) and returns its exit code and output lines.
let lookahead (args: string) =
    let dll = Path.Combine(AppContext.BaseDirectory, "lookahead.dll")
    let psi = Diagnostics.ProcessStartInfo("dotnet", sprintf "\"%s\" %s" dll args, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    use p = Diagnostics.Process.Start psi
    let out = p.StandardOutput.ReadToEnd()
    let err = p.StandardError.ReadToEnd()
    p.WaitForExit()
    p.ExitCode, (out + err).Split('\n', StringSplitOptions.RemoveEmptyEntries)

/// A row's hyperparameters with every reference default filled in (as a case file records them); an argument
/// without a default gets 0.5. Arguments accepted without a default (routing, remarks) are left out.
let private defaultsOf (row: Mapping) =
    let node = Nodes.JsonObject()
    let toNode (value: obj) : Nodes.JsonNode =
        match value with
        | null -> null
        | :? bool as b -> Nodes.JsonValue.Create b
        | :? float as d when Double.IsPositiveInfinity d -> Nodes.JsonValue.Create "inf"   // as the case files write it
        | :? float as d -> Nodes.JsonValue.Create d
        | :? int as i -> Nodes.JsonValue.Create i
        | :? string as t -> Nodes.JsonValue.Create t
        | :? struct (float * float) as p ->
            let struct (x, y) = p
            Nodes.JsonArray(Nodes.JsonValue.Create<float> x, Nodes.JsonValue.Create<float> y)
        | :? struct (float * float * float) as p ->
            let struct (x, y, z) = p
            Nodes.JsonArray(Nodes.JsonValue.Create<float> x, Nodes.JsonValue.Create<float> y, Nodes.JsonValue.Create<float> z)
        | other -> failwithf "row %s: a default of type %s" row.Name (other.GetType().Name)
    for a in row.Arguments do
        if a.HasDefault then node[a.Name] <- toNode a.Default
        elif a.Role = ArgumentRole.Mapped then node[a.Name] <- Nodes.JsonValue.Create 0.5
    node

/// The param groups a row with group rows is built from: group i holds parameter i, with row i's defaults.
let private groupsOf (row: Mapping) (names: string[]) =
    let groups = Nodes.JsonArray()
    row.GroupRows |> Seq.iteri (fun i r ->
        let g = defaultsOf r
        g["params"] <- Nodes.JsonArray(Nodes.JsonValue.Create names.[i])
        g["use_muon"] <- Nodes.JsonValue.Create (obj.ReferenceEquals(r, Compatibility.MuonGroupRow))
        groups.Add g)
    groups

let private element (node: Nodes.JsonNode) = (JsonDocument.Parse(node.ToJsonString())).RootElement

/// Builds `row` through the map, by name, from `edit` applied to its defaults.
let private buildRow (row: Mapping) (edit: Nodes.JsonObject -> unit) =
    let names = [| "W"; "b" |]
    let h = defaultsOf row
    edit h
    let runtime = if row.GroupRows.Count = 0 then Compatibility.Runtime() else Compatibility.Runtime(ParamGroups = Nullable(element (groupsOf row names)))
    Compatibility.Build(row.Name, element h, names, runtime)

/// Whether a case's JSON value is the reference default `d` as the table records it.
let private isDefault (d: obj) (v: JsonElement) =
    match d with
    | null -> v.ValueKind = JsonValueKind.Null
    | :? bool as b -> v.ValueKind = (if b then JsonValueKind.True else JsonValueKind.False)
    | :? float as x when Double.IsPositiveInfinity x -> v.ValueKind = JsonValueKind.String && v.GetString() = "inf"
    | :? float as x -> v.ValueKind = JsonValueKind.Number && v.GetDouble() = x
    | :? int as i -> v.ValueKind = JsonValueKind.Number && v.GetDouble() = float i
    | :? string as t -> v.ValueKind = JsonValueKind.String && v.GetString() = t
    | :? struct (float * float) as p ->
        let struct (x, y) = p
        v.ValueKind = JsonValueKind.Array && v.GetArrayLength() = 2 && v[0].GetDouble() = x && v[1].GetDouble() = y
    | :? struct (float * float * float) as p ->
        let struct (x, y, z) = p
        v.ValueKind = JsonValueKind.Array && v.GetArrayLength() = 3 && v[0].GetDouble() = x && v[1].GetDouble() = y && v[2].GetDouble() = z
    | _ -> false

[<Tests>]
let tests =
    testList "oracle: official implementations' trajectories (|a−b| ≤ 1e-10 + 1e-8·|b|)" [
        yield test "every case of the handed-over set is present" {
            Expect.isTrue (Directory.Exists oracleDir) (sprintf "oracle folder %s not found (set LOOKAHEAD_ORACLE_DIR)" oracleDir)
            Expect.isGreaterThanOrEqual (caseFiles ()).Length 30 "the oracle folder holds the 30 handed-over cases"
        }
        for file in caseFiles () do
            yield test (Path.GetFileNameWithoutExtension file) {
                let r = Replay.Run file
                if not r.Passed then failtestf "%s\n%s" r.Line r.Detail
            }
        yield test "the new families' cases are present" {
            Expect.isGreaterThanOrEqual (newFamilyFiles ()).Length 14 (sprintf "the new-families folder %s holds the 14 handed-over cases" newFamiliesDir)
        }
        for file in newFamilyFiles () do
            let name = Path.GetFileNameWithoutExtension file
            match notYetBuilt |> List.tryFind (fun (prefix, _) -> name.StartsWith prefix) with
            | Some (_, why) -> yield ptest (sprintf "new families: %s (pending: %s)" name why) { () }
            | None ->
                yield test (sprintf "new families: %s" name) {
                    let r = Replay.Run file
                    if not r.Passed then failtestf "%s\n%s" r.Line r.Detail
                }

        yield testSequenced <| testList "the lookahead tool" [
            test "lookahead replay prints a line per case and 'N passed, 0 failed', exit code 0" {
                let code, lines = lookahead (sprintf "replay \"%s\"" oracleDir)
                let n = caseFiles().Length
                Expect.equal code 0 (String.Join("\n", lines))
                Expect.equal (lines |> Array.last) (sprintf "%d passed, 0 failed" n) "the closing line"
                Expect.equal (lines |> Array.filter (fun l -> l.EndsWith " ok") |> Array.length) n "one ok line per case"
                Expect.isTrue (lines |> Array.exists (fun l -> l.StartsWith "mars_adamw_defaults max_abs=")) "lines name the case and give max_abs"
            }
            test "a failing case makes the exit code 1" {
                let dir = Path.Combine(Path.GetTempPath(), sprintf "lookahead-replay-%d" (Random.Shared.Next()))
                Directory.CreateDirectory dir |> ignore
                try
                    let node = Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(oracleDir, "torch_adam.json"))).AsObject()
                    node["hyperparameters"].AsObject()["lr"] <- Nodes.JsonValue.Create 0.02
                    File.WriteAllText(Path.Combine(dir, "torch_adam_wrong_lr.json"), node.ToJsonString())
                    let code, lines = lookahead (sprintf "replay \"%s\"" dir)
                    Expect.equal code 1 "exit code"
                    Expect.equal (lines |> Array.last) "0 passed, 1 failed" "the closing line"
                finally Directory.Delete(dir, true)
            }
            test "lookahead compare writes its table and plots, deterministically; bad options are named" {
                let dir = Path.Combine(Path.GetTempPath(), sprintf "lookahead-compare-%d" (Random.Shared.Next()))
                try
                    let run out = lookahead (sprintf "compare --task mlp,modadd --optimizers adam,muon,momo-adam --steps 12 --seed 3 --out \"%s\"" out)
                    let code, lines = run (Path.Combine(dir, "a"))
                    Expect.equal code 0 (String.Join("\n", lines))
                    for f in [ "losses.csv"; "summary.md"; "report.html"; "loss-mlp.png"; "loss-modadd.png" ] do
                        Expect.isTrue (File.Exists(Path.Combine(dir, "a", f))) (sprintf "%s written" f)
                    let summary = File.ReadAllLines(Path.Combine(dir, "a", "summary.md"))
                    Expect.equal summary.Length (2 + 2 * 3) "a header, a rule and one row per task and optimizer"
                    let png = File.ReadAllBytes(Path.Combine(dir, "a", "loss-mlp.png"))
                    Expect.sequenceEqual png.[.. 3] [| 0x89uy; 0x50uy; 0x4Euy; 0x47uy |] "a PNG file"
                    let code2, _ = run (Path.Combine(dir, "b"))
                    Expect.equal code2 0 "second run"
                    Expect.equal (File.ReadAllText(Path.Combine(dir, "a", "losses.csv"))) (File.ReadAllText(Path.Combine(dir, "b", "losses.csv"))) "same seed, same losses"
                    let code3, lines3 = lookahead "compare --optimizers adam,frobnicator"
                    Expect.equal code3 2 "exit code for an unknown optimizer"
                    Expect.isTrue (lines3 |> Array.exists (fun l -> l.Contains "unknown optimizer 'frobnicator'")) "names it"
                    let code4, lines4 = lookahead "compare --help"
                    Expect.equal code4 0 "compare --help"
                    for word in [ "--task"; "--optimizers"; "--steps"; "--seed"; "--out"; "modadd"; "momo-adam" ] do
                        Expect.isTrue (lines4 |> Array.exists (fun l -> l.Contains word)) (sprintf "--help documents %s" word)
                finally if Directory.Exists dir then Directory.Delete(dir, true)
            }
            test "lookahead --help documents replay; an unknown command is an error" {
                let code, lines = lookahead "--help"
                Expect.equal code 0 "exit code of --help"
                Expect.isTrue (lines |> Array.exists (fun l -> l.Contains "lookahead replay PATH")) "usage names replay"
                let knownLine = lines |> Array.find (fun l -> l.StartsWith "Known optimizers:")
                Expect.equal knownLine (sprintf "Known optimizers: %s" (String.Join(", ", Compatibility.Optimizers))) "--help lists the table's names"
                let codeR, linesR = lookahead "replay --help"
                Expect.equal codeR 0 "exit code of replay --help"
                for row in Compatibility.Table do
                    Expect.isTrue (linesR |> Array.exists (fun l -> l.TrimStart().StartsWith row.Name)) (sprintf "replay --help lists %s" row.Name)
                Expect.isTrue (linesR |> Array.exists (fun l -> l.Contains "lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0, amsgrad=False")) "with its arguments and defaults"
                let code2, lines2 = lookahead "frobnicate"
                Expect.equal code2 2 "exit code of an unknown command"
                Expect.isTrue (lines2 |> Array.exists (fun l -> l.Contains "unknown command 'frobnicate'")) "names the command"
            }
        ]
        yield testList "the compatibility map refuses to guess" [
            let adam = Path.Combine(oracleDir, "torch_adam.json")
            test "an unknown hyperparameter is an error naming it" {
                let r = replayEdited adam (fun n -> n["hyperparameters"].AsObject()["lookahead_magic"] <- Nodes.JsonValue.Create 3.0)
                Expect.isFalse r.Passed "must fail"
                Expect.stringContains r.Detail "'lookahead_magic' is not mapped" "names the hyperparameter"
            }
            test "a missing hyperparameter is an error naming it" {
                let r = replayEdited adam (fun n -> n["hyperparameters"].AsObject().Remove "eps" |> ignore)
                Expect.isFalse r.Passed "must fail"
                Expect.stringContains r.Detail "'eps' is missing" "names the hyperparameter"
            }
            test "an unknown optimizer is an error naming it" {
                let r = replayEdited adam (fun n -> n["optimizer"] <- Nodes.JsonValue.Create "torch.optim.Adamax")
                Expect.isFalse r.Passed "must fail"
                Expect.stringContains r.Detail "torch.optim.Adamax" "names the optimizer"
            }
            test "maximize = true is refused, not ignored" {
                let r = replayEdited adam (fun n -> n["hyperparameters"].AsObject()["maximize"] <- Nodes.JsonValue.Create true)
                Expect.isFalse r.Passed "must fail"
                Expect.stringContains r.Detail "maximize" "names the flag"
            }
            test "a case missing its gradients is an error naming the field" {
                let r = replayEdited adam (fun n -> n.Remove "grads" |> ignore)
                Expect.isFalse r.Passed "must fail"
                Expect.stringContains r.Detail "'grads' is missing" "names the field"
            }
            test "a wrong reference value is caught (the replay can fail)" {
                let r = replayEdited adam (fun n ->
                    let v = n["trajectory"].[19].[0].[3]
                    n["trajectory"].[19].[0].[3] <- Nodes.JsonValue.Create (v.GetValue<float>() + 1e-6))
                Expect.isFalse r.Passed "a 1e-6 change of one value must fail"
                Expect.stringContains r.Detail "step 20 parameter W index 3" "names the step, tensor and index"
            }
            test "a MARS case with another mars_type is an error" {
                let r = replayEdited (Path.Combine(oracleDir, "mars_adamw_defaults.json")) (fun n -> n["hyperparameters"].AsObject()["mars_type"] <- Nodes.JsonValue.Create "mars-sgd")
                Expect.isFalse r.Passed "must fail"
                Expect.stringContains r.Detail "mars-sgd" "names the value"
            }
        ]

        yield testList "the compatibility table" [
            test "every row builds from its reference defaults, and its factory reads exactly the arguments the row lists" {
                for row in Compatibility.Table do
                    try buildRow row ignore |> ignore
                    with e -> failtestf "%s: %s: %s" row.Name (e.GetType().Name) e.Message
            }
            test "a factory that skips an argument its row lists, or reads one it does not list, is a table error" {
                let sgd (read: ArgumentValues -> float) = Func<ArgumentValues, IGradientTransformation>(fun a -> Optim.Sgd(read a))
                let lr = Argument("lr", ArgumentKind.Number, box 0.1)
                let eps = Argument("eps", ArgumentKind.Number, box 1e-8)
                let h = element (Nodes.JsonObject(dict [ "lr", (Nodes.JsonValue.Create 0.1 :> Nodes.JsonNode) ]))
                let skips = Mapping("skips", [| lr; eps.MayBeAbsent "test" |], sgd (fun a -> a.Num "lr"))
                let e1 = Expect.throwsC (fun () -> skips.Bind(h, [| "W" |], Compatibility.Runtime()) |> ignore) id
                Expect.stringContains e1.Message "'eps'" "names the unread argument"
                let strays = Mapping("strays", [| lr |], sgd (fun a -> a.Num "lr" + a.Num "momentum"))
                let e2 = Expect.throwsC (fun () -> strays.Bind(h, [| "W" |], Compatibility.Runtime()) |> ignore) id
                Expect.stringContains e2.Message "'momentum'" "names the unlisted argument"
            }
            test "every row, and every param-group row, has a unique name and lists each argument once; optional ones have defaults" {
                let rows = [ for r in Compatibility.Table do yield r; yield! r.GroupRows ]
                Expect.equal (Compatibility.Optimizers |> Seq.distinct |> Seq.length) (Compatibility.Optimizers.Count) "names and aliases are unique"
                for r in rows do
                    Expect.equal (r.Arguments |> Seq.map (fun a -> a.Name) |> Seq.distinct |> Seq.length) r.Arguments.Count (sprintf "%s lists an argument twice" r.Name)
                    for a in r.Arguments do
                        if a.Role = ArgumentRole.Optional || a.Role = ArgumentRole.Refused then
                            Expect.isTrue a.HasDefault (sprintf "%s.%s may be absent, so it needs a default" r.Name a.Name)
            }
            test "a hyperparameter no row lists is an error naming it, for every row" {
                for row in Compatibility.Table do
                    let e = Expect.throwsC (fun () -> buildRow row (fun h -> h["lookahead_magic"] <- Nodes.JsonValue.Create 3.0) |> ignore) id
                    Expect.isTrue (e :? CompatibilityException) (sprintf "%s: %s" row.Name e.Message)
                    Expect.stringContains e.Message "'lookahead_magic' is not mapped" row.Name
            }
            test "each argument a row requires is an error naming it when missing, for every row" {
                let mutable n = 0
                for row in Compatibility.Table do
                    for a in row.Arguments do
                        if a.Role = ArgumentRole.Mapped then
                            n <- n + 1
                            let e = Expect.throwsC (fun () -> buildRow row (fun h -> h.Remove a.Name |> ignore) |> ignore) id
                            Expect.stringContains e.Message (sprintf "'%s' is missing" a.Name) row.Name
                Expect.isGreaterThan n 80 "the rows require many arguments"
            }
            test "maximize = true is refused by every row that has the flag" {
                for row in Compatibility.Table do
                    for a in row.Arguments do
                        if a.Role = ArgumentRole.Refused then
                            let e = Expect.throwsC (fun () -> buildRow row (fun h -> h[a.Name] <- Nodes.JsonValue.Create true) |> ignore) id
                            Expect.stringContains e.Message (sprintf "%s = true is not supported" a.Name) row.Name
            }
            test "the rows' defaults are those the reference code filled into the cases" {
                // A case records every constructor argument; those not in constructor_kwargs hold the reference default.
                let mutable compared = 0
                let compare (row: Mapping) (given: JsonElement) (recorded: JsonElement) where =
                    for p in recorded.EnumerateObject() do
                        match row.Find p.Name with
                        | null -> ()
                        | a when a.HasDefault && not (given.ValueKind = JsonValueKind.Object && fst (given.TryGetProperty p.Name)) ->
                            compared <- compared + 1
                            if not (isDefault a.Default p.Value) then
                                failtestf "%s: %s.%s = %s in the case, but the table says %O" where row.Name p.Name (p.Value.GetRawText()) a
                        | _ -> ()
                for file in Array.append (caseFiles ()) (newFamilyFiles ()) do
                    use doc = JsonDocument.Parse(File.ReadAllText file)
                    let root = doc.RootElement
                    let name = Path.GetFileNameWithoutExtension file
                    match Compatibility.Find(root.GetProperty("optimizer").GetString()) with
                    | null -> ()
                    | row ->
                        let kwargs = root.GetProperty "constructor_kwargs"
                        compare row kwargs (root.GetProperty "hyperparameters") name
                        if row.GroupRows.Count > 0 then
                            let given = kwargs.GetProperty("param_groups").EnumerateArray() |> Array.ofSeq
                            root.GetProperty("param_groups").EnumerateArray() |> Seq.iteri (fun i g ->
                                let r = if g.GetProperty("use_muon").GetBoolean() then Compatibility.MuonGroupRow else Compatibility.AuxAdamGroupRow
                                compare r given.[i] g (sprintf "%s group %d" name i))
                Expect.isGreaterThan compared 100 "defaults compared"
            }
            test "an optimizer the table does not know is an error naming it and listing the known ones" {
                let known = sprintf "(known: %s)" (String.Join(", ", Compatibility.Optimizers))
                let r = replayEdited (Path.Combine(oracleDir, "torch_adam.json")) (fun n -> n["optimizer"] <- Nodes.JsonValue.Create "torch.optim.Adamax")
                Expect.stringContains r.Detail ("unknown optimizer 'torch.optim.Adamax' " + known) "names it and lists the table"
                // The families not yet in the library: refused with that message, not half-run.
                for file in newFamilyFiles () do
                    if notYetBuilt |> List.exists (fun (prefix, _) -> Path.GetFileName(file).StartsWith prefix) then
                        use doc = JsonDocument.Parse(File.ReadAllText file)
                        let optimizer = doc.RootElement.GetProperty("optimizer").GetString()
                        let r = Replay.Run file
                        Expect.isFalse r.Passed file
                        Expect.stringContains r.Detail (sprintf "CompatibilityException: unknown optimizer '%s' %s" optimizer known) file
            }
        ]
    ]
