/// Structural validation happens before any state exists or changes: through the runner (at construction,
/// or at the start of a step) and through the pure path, a wrong rank, an unrouted parameter, a missing
/// context key or a malformed gradient tree is an error naming it, and the state and parameters are bit-identical
/// afterwards.
module Lookahead.Tests.Structural

open System
open Expecto
open TorchSharp
open Lookahead

let private weightAndBias () =
    TensorTree.Of(
        struct ("w", torch.linspace(-1.0, 1.0, 12L, dtype = torch.float64).reshape(4L, 3L)),
        struct ("b", torch.linspace(0.5, 1.5, 3L, dtype = torch.float64)))

let private bits (t: torch.Tensor) = Generators.values t |> Array.map BitConverter.DoubleToInt64Bits

let private stateBits (s: IOptState) =
    Expect.stateLeaves s |> Array.map (fun (n, v) -> n, v |> Array.map BitConverter.DoubleToInt64Bits |> List.ofArray)

let private throwsNaming (f: unit -> unit) (fragments: string list) =
    let e = Expect.throwsC f id
    for fr in fragments do
        if not (e.Message.Contains(fr: string)) then failtestf "the message does not name '%s': %s: %s" fr (e.GetType().Name) e.Message

let private gradientsFor (p: TensorTree) = p.Map(fun t -> torch.ones_like(t) * 0.25)

[<Tests>]
let tests =
    testList "structural validation" [
        test "a runner over Muon with a bias vector fails at construction, naming the tensor and Partition; the parameters are untouched" {
            use _ = torch.NewDisposeScope()
            let p = weightAndBias ()
            let before = [| for t in p.Tensors -> bits t |]
            let pointers = [| for t in p.Tensors -> t.storage<float>().data_ptr() |]
            throwsNaming (fun () -> new Runner(Optim.Muon(), p) |> ignore) [ "'b'"; "rank 1"; "Partition" ]
            Expect.equal [| for t in p.Tensors -> bits t |] before "values"
            Expect.equal [| for t in p.Tensors -> t.storage<float>().data_ptr() |] pointers "the parameters were not re-pointed to runner storage"
        }

        test "the pure path fails at Init and at Update before stepping" {
            use _ = torch.NewDisposeScope()
            let p = weightAndBias ()
            throwsNaming (fun () -> Optim.Muon().Init p |> ignore) [ "'b'"; "Partition" ]
            // A state made for the matrix alone, stepped with parameters that include the vector.
            let wOnly = TensorTree.Of(struct ("w", p.["w"]))
            let tx = Optim.Muon()
            let state = tx.Init wOnly
            let before = stateBits state
            throwsNaming (fun () -> tx.Update(gradientsFor p, state, p, StepContext.Empty) |> ignore) [ "'b'" ]
            Expect.equal (stateBits state) before "state unchanged"
        }

        test "Muon with its auxiliary AdamW routes the vector away and runs; routing everything to Muon is refused" {
            use _ = torch.NewDisposeScope()
            use r = new Runner(Optim.MuonWithAuxAdam(), weightAndBias ())
            r.Step(gradientsFor r.Parameters)
            Expect.equal r.StepCount 1L "stepped"
            throwsNaming
                (fun () -> new Runner(Optim.MuonWithAuxAdam(isMuonParameter = Func<ParameterInfo, bool>(fun _ -> true)), weightAndBias ()) |> ignore)
                [ "'b'"; "Partition" ]
        }

        test "a partition label without a transform is refused at construction, naming the parameter and the label" {
            use _ = torch.NewDisposeScope()
            let tx = Transforms.Partition((fun (i: ParameterInfo) -> if i.Rank >= 2 then "matrix" else "vector"), struct ("matrix", Optim.Sgd 0.1))
            throwsNaming (fun () -> new Runner(tx, weightAndBias ()) |> ignore) [ "'b'"; "'vector'" ]
            throwsNaming (fun () -> tx.Init(weightAndBias ()) |> ignore) [ "'b'"; "'vector'" ]
        }

        testList "runner steps that throw change neither state nor parameters" [
            let renamed (g: TensorTree) = TensorTree.Of([| "w"; "other" |], [| g.Tensors.[0]; g.Tensors.[1] |])
            let reshaped (g: TensorTree) = TensorTree.Of(g.Names, [| torch.zeros([| 3L; 3L |], dtype = torch.float64); g.Tensors.[1] |])
            let retyped (g: TensorTree) = TensorTree.Of(g.Names, [| g.Tensors.[0].``to``(torch.float32); g.Tensors.[1] |])
            let missing (g: TensorTree) = TensorTree.Of([| g.Names.[0] |], [| g.Tensors.[0] |])
            let cases : (string * (unit -> IGradientTransformation) * (TensorTree -> TensorTree) * StepContext * string list) list =
                [ "MoMo without a loss", (fun () -> Optim.Momo()), id, StepContext.Empty, [ "momo"; "loss" ]
                  "MoMo-Adam inside a chain without a loss", (fun () -> Transforms.Chain(Transforms.ClipByGlobalNorm 1.0, Optim.MomoAdam())), id, StepContext.Empty, [ "momo_adam"; "loss" ]
                  "ARSG-OBSB without a loss", (fun () -> Optim.ArsgObsb()), id, StepContext.Empty, [ "arsg_obsb"; "loss" ]
                  "exact MARS without the previous-iterate gradient at step 2", (fun () -> Optim.Mars(exact = true)), id, StepContext.Empty, [ "previous_iterate_gradient"; "step 2" ]
                  "gradients with another name", (fun () -> Optim.Adam()), renamed, StepContext.Empty.WithLoss 1.0, [ "other" ]
                  "a gradient of another shape", (fun () -> Optim.Adam()), reshaped, StepContext.Empty.WithLoss 1.0, [ "w"; "shape" ]
                  "a gradient of another dtype", (fun () -> Optim.Adam()), retyped, StepContext.Empty.WithLoss 1.0, [ "w"; "Float32" ]
                  "a missing gradient", (fun () -> Optim.Adam()), missing, StepContext.Empty.WithLoss 1.0, [ "b" ] ]
            for name, make, corrupt, ctx, fragments in cases ->
                test name {
                    use _ = torch.NewDisposeScope()
                    use r = new Runner(make (), weightAndBias ())
                    // One good step first, with everything a step can need.
                    let good = gradientsFor r.Parameters
                    r.Step(good, StepContext.Empty.WithLoss(2.0).With(ContextKeys.PreviousIterateGradient, good))
                    let before = stateBits r.State
                    let paramsBefore = [| for t in r.Parameters.Tensors -> bits t |]
                    throwsNaming (fun () -> r.Step(corrupt good, ctx)) fragments
                    Expect.equal (stateBits r.State) before "state unchanged (bit for bit)"
                    Expect.equal [| for t in r.Parameters.Tensors -> bits t |] paramsBefore "parameters unchanged"
                    Expect.equal r.StepCount 1L "no step counted"
                    // And the runner still works afterwards.
                    r.Step(good, StepContext.Empty.WithLoss(2.0).With(ContextKeys.PreviousIterateGradient, good))
                    Expect.equal r.StepCount 2L "steps again"
                }
        ]
    ]
