/// The F# layer against the C# API: the settings records' defaults are the C# factories' (read, not restated),
/// `create defaults` is the C# call without optional arguments, and each F# wrapper (Lion, AMSGrad, the
/// non-finite guard, checkpoints, schedules, the runner, the TorchSharp adapter) does what its C# counterpart does.
module Lookahead.Tests.FSharpLayer

open System
open System.IO
open System.Reflection
open System.Runtime.InteropServices
open Expecto
open FsCheck
open FsCheck.FSharp
open Microsoft.FSharp.Reflection
open TorchSharp
open Lookahead
open Lookahead.FSharp
open Lookahead.Tests.Generators
open Lookahead.Tests.Expect

/// Fewer cases than the default: every optimizer runs twice per case.
let private quick = { config with maxTest = 20 }

let private prop name (g: Gen<'a>) (f: 'a -> unit) = testPropertyWithConfig quick name (Prop.forAll (Arb.fromGen g) f)

let private loss (k: int) = 1.5 / float (k + 1) + 0.2 * float (k % 2)

/// 1–3 matrices and 3–12 steps, for Muon (every tensor must be a matrix).
let private genMatrices : Gen<Problem> =
    gen {
        let! k = Gen.choose (1, 3)
        let! shapes = Gen.listOfLength k (Gen.arrayOfLength 2 (Gen.choose (1, 6) |> Gen.map int64))
        let! steps = Gen.choose (3, 12)
        let! params0 = Gen.sequenceToList [ for s in shapes -> genValues (numel s) 1.0 ]
        let! grads = Gen.listOfLength steps (Gen.sequenceToList [ for s in shapes -> genValues (numel s) 0.5 ])
        return { Names = shapes |> List.mapi (fun i _ -> sprintf "h%d.weight" i); Shapes = shapes; Params0 = params0; Grads = grads }
    }

type private Kind =
    | Plain
    | WithLoss
    | MatricesOnly

/// Every F# optimizer: `create defaults` and the C# factory with only the arguments it requires (the F# layer's own values for them).
let private optimizers : (string * Kind * (unit -> IGradientTransformation) * (unit -> IGradientTransformation)) list =
    [ "Sgd", Plain, (fun () -> Sgd.create Sgd.defaults), (fun () -> Optim.Sgd 1e-2)
      "HeavyBall", Plain, (fun () -> HeavyBall.create HeavyBall.defaults), (fun () -> Optim.HeavyBall(1e-2, 0.9))
      "NesterovSgd", Plain, (fun () -> NesterovSgd.create NesterovSgd.defaults), (fun () -> Optim.NesterovSgd(1e-2, 0.9))
      "NesterovVelocity", Plain, (fun () -> NesterovVelocity.create NesterovVelocity.defaults), (fun () -> Optim.NesterovVelocity(1e-2, 0.9))
      "Adam", Plain, (fun () -> Adam.create Adam.defaults), (fun () -> Optim.Adam())
      "AmsGrad", Plain, (fun () -> AmsGrad.create AmsGrad.defaults), (fun () -> Optim.AmsGrad())
      "AdamW", Plain, (fun () -> AdamW.create AdamW.defaults), (fun () -> Optim.AdamW())
      "RAdam", Plain, (fun () -> RAdam.create RAdam.defaults), (fun () -> Optim.RAdam())
      "NAdam", Plain, (fun () -> NAdam.create NAdam.defaults), (fun () -> Optim.NAdam())
      "RmsProp", Plain, (fun () -> RmsProp.create RmsProp.defaults), (fun () -> Optim.RmsProp())
      "Adagrad", Plain, (fun () -> Adagrad.create Adagrad.defaults), (fun () -> Optim.Adagrad())
      "Lion", Plain, (fun () -> Lion.create Lion.defaults), (fun () -> Optim.Lion())
      "GeneralisedNesterov", Plain, (fun () -> GeneralisedNesterov.create GeneralisedNesterov.defaults), (fun () -> Optim.GeneralisedNesterov(1e-2, 0.9, 0.9))
      "Nesterov", Plain, (fun () -> Nesterov.create Nesterov.defaults), (fun () -> Optim.Nesterov(1e-2, 0.9))
      "Qhm", Plain, (fun () -> Qhm.create Qhm.defaults), (fun () -> Optim.Qhm(1.0, 0.999, 0.7))
      "QhAdam", Plain, (fun () -> QhAdam.create QhAdam.defaults), (fun () -> Optim.QhAdam())
      "Rsg", Plain, (fun () -> Rsg.create Rsg.defaults), (fun () -> Optim.Rsg 1e-2)
      "Arsg", Plain, (fun () -> Arsg.create Arsg.defaults), (fun () -> Optim.Arsg())
      "ArsgObsb", WithLoss, (fun () -> ArsgObsb.create ArsgObsb.defaults), (fun () -> Optim.ArsgObsb())
      "Mars", Plain, (fun () -> Mars.create Mars.defaults), (fun () -> Optim.Mars())
      "MarsM", Plain, (fun () -> MarsM.create MarsM.defaults), (fun () -> Optim.MarsM())
      "MarsMEfficient", Plain, (fun () -> MarsMEfficient.create MarsMEfficient.defaults), (fun () -> Optim.MarsMEfficient())
      "Muon", MatricesOnly, (fun () -> Muon.create Muon.defaults), (fun () -> Optim.Muon())
      "MuonWithAuxAdam", Plain, (fun () -> MuonWithAuxAdam.create MuonWithAuxAdam.defaults), (fun () -> Optim.MuonWithAuxAdam())
      "Sps", WithLoss, (fun () -> Sps.create Sps.defaults), (fun () -> Optim.Sps())
      "SpsPlus", WithLoss, (fun () -> SpsPlus.create SpsPlus.defaults), (fun () -> Optim.SpsPlus())
      "Momo", WithLoss, (fun () -> Momo.create Momo.defaults), (fun () -> Optim.Momo())
      "MomoAdam", WithLoss, (fun () -> MomoAdam.create MomoAdam.defaults), (fun () -> Optim.MomoAdam())
      "Adopt", Plain, (fun () -> Adopt.create Adopt.defaults), (fun () -> Optim.Adopt())
      "AdEMAMix", Plain, (fun () -> AdEMAMix.create AdEMAMix.defaults), (fun () -> Optim.AdEMAMix())
      "CautiousAdamW", Plain, (fun () -> CautiousAdamW.create CautiousAdamW.defaults), (fun () -> Optim.CautiousAdamW())
      "CautiousLion", Plain, (fun () -> CautiousLion.create CautiousLion.defaults), (fun () -> Optim.CautiousLion())
      "ScheduleFreeSgd", Plain, (fun () -> ScheduleFreeSgd.create ScheduleFreeSgd.defaults), (fun () -> Optim.ScheduleFreeSgd())
      "ScheduleFreeAdamW", Plain, (fun () -> ScheduleFreeAdamW.create ScheduleFreeAdamW.defaults), (fun () -> Optim.ScheduleFreeAdamW())
      "Prodigy", Plain, (fun () -> Prodigy.create Prodigy.defaults), (fun () -> Optim.Prodigy())
      "SgdHD", Plain, (fun () -> SgdHD.create SgdHD.defaults), (fun () -> Optim.SgdHD(0.01))
      "AdamHD", Plain, (fun () -> AdamHD.create AdamHD.defaults), (fun () -> Optim.AdamHD())
      "Soap", Plain, (fun () -> Soap.create Soap.defaults), (fun () -> Optim.Soap())
      "Lamb", Plain, (fun () -> Lamb.create Lamb.defaults), (fun () -> Optim.Lamb())
      "Lars", Plain, (fun () -> Lars.create Lars.defaults), (fun () -> Optim.Lars())
      "Adafactor", Plain, (fun () -> Adafactor.create Adafactor.defaults), (fun () -> Optim.Adafactor()) ]

