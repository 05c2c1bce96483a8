"""Speed ratios of the training step, the sampler and prompt mixing, measured side by side.

    python bench.py                      # the shipped tiny-flux default, 2 threads
    python bench.py --size=512 --repeats=3

Prints a table. Ratios, not seconds, are the targets (these machines are noisy):
  train step / one backbone forward at the same batch and size   (floor ~2, target <= 2.5)
  restore time / (backbone calls x one call)                       (target <= 1.15)
  mixing k prompts / one prompt, batched call                      (k = 2, 3)
and the wall time of restoring a 512x512 photo end to end (target <= 20 s on 2 cores).
"""
import statistics
import sys
import time

import torch

import backbones
import bridge
import data
import sample
import train
from cli import parse

backbone = ""
size = 128        # training and sampling size for the ratios (px)
batch = 4
repeats = 5
threads = 2
photo_size = 512


def timed(fn, n):
    fn()  # warm-up
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main():
    torch.set_num_threads(threads)
    bb = backbones.load(backbone or None, device="cpu")
    g = torch.Generator().manual_seed(0)
    pairs = data.make_pairs("photos", "haze", 8, size, 1, g, bb.video)
    zd, zc = train.encode_pairs(bb, pairs, "encode")
    p = bb.new_prompt(task="haze")
    with torch.no_grad():
        p.gates.fill_(0.1)
    rows = []

    # 1. training step vs one forward, same batch and size
    train.batch = batch
    x, s = zd[:batch], torch.full((batch,), 0.3)
    fwd = timed(lambda: bb.velocity(x, s, [p]), repeats)
    with torch.no_grad():
        fwd_nograd = timed(lambda: bb.velocity(x, s, [p]), repeats)
    opt = torch.optim.AdamW(p.parameters(), lr=5e-4)
    step = timed(lambda: train.train_step(bb, p, opt, zd, zc, g), repeats)
    rows.append(("train step / forward (no grad)", step, fwd_nograd, step / fwd_nograd, "<= 2.5"))

    # 2. sampling vs its backbone calls (one image of `size` px, one prompt, whole)
    img = pairs[0][0]
    sample.seed = 0
    calls = bridge.STEPS
    with torch.no_grad():
        one = timed(lambda: bb.velocity(zd[:1], torch.full((1,), 0.3), [p]), repeats)
    full = timed(lambda: sample.restore(bb, img, [p], "ebr", bridge.T0), max(1, repeats // 2))
    rows.append((f"restore {size}px / ({calls} calls x one call)", full, calls * one, full / (calls * one), "<= 1.15"))

    # 3. mixing k prompts, one batched call per step
    ps = [p] + [bb.new_prompt(task=f"t{i}") for i in range(2)]
    with torch.no_grad():
        k1 = timed(lambda: bb.velocity(zd[:1], torch.full((1,), 0.3), ps[:1]), repeats)
        for k in (2, 3):
            kt = timed(lambda: bb.velocity(zd[:1], torch.full((1,), 0.3), ps[:k]), repeats)
            rows.append((f"mix {k} prompts / 1 prompt (one call)", kt, k1, kt / k1, f"~{k} or less"))

    # 4. a 512x512 photo end to end (VAE in and out, 20 steps, tiles if the backbone tiles)
    big = data.resize(data.photo("astronaut"), photo_size, photo_size)
    t = time.perf_counter()
    sample.restore(bb, big, [p], "ebr", bridge.T0)
    wall = time.perf_counter() - t
    rows.append((f"restore a {photo_size}x{photo_size} photo (s)", wall, 20.0, wall / 20.0, "<= 1 (20 s)"))

    print(f"\nbench: {bb.name}, CPU, {threads} threads, batch {batch}, {size} px, median of {repeats}")
    print(f"{'measure':<40} {'time (s)':>9} {'reference':>10} {'ratio':>7}  target")
    for name, a, b, r, tgt in rows:
        print(f"{name:<40} {a:9.3f} {b:10.3f} {r:7.2f}  {tgt}")


if __name__ == "__main__":
    parse(globals(), sys.argv[1:])
    main()
