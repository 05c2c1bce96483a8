"""Speed of training and restoring, measured side by side; prints a table of ratios.

    python bench.py                      # the shipped tiny-flux default on the CPU, 2 threads
    python bench.py --arch=flux          # the real FLUX.1-dev architecture on this GPU, random weights
    python bench.py --arch=wan           # the real Wan 2.1 T2V 1.3B architecture; tiny-flux|tiny-wan anywhere

Ratios, not seconds, are the targets (these machines are noisy): a train step over one forward
(<= 2.5), a restore over its backbone calls (<= 1.15), mixing k prompts over one; and the wall
time of a 512 px photo (<= 20 s on 2 cores); and `python sample.py photo.png --tasks=haze` on a
1500 x 1000 photo as a process of its own: its wall time, peak memory and seconds per megapixel. --arch builds the architecture from its config with
random weights on the GPU (nothing downloaded) and adds peak GPU memory: forward and train step
with and without gradient checkpointing, restore end to end and the sampler alone, the VAE in
fp32 and bf16, tiles or windows, mixing. Without a GPU --arch=flux|wan says so and exits 2.
--arch=... --low_memory: the transformer's stored bytes (from its shapes, every storage), then on a
GPU (or for tiny-* anywhere) training and restoring in low memory beside bf16 with checkpointing.
--arch=... --plan: the planned peak memory of training and restoring (plan.py), no GPU needed.
--gpu: FLUX and Wan at the defaults and with --low_memory, planned beside measured, one table into
docs/RESULTS.md, and `torchrun --nproc_per_node=2 train.py` on the one GPU (the two ranks on gloo);
--gpu --dry: the same on the tiny architectures at 16 px on the CPU.
"""
import contextlib
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time

import diffusers
import torch
from torch.nn.attention import sdpa_kernel

import backbones
import bridge
import extensions
import sample
import train
from data import media, pairs, photos
from plumbing import lowbits, plan as planner, tiles
from plumbing.cli import fail, parse

