"""Learn one task prompt on a frozen backbone (paper eqs. 7 and 10).

    python train.py --task=haze                          # the tiny default backbone, EBR bridge
    python train.py --task=haze --paper                  # exactly the paper's prompt form
    python train.py --backbone wan --task lowlight        # Wan 2.1 (needs its weights)
    torchrun --nproc_per_node=4 train.py --backbone flux --task=haze   # data-parallel

Only the prompt bank and its gates learn (AdamW). Each step: pairs streamed from the data (read,
cropped and degraded afresh by --workers processes, encoded per batch; --cache_latents: drawn from
a pool encoded once), t and eps, the construction's state, the backbone's clean estimate
x0_hat = z_t - sigma v under the prompt, ||x0_hat - z_clean||^2. Writes <out>/<task>.safetensors
(what sample.py takes), <out>/<task>.ckpt.pt (--resume continues it exactly) and <out>/<task>_val.png
(degraded | restored | clean), holding <out>/train.lock meanwhile. Micro-batch slot j (over ranks
and --accum) takes its pairs and draws from its own seeded stream, so N processes compute what one
with --accum=N does.
"""
import contextlib
import itertools
import os
import sys
import time
import zlib

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

import backbones
import bridge
import extensions
import metrics
import prompt
from data import dataset, degrade, media, pairs, photos
from plumbing import checkpoint, ddp, lowbits
from plumbing.cli import fail, parse

# ---------------------------------------------------------------- config (override: --key=value)
backbone = ""        # tiny-flux (default), tiny-wan, flux, wan, or a local folder
video = False        # with no --backbone: the tiny video backbone instead of the image one
task = "haze"        # haze | rain | snow | lowlight | blur
bridge_name = "ebr"  # the training construction: ebr | ddbm | naive
paper = False        # exactly the paper's prompt form and T0 (no extension; FLUX and Wan have none anyway)
t0 = 0.0             # start noise level of the bridge, T0 (0: the backbone's, e.g. 0.4 for FLUX/Wan)
coarse = -1.0        # extension: >0 the prompt steers only the low-passed velocity (std, latent px); 0: off; -1: the backbone's
gain = 0.0           # extension: a coarse prompt's factor on its low-passed change (0: the backbone's)
data_source = ""     # photos | shapes | generate | a folder (input/ + gt/, or clean images) | list.json ('': the backbone's)
any_label = False    # a .json list: its Mixed and None entries too (else refused)
data_root = ""       # a .json list: where its relative paths start (default: its folder, then the working one)
steps = 1500         # optimizer steps
batch = 0            # pairs per micro-batch and process (0: the backbone's, 2 for FLUX and Wan as in the paper)
accum = 1            # micro-batches per step and process; their gradients are averaged
lr = 0.0             # AdamW learning rate (0: the backbone's default, 5e-4 for FLUX/Wan as in the paper)
size = 0             # crop size in pixels (0: the backbone's default)
frames = 0           # clip length for video backbones (0: the backbone's default)
workers = 2          # data loader processes reading and degrading the training pairs (0: this process)
cache_latents = False  # a fixed pool of `pool` pairs encoded once instead of streaming (pays for the tiny backbones on CPU)
pool = 256           # --cache_latents: training pairs made and encoded once
val_pairs = 8        # validation pairs (other draws than the training ones), made once
val_every = 250      # steps between validations and checkpoints
generate_count = 32  # --data=generate: clean images drawn by the backbone's own pipeline, kept in <out>/generated
captions = ""        # --data=generate: a text file of captions, one a line (default: the training photos' captions, photos.py)
out = ""             # output folder (default runs/<backbone>-<task>-<bridge>)
resume = False       # continue from <out>/<task>.ckpt.pt
force = False        # --resume: continue even where the checkpoint's settings differ from this run's
grad_ckpt = False    # gradient checkpointing in the backbone (less memory, more time)
low_memory = False   # the frozen transformer in 8 bits (lowbits.LOW_MEMORY) and grad_ckpt: FLUX on one 24 GB GPU
attention = "auto"   # a GPU where training crashes in attention: torch (its own choice) or a list (flash,math); auto: flash,efficient on CUDA
seed = 0             # the bank's init, the data, the draws of each micro-batch
device = ""          # cuda, cuda:1, cpu (default: this rank's GPU if there is one, else the CPU)
vae_dtype = ""       # VAE precision: bf16 | fp32 (default: bf16 on GPU, fp32 on CPU)
threads = 0          # torch CPU threads (0: torch's default)
ALIASES = {"bridge": "bridge_name", "data": "data_source"}
KERNELS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
           "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def attention_kernels(dev, attention="auto"):
    """The attention kernels a training step may use on `dev`, or None for torch's own choice.
    auto picks flash and memory-efficient on CUDA: cuDNN's attention backward fails when training
    FLUX on an H100 (docs/gpu.md)."""
    if attention == "torch" or (attention == "auto" and torch.device(dev).type != "cuda"):
        return None
    names = ["flash", "efficient"] if attention == "auto" else [a.strip() for a in attention.split(",") if a.strip()]
    if not names or any(n not in KERNELS for n in names):
        raise ValueError(f"--attention={attention}: give auto, torch, or a list of {', '.join(KERNELS)}")
    return [KERNELS[n] for n in names]