let private runKind kind tx p =
    match kind with
    | WithLoss -> runWith (fun k -> StepContext.Empty.WithLoss(loss k)) tx p
    | _ -> run tx p

/// The public Optim factories (methods returning a transform).
let private optimFactories =
    typeof<Optim>.GetMethods(BindingFlags.Public ||| BindingFlags.Static)
    |> Array.filter (fun m -> m.ReturnType = typeof<IGradientTransformation>)
    |> Array.map (fun m -> m.Name)
    |> Set.ofArray

/// The F# modules with a `Settings` record and `defaults`, by name.
let private settingsModules =
    typeof<Factory>.Assembly.GetTypes()
    |> Array.filter (fun t ->
        FSharpType.IsModule t && not (isNull (t.GetNestedType "Settings"))
        && not (isNull (t.GetProperty("defaults", BindingFlags.Public ||| BindingFlags.Static))))
    |> Array.map (fun t -> t.Name, t)
    |> Map.ofArray

/// F# field names that differ from the C# parameter names.
let private renamed = Map [ "marsType", "type" ]

/// What differs between an F# settings value and the C# factory's declared defaults: every C# default (other than
/// null, which the C# body resolves) must equal the F# field's value, and every C# parameter with a default must
/// have an F# field.
let private mismatches (factory: string) (settings: obj) : string list =
    let m = (Factory factory).Method   // the overload of numbers (not the Hyper one)
    let parameters = m.GetParameters() |> Array.map (fun p -> p.Name, p) |> Map.ofArray
    let fields = FSharpType.GetRecordFields(settings.GetType())
    let fieldNames = fields |> Array.map (fun f -> renamed |> Map.tryFind f.Name |> Option.defaultValue f.Name) |> Set.ofArray
    [ for f in fields do
          let name = renamed |> Map.tryFind f.Name |> Option.defaultValue f.Name
          match parameters.TryFind name with
          | None -> yield sprintf "%s: the F# field '%s' has no C# parameter" factory f.Name
          | Some p when p.HasDefaultValue && not (isNull p.DefaultValue) ->
              let expected = if p.ParameterType.IsEnum then Enum.ToObject(p.ParameterType, p.DefaultValue) else p.DefaultValue
              let actual =
                  // An option field (a nullable C# number with a value default) compares by its content.
                  let v = f.GetValue settings
                  if f.PropertyType.IsGenericType && f.PropertyType.GetGenericTypeDefinition() = typedefof<option<_>> && not (isNull v)
                  then f.PropertyType.GetProperty("Value").GetValue v else v
              if not (expected.Equals actual) then yield sprintf "%s.%s: F# %A, C# %A" factory f.Name actual expected
          | Some _ -> ()
      for KeyValue(name, p) in parameters do
          if p.HasDefaultValue && not (fieldNames.Contains name) then
              yield sprintf "%s: the C# parameter '%s' (default %A) has no F# field" factory name p.DefaultValue ]

let private defaultsOf (t: Type) = t.GetProperty("defaults", BindingFlags.Public ||| BindingFlags.Static).GetValue null

