"""Learn one task prompt on a frozen backbone (paper eqs. 7 and 10).

    python train.py --task=haze                          # the tiny default backbone, EBR bridge
    python train.py --backbone wan --task lowlight        # Wan 2.1 (needs its weights)
    python train.py --task=rain --bridge=naive --data=path/to/pairs --steps=20000

Only the prompt bank and its gates are in the optimizer. Latents of the training pairs are
computed once (the VAE never runs in the loop) and the null context once (in the backbone).
Each step: pick pairs, draw t and eps, build the construction's state, ask the backbone for
x0_hat = z_t - sigma v under the prompt, and regress it onto z_clean.
Writes <out>/<task>.safetensors (the prompt sample.py takes), <out>/<task>.ckpt.pt (optimizer,
RNG; --resume continues from it) and <out>/<task>_val.png (degraded | restored | clean).
"""
import math
import os
import sys
import time

import torch
from tqdm import tqdm

import backbones
import bridge
import data
import degrade
import prompt as prompt_lib
from cli import fail, parse

# ---------------------------------------------------------------- config (override: --key=value)
backbone = ""        # tiny-flux (default), tiny-wan, flux, wan, or a local folder
video = False        # with no --backbone: the tiny video backbone instead of the image one
task = "haze"
bridge_name = "ebr"  # --bridge: ebr | ddbm | naive
t0 = bridge.T0
data_source = "photos"  # --data: photos | generate | folder (input/ + gt/, or clean images) | list.json
steps = 1500
batch = 4
lr = 0.0             # AdamW; 0: the backbone's default (5e-4 as in the paper for FLUX/Wan)
size = 0             # crop size in pixels (0: the backbone's default)
frames = 0           # clip length for video backbones (0: the backbone's default)
pool = 256           # training pairs made and encoded once
val_pairs = 8        # held-out pairs (not in the pool) for validation PSNR
val_every = 250
generate_count = 32  # --data=generate: clean images drawn from the frozen backbone
out = ""             # output folder (default runs/<backbone>-<task>-<bridge>)
resume = False
grad_ckpt = False
seed = 0
device = ""
threads = 0          # torch CPU threads (0: torch's default)
ALIASES = {"bridge": "bridge_name", "data": "data_source"}


def psnr(a, b):
    return -10 * math.log10(((a - b).square().mean().item()) + 1e-12)


def train_step(bb, p, opt, zd, zc, g):
    """One step: pairs from the cached latents, t and eps, the construction's state, the
    backbone's clean estimate under the prompt, ||x0_hat - z_clean||^2, AdamW. Returns the loss."""
    idx = torch.randint(len(zd), (batch,), generator=g)
    z_deg, z_clean = zd[idx].to(bb.device), zc[idx].to(bb.device)
    t = bridge.sample_t(batch, t0, generator=g)
    eps = torch.randn(z_deg.shape, generator=g).to(bb.device)
    z_t, sigma = bridge.forward(bridge_name, z_deg, z_clean, eps, t.to(bb.device), t0)
    v = bb.velocity(z_t, sigma, [p])[0]
    loss = (bridge.clean_estimate(z_t, sigma, v) - z_clean).square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


@torch.no_grad()
def encode_pairs(bb, pairs, desc):
    """Pixel pairs -> (z_deg, z_clean) latents, computed once."""
    zd, zc = [], []
    for deg, clean in tqdm(pairs, desc=desc, leave=False, mininterval=2):
        zd.append(bb.encode(deg[None] * 2 - 1)[0].cpu())
        zc.append(bb.encode(clean[None] * 2 - 1)[0].cpu())
    return torch.stack(zd), torch.stack(zc)


