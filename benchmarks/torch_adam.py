#!/usr/bin/env python3
"""PyTorch's Adam step on this machine, the reference of `dotnet fsi build.fsx bench-quick`.

Measures torch.optim.Adam (default settings, lr 1e-3) on one 10,000 x 1,000 float32 parameter (10M values)
with a fixed gradient, on the CPU with 2 intra-op threads (as the quick benchmark), in steady state: 5
warm-up steps first, then the median of 11 timed steps. Prints one parsable line, e.g.

    pytorch adam-1x10M-float32 ms_per_step=123.456 threads=2 warmup=5 steps=11 torch=2.1.2

Debian: sudo apt-get install python3-torch. Exits with status 2 (and says so) when torch is not importable.
Options: --threads N (default 2), --warmup N (default 5), --steps N (default 11).
"""
import argparse
import statistics
import sys
import time

try:
    import torch
except ImportError:
    print("pytorch absent: python3-torch is not installed (sudo apt-get install python3-torch)")
    sys.exit(2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=11)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    weight = torch.nn.Parameter(torch.randn(10_000, 1_000) * 0.02)
    weight.grad = torch.randn(10_000, 1_000) * 0.01
    adam = torch.optim.Adam([weight], lr=1e-3)

    # Steady state: the moments exist and the allocator has seen the step's temporaries.
    for _ in range(args.warmup):
        adam.step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        adam.step()
        times.append((time.perf_counter() - start) * 1e3)

    print(f"pytorch adam-1x10M-float32 ms_per_step={statistics.median(times):.3f} "
          f"threads={torch.get_num_threads()} warmup={args.warmup} steps={args.steps} torch={torch.__version__}")


if __name__ == "__main__":
    main()