/// A stand-in factory with the shapes of default the F# layer reads.
type Probe =
    static member Make
        ([<Optional; DefaultParameterValue(0.125)>] rate: float, required: float, [<Optional; DefaultParameterValue(7)>] steps: int,
         [<Optional; DefaultParameterValue(null: string)>] policy: string) =
        ignore (rate, required, steps, policy)

let private defaultTests =
    testList "defaults come from the C# signatures" [
        test "every Optim factory has an F# module, and every F# optimizer is in the trajectory tests" {
            let modules = settingsModules |> Map.keys |> Set.ofSeq
            Expect.equal (Set.difference optimFactories modules) Set.empty "Optim factories without an F# module"
            Expect.equal (Set.difference modules optimFactories) Set.empty "F# modules without an Optim factory"
            Expect.equal (optimizers |> List.map (fun (n, _, _, _) -> n) |> Set.ofList) modules "the trajectory list covers every module"
        }
        test "every F# default equals the C# factory's declared default, and every C# default has an F# field" {
            let all = [ for KeyValue(name, t) in settingsModules do yield! mismatches name (defaultsOf t) ]
            Expect.isEmpty all (String.concat "\n" all)
        }
        test "a default typed wrong in F# is caught, by the field check and by the trajectory" {
            let wrong = { Adam.defaults with eps = 1e-7 }
            Expect.equal (mismatches "Adam" (box wrong)) [ "Adam.eps: F# 1e-07, C# 1e-08" ] "the field check names it"
            let wrongMars = { Mars.defaults with betas1d = (0.9, 0.999) }
            let p =
                { Names = [ "w"; "b" ]; Shapes = [ [| 2L; 3L |]; [| 3L |] ]; Params0 = [ Array.init 6 (fun i -> 0.1 * float i); Array.create 3 0.5 ]
                  Grads = [ for k in 1 .. 4 -> [ Array.init 6 (fun i -> sin (float (i + k))); Array.init 3 (fun i -> cos (float (i * k))) ] ] }
            Expect.throws (fun () -> identical (run (Adam.create wrong) p) (run (Optim.Adam()) p)) "a wrong ε changes Adam's trajectory"
            Expect.throws (fun () -> identical (run (Mars.create wrongMars) p) (run (Optim.Mars()) p))
                "a wrong body default (betas1d, which metadata cannot show) changes MARS's trajectory"
            identical (run (Mars.create Mars.defaults) p) (run (Optim.Mars()) p)
        }
        test "Factory reads declared defaults and fails clearly otherwise" {
            let f = Factory(typeof<Probe>, "Make")
            Expect.equal (f.Default<float>("rate")) 0.125 "a double default"
            Expect.equal (f.Default<int>("steps")) 7 "an int default"
            Expect.equal (f.NullAsNone<string>("policy")) None "a null default as None"
            Expect.equal (f.Required("required", 2.5)) 2.5 "F#'s value where C# requires one"
            let message (g: unit -> unit) =
                try g (); failtest "expected a failure" with :? InvalidOperationException as e -> e.Message
            Expect.stringContains (message (fun () -> f.Default<float>("missing") |> ignore)) "has no parameter 'missing'" "a missing name"
            Expect.stringContains (message (fun () -> f.Default<float>("required") |> ignore)) "has no default for 'required'" "no default"
            Expect.stringContains (message (fun () -> f.Required("rate", 0.5) |> ignore)) "now has the default 0.125" "a default restated"
            Expect.stringContains (message (fun () -> f.Default<int>("rate") |> ignore)) "declares 'rate' as Double, not Int32" "a type mismatch"
            Expect.stringContains (message (fun () -> f.Default<string>("policy") |> ignore)) "resolves it in its body" "a null default"
            Expect.stringContains (message (fun () -> Factory "NoSuchOptimizer" |> ignore)) "Optim.NoSuchOptimizer does not exist" "a missing factory"
        }
        test "enum defaults are read as enums" {
            Expect.equal Mars.defaults.marsType MarsType.AdamW "Mars's type"
            Expect.equal Muon.defaults.scaling ShapeScaling.Muon "Muon's scaling"
            Expect.equal Qhm.defaults.weightDecayType QhmWeightDecay.Gradient "Qhm's λ type"
            Expect.equal Primitives.guardDefaults.policy NonFinitePolicy.Skip "GuardNonFinite's policy"
        }
    ]

let private trajectoryTests =
    testList "create defaults ≡ the C# factory without optional arguments (bit-identical)" [
        for name, kind, fs, cs in optimizers ->
            let g = if kind = MatricesOnly then genMatrices else genProblemWith 3 12
            prop name g (fun p -> identical (runKind kind (fs ()) p) (runKind kind (cs ()) p))
    ]

