/// A transform's identity (its Spec): every hyperparameter of every optimizer reaches the fingerprint, a
/// checkpoint saved with one value is refused under another and names that hyperparameter, and specs do not
/// depend on the culture or the process.
module Lookahead.Tests.Identity

open System
open System.Diagnostics
open System.Globalization
open System.IO
open System.Reflection
open Expecto
open TorchSharp
open Lookahead

type private RParameter = System.Reflection.ParameterInfo

/// Values for the factories' arguments that have no default.
let private required (p: RParameter) : obj =
    match p.Name with
    | "lr" -> box 0.01
    | "momentum" -> box 0.9
    | "nu" -> box 0.7
    | "lookahead" -> box 0.5
    | other -> failwithf "no sample value for the required argument '%s'" other

/// Every public factory of Optim, as (method, its arguments with defaults filled in).
let factories () =
    typeof<Optim>.GetMethods(BindingFlags.Public ||| BindingFlags.Static)
    |> Array.filter (fun m -> m.ReturnType = typeof<IGradientTransformation>)
    // The Hyper overloads (tensor hyperparameters) build the same optimizers; the differentiable tests compare them.
    |> Array.filter (fun m -> m.GetParameters() |> Array.forall (fun p -> p.ParameterType <> typeof<Hyper>))
    |> Array.sortBy (fun m -> m.Name, m.GetParameters().Length)
    |> Array.map (fun m -> m, m.GetParameters() |> Array.map (fun p -> if p.HasDefaultValue then p.DefaultValue else required p))

let invoke (m: MethodInfo) (args: obj[]) =
    try m.Invoke(null, args) :?> IGradientTransformation
    with :? TargetInvocationException as e -> raise e.InnerException

/// The snake-case kind each factory reports, e.g. MarsMEfficient → mars_m_efficient.
let private kindOf (name: string) =
    Text.RegularExpressions.Regex.Replace(name, "(?<=[a-z0-9])([A-Z])", "_$1").ToLowerInvariant()

/// Other valid values to try for an argument (the first one the factory accepts is used).
let private alternatives (p: RParameter) (value: obj) : obj list =
    match value with
    | :? float as v when Double.IsPositiveInfinity v -> [ box 1.5 ]
    | :? float as v -> [ v * 0.5; v + 0.05; v * 2.0; (v + 1.0) / 2.0; 0.3; 0.7; 1e-3 ] |> List.filter (fun x -> x <> v) |> List.map box
    | :? bool as b -> [ box (not b) ]
    | :? int as i -> [ box (i + 1); box (max 1 (i - 1)) ]
    | :? Enum as e -> [ for x in Enum.GetValues(e.GetType()) do if not (x.Equals e) then yield x ]
    | null when p.ParameterType = typeof<Nullable<struct (float * float)>> -> [ box (Nullable<struct (float * float)>(struct (0.8, 0.95))) ]
    | null when p.ParameterType = typeof<Nullable<float>> -> [ box (Nullable<float>(0.5)); box (Nullable<float>(4.0)) ]
    | null when p.ParameterType = typeof<Nullable<int>> -> [ box (Nullable<int>(5)) ]
    | null when p.ParameterType = typeof<BoostPolicy> -> [ box (BoostPolicy(Window = 7)) ]
    | null when p.ParameterType = typeof<IGradientTransformation> -> [ box (Optim.Muon(0.01)) ]
    | null when p.ParameterType = typeof<Func<Lookahead.ParameterInfo, bool>> -> [ box (Func<Lookahead.ParameterInfo, bool>(fun i -> i.Rank >= 2)) ]
    | null when p.ParameterType = typeof<Func<int64, float>> -> [ box (Func<int64, float>(fun t -> 0.01 / float t)) ]
    | _ -> []

/// Arguments whose other values the factory refuses on its own (covered with another base value below).
let private baseOverrides : Map<string * string, (string * obj) list> =
    Map [ ("Sgd", "nesterov"), [ "momentum", box 0.9 ]; ("SgdHD", "nesterov"), [ "momentum", box 0.9 ] ]

let private matrix () = TensorTree.Of(struct ("w", torch.linspace(-1.0, 1.0, 12L, dtype = torch.float64).reshape(4L, 3L)))

let private temp () = Path.Combine(Path.GetTempPath(), sprintf "lookahead-identity-%d.safetensors" (Random.Shared.Next()))

/// Saves `saved`'s initial state, loads it into `loaded`; the exception's message (or None when it loads).
let private crossLoad (saved: IGradientTransformation) (loaded: IGradientTransformation) =
    use _ = torch.NewDisposeScope()
    let p = matrix ()
    let file = temp ()
    try
        Checkpoint.Save(file, saved, saved.Init p, p)
        try
            Checkpoint.Load(file, loaded, p) |> ignore
            None
        with :? CheckpointException as e -> Some e.Message
    finally File.Delete file