def cached(zd, zc, gens, batch, device):
    """Micro-batches from latents encoded once (--cache_latents): each generator of gens draws
    `batch` of them, when train_step takes its micro-batch."""
    for gm in gens:
        idx = torch.randint(len(zd), (batch,), generator=gm)
        yield zd[idx].to(device), zc[idx].to(device)


def train_step(bb, p, opt, micro, gens, bridge_name, t0, kernels=None):
    """One optimizer step. For each micro-batch (z_deg, z_clean) of `micro` (taken one at a time:
    streamed ones are encoded when their turn comes) and its generator in gens: t and eps, the
    construction's state, the prompt's clean estimate, ||x0_hat - z_clean||^2, backward; then the
    gradients summed over micro-batches and ranks, divided by their number, and AdamW.
    kernels: attention_kernels(). Returns the mean loss."""
    opt.zero_grad(set_to_none=True)
    total = None
    with sdpa_kernel(kernels) if kernels else contextlib.nullcontext():  # backward too
        for (z_deg, z_clean), gm in zip(micro, gens):
            batch = len(z_deg)
            t = bridge.sample_t(batch, t0, generator=gm)
            eps = torch.randn(z_deg.shape, generator=gm).to(bb.device)
            z_t, sigma = bridge.forward(bridge_name, z_deg, z_clean, eps, t.to(bb.device), t0)
            v = extensions.prompted(bb, p, z_t, sigma)  # extension: a coarse prompt's velocity; else the prompt's own
            loss = (bridge.clean_estimate(z_t, sigma, v) - z_clean).square().mean()
            loss.backward()  # gradients add up over the micro-batches
            total = loss.detach() if total is None else total + loss.detach()
    n = len(gens) * ddp.joined()  # micro-batches in this step, over all ranks
    for q in p.parameters():
        if q.grad is not None:
            ddp.sum_(q.grad).div_(n)  # the sum over ranks (none with one process), then the mean
    opt.step()
    return ddp.sum_(total) / n


@torch.no_grad()
def encode_pairs(bb, pairs, desc, kept=None):
    """Pixel pairs (any iterable, taken one at a time) -> (z_deg, z_clean) latents on the
    backbone's device, computed once. Each pair's pixels are dropped once encoded, or appended to
    the list `kept` as uint8 (a quarter of float32's bytes: Wan's 8 validation clips take 0.4 GB)."""
    zd, zc = [], []
    for deg, clean in tqdm(pairs, desc=desc, leave=False, mininterval=2, disable=ddp.RANK > 0):
        zd.append(bb.encode(deg[None] * 2 - 1)[0])
        zc.append(bb.encode(clean[None] * 2 - 1)[0])
        if kept is not None:
            kept.append((dataset.to_uint8(deg), dataset.to_uint8(clean)))
    return torch.stack(zd), torch.stack(zc)


@torch.no_grad()
def encode_batch(bb, deg, clean):
    """A streamed micro-batch (uint8 pixels) -> (z_deg, z_clean) on the backbone's device."""
    return [bb.encode(x.to(bb.device).float() / 255 * 2 - 1) for x in (deg, clean)]


