namespace Lookahead.FSharp

open System
open Lookahead

/// Conversions between F# values and the C# optional arguments of Optim.
module internal Interop =
    /// An F# pair of betas as the C# nullable value tuple.
    let betas (b1: float, b2: float) : Nullable<struct (float * float)> = Nullable(struct (b1, b2))

    /// An F# predicate as a C# delegate.
    let predicate (f: ParameterInfo -> bool) = Func<ParameterInfo, bool> f

/// torch.optim.SGD semantics; see Optim.Sgd.
module Sgd =
    type Settings = { lr: float; momentum: float; dampening: float; weightDecay: float; nesterov: bool }
    let defaults = { lr = 1e-2; momentum = 0.0; dampening = 0.0; weightDecay = 0.0; nesterov = false }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Sgd(s.lr, s.momentum, s.dampening, s.weightDecay, s.nesterov)

/// Heavy ball with torch's dampening and first-step convention; see Optim.HeavyBall.
module HeavyBall =
    type Settings = { lr: float; momentum: float; dampening: float }
    let defaults = { lr = 1e-2; momentum = 0.9; dampening = 0.0 }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.HeavyBall(s.lr, s.momentum, s.dampening)

/// Nesterov SGD in torch's form; see Optim.NesterovSgd.
module NesterovSgd =
    type Settings = { lr: float; momentum: float; weightDecay: float }
    let defaults = { lr = 1e-2; momentum = 0.9; weightDecay = 0.0 }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.NesterovSgd(s.lr, s.momentum, s.weightDecay)

/// Adam, AMSGrad with amsgrad = true; see Optim.Adam.
module Adam =
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; amsgrad: bool }
    let defaults = { lr = 1e-3; beta1 = 0.9; beta2 = 0.999; eps = 1e-8; weightDecay = 0.0; amsgrad = false }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Adam(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.amsgrad)

/// AdamW; see Optim.AdamW.
module AdamW =
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; amsgrad: bool }
    let defaults = { lr = 1e-3; beta1 = 0.9; beta2 = 0.999; eps = 1e-8; weightDecay = 1e-2; amsgrad = false }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.AdamW(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.amsgrad)

/// RAdam; see Optim.RAdam.
module RAdam =
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; decoupledWeightDecay: bool }
    let defaults = { lr = 1e-3; beta1 = 0.9; beta2 = 0.999; eps = 1e-8; weightDecay = 0.0; decoupledWeightDecay = false }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.RAdam(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.decoupledWeightDecay)

/// NAdam with torch ≥ 2.0 semantics; see Optim.NAdam.
module NAdam =
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; momentumDecay: float; decoupledWeightDecay: bool }
    let defaults = { lr = 2e-3; beta1 = 0.9; beta2 = 0.999; eps = 1e-8; weightDecay = 0.0; momentumDecay = 4e-3; decoupledWeightDecay = false }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.NAdam(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.momentumDecay, s.decoupledWeightDecay)

/// RMSprop, plain or centered, with momentum; see Optim.RmsProp.
module RmsProp =
    type Settings = { lr: float; alpha: float; eps: float; weightDecay: float; momentum: float; centered: bool }
    let defaults = { lr = 1e-2; alpha = 0.99; eps = 1e-8; weightDecay = 0.0; momentum = 0.0; centered = false }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.RmsProp(s.lr, s.alpha, s.eps, s.weightDecay, s.momentum, s.centered)

/// Adagrad with lr decay and initial accumulator; see Optim.Adagrad.
module Adagrad =
    type Settings = { lr: float; lrDecay: float; weightDecay: float; initialAccumulatorValue: float; eps: float }
    let defaults = { lr = 1e-2; lrDecay = 0.0; weightDecay = 0.0; initialAccumulatorValue = 0.0; eps = 1e-10 }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Adagrad(s.lr, s.lrDecay, s.weightDecay, s.initialAccumulatorValue, s.eps)

