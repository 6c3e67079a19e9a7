namespace Lookahead.FSharp

open Lookahead

/// torch.optim state dicts (torch.save(opt.state_dict(), path)) in and out for SGD, Adam, AdamW, RMSprop and Adagrad:
/// `TorchStateDict.load path tx parameters` continues where PyTorch stopped; `TorchStateDict.save path tx parameters
/// state` writes a file PyTorch's load_state_dict continues from. Parameters are matched by the tree's order, or by
/// a list of names in the state dict's order (the `…Named` functions).
[<RequireQualifiedAccess>]
module TorchStateDict =
    /// The state of tx for the parameters, from PyTorch's state dict (hyperparameters checked; owned by the caller).
    [<CompiledName("Load")>]
    let load (path: string) (tx: IGradientTransformation) (parameters: TensorTree) : IOptState =
        global.Lookahead.TorchStateDict.Load(path, tx, parameters)

    /// As load, with names.[i] the tree's name of the state dict's parameter i.
    [<CompiledName("LoadNamed")>]
    let loadNamed (names: string list) (path: string) (tx: IGradientTransformation) (parameters: TensorTree) : IOptState =
        global.Lookahead.TorchStateDict.Load(path, tx, parameters, List.toArray names)

    /// The optimizer of that torch.optim class built from the state dict's hyperparameters, with its state.
    [<CompiledName("LoadOptimizer")>]
    let loadOptimizer (path: string) (kind: TorchOptimizerKind) (parameters: TensorTree) : IGradientTransformation * IOptState =
        let struct (tx, state) = global.Lookahead.TorchStateDict.LoadOptimizer(path, kind, parameters)
        tx, state

    /// Writes the state of tx as a torch.optim state dict, the tree's order numbering the parameters.
    [<CompiledName("Save")>]
    let save (path: string) (tx: IGradientTransformation) (parameters: TensorTree) (state: IOptState) =
        global.Lookahead.TorchStateDict.Save(path, tx, state, parameters)

    /// As save, numbering the parameters in the order of names (the PyTorch model's parameters()).
    [<CompiledName("SaveNamed")>]
    let saveNamed (names: string list) (path: string) (tx: IGradientTransformation) (parameters: TensorTree) (state: IOptState) =
        global.Lookahead.TorchStateDict.Save(path, tx, state, parameters, List.toArray names)

    /// Writes the tensors as a module state dict (model.load_state_dict(torch.load(path)) reads it).
    [<CompiledName("SaveParameters")>]
    let saveParameters (path: string) (parameters: TensorTree) = global.Lookahead.TorchStateDict.SaveParameters(path, parameters)

    /// A module state dict's tensors (torch.save(model.state_dict(), path)), CPU, in the file's order; owned by the caller.
    [<CompiledName("LoadParameters")>]
    let loadParameters (path: string) : TensorTree = global.Lookahead.TorchStateDict.LoadParameters path
