namespace Lookahead.FSharp

open TorchSharp
open Lookahead

/// Training a TorchSharp module with a transform.
[<RequireQualifiedAccess>]
module Training =
    /// One optimizer step on a module whose gradients are set (after backward()): the parameters are
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