/// Generalised Nesterov momentum in shifted coordinates, lookahead μ; see Optim.GeneralisedNesterov.
module GeneralisedNesterov =
    /// ε (learning rate), β (momentum) and μ (lookahead).
    type Settings = { lr: float; momentum: float; lookahead: float }
    /// ε = 1e-2, β = 0.9 and μ = β (Sutskever's Nesterov); Optim.GeneralisedNesterov has no defaults of its own.
    let defaults = { lr = 1e-2; momentum = 0.9; lookahead = 0.9 }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.GeneralisedNesterov(s.lr, s.momentum, s.lookahead)

/// Nesterov momentum (lookahead μ = β) in shifted coordinates; see Optim.Nesterov.
module Nesterov =
    /// ε (learning rate) and β (momentum).
    type Settings = { lr: float; momentum: float }
    /// ε = 1e-2, β = 0.9, as NesterovSgd.defaults; Optim.Nesterov has no defaults of its own.
    let defaults = { lr = 1e-2; momentum = 0.9 }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Nesterov(s.lr, s.momentum)

/// Quasi-hyperbolic momentum; see Optim.Qhm.
module Qhm =
    /// α, β, ν, λ and how λ enters (coupled to the gradient or applied directly to θ).
    type Settings = { lr: float; momentum: float; nu: float; weightDecay: float; weightDecayType: QhmWeightDecay }
    /// The values Ma and Yarats recommend (β = 0.999, ν = 0.7, with α = 1 as in qhoptim's example); no weight decay, coupled.
    let defaults = { lr = 1.0; momentum = 0.999; nu = 0.7; weightDecay = 0.0; weightDecayType = QhmWeightDecay.Gradient }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Qhm(s.lr, s.momentum, s.nu, s.weightDecay, s.weightDecayType)

/// QHAdam (QHAdamW with decoupledWeightDecay); see Optim.QhAdam.
module QhAdam =
    /// α, (β₁, β₂), (ν₁, ν₂), ε, λ and whether λ is decoupled.
    type Settings = { lr: float; beta1: float; beta2: float; nu1: float; nu2: float; eps: float; weightDecay: float; decoupledWeightDecay: bool }
    /// Optim.QhAdam's defaults: Adam's (ν₁ = ν₂ = 1).
    let defaults = { lr = 1e-3; beta1 = 0.9; beta2 = 0.999; nu1 = 1.0; nu2 = 1.0; eps = 1e-8; weightDecay = 0.0; decoupledWeightDecay = false }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.QhAdam(s.lr, s.beta1, s.beta2, s.nu1, s.nu2, s.eps, s.weightDecay, s.decoupledWeightDecay)

/// Remote stochastic gradient (the fast form); see Optim.Rsg.
module Rsg =
    /// α, β, the observation factor μ and a coupled λ.
    type Settings = { lr: float; momentum: float; mu: float; weightDecay: float }
    /// β = 0.999 and μ = 0.1 as Optim.Rsg; α = 1e-2 as Sgd.defaults (Optim.Rsg asks for it).
    let defaults = { lr = 1e-2; momentum = 0.999; mu = 0.1; weightDecay = 0.0 }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Rsg(s.lr, s.momentum, s.mu, s.weightDecay)

/// Adaptive remote stochastic gradient; see Optim.Arsg.
module Arsg =
    /// α, (β₁, β₂), ε (a floor in the AMSGrad mode), coupled λ, μ and the preconditioner's mode.
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; mu: float; amsgrad: bool }
    /// Optim.Arsg's defaults, the paper's: β = (0.999, 0.99), μ = 0.1, AMSGrad mode.
    let defaults = { lr = 1e-3; beta1 = 0.999; beta2 = 0.99; eps = 1e-8; weightDecay = 0.0; mu = 0.1; amsgrad = true }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Arsg(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.mu, s.amsgrad)

