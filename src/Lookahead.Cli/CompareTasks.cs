using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Lookahead.Cli;

/// <summary>A built-in training task of <c>lookahead compare</c>: generated data, a model, a loss and a metric.</summary>
public abstract class CompareTask
{
    /// <summary>Short name (the --task value).</summary>
    public abstract string Name { get; }
    /// <summary>One line for --help and the table.</summary>
    public abstract string Description { get; }
    /// <summary>Default number of steps.</summary>
    public abstract int DefaultSteps { get; }
    /// <summary>A run reaches its target when its loss falls to this fraction of its first step's loss.</summary>
    public abstract double TargetFraction { get; }
    /// <summary>Which parameters Muon-type optimizers treat as hidden matrices.</summary>
    public virtual Func<ParameterInfo, bool> HiddenMatrices => p => p.Rank >= 2;
    /// <summary>A fresh model (from the seeded generator state).</summary>
    public abstract Module<Tensor, Tensor> Model();
    /// <summary>The training loss of the model (full batch).</summary>
    public abstract Tensor Loss(Module<Tensor, Tensor> model);
    /// <summary>The evaluation metric (accuracy, or R² for regression), and its name.</summary>
    public abstract (string Name, double Value) Metric(Module<Tensor, Tensor> model);
    /// <summary>Generates the data from the seed.</summary>
    public abstract void Prepare(long seed);

    /// <summary>Every task.</summary>
    public static IReadOnlyList<CompareTask> All { get; } = new CompareTask[] { new IllConditionedLogistic(), new TeacherStudent(), new ModularAddition() };
}

/// <summary>Logistic regression on features whose scales span three decades (condition number 1e6 of the Hessian).</summary>
sealed class IllConditionedLogistic : CompareTask
{
    Tensor _x = null!, _y = null!;
    public override string Name => "logistic";
    public override string Description => "logistic regression, 2000 × 20 features scaled 1 … 1e-3 (ill-conditioned)";
    public override int DefaultSteps => 300;
    public override double TargetFraction => 0.9;

    public override void Prepare(long seed)
    {
        manual_seed(seed);
        var scales = logspace(0, -3, 20, dtype: float32);
        _x = randn(2000, 20).mul_(scales).DetachFromDisposeScope();
        var w = randn(20, 1).div_(scales.unsqueeze(1)).mul_(0.5f);
        using var logits = _x.matmul(w);
        _y = bernoulli(sigmoid(logits)).DetachFromDisposeScope();
    }

    public override Module<Tensor, Tensor> Model() => Linear(20, 1);
    public override Tensor Loss(Module<Tensor, Tensor> model) => functional.binary_cross_entropy_with_logits(model.forward(_x), _y);

    public override (string, double) Metric(Module<Tensor, Tensor> model)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var predicted = model.forward(_x).gt(0).to(float32);
        return ("acc", predicted.eq(_y).to(float32).mean().item<float>());
    }
}

/// <summary>A student MLP fitting a random teacher MLP (regression).</summary>
sealed class TeacherStudent : CompareTask
{
    Tensor _x = null!, _y = null!;
    public override string Name => "mlp";
    public override string Description => "teacher–student regression, MLP 16→64→64→1 fitting a random 16→32→1 teacher";
    public override int DefaultSteps => 300;
    public override double TargetFraction => 0.1;
    public override Func<ParameterInfo, bool> HiddenMatrices => p => p.Rank >= 2 && p.Shape[0] > 1 && p.Shape[1] > 16;

    public override void Prepare(long seed)
    {
        manual_seed(seed);
        _x = randn(1024, 16).DetachFromDisposeScope();
        using var teacher = Sequential(Linear(16, 32), Tanh(), Linear(32, 1));
        using var _ = no_grad();
        using var raw = teacher.forward(_x);
        _y = raw.div(raw.std()).DetachFromDisposeScope();   // unit variance, so losses read as fractions of it
    }

