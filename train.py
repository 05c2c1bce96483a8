"""Learn one task prompt on a frozen backbone (paper eqs. 7 and 10).

    python train.py --task=haze                          # the tiny default backbone, EBR bridge
    python train.py --backbone wan --task lowlight        # Wan 2.1 (needs its weights)
    python train.py --task=rain --bridge=naive --data=path/to/pairs --steps=20000

Only the prompt bank and its gates are in the optimizer. Latents of the training pairs are
computed once (the VAE never runs in the loop) and the null context once (in the backbone).
Each step: pick pairs, draw t and eps, build the construction's state, ask the backbone for
x0_hat = z_t - sigma v under the prompt, and regress it onto z_clean. With --coarse=W (tiny-flux's
default, not in the paper) v is the bare backbone's velocity plus --gain times the low-pass of what
the prompt changes in it (bridge.coarse), the velocity the sampler will use.
Writes <out>/<task>.safetensors (the prompt sample.py takes), <out>/<task>.ckpt.pt (optimizer,
RNG; --resume continues from it) and <out>/<task>_val.png (degraded | restored | clean).

Cached latents, noise and states live on the backbone's device; the random draws come from
seeded CPU generators (one per micro-batch slot), so a run is the same on any device.
Several processes (torchrun) train one prompt data-parallel:

    torchrun --nproc_per_node=4 train.py --backbone flux --task=haze

Every rank makes the same pool of pairs; micro-batch slot j = rank * accum + m draws its own
pairs, t and noise from its own generator (seed + 1 + 1000 j); the prompt's gradients are summed
over slots and ranks and divided by their number; rank 0 validates and writes the checkpoints.
So N processes with --accum=a compute what one process with --accum=N*a does (bit for bit with
two slots, tested), and --resume continues a run with either layout.
"""
import contextlib
import math
import os
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

import backbones
import bridge
import data
import ddp
import degrade
import prompt as prompt_lib
from cli import fail, parse

# ---------------------------------------------------------------- config (override: --key=value)
backbone = ""        # tiny-flux (default), tiny-wan, flux, wan, or a local folder
video = False        # with no --backbone: the tiny video backbone instead of the image one
task = "haze"        # haze | rain | snow | lowlight | blur
bridge_name = "ebr"  # the training construction: ebr | ddbm | naive
t0 = 0.0            # start noise level of the bridge, T0 (0: the backbone's, e.g. 0.4 for FLUX/Wan)
coarse = -1.0        # >0: the prompt steers only the coarse velocity (Gaussian std, latent px), fine detail from the bare backbone; 0: the paper's; -1: the backbone's
gain = 0.0           # coarse prompts: the factor on their low-passed change, so a small T0 asks less of the prompt (0: the backbone's)
data_source = "photos"  # photos | generate | a folder (input/ + gt/, or clean images) | list.json
steps = 1500         # optimizer steps
batch = 4            # pairs per micro-batch and process
accum = 1            # micro-batches per step and process; their gradients are averaged
lr = 0.0             # AdamW learning rate (0: the backbone's default, 5e-4 for FLUX/Wan as in the paper)
size = 0             # crop size in pixels (0: the backbone's default)
frames = 0           # clip length for video backbones (0: the backbone's default)
pool = 256           # training pairs made and encoded once
val_pairs = 8        # held-out pairs (not in the pool) for validation PSNR
val_every = 250      # steps between validations and checkpoints
generate_count = 32  # --data=generate: clean images drawn from the frozen backbone
out = ""             # output folder (default runs/<backbone>-<task>-<bridge>)
resume = False       # continue from <out>/<task>.ckpt.pt
grad_ckpt = False    # gradient checkpointing in the backbone (less memory, more time)
attention = "auto"   # attention kernels when training: auto (flash,efficient on CUDA), torch, or a list (flash,math)
seed = 0             # the bank's init, the data, the draws of each micro-batch
device = ""          # cuda, cuda:1, cpu (default: this rank's GPU if there is one, else the CPU)
vae_dtype = ""       # VAE precision: bf16 | fp32 (default: bf16 on GPU, fp32 on CPU)
threads = 0          # torch CPU threads (0: torch's default)
ALIASES = {"bridge": "bridge_name", "data": "data_source"}
KERNELS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
           "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def psnr(a, b):
    return -10 * math.log10(((a - b).square().mean().item()) + 1e-12)


