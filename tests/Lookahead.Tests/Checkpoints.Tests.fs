/// Checkpoints: bit-exact round trips, resuming gives the uninterrupted trajectory, mismatches and damaged
/// files are errors that name what is wrong, and nothing is half loaded.
module Lookahead.Tests.Checkpoints

open System
open System.IO
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators

let private temp () = Path.Combine(Path.GetTempPath(), sprintf "lookahead-ckpt-%d.safetensors" (Random.Shared.Next()))

/// Optimizers whose states exercise every kind of leaf: moments, maxima, counts, carries, running sums,
/// NaN scalars (the boost policy before its first window), 0-d tensors (Polyak), nested partitions.
let private optimizers : (string * (unit -> IGradientTransformation)) list =
    [ "adam amsgrad", fun () -> Optim.Adam(0.01, amsgrad = true)
      "nadam", fun () -> Optim.NAdam(0.01)
      "mars", fun () -> Optim.Mars(0.01, weightDecay = 0.1)
      "momo fstar", fun () -> Optim.Momo(1.0, estimateLowerBound = true)
      "momo-adam", fun () -> Optim.MomoAdam(0.1)
      "arsg obsb", fun () -> Optim.ArsgObsb(0.01, policy = BoostPolicy(Window = 7, Tolerance = 0.5))
      "muon with aux adam", fun () -> Optim.MuonWithAuxAdam()
      "scheduled adamw", fun () -> Transforms.Scheduled(fun t -> Optim.AdamW((Schedule.Cosine(0.01, 100L)).At t))
      "slow/fast sgd", fun () -> Transforms.SlowFastWeights(Optim.Sgd(0.05, 0.9), 4, 0.5) ]

let private contextAt (k: int) = StepContext.Empty.WithLoss(2.0 + sin (float k))

/// Runs `steps` steps from `parameters` and `state`; returns the final parameters and state.
let private go (tx: IGradientTransformation) (p: Problem) (first: int) (steps: int) (parameters: TensorTree) (state: IOptState) =
    let mutable theta, s = parameters, state
    for k in first .. first + steps - 1 do
        let struct (u, next) = tx.Update(tree p p.Grads.[k], s, theta, contextAt k)
        theta <- Updates.Apply(theta, u)
        s <- next
    theta, s

let private leavesIdentical (what: string) (a: IOptState) (b: IOptState) =
    let la, lb = Expect.stateLeaves a, Expect.stateLeaves b
    Expect.sequenceEqual (Array.map fst la) (Array.map fst lb) (what + ": leaf paths")
    for (path, x), (_, y) in Array.zip la lb do
        if not (Array.forall2 Expect.bitEqual x y) then failtestf "%s: leaf %s differs: %A vs %A" what path x y