# ---------------------------------------------------------------- config (override: --key=value)
arch = ""         # flux | wan: the real architecture, random weights, on this GPU; tiny-flux | tiny-wan: any device
backbone = ""     # without --arch: the backbone measured on the CPU (default tiny-flux)
size = 128        # without --arch: training and sampling size for the ratios (px)
batch = 4         # without --arch: pairs per training step
photo_size = 512  # without --arch: the photo restored end to end (px)
big_photo = "1500x1000"  # without --arch: a photo (width x height) restored by sample.py, its time and peak memory ("": skip)
repeats = 5       # timed runs per measure after one warm-up; the median is shown
steps = bridge.STEPS  # sampler grid points = backbone calls per prompt
threads = 2       # torch CPU threads
device = ""       # with --arch: where to build it (default cuda; tiny-* also run on cpu)
low_memory = False  # with --arch: the transformer stored in fewer bits (lowbits.LOW_MEMORY) beside bf16 + grad ckpt; flux|wan without a GPU: stored bytes only
gpu = False       # everything the README claims for GPUs, FLUX and Wan with random weights, planned beside measured: one table into --results
dry = False       # with --gpu: the same run on the tiny architectures at small sizes on the CPU (what the tests run)
results = "docs/RESULTS.md"  # with --gpu: the file whose "One GPU" section gets the table
plan = False      # with --arch: the planned peak memory of training and restoring, from shapes on the meta device (no GPU needed)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, n, dev=torch.device("cpu")):
    """Median seconds of n runs of fn after one warm-up (GPU work waited for)."""
    fn()  # warm-up
    out = []
    for _ in range(n):
        sync(dev)
        t = time.perf_counter()
        fn()
        sync(dev)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def measured(fn, n, dev):
    """(median seconds, peak GPU memory in GiB or None) of fn."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t = timed(fn, n, dev)
    return t, (torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None)


def main():
    torch.set_num_threads(threads)
    bb = backbones.load(backbone or None, device="cpu")
    g = torch.Generator().manual_seed(0)
    pair_list = pairs.make_pairs("photos", "haze", 8, size, 1, g, bb.video)
    zd, zc = train.encode_pairs(bb, pair_list, "encode")
    p = bb.new_prompt(task="haze")
    with torch.no_grad():
        p.gates.fill_(0.1)
    rows = []

    # 1. training step vs one forward, same batch and size
    x, s = zd[:batch], torch.full((batch,), 0.3)
    with torch.no_grad():
        fwd_nograd = timed(lambda: bb.velocity(x, s, [p]), repeats)
    opt = torch.optim.AdamW(p.parameters(), lr=5e-4)
    step = timed(lambda: train.train_step(bb, p, opt, train.cached(zd, zc, [g], batch, bb.device), [g], "ebr", bb.t0), repeats)
    rows.append(("train step / forward (no grad)", step, fwd_nograd, step / fwd_nograd, "<= 2.5"))
    if backbones.AMX:  # restores as sample.py runs them: in bf16 on a CPU with AMX units (training: fp32)
        bb = backbones.load(backbone or None, device="cpu", cpu_bf16=True)

    # 2. sampling vs its backbone calls (one image of `size` px, one prompt, whole)
    img = pair_list[0][0]
    with torch.no_grad():
        one = timed(lambda: bb.velocity(zd[:1], torch.full((1,), 0.3), [p]), repeats)
    run = dict(steps=steps, progress=False)
    full = timed(lambda: sample.restore(bb, img, [p], "ebr", bb.t0, **run), max(1, repeats // 2))  # the paper's decode
    rows.append((f"restore {size}px / ({steps} calls x one call)", full, steps * one, full / (steps * one), "<= 1.15"))
    decode = extensions.decode_settings(bb.kind, [p])  # this backbone's default decode (extensions.py)
    if decode[0]:  # the input's detail kept: one more decode, of the input's own latent
        kept = timed(lambda: sample.restore(bb, img, [p], "ebr", bb.t0, decode, **run), max(1, repeats // 2))
        rows.append(("  the same, detail kept / plain decode", kept, full, kept / full, "one decode more"))

    # 3. mixing k prompts, one batched call per step
    ps = [p] + [bb.new_prompt(task=f"t{i}") for i in range(2)]
    with torch.no_grad():
        k1 = timed(lambda: bb.velocity(zd[:1], torch.full((1,), 0.3), ps[:1]), repeats)
        for k in (2, 3):
            kt = timed(lambda: bb.velocity(zd[:1], torch.full((1,), 0.3), ps[:k]), repeats)
            rows.append((f"mix {k} prompts / 1 prompt (one call)", kt, k1, kt / k1, f"~{k} or less"))

    # 4. a 512x512 photo end to end (VAE in and out, 20 steps, tiles if the backbone tiles)
    big = media.resize(photos.photo("astronaut"), photo_size, photo_size)
    t = time.perf_counter()
    sample.restore(bb, big, [p], "ebr", bb.t0, decode, **run)
    wall = time.perf_counter() - t
    rows.append((f"restore a {photo_size}x{photo_size} photo (s)", wall, 20.0, wall / 20.0, "<= 1 (20 s)"))
    ext = extensions.defaults(bb.kind)
    if ext.get("coarse"):  # what new prompts of this backbone are: the bare velocity too, each step
        pc = bb.new_prompt(task="haze", coarse=ext["coarse"], gain=ext["gain"])
        with torch.no_grad():
            pc.gates.fill_(0.1)
        t = time.perf_counter()
        sample.restore(bb, big, [pc], "ebr", ext["t0"], decode, **run)
        coarse_wall = time.perf_counter() - t
        rows.append(("  the same, coarse prompt / plain", coarse_wall, wall, coarse_wall / wall, "~2 or less"))

    # 5. what a user runs: python sample.py photo.png --tasks=haze, a process of its own (its peak memory)
    if big_photo:
        w, h = (int(v) for v in big_photo.split("x"))
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "photo.png")
            media.write_image(src, media.resize(photos.photo("astronaut"), h, w))
            cmd = [sys.executable, "sample.py", src, "--tasks=haze", f"--threads={threads}", f"--steps={steps}",
                   "--progress=false"] + ([f"--backbone={backbone}"] if backbone else [])
            with open(os.path.join(d, "log"), "w") as log:
                t = time.perf_counter()
                proc = subprocess.Popen(cmd, cwd=os.path.dirname(os.path.abspath(__file__)), stdout=log, stderr=log)
                _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak resident memory
                wall = time.perf_counter() - t
            if status:
                fail(f"bench.py: {' '.join(cmd[1:])} failed: {open(os.path.join(d, 'log')).read().strip()[-300:]}")
        peak, mp = usage.ru_maxrss / 2**20, w * h / 1e6  # ru_maxrss: KiB on Linux
        rows.append((f"restore a {big_photo} photo, sample.py (s)", wall, 60.0, wall / 60.0, "<= 1 (60 s)"))
        rows.append(("  its peak memory (GiB)", peak, 2.0, peak / 2.0, "<= 1 (2 GiB)"))
        rows.append(("  seconds per megapixel", wall / mp, 40.0, wall / mp / 40.0, "a 12 MP photo: x 12"))

    print(f"\nbench: {bb.name}, CPU, {threads} threads, batch {batch}, {size} px, median of {repeats}; training in "
          f"fp32, restores {'in bf16 (this CPU has AMX; --cpu_bf16)' if bb.cpu_bf16 else 'in fp32'} as sample.py runs them")
    print(f"{'measure':<40} {'time (s)':>9} {'reference':>10} {'ratio':>7}  target")
    for name, a, b, r, tgt in rows:
        print(f"{name:<40} {a:9.3f} {b:10.3f} {r:7.3g}  {tgt}")


# ------------------------------------------------------------------ --arch: the real architectures

def shape_name(h, w, f, bb):
    return f"{f}x{h}x{w}" if bb.video else f"{h}x{w}"


def main_arch():
    known = list(backbones.ARCH) + list(backbones.TINY)
    if arch not in known:
        fail(f"--arch={arch}: choose one of {', '.join(known)}")
    if plan:
        return planned_report(arch)
    cuda = torch.cuda.is_available()
    dev = torch.device(device or ("cuda" if cuda or arch in backbones.ARCH else "cpu"))
    if low_memory:
        return main_low_memory(dev)
    if dev.type == "cuda" and not cuda:
        fail(f"bench.py --arch={arch} needs a CUDA GPU and torch sees none (torch.cuda.is_available() is "
             f"False); --plan gives its planned memory without one; python bench.py measures the tiny default on the CPU")
    if arch in backbones.ARCH and dev.type != "cuda":
        fail(f"bench.py --arch={arch} builds the real architecture on a GPU, not on {dev}")
    torch.set_num_threads(threads)
    run = dict(steps=steps, progress=False)  # the paper's decode, seed 0
    t = time.perf_counter()
    bb = backbones.random_backbone(arch, dev)
    sync(dev)
    built = time.perf_counter() - t
    params = sum(q.numel() for q in bb.transformer.parameters())
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)
    versions = f"torch {torch.__version__}" + (f" + CUDA {torch.version.cuda}" if dev.type == "cuda" else "")
    resident = f", {torch.cuda.memory_allocated(dev) / 2**30:.1f} GiB resident" if dev.type == "cuda" else ""
    print(f"bench --arch={arch}: {params / 1e9:.3f} B numbers in {bb.dtype}, VAE {bb.vae.dtype}, random weights, "
          f"built in {built:.1f} s on {where} ({versions}){resident}; median of {repeats}", flush=True)
    p, p2 = bb.new_prompt(task="a"), bb.new_prompt(task="b")
    with torch.no_grad():
        p.gates.fill_(0.1)
        p2.gates.fill_(-0.1)
    rows = []

    def row(name, a, ref, peak, target=""):
        rows.append((name, a, ref, peak, target))
        r, rf = (f"{a / ref:7.2f}", f"{ref:10.3f}") if ref else (f"{'':7}", f"{'':10}")
        pk = f"{peak:8.1f}" if peak is not None else f"{'-':>8}"
        print(f"  {name:<52} {a:9.3f} {rf} {r} {pk}  {target}".rstrip(), flush=True)

    print(f"  {'measure':<52} {'time (s)':>9} {'reference':>10} {'ratio':>7} {'peak GiB':>8}  target")
    # training at the training size and at the restore size (batch 2, batch 1); the restore size
    # is the largest restored whole: FLUX tile x tile, Wan window frames x train size x tile
    th, tw = bb.tile if isinstance(bb.tile, tuple) else (bb.tile, bb.tile)
    hr, wr, fr = (th, tw, bb.window) if bb.video else (th, tw, 1)
    configs = [(bb.train_size, bb.train_size, bb.train_frames if bb.video else 1, 2), (hr, wr, fr, 1)]
    g = torch.Generator().manual_seed(0)
    for h, w, f, b in configs:
        desc = f"{shape_name(h, w, f, bb)}, batch {b}"
        z = torch.randn((b,) + bb.latent_shape(h, w, f), generator=g).to(dev)
        s = torch.full((b,), 0.3, device=dev)
        kernels = train.attention_kernels(dev)  # the forward with the step's attention kernels
        with torch.no_grad(), sdpa_kernel(kernels) if kernels else contextlib.nullcontext():
            fwd, peak = measured(lambda: bb.velocity(z, s, [p]), repeats, dev)
        row(f"forward {desc}", fwd, None, peak)
        pt = bb.new_prompt(task="t")
        opt = torch.optim.AdamW(pt.parameters(), lr=1e-4)
        kernels = train.attention_kernels(dev)
        for ckpt in (False, True):
            if ckpt:
                bb.transformer.enable_gradient_checkpointing()
            step, peak = measured(lambda: train.train_step(bb, pt, opt, train.cached(z, z, [g], b, bb.device), [g], "ebr", bb.t0, kernels), repeats, dev)
            bb.transformer.disable_gradient_checkpointing()
            row(f"train step / forward, {desc}{', grad ckpt' if ckpt else ''}", step, fwd, peak,
                "" if ckpt else "<= 2.5")
        del z, pt, opt

    # restore at the restore size: end to end (pixels on the CPU in and out, as from a file),
    # and the sampler alone, against `steps` calls of the backbone on that latent
    x = torch.rand((3, fr, hr, wr) if bb.video else (3, hr, wr), generator=g)
    desc = shape_name(hr, wr, fr, bb)
    y = sample.to_latents(bb, x)
    s1 = torch.full((1,), 0.3, device=dev)
    with torch.no_grad():
        one, peak = measured(lambda: bb.velocity(y, s1, [p]), repeats, dev)
    row(f"one call, {desc}", one, None, peak)
    n = max(1, repeats // 2)
    full, peak = measured(lambda: sample.restore(bb, x, [p], "ebr", bb.t0, **run), n, dev)
    row(f"restore {desc} / ({steps} calls x one call)", full, steps * one, peak, "<= 1.15")
    alone, peak = measured(lambda: sample.sample_latents(bb, y, [p], "ebr", bb.t0, **run), n, dev)
    row(f"sampler alone (no VAE) / ({steps} calls x one call)", alone, steps * one, peak)
    with torch.no_grad():
        two, peak = measured(lambda: bb.velocity(y, s1, [p, p2]), repeats, dev)
    row(f"mix 2 prompts / 1 prompt (one call), {desc}", two, one, peak, "<= 2")

    # the VAE in fp32 and in bf16 (the GPU default), encode + decode of the restore size
    policy = bb.vae.dtype
    diffusers.utils.logging.set_verbosity_error()  # casting a VAE with .to() warns; these weights are random
    for dt in (torch.float32, torch.bfloat16):
        bb.vae.to(dt)
        vt, peak = measured(lambda: sample.from_latents(bb, sample.to_latents(bb, x), x), n, dev)
        row(f"VAE encode + decode {desc}, {str(dt).split('.')[-1]}", vt, None, peak)
    bb.vae.to(policy)

    # an input larger than one tile (FLUX: twice as wide) or one window (Wan: twice as long)
    hb, wb, fb = (hr, wr, 2 * fr - 1) if bb.video else (hr, 2 * wr, 1)
    big = torch.rand((3, fb, hb, wb) if bb.video else (3, hb, wb), generator=g)
    # a long clip is restored window by window (sample.restore), each window whole
    wins = len(tiles.frame_windows(fb, bb.window)[0]) if bb.video else 1
    sizes, boxes, _ = tiles.layout(bb.latent_shape(hb, wb, fr if bb.video else 1)[1:], 
                                   sample.tile_sizes(bb, (1,) + bb.latent_shape(hb, wb, fr if bb.video else 1)))
    chunk = 16  # sample.py's default
    k = min(len(boxes), chunk)
    calls = wins * -(-len(boxes) // chunk)  # backbone calls per step of the sampler
    zt = torch.randn((k, bb.latent_channels) + tuple(sizes), generator=g).to(dev)
    with torch.no_grad():
        tile_call, peak = measured(lambda: bb.velocity(zt, torch.full((k,), 0.3, device=dev), [p]), repeats, dev)
    what = "windows" if bb.video else "tiles"
    row(f"one call on {k} {what}", tile_call, None, peak)
    tiled, peak = measured(lambda: sample.restore(bb, big, [p], "ebr", bb.t0, chunk=chunk, **run), n, dev)
    row(f"restore {shape_name(hb, wb, fb, bb)} ({wins if bb.video else len(boxes)} {what}) / ({steps} x {calls} call)",
        tiled, steps * calls * tile_call, peak)
    return rows


# ------------------------------------------------------------------ --arch --plan: memory before a GPU

# what the README's GPU rows restore: FLUX a 1024 x 1024 photo (nine tiles), Wan a 33 x 480 x 832
# clip (two tiles); the tiny ones twice their tile
RESTORE = {"flux": (1024, 1024, 1), "wan": (480, 832, 33)}


def restore_size(kind):
    s = backbones.SETTINGS[kind]
    return RESTORE.get(kind, (2 * s["tile"], 2 * s["tile"], s["window"]))


def planned_rows(kind, dtype=torch.bfloat16, vae_dtype=None, offload=True):
    """[(job, storage, ckpt, batch, (h, w, frames), planned parts)]: training at the training size
    at the defaults (with and without checkpointing) and with --low_memory (float8 and
    checkpointing; batch 2 and 1), restoring at restore_size in bf16 and with --low_memory (NF4)."""
    s = backbones.SETTINGS[kind]
    f = s["train_frames"] if kind.endswith("wan") else 1
    h, w, fr = restore_size(kind)
    low_t, low_r = lowbits.low_memory(True, True), lowbits.low_memory(True)
    rows = []
    for storage, ckpt, b in (("", False, s["train_batch"]), ("", True, s["train_batch"]), (low_t, True, s["train_batch"]),
                             (low_t, True, 1)):
        parts = planner.training(kind, s["train_size"], f, b, storage, ckpt, dtype, vae_dtype, offload)
        rows.append(("train", storage, ckpt, b, (s["train_size"], s["train_size"], f), parts))
    for storage in ("", low_r):
        parts = planner.restoring(kind, h, w, fr, storage, dtype, vae_dtype, offload=offload)
        rows.append(("restore", storage, False, 1, (h, w, fr), parts))
    return rows


def row_name(kind, job, storage, ckpt, b, size):
    h, w, f = size
    px = f"{f}x{h}x{w}" if kind.endswith("wan") else f"{h}x{w}"
    how = ("--low_memory (" + storage + (" + grad ckpt)" if job == "train" else ")")) if storage else \
        ("defaults" + (" + grad ckpt" if ckpt else ""))
    return f"{job} {px}, batch {b}, {how}"


def planned_report(kind):
    """The planned peaks, printed: weights (transformer as stored, VAE), the run above them, and the peak."""
    print(f"planned memory of {kind} on one GPU (GiB), from shapes on the meta device: the tensors torch "
          f"allocates, as torch.cuda.max_memory_allocated counts them (the CUDA context and kernels' workspaces aside)")
    print(f"  {'what':<56} {'transformer':>11} {'VAE':>6} {'run':>6} {'peak':>6}")
    rows = planned_rows(kind)
    for job, storage, ckpt, b, size, p in rows:
        run = max(p["encode"], p["step"]) if job == "train" else p["run"]
        print(f"  {row_name(kind, job, storage, ckpt, b, size):<56} {p['transformer'] / 2**30:11.2f} "
              f"{p['vae'] / 2**30:6.2f} {run / 2**30:6.2f} {p['peak'] / 2**30:6.2f}", flush=True)
    return rows


# ------------------------------------------------------------------ --gpu: one command for a GPU

def timed_peak(fn, n, bb, dev):
    """(median seconds of n runs, bytes held at fn's peak): the GPU's max_memory_allocated over the
    runs; on the CPU the weights plus the allocator's peak above its level at the start of one more
    run (torch.profiler's records)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        return timed(fn, n, dev), torch.cuda.max_memory_allocated(dev)
    held = lowbits.stored_bytes(bb.transformer) + sum(q.numel() * q.element_size() for q in bb.vae.parameters())
    return timed(fn, n, dev), held + planner.cpu_peak(fn)[1]


def measure_rows(kind, dev, n, steps):
    """planned_rows(kind) each measured on `dev` with random weights: (name, planned, measured
    peak bytes, seconds, ratio, what the ratio is, target); a row out of GPU memory says so (None)."""
    half = dev.type == "cuda"
    planned = planned_rows(kind, torch.bfloat16 if half else torch.float32, None if half else "fp32", offload=half)
    g, out, bbs = torch.Generator().manual_seed(0), [], {}
    for job, storage, ckpt, b, (h, w, f), parts in planned:
        name = row_name(kind, job, storage, ckpt, b, (h, w, f))
        try:
            out.append((name, parts["peak"]) + measure_row(kind, job, storage, ckpt, b, (h, w, f), dev, n, steps, bbs, g))
        except torch.OutOfMemoryError:
            bbs.clear()
            torch.cuda.empty_cache()
            out.append((name, parts["peak"], None, None, None, "out of GPU memory", ""))
        r = out[-1]
        meas = f"measured {r[2] / 2**30:6.2f} GiB, {r[3]:.2f} s, {r[5]} {r[4]:.2f}" if r[2] is not None else r[5]
        print(f"  {name:<56} planned {r[1] / 2**30:6.2f} GiB, {meas}", flush=True)
    return out


def measure_row(kind, job, storage, ckpt, b, size, dev, n, steps, bbs, g):
    """(peak bytes, seconds, ratio, what the ratio is, target) of one row of planned_rows."""
    h, w, f = size
    if storage not in bbs:  # one storage's backbone at a time
        bbs.clear()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        bbs[storage] = backbones.random_backbone(kind, dev, storage=storage)
    bb = bbs[storage]
    bb.transformer.disable_gradient_checkpointing()
    if ckpt:
        bb.transformer.enable_gradient_checkpointing()
    p = bb.new_prompt(task="t")
    if job == "train":
        px = torch.randint(0, 256, (b, 3, f, h, w) if bb.video else (b, 3, h, w), dtype=torch.uint8, generator=g)
        opt, kernels = torch.optim.AdamW(p.parameters(), lr=1e-4), train.attention_kernels(dev)
        step = lambda: train.train_step(bb, p, opt, [train.encode_batch(bb, px, px)], [g], "ebr", bb.t0, kernels)  # noqa: E731
        z = train.encode_batch(bb, px, px)[0]
        with torch.no_grad(), sdpa_kernel(kernels) if kernels else contextlib.nullcontext():
            fwd = timed(lambda: bb.velocity(z, torch.full((b,), 0.3, device=dev), [p]), n, dev)
        secs, peak = timed_peak(step, n, bb, dev)
        return peak, secs, secs / fwd, "step (with encoding) / forward", "<= 2.5"
    x = torch.rand((3, f, h, w) if bb.video else (3, h, w), generator=g)
    y = sample.to_latents(bb, x)
    sizes, boxes, _ = tiles.layout(y.shape[2:], sample.tile_sizes(bb, y.shape))
    zt = torch.randn((len(boxes), y.shape[1]) + tuple(sizes), generator=g).to(dev)
    with torch.no_grad():
        one = timed(lambda: bb.velocity(zt, torch.full((len(boxes),), 0.3, device=dev), [p]), n, dev)
        alone = timed(lambda: sample.sample_latents(bb, y, [p], "ebr", bb.t0, steps=steps, progress=False), 1, dev)
        secs, peak = timed_peak(lambda: sample.restore(bb, x, [p], "ebr", bb.t0, steps=steps, progress=False), 1, bb, dev)
    return peak, secs, alone / (steps * one), f"sampler / ({steps} calls on {len(boxes)} tiles)", "<= 1.15"


def torchrun_row(dev, train_steps=2):
    """`torchrun --standalone --nproc_per_node=2 train.py` for a few steps of a random tiny-flux on
    `dev` (both ranks on one GPU, so ddp picks gloo): (what, seconds, exit code, whether it trained)."""
    from plumbing import tiny
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as d:
        tiny.save(os.path.join(d, "tiny-flux"), tiny.build("tiny-flux"), "tiny-flux")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
               "--task=haze", f"--backbone={d}/tiny-flux", f"--steps={train_steps}", "--pool=6", "--val_pairs=2",
               "--batch=2", "--size=32", "--threads=1", f"--val_every={train_steps}", f"--out={d}/run"]
        cmd += ["--device=cpu"] if dev.type == "cpu" else []  # on a GPU each rank takes cuda:LOCAL_RANK % 1
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=here, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        secs = time.perf_counter() - t
        ok = proc.returncode == 0 and "x 2 processes" in proc.stdout and os.path.isfile(f"{d}/run/haze.safetensors")
    if not ok:
        print((proc.stdout + proc.stderr)[-2000:], file=sys.stderr)
    what = f"torchrun --nproc_per_node=2 train.py, {train_steps} steps at 32 px, 2 processes on one {dev.type.upper()} (gloo)"
    return what, secs, proc.returncode, ok


def main_gpu():
    """FLUX and Wan (--dry: tiny-flux and tiny-wan at 16 px on the CPU) with random weights, at the
    defaults and with --low_memory: a few training steps, a restore of a 1024 x 1024 photo and of a
    33 x 480 x 832 clip, each with its planned and measured peak memory, its time and ratio; one
    table written into --results (its "One GPU" section replaced)."""
    import datetime
    import os
    cuda = torch.cuda.is_available()
    if not dry and not cuda:
        fail("bench.py --gpu needs a CUDA GPU (torch.cuda.is_available() is False); --gpu --dry runs it on "
             "the tiny architectures on the CPU; --arch=flux --plan gives the planned memory")
    dev = torch.device("cpu" if dry else "cuda")
    torch.set_num_threads(threads)
    kinds = ("tiny-flux", "tiny-wan") if dry else ("flux", "wan")
    n, sampler_steps = (1, 2) if dry else (min(repeats, 2), steps)  # within 8 minutes on one GPU
    if dry:  # small sizes: the path end to end in a few minutes
        for k in kinds:
            backbones.SETTINGS[k] = dict(backbones.SETTINGS[k], train_size=16, tile=16, train_frames=5, window=5, train_batch=2)
    where = "CPU (--dry)" if dry else torch.cuda.get_device_name(dev)
    rows = []
    for kind in kinds:
        print(f"{kind} on {where}:", flush=True)
        rows += [(kind,) + r for r in measure_rows(kind, dev, n, sampler_steps)]
    if cuda and not dry:
        torch.cuda.empty_cache()  # the backbones above freed: the GPU is the two ranks'
    print("torchrun on " + where + ":", flush=True)
    run_what, run_secs, run_code, run_ok = torchrun_row(dev)
    print(f"  {run_what}: {run_secs:.1f} s, {'trained' if run_ok else f'failed (exit {run_code})'}", flush=True)
    gib = lambda b: f"{b / 2**30:.2f}" if b >= 2**28 else f"{b / 2**20:.1f} MiB"  # noqa: E731
    lines = [f"## One GPU: `bench.py --gpu`{' --dry' if dry else ''}", "",
             f"{datetime.date.today()}, `python bench.py --gpu{' --dry' if dry else ''}` on {where}, torch {torch.__version__}, "
             f"random weights, {sampler_steps} sampler steps, median of {n}. Memory in GiB unless marked; "
             f"planned: `plan.py` from shapes on the meta device; measured: "
             + ("torch.cuda.max_memory_allocated." if not dry else "weights + the CPU allocator's peak."), "",
             "| backbone | what | planned peak | measured peak | time (s) | ratio | target |", "|---|---|---|---|---|---|---|"]
    for kind, name, planned, peak, secs, ratio, what, target in rows:
        if peak is None:
            lines.append(f"| {kind} | {name} | {gib(planned)} | {what} | - | - | {target} |")
        else:
            lines.append(f"| {kind} | {name} | {gib(planned)} | {gib(peak)} | {secs:.2f} | {what}: {ratio:.2f} | {target} |")
    lines.append(f"| tiny-flux | {run_what} | - | - | {run_secs:.2f} | "
                 f"{'trained, exit 0' if run_ok else f'failed, exit {run_code}'} | exit 0 |")
    text = open(results).read() if os.path.isfile(results) else ""
    head = f"## One GPU: `bench.py --gpu`{' --dry' if dry else ''}"
    if head in text:  # the section replaced, up to the next one
        start = text.index(head)
        end = text.find("\n## ", start + 1)
        text = text[:start] + text[end + 1:] if end >= 0 else text[:start]
    text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    tmp = results + ".partial"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, results)
    print(f"table written to {results}")
    return rows


