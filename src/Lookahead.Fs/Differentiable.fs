namespace Lookahead.FSharp

open System
open TorchSharp
open Lookahead

/// Optimizers as differentiable functions (the pure update with autograd recording): differentiate a training run
/// with respect to the initial parameters and the data. `Differentiable.unroll tx theta0 loss 20`, then backward through
/// `unrolled.Parameters` or the losses; dispose the result after backward.
[<RequireQualifiedAccess>]
module Differentiable =
    /// A hyperparameter that is a plain number (for the optimizers' Hyper overloads; C# converts implicitly).
    [<CompiledName("Number")>]
    let number (value: float) : Hyper = Hyper.op_Implicit value

    /// A hyperparameter that is a 0-d tensor gradients reach (its value is read now).
    [<CompiledName("Tensor")>]
    let tensor (t: torch.Tensor) : Hyper = Hyper.Of t

    /// None if tx (and everything it runs) is differentiable, else Some reason naming the first node that is not.
    [<CompiledName("Refusal")>]
    let refusal (tx: IGradientTransformation) : string option = Option.ofObj (global.Lookahead.Differentiable.Refusal tx)

    /// One recorded pure update: (updates, next state), both in the graph.
    [<CompiledName("Update")>]
    let update (tx: IGradientTransformation) (gradients: TensorTree) (state: IOptState) (parameters: TensorTree) (context: StepContext) =
        let struct (updates, next) = global.Lookahead.Differentiable.Update(tx, gradients, state, parameters, context)
        updates, next

    /// K recorded steps of tx on `loss parameters step` (step = 1…K) from theta0; gradients of the loss are recorded too.
    [<CompiledName("Unroll")>]
    let unroll (tx: IGradientTransformation) (theta0: TensorTree) (loss: TensorTree -> int64 -> torch.Tensor) (steps: int) : Unrolled =
        global.Lookahead.Differentiable.Unroll(tx, theta0, Func<TensorTree, int64, torch.Tensor> loss, steps)

    /// As unroll, recording only the last `recorded` steps (truncated backpropagation: memory grows with `recorded`).
    [<CompiledName("UnrollTruncated")>]
    let unrollTruncated (recorded: int) (tx: IGradientTransformation) (theta0: TensorTree) (loss: TensorTree -> int64 -> torch.Tensor) (steps: int) : Unrolled =
        global.Lookahead.Differentiable.Unroll(tx, theta0, Func<TensorTree, int64, torch.Tensor> loss, steps, Nullable recorded)