let private wrapperTests =
    testList "new optimizers with other settings ≡ C#" [
        prop "Lion and AMSGrad"
            (gen { let! p = genProblemWith 3 12 in let! lr = genRate in let! b = Gen.choose (1, 98) in return p, lr, float b / 100.0 })
            (fun (p, lr, b1) ->
                identical (run (Lion.create { lr = lr; beta1 = b1; beta2 = 0.99; weightDecay = 0.1 }) p) (run (Optim.Lion(lr, b1, 0.99, 0.1)) p)
                identical (run (AmsGrad.create { AmsGrad.defaults with lr = lr; beta1 = b1; weightDecay = 0.01 }) p)
                          (run (Optim.AmsGrad(lr, b1, weightDecay = 0.01)) p)
                identical (run (AmsGrad.create AmsGrad.defaults) p) (run (Adam.create { Adam.defaults with amsgrad = true }) p))
        prop "NAdam (torch 1.13), ArsgObsb with a policy" (genProblemWith 3 12) (fun p ->
            identical (run (NAdam.create { NAdam.defaults with torch113 = true }) p) (run (Optim.NAdam(torch113 = true)) p)
            let policy = BoostPolicy(Window = 2, Tolerance = 0.5, MaxLevel = 2)
            let withLoss = fun k -> StepContext.Empty.WithLoss(loss k)
            identical (runWith withLoss (ArsgObsb.create { ArsgObsb.defaults with policy = Some policy }) p)
                      (runWith withLoss (Optim.ArsgObsb(policy = policy)) p))
        prop "Adafactor with momentum, a constant rate and Optax's decay" (genProblemWith 3 12) (fun p ->
            identical (run (Adafactor.create { Adafactor.defaults with learningRate = Some (fun _ -> 0.01); beta1 = Some 0.9; weightDecay = 0.1; weightDecayScaling = AdafactorWeightDecay.Decoupled }) p)
                      (run (Optim.Adafactor(learningRate = Func<int64, float>(fun _ -> 0.01), beta1 = Nullable 0.9, weightDecay = 0.1, weightDecayScaling = AdafactorWeightDecay.Decoupled)) p)
            identical (run (Adafactor.create { Adafactor.defaults with learningRate = Some (Adafactor.relativeStep true) }) p)
                      (run (Optim.Adafactor(learningRate = AdafactorSchedule.RelativeStep(true))) p))
        prop "the recent primitives and combinators ≡ their C# calls" (genProblemWith 3 12) (fun p ->
            let adam = Optim.Adam(1e-2)
            let pairs =
                [ "normaliseByPreviousMoment", Primitives.normaliseByPreviousMoment 0.99 1e-6 (Some 0.25), Transforms.NormaliseByPreviousMoment(0.99, 1e-6, Nullable 0.25)
                  "scheduleFreeAverage", Primitives.scheduleFreeAverage 0.1 0.9, Transforms.ScheduleFreeAverage(0.1, 0.9)
                  "scaleByTrustRatio", Transforms.Chain(adam, Primitives.scaleByTrustRatio), Transforms.Chain(adam, Transforms.ScaleByTrustRatio())
                  "mix", Primitives.mix (fun t -> 1.0 / float t) (Transforms.Ema 0.9) (Transforms.Trace 0.5), Transforms.Mix(Transforms.Ema 0.9, Transforms.Trace 0.5, (fun t -> 1.0 / float t))
                  "cautious", Primitives.cautious adam, Transforms.Cautious adam
                  "multiSteps", Primitives.multiSteps 2 adam, Transforms.MultiSteps(adam, 2)
                  "hypergradientDescent", Primitives.hypergradientDescent HypergradientScope.PerParameter 0.01 1e-3 (Optim.Sgd 1.0), Transforms.HypergradientDescent(Optim.Sgd 1.0, 0.01, 1e-3, HypergradientScope.PerParameter)
                  "averageParameters", Primitives.averageParameters ParameterAveraging.Uniform 0.9 adam, Transforms.AverageParameters(adam, ParameterAveraging.Uniform, 0.9)
                  "injectHyperparameters", Primitives.injectHyperparameters [ "lr", 0.01 ] (fun h -> Optim.Sgd h.["lr"]), Transforms.InjectHyperparameters((fun h -> Optim.Sgd h.["lr"]), struct ("lr", 0.01))
                  "adafactor's stages", Transforms.Chain(Primitives.scaleByFactoredRms (FactoredRmsOptions()), Primitives.clipByBlockRms 1.0, Primitives.scaleByParameterBlockRms 1e-3),
                      Transforms.Chain(Transforms.ScaleByFactoredRms(FactoredRmsOptions()), Transforms.ClipByBlockRms 1.0, Transforms.ScaleByParameterBlockRms 1e-3)
                  "replaceWithParameters", Primitives.replaceWithParameters, Transforms.ReplaceWithParameters()
                  "lowPrecision", adam |> Primitives.lowPrecision ParameterRounding.Compensated, Transforms.LowPrecision(adam, ParameterRounding.Compensated)
                  "stochasticRounding", Transforms.Chain(adam, Primitives.stochasticRounding 3L), Transforms.Chain(adam, Transforms.StochasticRounding 3L)
                  "kahanCompensation", Primitives.kahanCompensation torch.bfloat16, Transforms.KahanCompensation torch.bfloat16 ]
            for name, fs, cs in pairs do
                Expect.equal fs.Spec.Canonical cs.Spec.Canonical (name + ": the same spec")
                identical (run fs p) (run cs p))
    ]

/// A problem whose gradients hold NaN at step 2 and +∞ at steps 4 and 5.
let private badProblem =
    let g k i = if (k = 2 && i = 1) then nan elif ((k = 4 || k = 5) && i = 0) then infinity else sin (float (3 * k + i))
    { Names = [ "w"; "b" ]; Shapes = [ [| 2L; 2L |]; [| 2L |] ]; Params0 = [ [| 0.1; 0.2; 0.3; 0.4 |]; [| -0.5; 0.5 |] ]
      Grads = [ for k in 1 .. 7 -> [ Array.init 4 (g k); Array.init 2 (fun i -> g k (i + 4)) ] ] }