[<Tests>]
let tests =
    testList "checkpoints" [
        testList "save, load, continue ≡ never stopping (bit-identical)" [
            for name, make in optimizers ->
                Expect.property name genLongProblem (fun p ->
                    use _ = torch.NewDisposeScope()
                    let tx = make ()
                    let half = p.Grads.Length / 2
                    let theta0 = tree p p.Params0
                    let thetaA, stateA = go tx p 0 p.Grads.Length theta0 (tx.Init theta0)
                    let thetaH, stateH = go tx p 0 half theta0 (tx.Init theta0)
                    let file = temp ()
                    try
                        Checkpoint.Save(file, tx, stateH, thetaH)
                        // A fresh optimizer value, fresh parameters from the file.
                        let tx2 = make ()
                        let restored = Checkpoint.LoadParameters file
                        let loaded = Checkpoint.Load(file, tx2, restored)
                        leavesIdentical "round trip" stateH loaded
                        Expect.treesIdentical "parameters round trip" thetaH restored
                        let thetaB, stateB = go tx2 p half (p.Grads.Length - half) restored loaded
                        Expect.treesIdentical "parameters after resuming" thetaA thetaB
                        leavesIdentical "state after resuming" stateA stateB
                    finally File.Delete file)
        ]

        test "a runner saves and loads; the resumed run equals the uninterrupted one" {
            use _ = torch.NewDisposeScope()
            let p0 () = TensorTree.Of(struct ("w", torch.linspace(-1.0, 1.0, 24L, dtype = torch.float64).reshape(6L, 4L)), struct ("b", torch.linspace(0.0, 1.0, 5L, dtype = torch.float64)))
            let grads k =
                TensorTree.Of(
                    struct ("w", torch.tensor([| for i in 0 .. 23 -> 0.1 * float (k % 3 - 1) + 0.01 * float i / 23.0 |], dtype = torch.float64).reshape(6L, 4L)),
                    struct ("b", torch.tensor([| for i in 0 .. 4 -> 0.05 * float k - 0.01 * float i |], dtype = torch.float64)))
            let tx () = Optim.MarsM(0.01)
            let pa = p0 ()
            use a = new Runner(tx (), pa)
            for k in 0 .. 9 do a.Step(grads k)
            let file = temp ()
            try
                a.Save file
                for k in 10 .. 19 do a.Step(grads k)
                let pb = Checkpoint.LoadParameters file
                use b = new Runner(tx (), pb)
                b.Load file
                for k in 10 .. 19 do b.Step(grads k)
                Expect.treesIdentical "parameters" pa (TensorTree.Of(pa.Names, [| for n in pa.Names -> pb.[n] |]))
            finally File.Delete file
        }

        testList "mismatches name what differs, and nothing is loaded" [
            let setup () =
                let p = TensorTree.Of(struct ("w", torch.ones([| 3L; 2L |], dtype = torch.float64)), struct ("b", torch.zeros([| 2L |], dtype = torch.float64)))
                let tx = Optim.Adam(0.01)
                let _, s = go tx { Names = [ "w"; "b" ]; Shapes = [ [| 3L; 2L |]; [| 2L |] ]; Params0 = []; Grads = [ [ Array.create 6 0.1; [| 0.2; 0.3 |] ] ] } 0 1 p (tx.Init p)
                let file = temp ()
                Checkpoint.Save(file, tx, s, p)
                file, p
            let fails (f: unit -> unit) (fragments: string list) =
                let e = Expect.throwsC f id
                Expect.equal (e.GetType()) typeof<CheckpointException> (sprintf "a CheckpointException: %s" e.Message)
                for fr in fragments do Expect.stringContains e.Message fr "names the mismatch"
            yield test "another optimizer" {
                use _ = torch.NewDisposeScope()
                let file, p = setup ()
                try fails (fun () -> Checkpoint.Load(file, Optim.AdamW(0.01), p) |> ignore) [ "saved for another optimizer"; "'adam' was adam when saved, here it is adam_w" ] finally File.Delete file
            }
            yield test "other hyperparameters" {
                use _ = torch.NewDisposeScope()
                let file, p = setup ()
                try fails (fun () -> Checkpoint.Load(file, Optim.Adam(0.02), p) |> ignore) [ "other hyperparameters"; "'adam/lr' was 0.01 when saved, here it is 0.02" ]
                finally File.Delete file
            }
            yield test "differently shaped parameters" {
                use _ = torch.NewDisposeScope()
                let file, _ = setup ()
                let q = TensorTree.Of(struct ("w", torch.ones([| 2L; 3L |], dtype = torch.float64)), struct ("b", torch.zeros([| 2L |], dtype = torch.float64)))
                try fails (fun () -> Checkpoint.Load(file, Optim.Adam(0.01), q) |> ignore) [ "parameter 'w'"; "[3, 2]"; "[2, 3]" ] finally File.Delete file
            }
            yield test "other parameter names" {
                use _ = torch.NewDisposeScope()
                let file, _ = setup ()
                let q = TensorTree.Of(struct ("w", torch.ones([| 3L; 2L |], dtype = torch.float64)), struct ("bias", torch.zeros([| 2L |], dtype = torch.float64)))
                try fails (fun () -> Checkpoint.Load(file, Optim.Adam(0.01), q) |> ignore) [ "bias" ] finally File.Delete file
            }
            yield test "a truncated file" {
                use _ = torch.NewDisposeScope()
                let file, p = setup ()
                try
                    let bytes = File.ReadAllBytes file
                    for cut in [ 0; 5; 8; 20; bytes.Length / 2; bytes.Length - 1 ] do
                        File.WriteAllBytes(file, bytes.[.. cut - 1])
                        fails (fun () -> Checkpoint.Load(file, Optim.Adam(0.01), p) |> ignore) [ file ]
                finally File.Delete file
            }
            yield test "a flipped data byte (the checksum)" {
                use _ = torch.NewDisposeScope()
                let file, p = setup ()
                try
                    let bytes = File.ReadAllBytes file
                    bytes.[bytes.Length - 3] <- bytes.[bytes.Length - 3] ^^^ 1uy
                    File.WriteAllBytes(file, bytes)
                    fails (fun () -> Checkpoint.Load(file, Optim.Adam(0.01), p) |> ignore) [ "checksum" ]
                finally File.Delete file
            }
            yield test "another version" {
                use _ = torch.NewDisposeScope()
                let file, p = setup ()
                try
                    let text = Text.Encoding.Latin1.GetString(File.ReadAllBytes file)
                    File.WriteAllBytes(file, Text.Encoding.Latin1.GetBytes(text.Replace("\"version\":\"3\"", "\"version\":\"9\"")))
                    fails (fun () -> Checkpoint.Load(file, Optim.Adam(0.01), p) |> ignore) [ "version 9" ]
                finally File.Delete file
            }
            yield test "version 1 (no fingerprint) is refused, saying why" {
                use _ = torch.NewDisposeScope()
                let file, p = setup ()
                try
                    let text = Text.Encoding.Latin1.GetString(File.ReadAllBytes file)
                    Expect.stringContains text "\"version\":\"3\"" "the file is version 3"
                    File.WriteAllBytes(file, Text.Encoding.Latin1.GetBytes(text.Replace("\"version\":\"3\"", "\"version\":\"1\"")))
                    fails (fun () -> Checkpoint.Load(file, Optim.Adam(0.01), p) |> ignore) [ "version 1"; "hyperparameters" ]
                finally File.Delete file
            }
            // A file written by the library when it wrote version 2 (SHA-256): fixtures/checkpoint-v2-adam.fsx made it.
            let v2 = Path.Combine(__SOURCE_DIRECTORY__, "fixtures", "checkpoint-v2-adam.ckpt")
            let v2Setup () =
                let p = TensorTree.Of(struct ("w", torch.tensor([| 0.5; -1.25; 2.0; 0.125; -0.75; 1.5 |], dtype = torch.float64).reshape(3L, 2L)), struct ("b", torch.tensor([| 0.25; -0.5 |], dtype = torch.float64)))
                let adam = Optim.Adam(0.01)
                let mutable s = adam.Init p
                for k in 1 .. 3 do
                    let g = p.Map(fun t -> t.mul((float k).ToScalar()).add((0.1).ToScalar()))
                    let struct (u, next) = adam.Update(g, s, p, StepContext.Empty)
                    s <- next
                    for t, d in Seq.zip p.Tensors u.Tensors do t.add_(d) |> ignore
                p, s
            yield test "a version 2 file (SHA-256) written by the earlier library loads bit for bit" {
                use _ = torch.NewDisposeScope()
                let text = Text.Encoding.Latin1.GetString(File.ReadAllBytes v2)
                Expect.stringContains text "\"version\":\"2\"" "the fixture is version 2"
                Expect.stringContains text "\"sha256\":" "with a SHA-256"
                let p, s = v2Setup ()
                let loaded = Checkpoint.Load(v2, Optim.Adam(0.01), p)
                leavesIdentical "version 2 state" loaded s
                let saved = Checkpoint.LoadParameters v2
                Expect.sequenceEqual saved.Names p.Names "parameter names"
                for a, b in Seq.zip saved.Tensors p.Tensors do Expect.sequenceEqual (values a) (values b) "parameter values"
            }
            yield test "a version 2 file with a flipped data byte fails its SHA-256" {
                use _ = torch.NewDisposeScope()
                let file = temp ()
                try
                    let bytes = File.ReadAllBytes v2
                    bytes.[bytes.Length - 3] <- bytes.[bytes.Length - 3] ^^^ 1uy
                    File.WriteAllBytes(file, bytes)
                    let p, _ = v2Setup ()
                    fails (fun () -> Checkpoint.Load(file, Optim.Adam(0.01), p) |> ignore) [ "checksum mismatch" ]
                finally File.Delete file
            }
            yield test "a runner keeps its state when the checkpoint does not match" {
                use _ = torch.NewDisposeScope()
                let file, _ = setup ()
                let q = TensorTree.Of(struct ("w", torch.ones([| 3L; 2L |], dtype = torch.float64)), struct ("b", torch.zeros([| 2L |], dtype = torch.float64)))
                use r = new Runner(Optim.AdamW(0.01), q)
                r.Step(q.Map(fun t -> torch.ones_like t))
                let before = Expect.stateLeaves r.State
                try
                    fails (fun () -> r.Load file) [ "saved for another optimizer" ]
                    Expect.equal (Expect.stateLeaves r.State |> Array.map fst) (Array.map fst before) "same leaves"
                    for (a, x), (_, y) in Array.zip (Expect.stateLeaves r.State) before do
                        Expect.isTrue (Array.forall2 Expect.bitEqual x y) (sprintf "leaf %s unchanged" a)
                finally File.Delete file
            }
        ]
    ]
