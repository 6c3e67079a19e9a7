using System;
using Lookahead;

/// <summary>The README's equivalence-checker example: MARS's momentum is Nesterov looking nine steps ahead.</summary>
public static class EquivalenceExample
{
    /// <summary>Checks MARS momentum (γ = 1, β = 0.9) against Nesterov's velocity form at lookahead μ = 9: decided exactly (both are linear), and by sampling.</summary>
    public static (EquivalenceReport Exact, EquivalenceReport Sampled) Run()
    {
        // README:equivalence-begin
        var mars = Transforms.Chain(Transforms.GradientCorrection(Transforms.MarsScale(1.0, 0.9)), Transforms.Ema(0.9), Transforms.Scale(-0.01));
        var nesterov = new OptimizerForm(Optim.NesterovVelocity(0.01 * (1 - 0.9), 0.9), Lookahead: 9);
        var report = Equivalence.Check(new OptimizerForm(mars), nesterov);
        Console.WriteLine(report);   // passed (exact: both linear and time-invariant from step 2; …): both forms are linear
        var sampled = Equivalence.Check(new OptimizerForm(mars), nesterov, new EquivalenceOptions { Cases = 50, Method = EquivalenceMethod.Sampled });
        Console.WriteLine(sampled);  // passed (sampled: 50 cases, max_abs=…, max_rel=…), or the first counterexample
        // README:equivalence-end
        return (report, sampled);
    }
}
