/// Schedules against TorchSharp's own LR schedulers (same process, same step convention) and closed forms,
/// and a scheduled hyperparameter against the same schedule applied as a factor.
module Lookahead.Tests.Schedules

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Lookahead
open Lookahead.Tests.Generators

/// The learning rate TorchSharp's scheduler sets for each of `steps` optimizer steps, from base lr `lr`.
let private torchRates (lr: float) (steps: int) (make: torch.optim.Optimizer -> torch.optim.lr_scheduler.LRScheduler) =
    use _ = torch.NewDisposeScope()
    let w = new Modules.Parameter(torch.zeros([| 1L |]))
    w.grad <- torch.zeros([| 1L |])
    let opt = torch.optim.SGD([ w ], lr)
    let sched = make opt
    [| for _ in 1 .. steps ->
        let rate = (Seq.head opt.ParamGroups).LearningRate
        opt.step() |> ignore
        sched.step()
        rate |]

let private agrees (name: string) (ours: Schedule) (theirs: float[]) =
    theirs |> Array.iteri (fun e r ->
        let v = ours.At(int64 e + 1L)
        if abs (v - r) > 1e-12 + 1e-10 * abs r then failtestf "%s at step %d: Lookahead %.17g, TorchSharp %.17g" name (e + 1) v r)