# ------------------------------------------------------------------ --arch --low_memory

STORED = (("", "bf16 (as loaded)"), ("fp8", "fp8: diffusers' layerwise casting"), ("int8", "int8: bitsandbytes LLM.int8"),
          ("nf4", "nf4: bitsandbytes 4-bit, double-quantized scales"))


def stored_report(kind, dev):
    """The transformer's weights as each storage keeps them: from the shapes (the real configs on
    the meta device), and measured where they are built (the tiny ones, or on a GPU)."""
    tiny = kind in backbones.TINY  # measured too, in fp32 as the CPU runs them; the real ones in bf16
    dtype = torch.float32 if tiny else torch.bfloat16
    shapes = backbones.random_backbone(kind, "meta", dtype=dtype).transformer
    n = sum(q.numel() for q in shapes.parameters())
    built = backbones.random_backbone(kind, "cpu").transformer if tiny else None
    print(f"stored transformer of {kind}: {n / 1e9:.4g} B numbers, {str(dtype)[6:]} where not stored; --low_memory stores "
          f"{lowbits.LOW_MEMORY['train']} to train, {lowbits.LOW_MEMORY['restore']} to restore")
    print(f"  {'storage':<48} {'from shapes':>12} {'measured':>10} {'left at 16 bits':>16}")
    rows = []
    for storage, what in STORED:
        planned, left = lowbits.planned_bytes(shapes, storage, dtype)
        meas = None
        if tiny:
            meas = lowbits.stored_bytes(lowbits.store(copy.deepcopy(built), storage, "cpu") if storage else built)
        rows.append((what, planned, meas, left))
        m = f"{meas / 2**30:8.3f} GiB" if meas is not None else f"{'-':>12}"
        print(f"  {what:<48} {planned / 2**30:8.3f} GiB {m} {left / 1e9:11.4g} B")
    return rows


