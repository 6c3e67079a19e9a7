// README:csharp-begin
using Lookahead;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>The quickstart: a model trained with an optimizer composed from primitives.</summary>
public static class Quickstart
{
    /// <summary>Fits y = 3x − 1 with Nesterov SGD composed from primitives; returns the final loss.</summary>
    public static double Run()
    {
        manual_seed(0);
        var x = randn(256, 1, dtype: float64);
        var y = 3 * x - 1 + 0.1 * randn(256, 1, dtype: float64);
        var model = nn.Linear(1, 1, dtype: float64);

        // Torch's Nesterov SGD: u = g + μ·b with b the heavy-ball buffer, then −η·u.
        var optimizer = Transforms.Chain(
            Transforms.LookaheadShift(ShiftSchedule.Constant(1, 0.9), Transforms.Trace(0.9, startAtFirstUpdate: true)),
            Transforms.Scale(-0.05));

        // The runner owns the state and flat buffers, reused every step (the pure optimizer.Update gives
        // the same trajectory, allocating fresh state each step).
        using var runner = new Runner(optimizer, model);
        double loss = double.NaN;
        for (int step = 1; step <= 200; step++)
        {
            using var scope = NewDisposeScope();
            runner.ZeroGrad();
            var l = nn.functional.mse_loss(model.forward(x), y);
            l.backward();
            runner.Step();
            loss = l.item<double>();
            if (step % 50 == 0) System.Console.WriteLine($"step {step}: loss {loss:F5}");
        }
        return loss;
    }
}
// README:csharp-end
