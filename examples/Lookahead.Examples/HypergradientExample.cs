using System;
using Lookahead;
using TorchSharp;

/// <summary>The README's hypergradient-descent example: SGD-HD raises a learning rate that starts far too small.</summary>
public static class HypergradientExample
{
    /// <summary>
    /// Least squares (256 × 8, a random planted solution) from w = 0 for 200 steps, with SGD-HD (momentum 0.9) and with
    /// plain SGD at SGD-HD's starting rate; returns SGD-HD's final rate, its final loss and plain SGD's.
    /// </summary>
    public static (double Rate, double Loss, double PlainLoss) Run()
    {
        // README:hypergradient-begin
        torch.manual_seed(0);
        var x = torch.randn(256, 8, dtype: torch.float64);
        var y = x.matmul(torch.randn(8, 1, dtype: torch.float64));
        (double Loss, double Rate) Fit(IGradientTransformation optimizer)
        {
            var parameters = TensorTree.Of(("w", torch.zeros(8, 1, dtype: torch.float64)));
            using var runner = new Runner(optimizer, parameters);
            for (int step = 0; step < 200; step++)
            {
                using var scope = torch.NewDisposeScope();
                var residual = x.matmul(parameters["w"]) - y;           // the gradient of ½‖Xw − y‖²/n is Xᵀr/n
                runner.Step(TensorTree.Of(("w", x.t().matmul(residual) / 256)), StepContext.Empty);
            }
            using var r = x.matmul(parameters["w"]) - y;
            var rates = Hypergradient.LearningRates(runner.State);
            return (0.5 * r.pow(2).mean().item<double>(), rates.Count == 1 ? Hypergradient.LearningRate(runner.State) : double.NaN);
        }
        var (loss, rate) = Fit(Optim.SgdHD(lr: 1e-3, momentum: 0.9, hypergradientLr: 1e-3));
        var (plainLoss, _) = Fit(Optim.Sgd(1e-3, momentum: 0.9));
        Console.WriteLine($"SGD-HD: rate 1e-3 → {rate:G3}, loss {loss:G3}; SGD at 1e-3: loss {plainLoss:G3}");
        // README:hypergradient-end
        return (rate, loss, plainLoss);
    }
}