def attention_kernels(dev):
    """The attention kernels a training step may use on `dev`, or None for torch's own choice.
    auto picks flash and memory-efficient on CUDA: cuDNN's attention backward crashed training
    FLUX on an H100 (torch 2.11 + CUDA 13.0, DESIGN.md section 11)."""
    if attention == "torch" or (attention == "auto" and torch.device(dev).type != "cuda"):
        return None
    names = ["flash", "efficient"] if attention == "auto" else [a.strip() for a in attention.split(",") if a.strip()]
    if not names or any(n not in KERNELS for n in names):
        raise ValueError(f"--attention={attention}: give auto, torch, or a list of {', '.join(KERNELS)}")
    return [KERNELS[n] for n in names]


def train_step(bb, p, opt, zd, zc, g):
    """One step: for each micro-batch (one generator each in g, or one generator), pairs from the
    cached latents, t and eps, the construction's state, the backbone's clean estimate under the
    prompt, ||x0_hat - z_clean||^2, backward; then the gradients summed over micro-batches and
    ranks, divided by their number, and AdamW. Returns the mean loss (a tensor on the device)."""
    gens = list(g) if isinstance(g, (list, tuple)) else [g]
    t0_ = t0 or bb.t0  # main() sets t0; callers from outside (bench, notebooks) may leave it at 0
    kernels = attention_kernels(bb.device)
    opt.zero_grad(set_to_none=True)
    total = None
    with sdpa_kernel(kernels) if kernels else contextlib.nullcontext():  # backward too
        for gm in gens:
            idx = torch.randint(len(zd), (batch,), generator=gm)
            z_deg, z_clean = zd[idx].to(bb.device), zc[idx].to(bb.device)
            t = bridge.sample_t(batch, t0_, generator=gm)
            eps = torch.randn(z_deg.shape, generator=gm).to(bb.device)
            z_t, sigma = bridge.forward(bridge_name, z_deg, z_clean, eps, t.to(bb.device), t0_)
            v = velocity(bb, p, z_t, sigma)
            loss = (bridge.clean_estimate(z_t, sigma, v) - z_clean).square().mean()
            loss.backward()  # gradients add up over the micro-batches
            total = loss.detach() if total is None else total + loss.detach()
    n = len(gens) * ddp.joined()  # micro-batches in this step, over all ranks
    for q in p.parameters():
        if q.grad is not None:
            ddp.sum_(q.grad).div_(n)  # the sum over ranks (none with one process), then the mean
    opt.step()
    return ddp.sum_(total) / n


def velocity(bb, p, z_t, sigma):
    """The prompted velocity the sampler will use: the prompt's own, or, for a prompt with a
    coarse width, its coarse part on the bare backbone's fine one (bridge.coarse)."""
    width, g = p.coarse
    v = bb.velocity(z_t, sigma, [p])[0]
    if not width:
        return v
    with torch.no_grad():
        v_bare = bb.velocity(z_t, sigma)[0]
    return bridge.coarse(v, v_bare, width, g)


@torch.no_grad()
def encode_pairs(bb, pairs, desc):
    """Pixel pairs -> (z_deg, z_clean) latents on the backbone's device, computed once."""
    zd, zc = [], []
    for deg, clean in tqdm(pairs, desc=desc, leave=False, mininterval=2, disable=ddp.rank() > 0):
        zd.append(bb.encode(deg[None] * 2 - 1)[0])
        zc.append(bb.encode(clean[None] * 2 - 1)[0])
    return torch.stack(zd), torch.stack(zc)


