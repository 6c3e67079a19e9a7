namespace Lookahead.FSharp

open TorchSharp
open Lookahead

/// Training a TorchSharp module with a transform.
[<RequireQualifiedAccess>]
module Training =
    /// The fast path (the default for training): a Runner that owns the optimizer state and flat buffers
    /// for the module's parameters and gradients. Call `Training.zeroGrad`, backward, then `Training.step`.
    /// Dispose it when training ends.
    [<CompiledName("Runner")>]
    let runner (tx: IGradientTransformation) (model: torch.nn.Module) = new Runner(tx, model)

    /// Zeroes the runner's gradient buffers in place.
    [<CompiledName("ZeroGrad")>]
    let zeroGrad (runner: Runner) = runner.ZeroGrad()

    /// One optimizer step with the gradients backward() accumulated; the parameters are updated in place.
    [<CompiledName("Step")>]
    let step (context: StepContext) (runner: Runner) = runner.Step context


    /// The reference path: one pure `update` on a module whose gradients are set (after backward()); the parameters are
    /// updated in place, the old state is disposed and the next state returned, detached from any
    /// dispose scope so that it outlives a per-step scope (owned by the caller; the next call disposes it).
    [<CompiledName("StepModule")>]
    let stepModule (tx: IGradientTransformation) (context: StepContext) (model: torch.nn.Module) (state: IOptState) : IOptState =
        let parameters = Tree.ofModule model
        let gradients = Tree.gradientsOf model
        let updates, next = Transform.updateWith tx context parameters state gradients
        Updates.ApplyInPlace(parameters, updates)
        updates.Dispose()
        OptState.Dispose state
        OptState.Detach next

    /// RunnerOptions' defaults (the C# record's).
    [<CompiledName("DefaultOptions")>]
    let defaultOptions : RunnerOptions = RunnerOptions()

    /// A runner with options, e.g. `Training.runnerWith (RunnerOptions(KeepGradients = false)) tx model`.
    [<CompiledName("RunnerWith")>]
    let runnerWith (options: RunnerOptions) (tx: IGradientTransformation) (model: torch.nn.Module) = new Runner(tx, model, options)

    /// A runner over a parameter tree (borrowed; re-pointed to the runner's storage); step it with stepGradients.
    [<CompiledName("RunnerOf")>]
    let runnerOf (tx: IGradientTransformation) (parameters: TensorTree) = new Runner(tx, parameters)

    /// A runner over a parameter tree, with options.
    [<CompiledName("RunnerOfWith")>]
    let runnerOfWith (options: RunnerOptions) (tx: IGradientTransformation) (parameters: TensorTree) = new Runner(tx, parameters, options)

    /// One step with the given gradients (borrowed; matched by name) instead of the parameters' .grad.
    [<CompiledName("StepGradients")>]
    let stepGradients (context: StepContext) (gradients: TensorTree) (runner: Runner) = runner.Step(gradients, context)

    /// The runner's state (owned by the runner; valid until its next step).
    [<CompiledName("State")>]
    let state (runner: Runner) = runner.State

    /// The runner's parameters.
    [<CompiledName("Parameters")>]
    let parameters (runner: Runner) = runner.Parameters

    /// Steps the runner has taken.
    [<CompiledName("StepCount")>]
    let stepCount (runner: Runner) = runner.StepCount
