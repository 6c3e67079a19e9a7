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
}
