module Lookahead.Tests.SeedEquivalences

open Expecto

[<Tests>]
let tests = testList "SeedEquivalences (placeholder)" []
