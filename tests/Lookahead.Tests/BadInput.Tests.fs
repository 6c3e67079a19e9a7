/// Table-driven bad input: every entry must raise an exception whose message names the argument or tensor at
/// fault and what was expected; entries that reach a step also check that nothing changed.
module Lookahead.Tests.BadInput

open System
open System.IO
open System.Text.Json
open Expecto
open TorchSharp
open Lookahead

let private lrCases : (string * (float -> obj)) list =
    [ "Sgd", (fun lr -> box (Optim.Sgd lr)); "HeavyBall", (fun lr -> box (Optim.HeavyBall(lr, 0.9))); "NesterovSgd", (fun lr -> box (Optim.NesterovSgd(lr, 0.9)))
      "Adam", (fun lr -> box (Optim.Adam lr)); "AdamW", (fun lr -> box (Optim.AdamW lr)); "AmsGrad", (fun lr -> box (Optim.AmsGrad lr))
      "RAdam", (fun lr -> box (Optim.RAdam lr)); "NAdam", (fun lr -> box (Optim.NAdam lr)); "RmsProp", (fun lr -> box (Optim.RmsProp lr))
      "Adagrad", (fun lr -> box (Optim.Adagrad lr)); "NesterovVelocity", (fun lr -> box (Optim.NesterovVelocity(lr, 0.9)))
      "GeneralisedNesterov", (fun lr -> box (Optim.GeneralisedNesterov(lr, 0.9, 3.0))); "Nesterov", (fun lr -> box (Optim.Nesterov(lr, 0.9)))
      "Qhm", (fun lr -> box (Optim.Qhm(lr, 0.9, 0.7))); "QhAdam", (fun lr -> box (Optim.QhAdam lr)); "Rsg", (fun lr -> box (Optim.Rsg lr))
      "Arsg", (fun lr -> box (Optim.Arsg lr)); "Mars", (fun lr -> box (Optim.Mars lr)); "MarsM", (fun lr -> box (Optim.MarsM lr))
      "MarsMEfficient", (fun lr -> box (Optim.MarsMEfficient lr)); "Muon", (fun lr -> box (Optim.Muon lr)); "Momo", (fun lr -> box (Optim.Momo lr))
      "MomoAdam", (fun lr -> box (Optim.MomoAdam lr)); "Lion", (fun lr -> box (Optim.Lion lr)); "Sps", (fun lr -> box (Optim.Sps lr))
      "SpsPlus", (fun lr -> box (Optim.SpsPlus lr)); "Adopt", (fun lr -> box (Optim.Adopt lr)); "AdEMAMix", (fun lr -> box (Optim.AdEMAMix lr))
      "CautiousAdamW", (fun lr -> box (Optim.CautiousAdamW lr)); "CautiousLion", (fun lr -> box (Optim.CautiousLion lr))
      "ScheduleFreeSgd", (fun lr -> box (Optim.ScheduleFreeSgd lr)); "ScheduleFreeAdamW", (fun lr -> box (Optim.ScheduleFreeAdamW lr))
      "Prodigy", (fun lr -> box (Optim.Prodigy lr)); "Soap", (fun lr -> box (Optim.Soap lr))
      "Lamb", (fun lr -> box (Optim.Lamb lr)); "Lars", (fun lr -> box (Optim.Lars lr))
      "SgdHD", (fun lr -> box (Optim.SgdHD lr)); "AdamHD", (fun lr -> box (Optim.AdamHD lr)) ]

let private betaCases : (string * string * (float -> obj)) list =
    [ "Adam", "beta1", (fun b -> box (Optim.Adam(beta1 = b))); "Adam", "beta2", (fun b -> box (Optim.Adam(beta2 = b)))
      "AdamW", "beta1", (fun b -> box (Optim.AdamW(beta1 = b))); "NAdam", "beta1", (fun b -> box (Optim.NAdam(beta1 = b)))
      "QhAdam", "beta2", (fun b -> box (Optim.QhAdam(beta2 = b))); "Mars", "beta1", (fun b -> box (Optim.Mars(beta1 = b)))
      "MarsM", "momentum", (fun b -> box (Optim.MarsM(momentum = b))); "Muon", "momentum", (fun b -> box (Optim.Muon(momentum = b)))
      "Momo", "beta", (fun b -> box (Optim.Momo(beta = b))); "Arsg", "mu", (fun b -> box (Optim.Arsg(mu = b)))
      "Rsg", "mu", (fun b -> box (Optim.Rsg(0.1, mu = b))); "Qhm", "momentum", (fun b -> box (Optim.Qhm(0.1, b, 0.5)))
      "Adopt", "beta2", (fun b -> box (Optim.Adopt(beta2 = b))); "AdEMAMix", "beta3", (fun b -> box (Optim.AdEMAMix(beta3 = b)))
      "CautiousAdamW", "beta1", (fun b -> box (Optim.CautiousAdamW(beta1 = b))); "Prodigy", "beta1", (fun b -> box (Optim.Prodigy(beta1 = b)))
      "ScheduleFreeAdamW", "beta2", (fun b -> box (Optim.ScheduleFreeAdamW(beta2 = b))); "Soap", "beta1", (fun b -> box (Optim.Soap(beta1 = b)))
      "AdamHD", "beta1", (fun b -> box (Optim.AdamHD(beta1 = b))) ]

