namespace Lookahead.FSharp

open System
open TorchSharp
open Lookahead

/// Any transform as a TorchSharp optimizer (LookaheadOptimizer): parameter groups whose learning rates
/// TorchSharp's LR schedulers read and set, step with or without a closure, on the fast path.
/// `Adapter.create model [ Adapter.group "hidden" Param.hiddenMatrices (fun lr -> Muon.create { Muon.defaults with lr = lr }) 0.02
///                         Adapter.group "rest" (fun _ -> true) (fun lr -> AdamW.create { AdamW.defaults with lr = lr }) 3e-4 ]`.
[<RequireQualifiedAccess>]
module Adapter =
    /// A group: its name, the parameters it selects (the first matching group takes a parameter), the transform for a learning rate, and the initial rate.
    [<CompiledName("Group")>]
    let group (name: string) (selects: ParameterInfo -> bool) (build: float -> IGradientTransformation) (lr: float) =
        OptimizerGroup(name, Func<_, _> selects, Func<_, _> build, lr)

    /// The optimizer for a module with these groups (every parameter must be selected by one). Dispose it when done.
    [<CompiledName("Create")>]
    let create (model: torch.nn.Module) (groups: OptimizerGroup list) = new LookaheadOptimizer(model, Array.ofList groups)

    /// The optimizer with one group of every parameter, built from the learning rate.
    [<CompiledName("Single")>]
    let single (build: float -> IGradientTransformation) (lr: float) (model: torch.nn.Module) =
        new LookaheadOptimizer(model, Func<_, _> build, lr)

    /// Zeroes the gradients.
    [<CompiledName("ZeroGrad")>]
    let zeroGrad (optimizer: LookaheadOptimizer) = optimizer.zero_grad ()

    /// One step with the gradients backward() accumulated.
    [<CompiledName("Step")>]
    let step (optimizer: LookaheadOptimizer) = optimizer.step () |> ignore

    /// One step after evaluating the closure (loss and backward); its loss reaches the transform in the context and is returned.
    [<CompiledName("StepWith")>]
    let stepWith (closure: unit -> torch.Tensor) (optimizer: LookaheadOptimizer) : torch.Tensor =
        optimizer.step (Func<_> closure)

    /// The groups' names and current learning rates, in order.
    [<CompiledName("LearningRates")>]
    let learningRates (optimizer: LookaheadOptimizer) : (string * float) list =
        [ for g in optimizer.Groups -> g.Name, g.LearningRate ]

    /// The group called name, if any.
    [<CompiledName("TryGroup")>]
    let tryGroup (name: string) (optimizer: LookaheadOptimizer) : OptimizerGroup option =
        optimizer.Groups |> Seq.tryFind (fun g -> g.Name = name)

    /// Sets a group's learning rate (the next step uses it); fails if no group has that name.
    [<CompiledName("SetLearningRate")>]
    let setLearningRate (name: string) (lr: float) (optimizer: LookaheadOptimizer) =
        match tryGroup name optimizer with
        | Some g -> g.LearningRate <- lr
        | None -> invalidArg (nameof name) (sprintf "no group '%s' (groups: %s)" name (optimizer.Groups |> Seq.map (fun g -> g.Name) |> String.concat ", "))

    /// The runner underneath (state, step count).
    [<CompiledName("Runner")>]
    let runner (optimizer: LookaheadOptimizer) = optimizer.Runner
