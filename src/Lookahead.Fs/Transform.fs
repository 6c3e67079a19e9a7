namespace Lookahead.FSharp

open System
open Lookahead

/// Transforms as values: init, update and the combinators.
/// `List.mapFold (Transform.update tx parameters) state0 gradients` runs tx over a list of gradient trees.
[<RequireQualifiedAccess>]
module Transform =
    /// The initial state for the parameters.
    [<CompiledName("Init")>]
    let init (tx: IGradientTransformation) (parameters: TensorTree) : IOptState = tx.Init parameters

    /// One step with extras in the context: (updates, next state). Arguments are borrowed, results owned.
    [<CompiledName("UpdateWith")>]
    let updateWith (tx: IGradientTransformation) (context: StepContext) (parameters: TensorTree) (state: IOptState) (gradients: TensorTree) =
        let struct (updates, next) = tx.Update(gradients, state, parameters, context)
        updates, next

    /// One step with an empty context: (updates, next state).
    [<CompiledName("Update")>]
    let update (tx: IGradientTransformation) (parameters: TensorTree) (state: IOptState) (gradients: TensorTree) =
        updateWith tx Context.empty parameters state gradients

    /// The identity transform.
    [<CompiledName("Identity")>]
    let identity : IGradientTransformation = Transforms.Identity()

    /// Sequential composition; the state is the list of sub-states.
    [<CompiledName("Chain")>]
    let chain (transforms: IGradientTransformation list) : IGradientTransformation = Transforms.Chain transforms

    /// Sequential composition with named stages.
    [<CompiledName("NamedChain")>]
    let namedChain (stages: (string * IGradientTransformation) list) : IGradientTransformation =
        Transforms.NamedChain(stages |> List.map (fun (n, t) -> struct (n, t)) |> Array.ofList)

    /// Partition by label: each parameter's label picks the transform that updates it.
    [<CompiledName("Partition")>]
    let partition (label: ParameterInfo -> string) (parts: (string * IGradientTransformation) list) : IGradientTransformation =
        Transforms.Partition(Func<_, _> label, parts |> List.map (fun (l, t) -> struct (l, t)) |> Array.ofList)

    /// Partition by predicate: whenTrue for the parameters where it holds, whenFalse for the rest.
    [<CompiledName("PartitionBy")>]
    let partitionBy (predicate: ParameterInfo -> bool) (whenTrue: IGradientTransformation) (whenFalse: IGradientTransformation) =
        Transforms.Partition(Func<_, _> predicate, whenTrue, whenFalse)

    /// Apply inner at step t (1, 2, ...) only when condition t context holds; otherwise pass through.
    [<CompiledName("When")>]
    let whenStep (condition: int64 -> StepContext -> bool) (inner: IGradientTransformation) : IGradientTransformation =
        Transforms.When(Func<_, _, _>(fun t c -> condition t c), inner)

    /// The transform's description.
    [<CompiledName("Name")>]
    let name (tx: IGradientTransformation) = tx.Name

/// Running an optimizer on parameter trees without a module: the parameters are part of the fold state.
type Run = { Parameters: TensorTree; State: IOptState }

/// Stepping an optimizer over gradient trees.
/// `List.mapFold (Optimizer.step tx) (Optimizer.start tx p0) gradients` gives the parameters after each step.
[<RequireQualifiedAccess>]
module Optimizer =
    /// The starting point: parameters and the initial state.
    [<CompiledName("Start")>]
    let start (tx: IGradientTransformation) (parameters: TensorTree) : Run =
        { Parameters = parameters; State = tx.Init parameters }

    /// One step with a context: the new parameters (fresh tensors) and the next run.
    [<CompiledName("StepWith")>]
    let stepWith (tx: IGradientTransformation) (context: StepContext) (run: Run) (gradients: TensorTree) : TensorTree * Run =
        let updates, next = Transform.updateWith tx context run.Parameters run.State gradients
        use _ = updates
        let p = Updates.Apply(run.Parameters, updates)
        p, { Parameters = p; State = next }

    /// One step with an empty context.
    [<CompiledName("Step")>]
    let step (tx: IGradientTransformation) (run: Run) (gradients: TensorTree) : TensorTree * Run =
        stepWith tx Context.empty run gradients

    /// The parameters after each step, and the final run.
    [<CompiledName("Run")>]
    let run (tx: IGradientTransformation) (parameters: TensorTree) (gradients: TensorTree list) =
        List.mapFold (step tx) (start tx parameters) gradients