let private parametersFor () =
    TensorTree.Of(struct ("w", torch.randn([| 4L; 3L |], dtype = torch.float64)), struct ("b", torch.randn([| 3L |], dtype = torch.float64)))

/// (description, action, fragments the message must contain).
let private table () : (string * (unit -> unit) * string list) list =
    [ for name, make in lrCases do
        for bad in [ -1.0; nan; infinity ] ->
            sprintf "%s with lr = %g" name bad, (fun () -> make bad |> ignore), [ (if name.StartsWith "Sps" then "maxLr" else "lr"); "valid range" ]
      for name, arg, make in betaCases do
        for bad in [ 1.0; -0.1; nan ] ->
            sprintf "%s with %s = %g" name arg bad, (fun () -> make bad |> ignore), [ arg; "valid range" ]
      yield "Adam with eps = -1", (fun () -> Optim.Adam(eps = -1.0) |> ignore), [ "eps"; "valid range" ]
      yield "Adam with eps = NaN", (fun () -> Optim.Adam(eps = nan) |> ignore), [ "eps"; "valid range" ]
      yield "Arsg with eps = 0 (it is a floor)", (fun () -> Optim.Arsg(eps = 0.0) |> ignore), [ "eps"; "(0, ∞)" ]
      yield "Arsg with eps = -1", (fun () -> Optim.Arsg(eps = -1.0) |> ignore), [ "eps"; "(0, ∞)" ]
      yield "Sgd with weight decay -1", (fun () -> Optim.Sgd(0.1, weightDecay = -1.0) |> ignore), [ "weightDecay" ]
      yield "Sgd nesterov without momentum", (fun () -> Optim.Sgd(0.1, nesterov = true) |> ignore), [ "nesterov"; "momentum" ]
      yield "Lion with beta1 > beta2", (fun () -> Optim.Lion(beta1 = 0.999, beta2 = 0.9) |> ignore), [ "beta1"; "beta2" ]
      yield "MarsMEfficient with momentum 0 (divides by β)", (fun () -> Optim.MarsMEfficient(momentum = 0.0) |> ignore), [ "momentum" ]
      yield "ArsgObsb whose μ would reach 1", (fun () -> Optim.ArsgObsb(initialMu = 0.5) |> ignore), [ "initialMu" ]
      yield "Orthogonalise with -1 steps", (fun () -> Transforms.Orthogonalise(OrthogonaliserOptions(Steps = -1)) |> ignore), [ "Steps" ]
      yield "SlowFastWeights with k = 0", (fun () -> Transforms.SlowFastWeights(Optim.Sgd 0.1, 0, 0.5) |> ignore), [ "syncPeriod" ]
      yield "SlowFastWeights with α = 2", (fun () -> Transforms.SlowFastWeights(Optim.Sgd 0.1, 2, 2.0) |> ignore), [ "alpha" ]
      yield "Trace with dampening 2", (fun () -> Transforms.Trace(0.9, 2.0) |> ignore), [ "dampening" ]
      yield "GradientCorrection with scale NaN", (fun () -> Transforms.GradientCorrection nan |> ignore), [ "scale" ]
      yield "MarsScale with γ = -1", (fun () -> Transforms.MarsScale(-1.0, 0.9) |> ignore), [ "gamma" ]
      yield "Cosine schedule with 0 steps", (fun () -> Schedule.Cosine(0.1, 0L) |> ignore), [ "totalSteps" ]
      yield "OneCycle with pctStart 1", (fun () -> Schedule.OneCycle(0.1, 10L, pctStart = 1.0) |> ignore), [ "pctStart" ]
      yield "Step schedule with stepSize 0", (fun () -> Schedule.Step(0.1, 0L, 0.5) |> ignore), [ "stepSize" ]
      yield "LinearWarmup with NaN peak", (fun () -> Schedule.LinearWarmup(nan, 10L) |> ignore), [ "peak" ]
      yield "a schedule asked for step 0", (fun () -> (Schedule.Constant 1.0).At 0L |> ignore), [ "t = 0" ]
      yield "PolyakTruncation with a rectified preconditioner", (fun () -> Transforms.PolyakTruncation(PolyakOptions(Preconditioner = PreconditionOptions(Rectification = Rectification.RAdam))) |> ignore), [ "preconditioner" ]
      yield "Precondition with MaxInitialValue but no AMSGrad", (fun () -> Transforms.Precondition(PreconditionOptions(MaxInitialValue = Nullable 1.0)) |> ignore), [ "MaxInitialValue"; "AmsGrad" ]
      yield "ScheduleFreeSgd with momentum 0 (x divides by β)", (fun () -> Optim.ScheduleFreeSgd(momentum = 0.0) |> ignore), [ "momentum"; "(0, 1]" ]
      yield "ScheduleFreeAverage with constantWeight 0", (fun () -> Transforms.ScheduleFreeAverage(0.1, 0.9, constantWeight = Nullable 0.0) |> ignore), [ "constantWeight" ]
      yield "AdEMAMix with alphaWarmup 0", (fun () -> Optim.AdEMAMix(alphaWarmup = Nullable 0) |> ignore), [ "alphaWarmup" ]
      yield "Adopt with a negative clip exponent", (fun () -> Optim.Adopt(clipExponent = Nullable -1.0) |> ignore), [ "clipExponent" ]
      yield "Soap with preconditionFrequency 0", (fun () -> Optim.Soap(preconditionFrequency = 0) |> ignore), [ "PreconditionFrequency" ]
      yield "ScaleByTrustRatio with maxRatio below minRatio", (fun () -> Transforms.ScaleByTrustRatio(minRatio = 2.0, maxRatio = 1.0) |> ignore), [ "maxRatio" ]
      yield "MultiSteps with k = 0", (fun () -> Transforms.MultiSteps(Optim.Sgd 0.1, 0) |> ignore), [ "k" ]
      yield "Prodigy with growthRate 0.5", (fun () -> Optim.Prodigy(growthRate = 0.5) |> ignore), [ "growthRate" ]
      yield "Prodigy with d0 = 0", (fun () -> Optim.Prodigy(d0 = 0.0) |> ignore), [ "d0" ]
      yield "Adafactor with clipThreshold 0", (fun () -> Optim.Adafactor(clipThreshold = Nullable 0.0) |> ignore), [ "clipThreshold"; "(0, ∞)" ]
      yield "Adafactor with β₁ = 1", (fun () -> Optim.Adafactor(beta1 = Nullable 1.0) |> ignore), [ "beta1"; "[0, 1)" ]
      yield "Adafactor with a negative minDimSizeToFactor", (fun () -> Optim.Adafactor(minDimSizeToFactor = -1) |> ignore), [ "minDimSizeToFactor" ]
      yield "Prodigy with slice 0", (fun () -> Optim.Prodigy(slice = 0) |> ignore), [ "slice" ]
      yield "SgdHD with a negative hypergradient rate", (fun () -> Optim.SgdHD(0.1, hypergradientLr = -1e-3) |> ignore), [ "hypergradientLr" ]
      yield "HypergradientDescent with an undefined scope", (fun () -> Transforms.HypergradientDescent(Optim.Sgd 1.0, 0.1, 0.0, enum<HypergradientScope> 7) |> ignore), [ "scope"; "HypergradientScope" ]
      yield "Cautious with floor 0", (fun () -> Transforms.Cautious(Optim.Sgd 0.1, floor = 0.0) |> ignore), [ "floor" ]
      yield "CautiousLion with beta1 > beta2", (fun () -> Optim.CautiousLion(beta1 = 0.99, beta2 = 0.9) |> ignore), [ "beta1"; "beta2" ]
      yield "BoostPolicy with a window of 0", (fun () -> Transforms.Boosted((fun _ -> Optim.Sgd 0.1), BoostPolicy(Window = 0)) |> ignore), [ "Window" ]
      // Structural: found when the optimizer first meets the parameters (Structural.Tests.fs has the runner's side).
      yield "Muon initialised on a vector", (fun () -> Optim.Muon().Init(parametersFor ()) |> ignore), [ "'b'"; "matrices"; "Partition" ] ]

