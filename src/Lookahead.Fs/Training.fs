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