def main_low_memory(dev):
    """Stored bytes; then, where it can run, bf16 + grad ckpt and --low_memory side by side: a
    training step (batch 1) at the training sizes and a restore of twice the tile (FLUX 1024 x 1024)."""
    known = list(backbones.ARCH) + list(backbones.TINY)
    if arch not in known:
        fail(f"--arch={arch}: choose one of {', '.join(known)}")
    torch.set_num_threads(threads)
    rows = stored_report(arch, dev)
    if arch in backbones.ARCH and not (dev.type == "cuda" and torch.cuda.is_available()):
        print(f"no GPU here: the memory and time of --arch={arch} --low_memory need one (stored bytes above)")
        return rows
    bb = shapes = backbones.random_backbone(arch, "meta")
    th, tw = bb.tile if isinstance(bb.tile, tuple) else (bb.tile, bb.tile)
    f = bb.train_frames if bb.video else 1
    trains = sorted({512 if arch == "flux" else bb.train_size, bb.train_size})
    jobs = [("train", s, s, f) for s in trains] + [("restore", th, tw, bb.window) if bb.video else ("restore", 2 * th, 2 * tw, 1)]
    targets = {"flux": dict(train=20, restore=11), "wan": dict(train=8)}.get(arch, {})
    g = torch.Generator().manual_seed(0)
    got = {}
    for storage in ("", lowbits.low_memory(True, True), lowbits.low_memory(True)):
        bb = backbones.random_backbone(arch, dev, storage=storage)
        bb.transformer.enable_gradient_checkpointing()
        for job, h, w, fr in jobs:
            if storage and storage != lowbits.low_memory(True, job == "train"):
                continue
            if job == "train":
                z = torch.randn((1,) + bb.latent_shape(h, w, fr), generator=g).to(dev)
                pt = bb.new_prompt(task="t")
                opt = torch.optim.AdamW(pt.parameters(), lr=1e-4)
                kernels = train.attention_kernels(dev)
                fn = lambda: train.train_step(bb, pt, opt, train.cached(z, z, [g], 1, bb.device), [g], "ebr", bb.t0, kernels)  # noqa: E731
            else:
                x = torch.rand((3, fr, h, w) if bb.video else (3, h, w), generator=g)
                p = bb.new_prompt(task="r")
                fn = lambda: sample.restore(bb, x, [p], "ebr", bb.t0, steps=steps, progress=False)  # noqa: E731
            got[job, h, w, fr, bool(storage)] = measured(fn, repeats if job == "train" else max(1, repeats // 2), dev) + (storage,)
        del bb
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    print(f"  {'measure (batch 1)':<44} {'bf16+ckpt s':>11} {'GiB':>6} {'low s':>8} {'GiB':>6} {'ratio':>6}  target")
    out = []
    for job, h, w, fr in jobs:
        (t_full, m_full, _), (t_low, m_low, storage) = got[job, h, w, fr, False], got[job, h, w, fr, True]
        name = f"{job} {shape_name(h, w, fr, shapes)}, {storage}" + (" + grad ckpt" if job == "train" else "")
        gib = lambda m: f"{m:6.1f}" if m is not None else f"{'-':>6}"  # noqa: E731
        cap = targets.get(job)
        tgt = (f"<= {cap} GiB, " if cap else "") + ("time <= 2x" if job == "train" else "")
        print(f"  {name:<44} {t_full:11.3f} {gib(m_full)} {t_low:8.3f} {gib(m_low)} {t_low / t_full:6.3g}  {tgt}".rstrip())
        out.append((name, t_full, m_full, t_low, m_low, cap))
    return rows + out


if __name__ == "__main__":
    parse(globals(), sys.argv[1:])
    with fail.guard():
        main_gpu() if gpu else main_arch() if arch else main()