/// Update-time bad input: the step throws, naming the tensor, and neither the state nor the parameters change.
let private stepCases () : (string * IGradientTransformation * (TensorTree -> TensorTree) * StepContext * string list) list =
    let renamed (g: TensorTree) = TensorTree.Of([| "w"; "other" |], [| g.Tensors.[0]; g.Tensors.[1] |])
    let reshaped (g: TensorTree) = TensorTree.Of(g.Names, [| torch.zeros([| 3L; 3L |], dtype = torch.float64); g.Tensors.[1] |])
    let retyped (g: TensorTree) = TensorTree.Of(g.Names, [| g.Tensors.[0].``to``(torch.float32); g.Tensors.[1] |])
    let missing (g: TensorTree) = TensorTree.Of([| "w" |], [| g.Tensors.[0] |])
    [ "gradients with another name", Optim.Adam(), renamed, StepContext.Empty, [ "b"; "other" ]
      "a gradient of another shape", Optim.Adam(), reshaped, StepContext.Empty, [ "w"; "shape" ]
      "a gradient of another dtype", Optim.Adam(), retyped, StepContext.Empty, [ "w"; "Float32" ]
      "a missing gradient", Optim.Adam(), missing, StepContext.Empty, [ "b" ]
      "MoMo without a loss", Optim.Momo(), id, StepContext.Empty, [ "momo"; "loss" ]
      "MoMo-Adam without a loss", Optim.MomoAdam(), id, StepContext.Empty, [ "momo_adam"; "loss" ]
      "SPS without a loss", Optim.Sps(), id, StepContext.Empty, [ "sps"; "loss" ]
      "SPS+ without a loss", Optim.SpsPlus(), id, StepContext.Empty, [ "sps+"; "loss" ]
      "ARSG-OBSB without a loss", Optim.ArsgObsb(), id, StepContext.Empty, [ "arsg_obsb"; "loss" ]
      "MoMo with an infinite loss", Optim.Momo(), id, StepContext.Empty.WithLoss infinity, [ "momo"; "loss" ]
      "exact MARS without the previous-iterate gradient at step 2", Optim.Mars(exact = true), id, StepContext.Empty, [ "previous_iterate_gradient" ] ]

