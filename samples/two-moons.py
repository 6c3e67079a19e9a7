"""Writes two-moons.csv: two interleaved half-moons (label upper/lower) with Gaussian noise, a pure-noise
feature and an identifier column, seeded. Used by the README's `lookahead compare --data` example."""
import math
import random

rng = random.Random(7)
with open("two-moons.csv", "w", newline="\n") as f:
    f.write("id,x,y,noise,label\n")
    for i in range(400):
        upper = i % 2 == 0
        t = rng.uniform(0, math.pi)
        x, y = (math.cos(t), math.sin(t)) if upper else (1 - math.cos(t), 0.5 - math.sin(t))
        f.write(f"{i},{x + rng.gauss(0, 0.15):.4f},{y + rng.gauss(0, 0.15):.4f},{rng.gauss(0, 1):.4f},{'upper' if upper else 'lower'}\n")
