namespace Lookahead.FSharp

open System
open Lookahead

/// Conversions between F# values and the C# optional arguments of Optim.
module internal Interop =
    /// An F# pair of betas as the C# nullable value tuple.
    let betas (b1: float, b2: float) : Nullable<struct (float * float)> = Nullable(struct (b1, b2))

    /// An F# predicate as a C# delegate.
    let predicate (f: ParameterInfo -> bool) = Func<ParameterInfo, bool> f

    /// The (β₁, β₂) that Mars (betas1d), MarsM and MarsMEfficient (adamwBetas) and MuonWithAuxAdam (adamBetas)
    /// substitute in their bodies for the null they declare. A nullable tuple has no metadata default, so this is
    /// the one number the F# layer cannot read; the create-defaults tests pin it to the C# calls without arguments.
    let bodyBetas = (0.9, 0.95)

// Every `defaults` below is read from the signature of the Optim factory of the same name (Factory.Default),
// once, when the module is first used. Values appear only where C# has none to read: parameters the factory
// requires (Factory.Required, each number typed once and reused) and nulls the C# body resolves
// (Factory.ResolvedInBody, Factory.NullAsNone).

/// torch.optim.SGD semantics; see Optim.Sgd.
module Sgd =
    type Settings = { lr: float; momentum: float; dampening: float; weightDecay: float; nesterov: bool }
    /// Optim.Sgd's defaults; lr, which Optim.Sgd requires, is 1e-2 (torch's old default).
    let defaults =
        let f = Factory "Sgd"
        { lr = f.Required("lr", 1e-2); momentum = f.Default "momentum"; dampening = f.Default "dampening"
          weightDecay = f.Default "weightDecay"; nesterov = f.Default "nesterov" }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Sgd(s.lr, s.momentum, s.dampening, s.weightDecay, s.nesterov)

/// Heavy ball with torch's dampening and first-step convention; see Optim.HeavyBall.
module HeavyBall =
    type Settings = { lr: float; momentum: float; dampening: float }
    /// Optim.HeavyBall's defaults; it requires lr (Sgd.defaults.lr here) and momentum (0.9 here).
    let defaults =
        let f = Factory "HeavyBall"
        { lr = f.Required("lr", Sgd.defaults.lr); momentum = f.Required("momentum", 0.9); dampening = f.Default "dampening" }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.HeavyBall(s.lr, s.momentum, s.dampening)

/// Nesterov SGD in torch's form; see Optim.NesterovSgd.
module NesterovSgd =
    type Settings = { lr: float; momentum: float; weightDecay: float }
    /// Optim.NesterovSgd's defaults; the lr and momentum it requires are HeavyBall.defaults'.
    let defaults =
        let f = Factory "NesterovSgd"
        { lr = f.Required("lr", HeavyBall.defaults.lr); momentum = f.Required("momentum", HeavyBall.defaults.momentum)
          weightDecay = f.Default "weightDecay" }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.NesterovSgd(s.lr, s.momentum, s.weightDecay)

/// Nesterov momentum in velocity form (gradients taken at θ + β·v); see Optim.NesterovVelocity.
module NesterovVelocity =
    /// ε (learning rate) and β (momentum).
    type Settings = { lr: float; momentum: float }
    /// NesterovSgd.defaults' lr and momentum; Optim.NesterovVelocity has no defaults of its own.
    let defaults =
        let f = Factory "NesterovVelocity"
        { lr = f.Required("lr", NesterovSgd.defaults.lr); momentum = f.Required("momentum", NesterovSgd.defaults.momentum) }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.NesterovVelocity(s.lr, s.momentum)

/// Adam, AMSGrad with amsgrad = true; see Optim.Adam.
module Adam =
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; amsgrad: bool }
    /// Optim.Adam's defaults.
    let defaults =
        let f = Factory "Adam"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"
          weightDecay = f.Default "weightDecay"; amsgrad = f.Default "amsgrad" }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Adam(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.amsgrad)

