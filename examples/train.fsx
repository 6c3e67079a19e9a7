// A small script: a teacher–student regression on generated data, trained by an optimizer
// composed from Lookahead's primitives. Run through `dotnet fsi build.fsx demo` (which builds first); the main job is `lookahead compare`.
#r "nuget: SharpZipLib, 1.4.1"
#r "nuget: SkiaSharp, 2.88.9"
#r "nuget: TorchSharp-cpu, 0.107.0"
#r "../src/Lookahead.Fs/bin/Release/net10.0/Lookahead.Core.dll"
#r "../src/Lookahead.Fs/bin/Release/net10.0/Lookahead.Fs.dll"

open TorchSharp
open Lookahead
open Lookahead.FSharp

torch.manual_seed 1234L |> ignore
let inputs, hidden, samples = 8L, 32L, 512L

// A fixed random teacher network makes the targets; the student has the same architecture.
let mlp () =
    torch.nn.Sequential(
        [| "fc1", torch.nn.Linear(inputs, hidden) :> torch.nn.Module<torch.Tensor, torch.Tensor>
           "act", torch.nn.Tanh()
           "fc2", torch.nn.Linear(hidden, 1L) |])
let teacher, student = mlp (), mlp ()
let x = torch.randn(samples, inputs)
let y = (use _ = torch.no_grad() in teacher.forward x)

// AdamW for the matrices, plain momentum SGD for the biases, all behind a global-norm clip.
let optimizer =
    Transform.chain [
        Primitives.clipByGlobalNorm 1.0
        Transform.partitionBy (Param.rankAtLeast 2)
            (AdamW.create { AdamW.defaults with lr = 1e-2; weightDecay = 1e-4 })
            (Sgd.create { Sgd.defaults with lr = 5e-2; momentum = 0.9 }) ]
printfn "optimizer: %s" (Transform.name optimizer)

// The runner is the fast path: state and buffers it owns, reused every step.
let runner = Training.runner optimizer student
for step in 1 .. 400 do
    use _ = torch.NewDisposeScope()
    Training.zeroGrad runner
    let loss = torch.nn.functional.mse_loss(student.forward x, y)
    loss.backward()
    Training.step Context.empty runner
    if step = 1 || step % 50 = 0 then printfn "step %4d  loss %.6f" step (loss.item<float32>())
runner.Dispose()
