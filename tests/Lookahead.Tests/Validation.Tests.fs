/// Bad hyperparameters and bad inputs: each raises an error that names the argument (or tensor), its
/// value and what was expected, and leaves nothing changed.
module Lookahead.Tests.Validation

open System
open Expecto
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators

let private rejects (label: string) (build: unit -> obj) (mustMention: string list) =
    test label {
        Expect.throwsC (fun () -> build () |> ignore) (fun ex ->
            Expect.isTrue (ex :? ArgumentException) (sprintf "an ArgumentException, got %s" (ex.GetType().Name))
            for m in mustMention do Expect.stringContains ex.Message m (sprintf "the message names %s" m))
    }

[<Tests>]
let hyperparameters =
    testList "hyperparameters are validated when the optimizer is built" [
        rejects "sgd lr < 0" (fun () -> Optim.Sgd(-0.1)) [ "lr"; "-0.1"; "[0, ∞)" ]
        rejects "sgd lr NaN" (fun () -> Optim.Sgd(nan)) [ "lr"; "NaN" ]
        rejects "sgd momentum > 1" (fun () -> Optim.Sgd(0.1, 1.5)) [ "momentum"; "1.5"; "[0, 1]" ]
        rejects "sgd nesterov without momentum" (fun () -> Optim.Sgd(0.1, 0.0, nesterov = true)) [ "nesterov"; "momentum" ]
        rejects "sgd nesterov with dampening" (fun () -> Optim.Sgd(0.1, 0.9, 0.1, nesterov = true)) [ "nesterov"; "dampening" ]
        rejects "adam beta1 = 1" (fun () -> Optim.Adam(beta1 = 1.0)) [ "beta1"; "[0, 1)" ]
        rejects "adam beta2 < 0" (fun () -> Optim.Adam(beta2 = -0.5)) [ "beta2"; "-0.5" ]
        rejects "adam eps < 0" (fun () -> Optim.Adam(eps = -1e-8)) [ "eps"; "[0, ∞)" ]
        rejects "adam lr ∞" (fun () -> Optim.Adam(lr = infinity)) [ "lr"; "∞" ]
        rejects "adamw weight decay < 0" (fun () -> Optim.AdamW(weightDecay = -0.01)) [ "weightDecay"; "-0.01" ]
        rejects "radam beta2 NaN" (fun () -> Optim.RAdam(beta2 = nan)) [ "beta2"; "NaN" ]
        rejects "nadam momentum decay < 0" (fun () -> Optim.NAdam(momentumDecay = -1.0)) [ "momentumDecay"; "-1" ]
        rejects "rmsprop alpha = 1" (fun () -> Optim.RmsProp(alpha = 1.0)) [ "alpha"; "[0, 1)" ]
        rejects "rmsprop momentum < 0" (fun () -> Optim.RmsProp(momentum = -0.9)) [ "momentum" ]
        rejects "adagrad lr decay < 0" (fun () -> Optim.Adagrad(lrDecay = -1.0)) [ "lrDecay" ]
        rejects "adagrad initial accumulator < 0" (fun () -> Optim.Adagrad(initialAccumulatorValue = -1.0)) [ "initialAccumulatorValue" ]
        rejects "scale by ∞" (fun () -> Transforms.Scale infinity) [ "factor" ]
        rejects "ema decay 1" (fun () -> Transforms.Ema 1.0) [ "decay"; "[0, 1)" ]
        rejects "trace debias with dampening ≠ decay" (fun () -> Transforms.Trace(0.9, 0.0, debias = true)) [ "debias"; "dampening" ]
        rejects "clip max norm 0" (fun () -> Transforms.ClipByGlobalNorm 0.0) [ "maxNorm"; "(0, ∞)" ]
        rejects "precondition bias correction on an undamped sum" (fun () -> Transforms.Precondition(PreconditionOptions(Damped = false))) [ "BiasCorrection" ]
        rejects "chain with a null stage" (fun () -> Transforms.Chain([| Transforms.Sign(); null |])) [ "transform #1" ]
        rejects "named chain with a duplicate name" (fun () -> Transforms.NamedChain(struct ("a", Transforms.Sign()), struct ("a", Transforms.Sign()))) [ "'a'"; "twice" ]
        rejects "tree with a duplicate name" (fun () -> TensorTree.Of(struct ("w", torch.zeros 1L), struct ("w", torch.zeros 1L))) [ "'w'"; "twice" ]
    ]

let private problem = { Names = [ "w"; "b" ]; Shapes = [ [| 2L; 2L |]; [| 2L |] ]; Params0 = [ Array.zeroCreate 4; Array.zeroCreate 2 ]; Grads = [] }

let private mismatch label (grads: unit -> TensorTree) (mustMention: string list) =
    test label {
        use _ = torch.NewDisposeScope()
        let tx = Optim.Adam()
        let parameters = tree problem problem.Params0
        let state = tx.Init parameters
        let before = Expect.stateLeaves state
        Expect.throwsC (fun () -> tx.Update(grads (), state, parameters, StepContext.Empty) |> ignore) (fun ex ->
            Expect.isTrue (ex :? ArgumentException) "an ArgumentException"
            for m in mustMention do Expect.stringContains ex.Message m (sprintf "names %s" m))
        Expect.equal (Expect.stateLeaves state) before "the state is unchanged"
    }

[<Tests>]
let inputs =
    let t (shape: int64[]) (dtype: torch.ScalarType) = torch.zeros(shape, dtype = dtype)
    testList "gradients that do not match the parameters are rejected before any work" [
        mismatch "a missing tensor" (fun () -> TensorTree.Of(struct ("w", t [| 2L; 2L |] torch.float64))) [ "gradients"; "missing [b]" ]
        mismatch "an extra tensor" (fun () -> TensorTree.Of(struct ("w", t [| 2L; 2L |] torch.float64), struct ("b", t [| 2L |] torch.float64), struct ("c", t [| 1L |] torch.float64))) [ "unexpected [c]" ]
        mismatch "a wrong shape" (fun () -> TensorTree.Of(struct ("w", t [| 4L |] torch.float64), struct ("b", t [| 2L |] torch.float64))) [ "'w'"; "[4]"; "[2, 2]" ]
        mismatch "a wrong dtype" (fun () -> TensorTree.Of(struct ("w", t [| 2L; 2L |] torch.float32), struct ("b", t [| 2L |] torch.float64))) [ "'w'"; "Float32"; "Float64" ]
        mismatch "the wrong order" (fun () -> TensorTree.Of(struct ("b", t [| 2L |] torch.float64), struct ("w", t [| 2L; 2L |] torch.float64))) [ "different order" ]
        test "a state from another transform is rejected, naming the expected state's layout and the one it got" {
            use _ = torch.NewDisposeScope()
            let parameters = tree problem problem.Params0
            let wrong = (Transforms.Ema 0.9).Init parameters
            Expect.throwsC (fun () -> (Optim.Adam()).Update(parameters, wrong, parameters, StepContext.Empty) |> ignore) (fun ex ->
                Expect.stringContains ex.Message "chain[0: Child" "names the expected state"
                Expect.stringContains ex.Message "trace[count: Integer, momentum: PerParameter]" "names the state it got")
        }
        test "a missing context value names the primitive and the key" {
            Expect.throwsC (fun () -> StepContext.Empty.Get(ContextKeys.Loss, "MoMo") |> ignore) (fun ex ->
                Expect.stringContains ex.Message "MoMo" "names the primitive"
                Expect.stringContains ex.Message "'loss'" "names the key")
        }
    ]