def generate_clean(bb, captions, n, size, frames, seed, folder):
    """n clean images (clips) drawn by the backbone's own diffusers pipeline (backbones.draw),
    image i from caption i mod len(captions) and seed + i, written to `folder` (PNG; mp4 for
    clips) under a name that says caption, size and seed, so that a re-run reuses them. Needs the
    backbone loaded with its text encoder. Returns the n paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in tqdm(range(n), desc="generate clean data", leave=False, disable=ddp.RANK > 0):
        caption = captions[i % len(captions)]
        key = zlib.crc32(f"{caption}|{size}|{frames if bb.video else 1}|{seed + i}".encode())
        paths.append(os.path.join(folder, f"{i:04d}-{key:08x}" + (".mp4" if bb.video else ".png")))
        if not os.path.isfile(paths[-1]):  # written atomically: a file there is whole
            x = backbones.draw(bb, bb.encode_text([caption]), size, frames, seed + i)
            media.write_video(paths[-1], x, 8.0) if bb.video else media.write_image(paths[-1], x)
    return paths


@torch.no_grad()
def validate(bb, p, zd, seed, bridge_name, t0, chunk=1):
    """The validation latents restored with the prompt (the decoded latent), `chunk` latents
    sampled at a time and each decoded alone (8 Wan clips decoded at once would need tens of GB):
    pixels on the device."""
    eps = torch.randn(zd.shape, generator=torch.Generator().manual_seed(seed)).to(zd.device)
    out = []
    for i in range(0, len(zd), chunk):
        z = bridge.sample(bridge_name, lambda x, s: extensions.prompted(bb, p, x, s), zd[i:i + chunk], eps[i:i + chunk], t0)
        out += [((bb.decode(z[j:j + 1]) + 1) / 2).clamp(0, 1) for j in range(len(z))]
    return torch.cat(out)


# the settings a checkpoint records and --resume compares: flag -> this run's value (set in main)
RESUMED = ("task", "bridge", "t0", "backbone", "seed", "data", "size", "frames", "batch", "lr", "coarse", "gain")


def differences(saved, now):
    """'--flag=now (the checkpoint: saved)' for each setting both record and that differs."""
    return [f"--{k}={now[k]} (the checkpoint: {saved[k]})" for k in RESUMED if k in saved and saved[k] != now[k]]


_LOCK = {}  # this process's lock file descriptor


def lock(folder):
    """One trainer per output folder: an exclusive lock on <folder>/train.lock, held until the
    training ends (the kernel drops it when the process ends, even on a crash); a second run is
    refused in one line."""
    import fcntl
    unlock()  # a process runs one training at a time (tests call main again)
    fd = os.open(os.path.join(folder, "train.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        fail(f"{folder} is in use by another train.py (process {pid or '?'}); wait for it to end or give another --out")
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _LOCK["fd"] = fd


def unlock():
    if "fd" in _LOCK:
        os.close(_LOCK.pop("fd"))


def main():
    global size, frames, lr, batch, coarse, gain, t0, out  # the options "0: the backbone's", resolved once below
    degrade.known(task)  # before anything is loaded or written
    bridge.known(bridge_name)
    attention_kernels("cuda", attention)  # a bad --attention fails here, not after loading
    if accum < 1 or batch < 0:
        fail(f"--batch={batch} must be at least 0 (0: the backbone's) and --accum={accum} at least 1")
    if captions and not os.path.isfile(captions):
        fail(f"--captions={captions}: no such file (a text file of captions, one a line)")
    if workers < 0:
        fail(f"--workers={workers} must be at least 0 (0: read the data in this process)")
    if gain < 0:
        fail(f"--gain={gain} must be positive (0: the backbone's)")
    if steps < 1 or val_every < 1:
        fail(f"--steps={steps} and --val_every={val_every} must be at least 1")
    if t0 != 0 and not 0 < t0 < 1:
        fail(f"--t0={t0}: T0 must lie in (0, 1) (0: the backbone's)")
    if paper and (coarse > 0 or gain):
        fail("--coarse and --gain are extensions; --paper trains the paper's prompt form")
    if threads:
        torch.set_num_threads(threads)
    dev = ddp.device(device)
    ddp.init(dev)  # torchrun: join the other ranks
    lead = ddp.RANK == 0  # rank 0 prints, validates and writes
    say = print if lead else (lambda *a, **k: None)
    bb = backbones.load(backbone or None, video=video, device=dev, vae_dtype=vae_dtype or None,
                        keep_text_encoder=data_source == "generate",
                        storage=lowbits.low_memory(low_memory, training=True))
    source = data_source or bb.data  # photos; tiny-shapes: its own world
    ext = {} if paper else extensions.defaults(bb.kind)  # extension: this backbone kind's defaults
    size, lr, batch = size or bb.train_size, lr or bb.train_lr, batch or bb.train_batch
    frames = frames or (bb.train_frames if bb.video else 1)
    coarse = ext.get("coarse", 0.0) if coarse < 0 else coarse
    gain = gain or ext.get("gain", 1.0)
    t0 = t0 or (ext.get("t0", bb.t0) if coarse else bb.t0)
    if bb.video and not bb.frames_ok(frames):
        fail(f"--frames={frames}: {bb.name} needs a frame count of the form {bb.temporal}k+1")
    if size % bb.multiple:
        fail(f"--size={size} must be a multiple of {bb.multiple} for {bb.name}")
    out = out or os.path.join("runs", f"{bb.name}-{task}-{bridge_name}" + ("-paper" if paper else ""))
    if os.path.exists(out) and not os.path.isdir(out):
        fail(f"--out={out} is a file; train.py writes a folder")
    if lead:
        os.makedirs(out, exist_ok=True)
        lock(out)  # also finds an unwritable --out before any work
    ckpt_path = os.path.join(out, f"{task}.ckpt.pt")
    settings = dict(task=task, bridge=bridge_name, t0=t0, backbone=bb.name, seed=seed, data=data_source,
                    size=size, frames=frames, batch=batch, lr=lr, coarse=coarse, gain=gain)
    ck = checkpoint.load(ckpt_path, "prompt", "train.py") if resume and os.path.isfile(ckpt_path) else None  # checked before any work
    changed = differences(ck["config"], settings) if ck else []
    if changed and not force:
        fail(f"{ckpt_path} was trained otherwise: {', '.join(changed)}; resume with its settings, "
             f"or pass --force to go on under these")
    if changed:
        say(f"--force: resuming under other settings than the checkpoint's: {', '.join(changed)}")

    # ----- data: deterministic in the seed, so --resume and every rank see the same. Streamed:
    # each micro-batch read, cropped, degraded and encoded when its turn comes (dataset.py); or
    # with --cache_latents a pool made and encoded once
    g_data = torch.Generator().manual_seed(seed)
    clean = None
    if source == "generate":  # files, which streaming and --cache_latents read as a folder's
        caps = ([c.strip() for c in open(captions) if c.strip()] if captions
                else list(dict.fromkeys(photos.TRAIN_PHOTOS.values())))
        clean = generate_clean(bb, caps, generate_count, size, frames, seed, os.path.join(out, "generated"))
        bb.text = bb.clip = None  # the text encoders' memory back
    if cache_latents:  # the pool made and encoded pair by pair: latents kept, pixels dropped
        made = pairs.iter_pairs(source, task, pool + val_pairs, size, frames, g_data, bb.video, clean,
                                any_label, data_root)
        zd, zc = encode_pairs(bb, itertools.islice(made, pool), f"encode {pool} pairs")
        val_list, train_desc = made, f"{pool} training pairs, encoded once,"
    else:
        items, synthetic = pairs.items(source, task, any_label, data_root, clean)
        ds = dataset.Pairs(items, synthetic, task, size, frames, bb.video, seed)
        val_list = dataset.val_pairs(items, synthetic, task, size, frames, bb.video, seed, val_pairs)
        train_desc = (f"{len(items)} {'clean' if synthetic else 'paired'} items streamed "
                      f"({workers} workers; a fresh crop{' and degradation' if synthetic else ''} every draw)")
    kept = []
    vd, _ = encode_pairs(bb, val_list, "encode val pairs", kept)
    val_clean = torch.stack([c for _, c in kept]).float() / 255
    val_deg = torch.stack([d for d, _ in kept]).float() / 255
    say(f"data: {source} / {task}: {train_desc} and {len(vd)} validation pairs of "
        f"{tuple(val_clean.shape[1:])} px, latents {tuple(vd.shape[1:])}")

    # ----- the prompt: the only thing that learns
    if grad_ckpt or low_memory:
        bb.transformer.enable_gradient_checkpointing()
    torch.manual_seed(seed)  # the bank's random init, the same on every rank
    p = bb.new_prompt(task=task, bridge=bridge_name, t0=t0, **({"coarse": coarse, "gain": gain} if coarse else {}))
    opt = torch.optim.AdamW(p.parameters(), lr=lr)
    slots = range(ddp.RANK * accum, (ddp.RANK + 1) * accum)  # this rank's micro-batches
    gens = [torch.Generator().manual_seed(seed + 1 + 1000 * j) for j in slots]
    start, log = 0, []
    if ck is not None:
        states = ck["rng"]
        if len(states) != ddp.WORLD * accum:
            fail(f"{ckpt_path} was made with {len(states)} micro-batches per step (processes x --accum); "
                 f"this run has {ddp.WORLD} x {accum}")
        start, log = checkpoint.resume(ck, ckpt_path, "prompt", p, opt, gens, [states[j] for j in slots],
                                       "cache_latents", cache_latents, "cached latents")
        say(f"resumed from {ckpt_path} at step {start}")
    elif resume:
        say(f"--resume: no checkpoint at {ckpt_path}, starting fresh")
    n_train = sum(q.numel() for q in p.parameters())
    say(f"backbone {bb.name} on {dev}: frozen; prompt {p.shape[0]}x{p.shape[1]} + {p.shape[2]} gates = "
        f"{n_train:,} trainable numbers; bridge {bridge_name}, T0 {t0}, lr {lr}, "
        + (f"coarse {coarse} latent px, gain {gain}, " if coarse else "") +
        f"batch {batch} x {accum} micro-batches x {ddp.WORLD} processes")
    say(extensions.in_effect([(coarse, gain)]))

    def save_ckpt(step, states):
        checkpoint.save(ckpt_path, "prompt", p, opt, states, step, log, dict(settings, cache_latents=cache_latents))
        prompt.save(p, os.path.join(out, f"{task}.safetensors"))

    kernels = attention_kernels(bb.device, attention)
    t_start = time.time()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"train {task}", mininterval=2, disable=not lead)
    if not cache_latents:  # this process's micro-batches from `start` on: slots j of every step
        stream = dataset.batches(ds, dataset.Steps(start, steps, slots, ddp.WORLD * accum, batch), batch, workers)
    for step in bar:
        if cache_latents:
            micro = cached(zd, zc, gens, batch, bb.device)
        else:
            micro = (encode_batch(bb, *next(stream)) for _ in gens)
        loss = train_step(bb, p, opt, micro, gens, bridge_name, t0, kernels)
        log.append(loss.item())
        bar.set_postfix(loss=f"{sum(log[-50:]) / len(log[-50:]):.4f}")
        if (step + 1) % val_every == 0 or step + 1 == steps:
            states = [s for per_rank in ddp.gather([g.get_state() for g in gens]) for s in per_rank]
            if not lead:
                continue
            rec = validate(bb, p, vd, seed + 2, bridge_name, t0, batch).cpu()
            val_psnr, base = metrics.mean_psnr(rec, val_clean), metrics.mean_psnr(val_deg, val_clean)
            tqdm.write(f"step {step + 1}: loss {sum(log[-50:]) / len(log[-50:]):.4f}, val PSNR {val_psnr:.2f} dB "
                       f"(degraded {base:.2f} dB), {time.time() - t_start:.0f} s")
            media.write_sheet(os.path.join(out, f"{task}_val.png"), list(zip(val_deg, rec, val_clean))[:4])
            save_ckpt(step + 1, states)
    if start >= steps:
        say(f"nothing to do: the checkpoint is already at step {start} of {steps}")
    say(f"prompt written to {os.path.join(out, task + '.safetensors')} "
        f"({time.time() - t_start:.0f} s); use it: python sample.py IN --tasks={os.path.join(out, task + '.safetensors')}")
    unlock()
    ddp.finish()


if __name__ == "__main__":
    parse(globals(), sys.argv[1:], ALIASES)
    with fail.guard():
        main()
