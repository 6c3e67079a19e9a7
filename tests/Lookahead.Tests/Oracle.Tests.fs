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

/// LOOKAHEAD_ORACLE_DIR if set; else shared/oracle/cases next to the checkout (it may hold more cases than
/// were handed over); else the copy vendored in tests/oracle/cases.
let oracleDir =
    let fromEnv = Environment.GetEnvironmentVariable "LOOKAHEAD_ORACLE_DIR"
    let metadata key =
        Assembly.GetExecutingAssembly().GetCustomAttributes<AssemblyMetadataAttribute>()
        |> Seq.find (fun a -> a.Key = key)
        |> fun a -> Path.GetFullPath a.Value
    if not (String.IsNullOrEmpty fromEnv) then fromEnv
    elif Directory.Exists(metadata "OracleDir") then metadata "OracleDir"
    else metadata "VendoredOracleDir"

let caseFiles () =
    if Directory.Exists oracleDir then Directory.GetFiles(oracleDir, "*.json") |> Array.sort else [||]

/// Replays `file` after `edit` changed its JSON (for the negative tests).
let private replayEdited (file: string) (edit: Nodes.JsonObject -> unit) =
    let node = Nodes.JsonNode.Parse(File.ReadAllText file).AsObject()
    edit node
    use doc = JsonDocument.Parse(node.ToJsonString())
    Replay.Run("edited", doc.RootElement)

/// Runs the built `lookahead` tool (copied next to the tests) and returns its exit code and output lines.
let private lookahead (args: string) =
    let dll = Path.Combine(AppContext.BaseDirectory, "lookahead.dll")
    let psi = Diagnostics.ProcessStartInfo("dotnet", sprintf "\"%s\" %s" dll args, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    use p = Diagnostics.Process.Start psi
    let out = p.StandardOutput.ReadToEnd()
    let err = p.StandardError.ReadToEnd()
    p.WaitForExit()
    p.ExitCode, (out + err).Split('\n', StringSplitOptions.RemoveEmptyEntries)

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
    ]
