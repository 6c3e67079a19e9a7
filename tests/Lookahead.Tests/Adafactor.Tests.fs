/// Adafactor as a composition: an independent loop of the algorithm as tensor2tensor and HF run it (factored
/// second moment over the last two dimensions, update clipping, relative step, optional momentum, weight decay),
/// the factored state's size, and its reductions to simpler optimizers.
module Lookahead.Tests.Adafactor

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators
open Lookahead.Tests.SeedEquivalences

let private config = { FsCheckConfig.defaultConfig with maxTest = 100 }
let private property name (g: Gen<'a>) (f: 'a -> unit) = testPropertyWithConfig config name (Prop.forAll (Arb.fromGen g) f)

type private Setting =
    { Rate: string; Clip: float option; ScaleByParameters: bool; Factored: bool; MinDim: int
      Beta1: float option; Decay: float; Scaling: AdafactorWeightDecay }

let private rateOf = function
    | "relative" -> fun (t: int64) -> min 1e-2 (1.0 / sqrt (float t))
    | "warmup" -> fun (t: int64) -> min (1e-6 * float t) (1.0 / sqrt (float t))
    | _ -> fun (_: int64) -> 0.05

let private genSetting =
    gen {
        let! rate = Gen.elements [ "relative"; "warmup"; "constant" ]
        let! clip = Gen.elements [ None; Some 0.5; Some 1.0; Some 2.0 ]
        let! scale = Gen.elements [ true; false ]
        let! factored = Gen.elements [ true; true; false ]
        let! minDim = Gen.elements [ 0; 3 ]
        let! beta1 = Gen.elements [ None; Some 0.0; Some 0.9 ]
        let! decay = Gen.elements [ 0.0; 0.1 ]
        let! scaling = Gen.elements [ AdafactorWeightDecay.ScaledByStep; AdafactorWeightDecay.Decoupled ]
        return { Rate = rate; Clip = clip; ScaleByParameters = scale; Factored = factored; MinDim = minDim; Beta1 = beta1; Decay = decay; Scaling = scaling }
    }

let private adafactor (s: Setting) =
    Optim.Adafactor(
        learningRate = Func<int64, float>(rateOf s.Rate), clipThreshold = Option.toNullable s.Clip, multiplyByParameterScale = s.ScaleByParameters,
        factored = s.Factored, minDimSizeToFactor = s.MinDim, beta1 = Option.toNullable s.Beta1, weightDecay = s.Decay, weightDecayScaling = s.Scaling)

let private rms (a: float[]) = sqrt ((a |> Array.sumBy (fun x -> x * x)) / float (max 1 a.Length))

