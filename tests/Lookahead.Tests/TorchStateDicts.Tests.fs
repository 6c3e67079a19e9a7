/// torch.optim state dicts in and out (TorchStateDict): files saved by real PyTorch 1.13 load and Lookahead continues
/// as PyTorch did; files Lookahead writes are what PyTorch loaded and continued from (fixtures/torch-state-dicts,
/// made by its make.py and this project's --write-torch-fixtures); what is refused, and that a refused call changes nothing.
module Lookahead.Tests.TorchStateDicts

open System
open System.IO
open System.IO.Compression
open System.Text.Json
open Expecto
open TorchSharp
open Lookahead

let private dir = Path.Combine(__SOURCE_DIRECTORY__, "fixtures", "torch-state-dicts")
let private fixture name = Path.Combine(dir, name)

/// 1e-10 + 1e-8·|b|, the oracle tolerance, over whole continued trajectories in float64.
let private atol, rtol = 1e-10, 1e-8

type private Case =
    { Name: string
      Optimizer: string
      Hyper: JsonElement
      Names: string list
      Shapes: Map<string, int64[]>
      Initial: Map<string, float[]>
      SavedAfter: int
      /// Per step: the gradients given and the parameters after it.
      Steps: (Map<string, float[]> * Map<string, float[]>) list }

let private floats (e: JsonElement) = [| for x in e.EnumerateArray() -> x.GetDouble() |]

let private perName (names: string list) (e: JsonElement) = names |> List.map (fun n -> n, floats (e.GetProperty n)) |> Map.ofList

let private readCase (name: string) =
    use doc = JsonDocument.Parse(File.ReadAllText(fixture (name + ".json")))
    let r = doc.RootElement
    let names = [ for x in r.GetProperty("names").EnumerateArray() -> x.GetString() ]
    { Name = name
      Optimizer = r.GetProperty("optimizer").GetString()
      Hyper = r.GetProperty("hyperparameters").Clone()
      Names = names
      Shapes = names |> List.map (fun n -> n, [| for x in r.GetProperty("shapes").GetProperty(n).EnumerateArray() -> x.GetInt64() |]) |> Map.ofList
      Initial = perName names (r.GetProperty "initial")
      SavedAfter = r.GetProperty("saved_after").GetInt32()
      Steps = [ for s in r.GetProperty("steps").EnumerateArray() -> perName names (s.GetProperty "grads"), perName names (s.GetProperty "params") ] }

let private treeOf (case: Case) (values: Map<string, float[]>) =
    TensorTree.Of(case.Names |> List.map (fun n -> struct (n, torch.tensor(values.[n], dtype = torch.float64).reshape(case.Shapes.[n]))) |> Array.ofList)

let private valuesOf (t: TensorTree) =
    t |> Seq.map (fun kv -> kv.Key, kv.Value.reshape(-1L).data<float>().ToArray()) |> Map.ofSeq

/// The case's optimizer built directly with its hyperparameters (written from the JSON, not read from a state dict).
let private direct (case: Case) : IGradientTransformation =
    let h = case.Hyper
    let num key fallback = match h.TryGetProperty(key: string) with | true, v -> v.GetDouble() | _ -> fallback
    let flag key = match h.TryGetProperty(key: string) with | true, v -> v.GetBoolean() | _ -> false
    let betas () = match h.TryGetProperty "betas" with | true, v -> v.[0].GetDouble(), v.[1].GetDouble() | _ -> 0.9, 0.999
    match case.Optimizer with
    | "SGD" -> Optim.Sgd(num "lr" 0.0, num "momentum" 0.0, num "dampening" 0.0, num "weight_decay" 0.0, flag "nesterov")
    | "Adam" -> let b1, b2 = betas () in Optim.Adam(num "lr" 1e-3, b1, b2, num "eps" 1e-8, num "weight_decay" 0.0, flag "amsgrad")
    | "AdamW" -> let b1, b2 = betas () in Optim.AdamW(num "lr" 1e-3, b1, b2, num "eps" 1e-8, num "weight_decay" 1e-2, flag "amsgrad")
    | "RMSprop" -> Optim.RmsProp(num "lr" 1e-2, num "alpha" 0.99, num "eps" 1e-8, num "weight_decay" 0.0, num "momentum" 0.0, flag "centered")
    | "Adagrad" -> Optim.Adagrad(num "lr" 1e-2, num "lr_decay" 0.0, num "weight_decay" 0.0, num "initial_accumulator_value" 0.0, num "eps" 1e-10)
    | other -> failwithf "no direct optimizer for %s" other