/// MARS with its AdamW, Lion or Shampoo rule; see Optim.Mars.
module Mars =
    /// The settings of the corrected-gradient tensors, then those of the other tensors (…1d).
    type Settings =
        { lr: float
          beta1: float
          beta2: float
          eps: float
          weightDecay: float
          amsgrad: bool
          gamma: float
          exact: bool
          /// The update rule (the official mars_type).
          marsType: MarsType
          optimize1d: bool
          lr1d: float
          betas1d: float * float
          weightDecay1d: float
          clip: bool }
    /// Optim.Mars's defaults, those of the official code: η = 3e-3, β = (0.95, 0.99), γ = 0.025, AdamW rule, clipping on.
    let defaults =
        { lr = 3e-3; beta1 = 0.95; beta2 = 0.99; eps = 1e-8; weightDecay = 0.0; amsgrad = false; gamma = 0.025; exact = false
          marsType = MarsType.AdamW; optimize1d = false; lr1d = 3e-3; betas1d = (0.9, 0.95); weightDecay1d = 0.1; clip = true }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) =
        Optim.Mars(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.amsgrad, s.gamma, s.exact, s.marsType, s.optimize1d,
                   s.lr1d, Interop.betas s.betas1d, s.weightDecay1d, s.clip)

/// MARS-M: corrected momentum, orthogonalised, for hidden matrices; AdamW for the rest; see Optim.MarsM.
module MarsM =
    /// The matrix branch (lr, weightDecay, momentum, nsSteps, gamma, clip, exact, bf16), the AdamW branch (adamw…) and the routing.
    type Settings =
        { lr: float
          weightDecay: float
          momentum: float
          nsSteps: int
          adamwBetas: float * float
          adamwEps: float
          gamma: float
          clip: bool
          exact: bool
          /// Which parameters take the matrix branch.
          isMatrixParameter: ParameterInfo -> bool
          bf16: bool }
    /// Optim.MarsM's defaults, the official code's: η = 1e-3, λ = 0.1, β = 0.95, 5 Newton–Schulz steps, γ = 0.025, hidden matrices.
    let defaults =
        { lr = 1e-3; weightDecay = 0.1; momentum = 0.95; nsSteps = 5; adamwBetas = (0.9, 0.95); adamwEps = 1e-8; gamma = 0.025
          clip = true; exact = false; isMatrixParameter = Param.hiddenMatrices; bf16 = false }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) =
        Optim.MarsM(s.lr, s.weightDecay, s.momentum, s.nsSteps, Interop.betas s.adamwBetas, s.adamwEps, s.gamma, s.clip, s.exact,
                    Interop.predicate s.isMatrixParameter, s.bf16)

/// MARS-M's efficient form (no clipping, no stored previous gradient); see Optim.MarsMEfficient.
module MarsMEfficient =
    /// As MarsM.Settings without clip and exact.
    type Settings =
        { lr: float
          weightDecay: float
          momentum: float
          nsSteps: int
          adamwBetas: float * float
          adamwEps: float
          gamma: float
          /// Which parameters take the matrix branch.
          isMatrixParameter: ParameterInfo -> bool
          bf16: bool }
    /// Optim.MarsMEfficient's defaults (those of MarsM.defaults).
    let defaults =
        { lr = 1e-3; weightDecay = 0.1; momentum = 0.95; nsSteps = 5; adamwBetas = (0.9, 0.95); adamwEps = 1e-8; gamma = 0.025
          isMatrixParameter = Param.hiddenMatrices; bf16 = false }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) =
        Optim.MarsMEfficient(s.lr, s.weightDecay, s.momentum, s.nsSteps, Interop.betas s.adamwBetas, s.adamwEps, s.gamma,
                             Interop.predicate s.isMatrixParameter, s.bf16)

/// Muon: orthogonalised momentum; every parameter must be a matrix (see MuonWithAuxAdam for whole models); see Optim.Muon.
module Muon =
    /// η, λ, β, Nesterov or plain momentum, Newton–Schulz steps, the shape scaling and bfloat16 iteration.
    type Settings = { lr: float; weightDecay: float; momentum: float; nesterov: bool; nsSteps: int; scaling: ShapeScaling; bf16: bool }
    /// Optim.Muon's defaults, Keller Jordan's: η = 0.02, β = 0.95, Nesterov, 5 steps, √max(1, rows/cols).
    let defaults = { lr = 0.02; weightDecay = 0.0; momentum = 0.95; nesterov = true; nsSteps = 5; scaling = ShapeScaling.Muon; bf16 = false }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Muon(s.lr, s.weightDecay, s.momentum, s.nesterov, s.nsSteps, s.scaling, s.bf16)

