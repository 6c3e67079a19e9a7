namespace Lookahead.FSharp

open System
open Lookahead

/// Hyperparameters as functions of the step t = 1, 2, …, over the C# Schedule: curried constructors (the
/// required values first, the C# defaults for the rest), settings records for the optional values, and
/// `drive` to put any hyperparameter on a schedule.
/// `Schedule.cosine 1e-3 1000L |> Schedule.drive (fun lr -> AdamW.create { AdamW.defaults with lr = lr })`.
[<RequireQualifiedAccess>]
module Schedule =
    /// The value at step t (1, 2, …).
    [<CompiledName("At")>]
    let at (t: int64) (schedule: Schedule) = schedule.At t

    /// The schedule's description, e.g. `cosine(peak=0.001, steps=1000, final=0, warmup=0)`.
    [<CompiledName("Name")>]
    let name (schedule: Schedule) = schedule.Name

    /// The schedule as an F# function of t.
    [<CompiledName("ToFunction")>]
    let toFunction (schedule: Schedule) : int64 -> float = fun t -> schedule.At t

    /// The values at steps 1 … n.
    [<CompiledName("Values")>]
    let values (n: int64) (schedule: Schedule) : float list = [ for t in 1L .. n -> schedule.At t ]

    /// A custom schedule from a function of t (under the C# default name).
    [<CompiledName("OfFunction")>]
    let ofFunction (valueAtStep: int64 -> float) = global.Lookahead.Schedule.Of(Func<_, _> valueAtStep)

    /// A custom schedule with a name.
    [<CompiledName("Named")>]
    let named (name: string) (valueAtStep: int64 -> float) = global.Lookahead.Schedule.Of(Func<_, _> valueAtStep, name)

    /// The same value at every step.
    [<CompiledName("Constant")>]
    let constant (value: float) = global.Lookahead.Schedule.Constant value

    /// Linear warm-up to peak over the first warmupSteps steps, from the C# default start.
    [<CompiledName("LinearWarmup")>]
    let linearWarmup (peak: float) (warmupSteps: int64) = global.Lookahead.Schedule.LinearWarmup(peak, warmupSteps)

    /// Linear warm-up from start to peak.
    [<CompiledName("LinearWarmupFrom")>]
    let linearWarmupFrom (start: float) (peak: float) (warmupSteps: int64) = global.Lookahead.Schedule.LinearWarmup(peak, warmupSteps, start)

    /// Step decay: initial·γ^⌊(t−1)/stepSize⌋ (torch's StepLR).
    [<CompiledName("Step")>]
    let step (initial: float) (stepSize: int64) (gamma: float) = global.Lookahead.Schedule.Step(initial, stepSize, gamma)

    /// The optional values of a cosine decay.
    type CosineSettings = { final: float; warmupSteps: int64 }

    /// Schedule.Cosine's defaults.
    [<CompiledName("CosineDefaults")>]
    let cosineDefaults : CosineSettings =
        let f = Factory(typeof<global.Lookahead.Schedule>, "Cosine")
        { final = f.Default "final"; warmupSteps = f.Default "warmupSteps" }

    /// Cosine decay from peak over totalSteps with the given final value and warm-up.
    [<CompiledName("CosineWith")>]
    let cosineWith (s: CosineSettings) (peak: float) (totalSteps: int64) =
        global.Lookahead.Schedule.Cosine(peak, totalSteps, s.final, s.warmupSteps)

    /// Cosine decay from peak over totalSteps (C#'s default final value, no warm-up).
    [<CompiledName("Cosine")>]
    let cosine (peak: float) (totalSteps: int64) = global.Lookahead.Schedule.Cosine(peak, totalSteps)

    /// The optional values of a one-cycle schedule.
    type OneCycleSettings = { pctStart: float; divFactor: float; finalDivFactor: float }

    /// Schedule.OneCycle's defaults (torch's OneCycleLR's).
    [<CompiledName("OneCycleDefaults")>]
    let oneCycleDefaults : OneCycleSettings =
        let f = Factory(typeof<global.Lookahead.Schedule>, "OneCycle")
        { pctStart = f.Default "pctStart"; divFactor = f.Default "divFactor"; finalDivFactor = f.Default "finalDivFactor" }

    /// One cycle up to maxValue and down over totalSteps, with the given settings.
    [<CompiledName("OneCycleWith")>]
    let oneCycleWith (s: OneCycleSettings) (maxValue: float) (totalSteps: int64) =
        global.Lookahead.Schedule.OneCycle(maxValue, totalSteps, s.pctStart, s.divFactor, s.finalDivFactor)

    /// One cycle up to maxValue and down over totalSteps (the C# defaults).
    [<CompiledName("OneCycle")>]
    let oneCycle (maxValue: float) (totalSteps: int64) = global.Lookahead.Schedule.OneCycle(maxValue, totalSteps)

    /// Warm-up, stable, decay to the C# default final value.
    [<CompiledName("WarmupStableDecay")>]
    let warmupStableDecay (peak: float) (warmupSteps: int64) (stableSteps: int64) (decaySteps: int64) =
        global.Lookahead.Schedule.WarmupStableDecay(peak, warmupSteps, stableSteps, decaySteps)

    /// Warm-up, stable, decay to final.
    [<CompiledName("WarmupStableDecayTo")>]
    let warmupStableDecayTo (final: float) (peak: float) (warmupSteps: int64) (stableSteps: int64) (decaySteps: int64) =
        global.Lookahead.Schedule.WarmupStableDecay(peak, warmupSteps, stableSteps, decaySteps, final)

    /// Any hyperparameter on the schedule: the transform `factory (value at t)` at step t, its state carried
    /// over (Transforms.Scheduled, named after the schedule).
    [<CompiledName("Drive")>]
    let drive (factory: float -> IGradientTransformation) (schedule: Schedule) : IGradientTransformation =
        Transforms.Scheduled(Func<_, _>(fun t -> factory (schedule.At t)), schedule.Name)

    /// u ← s(t)·u (Transforms.ScaleBySchedule).
    [<CompiledName("Scale")>]
    let scale (schedule: Schedule) : IGradientTransformation = Transforms.ScaleBySchedule schedule
