/// Checkpoints at model scale: a process killed (SIGKILL) at random points while saving leaves the previous
/// checkpoint loadable bit for bit; saving and loading stream the tensors (no managed copy of a tensor, a tensor
/// over 2 GiB); 16-bit tensors round-trip.
module Lookahead.Tests.CheckpointDurability

open System
open System.Diagnostics
open System.IO
open System.Reflection
open Expecto
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators

/// Adam's state after k steps on a fixed 2 × 1M-float problem: what save k of the writer holds.
let private stateAfter (k: int) =
    let parameters = TensorTree.Of(struct ("w", torch.linspace(-1.0, 1.0, 1_000_000L, dtype = torch.float32)), struct ("b", torch.ones([| 1_000_000L |], dtype = torch.float32)))
    let tx = Optim.Adam(1e-3)
    let mutable state = tx.Init parameters
    for j in 1 .. k do
        let g = parameters.Map(fun p -> p.mul((float j * 0.01).ToScalar()))
        let struct (u, s) = tx.Update(g, state, parameters, StepContext.Empty)
        state <- s
    tx, state, parameters

/// The writer the test kills: saves Adam's state after k = 1, 2, … steps to `path`, printing "saved k" after each.
let saveLoop (path: string) =
    torch.InitializeDeviceType DeviceType.CPU
    let mutable k = 1
    while true do
        use _ = torch.NewDisposeScope()
        let tx, state, parameters = stateAfter k
        Checkpoint.Save(path, tx, state, parameters)
        Console.Out.WriteLine(sprintf "saved %d" k)
        Console.Out.Flush()
        k <- k + 1

let private writer (path: string) =
    let exe = Environment.ProcessPath
    let entry = Assembly.GetEntryAssembly().Location
    let args = sprintf "--checkpoint-save-loop \"%s\"" path
    let psi = if Path.GetFileNameWithoutExtension(exe) = "dotnet" then ProcessStartInfo(exe, sprintf "exec \"%s\" %s" entry args) else ProcessStartInfo(exe, args)
    psi.RedirectStandardOutput <- true
    psi.UseShellExecute <- false
    Process.Start psi

let private leafValues (s: IOptState) =
    s.Leaves() |> Seq.map (fun l -> l.Path, (if isNull l.Tensor then [| l.Scalar.Value |] else values (l.Tensor.to_type torch.float64))) |> Array.ofSeq