[<Tests>]
let tests =
    testList "schedules" [
        testList "against TorchSharp's LR schedulers (1e-12 + 1e-10·|b|)" [
            test "step ≡ StepLR" {
                for size, gamma in [ 1, 0.5; 7, 0.9; 30, 0.1 ] do
                    agrees "step" (Schedule.Step(0.1, int64 size, gamma)) (torchRates 0.1 100 (fun o -> torch.optim.lr_scheduler.StepLR(o, size, gamma)))
            }
            test "cosine ≡ CosineAnnealingLR over its half period" {
                for total, final in [ 10, 0.0; 100, 1e-4; 37, 0.003 ] do
                    agrees "cosine" (Schedule.Cosine(0.1, int64 total, final)) (torchRates 0.1 (total + 1) (fun o -> torch.optim.lr_scheduler.CosineAnnealingLR(o, float total, final)))
            }
            test "linear warm-up ≡ LinearLR" {
                for w, start in [ 5, 0.1; 50, 1e-3; 1, 0.5 ] do
                    agrees "linear warm-up" (Schedule.LinearWarmup(0.2, int64 w, 0.2 * start)) (torchRates 0.2 (w + 20) (fun o -> torch.optim.lr_scheduler.LinearLR(o, start, 1.0, w)))
            }
            test "one-cycle ≡ OneCycleLR (cosine, two phases)" {
                for total, pct, div, finalDiv in [ 100, 0.3, 25.0, 1e4; 37, 0.5, 10.0, 100.0; 10, 0.25, 5.0, 1e3 ] do
                    agrees "one-cycle" (Schedule.OneCycle(0.5, int64 total, pct, div, finalDiv))
                        (torchRates 0.5 total (fun o ->
                            torch.optim.lr_scheduler.OneCycleLR(o, 0.5, total, -1, -1, pct, torch.optim.lr_scheduler.impl.OneCycleLR.AnnealStrategy.Cos,
                                false, 0.85, 0.95, div, finalDiv, false, -1, false)))
            }
        ]
        Expect.property "cosine with warm-up ≡ a linear ramp from 0, then a half cosine from the peak to final, written out (every step through warm-up, the peak, the decay and after)"
            (gen {
                let! total = Gen.choose (2, 300)
                let! warmup = Gen.choose (1, total - 1)
                let! peak = Gen.choose (1, 100_000) |> Gen.map (fun i -> float i * 1e-5)
                // final below, at or above the peak (a schedule may also rise after the warm-up)
                let! final = Gen.oneof [ Gen.constant 0.0; Gen.constant peak; Gen.choose (0, 200_000) |> Gen.map (fun i -> float i * 1e-5) ]
                return total, warmup, peak, final })
            (fun (total, warmup, peak, final) ->
                let s = Schedule.Cosine(peak, int64 total, final, int64 warmup)
                // Reference, step t = 1, 2, … with n = t − 1 steps already taken: the warm-up rises in equal
                // increments of peak/W from 0 at the first step and reaches the peak at step W + 1; the cosine
                // then falls (or rises) from the peak to final over the remaining T − W steps and stays there.
                let expected (t: int) =
                    let n = t - 1
                    if n < warmup then float n * (peak / float warmup)
                    else
                        let progress = min 1.0 (float (n - warmup) / float (total - warmup))
                        let c = 0.5 * (1.0 + cos (Math.PI * progress))
                        c * peak + (1.0 - c) * final
                for t in 1 .. total + 5 do
                    let actual, e = s.At(int64 t), expected t
                    if abs (actual - e) > 1e-15 + 1e-12 * abs e then
                        failtestf "cosine(peak=%g, total=%d, final=%g, warmup=%d) at t = %d: %.17g, expected %.17g" peak total final warmup t actual e
                // The corners.
                Expect.equal (s.At 1L) 0.0 "the first step is 0"
                Expect.floatClose Accuracy.veryHigh (s.At(int64 warmup + 1L)) peak "the peak is reached right after the warm-up"
                Expect.floatClose Accuracy.veryHigh (s.At(int64 total + 1L)) final "final after T steps"
                if warmup >= 2 then
                    Expect.floatClose Accuracy.veryHigh (s.At 2L) (peak / float warmup) "the first warm-up increment is peak/W"
                    Expect.isLessThan (s.At(int64 warmup)) peak "still below the peak at the last warm-up step")
        test "warmup–stable–decay: linear up, flat, linear down, then final (closed form at the corners)" {
            let s = Schedule.WarmupStableDecay(1.0, 10L, 20L, 5L, 0.1)
            let expect t v = Expect.floatClose Accuracy.veryHigh (s.At t) v (sprintf "t = %d" t)
            expect 1L 0.0; expect 6L 0.5; expect 11L 1.0; expect 31L 1.0; expect 32L (1.0 - 0.9 / 5.0); expect 36L 0.1; expect 1000L 0.1
        }
        test "bad arguments name the argument" {
            Expect.throwsT<ArgumentOutOfRangeException> (fun () -> Schedule.Cosine(0.1, 0L) |> ignore) "totalSteps 0"
            Expect.throwsT<ArgumentOutOfRangeException> (fun () -> Schedule.OneCycle(0.1, 10L, pctStart = 1.0) |> ignore) "pctStart 1"
            Expect.throwsT<ArgumentOutOfRangeException> (fun () -> Schedule.Step(nan, 1L, 0.5) |> ignore) "initial NaN"
            Expect.throwsT<ArgumentOutOfRangeException> (fun () -> (Schedule.Constant 1.0).At 0L |> ignore) "t = 0"
            let e = Expect.throwsC (fun () -> Schedule.Cosine(0.1, 10L, warmupSteps = 10L) |> ignore) id
            Expect.stringContains e.Message "warmupSteps" "names the argument"
        }
        Expect.property "a scheduled learning rate ≡ the same schedule as a factor (bit-identical)"
            (gen { let! p = genLongProblem in let! peak = genRate in let! warm = Gen.choose (0, 10) in return p, peak, warm })
            (fun (p, peak, warm) ->
                let lr = Schedule.Cosine(peak, 40L, 0.0, int64 warm)
                let scheduled = Transforms.Scheduled(fun t -> Optim.Adam(lr.At t))
                let factor = Transforms.Chain(Transforms.Precondition(PreconditionOptions(Decay = 0.999, Epsilon = 1e-8), Transforms.Ema(0.9, debias = true)),
                                              Transforms.ScaleBySchedule(Schedule.Of((fun t -> -(lr.At t)), "-cosine")))
                Expect.identical (Expect.run scheduled p) (Expect.run factor p))
        Expect.property "scheduled β₁ and λ: AdamW rebuilt every step carries its moments over (against a loop of AdamW with those values)"
            (gen { let! p = genLongProblem in return p })
            (fun p ->
                let beta1 = Schedule.LinearWarmup(0.9, 10L, 0.5)
                let wd = Schedule.Step(0.1, 5L, 0.5)
                let scheduled = Transforms.Scheduled(fun t -> Optim.AdamW(0.01, beta1.At t, 0.999, 1e-8, wd.At t))
                // Reference: the same AdamW arithmetic with per-step coefficients, written as a loop.
                let n = p.Params0 |> List.sumBy Array.length
                let theta = Array.concat p.Params0
                let m, v = Array.zeroCreate n, Array.zeroCreate n
                let mutable prodB1 = 1.0
                let expected =
                    [ for k, g in List.indexed p.Grads ->
                        let t = int64 k + 1L
                        let b1, lam = beta1.At t, wd.At t
                        prodB1 <- prodB1 * b1
                        let g = Array.concat g
                        for i in 0 .. n - 1 do
                            m.[i] <- b1 * m.[i] + (1.0 - b1) * g.[i]
                            v.[i] <- 0.999 * v.[i] + 0.001 * g.[i] * g.[i]
                            let bc2 = 1.0 - Math.Pow(0.999, float t)
                            // m's bias correction with a changing β₁: Lookahead's EMA divides by 1 − β₁(t)ᵗ
                            let mhat = m.[i] / (1.0 - Math.Pow(b1, float t))
                            theta.[i] <- theta.[i] - 0.01 * (mhat / (sqrt v.[i] / sqrt bc2 + 1e-8) + lam * theta.[i])
                        Array.copy theta ]
                ignore prodB1
                let actual = Expect.run scheduled p
                List.iteri2 (fun k (a: float[][]) (e: float[]) ->
                    let a = Array.concat a
                    for i in 0 .. n - 1 do
                        if not (Expect.within 1e-10 1e-8 a.[i] e.[i]) then failtestf "step %d index %d: %.17g vs %.17g" (k + 1) i a.[i] e.[i]) actual.Params expected)
    ]