let private sameStates (a: Trajectory) (b: Trajectory) =
    List.iter2 (fun (x: (string * float[])[]) (y: (string * float[])[]) ->
        Expect.equal (Array.map fst x) (Array.map fst y) "state paths"
        Array.iter2 (fun (n, u: float[]) (_, v: float[]) -> Expect.isTrue (Array.forall2 bitEqual u v) (sprintf "state '%s'" n)) x y) a.States b.States

let private guardTests =
    testList "GuardNonFinite" [
        test "guardNonFinite policy inner ≡ Transforms.GuardNonFinite(inner, policy), for skip and zero" {
            for policy in [ NonFinitePolicy.Skip; NonFinitePolicy.Zero ] do
                let inner = Adam.create Adam.defaults
                let a = run (inner |> Primitives.guardNonFinite policy) badProblem
                let b = run (Transforms.GuardNonFinite(inner, policy)) badProblem
                identical a b
                sameStates a b
        }
        test "guardDefaults ≡ the C# defaults; maxConsecutive raises as C# does" {
            let inner = Sgd.create { Sgd.defaults with momentum = 0.9 }
            identical (run (Primitives.guardNonFiniteWith Primitives.guardDefaults inner) badProblem) (run (Transforms.GuardNonFinite inner) badProblem)
            let limited = Primitives.guardNonFiniteWith { Primitives.guardDefaults with maxConsecutive = Some 2L } inner
            Expect.throwsT<ArithmeticException> (fun () -> run limited badProblem |> ignore) "two non-finite steps in a row raise"
            Expect.throwsT<ArithmeticException> (fun () -> run (Transforms.GuardNonFinite(inner, maxConsecutive = 2L)) badProblem |> ignore) "as in C#"
            Expect.throwsT<ArithmeticException> (fun () -> run (Primitives.guardNonFinite NonFinitePolicy.Raise inner) badProblem |> ignore) "raise"
            Expect.equal (Transform.name limited) (Transforms.GuardNonFinite(inner, maxConsecutive = 2L)).Name "the same description"
        }
        test "NonFinite.tryCounts reads the guard's state" {
            use _ = torch.NewDisposeScope()
            let tx = Momo.create Momo.defaults |> Primitives.guardNonFinite NonFinitePolicy.Skip
            let p0 = tree badProblem badProblem.Params0
            let final =
                badProblem.Grads |> List.indexed
                |> List.fold (fun (r: Run) (k, g) -> snd (Optimizer.stepWith tx (Context.empty |> Context.withLoss (loss k)) r (tree badProblem g))) (Optimizer.start tx p0)
            Expect.equal (NonFinite.tryCounts final.State) (Some { steps = 7L; consecutive = 0L; total = 3L }) "7 steps, 3 bad"
            Expect.isSome (NonFinite.tryInner final.State) "the inner state"
            Expect.isNone (NonFinite.tryCounts (NonFinite.tryInner final.State).Value) "no guard inside"
        }
    ]

let private tempFile () = Path.Combine(Path.GetTempPath(), sprintf "lookahead-fs-%O.safetensors" (Guid.NewGuid()))

let private leavesIdentical (what: string) (a: IOptState) (b: IOptState) =
    let x, y = stateLeaves a, stateLeaves b
    Expect.equal (Array.map fst x) (Array.map fst y) (what + ": paths")
    Array.iter2 (fun (n, u: float[]) (_, v: float[]) -> Expect.isTrue (Array.forall2 bitEqual u v) (sprintf "%s: '%s'" what n)) x y

let private checkpointTests =
    testSequenced <| testList "checkpoints" [
        test "saveWith writes the bytes Checkpoint.Save writes; loadRun continues bit-identically; tryLoad reports a mismatch" {
            use _ = torch.NewDisposeScope()
            let p = badProblem
            let tx = Lion.create { Lion.defaults with lr = 1e-2 }
            let grads = [ for g in p.Grads -> tree p (g |> List.map (Array.map (fun x -> if Double.IsFinite x then x else 1.0))) ]
            let first, rest = List.splitAt 3 grads
            let _, after = Optimizer.run tx (tree p p.Params0) first
            let a, b = tempFile (), tempFile ()
            try
                let meta = Map [ "epoch", "3"; "note", "f#" ]
                after.State |> Checkpoint.saveWith meta a tx after.Parameters
                Lookahead.Checkpoint.Save(b, tx, after.State, after.Parameters, Collections.Generic.Dictionary<string, string>(meta))
                Expect.equal (File.ReadAllBytes a) (File.ReadAllBytes b) "the same file"
                Expect.equal (Checkpoint.metadata a) meta "the metadata back"
                let loaded = Checkpoint.loadRun a tx
                leavesIdentical "loadRun's state" loaded.State after.State
                leavesIdentical "C#'s Load" (Lookahead.Checkpoint.Load(a, tx, after.Parameters)) loaded.State
                treesIdentical "loadRun's parameters" loaded.Parameters after.Parameters
                let continued, _ = List.mapFold (Optimizer.step tx) loaded rest
                let reference, _ = List.mapFold (Optimizer.step tx) after rest
                List.iter2 (treesIdentical "continued") continued reference
                match Checkpoint.tryLoad a (Lion.create Lion.defaults) after.Parameters with
                | Error message -> Expect.stringContains message "saved for another optimizer" "names the other optimizer"
                | Ok _ -> failtest "another lr is another optimizer"
                Expect.isOk (Checkpoint.tryLoad a tx after.Parameters) "the right optimizer loads"
            finally
                File.Delete a
                File.Delete b
        }
        test "saveRunner and loadRunner ≡ Runner.Save and Runner.Load" {
            use _ = torch.NewDisposeScope()
            let p = badProblem
            let tx = AmsGrad.create { AmsGrad.defaults with lr = 0.05 }
            let grads = [ for g in p.Grads -> tree p (g |> List.map (Array.map (fun x -> if Double.IsFinite x then x else -1.0))) ]
            use trained = Training.runnerOf tx (tree p p.Params0)
            for g in grads do trained |> Training.stepGradients Context.empty g
            let a, b = tempFile (), tempFile ()
            try
                Checkpoint.saveRunner a trained
                trained.Save b
                Expect.equal (File.ReadAllBytes a) (File.ReadAllBytes b) "the same file"
                use fs = Training.runnerOf tx (tree p p.Params0)
                use cs = new Runner(tx, tree p p.Params0)
                Checkpoint.loadRunner a fs
                cs.Load b
                leavesIdentical "F# load" (Training.state fs) (Training.state trained)
                leavesIdentical "C# load" (Training.state cs) (Training.state fs)
            finally
                File.Delete a
                File.Delete b
        }
    ]

