namespace Lookahead.FSharp

open Lookahead

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