/// The algorithm on flat row-major arrays, step by step as HF's Adafactor.step (and tensor2tensor) take it;
/// Optax's decoupled decay (θ ← θ − u − λθ) where the setting asks for it. Also counts the steps where clipping bound.
let private adafactorLoop (s: Setting) (p: Problem) =
    let rate = rateOf s.Rate
    let theta = p.Params0 |> List.map Array.copy
    let factored (shape: int64[]) = s.Factored && shape.Length >= 2 && shape.[shape.Length - 1] >= int64 s.MinDim && shape.[shape.Length - 2] >= int64 s.MinDim
    let dims (shape: int64[]) =
        let n, m = int shape.[shape.Length - 2], int shape.[shape.Length - 1]
        numel shape / (n * m), n, m
    let rows = p.Shapes |> List.map (fun sh -> if factored sh then (let b, n, _ = dims sh in Array.zeroCreate (b * n)) else [||])
    let cols = p.Shapes |> List.map (fun sh -> if factored sh then (let b, _, m = dims sh in Array.zeroCreate (b * m)) else [||])
    let full = p.Shapes |> List.map (fun sh -> if factored sh then [||] else Array.zeroCreate (numel sh))
    let momentum = theta |> List.map (fun a -> Array.zeroCreate a.Length)
    let mutable clipped = 0
    let trajectory =
        [ for k, grads in List.indexed p.Grads do
            let t = int64 (k + 1)
            let beta = 1.0 - float t ** -0.8
            for i, g in List.indexed grads do
                let th, shape = theta.[i], p.Shapes.[i]
                let sq = g |> Array.map (fun x -> x * x + 1e-30)
                let u =
                    if factored shape then
                        let b, n, m = dims shape
                        let r, c = rows.[i], cols.[i]
                        for bb in 0 .. b - 1 do
                            for rr in 0 .. n - 1 do
                                let mean = (Array.init m (fun cc -> sq.[(bb * n + rr) * m + cc]) |> Array.sum) / float m
                                r.[bb * n + rr] <- beta * r.[bb * n + rr] + (1.0 - beta) * mean
                            for cc in 0 .. m - 1 do
                                let mean = (Array.init n (fun rr -> sq.[(bb * n + rr) * m + cc]) |> Array.sum) / float n
                                c.[bb * m + cc] <- beta * c.[bb * m + cc] + (1.0 - beta) * mean
                        Array.init g.Length (fun j ->
                            let bb, rest = j / (n * m), j % (n * m)
                            let rr, cc = rest / m, rest % m
                            let rowMean = (Array.init n (fun q -> r.[bb * n + q]) |> Array.sum) / float n
                            g.[j] / sqrt (r.[bb * n + rr] / rowMean) / sqrt c.[bb * m + cc])
                    else
                        let v = full.[i]
                        Array.init g.Length (fun j ->
                            v.[j] <- beta * v.[j] + (1.0 - beta) * sq.[j]
                            g.[j] / sqrt v.[j])
                let u =
                    match s.Clip with
                    | Some d when rms u / d > 1.0 -> clipped <- clipped + 1; u |> Array.map (fun x -> x / (rms u / d))
                    | _ -> u
                let alpha = rate t * (if s.ScaleByParameters then max 1e-3 (rms th) else 1.0)
                let u = u |> Array.map (fun x -> alpha * x)
                let u =
                    match s.Beta1 with
                    | Some b1 ->
                        let m = momentum.[i]
                        for j in 0 .. m.Length - 1 do m.[j] <- b1 * m.[j] + (1.0 - b1) * u.[j]
                        Array.copy m
                    | None -> u
                for j in 0 .. th.Length - 1 do
                    let decay = if s.Scaling = AdafactorWeightDecay.ScaledByStep then s.Decay * alpha * th.[j] else s.Decay * th.[j]
                    th.[j] <- th.[j] - decay - u.[j]
            yield theta |> List.map Array.copy ]
    trajectory, clipped