let private scheduleTests =
    let sameSchedule (what: string) (a: Schedule) (b: Schedule) =
        Expect.equal (Schedule.name a) b.Name (what + ": name")
        let xs, ys = Schedule.values 60L a, [ for t in 1L .. 60L -> b.At t ]
        Expect.isTrue (List.forall2 bitEqual xs ys) (sprintf "%s: values %A vs %A" what xs ys)
    testList "Schedule" [
        test "each F# schedule ≡ the C# one (values and name)" {
            sameSchedule "constant" (Schedule.constant 0.3) (Lookahead.Schedule.Constant 0.3)
            sameSchedule "linearWarmup" (Schedule.linearWarmup 1.0 10L) (Lookahead.Schedule.LinearWarmup(1.0, 10L))
            sameSchedule "linearWarmupFrom" (Schedule.linearWarmupFrom 0.1 1.0 10L) (Lookahead.Schedule.LinearWarmup(1.0, 10L, 0.1))
            sameSchedule "step" (Schedule.step 0.1 7L 0.5) (Lookahead.Schedule.Step(0.1, 7L, 0.5))
            sameSchedule "cosine" (Schedule.cosine 1e-3 50L) (Lookahead.Schedule.Cosine(1e-3, 50L))
            sameSchedule "cosineWith defaults" (Schedule.cosineWith Schedule.cosineDefaults 1e-3 50L) (Lookahead.Schedule.Cosine(1e-3, 50L))
            sameSchedule "cosineWith" (Schedule.cosineWith { Schedule.cosineDefaults with final = 1e-5; warmupSteps = 5L } 1e-3 50L)
                (Lookahead.Schedule.Cosine(1e-3, 50L, 1e-5, 5L))
            sameSchedule "oneCycle" (Schedule.oneCycle 0.1 40L) (Lookahead.Schedule.OneCycle(0.1, 40L))
            sameSchedule "oneCycleWith" (Schedule.oneCycleWith { Schedule.oneCycleDefaults with pctStart = 0.5 } 0.1 40L)
                (Lookahead.Schedule.OneCycle(0.1, 40L, pctStart = 0.5))
            sameSchedule "warmupStableDecay" (Schedule.warmupStableDecay 1.0 5L 10L 20L) (Lookahead.Schedule.WarmupStableDecay(1.0, 5L, 10L, 20L))
            sameSchedule "warmupStableDecayTo" (Schedule.warmupStableDecayTo 0.1 1.0 5L 10L 20L) (Lookahead.Schedule.WarmupStableDecay(1.0, 5L, 10L, 20L, 0.1))
            sameSchedule "ofFunction" (Schedule.ofFunction (fun t -> 1.0 / float t)) (Lookahead.Schedule.Of(fun t -> 1.0 / float t))
            sameSchedule "named" (Schedule.named "inv" (fun t -> 1.0 / float t)) (Lookahead.Schedule.Of((fun t -> 1.0 / float t), "inv"))
            Expect.equal (Schedule.at 3L (Schedule.cosine 1.0 4L)) ((Schedule.cosine 1.0 4L |> Schedule.toFunction) 3L) "at and toFunction"
        }
        prop "drive and scale ≡ Transforms.Scheduled and Transforms.ScaleBySchedule" (genProblemWith 3 12) (fun p ->
            let cosine = Schedule.cosineWith { Schedule.cosineDefaults with warmupSteps = 2L } 0.05 10L
            let driven = cosine |> Schedule.drive (fun lr -> AdamW.create { AdamW.defaults with lr = lr })
            identical (run driven p) (run (Transforms.Scheduled((fun t -> Optim.AdamW(cosine.At t)), cosine.Name)) p)
            Expect.equal (Transform.name driven) (Transforms.Scheduled((fun t -> Optim.AdamW(cosine.At t)), cosine.Name)).Name "named after the schedule"
            identical (run (Transform.chain [ Lion.create Lion.defaults; Schedule.scale cosine ]) p)
                      (run (Transforms.Chain(Optim.Lion(), Transforms.ScaleBySchedule cosine)) p))
    ]

let private model () =
    torch.manual_seed 21L |> ignore
    let m = torch.nn.Sequential(torch.nn.Linear(3L, 5L), torch.nn.Tanh(), torch.nn.Linear(5L, 1L))
    m.``double``() |> ignore
    m

let private sameModules (a: torch.nn.Module) (b: torch.nn.Module) =
    treesIdentical "parameters" (Tree.ofModule a) (Tree.ofModule b)