@torch.no_grad()
def generate_clean(bb, n, size, frames, g):
    """Clean images (or clips) drawn from the frozen backbone with the null text (seed 004's
    data idea): Euler on the flow from noise to data, 30 steps."""
    lat = size // (bb.multiple // 2)  # the latent size; multiple = VAE factor x patch 2
    shape = (1, 16, (frames - 1) // bb.temporal + 1, lat, lat) if bb.video else (1, 16, lat, lat)
    out, ts = [], torch.linspace(1, 0, 31)
    for _ in tqdm(range(n), desc="generate clean data", leave=False):
        x = torch.randn(shape, generator=g)
        for a, b in zip(ts[:-1], ts[1:]):
            x = x + (b - a) * bb.velocity(x, torch.full((1,), float(a)))[0].cpu()
        out.append(((bb.decode(x)[0].cpu() + 1) / 2).clamp(0, 1))
    return out


@torch.no_grad()
def validate(bb, p, zd, zc, clean_px, g_state):
    g = torch.Generator().manual_seed(g_state)
    eps = torch.randn(zd.shape, generator=g)
    v = lambda x, s: bb.velocity(x, s, [p])[0].cpu()  # noqa: E731
    z = bridge.sample(bridge_name, v, zd, eps, t0)
    rec = ((bb.decode(z).cpu() + 1) / 2).clamp(0, 1)
    q = lambda x: (x * 255).round() / 255  # noqa: E731
    return sum(psnr(q(r), q(c)) for r, c in zip(rec, clean_px)) / len(rec), rec


def main():
    global size, frames, out, lr
    degrade.check(task)  # before anything is loaded or written
    bridge.check(bridge_name)
    if threads:
        torch.set_num_threads(threads)
    bb = backbones.load(backbone or None, video=video, device=device or None)
    size = size or bb.train_size
    frames = frames or (bb.train_frames if bb.video else 1)
    lr = lr or bb.train_lr
    if bb.video and not bb.frames_ok(frames):
        fail(f"--frames={frames}: {bb.name} needs a frame count of the form {bb.temporal}k+1")
    if size % bb.multiple:
        fail(f"--size={size} must be a multiple of {bb.multiple} for {bb.name}")
    out = out or os.path.join("runs", f"{bb.name}-{task}-{bridge_name}")
    if os.path.exists(out) and not os.path.isdir(out):
        fail(f"--out={out} is a file; train.py writes a folder")
    os.makedirs(out, exist_ok=True)
    ckpt_path = os.path.join(out, f"{task}.ckpt.pt")

    # ----- data: made and encoded once (deterministic in the seed, so --resume rebuilds the same)
    g_data = torch.Generator().manual_seed(seed)
    clean = generate_clean(bb, generate_count, size, frames, g_data) if data_source == "generate" else None
    pairs = data.make_pairs(data_source, task, pool + val_pairs, size, frames, g_data, bb.video, clean)
    zd, zc = encode_pairs(bb, pairs[:pool], f"encode {pool} pairs")
    vd, vc = encode_pairs(bb, pairs[pool:], "encode val pairs")
    val_clean = torch.stack([c for _, c in pairs[pool:]])
    val_deg = torch.stack([d for d, _ in pairs[pool:]])
    print(f"data: {data_source} / {task}: {len(zd)} training pairs and {len(vd)} validation pairs of "
          f"{tuple(pairs[0][1].shape)} px, latents {tuple(zd.shape[1:])}")

    # ----- the prompt: the only thing that learns
    if grad_ckpt:
        bb.transformer.enable_gradient_checkpointing()
    torch.manual_seed(seed)  # the bank's random init
    p = bb.new_prompt(task=task, bridge=bridge_name, t0=t0)
    opt = torch.optim.AdamW(p.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    start, log = 0, []
    if resume and os.path.isfile(ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        p.load_state_dict(ck["prompt"])
        opt.load_state_dict(ck["optimizer"])
        g.set_state(ck["rng"])
        start, log = ck["step"], ck["log"]
        print(f"resumed from {ckpt_path} at step {start}")
    elif resume:
        print(f"--resume: no checkpoint at {ckpt_path}, starting fresh")
    n_train = sum(q.numel() for q in p.parameters())
    print(f"backbone {bb.name}: frozen; prompt {p.shape[0]}x{p.shape[1]} + {p.shape[2]} gates = "
          f"{n_train:,} trainable numbers; bridge {bridge_name}, T0 {t0}, lr {lr}, batch {batch}")

    def save_ckpt(step):
        state = dict(prompt=p.state_dict(), optimizer=opt.state_dict(), rng=g.get_state(), step=step,
                     log=log, config=dict(task=task, bridge=bridge_name, t0=t0, backbone=bb.name, seed=seed))
        tmp = ckpt_path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, ckpt_path)
        prompt_lib.save(p, os.path.join(out, f"{task}.safetensors"))

    t_start = time.time()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"train {task}", mininterval=2)
    for step in bar:
        log.append(train_step(bb, p, opt, zd, zc, g))
        bar.set_postfix(loss=f"{sum(log[-50:]) / len(log[-50:]):.4f}")
        if (step + 1) % val_every == 0 or step + 1 == steps:
            val_psnr, rec = validate(bb, p, vd, vc, val_clean, seed + 2)
            base = sum(psnr(d, c) for d, c in zip(val_deg, val_clean)) / len(val_deg)
            tqdm.write(f"step {step + 1}: loss {sum(log[-50:]) / len(log[-50:]):.4f}, val PSNR {val_psnr:.2f} dB "
                       f"(degraded {base:.2f} dB), {time.time() - t_start:.0f} s")
            show = lambda x: x[:, x.shape[1] // 2] if x.ndim == 4 else x  # noqa: E731
            sheet = torch.cat([torch.cat([show(d), show(r), show(c)], 2)
                               for d, r, c in list(zip(val_deg, rec, val_clean))[:4]], 1)
            data.write_image(os.path.join(out, f"{task}_val.png"), sheet)
            save_ckpt(step + 1)
    if start >= steps:
        print(f"nothing to do: the checkpoint is already at step {start} of {steps}")
    print(f"prompt written to {os.path.join(out, task + '.safetensors')} "
          f"({time.time() - t_start:.0f} s); use it: python sample.py IN --tasks={os.path.join(out, task + '.safetensors')}")


if __name__ == "__main__":
    parse(globals(), sys.argv[1:], ALIASES)
    with fail.guard():
        main()