let private kindOf (case: Case) =
    match case.Optimizer with
    | "SGD" -> TorchOptimizerKind.Sgd
    | "Adam" -> TorchOptimizerKind.Adam
    | "AdamW" -> TorchOptimizerKind.AdamW
    | "RMSprop" -> TorchOptimizerKind.RmsProp
    | _ -> TorchOptimizerKind.Adagrad

/// Steps first..last (0-based) of the case's gradients by the pure path; the parameters after each.
let private continueFrom (tx: IGradientTransformation) (case: Case) (first: int) (count: int) (parameters: TensorTree) (state: IOptState) =
    let mutable theta, s = parameters, state
    let after = ResizeArray()
    for k in first .. first + count - 1 do
        let grads = treeOf case (fst case.Steps.[k])
        let struct (u, next) = tx.Update(grads, s, theta, StepContext.Empty)
        theta <- Updates.Apply(theta, u)
        s <- next
        after.Add(valuesOf theta)
    theta, s, List.ofSeq after

let private compare (what: string) (names: string list) (actual: Map<string, float[]> list) (expected: Map<string, float[]> list) =
    Expect.equal actual.Length expected.Length (what + ": steps")
    let mutable worst = 0.0
    for k, (a, b) in List.indexed (List.zip actual expected) do
        for n in names do
            for i in 0 .. b.[n].Length - 1 do
                let x, y = a.[n].[i], b.[n].[i]
                if not (Expect.within atol rtol x y) then
                    failtestf "%s: step %d, %s[%d]: %.17g vs PyTorch's %.17g" what k n i x y
                worst <- max worst (abs (x - y) / (atol + rtol * abs y))
    worst

let private cases = [ "sgd_momentum"; "sgd_nesterov"; "adam"; "adam_amsgrad"; "adamw"; "adamw_amsgrad"; "rmsprop_centered_momentum"; "rmsprop"; "adagrad" ]

/// The continuation PyTorch ran from Lookahead's files (make.py continue).
let private fromLookahead (case: Case) =
    use doc = JsonDocument.Parse(File.ReadAllText(fixture (case.Name + ".from-lookahead.json")))
    [ for s in doc.RootElement.GetProperty("steps").EnumerateArray() -> perName case.Names (s.GetProperty "params") ]

let private entries (path: string) =
    use zip = ZipFile.OpenRead path
    [ for e in zip.Entries ->
        use s = e.Open()
        use m = new MemoryStream()
        s.CopyTo m
        e.FullName, m.ToArray() ]

/// A storage's bytes as numbers: a 4-byte storage is a float32 step, any other float64.
let private decode (bytes: byte[]) =
    if bytes.Length = 4 then [| float (BitConverter.ToSingle(bytes, 0)) |]
    else Array.init (bytes.Length / 8) (fun i -> BitConverter.ToDouble(bytes, 8 * i))

let private throwsNaming (f: unit -> unit) (fragments: string list) =
    let e =
        try
            f ()
            failtest "expected an exception"
        with
        | :? AssertException -> reraise ()
        | e -> e
    for fragment in fragments do
        Expect.stringContains e.Message fragment (sprintf "the error names '%s'" fragment)

/// A zip whose data.pkl calls os.system("true"), written byte by byte here.
let private writeEvil (path: string) =
    use zip = ZipFile.Open(path, ZipArchiveMode.Create)
    let e = zip.CreateEntry("archive/data.pkl")
    use s = e.Open()
    let pickle = Array.concat [ [| 0x80uy; 2uy |]; Text.Encoding.ASCII.GetBytes("cos\nsystem\n"); [| byte 'X'; 4uy; 0uy; 0uy; 0uy |]; Text.Encoding.ASCII.GetBytes("true"); [| 0x85uy; byte 'R'; byte '.' |] ]
    s.Write(pickle, 0, pickle.Length)

