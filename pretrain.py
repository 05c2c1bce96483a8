"""Pre-train the tiny default backbones from scratch on the photos scikit-image/-learn ship.

    python pretrain.py                         # both, the full recipe (the shipped weights)
    python pretrain.py --which=tiny-flux --vae_steps=5 --tf_steps=5 --out=/tmp/w   # a smoke run

Ordinary text-to-image / text-to-video flow matching on clean data only (the models never see a
degradation). Per backbone:
  1. the VAE: random 32 px crops (images) or clips (video), L1 + MSE + tiny KL;
  2. its latent statistics -> the VAE's normalization (FLUX: shift/scale, Wan: per-channel);
  3. a cache of latents of random crops/clips with their captions (the VAE never runs again);
  4. the transformer: z_t = (1-t) x0 + t eps, loss ||v - (eps - x0)||^2, captions dropped to the
     null text 20% of the time, so the context pathway carries information as in the real models;
  5. save the diffusers folder layout in --out/<name>, with pretrain.json and a sample sheet.
The held-out photos (data.HELD_OUT) are never used.
"""
import ast
import json
import math
import os
import sys
import time

import torch
from tqdm import tqdm

import backbones
import data
import tiny

# ---------------------------------------------------------------- config (override: --key=value)
which = "both"
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
seed = 0
threads = 2
flux_vae_steps, flux_tf_steps = 2400, 8000
wan_vae_steps, wan_tf_steps = 800, 4000
vae_lr, tf_lr = 1e-3, 1e-3
caption_dropout = 0.2
flux_cache = (6000, 1500)  # cached latents of 64 px and 128 px crops
wan_cache = 1200           # cached latents of 9-frame 64 px clips
vae_steps = tf_steps = None  # set both backbones' step counts at once (smoke runs)


def configure(argv):
    """--key=value overrides of the config above (values as Python literals: tuples, None)."""
    global flux_vae_steps, wan_vae_steps, flux_tf_steps, wan_tf_steps
    for arg in argv:
        key, val = arg.lstrip("-").split("=", 1)
        if key not in globals():
            sys.exit(f"pretrain.py: unknown option --{key}")
        try:
            globals()[key] = ast.literal_eval(val)
        except (ValueError, SyntaxError):
            globals()[key] = val  # a plain string
    if vae_steps is not None:
        flux_vae_steps = wan_vae_steps = vae_steps
    if tf_steps is not None:
        flux_tf_steps = wan_tf_steps = tf_steps
    torch.set_num_threads(threads)