/// AMSGrad, Adam with the running maximum of v in the denominator; see Optim.AmsGrad.
module AmsGrad =
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float }
    /// Optim.AmsGrad's defaults.
    let defaults =
        let f = Factory "AmsGrad"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"
          weightDecay = f.Default "weightDecay" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.AmsGrad(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay)

/// AdamW; see Optim.AdamW.
module AdamW =
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; amsgrad: bool }
    /// Optim.AdamW's defaults.
    let defaults =
        let f = Factory "AdamW"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"
          weightDecay = f.Default "weightDecay"; amsgrad = f.Default "amsgrad" }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.AdamW(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.amsgrad)

/// RAdam; see Optim.RAdam.
module RAdam =
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; decoupledWeightDecay: bool }
    /// Optim.RAdam's defaults.
    let defaults =
        let f = Factory "RAdam"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"
          weightDecay = f.Default "weightDecay"; decoupledWeightDecay = f.Default "decoupledWeightDecay" }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.RAdam(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.decoupledWeightDecay)

/// NAdam with torch ≥ 2.0 semantics (torch 1.13's with torch113); see Optim.NAdam.
module NAdam =
    type Settings =
        { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; momentumDecay: float; decoupledWeightDecay: bool
          /// Reproduce torch 1.13's single-tensor NAdam.
          torch113: bool }
    /// Optim.NAdam's defaults.
    let defaults =
        let f = Factory "NAdam"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"
          weightDecay = f.Default "weightDecay"; momentumDecay = f.Default "momentumDecay"
          decoupledWeightDecay = f.Default "decoupledWeightDecay"; torch113 = f.Default "torch113" }
    [<CompiledName("Create")>]
    let create (s: Settings) =
        Optim.NAdam(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.momentumDecay, s.decoupledWeightDecay, s.torch113)

/// RMSprop, plain or centered, with momentum; see Optim.RmsProp.
module RmsProp =
    type Settings = { lr: float; alpha: float; eps: float; weightDecay: float; momentum: float; centered: bool }
    /// Optim.RmsProp's defaults.
    let defaults =
        let f = Factory "RmsProp"
        { lr = f.Default "lr"; alpha = f.Default "alpha"; eps = f.Default "eps"; weightDecay = f.Default "weightDecay"
          momentum = f.Default "momentum"; centered = f.Default "centered" }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.RmsProp(s.lr, s.alpha, s.eps, s.weightDecay, s.momentum, s.centered)

/// Adagrad with lr decay and initial accumulator; see Optim.Adagrad.
module Adagrad =
    type Settings = { lr: float; lrDecay: float; weightDecay: float; initialAccumulatorValue: float; eps: float }
    /// Optim.Adagrad's defaults.
    let defaults =
        let f = Factory "Adagrad"
        { lr = f.Default "lr"; lrDecay = f.Default "lrDecay"; weightDecay = f.Default "weightDecay"
          initialAccumulatorValue = f.Default "initialAccumulatorValue"; eps = f.Default "eps" }
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Adagrad(s.lr, s.lrDecay, s.weightDecay, s.initialAccumulatorValue, s.eps)

/// Lion, the sign of an interpolated momentum; see Optim.Lion.
module Lion =
    /// η, β₁ (the interpolation, ≤ β₂), β₂ (the momentum) and a decoupled λ.
    type Settings = { lr: float; beta1: float; beta2: float; weightDecay: float }
    /// Optim.Lion's defaults, the paper's.
    let defaults =
        let f = Factory "Lion"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; weightDecay = f.Default "weightDecay" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Lion(s.lr, s.beta1, s.beta2, s.weightDecay)

/// Generalised Nesterov momentum in shifted coordinates, lookahead μ; see Optim.GeneralisedNesterov.
module GeneralisedNesterov =
    /// ε (learning rate), β (momentum) and μ (lookahead).
    type Settings = { lr: float; momentum: float; lookahead: float }
    /// NesterovSgd.defaults' lr and momentum, and μ = β (Sutskever's Nesterov); Optim.GeneralisedNesterov has no defaults of its own.
    let defaults =
        let f = Factory "GeneralisedNesterov"
        let momentum = f.Required("momentum", NesterovSgd.defaults.momentum)
        { lr = f.Required("lr", NesterovSgd.defaults.lr); momentum = momentum; lookahead = f.Required("lookahead", momentum) }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.GeneralisedNesterov(s.lr, s.momentum, s.lookahead)