let private caseFile () = File.ReadAllText(Path.Combine(Oracle.oracleDir, "mars_adamw_defaults.json"))

let private throwsNaming (f: unit -> unit) (fragments: string list) =
    let e = Expect.throwsC f id
    for fr in fragments do
        if not (e.Message.Contains(fr: string)) then failtestf "the message does not name '%s': %s: %s" fr (e.GetType().Name) e.Message

[<Tests>]
let tests =
    testList "bad input" [
        let constructors = table ()
        let steps = stepCases ()
        test (sprintf "the table tries %d bad inputs (at least 100)" (constructors.Length + steps.Length + 6)) {
            Expect.isGreaterThanOrEqual (constructors.Length + steps.Length + 6) 100 "the brief asks for 100"
        }
        testList "constructors and hyperparameters" [
            for name, f, fragments in constructors -> test name { throwsNaming f fragments }
        ]
        testList "steps: the error names the tensor; state and parameters are unchanged" [
            for name, tx, corrupt, ctx, fragments in steps ->
                test name {
                    use _ = torch.NewDisposeScope()
                    let p = parametersFor ()
                    let good = p.Map(fun t -> torch.ones_like t)
                    let mutable state = tx.Init p
                    // One good step first (with a loss), so that step-2 requirements are exercised where they exist.
                    if name.StartsWith "exact MARS" then
                        let struct (_, s) = tx.Update(good, state, p, StepContext.Empty)
                        state <- s
                    let before = Expect.stateLeaves state
                    let paramsBefore = [| for t in p.Tensors -> Generators.values t |]
                    let g = corrupt good
                    throwsNaming (fun () -> tx.Update(g, state, p, ctx) |> ignore) fragments
                    let bits (leaves: (string * float[])[]) = leaves |> Array.map (fun (n, v) -> n, v |> Array.map BitConverter.DoubleToInt64Bits |> List.ofArray)
                    Expect.equal (bits (Expect.stateLeaves state)) (bits before) "state unchanged (bit for bit; NaN leaves included)"
                    Expect.equal [| for t in p.Tensors -> Generators.values t |] paramsBefore "parameters unchanged"
                }
        ]
        testList "runner and replay" [
            yield test "a runner over an empty tree" { throwsNaming (fun () -> new Runner(Optim.Adam(), TensorTree.Of(Array.empty<struct (string * torch.Tensor)>)) |> ignore) [ "empty" ] }
            for field in [ "optimizer"; "params0"; "grads"; "trajectory"; "hyperparameters" ] do
              yield test (sprintf "a replay case without '%s'" field) {
                    let node = Nodes.JsonNode.Parse(caseFile ()).AsObject()
                    node.Remove field |> ignore
                    use doc = JsonDocument.Parse(node.ToJsonString())
                    let r = Lookahead.Cli.Replay.Run("edited", doc.RootElement)
                    Expect.isFalse r.Passed "fails"
                    Expect.stringContains r.Detail (sprintf "'%s'" field) "names the field"
                }
        ]
    ]
