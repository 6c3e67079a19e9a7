/// Behaviour of the combinators that the laws do not pin down.
module Lookahead.Tests.Combinators

open Expecto
open TorchSharp
open Lookahead
open Lookahead.FSharp
open Lookahead.Tests.Generators

let private problem =
    { Names = [ "fc.weight"; "fc.bias"; "scale" ]
      Shapes = [ [| 2L; 3L |]; [| 3L |]; [||] ]
      Params0 = [ Array.create 6 1.0; Array.create 3 1.0; [| 1.0 |] ]
      Grads = [ for k in 1 .. 4 -> [ Array.init 6 (fun i -> float (i + k)); Array.init 3 (fun i -> float (-i - k)); [| float k |] ] ] }

[<Tests>]
let tests =
    testList "combinators" [
        test "partition by rank routes matrices and the rest to their own transforms" {
            let tx = Transform.partitionBy (Param.rankAtLeast 2) (Primitives.scale 2.0) (Primitives.scale 3.0)
            let t = Expect.run tx problem
            for k, g in List.indexed problem.Grads do
                Expect.equal t.Updates.[k].[0] (g.[0] |> Array.map ((*) 2.0)) "matrix scaled by 2"
                Expect.equal t.Updates.[k].[1] (g.[1] |> Array.map ((*) 3.0)) "vector scaled by 3"
                Expect.equal t.Updates.[k].[2] (g.[2] |> Array.map ((*) 3.0)) "scalar scaled by 3"
        }
        test "partition by name keeps one state per label, over that label's parameters only" {
            use _ = torch.NewDisposeScope()
            let tx = Transform.partition (fun p -> if p.Name.EndsWith "bias" then "bias" else "rest") [ "rest", Primitives.trace 0.9; "bias", Primitives.ema 0.5 ]
            let parameters = tree problem problem.Params0
            let momentum (x: obj) = ((x :?> DeclaredState).["momentum"] :?> TensorTree).Names
            match tx.Init parameters with
            | :? DeclaredState as s ->
                Expect.sequenceEqual (s.Layout.Slots |> Seq.map (fun slot -> slot.Name)) [ "rest"; "bias" ] "one slot per label, in the given order"
                Expect.sequenceEqual (momentum s.["bias"]) [ "fc.bias" ] "bias label"
                Expect.sequenceEqual (momentum s.["rest"]) [ "fc.weight"; "scale" ] "rest label"
            | other -> failtestf "expected a partition's DeclaredState, got %A" other
        }
        test "partition by shape and an unknown label is an error naming the parameter" {
            use _ = torch.NewDisposeScope()
            let tx = Transform.partition (fun p -> if p.Shape.Count = 1 then "vector" else "other") [ "vector", Primitives.sign ]
            Expect.throwsC (fun () -> tx.Init(tree problem problem.Params0) |> ignore) (fun ex ->
                Expect.isTrue (ex :? System.ArgumentException) "an ArgumentException"
                Expect.stringContains ex.Message "'fc.weight'" "names the parameter"
                Expect.stringContains ex.Message "'other'" "names the label")
        }
        test "when applies the inner transform only on the chosen steps and keeps its state otherwise" {
            let tx = Transform.whenStep (fun t _ -> t % 2L = 0L) (Primitives.trace 0.5)
            let t = Expect.run tx problem
            let innerAlone = Expect.run (Primitives.trace 0.5) { problem with Grads = [ problem.Grads.[1]; problem.Grads.[3] ] }
            Expect.equal t.Updates.[0] (Array.ofList problem.Grads.[0]) "step 1 passes through"
            Expect.equal t.Updates.[2] (Array.ofList problem.Grads.[2]) "step 3 passes through"
            Expect.equal t.Updates.[1] innerAlone.Updates.[0] "step 2 is the inner's first step"
            Expect.equal t.Updates.[3] innerAlone.Updates.[1] "step 4 is the inner's second step: skipped steps left its state alone"
        }
        test "named chain exposes each stage's state by name" {
            use _ = torch.NewDisposeScope()
            let tx = Transform.namedChain [ "momentum", Primitives.ema 0.9; "lr", Primitives.scale -0.1 ]
            match tx.Init(tree problem problem.Params0) with
            | :? DeclaredState as s ->
                Expect.equal (s.["momentum"] :?> DeclaredState).Layout.Kind "trace" "the momentum stage's state"
                Expect.isTrue (obj.ReferenceEquals(s.["lr"], EmptyState.Instance)) "the scale stage is stateless"
            | other -> failtestf "expected a named chain's DeclaredState, got %A" other
        }
        test "declared combinator states keep their leaf paths and order" {
            use _ = torch.NewDisposeScope()
            let parameters = tree problem problem.Params0
            let leaves (tx: IGradientTransformation) = (tx.Init parameters).Leaves() |> List.ofSeq
            let paths tx = leaves tx |> List.map (fun l -> l.Path)
            let perParameter slot = [ for n in problem.Names -> slot + "/" + n ]
            let trace prefix = (prefix + "/count") :: perParameter (prefix + "/momentum")
            let inner = Transforms.Trace 0.9
            Expect.equal (paths (Transforms.When((fun _ _ -> true), inner))) ([ "count"; "applied" ] @ trace "inner") "when"
            Expect.equal (paths (Transforms.Scheduled(fun _ -> inner))) ("count" :: trace "inner") "scheduled"
            let boosted = Transforms.Boosted((fun _ -> inner), BoostPolicy())
            Expect.equal (paths boosted) ([ "count"; "level"; "window_sum"; "window_count"; "previous_mean" ] @ trace "inner") "boosted"
            let previousMean = (leaves boosted |> List.find (fun l -> l.Path = "previous_mean")).Scalar.Value
            Expect.isTrue (System.Double.IsNaN previousMean) "previous_mean starts NaN"
            Expect.equal (paths (Transforms.GuardNonFinite inner)) ([ "count"; "consecutive"; "total" ] @ trace "inner") "guard"
            Expect.equal (paths (Transforms.SlowFastWeights(inner, 5, 0.5))) ("count" :: perParameter "slow" @ trace "inner") "slow/fast weights"
            let partition = Transforms.Partition((fun (p: ParameterInfo) -> if p.Rank = 1 then "vector" else "other"), struct ("other", inner), struct ("vector", inner))
            Expect.equal (paths partition) [ "other/count"; "other/momentum/fc.weight"; "other/momentum/scale"; "vector/count"; "vector/momentum/fc.bias" ] "partition"
        }
        test "a partition label that cannot name a state slot is refused when the partition is built" {
            for bad in [ ""; "a/b" ] do
                Expect.throwsC (fun () -> Transforms.Partition((fun _ -> bad), struct (bad, Transforms.Sign())) |> ignore) (fun ex ->
                    Expect.isTrue (ex :? System.ArgumentException) "an ArgumentException"
                    Expect.stringContains ex.Message $"'{bad}'" "names the label")
        }
        test "Optimizer.run folds over a list of gradient trees" {
            use _ = torch.NewDisposeScope()
            let p0 = tree problem problem.Params0
            let grads = [ for g in problem.Grads -> tree problem g ]
            let trajectory, final = Optimizer.run (Sgd.create { Sgd.defaults with lr = 0.5 }) p0 grads
            Expect.equal trajectory.Length 4 "one parameter tree per step"
            let expected = Array.init 6 (fun i -> 1.0 - 0.5 * (List.sumBy (fun (g: float[] list) -> g.[0].[i]) problem.Grads))
            Expect.equal (values final.Parameters.["fc.weight"]) expected "θ₀ − η·Σg"
        }
    ]
