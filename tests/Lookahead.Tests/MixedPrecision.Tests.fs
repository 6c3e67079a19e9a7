/// bfloat16 and float16 parameters with float32 state (`StatePrecision.Float32`): the runner against the pure path
/// run in float32 with the parameters rounded after every step, the fused executor against the TorchSharp one, the
/// rounding against torch's own, and the policy's choices.
module Lookahead.Tests.MixedPrecision

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators

/// One step of a trajectory: the parameters (as float64) and the state's leaves by path (float64 values, dtype).
type Snapshot = { Params: float[][]; State: Map<string, float[] * torch.ScalarType> }

let private leaves (s: IOptState) =
    s.Leaves()
    |> Seq.map (fun l ->
        if isNull l.Tensor then l.Path, ([| l.Scalar.Value |], torch.float64)
        else l.Path, (values (l.Tensor.detach().to_type(torch.float64)), l.Tensor.dtype))
    |> Map.ofSeq

/// The runner on `half` parameters: gradients rounded to `half` and written into `.grad` (or passed to `Step(grads)`).
let runMixed (options: RunnerOptions) (throughGrad: bool) (half: torch.ScalarType) (tx: IGradientTransformation) (p: Problem) =
    use _ = torch.NewDisposeScope()
    let parameters = TensorTree.Of(List.map3 (fun n s v -> struct (n, (tensor s v).to_type(half).requires_grad_(throughGrad))) p.Names p.Shapes p.Params0)
    use runner = new Runner(tx, parameters, options)
    [ for k, g in List.indexed p.Grads ->
        let grads = (tree p g).Map(fun t -> t.to_type half)
        if throughGrad then
            use _ = torch.no_grad ()
            for n in p.Names do runner.Gradients.[n].copy_(grads.[n]) |> ignore
            runner.Step(FastPath.contextAt k)
        else runner.Step(grads, FastPath.contextAt k)
        { Params = [| for n in p.Names -> values (parameters.[n].detach().to_type(torch.float64)) |]; State = leaves runner.State } ]

/// The semantics the policy states, on the pure path: state, gradient and arithmetic in float32, θ rounded to `half`
/// after each step (θ₁₆ ← round(float32(θ₁₆) + u)).
let reference (half: torch.ScalarType) (tx: IGradientTransformation) (p: Problem) =
    use _ = torch.NewDisposeScope()
    let mutable theta = TensorTree.Of(List.map3 (fun n s v -> struct (n, (tensor s v).to_type(half))) p.Names p.Shapes p.Params0)
    let wide (t: TensorTree) = t.Map(fun x -> x.to_type torch.float32)
    let mutable state = tx.Init(wide theta)
    [ for k, g in List.indexed p.Grads ->
        let grads = (tree p g).Map(fun t -> t.to_type(half).to_type(torch.float32))
        let struct (u, s) = tx.Update(grads, state, wide theta, FastPath.contextAt k)
        theta <- TensorTree.Of(Array.init theta.Count (fun i -> struct (theta.Names.[i], (theta.Tensors.[i].to_type(torch.float32) + u.Tensors.[i]).to_type(half))))
        state <- s
        { Params = [| for n in p.Names -> values (theta.[n].to_type(torch.float64)) |]; State = leaves s } ]

/// One unit in the last place of `half` at x's magnitude (bfloat16: 8 significant bits; float16: 11).
let ulp (half: torch.ScalarType) (x: float) =
    let bits = if half = torch.bfloat16 then 8 else 11
    let x = max (abs x) (if half = torch.bfloat16 then 1e-30 else 6e-5)
    Math.Pow(2.0, Math.Floor(Math.Log2 x) - float (bits - 1))