/// Nesterov momentum (lookahead μ = β) in shifted coordinates; see Optim.Nesterov.
module Nesterov =
    /// ε (learning rate) and β (momentum).
    type Settings = { lr: float; momentum: float }
    /// NesterovSgd.defaults' lr and momentum; Optim.Nesterov has no defaults of its own.
    let defaults =
        let f = Factory "Nesterov"
        { lr = f.Required("lr", NesterovSgd.defaults.lr); momentum = f.Required("momentum", NesterovSgd.defaults.momentum) }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Nesterov(s.lr, s.momentum)

/// Quasi-hyperbolic momentum; see Optim.Qhm.
module Qhm =
    /// α, β, ν, λ and how λ enters (coupled to the gradient or applied directly to θ).
    type Settings = { lr: float; momentum: float; nu: float; weightDecay: float; weightDecayType: QhmWeightDecay }
    /// Optim.Qhm's defaults for λ and its type; it requires α, β and ν: Ma and Yarats' β = 0.999, ν = 0.7, with α = 1 as qhoptim's example.
    let defaults =
        let f = Factory "Qhm"
        { lr = f.Required("lr", 1.0); momentum = f.Required("momentum", 0.999); nu = f.Required("nu", 0.7)
          weightDecay = f.Default "weightDecay"; weightDecayType = f.Default "weightDecayType" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Qhm(s.lr, s.momentum, s.nu, s.weightDecay, s.weightDecayType)

/// QHAdam (QHAdamW with decoupledWeightDecay); see Optim.QhAdam.
module QhAdam =
    /// α, (β₁, β₂), (ν₁, ν₂), ε, λ and whether λ is decoupled.
    type Settings = { lr: float; beta1: float; beta2: float; nu1: float; nu2: float; eps: float; weightDecay: float; decoupledWeightDecay: bool }
    /// Optim.QhAdam's defaults (Adam's, ν₁ = ν₂ = 1).
    let defaults =
        let f = Factory "QhAdam"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; nu1 = f.Default "nu1"; nu2 = f.Default "nu2"
          eps = f.Default "eps"; weightDecay = f.Default "weightDecay"; decoupledWeightDecay = f.Default "decoupledWeightDecay" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.QhAdam(s.lr, s.beta1, s.beta2, s.nu1, s.nu2, s.eps, s.weightDecay, s.decoupledWeightDecay)

/// Remote stochastic gradient (the fast form); see Optim.Rsg.
module Rsg =
    /// α, β, the observation factor μ and a coupled λ.
    type Settings = { lr: float; momentum: float; mu: float; weightDecay: float }
    /// Optim.Rsg's defaults; the α it requires is Sgd.defaults.lr.
    let defaults =
        let f = Factory "Rsg"
        { lr = f.Required("lr", Sgd.defaults.lr); momentum = f.Default "momentum"; mu = f.Default "mu"; weightDecay = f.Default "weightDecay" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Rsg(s.lr, s.momentum, s.mu, s.weightDecay)

/// Adaptive remote stochastic gradient; see Optim.Arsg.
module Arsg =
    /// α, (β₁, β₂), ε (a floor in the AMSGrad mode), coupled λ, μ and the preconditioner's mode.
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; mu: float; amsgrad: bool }
    /// Optim.Arsg's defaults, the paper's.
    let defaults =
        let f = Factory "Arsg"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"
          weightDecay = f.Default "weightDecay"; mu = f.Default "mu"; amsgrad = f.Default "amsgrad" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Arsg(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.mu, s.amsgrad)

/// ARSG with the observation boost (μ doubles and the step shrinks when the loss flattens); needs the loss in the context; see Optim.ArsgObsb.
module ArsgObsb =
    /// Arsg's settings with the starting μ₀, the step divisor per boost (None: from the analysis, so that the
    /// fastest curvature argmin over τ of r_g is kept) and the boost policy.
    type Settings =
        { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; initialMu: float; stepDivisor: float option
          /// When the loss counts as flat; None for Optim.ArsgObsb's own (a default BoostPolicy).
          policy: BoostPolicy option
          amsgrad: bool }
    /// Optim.ArsgObsb's defaults.
    let defaults =
        let f = Factory "ArsgObsb"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"
          weightDecay = f.Default "weightDecay"; initialMu = f.Default "initialMu"; stepDivisor = f.NullableAsNone "stepDivisor"
          policy = f.NullAsNone "policy"; amsgrad = f.Default "amsgrad" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) =
        Optim.ArsgObsb(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.initialMu, Option.toNullable s.stepDivisor, Option.toObj s.policy, s.amsgrad)

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
          /// The update rule (the official mars_type; C#'s `type`).
          marsType: MarsType
          optimize1d: bool
          lr1d: float
          betas1d: float * float
          weightDecay1d: float
          clip: bool }
    /// Optim.Mars's defaults, those of the official code.
    let defaults =
        let f = Factory "Mars"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"
          weightDecay = f.Default "weightDecay"; amsgrad = f.Default "amsgrad"; gamma = f.Default "gamma"; exact = f.Default "exact"
          marsType = f.Default "type"; optimize1d = f.Default "optimize1d"; lr1d = f.Default "lr1d"
          betas1d = f.ResolvedInBody("betas1d", Interop.bodyBetas); weightDecay1d = f.Default "weightDecay1d"; clip = f.Default "clip" }
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
    /// Optim.MarsM's defaults, the official code's (hidden matrices take the matrix branch).
    let defaults =
        let f = Factory "MarsM"
        { lr = f.Default "lr"; weightDecay = f.Default "weightDecay"; momentum = f.Default "momentum"; nsSteps = f.Default "nsSteps"
          adamwBetas = f.ResolvedInBody("adamwBetas", Interop.bodyBetas); adamwEps = f.Default "adamwEps"; gamma = f.Default "gamma"
          clip = f.Default "clip"; exact = f.Default "exact"
          isMatrixParameter = f.ResolvedInBody("isMatrixParameter", Param.hiddenMatrices); bf16 = f.Default "bf16" }
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
    /// Optim.MarsMEfficient's defaults.
    let defaults =
        let f = Factory "MarsMEfficient"
        { lr = f.Default "lr"; weightDecay = f.Default "weightDecay"; momentum = f.Default "momentum"; nsSteps = f.Default "nsSteps"
          adamwBetas = f.ResolvedInBody("adamwBetas", Interop.bodyBetas); adamwEps = f.Default "adamwEps"; gamma = f.Default "gamma"
          isMatrixParameter = f.ResolvedInBody("isMatrixParameter", Param.hiddenMatrices); bf16 = f.Default "bf16" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) =
        Optim.MarsMEfficient(s.lr, s.weightDecay, s.momentum, s.nsSteps, Interop.betas s.adamwBetas, s.adamwEps, s.gamma,
                             Interop.predicate s.isMatrixParameter, s.bf16)

