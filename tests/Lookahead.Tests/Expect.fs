/// Trajectories and their comparison. A failure names the step, tensor and index, and both values.
module Lookahead.Tests.Expect

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators

/// What a run produced, as plain arrays: per step, per tensor.
type Trajectory =
    { Names: string list
      Updates: float[][] list
      Params: float[][] list
      /// State leaves (path, values) after each step; scalars are one-element arrays.
      States: (string * float[])[] list }

let stateLeaves (s: IOptState) =
    s.Leaves()
    |> Seq.map (fun l -> l.Path, (if isNull l.Tensor then [| l.Scalar.Value |] else values l.Tensor))
    |> Array.ofSeq

/// Runs tx over the problem: θ ← θ + u after each step, with `context k` as the step's context.
let runWith (context: int -> StepContext) (tx: IGradientTransformation) (p: Problem) : Trajectory =
    use _ = torch.NewDisposeScope()
    let mutable parameters = tree p p.Params0
    let mutable state = tx.Init parameters
    let ups, ps, ss = ResizeArray(), ResizeArray(), ResizeArray()
    p.Grads
    |> List.iteri (fun k g ->
        let struct (u, s) = tx.Update(tree p g, state, parameters, context k)
        let next = Updates.Apply(parameters, u)
        ups.Add(u.Tensors |> Seq.map values |> Array.ofSeq)
        ps.Add(next.Tensors |> Seq.map values |> Array.ofSeq)
        ss.Add(stateLeaves s)
        parameters <- next
        state <- s)
    { Names = p.Names; Updates = List.ofSeq ups; Params = List.ofSeq ps; States = List.ofSeq ss }

let run tx p = runWith (fun _ -> StepContext.Empty) tx p

/// Fails unless `actual` and `expected` have the same number of steps, of tensors per step and of elements
/// per tensor, so that an element-wise comparison after it covers every element of both sides.
let sameLayout (what: string) (names: string list) (actual: float[][] list) (expected: float[][] list) =
    if actual.Length <> expected.Length then failtestf "%s: %d steps vs %d" what actual.Length expected.Length
    List.iteri2
        (fun step (xa: float[][]) (xb: float[][]) ->
            if xa.Length <> xb.Length then failtestf "%s: step %d has %d tensors vs %d" what (step + 1) xa.Length xb.Length
            for t in 0 .. xa.Length - 1 do
                if xa.[t].Length <> xb.[t].Length then
                    let name = if t < names.Length then names.[t] else sprintf "#%d" t
                    failtestf "%s: step %d, tensor '%s' has %d elements vs %d" what (step + 1) name xa.[t].Length xb.[t].Length)
        actual expected

let private compareArrays (what: string) (eq: float -> float -> bool) (names: string list) (a: float[][] list) (b: float[][] list) =
    sameLayout what names a b
    List.iteri2
        (fun step (xa: float[][]) (xb: float[][]) ->
            for t in 0 .. xa.Length - 1 do
                for i in 0 .. xa.[t].Length - 1 do
                    if not (eq xa.[t].[i] xb.[t].[i]) then
                        failtestf "%s differ at step %d, tensor '%s', index %d: %.17g vs %.17g (diff %.3g)"
                            what (step + 1) names.[t] i xa.[t].[i] xb.[t].[i] (xa.[t].[i] - xb.[t].[i]))
        a b

let bitEqual (x: float) (y: float) = BitConverter.DoubleToInt64Bits x = BitConverter.DoubleToInt64Bits y

/// |a − b| ≤ atol + rtol·|b|.
let within atol rtol (a: float) (b: float) = abs (a - b) <= atol + rtol * abs b

/// Updates and parameters bit-identical at every step.
let identical (a: Trajectory) (b: Trajectory) =
    compareArrays "updates" bitEqual a.Names a.Updates b.Updates
    compareArrays "parameters" bitEqual a.Names a.Params b.Params

/// Updates and parameters within atol + rtol·|b| at every step.
let close atol rtol (a: Trajectory) (b: Trajectory) =
    compareArrays "updates" (within atol rtol) a.Names a.Updates b.Updates
    compareArrays "parameters" (within atol rtol) a.Names a.Params b.Params

/// Parameters only within atol + rtol·|b| at every step.
let closeParams atol rtol (a: Trajectory) (b: Trajectory) =
    compareArrays "parameters" (within atol rtol) a.Names a.Params b.Params

/// Every tensor of two trees bit-identical.
let treesIdentical (what: string) (a: TensorTree) (b: TensorTree) =
    Expect.sequenceEqual (List.ofSeq a.Names) (List.ofSeq b.Names) (what + ": names")
    for i in 0 .. a.Count - 1 do
        let va, vb = values a.Tensors.[i], values b.Tensors.[i]
        Expect.isTrue (Array.forall2 bitEqual va vb) (sprintf "%s: tensor '%s' changed" what a.Names.[i])

/// 100 generated cases per property (LOOKAHEAD_PROPERTY_CASES=N sets another count, as the build's rerun of the
/// fused-executor lists under the other loop form does); a failure prints the seed that replays it.
let config =
    let cases =
        match Environment.GetEnvironmentVariable "LOOKAHEAD_PROPERTY_CASES" with
        | null | "" -> 100
        | s ->
            match Int32.TryParse s with
            | true, n when n > 0 -> n
            | _ -> failwithf "LOOKAHEAD_PROPERTY_CASES: expected a positive integer, got '%s'" s
    // A failure's "Focus on error" line gives (seed, gamma, size): LOOKAHEAD_PROPERTY_REPLAY="seed,gamma,size" replays it.
    let replay =
        match Environment.GetEnvironmentVariable "LOOKAHEAD_PROPERTY_REPLAY" with
        | null | "" -> None
        | s ->
            match s.Split(',') |> Array.map (fun x -> x.Trim().TrimEnd('U', 'L')) with
            | [| a; b; n |] -> Some (UInt64.Parse a, UInt64.Parse b, Some (Int32.Parse n))
            | _ -> failwithf "LOOKAHEAD_PROPERTY_REPLAY: expected 'seed,gamma,size' from a failure's 'Focus on error' line, got '%s'" s
    { FsCheckConfig.defaultConfig with maxTest = cases; replay = replay }

/// A property over a generator of meaningful cases (no NaN or ∞).
let property name (g: Gen<'a>) (f: 'a -> unit) =
    testPropertyWithConfig config name (Prop.forAll (Arb.fromGen g) f)