/// Parameters within `k` units in the last place of the 16-bit format per step taken (float32 results a few ulps
/// apart may round to neighbouring 16-bit values, at most once per step) plus the float32 bound `atol + rtol·|b|`
/// (a parameter much smaller than its update, e.g. under a Polyak step size that is one global scalar, carries the
/// update's float32 difference, many of its own 16-bit units); the state within `atol + rtol·|b|` (a state value
/// summed over all parameters within 1e-2 relative when k > 0; Kahan's compensation with its parameter's 16-bit
/// allowance, and θ + c in float32), and in float32 (or float64 for scalars).
let compareMixed what half (k: float) (atol: float) (rtol: float) (names: string list) (a: Snapshot list) (b: Snapshot list) =
    Expect.sameLayout (what + ": parameters") names (a |> List.map (fun s -> s.Params)) (b |> List.map (fun s -> s.Params))
    List.iteri2 (fun step (x: Snapshot) (y: Snapshot) ->
        for t in 0 .. x.Params.Length - 1 do
            for i in 0 .. x.Params.[t].Length - 1 do
                let u, v = x.Params.[t].[i], y.Params.[t].[i]
                if not (u = v || (Double.IsNaN u && Double.IsNaN v) || abs (u - v) <= k * float (step + 1) * ulp half (max (abs u) (abs v)) + atol + rtol * abs v) then
                    failtestf "%s: step %d, parameter '%s' [%d]: %.9g vs %.9g" what (step + 1) names.[t] i u v
        Expect.sequenceEqual (Map.keys x.State |> List.ofSeq) (Map.keys y.State |> List.ofSeq) (sprintf "%s: step %d, state paths" what (step + 1))
        for KeyValue(path, (xs, dtype)) in x.State do
            let ys, _ = y.State.[path]
            if dtype <> torch.float64 && dtype <> torch.float32 then failtestf "%s: state '%s' is %A, expected float32" what path dtype
            Expect.equal xs.Length ys.Length (sprintf "%s: state '%s' length" what path)
            // A state value that is not per parameter (a Polyak step size, ⟨g, θ⟩) sums over every parameter, so it
            // carries the parameters' allowed 16-bit differences: within 1e-2 relative when k > 0.
            let perParameter = names |> List.exists (fun n -> path.EndsWith("/" + n))
            let rtol = if perParameter || k = 0.0 then rtol else max rtol 1e-2
            // Kahan's compensation c is the part of θ + c the 16-bit θ cannot hold: where two correct runs round θ to
            // neighbouring 16-bit values (a float32 result at a rounding tie), c differs by the same unit the other
            // way. So c gets the parameters' 16-bit allowance, and the sum θ + c, the summed parameters, must agree in
            // float32 (twice the bound: θ + c is as large as θ).
            let compensated = path.Contains "compensation/" && k > 0.0
            let owner = if compensated then names |> List.tryFindIndex (fun n -> path.EndsWith("/" + n)) else None
            for i in 0 .. xs.Length - 1 do
                match owner with
                | Some t ->
                    let px, py = x.Params.[t].[i], y.Params.[t].[i]
                    let unit = k * float (step + 1) * ulp half (max (abs px) (abs py))
                    if not (abs (xs.[i] - ys.[i]) <= unit + atol + rtol * abs ys.[i]) then
                        failtestf "%s: step %d, state '%s' [%d]: %.9g vs %.9g (more than the parameter's %g allowed)" what (step + 1) path i xs.[i] ys.[i] unit
                    if not (Expect.within (2.0 * atol) (2.0 * rtol) (py + ys.[i]) (px + xs.[i])) then
                        failtestf "%s: step %d, θ + c of '%s' [%d]: %.9g vs %.9g" what (step + 1) names.[t] i (px + xs.[i]) (py + ys.[i])
                | None ->
                    if not (Expect.within atol rtol ys.[i] xs.[i] || (Double.IsNaN xs.[i] && Double.IsNaN ys.[i])) then
                        failtestf "%s: step %d, state '%s' [%d]: %.9g vs %.9g" what (step + 1) path i xs.[i] ys.[i]) a b

let torchSharp, fused = FusedExecutor.torchSharp, FusedExecutor.fused