/// Runs `f` with the current culture set to `name`.
let private inCulture (name: string) (f: unit -> 'a) =
    let before = CultureInfo.CurrentCulture
    CultureInfo.CurrentCulture <- CultureInfo.GetCultureInfo name
    try f () finally CultureInfo.CurrentCulture <- before

/// The fingerprints the second-process test compares: every factory with its defaults, and combinators.
let fingerprintCatalog () : (string * IGradientTransformation) list =
    [ for m, args in factories () -> m.Name + "/" + string (args.Length), invoke m args
      yield "scheduled cosine adamw", Transforms.Scheduled(fun t -> Optim.AdamW((Schedule.Cosine(0.01, 100L, warmupSteps = 10L)).At t))
      yield "guarded momo", Transforms.GuardNonFinite(Optim.Momo(0.5), NonFinitePolicy.Skip)
      yield "clip + lion", Transforms.Chain(Transforms.ClipByGlobalNorm 0.75, Optim.Lion(3e-4)) ]

let printFingerprints () =
    printfn "culture\t%s" CultureInfo.CurrentCulture.Name
    for name, tx in fingerprintCatalog () do printfn "%s\t%s" name tx.Spec.Fingerprint

[<Tests>]
let tests =
    testList "identity" [
        test "every hyperparameter of every optimizer: another value is refused on load, naming it" {
            let mutable checkedCount = 0
            let untested = ResizeArray()
            for m, defaults in factories () do
                let ps = m.GetParameters()
                for i in 0 .. ps.Length - 1 do
                    let baseArgs = Array.copy defaults
                    for name, v in baseOverrides |> Map.tryFind (m.Name, ps.[i].Name) |> Option.defaultValue [] do
                        baseArgs.[ps |> Array.findIndex (fun p -> p.Name = name)] <- v
                    let variant =
                        alternatives ps.[i] baseArgs.[i]
                        |> List.tryPick (fun alt ->
                            let args = Array.copy baseArgs
                            args.[i] <- alt
                            try Some (invoke m args) with :? ArgumentException -> None)
                    match variant with
                    | None -> untested.Add(sprintf "%s.%s" m.Name ps.[i].Name)
                    | Some other ->
                        let original = invoke m baseArgs
                        let expected = sprintf "'%s/%s'" (kindOf m.Name) ps.[i].Name
                        match crossLoad original other with
                        | None -> failtestf "%s: a checkpoint saved with %s = %A loaded with another value" m.Name ps.[i].Name baseArgs.[i]
                        | Some message ->
                            if not (message.Contains expected) then
                                failtestf "%s: the message does not name %s: %s" m.Name expected message
                        checkedCount <- checkedCount + 1
            Expect.isEmpty untested (sprintf "arguments with no valid other value to try: %s" (String.Join(", ", untested)))
            Expect.isGreaterThan checkedCount 150 "hyperparameters checked"
        }

        test "the defaults of every factory load into themselves" {
            for m, args in factories () do
                Expect.isNone (crossLoad (invoke m args) (invoke m args)) m.Name
        }

        test "Momo(lr = 1) is refused by Momo(lr = 0.5), naming lr and both values" {
            match crossLoad (Optim.Momo(lr = 1.0)) (Optim.Momo(lr = 0.5)) with
            | None -> failtest "loaded"
            | Some message ->
                Expect.stringContains message "'momo/lr' was 1 when saved, here it is 0.5" "the message"
        }

        test "transforms whose hyperparameters are functions or factories are told apart" {
            let cases : (string * IGradientTransformation * IGradientTransformation) list =
                [ "polyak truncation", Transforms.PolyakTruncation(PolyakOptions(LearningRate = 1.0)), Transforms.PolyakTruncation(PolyakOptions(LearningRate = 0.5))
                  "boosted factory", Transforms.Boosted((fun l -> Optim.Sgd(0.1 / float (l + 1))), BoostPolicy()), Transforms.Boosted((fun l -> Optim.Sgd(0.2 / float (l + 1))), BoostPolicy())
                  "boosted policy", Transforms.Boosted((fun _ -> Optim.Sgd 0.1), BoostPolicy(Window = 5)), Transforms.Boosted((fun _ -> Optim.Sgd 0.1), BoostPolicy(Window = 6))
                  "scheduled late value", Transforms.Scheduled(fun t -> Optim.Sgd(if t < 500L then 0.1 else 0.01)), Transforms.Scheduled(fun t -> Optim.Sgd(if t < 500L then 0.1 else 0.02))
                  "when inner", Transforms.When((fun _ _ -> true), Optim.Sgd 0.1), Transforms.When((fun _ _ -> true), Optim.Sgd 0.2)
                  "when condition", Transforms.When((fun t _ -> t % 2L = 0L), Optim.Sgd 0.1), Transforms.When((fun t _ -> t % 3L = 0L), Optim.Sgd 0.1)
                  "scale by schedule function", Transforms.ScaleBySchedule((fun t -> -0.1 / float t), "decay"), Transforms.ScaleBySchedule((fun t -> -0.1 / sqrt (float t)), "decay")
                  "cosine schedule warm-up", Transforms.ScaleBySchedule(Schedule.Cosine(1.0, 100L, warmupSteps = 10L)), Transforms.ScaleBySchedule(Schedule.Cosine(1.0, 100L, warmupSteps = 11L))
                  "schedule peak past 6 digits", Transforms.ScaleBySchedule(Schedule.Constant 0.1234567), Transforms.ScaleBySchedule(Schedule.Constant 0.1234568) ]
            for name, a, b in cases do
                Expect.notEqual a.Spec.Fingerprint b.Spec.Fingerprint name
                Expect.isSome (crossLoad a b) (name + ": refused on load")
        }

        test "the same routing written as two different lambdas gives the same fingerprint (no method names in specs)" {
            let a = Transforms.Partition((fun (i: Lookahead.ParameterInfo) -> i.Rank >= 2), Optim.Muon(), Optim.AdamW())
            let b = Transforms.Partition((fun (i: Lookahead.ParameterInfo) -> i.Rank >= 2), Optim.Muon(), Optim.AdamW())
            Expect.equal a.Spec.Fingerprint b.Spec.Fingerprint "partition"
            let c = Transforms.When((fun t _ -> t % 2L = 0L), Optim.Sgd 0.1)
            let d = Transforms.When((fun t _ -> t % 2L = 0L), Optim.Sgd 0.1)
            Expect.equal c.Spec.Fingerprint d.Spec.Fingerprint "when"
        }

        test "checkpoints saved under de-DE and tr-TR load under the invariant culture and en-US" {
            use _ = torch.NewDisposeScope()
            let make () = Transforms.Chain(Optim.QhAdam(lr = 0.0015, beta1 = 0.85, nu1 = 0.7), Transforms.ScaleBySchedule(Schedule.Cosine(1.0, 50L, 0.1, 5L)))
            let p = matrix ()
            for saveCulture in [ "de-DE"; "tr-TR" ] do
                let file = temp ()
                try
                    inCulture saveCulture (fun () -> let tx = make () in Checkpoint.Save(file, tx, tx.Init p, p))
                    for loadCulture in [ ""; "en-US" ] do
                        inCulture loadCulture (fun () -> Checkpoint.Load(file, make (), p) |> ignore)
                finally File.Delete file
        }

        test "names and specs print the same in every culture" {
            let tx () = Optim.MarsM(lr = 0.0125, gamma = 0.025)
            let invariant = inCulture "" (fun () -> tx().Name, tx().Spec.Canonical)
            for c in [ "de-DE"; "tr-TR"; "fr-FR"; "ar-SA" ] do
                Expect.equal (inCulture c (fun () -> tx().Name, tx().Spec.Canonical)) invariant c
            Expect.stringContains (fst invariant) "lr=0.0125" "the name lists lr with a point"
        }

        test "a spec survives its canonical text, and Differences lists paths and both values" {
            let a = Optim.Adam(lr = 0.001, beta2 = 0.99).Spec
            let b = Optim.Adam(lr = 0.002, beta2 = 0.99).Spec
            Expect.equal (Spec.Parse(a.Canonical).Fingerprint) a.Fingerprint "parse ∘ canonical"
            let d = a.Differences b
            Expect.equal d.[0] (SpecDifference("adam/lr", "0.001", "0.002")) "the first difference is the user's argument"
            Expect.isTrue (d |> Seq.exists (fun x -> x.Path = "adam/definition/2/factor")) "the definition's scale differs too"
        }

        test "fingerprints are the same in a second process with another culture" {
            let here = dict [ for name, tx in fingerprintCatalog () -> name, tx.Spec.Fingerprint ]
            let exe = Environment.ProcessPath
            let entry = Assembly.GetEntryAssembly().Location
            let psi =
                if Path.GetFileNameWithoutExtension(exe) = "dotnet" then ProcessStartInfo(exe, sprintf "exec \"%s\" --print-fingerprints" entry)
                else ProcessStartInfo(exe, "--print-fingerprints")
            psi.RedirectStandardOutput <- true
            psi.UseShellExecute <- false
            psi.Environment.["LANG"] <- "de_DE.UTF-8"
            psi.Environment.["LC_ALL"] <- "de_DE.UTF-8"
            psi.Environment.["DOTNET_SYSTEM_GLOBALIZATION_INVARIANT"] <- "0"
            use proc = Process.Start psi
            let output = proc.StandardOutput.ReadToEnd()
            proc.WaitForExit()
            Expect.equal proc.ExitCode 0 "the second process exits cleanly"
            let there =
                output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                |> Array.filter (fun l -> l.Contains '\t')
                |> Array.map (fun l -> let parts = l.Split '\t' in parts.[0], parts.[1].Trim())
            Expect.isTrue (there |> Array.exists (fun (n, _) -> n = "culture")) "the second process reports its culture"
            Expect.equal (there |> Array.find (fun (n, _) -> n = "culture") |> snd) "de-DE" "the second process runs under de-DE"
            let compared = there |> Array.filter (fun (n, _) -> n <> "culture")
            Expect.equal compared.Length here.Count "every fingerprint printed"
            for name, fp in compared do Expect.equal fp here.[name] name
        }
    ]
