module Lookahead.Tests.SeedOptimizersFs

open Expecto

[<Tests>]
let tests = testList "SeedOptimizersFs (placeholder)" []
