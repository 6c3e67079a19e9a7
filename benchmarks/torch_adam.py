#!/usr/bin/env python3
"""PyTorch's Adam on this machine, for comparison with `dotnet fsi build.fsx bench-quick`.

Debian: apt install python3-torch. Prints the median step time of torch.optim.Adam at 1 x 10M and
1000 x 10k float32 parameters, and a copy_ of 10M floats (the unit of the traffic ratios), so the
ratios can be set side by side with Lookahead's.
"""
import statistics
import time

try:
    import torch
except ImportError:
    raise SystemExit("python3-torch is not installed (apt install python3-torch); nothing to compare")


def median_ms(fn, warmup=3, reps=11):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def adam_step_ms(shapes):
    params = [torch.nn.Parameter(torch.randn(*s) * 0.02) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 0.01
    opt = torch.optim.Adam(params, lr=1e-3)
    return median_ms(opt.step)


a, b = torch.randn(10_000_000), torch.randn(10_000_000)
copy = median_ms(lambda: a.copy_(b), reps=21)
one = adam_step_ms([(10_000, 1_000)])
many = adam_step_ms([(100, 100)] * 1000)
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
print(f"copy_ 10M float32: {copy:.2f} ms")
print(f"torch.optim.Adam 1x10M: {one:.1f} ms = {one / (3.5 * copy):.2f} x its memory traffic")
print(f"torch.optim.Adam 1000x10k: {many:.1f} ms = {many / one:.2f} x its 1x10M time")