[<Tests>]
let tests =
    testList "Adafactor" [
        property "Adafactor ≡ the tensor2tensor/HF algorithm run independently (factored and full moments, clipping on, off, binding or not, momentum, both weight decays)" (Gen.zip genProblem genSetting) (fun (p, s) ->
            let expected, _ = adafactorLoop s p
            let actual = Lookahead.Tests.Expect.run (adafactor s) p
            List.iteri2 (fun k e (a: float[][]) -> RecentOptimizers.closeTo (sprintf "step %d of %O" (k + 1) s) 1e-10 e (List.ofArray a)) expected actual.Params)

        testCase "the property's generator reaches clipping that binds, clipping that never binds, and factored and full moments" <| fun () ->
            let samples = Gen.sample 1000 (Gen.zip genProblem genSetting) |> List.ofArray   // unseeded: 1000 keeps each class far above 10 (200 once gave exactly 10)
            let clips = samples |> List.filter (fun (_, s) -> s.Clip.IsSome) |> List.map (fun (p, s) -> snd (adafactorLoop s p))
            Expect.isGreaterThan (clips |> List.filter (fun c -> c > 0) |> List.length) 10 "runs where clipping bound"
            Expect.isGreaterThan (clips |> List.filter (fun c -> c = 0) |> List.length) 10 "runs with clipping on that never bound"
            let factoredAndNot = samples |> List.filter (fun (p, s) -> s.Factored && s.MinDim = 0 && p.Shapes |> List.exists (fun sh -> sh.Length >= 2) && p.Shapes |> List.exists (fun sh -> sh.Length < 2))
            Expect.isGreaterThan factoredAndNot.Length 10 "runs with a factored and a full moment side by side"

        testCase "a factored n × m matrix keeps n + m second-moment numbers; a vector keeps its own size" <| fun () ->
            use _ = torch.NewDisposeScope()
            let theta = TensorTree.Of(struct ("w", torch.zeros([| 300L; 200L |], dtype = torch.float64)), struct ("b", torch.zeros([| 200L |], dtype = torch.float64)),
                                      struct ("k", torch.zeros([| 4L; 3L; 5L |], dtype = torch.float64)))
            let state = Optim.Adafactor().Init theta
            let sizes = state.Leaves() |> Seq.filter (fun l -> not (isNull l.Tensor)) |> Seq.map (fun l -> l.Path, l.Tensor.numel()) |> Map.ofSeq
            let total = sizes |> Map.toSeq |> Seq.sumBy snd
            Expect.equal total (300L + 200L + 200L + 4L * (3L + 5L)) (sprintf "state sizes %A" sizes)

        property "Adafactor with c = 0, a full moment, no clipping or parameter scale and a constant rate ≡ signSGD (up to ε₁)" (Gen.zip genLongProblem (Gen.elements [ 1e-3; 1e-2 ])) (fun (p, lr) ->
            // c = 0: β̂ₜ = 0 at every step, so v = g² + ε₁ and u = g/√(g² + ε₁), sign(g) within 1e-12 relative for |g| ≥ 1e-9.
            let adafactor = Optim.Adafactor(learningRate = Func<int64, float>(fun _ -> lr), decayExponent = 0.0, clipThreshold = Nullable(), multiplyByParameterScale = false, factored = false)
            let signSgd = Transforms.Chain(Transforms.Sign(), Transforms.Scale -lr)
            onStream (Tolerance(1e-12, 1e-10)) p (form adafactor) (form signSgd))

        property "AddDecayedWeights(λ) ≡ Mix(Identity, ReplaceWithParameters, λ)" (Gen.zip genLongProblem (Gen.elements [ 0.0; 0.1; 1.0 ])) (fun (p, wd) ->
            onStream (Tolerance(0.0, 1e-15)) p (form (Transforms.Chain(Optim.Adam(1e-2), Transforms.AddDecayedWeights wd)))
                (form (Transforms.Chain(Optim.Adam(1e-2), Transforms.Mix(Transforms.Identity(), Transforms.ReplaceWithParameters(), (fun _ -> wd))))))

        testCase "bad settings name the setting" <| fun () ->
            let refuses (name: string) (f: unit -> IGradientTransformation) =
                let e = Expect.throwsC (f >> ignore) id
                Expect.stringContains e.Message name "names the setting"
            refuses "clipThreshold" (fun () -> Optim.Adafactor(clipThreshold = Nullable 0.0))
            refuses "beta1" (fun () -> Optim.Adafactor(beta1 = Nullable 1.0))
            refuses "eps2" (fun () -> Optim.Adafactor(eps2 = -1.0))
            refuses "weightDecay" (fun () -> Optim.Adafactor(weightDecay = -0.1))
            refuses "decayExponent" (fun () -> Optim.Adafactor(decayExponent = Double.NaN))
            refuses "minDimSizeToFactor" (fun () -> Optim.Adafactor(minDimSizeToFactor = -1))
            refuses "weightDecayScaling" (fun () -> Optim.Adafactor(weightDecayScaling = enum<AdafactorWeightDecay> 7))
    ]