[<Tests>]
let tests =
    testList "torch.optim state dicts" [
        for name in cases do
            test (sprintf "%s: PyTorch's state dict after k steps loads, and Lookahead continues as PyTorch did" name) {
                let case = readCase name
                let k = case.SavedAfter
                let path = fixture (name + ".pt")
                // Built from the file's param groups, and loaded into the optimizer built directly: both continue alike.
                let struct (tx, state) = TorchStateDict.LoadOptimizer(path, kindOf case, treeOf case (snd case.Steps.[k - 1]))
                Expect.equal tx.Spec (direct case).Spec "the optimizer built from the param groups is the one built from the case's hyperparameters"
                let theta = treeOf case (snd case.Steps.[k - 1])
                let _, _, after = continueFrom tx case k (case.Steps.Length - k) theta state
                let worst = compare name case.Names after (case.Steps |> List.skip k |> List.map snd)
                let direct = direct case
                let state2 = TorchStateDict.Load(path, direct, theta)
                let _, _, after2 = continueFrom direct case k (case.Steps.Length - k) theta state2
                compare (name + " (loaded into the directly built optimizer)") case.Names after2 (case.Steps |> List.skip k |> List.map snd) |> ignore
                Expect.isLessThanOrEqual worst 1.0 "within the tolerance"
            }

            test (sprintf "%s: Lookahead's state dict after k steps is the file PyTorch loaded and continued from, as Lookahead continues" name) {
                let case = readCase name
                let k = case.SavedAfter
                let tx = direct case
                let theta0 = treeOf case case.Initial
                let thetaK, stateK, _ = continueFrom tx case 0 k theta0 (tx.Init theta0)
                let out = Path.Combine(Path.GetTempPath(), sprintf "lookahead-torch-%s-%d.pt" name (Random.Shared.Next()))
                try
                    TorchStateDict.Save(out, tx, stateK, thetaK)
                    // The same pickle (structure, hyperparameters, parameter numbering) as the committed file PyTorch
                    // loaded, and tensors equal to its within 1e-12 relative (the same algorithm on the same gradients).
                    let mine, committed = entries out, entries (fixture (name + ".lookahead.pt"))
                    Expect.sequenceEqual (List.map fst mine) (List.map fst committed) "the same archive entries"
                    Expect.sequenceEqual (snd (List.head mine)) (snd (List.head committed)) "the same data.pkl"
                    for (entry, a), (_, b) in List.zip mine committed do
                        if entry.Contains "/data/" then
                            let x, y = decode a, decode b
                            let scale = (Array.map abs y |> Array.max) + 1e-300
                            Expect.isLessThanOrEqual ((Array.map2 (fun p q -> abs (p - q)) x y |> Array.max) / scale) 1e-12 (sprintf "%s: tensor %s" name entry)
                    // Lookahead continuing ≡ PyTorch continuing from Lookahead's file.
                    let _, _, after = continueFrom tx case k (case.Steps.Length - k) thetaK stateK
                    compare (name + " (PyTorch continuing from Lookahead)") case.Names after (fromLookahead case) |> ignore
                    // And the file reads back into the same state, bit for bit.
                    let back = TorchStateDict.Load(out, tx, thetaK)
                    let la, lb = Expect.stateLeaves back, Expect.stateLeaves stateK
                    Expect.sequenceEqual (Array.map fst la) (Array.map fst lb) "leaf paths"
                    for (path, x), (_, y) in Array.zip la lb do
                        if case.Optimizer = "SGD" && path.EndsWith "count" then
                            // torch's SGD keeps no step: its buffers read back as started (count 1), which is all SGD's rule asks.
                            Expect.equal x [| 1.0 |] (sprintf "leaf %s reads back as started" path)
                        else Expect.isTrue (Array.forall2 Expect.bitEqual x y) (sprintf "leaf %s read back bit for bit" path)
                finally
                    File.Delete out
            }

        test "parameters are matched by a name list: a permuted tree loads the same state" {
            let case = readCase "adamw_amsgrad"
            let k = case.SavedAfter
            let theta = treeOf case (snd case.Steps.[k - 1])
            let reversed = TensorTree.Of(theta |> Seq.rev |> Seq.map (fun kv -> struct (kv.Key, kv.Value)) |> Array.ofSeq)
            let tx = direct case
            let byOrder = TorchStateDict.Load(fixture "adamw_amsgrad.pt", tx, theta)
            let byName = TorchStateDict.Load(fixture "adamw_amsgrad.pt", tx, reversed, [ "w"; "b"; "k" ])
            let get (s: IOptState) = Expect.stateLeaves s |> Map.ofArray
            let a, b = get byOrder, get byName
            for KeyValue(path, v) in a do
                Expect.isTrue (Array.forall2 Expect.bitEqual v b.[path]) (sprintf "leaf %s" path)
            // By order, the reversed tree does not fit (shapes), and the error says which tensor.
            throwsNaming (fun () -> TorchStateDict.Load(fixture "adamw_amsgrad.pt", tx, reversed) |> ignore) [ "state[0].exp_avg"; "shape [3, 4]" ]
        }

        test "refused: other optimizers, other hyperparameters, groups that differ, steps that differ, ascent, bad names" {
            let case = readCase "adam"
            let theta = treeOf case (snd case.Steps.[case.SavedAfter - 1])
            let before = valuesOf theta
            let adamFile = fixture "adam.pt"
            throwsNaming (fun () -> TorchStateDict.Load(adamFile, Optim.Lion(), theta) |> ignore) [ "lion"; "SGD, Adam, AdamW, RMSprop and Adagrad" ]
            throwsNaming (fun () -> TorchStateDict.Save(Path.GetTempFileName(), Optim.Lion(), (Optim.Lion()).Init theta, theta)) [ "lion" ]
            throwsNaming (fun () -> TorchStateDict.Load(adamFile, Optim.Adam(lr = 0.02, beta1 = 0.85, beta2 = 0.99, eps = 1e-6, weightDecay = 0.02), theta) |> ignore) [ "param_groups[0].lr = 0.01"; "lr = 0.02" ]
            throwsNaming (fun () -> TorchStateDict.Load(adamFile, Optim.Sgd(0.01, 0.9), theta) |> ignore) [ "'betas'"; "SGD" ]
            throwsNaming (fun () -> TorchStateDict.LoadOptimizer(fixture "refused_groups_differ.pt", TorchOptimizerKind.Adam, theta) |> ignore) [ "param_groups[1].weight_decay"; "0.01" ]
            throwsNaming (fun () -> TorchStateDict.LoadOptimizer(fixture "refused_steps_differ.pt", TorchOptimizerKind.Adam, theta) |> ignore) [ "step"; "one step for all parameters" ]
            throwsNaming (fun () -> TorchStateDict.LoadOptimizer(fixture "refused_maximize.pt", TorchOptimizerKind.Sgd, theta) |> ignore) [ "maximize = True" ]
            throwsNaming (fun () -> TorchStateDict.LoadOptimizer(fixture "refused_nadam.pt", TorchOptimizerKind.Adam, theta) |> ignore) [ "momentum_decay" ]
            throwsNaming (fun () -> TorchStateDict.LoadOptimizer(adamFile, TorchOptimizerKind.Adam, theta, [ "w"; "b"; "x" ]) |> ignore) [ "names[2] = 'x'" ]
            throwsNaming (fun () -> TorchStateDict.LoadOptimizer(adamFile, TorchOptimizerKind.Adam, theta, [ "w"; "b"; "b" ]) |> ignore) [ "'b' twice" ]
            let two = TensorTree.Of(theta |> Seq.take 2 |> Seq.map (fun kv -> struct (kv.Key, kv.Value)) |> Array.ofSeq)
            throwsNaming (fun () -> TorchStateDict.LoadOptimizer(adamFile, TorchOptimizerKind.Adam, two) |> ignore) [ "3 parameters"; "the tree 2" ]
            let float32 = TensorTree.Of(theta |> Seq.map (fun kv -> struct (kv.Key, kv.Value.to_type(torch.float32))) |> Array.ofSeq)
            throwsNaming (fun () -> TorchStateDict.LoadOptimizer(adamFile, TorchOptimizerKind.Adam, float32) |> ignore) [ "state[0].exp_avg is Float64"; "Float32" ]
            throwsNaming (fun () -> TorchStateDict.LoadOptimizer(fixture "sgd_momentum.json", TorchOptimizerKind.Sgd, theta) |> ignore) [ "sgd_momentum.json"; "zip" ]
            throwsNaming (fun () -> TorchStateDict.LoadOptimizer(fixture "missing.pt", TorchOptimizerKind.Sgd, theta) |> ignore) [ "missing.pt" ]
            Expect.equal (valuesOf theta) before "no refused call changed the parameters"
        }

        test "a pickle naming any global but a tensor's, a storage's or OrderedDict is refused before anything is built" {
            // A state dict whose pickle calls os.system: the reader names the global and builds nothing.
            let path = Path.Combine(Path.GetTempPath(), sprintf "lookahead-evil-%d.pt" (Random.Shared.Next()))
            try
                writeEvil path
                let case = readCase "adam"
                throwsNaming (fun () -> TorchStateDict.LoadOptimizer(path, TorchOptimizerKind.Adam, treeOf case case.Initial) |> ignore) [ "os.system" ]
            finally
                File.Delete path
        }

        test "a runner (fused executor) loads PyTorch's state into its buffers and continues as PyTorch did; a refused file changes nothing; it saves what the pure path saves" {
            for name in [ "adamw_amsgrad"; "rmsprop_centered_momentum"; "sgd_nesterov" ] do
                let case = readCase name
                let k = case.SavedAfter
                let tx = direct case
                let theta = treeOf case (snd case.Steps.[k - 1])
                use runner = new Runner(tx, theta)
                // Refused first: another optimizer's file; the runner's state stays the fresh one.
                let before = Expect.stateLeaves runner.State
                throwsNaming (fun () -> runner.LoadTorchState(fixture (if name = "sgd_nesterov" then "adam.pt" else "sgd_momentum.pt"))) [ "param_groups[0]" ]
                Expect.equal (Expect.stateLeaves runner.State) before (name + ": a refused load changed nothing")
                runner.LoadTorchState(fixture (name + ".pt"))
                let after =
                    [ for step in k .. case.Steps.Length - 1 ->
                        runner.Step(treeOf case (fst case.Steps.[step]))
                        valuesOf runner.Parameters ]
                compare (name + " (runner)") case.Names after (case.Steps |> List.skip k |> List.map snd) |> ignore
                // What the runner saves reads back into the pure path as the runner's state.
                let out = Path.Combine(Path.GetTempPath(), sprintf "lookahead-runner-%d.pt" (Random.Shared.Next()))
                try
                    runner.SaveTorchState out
                    let back = TorchStateDict.Load(out, tx, runner.Parameters)
                    let pureLeaves = Expect.stateLeaves back |> Map.ofArray
                    for path, v in Expect.stateLeaves runner.State do
                        if not (name = "sgd_nesterov" && path.EndsWith "count") then
                            Expect.isTrue (Array.forall2 Expect.bitEqual v pureLeaves.[path]) (sprintf "%s: leaf %s" name path)
                finally
                    File.Delete out
        }

        test "the F# layer loads, builds and saves as the C# API does" {
            let case = readCase "adam"
            let k = case.SavedAfter
            let theta = treeOf case (snd case.Steps.[k - 1])
            let tx, state = Lookahead.FSharp.TorchStateDict.loadOptimizer (fixture "adam.pt") TorchOptimizerKind.Adam theta
            Expect.equal tx.Spec (direct case).Spec "the same optimizer"
            let named = Lookahead.FSharp.TorchStateDict.loadNamed [ "w"; "b"; "k" ] (fixture "adam.pt") tx theta
            Expect.equal (Expect.stateLeaves named) (Expect.stateLeaves state) "by names as by order"
            let out = Path.Combine(Path.GetTempPath(), sprintf "lookahead-fs-%d.pt" (Random.Shared.Next()))
            try
                Lookahead.FSharp.TorchStateDict.save out tx theta state
                Expect.equal (Expect.stateLeaves (Lookahead.FSharp.TorchStateDict.load out tx theta)) (Expect.stateLeaves state) "saved and read back"
                Lookahead.FSharp.TorchStateDict.saveParameters out theta
                let back = Lookahead.FSharp.TorchStateDict.loadParameters out
                Expect.equal (valuesOf back) (valuesOf theta) "parameters as a module state dict"
            finally
                File.Delete out
        }

        test "a fresh optimizer's state (no step yet) is written as PyTorch writes one, and reads back" {
            let case = readCase "adam"
            let theta = treeOf case case.Initial
            for tx in [ direct case; Optim.Sgd(0.1, 0.9); Optim.Adagrad(0.1, initialAccumulatorValue = 0.5) ] do
                let out = Path.Combine(Path.GetTempPath(), sprintf "lookahead-fresh-%d.pt" (Random.Shared.Next()))
                try
                    let fresh = tx.Init theta
                    TorchStateDict.Save(out, tx, fresh, theta)
                    let back = TorchStateDict.Load(out, tx, theta)
                    let la, lb = Expect.stateLeaves back, Expect.stateLeaves fresh
                    for (path, x), (_, y) in Array.zip la lb do
                        Expect.isTrue (Array.forall2 Expect.bitEqual x y) (sprintf "%s: leaf %s" tx.Name path)
                finally
                    File.Delete out
        }
    ]

/// Writes NAME.lookahead.pt (Lookahead's state after k steps) and NAME.lookahead-params.pt (its parameters) for every
/// case, for make.py's `continue` (run: `dotnet run --project tests/Lookahead.Tests -c Release -- --write-torch-fixtures`).
let writeFixtures () =
    for name in cases do
        let case = readCase name
        let tx = direct case
        let theta0 = treeOf case case.Initial
        let thetaK, stateK, _ = continueFrom tx case 0 case.SavedAfter theta0 (tx.Init theta0)
        TorchStateDict.Save(fixture (name + ".lookahead.pt"), tx, stateK, thetaK)
        TorchStateDict.SaveParameters(fixture (name + ".lookahead-params.pt"), thetaK)
        printfn "wrote %s.lookahead.pt and %s.lookahead-params.pt" name name