def lr_at(step, total, base, warmup=100):
    """Linear warm-up, then cosine decay to 10%."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def photos():
    imgs = {n: data.photo(n) for n in data.TRAIN_PHOTOS}
    return imgs, list(imgs)


def train_vae(vae, batch_fn, steps, encode_fn):
    opt = torch.optim.AdamW(vae.parameters(), lr=vae_lr, weight_decay=0.0)
    vae.train()
    bar = tqdm(range(steps), desc="vae", mininterval=5)
    for step in bar:
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step, steps, vae_lr)
        x = batch_fn() * 2 - 1
        post = encode_fn(x)
        # decode the posterior's mode (a plain autoencoder with a tiny KL pull): with sampled
        # latents this small VAE learned several times slower
        rec = vae.decode(post.mode()).sample
        kl = post.kl().mean() / x[0].numel()
        loss = (rec - x).abs().mean() + (rec - x).square().mean() + 1e-6 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            psnr = -10 * math.log10(((rec.detach() - x) / 2).square().mean().item() + 1e-12)
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{psnr:.1f}")
    vae.eval().requires_grad_(False)
    return psnr


def train_transformer(tf, batches, steps, call):
    opt = torch.optim.AdamW(tf.parameters(), lr=tf_lr, weight_decay=0.01)
    tf.train()
    g = torch.Generator().manual_seed(seed + 2)
    ema, bar = None, tqdm(range(steps), desc="transformer", mininterval=5)
    for step in bar:
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step, steps, tf_lr)
        x0, ctx, pooled = batches(step)
        n = x0.shape[0]
        # t: half logit-normal (the middle, where content forms), half uniform (the ends)
        t = torch.where(torch.rand(n, generator=g) < 0.5, torch.sigmoid(torch.randn(n, generator=g)),
                        torch.rand(n, generator=g))
        eps = torch.randn(x0.shape, generator=g)
        tb = t.reshape(-1, *([1] * (x0.ndim - 1)))
        v = call(tf, (1 - tb) * x0 + tb * eps, t, ctx, pooled)
        loss = (v - (eps - x0)).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tf.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.99 * ema + 0.01 * loss.item()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{ema:.4f}")
    tf.eval().requires_grad_(False)
    return ema


@torch.no_grad()
def caption_contexts(parts, captions, zero_pad):
    """Context (and tiny pooled vector) of every caption and of the null text, computed once."""
    texts = [""] + captions
    ctx, mask = backbones.t5_context(parts["tokenizer"], parts["text_encoder"], texts, tiny.TEXT_LEN, zero_pad)
    return ctx, backbones.tiny_pooled(ctx, mask)


def pick_context(idx, ctx, pooled, g):
    """Caption index -> its context, dropped to the null text (index 0) with caption_dropout."""
    idx = torch.where(torch.rand(len(idx), generator=g) < caption_dropout, torch.zeros_like(idx), idx)
    return ctx[idx], pooled[idx]


def pretrain_flux(folder):
    t_start = time.time()
    parts = tiny.build("tiny-flux", seed)
    imgs, names = photos()
    g = torch.Generator().manual_seed(seed)
    crop = lambda size: data.random_crop(imgs[names[torch.randint(len(names), (), generator=g)]], size, g)  # noqa: E731
    vae = parts["vae"]
    # the VAE is convolutional: 32 px crops teach it as well as big ones, 4x cheaper
    print(f"[tiny-flux] 1/4 VAE, {flux_vae_steps} steps on 32 px crops of {len(names)} photos")
    vae_psnr = train_vae(vae, lambda: torch.stack([crop(32) for _ in range(32)]), flux_vae_steps,
                         lambda x: vae.encode(x).latent_dist)
    print("[tiny-flux] 2/4 latent statistics and cache")
    caps = [data.TRAIN_PHOTOS[n] for n in names]
    cache = {}
    with torch.no_grad():
        for size, count in zip((64, 128), flux_cache):
            zs, ids = [], []
            for i in tqdm(range(0, count, 50), desc=f"encode {size}px", mininterval=5):
                which_ = torch.randint(len(names), (min(50, count - i),), generator=g)
                x = torch.stack([data.random_crop(imgs[names[k]], size, g) for k in which_.tolist()])
                zs.append(vae.encode(x * 2 - 1).latent_dist.mode())
                ids.append(which_ + 1)  # 0 is the null text
            cache[size] = (torch.cat(zs), torch.cat(ids))
    allz = cache[64][0]
    shift, scale = allz.mean().item(), 1.0 / allz.std().item()
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    for size in cache:
        cache[size] = ((cache[size][0] - shift) * scale, cache[size][1])
    ctx, pooled = caption_contexts(parts, caps, zero_pad=False)
    ids_txt = torch.zeros(tiny.TEXT_LEN, 3)

    def batches(step):
        size, n = (64, 32) if step % 2 == 0 else (128, 8)  # same token count, two scales
        z, idx = cache[size]
        pick = torch.randint(len(z), (n,), generator=g)
        c, p = pick_context(idx[pick], ctx, pooled, g)
        return z[pick], c, p

    def call(tf, x, t, c, p):
        h, w = x.shape[-2:]
        out = tf(hidden_states=backbones.FluxBackbone.pack(x), encoder_hidden_states=c, pooled_projections=p,
                 timestep=t, img_ids=backbones.FluxBackbone.image_ids(h, w, "cpu"), txt_ids=ids_txt,
                 return_dict=False)[0]
        return backbones.FluxBackbone.unpack(out, h, w)

    print(f"[tiny-flux] 3/4 transformer, {flux_tf_steps} steps (batch 32 x 64 px / 8 x 128 px)")
    loss = train_transformer(parts["transformer"], batches, flux_tf_steps, call)
    print("[tiny-flux] 4/4 save")
    tiny.save(folder, parts, "tiny-flux")
    return dict(vae_psnr_db=round(vae_psnr, 2), final_loss=round(loss, 4), latent_shift=shift,
                latent_scale=scale, minutes=round((time.time() - t_start) / 60, 1))


def pretrain_wan(folder):
    t_start = time.time()
    parts = tiny.build("tiny-wan", seed + 1)
    imgs, names = photos()
    gif = data.gif_frames()
    g = torch.Generator().manual_seed(seed + 1)

    def clip(size=64):
        if torch.rand((), generator=g) < 0.05:
            return data.gif_clip(gif, size, 9, g), len(names) + 1
        k = torch.randint(len(names), (), generator=g).item()
        return data.camera_clip(imgs[names[k]], size, 9, g), k + 1

    vae = parts["vae"]
    print(f"[tiny-wan] 1/4 VAE, {wan_vae_steps} steps on 9-frame 32 px clips")
    vae_psnr = train_vae(vae, lambda: torch.stack([clip(32)[0] for _ in range(8)]), wan_vae_steps,
                         lambda x: vae.encode(x).latent_dist)
    print("[tiny-wan] 2/4 latent statistics and cache")
    zs, ids = [], []
    with torch.no_grad():
        for i in tqdm(range(0, wan_cache, 8), desc="encode clips", mininterval=5):
            batch = [clip() for _ in range(min(8, wan_cache - i))]
            zs.append(vae.encode(torch.stack([b[0] for b in batch]) * 2 - 1).latent_dist.mode())
            ids.append(torch.tensor([b[1] for b in batch]))
    z, idx = torch.cat(zs), torch.cat(ids)
    mean, std = z.mean((0, 2, 3, 4)), z.std((0, 2, 3, 4))
    vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())
    z = (z - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)
    caps = [data.TRAIN_PHOTOS[n] for n in names] + [data.GIF_CAPTION]
    ctx, _ = caption_contexts(parts, caps, zero_pad=True)

    def batches(step):
        pick = torch.randint(len(z), (16,), generator=g)
        c, _ = pick_context(idx[pick], ctx, ctx[:, 0], g)
        return z[pick], c, None

    def call(tf, x, t, c, _):
        return tf(hidden_states=x, timestep=t * 1000, encoder_hidden_states=c, return_dict=False)[0]

    print(f"[tiny-wan] 3/4 transformer, {wan_tf_steps} steps (batch 16 x 9 frames x 64 px)")
    loss = train_transformer(parts["transformer"], batches, wan_tf_steps, call)
    print("[tiny-wan] 4/4 save")
    tiny.save(folder, parts, "tiny-wan")
    return dict(vae_psnr_db=round(vae_psnr, 2), final_loss=round(loss, 4),
                minutes=round((time.time() - t_start) / 60, 1))


@torch.no_grad()
def sample_sheet(folder, video, path):
    """A few samples from pure noise with the null text (Euler, 30 steps): a look at the prior."""
    bb = backbones.load(folder, device="cpu")
    g = torch.Generator().manual_seed(0)
    shape = (4, 16, 3, 32, 32) if video else (4, 16, 32, 32)
    x = torch.randn(shape, generator=g)
    ts = torch.linspace(1, 0, 31)
    for t, t2 in zip(ts[:-1], ts[1:]):
        x = x + (t2 - t) * bb.velocity(x, torch.full((4,), float(t)))[0]
    img = (bb.decode(x) + 1) / 2
    frames = img[:, :, 0] if video else img
    data.write_image(path, torch.cat(list(frames), dim=2))


if __name__ == "__main__":
    configure(sys.argv[1:])
    kinds = ["tiny-flux", "tiny-wan"] if which == "both" else [which]
    for kind in kinds:
        folder = os.path.join(out, kind)
        os.makedirs(folder, exist_ok=True)
        log = (pretrain_flux if kind == "tiny-flux" else pretrain_wan)(folder)
        log.update(seed=seed, steps=dict(vae=flux_vae_steps if kind == "tiny-flux" else wan_vae_steps,
                                         transformer=flux_tf_steps if kind == "tiny-flux" else wan_tf_steps),
                   torch_threads=threads, held_out=list(data.HELD_OUT))
        json.dump(log, open(os.path.join(folder, "pretrain.json"), "w"), indent=1)
        sample_sheet(folder, kind == "tiny-wan", os.path.join(folder, "samples.png"))
        print(f"[{kind}] done: {log}")