/// Muon: orthogonalised momentum; every parameter must be a matrix (see MuonWithAuxAdam for whole models); see Optim.Muon.
module Muon =
    /// η, λ, β, Nesterov or plain momentum, Newton–Schulz steps, the shape scaling and bfloat16 iteration.
    type Settings = { lr: float; weightDecay: float; momentum: float; nesterov: bool; nsSteps: int; scaling: ShapeScaling; bf16: bool }
    /// Optim.Muon's defaults, Keller Jordan's.
    let defaults =
        let f = Factory "Muon"
        { lr = f.Default "lr"; weightDecay = f.Default "weightDecay"; momentum = f.Default "momentum"; nesterov = f.Default "nesterov"
          nsSteps = f.Default "nsSteps"; scaling = f.Default "scaling"; bf16 = f.Default "bf16" }
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
    /// Optim.MuonWithAuxAdam's defaults: Muon.defaults, the auxiliary Adam's, hidden matrices to Muon.
    let defaults =
        let f = Factory "MuonWithAuxAdam"
        { muon = f.ResolvedInBody("muon", Muon.defaults); adamLr = f.Default "adamLr"
          adamBetas = f.ResolvedInBody("adamBetas", Interop.bodyBetas); adamEps = f.Default "adamEps"
          adamWeightDecay = f.Default "adamWeightDecay"; isMuonParameter = f.ResolvedInBody("isMuonParameter", Param.hiddenMatrices) }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) =
        Optim.MuonWithAuxAdam(Muon.create s.muon, s.adamLr, Interop.betas s.adamBetas, s.adamEps, s.adamWeightDecay, Interop.predicate s.isMuonParameter)