@torch.no_grad()
def generate_clean(bb, n, size, frames, g):
    """Clean images (or clips) drawn from the frozen backbone with the null text (seed 004's
    data idea): Euler on the flow from noise to data, 30 steps. Pixels on the backbone's device."""
    shape = (1,) + bb.latent_shape(size, size, frames)
    out, ts = [], torch.linspace(1, 0, 31).tolist()
    for _ in tqdm(range(n), desc="generate clean data", leave=False, disable=ddp.rank() > 0):
        x = torch.randn(shape, generator=g).to(bb.device)
        for a, b in zip(ts[:-1], ts[1:]):
            x = x + (b - a) * bb.velocity(x, torch.full((1,), a, device=bb.device))[0]
        out.append(((bb.decode(x)[0] + 1) / 2).clamp(0, 1))
    return out


@torch.no_grad()
def validate(bb, p, zd, g_state):
    """The validation latents restored with the prompt: pixels on the backbone's device."""
    eps = torch.randn(zd.shape, generator=torch.Generator().manual_seed(g_state)).to(zd.device)
    z = bridge.sample(bridge_name, lambda x, s: velocity(bb, p, x, s), zd, eps, t0 or bb.t0)
    return ((bb.decode(z) + 1) / 2).clamp(0, 1)


def main():
    global size, frames, out, lr, t0, coarse, gain
    degrade.check(task)  # before anything is loaded or written
    bridge.check(bridge_name)
    attention_kernels("cuda")  # a bad --attention fails here, not after loading
    if accum < 1 or batch < 1:
        fail(f"--batch={batch} and --accum={accum} must be at least 1")
    if gain < 0:
        fail(f"--gain={gain} must be positive (0: the backbone's)")
    if threads:
        torch.set_num_threads(threads)
    dev = ddp.device(device)
    ddp.init(dev)  # torchrun: join the other ranks
    lead = ddp.rank() == 0  # rank 0 prints, validates and writes
    say = print if lead else (lambda *a, **k: None)
    bb = backbones.load(backbone or None, video=video, device=dev, vae_dtype=vae_dtype or None)
    size = size or bb.train_size
    frames = frames or (bb.train_frames if bb.video else 1)
    lr = lr or bb.train_lr
    t0 = t0 or bb.t0
    coarse = bb.coarse if coarse < 0 else coarse
    gain = gain or bb.gain
    if bb.video and not bb.frames_ok(frames):
        fail(f"--frames={frames}: {bb.name} needs a frame count of the form {bb.temporal}k+1")
    if size % bb.multiple:
        fail(f"--size={size} must be a multiple of {bb.multiple} for {bb.name}")
    out = out or os.path.join("runs", f"{bb.name}-{task}-{bridge_name}")
    if os.path.exists(out) and not os.path.isdir(out):
        fail(f"--out={out} is a file; train.py writes a folder")
    if lead:
        os.makedirs(out, exist_ok=True)
    ckpt_path = os.path.join(out, f"{task}.ckpt.pt")

    # ----- data: made and encoded once (deterministic in the seed, so --resume and every rank
    # rebuild the same)
    g_data = torch.Generator().manual_seed(seed)
    clean = None
    if data_source == "generate":
        clean = [c.cpu() for c in generate_clean(bb, generate_count, size, frames, g_data)]
    pairs = data.make_pairs(data_source, task, pool + val_pairs, size, frames, g_data, bb.video, clean)
    zd, zc = encode_pairs(bb, pairs[:pool], f"encode {pool} pairs")
    vd, _ = encode_pairs(bb, pairs[pool:], "encode val pairs")
    val_clean = torch.stack([c for _, c in pairs[pool:]])
    val_deg = torch.stack([d for d, _ in pairs[pool:]])
    say(f"data: {data_source} / {task}: {len(zd)} training pairs and {len(vd)} validation pairs of "
        f"{tuple(pairs[0][1].shape)} px, latents {tuple(zd.shape[1:])}")

    # ----- the prompt: the only thing that learns
    if grad_ckpt:
        bb.transformer.enable_gradient_checkpointing()
    torch.manual_seed(seed)  # the bank's random init, the same on every rank
    p = bb.new_prompt(task=task, bridge=bridge_name, t0=t0, **({"coarse": coarse, "gain": gain} if coarse else {}))
    opt = torch.optim.AdamW(p.parameters(), lr=lr)
    slots = range(ddp.rank() * accum, (ddp.rank() + 1) * accum)  # this rank's micro-batches
    gens = [torch.Generator().manual_seed(seed + 1 + 1000 * j) for j in slots]
    start, log = 0, []
    if resume and os.path.isfile(ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        states = ck["rng"] if isinstance(ck["rng"], list) else [ck["rng"]]
        if len(states) != ddp.world() * accum:
            fail(f"{ckpt_path} was made with {len(states)} micro-batches per step (processes x --accum); "
                 f"this run has {ddp.world()} x {accum}")
        p.load_state_dict(ck["prompt"])
        opt.load_state_dict(ck["optimizer"])
        for g, j in zip(gens, slots):
            g.set_state(states[j])
        start, log = ck["step"], ck["log"]
        say(f"resumed from {ckpt_path} at step {start}")
    elif resume:
        say(f"--resume: no checkpoint at {ckpt_path}, starting fresh")
    n_train = sum(q.numel() for q in p.parameters())
    say(f"backbone {bb.name} on {dev}: frozen; prompt {p.shape[0]}x{p.shape[1]} + {p.shape[2]} gates = "
        f"{n_train:,} trainable numbers; bridge {bridge_name}, T0 {t0}, lr {lr}, "
        + (f"coarse {coarse} latent px, gain {gain}, " if coarse else "") +
        f"batch {batch} x {accum} micro-batches x {ddp.world()} processes")

    def save_ckpt(step, states):
        state = dict(prompt=p.state_dict(), optimizer=opt.state_dict(), rng=states, step=step,
                     log=log, config=dict(task=task, bridge=bridge_name, t0=t0, backbone=bb.name, seed=seed))
        tmp = ckpt_path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, ckpt_path)
        prompt_lib.save(p, os.path.join(out, f"{task}.safetensors"))

    t_start = time.time()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"train {task}", mininterval=2, disable=not lead)
    for step in bar:
        log.append(train_step(bb, p, opt, zd, zc, gens).item())
        bar.set_postfix(loss=f"{sum(log[-50:]) / len(log[-50:]):.4f}")
        if (step + 1) % val_every == 0 or step + 1 == steps:
            states = [s for per_rank in ddp.gather([g.get_state() for g in gens]) for s in per_rank]
            if not lead:
                continue
            rec = validate(bb, p, vd, seed + 2).cpu()
            q = lambda x: (x * 255).round() / 255  # noqa: E731
            val_psnr = sum(psnr(q(r), q(c)) for r, c in zip(rec, val_clean)) / len(rec)
            base = sum(psnr(d, c) for d, c in zip(val_deg, val_clean)) / len(val_deg)
            tqdm.write(f"step {step + 1}: loss {sum(log[-50:]) / len(log[-50:]):.4f}, val PSNR {val_psnr:.2f} dB "
                       f"(degraded {base:.2f} dB), {time.time() - t_start:.0f} s")
            show = lambda x: x[:, x.shape[1] // 2] if x.ndim == 4 else x  # noqa: E731
            sheet = torch.cat([torch.cat([show(d), show(r), show(c)], 2)
                               for d, r, c in list(zip(val_deg, rec, val_clean))[:4]], 1)
            data.write_image(os.path.join(out, f"{task}_val.png"), sheet)
            save_ckpt(step + 1, states)
    if start >= steps:
        say(f"nothing to do: the checkpoint is already at step {start} of {steps}")
    say(f"prompt written to {os.path.join(out, task + '.safetensors')} "
        f"({time.time() - t_start:.0f} s); use it: python sample.py IN --tasks={os.path.join(out, task + '.safetensors')}")
    ddp.finish()


if __name__ == "__main__":
    parse(globals(), sys.argv[1:], ALIASES)
    with fail.guard():
        main()