[<Tests>]
let tests =
    testList "checkpoints at model scale" [
        test "a writer killed with SIGKILL at random points leaves a checkpoint that loads bit for bit" {
            let dir = Path.Combine(Path.GetTempPath(), sprintf "lookahead-kill-%d" (Random.Shared.Next()))
            Directory.CreateDirectory dir |> ignore
            let path = Path.Combine(dir, "state.ckpt")
            let rng = Random(17)
            let mutable rounds, withSaves = 0, 0
            try
                // The previous checkpoint: write save k = 1 ourselves so the file exists before any writer runs.
                let first () =
                    use _ = torch.NewDisposeScope()
                    let tx, state, parameters = stateAfter 1
                    Checkpoint.Save(path, tx, state, parameters)
                first ()
                for round in 1 .. 12 do
                    use proc = writer path
                    // Wait for a first save of this writer on some rounds, then kill at a random moment (mid-save most of the time).
                    let waitForSave = round % 2 = 0
                    if waitForSave then
                        let line = proc.StandardOutput.ReadLine()
                        Expect.isTrue (not (isNull line) && line.StartsWith "saved") (sprintf "the writer saved (%s)" line)
                        withSaves <- withSaves + 1
                    Threading.Thread.Sleep(rng.Next(0, 400))
                    proc.Kill()
                    proc.WaitForExit()
                    rounds <- rounds + 1
                    use _ = torch.NewDisposeScope()
                    let tx = Optim.Adam(1e-3)
                    let _, _, parameters = stateAfter 0
                    let loaded = Checkpoint.Load(path, tx, parameters)
                    let k = loaded.Leaves() |> Seq.find (fun l -> l.Path.EndsWith "count") |> fun l -> int l.Scalar.Value
                    let _, expected, _ = stateAfter k
                    Expect.equal (leafValues loaded) (leafValues expected) (sprintf "round %d: the checkpoint of save %d, bit for bit" round k)
                    let stray = Directory.GetFiles dir |> Array.filter (fun f -> f <> path && not (f.EndsWith ".tmp"))
                    Expect.isEmpty stray "no other file appears"
                Expect.equal rounds 12 "every round killed a writer"
                Expect.isGreaterThan withSaves 0 "some writers completed saves before being killed"
            finally
                try Directory.Delete(dir, true) with _ -> ()
        }

        test "saving and loading stream the tensors: managed allocation does not grow with the tensors' size" {
            let allocated (f: unit -> unit) =
                let before = GC.GetAllocatedBytesForCurrentThread()
                f ()
                GC.GetAllocatedBytesForCurrentThread() - before
            let path = Path.Combine(Path.GetTempPath(), sprintf "lookahead-stream-%d.ckpt" (Random.Shared.Next()))
            let measure (n: int64) =
                use _ = torch.NewDisposeScope()
                let parameters = TensorTree.Of(struct ("w", torch.randn([| n |])))
                let tx = Optim.Adam(1e-3)
                let state = tx.Init parameters
                Checkpoint.Save(path, tx, state, parameters) // warm-up (JIT)
                let save = allocated (fun () -> Checkpoint.Save(path, tx, state, parameters))
                let load = allocated (fun () -> Checkpoint.Load(path, tx, parameters) |> OptState.Dispose)
                save, load
            try
                let smallSave, smallLoad = measure 1_000L
                let bigSave, bigLoad = measure 8_000_000L
                // 8M floats are 32 MB per tensor, 96 MB in all: a managed copy of any would show as ≥ 32 MB.
                Expect.isLessThan (bigSave - smallSave) (2L <<< 20) (sprintf "save: %d bytes for 1e3 floats, %d for 8e6" smallSave bigSave)
                Expect.isLessThan (bigLoad - smallLoad) (2L <<< 20) (sprintf "load: %d bytes for 1e3 floats, %d for 8e6" smallLoad bigLoad)
            finally
                File.Delete path
        }

        test "a tensor over 2 GiB saves and loads bit for bit, and a flipped byte past 2 GiB is caught" {
            // 2^29 + 12345 int32 values: 2 GiB + 48 KiB in one tensor, so offsets and lengths pass int's range.
            let n = (1L <<< 29) + 12345L
            let available =
                if not (File.Exists "/proc/meminfo") then None else
                File.ReadAllLines "/proc/meminfo" |> Array.tryFind (fun l -> l.StartsWith "MemAvailable:")
                |> Option.map (fun l -> int64 (l.Split(' ', StringSplitOptions.RemoveEmptyEntries).[1]) * 1024L)
            let dir = Path.GetTempPath()
            let freeDisk = DriveInfo(dir).AvailableFreeSpace
            match available with
            | Some bytes when bytes >= 4L * n * 4L && freeDisk >= 3L * n * 4L ->
                let path = Path.Combine(dir, sprintf "lookahead-big-%d.ckpt" (Random.Shared.Next()))
                try
                    use _ = torch.NewDisposeScope()
                    let big = torch.arange(0L, n, dtype = torch.int32)
                    let parameters = TensorTree.Of(struct ("big", big))
                    let tx = Optim.Sgd(0.1)
                    Checkpoint.Save(path, tx, tx.Init parameters, parameters)
                    Expect.isGreaterThan (FileInfo(path).Length) (n * 4L) "the file holds the tensor"
                    let back = Checkpoint.LoadParameters path
                    Expect.equal back.["big"].shape [| n |] "shape"
                    Expect.isTrue (back.["big"].eq(big).all().item<bool>()) "every value"
                    // The last value is n − 1 (set here, not read back from the code under test).
                    Expect.equal (back.["big"].[n - 1L].item<int>()) (int (n - 1L)) "the last value, past 2 GiB"
                    back.["big"].Dispose()
                    // One byte flipped near the end of the file (inside the tensor, past 2 GiB into it).
                    using (new FileStream(path, FileMode.Open, FileAccess.ReadWrite)) (fun f ->
                        f.Position <- f.Length - 100L
                        let b = f.ReadByte()
                        f.Position <- f.Length - 100L
                        f.WriteByte(byte (b ^^^ 0x40)))
                    let e = Expect.throwsC (fun () -> Checkpoint.LoadParameters path |> ignore) id
                    Expect.stringContains e.Message "checksum mismatch" "the damage is caught"
                finally
                    File.Delete path
            | _ -> skiptestf "needs %d GB of available memory and %d GB of free disk" (16L * n / 1_000_000_000L) (12L * n / 1_000_000_000L)
        }

        test "bfloat16 and float16 parameters round-trip bit for bit, and a wrong dtype on load is named" {
            use _ = torch.NewDisposeScope()
            let path = Path.Combine(Path.GetTempPath(), sprintf "lookahead-half-%d.ckpt" (Random.Shared.Next()))
            try
                let parameters = TensorTree.Of(struct ("a", torch.randn([| 33L |]).to_type torch.bfloat16), struct ("h", torch.randn([| 3L; 5L |]).to_type torch.float16))
                let tx = Optim.Sgd(0.1)
                Checkpoint.Save(path, tx, tx.Init parameters, parameters)
                let back = Checkpoint.LoadParameters path
                for n in [ "a"; "h" ] do
                    Expect.equal back.[n].dtype parameters.[n].dtype (n + ": dtype")
                    Expect.sequenceEqual (values (back.[n].to_type torch.float64)) (values (parameters.[n].to_type torch.float64)) (n + ": the same values (16-bit values widen exactly)")
                let other = TensorTree.Of(struct ("a", torch.zeros([| 33L |])), struct ("h", parameters.["h"]))
                let e = Expect.throwsC (fun () -> Checkpoint.Load(path, tx, other) |> ignore) id
                Expect.stringContains e.Message "BF16" "names the saved dtype"
            finally
                File.Delete path
        }
    ]