/// The stochastic Polyak step (a negative gap steps uphill); needs the loss in the context; see Optim.Sps.
module Sps =
    /// The largest step α, the lower bound f* and the ε added to ‖g‖².
    type Settings = { maxLr: float; lowerBound: float; eps: float }
    /// Optim.Sps's defaults.
    let defaults =
        let f = Factory "Sps"
        { maxLr = f.Default "maxLr"; lowerBound = f.Default "lowerBound"; eps = f.Default "eps" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Sps(s.maxLr, s.lowerBound, s.eps)

/// SPS+, the stochastic Polyak step with the gap truncated at zero; needs the loss in the context; see Optim.SpsPlus.
module SpsPlus =
    /// The largest step α, the lower bound f* and the ε added to ‖g‖².
    type Settings = { maxLr: float; lowerBound: float; eps: float }
    /// Optim.SpsPlus's defaults.
    let defaults =
        let f = Factory "SpsPlus"
        { maxLr = f.Default "maxLr"; lowerBound = f.Default "lowerBound"; eps = f.Default "eps" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.SpsPlus(s.maxLr, s.lowerBound, s.eps)

/// MoMo, momentum with a Polyak-type adaptive step; needs the loss in the context; see Optim.Momo.
module Momo =
    /// α, λ (proximal), β, f*, zero-started averages, and the online estimate of f*.
    type Settings = { lr: float; weightDecay: float; beta: float; lowerBound: float; biasCorrection: bool; estimateLowerBound: bool }
    /// Optim.Momo's defaults, the paper's.
    let defaults =
        let f = Factory "Momo"
        { lr = f.Default "lr"; weightDecay = f.Default "weightDecay"; beta = f.Default "beta"; lowerBound = f.Default "lowerBound"
          biasCorrection = f.Default "biasCorrection"; estimateLowerBound = f.Default "estimateLowerBound" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Momo(s.lr, s.weightDecay, s.beta, s.lowerBound, s.biasCorrection, s.estimateLowerBound)

/// MoMo-Adam, the MoMo step in Adam's norm; needs the loss in the context; see Optim.MomoAdam.
module MomoAdam =
    /// α, (β₁, β₂), ε, λ, f*, proximal (divide = true) or decoupled λ, and the online estimate of f*.
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; lowerBound: float; divide: bool; estimateLowerBound: bool }
    /// Optim.MomoAdam's defaults, the paper's.
    let defaults =
        let f = Factory "MomoAdam"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"
          weightDecay = f.Default "weightDecay"; lowerBound = f.Default "lowerBound"; divide = f.Default "divide"
          estimateLowerBound = f.Default "estimateLowerBound" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.MomoAdam(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.lowerBound, s.divide, s.estimateLowerBound)

/// ADOPT: normalise by the previous second moment, clip, then momentum; see Optim.Adopt.
module Adopt =
    /// η, β₁, β₂, ε (a floor), λ, decoupled or coupled decay, and the clip exponent p of (t − 1)^p (None: no clip).
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; decouple: bool; clipExponent: float option }
    /// Optim.Adopt's defaults, the official code's.
    let defaults =
        let f = Factory "Adopt"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"; weightDecay = f.Default "weightDecay"
          decouple = f.Default "decouple"; clipExponent = f.Optional "clipExponent" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Adopt(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.decouple, Option.toNullable s.clipExponent)

/// AdEMAMix: Adam's denominator over a fast and a slow EMA; see Optim.AdEMAMix.
module AdEMAMix =
    /// η, β₁ (fast), β₂, β₃ (slow), α, the warm-ups of β₃ and α (None: none), ε and a decoupled λ.
    type Settings =
        { lr: float; beta1: float; beta2: float; beta3: float; alpha: float; beta3Warmup: int option; alphaWarmup: int option; eps: float; weightDecay: float }
    /// Optim.AdEMAMix's defaults, the official code's.
    let defaults =
        let f = Factory "AdEMAMix"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; beta3 = f.Default "beta3"; alpha = f.Default "alpha"
          beta3Warmup = f.Optional "beta3Warmup"; alphaWarmup = f.Optional "alphaWarmup"; eps = f.Default "eps"; weightDecay = f.Default "weightDecay" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) =
        Optim.AdEMAMix(s.lr, s.beta1, s.beta2, s.beta3, s.alpha, Option.toNullable s.beta3Warmup, Option.toNullable s.alphaWarmup, s.eps, s.weightDecay)