[<Tests>]
let tests =
    testList "mixed precision (16-bit parameters, float32 state)" [
        testList "runner (TorchSharp executor) ≡ pure path in float32 rounding θ after each step: bfloat16, 10 steps" [
            for name, tx in FastPath.optimizers ->
                Expect.property name (genProblemWith 10 10) (fun p ->
                    compareMixed name torch.bfloat16 1.0 4e-6 4e-5 p.Names (runMixed torchSharp false torch.bfloat16 (tx ()) p) (reference torch.bfloat16 (tx ()) p))
        ]

        // Centered RMSprop is left out here: with 16-bit gradients (few distinct values) v − mean² often cancels to
        // rounding level, where two correct float32 evaluations differ by far more than any bound in ulps (a CI run
        // saw 16 float16 ulps at step 8). It is compared in the fused executor's float32 and float64 tests, and against the pure path here.
        // MoMo's step size divides f̄ − f* − ⟨d̄, θ⟩ (plus ⟨d, θ⟩ terms) by ‖d‖²: once two correct runs round one θ to
        // neighbouring 16-bit values, that sum, often near cancellation, moves the next step size by far more than
        // float32 rounding (a CI run saw 16 bfloat16 ulps at step 3 for MoMo-Adam). Both MoMo forms are compared
        // here on their first step, from identical bits, where only the reductions' order differs; their whole
        // trajectories are compared in the fused executor's float32 and float64 tests and against the pure path above.
        testList "fused ≡ TorchSharp executor: bfloat16 through .grad and float16 through Step(gradients), 10 steps (MoMo: 1 step)" [
            for name, tx in FastPath.optimizers |> List.filter (fun (n, _) -> n <> "rmsprop centered momentum") ->
                let keep = if name.StartsWith "momo" then List.truncate 1 else id
                Expect.property name (genProblemWith 10 10) (fun p ->
                    compareMixed (name + " (bfloat16)") torch.bfloat16 1.0 4e-6 4e-5 p.Names (keep (runMixed (fused 2 16) true torch.bfloat16 (tx ()) p)) (keep (runMixed torchSharp false torch.bfloat16 (tx ()) p))
                    compareMixed (name + " (float16)") torch.float16 1.0 4e-6 4e-5 p.Names (keep (runMixed (fused 2 16) false torch.float16 (tx ()) p)) (keep (runMixed torchSharp false torch.float16 (tx ()) p)))
        ]

        testList "bfloat16 on the fused executor: the same bits for 1, 2 and 4 threads and any block size" [
            for name, tx in FastPath.optimizers ->
                Expect.property name FusedExecutor.genEdgeProblem (fun p ->
                    let one = runMixed (fused 1 8) true torch.bfloat16 (tx ()) p
                    let same what other = compareMixed what torch.bfloat16 0.0 0.0 0.0 p.Names other one
                    same (name + ": 2 threads, blocks of 16") (runMixed (fused 2 16) true torch.bfloat16 (tx ()) p)
                    same (name + ": 4 threads, blocks of 2048") (runMixed (fused 4 2048) true torch.bfloat16 (tx ()) p))
        ]

        testCase "θ ← θ + u rounds to nearest, ties to even, as torch does: bfloat16 and float16, ties, NaN, ±∞, subnormals" <| fun () ->
            // u = g exactly (a unit scale), so θ₁ = round(θ₀ + g): every addition below needs rounding, a quarter are ties.
            let rng = Random(5)
            let n = 4099
            for half in [ torch.bfloat16; torch.float16 ] do
                let bits = if half = torch.bfloat16 then 8 else 11
                let theta0 = Array.init n (fun i -> (if i % 2 = 0 then 1.0 else -1.0) * Math.Pow(2.0, float (rng.Next(-12, 12))))
                let g = Array.init n (fun i ->
                    let step = abs theta0.[i] * Math.Pow(2.0, float -bits)
                    match i % 4 with
                    | 0 -> step * float (rng.Next(1, 8))                 // a tie: half a unit times odd or even multiples
                    | 1 -> step * (rng.NextDouble() * 6.0 - 3.0)
                    | 2 -> -step * float (rng.Next(1, 8))
                    | _ -> step * 0.75)
                g.[3] <- nan; g.[7] <- infinity; g.[11] <- -infinity
                theta0.[13] <- (if half = torch.bfloat16 then 1e-39 else 1e-6); g.[13] <- theta0.[13] * 0.37
                let expected =
                    use t = (torch.tensor(theta0, dtype = torch.float64)).to_type(half)
                    use gg = (torch.tensor(g, dtype = torch.float64)).to_type(half)
                    use sum = (t.to_type(torch.float32) + gg.to_type(torch.float32)).to_type(half)
                    values (sum.to_type(torch.float64))
                for options in [ fused 1 2048; fused 2 16; torchSharp ] do
                    use _ = torch.NewDisposeScope()
                    let w = (torch.tensor(theta0, dtype = torch.float64)).to_type(half)
                    use runner = new Runner(Transforms.Scale(1.0), TensorTree.Of(struct ("w", w)), options)
                    runner.Step(TensorTree.Of(struct ("w", (torch.tensor(g, dtype = torch.float64)).to_type(half))))
                    let got = values (w.to_type(torch.float64))
                    for i in 0 .. n - 1 do
                        if not (FusedExecutor.sameBits got.[i] expected.[i]) then
                            failtestf "%A, %A executor: index %d, θ₀ = %.9g, g = %.9g: %.9g, torch gives %.9g" half runner.Executor i theta0.[i] g.[i] got.[i] expected.[i]

        testCase "the policy: float32 state on the fused executor by default, the parameters' dtype on TorchSharp when asked" <| fun () ->
            use _ = torch.NewDisposeScope()
            let half () = TensorTree.Of(struct ("w", torch.randn([| 40L |]).to_type(torch.bfloat16)))
            use mixed = new Runner(Optim.Adam(0.01), half ())
            Expect.equal mixed.Executor RunnerExecutor.FusedCpu "bfloat16 with float32 state runs fused"
            for leaf in mixed.State.Leaves() do
                if not (isNull leaf.Tensor) then Expect.equal leaf.Tensor.dtype torch.float32 (sprintf "state '%s' is float32" leaf.Path)
            use own = new Runner(Optim.Adam(0.01), half (), RunnerOptions(StatePrecision = StatePrecision.Parameters))
            Expect.equal own.Executor RunnerExecutor.TorchSharp "state in bfloat16 runs on TorchSharp"
            for leaf in own.State.Leaves() do
                if not (isNull leaf.Tensor) then Expect.equal leaf.Tensor.dtype torch.bfloat16 (sprintf "state '%s' is bfloat16" leaf.Path)
            Expect.throwsC (fun () -> new Runner(Optim.Adam(0.01), half (), RunnerOptions(StatePrecision = StatePrecision.Parameters, Executor = RunnerExecutor.FusedCpu)) |> ignore) (fun e ->
                Expect.stringContains e.Message "'w' is BFloat16" "names the tensor and its dtype"
                Expect.stringContains e.Message "StatePrecision.Float32" "says which policy the fused executor runs")

        testCase "float32 state keeps updates that bfloat16 state loses: Adam's v of tiny gradients" <| fun () ->
            // g² of 1e-3-sized gradients with β₂ = 0.999: (1 − β₂)·g² is below half a bfloat16 unit of v after a few
            // steps, so v in bfloat16 stops growing; in float32 it keeps the exact EMA.
            use _ = torch.NewDisposeScope()
            let run (policy: StatePrecision) =
                let w = torch.zeros([| 64L |], dtype = torch.bfloat16)
                use runner = new Runner(Optim.Adam(1e-3), TensorTree.Of(struct ("w", w)), RunnerOptions(StatePrecision = policy))
                for _ in 1 .. 200 do runner.Step(TensorTree.Of(struct ("w", (tensor [| 64L |] (Array.create 64 1e-3)).to_type(torch.bfloat16))))
                let v = runner.State.Leaves() |> Seq.filter (fun l -> not (isNull l.Tensor) && l.Path.Split('/') |> Array.contains "nu") |> Seq.exactlyOne
                (values (v.Tensor.to_type(torch.float64))).[0]
            let g = float (torch.tensor(1e-3).to_type(torch.bfloat16).to_type(torch.float64).item<float>())
            let exact = g * g * (1.0 - Math.Pow(0.999, 200.0))
            Expect.isTrue (Expect.within 0.0 1e-4 exact (run StatePrecision.Float32)) (sprintf "float32 state: v = %.9g, exact EMA %.9g" (run StatePrecision.Float32) exact)
            Expect.isFalse (Expect.within 0.0 1e-2 exact (run StatePrecision.Parameters)) "bfloat16 state: v is stuck away from the EMA"
    ]