/// Muon on hidden matrices, Adam (decoupled λ) on the rest; see Optim.MuonWithAuxAdam.
module MuonWithAuxAdam =
    /// The Muon part, the auxiliary Adam's settings and the routing.
    type Settings =
        { muon: Muon.Settings
          adamLr: float
          adamBetas: float * float
          adamEps: float
          adamWeightDecay: float
          /// Which parameters Muon updates.
          isMuonParameter: ParameterInfo -> bool }
    /// Optim.MuonWithAuxAdam's defaults: Muon.defaults, Adam with η = 3e-4, β = (0.9, 0.95), ε = 1e-10, hidden matrices to Muon.
    let defaults =
        { muon = Muon.defaults; adamLr = 3e-4; adamBetas = (0.9, 0.95); adamEps = 1e-10; adamWeightDecay = 0.0; isMuonParameter = Param.hiddenMatrices }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) =
        Optim.MuonWithAuxAdam(Muon.create s.muon, s.adamLr, Interop.betas s.adamBetas, s.adamEps, s.adamWeightDecay, Interop.predicate s.isMuonParameter)

/// The stochastic Polyak step (a negative gap steps uphill); needs the loss in the context; see Optim.Sps.
module Sps =
    /// The largest step α, the lower bound f* and the ε added to ‖g‖².
    type Settings = { maxLr: float; lowerBound: float; eps: float }
    /// Optim.Sps's defaults: α = 1, f* = 0, ε = 0.
    let defaults = { maxLr = 1.0; lowerBound = 0.0; eps = 0.0 }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Sps(s.maxLr, s.lowerBound, s.eps)

/// SPS+, the stochastic Polyak step with the gap truncated at zero; needs the loss in the context; see Optim.SpsPlus.
module SpsPlus =
    /// The largest step α, the lower bound f* and the ε added to ‖g‖².
    type Settings = { maxLr: float; lowerBound: float; eps: float }
    /// Optim.SpsPlus's defaults: α = 1, f* = 0, ε = 0.
    let defaults = { maxLr = 1.0; lowerBound = 0.0; eps = 0.0 }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.SpsPlus(s.maxLr, s.lowerBound, s.eps)

/// MoMo, momentum with a Polyak-type adaptive step; needs the loss in the context; see Optim.Momo.
module Momo =
    /// α, λ (proximal), β, f*, zero-started averages, and the online estimate of f*.
    type Settings = { lr: float; weightDecay: float; beta: float; lowerBound: float; biasCorrection: bool; estimateLowerBound: bool }
    /// Optim.Momo's defaults, the paper's: α = 1, β = 0.9, f* = 0, averages started at the first values.
    let defaults = { lr = 1.0; weightDecay = 0.0; beta = 0.9; lowerBound = 0.0; biasCorrection = false; estimateLowerBound = false }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Momo(s.lr, s.weightDecay, s.beta, s.lowerBound, s.biasCorrection, s.estimateLowerBound)

/// MoMo-Adam, the MoMo step in Adam's norm; needs the loss in the context; see Optim.MomoAdam.
module MomoAdam =
    /// α, (β₁, β₂), ε, λ, f*, proximal (divide = true) or decoupled λ, and the online estimate of f*.
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; lowerBound: float; divide: bool; estimateLowerBound: bool }
    /// Optim.MomoAdam's defaults, the paper's: α = 1e-2, β = (0.9, 0.999), ε = 1e-8, f* = 0, proximal λ.
    let defaults = { lr = 1e-2; beta1 = 0.9; beta2 = 0.999; eps = 1e-8; weightDecay = 0.0; lowerBound = 0.0; divide = true; estimateLowerBound = false }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.MomoAdam(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.lowerBound, s.divide, s.estimateLowerBound)