    public override Module<Tensor, Tensor> Model() => Sequential(Linear(16, 64), Tanh(), Linear(64, 64), Tanh(), Linear(64, 1));
    public override Tensor Loss(Module<Tensor, Tensor> model) => functional.mse_loss(model.forward(_x), _y);

    public override (string, double) Metric(Module<Tensor, Tensor> model)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var residual = model.forward(_x).sub(_y).pow(2).mean();
        var variance = _y.var();
        return ("R²", 1 - residual.item<float>() / variance.item<float>());
    }
}

/// <summary>A one-layer transformer learning (a + b) mod p from half of the pairs ("grokking").</summary>
sealed class ModularAddition : CompareTask
{
    const int P = 23;
    Tensor _trainX = null!, _trainY = null!, _testX = null!, _testY = null!;
    public override string Name => "modadd";
    public override string Description => $"one-layer transformer on (a + b) mod {P}, trained on half of the {P * P} pairs, accuracy on the other half";
    public override int DefaultSteps => 300;
    public override double TargetFraction => 0.1;
    public override Func<ParameterInfo, bool> HiddenMatrices => p => p.Rank >= 2 && !p.Name.StartsWith("embed", StringComparison.Ordinal) && !p.Name.StartsWith("unembed", StringComparison.Ordinal);

    public override void Prepare(long seed)
    {
        manual_seed(seed);
        var a = arange(P).repeat_interleave(P);
        var b = arange(P).repeat(P);
        var eq = full(P * P, P, dtype: int64);
        var x = stack(new[] { a, b, eq }, 1);
        var y = a.add(b).remainder(P);
        var order = randperm(P * P);
        var train = order.narrow(0, 0, P * P / 2);
        var test = order.narrow(0, P * P / 2, P * P - P * P / 2);
        _trainX = x.index_select(0, train).DetachFromDisposeScope();
        _trainY = y.index_select(0, train).DetachFromDisposeScope();
        _testX = x.index_select(0, test).DetachFromDisposeScope();
        _testY = y.index_select(0, test).DetachFromDisposeScope();
    }

    public override Module<Tensor, Tensor> Model() => new TinyTransformer(P, 32);
    public override Tensor Loss(Module<Tensor, Tensor> model) => functional.cross_entropy(model.forward(_trainX), _trainY);

    public override (string, double) Metric(Module<Tensor, Tensor> model)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var predicted = model.forward(_testX).argmax(1);
        return ("test acc", predicted.eq(_testY).to(float32).mean().item<float>());
    }

    /// <summary>Token and position embeddings, one single-head attention block and one MLP block (residual), logits at the '=' position.</summary>
    sealed class TinyTransformer : Module<Tensor, Tensor>
    {
        readonly Embedding embed_tokens, embed_positions;
        readonly Linear query, key, value, mix, up, down, unembed;
        readonly int _d;

        public TinyTransformer(int p, int d) : base("tiny_transformer")
        {
            _d = d;
            embed_tokens = Embedding(p + 1, d);
            embed_positions = Embedding(3, d);
            query = Linear(d, d, hasBias: false); key = Linear(d, d, hasBias: false); value = Linear(d, d, hasBias: false); mix = Linear(d, d, hasBias: false);
            up = Linear(d, 4 * d); down = Linear(4 * d, d);
            unembed = Linear(d, p, hasBias: false);
            RegisterComponents();
        }

        public override Tensor forward(Tensor tokens)
        {
            using var scope = NewDisposeScope();
            using var positions = arange(3, device: tokens.device);
            var h = embed_tokens.forward(tokens).add(embed_positions.forward(positions));
            var scores = query.forward(h).matmul(key.forward(h).transpose(1, 2)).div(Math.Sqrt(_d));
            h = h.add(mix.forward(functional.softmax(scores, -1).matmul(value.forward(h))));
            h = h.add(down.forward(functional.relu(up.forward(h))));
            return unembed.forward(h.select(1, 2)).MoveToOuterDisposeScope();
        }
    }
}
