/// Agreement with torch.optim: the reference trajectories in shared/oracle/cases, replayed.
/// Tolerance |a − b| ≤ 1e-10 + 1e-8·|b| on every parameter and state value after every step.
module Lookahead.Tests.Oracle

open System
open System.IO
open System.Reflection
open System.Text.Json
open Expecto
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators

let oracleDir =
    let fromEnv = Environment.GetEnvironmentVariable "LOOKAHEAD_ORACLE_DIR"
    if not (String.IsNullOrEmpty fromEnv) then fromEnv
    else
        Assembly.GetExecutingAssembly().GetCustomAttributes<AssemblyMetadataAttribute>()
        |> Seq.find (fun a -> a.Key = "OracleDir")
        |> fun a -> Path.GetFullPath a.Value

let private floats (e: JsonElement) = [| for x in e.EnumerateArray() -> x.GetDouble() |]

/// The Lookahead optimizer for a torch.optim case: a compatibility map from torch's constructor
/// arguments. An argument it does not know, or a value it cannot honour, fails the test.
let fromTorch (optimizer: string) (h: JsonElement) : IGradientTransformation =
    let known = Collections.Generic.HashSet<string>()
    let num (name: string) = known.Add name |> ignore; h.GetProperty(name).GetDouble()
    let flag (name: string) = known.Add name |> ignore; h.GetProperty(name).GetBoolean()
    let betas () = known.Add "betas" |> ignore; let b = floats (h.GetProperty "betas") in b.[0], b.[1]
    let mustBeFalse (name: string) = let mutable v = Unchecked.defaultof<JsonElement> in if h.TryGetProperty(name, &v) && flag name then failtestf "%s: %s = true is not supported" optimizer name
    // Execution-strategy flags that do not change the maths.
    for ignored in [ "foreach"; "differentiable"; "capturable"; "fused" ] do known.Add ignored |> ignore
    mustBeFalse "maximize"
    let tx =
        match optimizer with
        | "torch.optim.SGD" ->
            Optim.Sgd(num "lr", num "momentum", num "dampening", num "weight_decay", flag "nesterov")
        | "torch.optim.Adam" ->
            let b1, b2 = betas ()
            Optim.Adam(num "lr", b1, b2, num "eps", num "weight_decay", flag "amsgrad")
        | "torch.optim.AdamW" ->
            let b1, b2 = betas ()
            Optim.AdamW(num "lr", b1, b2, num "eps", num "weight_decay", flag "amsgrad")
        | "torch.optim.NAdam" ->
            let b1, b2 = betas ()
            Optim.NAdam(num "lr", b1, b2, num "eps", num "weight_decay", num "momentum_decay")
        | "torch.optim.RAdam" ->
            let b1, b2 = betas ()
            Optim.RAdam(num "lr", b1, b2, num "eps", num "weight_decay")
        | "torch.optim.RMSprop" ->
            Optim.RmsProp(num "lr", num "alpha", num "eps", num "weight_decay", num "momentum", flag "centered")
        | "torch.optim.Adagrad" ->
            Optim.Adagrad(num "lr", num "lr_decay", num "weight_decay", num "initial_accumulator_value", num "eps")
        | other -> failtestf "no compatibility map for %s" other
    for p in h.EnumerateObject() do
        if not (known.Contains p.Name) then failtestf "%s: hyperparameter '%s' is not mapped" optimizer p.Name
    tx

/// Where torch keeps a state slot, and the slot of our state that holds the same numbers.
let private stateSlot =
    dict [ "momentum_buffer", "momentum"; "exp_avg", "momentum"; "exp_avg_sq", "nu"
           "max_exp_avg_sq", "nu_max"; "sum", "nu"; "square_avg", "nu" ]

let within (a: float) (b: float) = abs (a - b) <= 1e-10 + 1e-8 * abs b

let replay (file: string) =
    use doc = JsonDocument.Parse(File.ReadAllText file)
    let root = doc.RootElement
    let optimizer = root.GetProperty("optimizer").GetString()
    let tx = fromTorch optimizer (root.GetProperty "hyperparameters")
    let names = [ for p in root.GetProperty("params0").EnumerateArray() -> p.GetProperty("name").GetString() ]
    let shapes = [ for p in root.GetProperty("params0").EnumerateArray() -> [| for d in p.GetProperty("shape").EnumerateArray() -> d.GetInt64() |] ]
    let problem = { Names = names; Shapes = shapes; Params0 = []; Grads = [] }
    use _ = torch.NewDisposeScope()
    let mutable parameters =
        tree problem [ for p in root.GetProperty("params0").EnumerateArray() -> floats (p.GetProperty "values") ]
    let mutable state = tx.Init parameters
    let grads = root.GetProperty("grads").EnumerateArray() |> Seq.toArray
    let trajectory = root.GetProperty("trajectory").EnumerateArray() |> Seq.toArray
    let states = root.GetProperty("state_after_step").EnumerateArray() |> Seq.toArray
    let mutable worst = 0.0
    let check what (ours: float[]) (theirs: float[]) =
        Expect.equal ours.Length theirs.Length (what + ": length")
        for i in 0 .. ours.Length - 1 do
            worst <- max worst (abs (ours.[i] - theirs.[i]))
            if not (within ours.[i] theirs.[i]) then
                failtestf "%s: %s index %d: ours %.17g, torch %.17g" (Path.GetFileName file) what i ours.[i] theirs.[i]
    for k in 0 .. grads.Length - 1 do
        let g = tree problem [ for x in grads.[k].EnumerateArray() -> floats x ]
        let struct (u, s) = tx.Update(g, state, parameters, StepContext.Empty)
        parameters <- Updates.Apply(parameters, u)
        state <- s
        trajectory.[k].EnumerateArray() |> Seq.iteri (fun i x -> check (sprintf "step %d param %s" (k + 1) names.[i]) (values parameters.Tensors.[i]) (floats x))
        let leaves = state.Leaves() |> Seq.toArray
        for p in states.[k].EnumerateObject() do
            for slot in p.Value.EnumerateObject() do
                match stateSlot.TryGetValue slot.Name with
                | true, ours ->
                    let suffix = sprintf "/%s/%s" ours p.Name
                    match leaves |> Array.filter (fun l -> l.Path.EndsWith suffix && not (isNull l.Tensor)) with
                    | [| l |] -> check (sprintf "step %d state %s.%s" (k + 1) p.Name slot.Name) (values l.Tensor) (floats slot.Value)
                    | found -> failtestf "state slot %s of %s: %d matching leaves" slot.Name p.Name found.Length
                | _ -> ()
    worst

let cases =
    [ "torch_sgd_momentum"; "torch_sgd_nesterov"; "torch_adam"; "torch_adam_amsgrad"; "torch_adamw"
      "torch_nadam_foreach"; "torch_rmsprop"; "torch_adagrad" ]

[<Tests>]
let tests =
    testList "oracle: torch.optim reference trajectories (|a−b| ≤ 1e-10 + 1e-8·|b|)" [
        for name in cases ->
            test name {
                let file = Path.Combine(oracleDir, name + ".json")
                Expect.isTrue (File.Exists file) (sprintf "oracle case %s not found (set LOOKAHEAD_ORACLE_DIR)" file)
                replay file |> ignore
            }
    ]
