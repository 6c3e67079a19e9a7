/// Tensor ownership: results are owned by the caller and independent of the inputs, temporaries die
/// inside the step, and a training loop that disposes what it owns holds a constant number of tensors.
module Lookahead.Tests.Ownership

open Expecto
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators

let private problem =
    { Names = [ "fc.weight"; "fc.bias" ]
      Shapes = [ [| 3L; 4L |]; [| 4L |] ]
      Params0 = [ Array.init 12 (fun i -> float i / 10.0); Array.init 4 (fun i -> float -i) ]
      Grads = [ for k in 1 .. 3 -> [ Array.init 12 (fun i -> sin (float (i * k))); Array.init 4 (fun i -> cos (float (i + k))) ] ] }

let optimizers : (string * IGradientTransformation) list =
    [ "sgd", Optim.Sgd(0.1)
      "heavy ball", Optim.HeavyBall(0.1, 0.9, 0.1)
      "nesterov", Optim.NesterovSgd(0.1, 0.9, 0.01)
      "adam", Optim.Adam(weightDecay = 0.01)
      "adamw", Optim.AdamW()
      "amsgrad", Optim.AmsGrad()
      "radam", Optim.RAdam()
      "nadam", Optim.NAdam()
      "rmsprop centered momentum", Optim.RmsProp(momentum = 0.9, centered = true)
      "adagrad", Optim.Adagrad(lrDecay = 0.1)
      "clip + sign + when + partition",
      Transforms.Chain(
          Transforms.ClipByGlobalNorm 1.0,
          Transforms.Partition(Parameters.RankAtLeast 2, Transforms.Sign(), Transforms.When((fun t _ -> t % 2L = 0L), Transforms.Ema 0.9)),
          Transforms.ScaleBySchedule(fun t -> -0.1 / float t)) ]

let private live () = DisposeScopeManager.Statistics.ThreadTotalLiveCount

[<Tests>]
let tests =
    testSequenced <| testList "ownership" [
        for name, tx in optimizers do
            test (sprintf "%s: steady state holds a constant number of live tensors" name) {
                let parameters = tree problem problem.Params0
                let mutable state = tx.Init parameters
                let stepOnce (g: float[] list) =
                    let grads = tree problem g
                    let struct (u, next) = tx.Update(grads, state, parameters, StepContext.Empty)
                    Updates.ApplyInPlace(parameters, u)
                    u.Dispose()
                    grads.Dispose()
                    OptState.Dispose state
                    state <- next
                for g in problem.Grads do stepOnce g          // warm-up
                let before = live ()
                for _ in 1 .. 30 do for g in problem.Grads do stepOnce g
                Expect.equal (live ()) before "live tensors after 90 more steps"
                OptState.Dispose state
                parameters.Dispose()
            }
        test "the new state stays valid when the old one is disposed, and vice versa" {
            use _ = torch.NewDisposeScope()
            let tx = Optim.Adam()
            let parameters = tree problem problem.Params0
            let s0 = tx.Init parameters
            let struct (_, s1) = tx.Update(tree problem problem.Grads.[0], s0, parameters, StepContext.Empty)
            let struct (_, s2) = tx.Update(tree problem problem.Grads.[1], s1, parameters, StepContext.Empty)
            let s2Values = Expect.stateLeaves s2
            OptState.Dispose s1
            Expect.equal (Expect.stateLeaves s2) s2Values "s2 after disposing s1"
            Expect.isFalse (Seq.exists2 (fun (a: torch.Tensor) b -> obj.ReferenceEquals(a, b)) (OptState.Tensors s0) (OptState.Tensors s2)) "no shared handles"
        }
        test "updates own their storage: disposing or changing the gradients does not touch them" {
            use _ = torch.NewDisposeScope()
            let tx = Transforms.Identity()
            let parameters = tree problem problem.Params0
            let grads = tree problem problem.Grads.[0]
            let struct (u, _) = tx.Update(grads, tx.Init parameters, parameters, StepContext.Empty)
            let expected = u.Tensors |> Seq.map values |> List.ofSeq
            for g in grads.Tensors do g.fill_(42.0) |> ignore
            grads.Dispose()
            Expect.equal (u.Tensors |> Seq.map values |> List.ofSeq) expected "updates unchanged"
        }
        test "temporaries die inside the step: only the results are new live tensors" {
            let tx = Optim.NAdam()
            let parameters = tree problem problem.Params0
            let grads = tree problem problem.Grads.[0]
            let s0 = tx.Init parameters
            let before = live ()
            let struct (u, s1) = tx.Update(grads, s0, parameters, StepContext.Empty)
            let results = u.Count + Seq.length (OptState.Tensors s1)
            Expect.equal (live () - before) (int64 results) "new live tensors = updates + state tensors"
            u.Dispose(); OptState.Dispose s1; OptState.Dispose s0; grads.Dispose(); parameters.Dispose()
        }
    ]
