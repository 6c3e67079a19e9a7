namespace Lookahead.FSharp

open System.Collections.Generic
open Lookahead

/// Saving and loading optimizer state (safetensors layout, bit-exact, validated on load) for the pure path
/// (a state, or a Run) and the fast path (a Runner). `run |> Checkpoint.saveRun path tx`, later
/// `Checkpoint.loadRun path tx` gives the run back.
[<RequireQualifiedAccess>]
module Checkpoint =
    /// Writes the state of tx for the parameters (names, shapes, values) to path, replacing it atomically.
    [<CompiledName("Save")>]
    let save (path: string) (tx: IGradientTransformation) (parameters: TensorTree) (state: IOptState) =
        global.Lookahead.Checkpoint.Save(path, tx, state, parameters)

    /// As save, with extra string entries in the header (read back with metadata).
    [<CompiledName("SaveWith")>]
    let saveWith (metadata: Map<string, string>) (path: string) (tx: IGradientTransformation) (parameters: TensorTree) (state: IOptState) =
        global.Lookahead.Checkpoint.Save(path, tx, state, parameters, Dictionary<string, string>(metadata))

    /// The state saved for tx and these parameters (owned by the caller); raises CheckpointException on any mismatch.
    [<CompiledName("Load")>]
    let load (path: string) (tx: IGradientTransformation) (parameters: TensorTree) : IOptState =
        global.Lookahead.Checkpoint.Load(path, tx, parameters)

    /// As load, with the reason a checkpoint does not fit as an Error instead of an exception.
    [<CompiledName("TryLoad")>]
    let tryLoad (path: string) (tx: IGradientTransformation) (parameters: TensorTree) : Result<IOptState, string> =
        try Ok(load path tx parameters) with :? CheckpointException as e -> Error e.Message

    /// The parameter values stored in the file (new CPU tensors, owned by the caller).
    [<CompiledName("LoadParameters")>]
    let loadParameters (path: string) : TensorTree = global.Lookahead.Checkpoint.LoadParameters path

    /// The extra entries saveWith stored.
    [<CompiledName("Metadata")>]
    let metadata (path: string) : Map<string, string> =
        global.Lookahead.Checkpoint.ReadMetadata path |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq

    /// Saves a pure run: its parameters and its state.
    [<CompiledName("SaveRun")>]
    let saveRun (path: string) (tx: IGradientTransformation) (run: Run) = save path tx run.Parameters run.State

    /// The run saved by saveRun: the stored parameters (CPU tensors) and the state for them, ready for Optimizer.step.
    [<CompiledName("LoadRun")>]
    let loadRun (path: string) (tx: IGradientTransformation) : Run =
        let parameters = loadParameters path
        { Parameters = parameters; State = load path tx parameters }

    /// Saves a runner's state and parameters.
    [<CompiledName("SaveRunner")>]
    let saveRunner (path: string) (runner: Runner) = runner.Save path

    /// Restores a runner's state into its buffers (the parameters are not touched); nothing changes on a mismatch.
    [<CompiledName("LoadRunner")>]
    let loadRunner (path: string) (runner: Runner) = runner.Load path

    /// Saves an adapter's state, parameters and every group's learning rates.
    [<CompiledName("SaveAdapter")>]
    let saveAdapter (path: string) (optimizer: LookaheadOptimizer) = optimizer.Save path

    /// Restores what saveAdapter wrote (learning rates, then state); nothing changes on a mismatch.
    [<CompiledName("LoadAdapter")>]
    let loadAdapter (path: string) (optimizer: LookaheadOptimizer) = optimizer.Load path
