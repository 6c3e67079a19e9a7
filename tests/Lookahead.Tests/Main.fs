module Lookahead.Tests.Main

open Expecto
open Expecto.Impl

[<EntryPoint>]
let main argv =
    if argv |> Array.contains "--print-fingerprints" then
        // Used by the identity tests: a second process prints the fingerprints it computes.
        Lookahead.Tests.Identity.printFingerprints ()
        0
    elif argv = [| "--write-torch-fixtures" |] then
        // Used once to make fixtures/torch-state-dicts (see its make.py).
        Lookahead.Tests.TorchStateDicts.writeFixtures ()
        0
    elif argv.Length = 2 && argv.[0] = "--checkpoint-save-loop" then
        // Used by the durability test: saves checkpoints until it is killed.
        Lookahead.Tests.CheckpointDurability.saveLoop argv.[1]
        0
    else
        // The closing line CI reads: "N passed, N failed" (errors count as failures).
        let printer =
            { TestPrinters.defaultPrinter with
                summary =
                    fun config summary ->
                        async {
                            do! TestPrinters.defaultPrinter.summary config summary
                            let failed = summary.failed.Length + summary.errored.Length
                            let skipped = summary.ignored.Length
                            if skipped > 0 then printfn "%d passed, %d failed, %d skipped" summary.passed.Length failed skipped
                            else printfn "%d passed, %d failed" summary.passed.Length failed
                        } }
        runTestsInAssemblyWithCLIArgs [ CLIArguments.Printer printer ] argv
