/// `lookahead analyze`: the SPEC syntax over Optim's factories, its errors, the JSON against closed forms,
/// the plots, and `--equals` deciding and solving exactly.
module Lookahead.Tests.AnalyzeCli

open System
open System.IO
open System.Text.Json
open Expecto
open Lookahead
open Lookahead.Cli

let private run (args: string list) =
    use out = new StringWriter()
    let code = Analyze.Execute(Array.ofList args, out)
    code, out.ToString()

let private error (args: string list) =
    try run args |> ignore; failtestf "expected an ArgumentException from %A" args
    with :? ArgumentException as e -> e.Message

let private temp () = Path.Combine(Path.GetTempPath(), "lookahead-analyze-" + Guid.NewGuid().ToString("N"))

[<Tests>]
let tests =
    testSequenced <| testList "lookahead analyze" [
        test "SPEC names any Optim factory case-insensitively, with or without underscores, and its arguments by name" {
            for text in [ "heavy_ball:lr=0.1,momentum=0.9"; "HeavyBall:LR=0.1,Momentum=0.9"; "heavyball:lr=0.1,momentum=0.9" ] do
                let f = (OptimizerSpec.Parse text).Build()
                Expect.stringContains f.Transform.Name "heavy_ball(lr=0.1, momentum=0.9" text
            let shifted = (OptimizerSpec.Parse "nesterov_velocity:lr=0.001,momentum=0.9@9").Build()
            Expect.equal shifted.Lookahead 9.0 "@MU is the form's lookahead"
            let defaults = (OptimizerSpec.Parse "rsg:lr=1").Build()
            Expect.stringContains defaults.Transform.Name "momentum=0.999, mu=0.1" "arguments not given take the factory's defaults"
        }

        test "unknown names, unknown arguments, malformed values and missing required arguments are errors listing what is valid" {
            let unknown = error [ "rmsgrad" ]
            Expect.stringContains unknown "unknown optimizer 'rmsgrad'" "names it"
            Expect.stringContains unknown "heavy_ball" "lists the known ones"
            let arg = error [ "rsg:lr=1,nu=0.5" ]
            Expect.stringContains arg "no argument 'nu'" "names the argument"
            Expect.stringContains arg "momentum (double, default 0.999)" "lists the valid ones with types and defaults"
            let value = error [ "rsg:lr=fast" ]
            Expect.stringContains value "argument 'lr' expects double; got 'fast'" "names the argument and the type"
            let missing = error [ "rsg:momentum=0.9" ]
            Expect.stringContains missing "needs 'lr'" "a required argument"
            let range = error [ "rsg:lr=1,momentum=1.5" ]
            Expect.stringContains range "momentum" "the factory's own validation, naming the argument"
            Expect.stringContains (error [ "sgd:lr=0.1"; "--curvature"; "1:0:5" ]) "FROM < TO" "curvature range"
            Expect.stringContains (error [ "sgd:lr=0.1"; "--curvature"; "0:1:5:log" ]) "FROM > 0" "log spacing from 0"
            Expect.stringContains (error [ "sgd:lr=0.1"; "--bogus" ]) "unknown option '--bogus'" "options"
            Expect.stringContains (error [ "sgd:lr=?0:1" ]) "only allowed in --equals" "a free argument outside --equals"
        }

        test "the JSON holds every optimizer; gradient descent's gain factor and variance limit are the closed forms" {
            let dir = temp ()
            Directory.CreateDirectory dir |> ignore
            let json = Path.Combine(dir, "a.json")
            let code, text = run [ "sgd:lr=0.5"; "adam"; "--curvature"; "0.1:5:50"; "--noise"; "--json"; json; "--out"; dir ]
            Expect.equal code 0 text
            Expect.stringContains text "stable for curvature λ in (0, 4)" "|1 − αλ| < 1 for 0 < λ < 2/α"
            Expect.stringContains text "not linear" "Adam"
            Expect.stringContains text "precondition" "and why"
            use doc = JsonDocument.Parse(File.ReadAllText json)
            let optimizers = doc.RootElement.GetProperty("optimizers")
            Expect.equal (optimizers.GetArrayLength()) 2 "one entry per SPEC"
            let sgd = optimizers.[0]
            Expect.equal (sgd.GetProperty("spec").GetString()) "sgd:lr=0.5" "spec"
            Expect.isTrue (sgd.GetProperty("linear").GetBoolean()) "linear"
            Expect.equal (sgd.GetProperty("order").GetInt32()) 1 "order 1: θ"
            let arr (name: string) = [ for v in sgd.GetProperty(name).EnumerateArray() -> if v.ValueKind = JsonValueKind.Null then nan else v.GetDouble() ]
            let lambdas, gains, variances = arr "curvature", arr "gain_factor", arr "variance_limit"
            Expect.equal lambdas.Length 50 "50 curvatures"
            for l, g, v in List.zip3 lambdas gains variances do
                let r = abs (1.0 - 0.5 * l)
                Expect.floatClose Accuracy.veryHigh g r (sprintf "r_g(%g) = |1 − αλ|" l)
                // g = λ(θ + δ): θ' = (1 − αλ)θ − αλδ, so Var = (αλ)²/(1 − (1 − αλ)²) while stable.
                if r < 1.0 then Expect.floatClose Accuracy.high v ((0.5 * l) ** 2.0 / (1.0 - r * r)) (sprintf "l_Var(%g)" l)
                else Expect.isTrue (Double.IsNaN v) (sprintf "λ = %g: unstable, null" l)
            let adam = optimizers.[1]
            Expect.isFalse (adam.GetProperty("linear").GetBoolean()) "Adam is not linear"
            Expect.equal (adam.GetProperty("order").ValueKind) JsonValueKind.Null "no order"
            for file in [ "analyze.png"; "analyze.html" ] do
                Expect.isGreaterThan (FileInfo(Path.Combine(dir, file)).Length) 1000L (sprintf "%s written" file)
            Directory.Delete(dir, true)
        }

        test "--equals decides exactly, and solves a free argument" {
            let code, text = run [ "rsg:lr=0.1,momentum=0.9,mu=0.3"; "--equals"; "qhm:lr=0.1,momentum=0.9,nu=0.7" ]
            Expect.equal code 0 text
            Expect.stringContains text "equal:" "decided equal"
            let code, text = run [ "rsg:lr=0.1,momentum=0.9,mu=0.3"; "--equals"; "qhm:lr=0.1,momentum=0.9,nu=0.700001" ]
            Expect.equal code 1 text
            Expect.stringContains text "not equal: the point after step" "the first differing response"
            let code, text = run [ "rsg:lr=0.1,momentum=0.9,mu=0.3"; "--equals"; "qhm:lr=0.1,momentum=0.9,nu=?0:1" ]
            Expect.equal code 0 text
            Expect.stringContains text "nu = 0.7" "ν = 1 − μ solved"
            let code, text = run [ "nesterov_sgd:lr=0.01,momentum=0.9"; "--equals"; "heavy_ball:lr=?0:1,momentum=0.9" ]
            Expect.equal code 1 text
            Expect.stringContains text "no lr in [0, 1]" "no solution"
            let e = error [ "adam"; "--equals"; "sgd:lr=0.1" ]
            Expect.stringContains e "precondition" "a non-linear optimizer: the primitive named"
        }
    ]
