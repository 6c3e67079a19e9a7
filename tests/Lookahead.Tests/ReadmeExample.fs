module Lookahead.Tests.ReadmeExample
// README:fsharp-begin
open TorchSharp
open Lookahead.FSharp

/// Fits y = 3x − 1 with AdamW behind a global-norm clip; returns the final loss.
let trainLine () =
    torch.manual_seed 0L |> ignore
    let x = torch.randn(256L, 1L, dtype = torch.float64)
    let y = 3.0 * x - 1.0 + 0.1 * torch.randn(256L, 1L, dtype = torch.float64)
    let model = torch.nn.Linear(1L, 1L, dtype = torch.float64)
    let optimizer =
        Transform.chain [
            Primitives.clipByGlobalNorm 1.0
            AdamW.create { AdamW.defaults with lr = 0.05; weightDecay = 0.0 } ]
    use runner = Training.runner optimizer model   // owns the state and flat buffers
    let mutable loss = nan
    for step in 1 .. 300 do
        use _ = torch.NewDisposeScope()
        Training.zeroGrad runner
        let l = torch.nn.functional.mse_loss(model.forward x, y)
        l.backward()
        Training.step Context.empty runner
        loss <- l.item<float>()
        if step % 100 = 0 then printfn "step %d: loss %.5f" step loss
    loss
// README:fsharp-end

// README:hypergradient-fsharp-begin
/// Fits y = 3x − 1 with Adam-HD from a small rate; returns the rate it ends with and the final loss.
let trainLineAdamHD () =
    torch.manual_seed 0L |> ignore
    let x = torch.randn(256L, 1L, dtype = torch.float64)
    let y = 3.0 * x - 1.0 + 0.1 * torch.randn(256L, 1L, dtype = torch.float64)
    let model = torch.nn.Linear(1L, 1L, dtype = torch.float64)
    use runner = Training.runner (AdamHD.create { AdamHD.defaults with lr = 1e-3; hypergradientLr = 1e-4 }) model
    let mutable loss = nan
    for _ in 1 .. 300 do
        use _ = torch.NewDisposeScope()
        Training.zeroGrad runner
        let l = torch.nn.functional.mse_loss(model.forward x, y)
        l.backward()
        Training.step Context.empty runner
        loss <- l.item<float>()
    let rate = Lookahead.Hypergradient.LearningRate runner.State   // the rate as state: α₀ = 1e-3, moved from the second step on
    printfn "Adam-HD: rate 1e-3 → %.3g, loss %.4f" rate loss
    rate, loss
// README:hypergradient-fsharp-end