let private trainingTests =
    testSequenced <| testList "runner and adapter" [
        test "Training.runnerOfWith and stepGradients ≡ Runner(tx, parameters, options).Step(gradients)" {
            use _ = torch.NewDisposeScope()
            let p = badProblem
            let tx = Lion.create Lion.defaults |> Primitives.guardNonFinite NonFinitePolicy.Zero
            let options = RunnerOptions(KeepGradients = false)
            use fs = Training.runnerOfWith options tx (tree p p.Params0)
            use cs = new Runner(tx, tree p p.Params0, options)
            for g in p.Grads do
                fs |> Training.stepGradients Context.empty (tree p g)
                cs.Step(tree p g)
            treesIdentical "parameters" (Training.parameters fs) cs.Parameters
            Expect.equal (Training.stepCount fs) cs.StepCount "steps"
            leavesIdentical "state" (Training.state fs) cs.State
            Expect.equal Training.defaultOptions (RunnerOptions()) "the C# defaults"
        }
        test "Training.runnerWith on a module ≡ new Runner(tx, module, options)" {
            use _ = torch.NewDisposeScope()
            torch.manual_seed 5L |> ignore
            let x, y = torch.randn([| 16L; 3L |], dtype = torch.float64), torch.randn([| 16L; 1L |], dtype = torch.float64)
            let m1, m2 = model (), model ()
            let tx = NAdam.create { NAdam.defaults with lr = 0.01 }
            use r1 = Training.runnerWith (RunnerOptions(VerifyGradientBinding = true)) tx m1
            use r2 = new Runner(tx, m2, RunnerOptions(VerifyGradientBinding = true))
            for _ in 1 .. 5 do
                use _ = torch.NewDisposeScope()
                Training.zeroGrad r1
                r2.ZeroGrad()
                torch.nn.functional.mse_loss(m1.forward x, y).backward()
                torch.nn.functional.mse_loss(m2.forward x, y).backward()
                Training.step Context.empty r1
                r2.Step()
            sameModules m1 m2
        }
        test "Adapter groups, closures, learning rates and checkpoints ≡ LookaheadOptimizer" {
            use _ = torch.NewDisposeScope()
            torch.manual_seed 6L |> ignore
            let x, y = torch.randn([| 16L; 3L |], dtype = torch.float64), torch.randn([| 16L; 1L |], dtype = torch.float64)
            let m1, m2 = model (), model ()
            use fs =
                Adapter.create m1
                    [ Adapter.group "hidden" (Param.rankAtLeast 2) (fun lr -> Muon.create { Muon.defaults with lr = lr }) 0.02
                      Adapter.group "rest" (fun _ -> true) (fun lr -> MomoAdam.create { MomoAdam.defaults with lr = lr }) 3e-3 ]
            use cs =
                new LookaheadOptimizer(m2,
                    OptimizerGroup("hidden", (fun p -> p.Rank >= 2), (fun lr -> Optim.Muon(lr)), 0.02),
                    OptimizerGroup("rest", (fun _ -> true), (fun lr -> Optim.MomoAdam(lr)), 3e-3))
            let closure (m: torch.nn.Module<torch.Tensor, torch.Tensor>) () =
                let l = torch.nn.functional.mse_loss(m.forward x, y)
                l.backward()
                l
            for k in 1 .. 8 do
                use _ = torch.NewDisposeScope()
                if k = 4 then
                    fs |> Adapter.setLearningRate "rest" 1e-3
                    cs.Groups.[1].LearningRate <- 1e-3
                Adapter.zeroGrad fs
                cs.zero_grad()
                let l1 = fs |> Adapter.stepWith (closure m1)
                let l2 = cs.step(Func<_>(closure m2))
                Expect.isTrue (bitEqual (l1.item<float>()) (l2.item<float>())) "the same loss"
            sameModules m1 m2
            Expect.equal (Adapter.learningRates fs) [ for g in cs.Groups -> g.Name, g.LearningRate ] "the learning rates"
            Expect.equal (Adapter.runner fs).StepCount 8L "eight steps"
            let path = tempFile ()
            try
                Checkpoint.saveAdapter path fs
                fs |> Adapter.setLearningRate "rest" 0.5
                Checkpoint.loadAdapter path fs
                Expect.equal (Adapter.learningRates fs) [ "hidden", 0.02; "rest", 1e-3 ] "the saved rates are back"
                cs.Load path
                leavesIdentical "C# loads the F# file" (Adapter.runner fs).State cs.Runner.State
            finally
                File.Delete path
            Expect.throwsT<ArgumentException> (fun () -> fs |> Adapter.setLearningRate "nope" 0.1) "an unknown group"
            Expect.isNone (fs |> Adapter.tryGroup "nope") "no such group"
        }
        test "Adapter.single ≡ LookaheadOptimizer(module, build, lr)" {
            use _ = torch.NewDisposeScope()
            torch.manual_seed 7L |> ignore
            let x, y = torch.randn([| 16L; 3L |], dtype = torch.float64), torch.randn([| 16L; 1L |], dtype = torch.float64)
            let m1, m2 = model (), model ()
            use fs = m1 |> Adapter.single (fun lr -> Lion.create { Lion.defaults with lr = lr }) 1e-3
            use cs = new LookaheadOptimizer(m2, (fun lr -> Optim.Lion(lr)), 1e-3)
            for _ in 1 .. 5 do
                use _ = torch.NewDisposeScope()
                Adapter.zeroGrad fs
                cs.zero_grad()
                torch.nn.functional.mse_loss(m1.forward x, y).backward()
                torch.nn.functional.mse_loss(m2.forward x, y).backward()
                Adapter.step fs
                cs.step() |> ignore
            sameModules m1 m2
        }
    ]