/// C-AdamW: AdamW with cautious masking; see Optim.CautiousAdamW.
module CautiousAdamW =
    /// AdamW's settings, the bias correction, and where ε goes.
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; correctBias: bool; epsilonPlacement: EpsilonPlacement }
    /// Optim.CautiousAdamW's defaults (C-Optim's per-parameter path).
    let defaults =
        let f = Factory "CautiousAdamW"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"; weightDecay = f.Default "weightDecay"
          correctBias = f.Default "correctBias"; epsilonPlacement = f.Default "epsilonPlacement" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.CautiousAdamW(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.correctBias, s.epsilonPlacement)

/// C-Lion: Lion with cautious masking; see Optim.CautiousLion.
module CautiousLion =
    /// Lion's settings.
    type Settings = { lr: float; beta1: float; beta2: float; weightDecay: float }
    /// Optim.CautiousLion's defaults (C-Optim's).
    let defaults =
        let f = Factory "CautiousLion"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; weightDecay = f.Default "weightDecay" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.CautiousLion(s.lr, s.beta1, s.beta2, s.weightDecay)

/// Schedule-Free SGD; evaluate at ScheduleFree.EvaluationParameters; see Optim.ScheduleFreeSgd.
module ScheduleFreeSgd =
    /// The base learning rate, β, a coupled λ at y, warm-up steps, and the averaging weight's powers r and p.
    type Settings = { lr: float; momentum: float; weightDecay: float; warmupSteps: int; r: float; weightLrPower: float }
    /// Optim.ScheduleFreeSgd's defaults, the official code's.
    let defaults =
        let f = Factory "ScheduleFreeSgd"
        { lr = f.Default "lr"; momentum = f.Default "momentum"; weightDecay = f.Default "weightDecay"; warmupSteps = f.Default "warmupSteps"
          r = f.Default "r"; weightLrPower = f.Default "weightLrPower" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.ScheduleFreeSgd(s.lr, s.momentum, s.weightDecay, s.warmupSteps, s.r, s.weightLrPower)

/// Schedule-Free AdamW; see Optim.ScheduleFreeAdamW.
module ScheduleFreeAdamW =
    /// The base learning rate, β₁ (the interpolation), β₂, ε, λ, warm-up steps, the averaging weight's powers and an inner momentum.
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; warmupSteps: int; r: float; weightLrPower: float; innerMomentum: float }
    /// Optim.ScheduleFreeAdamW's defaults, the official code's.
    let defaults =
        let f = Factory "ScheduleFreeAdamW"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"; weightDecay = f.Default "weightDecay"
          warmupSteps = f.Default "warmupSteps"; r = f.Default "r"; weightLrPower = f.Default "weightLrPower"; innerMomentum = f.Default "innerMomentum" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.ScheduleFreeAdamW(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.warmupSteps, s.r, s.weightLrPower, s.innerMomentum)

