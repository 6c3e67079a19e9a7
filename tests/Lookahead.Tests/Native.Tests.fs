/// The native TorchSharp library loads and computes on this host.
module Lookahead.Tests.Native

open Expecto
open TorchSharp

[<Tests>]
let tests =
    testList "native library" [
        test "a TorchSharp op runs" {
            use _ = torch.NewDisposeScope()
            let a = torch.tensor([| 1.0; 2.0; 3.0; 4.0 |], dtype = torch.float64).reshape(2L, 2L)
            let product = a.matmul(a)
            Expect.equal (product.data<float>().ToArray()) [| 7.0; 10.0; 15.0; 22.0 |] "[[1,2],[3,4]]² = [[7,10],[15,22]]"
        }
    ]
