module Lookahead.Tests.SeedPrimitives

open Expecto

[<Tests>]
let tests = testList "SeedPrimitives (placeholder)" []
