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

// README:differentiable-fsharp-begin
/// Learns an initialisation (meta-learning, as MAML): tasks y = a·x + 2 with a random slope a; θ₀ = (slope, offset)
/// is trained so that 3 steps of SGD with momentum from it fit a new task. Returns the loss after those 3 steps from
/// θ₀ = 0 and from the learned θ₀, averaged over the same 20 held-out tasks.
let learnInitialisation () =
    torch.manual_seed 0L |> ignore
    let x = torch.linspace(-1.0, 1.0, 32L, dtype = torch.float64).unsqueeze 1L
    let task () = 1.0 + 0.5 * torch.randn(1L, dtype = torch.float64).item<float>()
    let inner = Sgd.create { Sgd.defaults with lr = 0.1; momentum = 0.5 }
    let lossOn (slope: float) (theta: Lookahead.TensorTree) =
        (theta.["w"] * x + theta.["b"] - (slope * x + 2.0)).square().mean()
    let adapted (theta0: Lookahead.TensorTree) (slope: float) =
        use unrolled = Differentiable.unroll inner theta0 (fun theta _ -> lossOn slope theta) 3
        lossOn slope unrolled.Parameters
    let heldOut = List.init 20 (fun _ -> task ())
    let meanAdapted theta0 = heldOut |> List.averageBy (fun s -> (adapted theta0 s).item<float>())
    let w = torch.zeros(1L, dtype = torch.float64).requires_grad_ true
    let b = torch.zeros(1L, dtype = torch.float64).requires_grad_ true
    let theta0 = Tree.ofList [ "w", w; "b", b ]
    let before = meanAdapted theta0
    for _ in 1 .. 100 do
        use _ = torch.NewDisposeScope()
        (adapted theta0 (task ())).backward()                   // through the 3 inner steps, second order included
        use _ = torch.no_grad ()
        for p in [ w; b ] do
            let delta: torch.Tensor = p.grad * 0.5
            p.sub_ delta |> ignore
            p.grad.zero_() |> ignore
    let after = meanAdapted theta0
    printfn "loss after 3 SGD steps: from θ₀ = 0 %.3f, from the learned θ₀ %.3f (offset %.2f)" before after (b.item<float>())
    before, after
// README:differentiable-fsharp-end
