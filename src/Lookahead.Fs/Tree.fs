namespace Lookahead.FSharp

open System
open TorchSharp
open Lookahead

/// Building and reading tensor trees from F#.
[<RequireQualifiedAccess>]
module Tree =
    /// A tree from (name, tensor) pairs, in order. The tree borrows the tensors.
    [<CompiledName("OfList")>]
    let ofList (items: (string * torch.Tensor) list) : TensorTree =
        TensorTree.Of(items |> List.map (fun (n, t) -> struct (n, t)))

    /// The (name, tensor) pairs of a tree, in order.
    [<CompiledName("ToList")>]
    let toList (tree: TensorTree) : (string * torch.Tensor) list =
        [ for kv in tree -> kv.Key, kv.Value ]

    /// The parameters of a module, as named_parameters() lists them.
    [<CompiledName("OfModule")>]
    let ofModule (m: torch.nn.Module) : TensorTree = TensorTree.FromParameters m

    /// The gradients of a module's parameters.
    [<CompiledName("GradientsOf")>]
    let gradientsOf (m: torch.nn.Module) : TensorTree = TensorTree.GradientsOf m

    /// A tree with f applied to each tensor.
    [<CompiledName("Map")>]
    let map (f: torch.Tensor -> torch.Tensor) (tree: TensorTree) : TensorTree = tree.Map(Func<_, _> f)

    /// The tensor called name, if any.
    [<CompiledName("TryFind")>]
    let tryFind (name: string) (tree: TensorTree) : torch.Tensor option =
        if tree.Contains name then Some tree.[name] else None

/// Building step contexts from F#.
[<RequireQualifiedAccess>]
module Context =
    /// No extras.
    [<CompiledName("Empty")>]
    let empty : StepContext = StepContext.Empty

    /// The context with the loss set.
    [<CompiledName("WithLoss")>]
    let withLoss (loss: float) (context: StepContext) = context.WithLoss loss

    /// The context with a key set.
    [<CompiledName("Add")>]
    let add (key: ContextKey<'T>) (value: 'T) (context: StepContext) = context.With(key, value)

    /// The value of a key, if present.
    [<CompiledName("TryFind")>]
    let tryFind (key: ContextKey<'T>) (context: StepContext) : 'T option =
        match context.TryGet key with
        | true, v -> Some v
        | _ -> None