/// Prodigy: Adam with a D-adapted step size; see Optim.Prodigy.
module Prodigy =
    /// The multiplier of d, β₁, β₂, β₃ (None: √β₂), ε, λ and its coupling, bias correction, the safeguard, d₀, d's coefficient and growth cap, and the slice.
    type Settings =
        { lr: float; beta1: float; beta2: float; beta3: float option; eps: float; weightDecay: float; decouple: bool; useBiasCorrection: bool
          safeguardWarmup: bool; d0: float; dCoef: float; growthRate: float; slice: int }
    /// Optim.Prodigy's defaults, the official code's.
    let defaults =
        let f = Factory "Prodigy"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; beta3 = f.Optional "beta3"; eps = f.Default "eps"
          weightDecay = f.Default "weightDecay"; decouple = f.Default "decouple"; useBiasCorrection = f.Default "useBiasCorrection"
          safeguardWarmup = f.Default "safeguardWarmup"; d0 = f.Default "d0"; dCoef = f.Default "dCoef"; growthRate = f.Default "growthRate"; slice = f.Default "slice" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) =
        Optim.Prodigy(s.lr, s.beta1, s.beta2, Option.toNullable s.beta3, s.eps, s.weightDecay, s.decouple, s.useBiasCorrection, s.safeguardWarmup, s.d0, s.dCoef, s.growthRate, s.slice)

/// SGD-HD and SGDN-HD: SGD whose learning rate moves by hypergradient descent (one dot over all parameters); see Optim.SgdHD.
module SgdHD =
    /// The initial rate α₀, μ, dampening, λ (coupled), Nesterov's direction and the hypergradient rate β.
    type Settings = { lr: float; momentum: float; dampening: float; weightDecay: float; nesterov: bool; hypergradientLr: float }
    /// Optim.SgdHD's defaults (the official code's); lr, which it requires, is 1e-2 here.
    let defaults =
        let f = Factory "SgdHD"
        { lr = f.Required("lr", 1e-2); momentum = f.Default "momentum"; dampening = f.Default "dampening"; weightDecay = f.Default "weightDecay"
          nesterov = f.Default "nesterov"; hypergradientLr = f.Default "hypergradientLr" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.SgdHD(s.lr, s.momentum, s.dampening, s.weightDecay, s.nesterov, s.hypergradientLr)

/// Adam-HD: Adam whose learning rate moves by hypergradient descent, once per parameter; see Optim.AdamHD.
module AdamHD =
    /// The initial rate α₀, β₁, β₂, ε (on the uncorrected root), λ (coupled) and the hypergradient rate β.
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; hypergradientLr: float }
    /// Optim.AdamHD's defaults, the official code's.
    let defaults =
        let f = Factory "AdamHD"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"; weightDecay = f.Default "weightDecay"
          hypergradientLr = f.Default "hypergradientLr" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.AdamHD(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.hypergradientLr)

/// SOAP: Adam in the eigenbasis of Shampoo's factors; see Optim.Soap.
module Soap =
    /// η, β₁, β₂, the factors' decay (None: β₂), ε, λ (after the update), the refresh period, the largest factored
    /// dimension, factors for 1-D parameters, update normalisation, bias correction and the official float32 basis numerics.
    type Settings =
        { lr: float; beta1: float; beta2: float; shampooBeta: float option; eps: float; weightDecay: float; preconditionFrequency: int
          maxPreconditionDimension: int; precondition1D: bool; normalizeGrads: bool; correctBias: bool; float32Basis: bool }
    /// Optim.Soap's defaults, the official code's.
    let defaults =
        let f = Factory "Soap"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; shampooBeta = f.Optional "shampooBeta"; eps = f.Default "eps"
          weightDecay = f.Default "weightDecay"; preconditionFrequency = f.Default "preconditionFrequency"; maxPreconditionDimension = f.Default "maxPreconditionDimension"
          precondition1D = f.Default "precondition1D"; normalizeGrads = f.Default "normalizeGrads"; correctBias = f.Default "correctBias"; float32Basis = f.Default "float32Basis" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) =
        Optim.Soap(s.lr, s.beta1, s.beta2, Option.toNullable s.shampooBeta, s.eps, s.weightDecay, s.preconditionFrequency, s.maxPreconditionDimension,
                   s.precondition1D, s.normalizeGrads, s.correctBias, s.float32Basis)

