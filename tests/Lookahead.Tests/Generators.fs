/// Generators of meaningful tensors and hyperparameters. No NaN or ∞ anywhere: values are built from
/// bounded integers. Each generated case is plain data (shapes and float arrays) so that FsCheck prints it.
module Lookahead.Tests.Generators

open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead

/// A parameter tree and a stream of gradient trees for it.
type Problem =
    { Names: string list
      Shapes: int64[] list
      Params0: float[] list
      /// Grads.[step].[tensor]
      Grads: float[] list list }
    override p.ToString() =
        sprintf "Problem(%s; %d steps)" (p.Shapes |> List.map (fun s -> sprintf "%A" s) |> String.concat ", ") p.Grads.Length

let numel (shape: int64[]) = shape |> Array.fold (fun a d -> a * int d) 1

/// Ranks 0–3, at most 64 elements.
let genShape : Gen<int64[]> =
    gen {
        let! rank = Gen.choose (0, 3)
        let dim hi = Gen.choose (1, hi) |> Gen.map int64
        match rank with
        | 0 -> return [||]
        | 1 -> let! a = dim 64 in return [| a |]
        | 2 -> return! Gen.arrayOfLength 2 (dim 8)
        | _ -> return! Gen.arrayOfLength 3 (dim 4)
    }

/// Values in [-scale, scale] on a grid of 1e-6·scale.
let genValues (n: int) (scale: float) : Gen<float[]> =
    Gen.arrayOfLength n (Gen.choose (-1_000_000, 1_000_000) |> Gen.map (fun i -> float i * 1e-6 * scale))

let private sequence (gens: Gen<'a> list) : Gen<'a list> =
    List.foldBack (fun g acc -> gen { let! x = g in let! xs = acc in return x :: xs }) gens (Gen.constant [])

/// A problem with 1–4 tensors and a stream of `steps` gradients of mixed magnitudes.
let genProblemWith (stepsLo: int) (stepsHi: int) : Gen<Problem> =
    gen {
        let! k = Gen.choose (1, 4)
        let! shapes = Gen.listOfLength k genShape
        let! steps = Gen.choose (stepsLo, stepsHi)
        let! params0 = sequence [ for s in shapes -> genValues (numel s) 1.0 ]
        let genStep =
            gen {
                let! scale = Gen.elements [ 1e-3; 0.03; 0.3; 1.0; 5.0 ]
                return! sequence [ for s in shapes -> genValues (numel s) scale ]
            }
        let! grads = Gen.listOfLength steps genStep
        return
            { Names = shapes |> List.mapi (fun i s -> sprintf "layer%d.%s" i (if s.Length >= 2 then "weight" else "bias"))
              Shapes = shapes
              Params0 = params0
              Grads = grads }
    }

/// 1–50 steps, as the laws ask.
let genProblem = genProblemWith 1 50

/// 30–50 steps, for equivalences that compare whole trajectories.
let genLongProblem = genProblemWith 30 50

/// β in [0, 0.999] on a grid of 1e-3, with the edges 0 and 0.999 and the common 0.9 drawn often
/// (a β = 0 corner once hid a bug because a uniform grid reaches it one time in a thousand).
let genDecay : Gen<float> =
    Gen.frequency
        [ 1, Gen.constant 0.0
          1, Gen.constant 0.9
          1, Gen.constant 0.999
          7, Gen.choose (0, 999) |> Gen.map (fun i -> float i / 1000.0) ]

/// A positive coefficient in [1e-4, 1].
let genRate : Gen<float> = Gen.choose (1, 10_000) |> Gen.map (fun i -> float i / 10_000.0)

/// A finite coefficient of either sign, [-2, 2].
let genCoefficient : Gen<float> = Gen.choose (-20_000, 20_000) |> Gen.map (fun i -> float i / 10_000.0)

/// ε in {1e-8, 1e-6, 1e-3}.
let genEps : Gen<float> = Gen.elements [ 1e-8; 1e-6; 1e-3 ]

/// A named random primitive with random valid settings, for the laws over composition.
let genPrimitive : Gen<IGradientTransformation> =
    Gen.oneof
        [ genCoefficient |> Gen.map Transforms.Scale
          gen { let! b = genDecay in let! d = Gen.elements [ true; false ] in return Transforms.Ema(b, debias = d) }
          gen { let! b = genDecay in let! d = genDecay in return Transforms.Trace(b, d) }
          gen {
              let! b2 = genDecay
              let! eps = genEps
              let! ams = Gen.elements [ true; false ]
              let! centered = Gen.elements [ true; false ]
              return Transforms.Precondition(PreconditionOptions(Decay = b2, Epsilon = eps, AmsGrad = ams, Centered = centered, BiasCorrection = not centered))
          }
          Gen.constant (Transforms.Sign())
          genRate |> Gen.map (fun c -> Transforms.ClipByGlobalNorm(10.0 * c))
          genRate |> Gen.map Transforms.AddDecayedWeights
          gen { let! b = genDecay in let! nu = genCoefficient in return Transforms.LookaheadShift(nu, Transforms.Ema b) }
          gen { let! a = genRate in return Transforms.ScaleBySchedule((fun t -> a / float t), sprintf "%g/t" a) } ]

/// Tensors of a problem, float64 on the CPU.
let tensor (shape: int64[]) (values: float[]) : torch.Tensor =
    use flat = torch.tensor(values, dtype = torch.float64)
    flat.reshape(shape)

let tree (p: Problem) (values: float[] list) : TensorTree =
    TensorTree.Of(List.map3 (fun n s v -> struct (n, tensor s v)) p.Names p.Shapes values)

let values (t: torch.Tensor) : float[] = t.contiguous().data<float>().ToArray()