let private analysisTests =
    testList "Analysis" [
        test "the F# functions give the C# API's answers" {
            let rsg = Equivalence.form (Optim.Rsg(1.0, 0.9, 0.1))
            let d = Analysis.dynamics rsg
            let c = global.Lookahead.Analysis.Dynamics(rsg)
            Expect.equal (Analysis.gainFactor 0.3 d) (c.GainFactor 0.3) "gain factor"
            Expect.equal (Analysis.varianceLimit 0.3 d) (c.VarianceLimit 0.3) "variance limit"
            Expect.equal (Analysis.pointVariance 0.3 d) (c.PointVariance 0.3) "point variance"
            Expect.equal (Analysis.eigenvalues 0.3 d) (c.Eigenvalues 0.3) "eigenvalues"
            Expect.equal (Analysis.gainMatrix 0.3 d) (c.GainMatrix 0.3) "gain matrix"
            let struct (low, high) = c.StabilityInterval()
            Expect.equal (Analysis.stabilityInterval d) (low, high) "stability interval"
            let struct (rate, at) = c.WorstRate(0.01, 1.0)
            Expect.equal (Analysis.worstRate (0.01, 1.0) d) (rate, at) "worst rate"
            Expect.isTrue (Analysis.realise rsg).TimeInvariant "realise"
            Expect.isTrue (Analysis.equal rsg (Equivalence.form (Optim.Qhm(1.0, 0.9, 0.9)))).Equal "RSG ≡ QHM(ν = 1 − μ)"
            match Analysis.solveScalar (fun nu -> Equivalence.form (Optim.Qhm(1.0, 0.9, nu))) rsg (0.0, 1.0) with
            | [ nu ] -> Expect.floatClose Accuracy.veryHigh nu 0.9 "ν = 1 − μ"
            | other -> failtestf "one ν expected, got %A" other
            let h, r = Analysis.optimise (fun h -> Equivalence.form (Optim.Sgd(h.[0]))) [| 0.5 |] (0.01, 1.0)
            Expect.floatClose Accuracy.medium h.[0] (2.0 / 1.01) "gradient descent's optimal step"
            Expect.floatClose Accuracy.high r (99.0 / 101.0) "and its rate"
            Expect.throwsT<ArgumentException> (fun () -> Analysis.dynamics (Equivalence.form (Optim.Adam 0.01)) |> ignore) "not linear"
        }
    ]

let private differentiableTests =
    testSequenced <| testList "Differentiable" [
        test "unroll, unrollTruncated, update and refusal ≡ the C# API (bit-identical values and gradients)" {
            use scope = torch.NewDisposeScope()
            let target = torch.tensor([| 1.0; -2.0; 0.5 |], dtype = torch.float64)
            let loss (theta: TensorTree) (_: int64) = (theta.["x"] - target).square().sum()
            let run (unroll: TensorTree -> Unrolled) =
                let x0 = torch.tensor([| 0.3; 0.1; -0.4 |], dtype = torch.float64).requires_grad_(true)
                use u = unroll (TensorTree.Of(struct ("x", x0)))
                u.Parameters.["x"].sum().backward()
                u.Parameters.["x"].detach().data<float>().ToArray(), [| for l in u.Losses -> l.item<float>() |], (match x0.grad with null -> None | g -> Some (g.data<float>().ToArray())), u.RecordedSteps
            let tx = Optim.Adam(0.1)
            let lossFunc = Func<TensorTree, int64, torch.Tensor> loss
            Expect.equal (run (fun t -> Differentiable.unroll tx t loss 6)) (run (fun t -> global.Lookahead.Differentiable.Unroll(tx, t, lossFunc, 6))) "unroll"
            let truncated = run (fun t -> Differentiable.unrollTruncated 2 tx t loss 6)
            Expect.equal truncated (run (fun t -> global.Lookahead.Differentiable.Unroll(tx, t, lossFunc, 6, 2))) "unrollTruncated"
            let _, _, g0, recorded = truncated
            Expect.equal (g0, recorded) (None, 2) "a truncated unroll does not reach θ₀"
            Expect.equal (Differentiable.refusal (Optim.Lion 1e-3)) (Some (global.Lookahead.Differentiable.Refusal(Optim.Lion 1e-3))) "refusal"
            Expect.equal (Differentiable.refusal tx) None "Adam is differentiable"
            let p = TensorTree.Of(struct ("x", torch.tensor([| 0.3; 0.1; -0.4 |], dtype = torch.float64)))
            let g = TensorTree.Of(struct ("x", torch.tensor([| 1.0; 2.0; 3.0 |], dtype = torch.float64).requires_grad_(true)))
            let u, _ = Differentiable.update tx g (tx.Init p) p StepContext.Empty
            let struct (c, _) = global.Lookahead.Differentiable.Update(tx, g, tx.Init p, p, StepContext.Empty)
            Expect.isTrue u.["x"].requires_grad "the F# update is recorded"
            Expect.equal (u.["x"].detach().data<float>().ToArray()) (c.["x"].detach().data<float>().ToArray()) "update"
        }
    ]

[<Tests>]
let tests =
    testList "F# layer ≡ C# API" [ defaultTests; trajectoryTests; wrapperTests; guardTests; checkpointTests; scheduleTests; trainingTests; analysisTests; differentiableTests ]