/// LAMB: AdamW's direction under the layer-wise trust ratio; see Optim.Lamb.
module Lamb =
    /// η, β₁, β₂, ε, λ and the cap of the trust ratio.
    type Settings = { lr: float; beta1: float; beta2: float; eps: float; weightDecay: float; maxRatio: float }
    /// Optim.Lamb's defaults, the paper's.
    let defaults =
        let f = Factory "Lamb"
        { lr = f.Default "lr"; beta1 = f.Default "beta1"; beta2 = f.Default "beta2"; eps = f.Default "eps"; weightDecay = f.Default "weightDecay"; maxRatio = f.Default "maxRatio" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Lamb(s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.maxRatio)

/// LARS: SGD momentum with the layer-wise trust ratio; see Optim.Lars.
module Lars =
    /// η, λ, the trust coefficient, ε and the momentum.
    type Settings = { lr: float; weightDecay: float; trustCoefficient: float; eps: float; momentum: float }
    /// Optim.Lars's defaults (Optax's).
    let defaults =
        let f = Factory "Lars"
        { lr = f.Default "lr"; weightDecay = f.Default "weightDecay"; trustCoefficient = f.Default "trustCoefficient"; eps = f.Default "eps"; momentum = f.Default "momentum" }
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) = Optim.Lars(s.lr, s.weightDecay, s.trustCoefficient, s.eps, s.momentum)

/// Adafactor: factored second moment, update clipping, relative step; see Optim.Adafactor.
module Adafactor =
    /// ρ(t) (None: the relative step min(10⁻², 1/√t)), c of β̂₂ₜ = 1 − t^(−c), ε₁, ε₂, the clip threshold d (None: no
    /// clipping), the parameter scale, factoring and its minimum dimension, β₁ (None: no momentum), λ and how it is scaled.
    type Settings =
        { learningRate: (int64 -> float) option; decayExponent: float; eps1: float; eps2: float; clipThreshold: float option
          multiplyByParameterScale: bool; factored: bool; minDimSizeToFactor: int; beta1: float option
          weightDecay: float; weightDecayScaling: AdafactorWeightDecay }
    /// Optim.Adafactor's defaults, the paper's (and HF's).
    let defaults =
        let f = Factory "Adafactor"
        { learningRate = f.NullAsNone<Func<int64, float>> "learningRate" |> Option.map (fun g -> g.Invoke); decayExponent = f.Default "decayExponent"
          eps1 = f.Default "eps1"; eps2 = f.Default "eps2"; clipThreshold = f.Optional "clipThreshold"
          multiplyByParameterScale = f.Default "multiplyByParameterScale"; factored = f.Default "factored"; minDimSizeToFactor = f.Default "minDimSizeToFactor"
          beta1 = f.NullableAsNone "beta1"; weightDecay = f.Default "weightDecay"; weightDecayScaling = f.Default "weightDecayScaling" }
    /// The relative step ρ(t) = min(10⁻², 1/√t), or min(10⁻⁶·t, 1/√t) with warm-up initialisation.
    let relativeStep (warmupInit: bool) : int64 -> float = AdafactorSchedule.RelativeStep(warmupInit).Invoke
    /// The transform for these settings.
    [<CompiledName("Create")>]
    let create (s: Settings) =
        Optim.Adafactor(s.learningRate |> Option.map (fun g -> Func<int64, float> g) |> Option.toObj, s.decayExponent, s.eps1, s.eps2, Option.toNullable s.clipThreshold,
                        s.multiplyByParameterScale, s.factored, s.minDimSizeToFactor, Option.toNullable s.beta1, s.weightDecay, s.weightDecayScaling)
