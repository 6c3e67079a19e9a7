using System;
using System.Linq;
using Lookahead;
using TorchSharp;

/// <summary>The README's differentiable-optimizer example: which training examples hurt, by a gradient through training.</summary>
public static class DifferentiableExample
{
    /// <summary>
    /// Least squares on 64 examples, 6 of them with corrupted labels. Each example's loss is weighted (weights = 1, the
    /// data tensor that requires grad); 100 steps of Adam are unrolled, and the gradient of the clean validation loss at
    /// the end with respect to the weights says which examples hurt (a positive derivative: up-weighting it raises the
    /// validation loss). Returns the corrupted indices and the 6 indices with the largest derivatives.
    /// </summary>
    public static (int[] Corrupted, int[] Flagged) Run()
    {
        // README:differentiable-begin
        torch.manual_seed(5);
        var x = torch.randn(64, 5, dtype: torch.float64);
        var truth = torch.randn(5, 1, dtype: torch.float64);
        var y = x.matmul(truth);
        int[] corrupted = { 3, 17, 25, 40, 51, 60 };
        foreach (var i in corrupted) y[i] = y[i] + (i % 2 == 0 ? 5.0 : -5.0);   // wrong labels
        var xVal = torch.randn(32, 5, dtype: torch.float64);
        var yVal = xVal.matmul(truth);

        var weights = torch.ones(64, 1, dtype: torch.float64).requires_grad_(true);
        var initial = TensorTree.Of(("w", torch.zeros(5, 1, dtype: torch.float64)));
        using var run = Differentiable.Unroll(Optim.Adam(0.1), initial,
            (theta, step) => (weights * (x.matmul(theta["w"]) - y).square()).mean(), steps: 100);
        var validation = (xVal.matmul(run.Parameters["w"]) - yVal).square().mean();
        validation.backward();                                              // through all 100 Adam steps
        var flagged = weights.grad!.flatten().argsort(descending: true).data<long>().Take(6).Select(i => (int)i).OrderBy(i => i).ToArray();
        Console.WriteLine($"corrupted: [{string.Join(", ", corrupted)}]; largest ∂L_val/∂weight: [{string.Join(", ", flagged)}]");
        // README:differentiable-end
        return (corrupted, flagged);
    }

    /// <summary>
    /// Learns Adam's learning rate (on a log scale) and β₁ by gradient descent through 30 unrolled steps of least
    /// squares: the gradient of the final training loss with respect to both, 40 outer steps of Lookahead's Adam. Returns the starting and
    /// final (lr, β₁, loss after 30 steps).
    /// </summary>
    public static ((double Lr, double Beta1, double Loss) Start, (double Lr, double Beta1, double Loss) End) LearnRate()
    {
        // README:hyperparameter-gradient-begin
        torch.manual_seed(2);
        var x = torch.randn(128, 10, dtype: torch.float64);
        var y = x.matmul(torch.randn(10, 1, dtype: torch.float64));
        var logLr = torch.tensor(Math.Log(1e-3), dtype: torch.float64).requires_grad_(true);
        var beta1 = torch.tensor(0.5, dtype: torch.float64).requires_grad_(true);
        // The hyperparameters are trained by Lookahead's own Adam, through the runner (in place).
        using var outer = new Runner(Optim.Adam(0.1), TensorTree.Of(("log_lr", logLr), ("beta1", beta1)));
        double LossAfter30(bool learn)
        {
            using var scope = torch.NewDisposeScope();
            var adam = Optim.Adam(Hyper.Of(logLr.exp()), Hyper.Of(beta1), 0.999, 1e-8, 0, amsgrad: false);
            var start = TensorTree.Of(("w", torch.zeros(10, 1, dtype: torch.float64)));
            using var run = Differentiable.Unroll(adam, start, (theta, step) => (x.matmul(theta["w"]) - y).square().mean(), steps: 30);
            var final = (x.matmul(run.Parameters["w"]) - y).square().mean();
            if (learn)
            {
                final.backward();                                   // ∂loss/∂log lr and ∂loss/∂β₁ through the 30 steps
                outer.Step(TensorTree.Of(("log_lr", logLr.grad!), ("beta1", beta1.grad!)), StepContext.Empty);
                using (torch.no_grad()) beta1.clamp_(0.0, 0.99);
                logLr.grad!.zero_();
                beta1.grad!.zero_();
            }
            return final.item<double>();
        }
        var before = (Math.Exp(logLr.item<double>()), beta1.item<double>(), LossAfter30(learn: false));
        for (int step = 0; step < 40; step++) LossAfter30(learn: true);
        var after = (Math.Exp(logLr.item<double>()), beta1.item<double>(), LossAfter30(learn: false));
        Console.WriteLine($"lr {before.Item1:G3} → {after.Item1:G3}, β₁ {before.Item2:G3} → {after.Item2:G3}: loss after 30 steps {before.Item3:G3} → {after.Item3:G3}");
        // README:hyperparameter-gradient-end
        return (before, after);
    }
}
