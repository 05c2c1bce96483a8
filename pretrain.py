"""Pre-train the tiny backbones from scratch: on real photos (docs/tiny.md), or on the shapes world.

    python pretrain.py                                  # both photo/clip backbones, the shipped recipe
    python pretrain.py --which=tiny-shapes              # the shapes world (shapes.py, docs/shapes.md)
    python pretrain.py --which=tiny-flux --device=cuda  # on a GPU (minutes instead of hours)
    python pretrain.py --pip_only --vae_steps=5 --tf_steps=5 --out=/tmp/w --work=/tmp/w/work   # smoke run

Plain text-to-image / text-to-video flow matching on clean photos (scikit-image's, scikit-learn's,
Debian's wallpaper packages, or a --photos folder; never photos.HELD_OUT). Per backbone, in stages
that save into --work/<name>/ and resume when run again: a bank of crops (or virtual-camera clips);
the VAE (L1 + MSE + a tiny KL); latent statistics for its normalization and the cached latents; the
transformer (captions dropped 20% of the time); the diffusers folder layout in --out/<name>.
tiny-shapes draws its images instead of cropping photos, and trains its T5 encoder (one token per
word) with the transformer, on times shifted towards noise, keeping a moving average of the
weights; it is judged by shapes.prior_score (samples beside real test images, and a number).
"""
import copy
import json
import math
import os
import sys
import time

import torch
from tqdm import tqdm

import backbones
import metrics
from data import media, pairs
from plumbing import tiny
from data import photos as catalogue  # `photos` is the --photos option
from plumbing.cli import fail, parse

# ---------------------------------------------------------------- config (override: --key=value)
which = "both"            # tiny-flux | tiny-wan | tiny-shapes | both (the two photo/clip backbones)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")  # where the backbones are written
work = os.path.join("runs", "pretrain")  # crop banks and resumable checkpoints
photos = ""               # a folder of extra training photos (besides the shipped and Debian ones)
pip_only = False          # train on the pip-shipped photos alone (the CI smoke test)
device = "cpu"            # cpu | cuda
bf16 = True               # bf16 autocast (AMX on recent CPUs, tensor cores on GPUs)
threads = 2               # torch CPU threads
seed = 0                  # seeds the models' init, the banks and the batches
flux_vae_steps = 16000    # tiny-flux VAE steps (batches alternate vae_batch x 64 px, vae_batch/4 x 128 px)
flux_tf_steps = 12000     # tiny-flux transformer steps (batch tf_batch x 64 px, tf_batch/4 x 128 px)
wan_vae_steps = 10000     # tiny-wan VAE steps (batches of clip_batch 9-frame clips of 32 px)
wan_tf_steps = 6000       # tiny-wan transformer steps (batch 16 clips of 9 x 64 px)
shapes_vae_steps = 2500   # tiny-shapes VAE steps (batch shapes_vae_batch x 64 px drawn shapes)
shapes_tf_steps = 14000   # tiny-shapes transformer + text encoder steps
shapes_shift = 3.0        # tiny-shapes: training times t -> 3t / (1 + 2t), more of them near noise, where layout forms
shapes_ema = 0.999        # tiny-shapes: the moving average of the transformer's weights is what ships
shapes_bf16 = False       # fp32 for all of tiny-shapes: bf16 autocast is 1.5x slower for it on 2 AMX cores, 30x without AMX
shapes_vae_batch = 16     # drawn 64 px images per tiny-shapes VAE step
shapes_tf_batch = 32      # drawn 64 px images (latents) per tiny-shapes transformer step
judge_only = False        # tiny-shapes: only judge the prior already in --out again (samples.png, pretrain.json)
shapes_bank = 20000       # drawn training images of the shapes world kept in the bank
vae_steps = 0             # if set: both backbones' VAE steps (smoke runs)
tf_steps = 0              # if set: both backbones' transformer steps (smoke runs)
vae_batch = 32            # 64 px crops per VAE step (a quarter as many 128 px crops on odd steps)
tf_batch = 32             # 64 px latents per transformer step (a quarter as many 128 px on odd steps)
clip_batch = 8            # clips per tiny-wan VAE step
vae_lr = 1e-3             # AdamW learning rate of the VAEs (warm-up, cosine to 10%)
tf_lr = 1e-3              # AdamW learning rate of the transformers
caption_dropout = 0.2     # share of captions replaced by the null text
bank64 = 12000            # 64 px crops in the image bank
bank128 = 3000            # 128 px crops in the image bank
clips = 3000              # 9-frame 64 px clips in the video bank
eval_every = 1000         # steps between held-out VAE round-trip PSNR prints
save_every = 300          # seconds between checkpoints


def lr_at(step, total, base, warmup=100):
    """Linear warm-up, then cosine decay to 10%."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def training_photos():
    """name -> caption of every training photo on this machine (never a held-out one)."""
    names = dict(catalogue.PIP_PHOTOS) if pip_only else {n: catalogue.TRAIN_PHOTOS[n]
                                                         for n in catalogue.available(catalogue.TRAIN_PHOTOS)}
    if photos and not pip_only:
        files = media.list_images(photos)
        if not files:
            fail(f"--photos={photos}: no images there")
        names.update({f: "a photo" for f in files})
    return names


def load_photo(name):
    return media.read_image(name, catalogue.MAX_SIDE) if os.path.isfile(name) else catalogue.photo(name)


def levels(img, lo):
    """The photo at short sides lo, lo*sqrt2, ..., up to its own: the scales crops are cut at."""
    out, short = [], min(img.shape[-2:])
    s = lo
    while s < short:
        h, w = img.shape[-2:]
        out.append(media.resize(img, round(h * s / short), round(w * s / short)))
        s *= 2 ** 0.5
    return out + [img]


def save_state(path, state):
    """Atomic and re-read before the rename: a run killed mid-save keeps the last checkpoint."""
    media.atomic(path, lambda tmp: torch.save(state, tmp), lambda tmp: torch.load(tmp, weights_only=False))


def load_state(path):
    return torch.load(path, map_location="cpu", weights_only=False) if os.path.isfile(path) else None


def cached(path, make):
    """make() once, saved at path; later runs load it."""
    st = load_state(path)
    if st is None:
        st = make()
        save_state(path, st)
    return st


# --------------------------------------------------------------------------- stage 1: banks

def image_bank(names, g):
    """uint8 crops of every photo in equal share, at random scales and positions:
    {64: [N, 3, 64, 64], 128: [M, 3, 128, 128], 'ids': caption index per crop (1-based)}."""
    bank = {64: [], 128: [], "ids64": [], "ids128": []}
    for k, name in enumerate(tqdm(names, desc="crop bank", mininterval=5)):
        lv = levels(load_photo(name), 256)  # the evaluation crops see photos at short side 256..1024
        for size, total in ((64, bank64), (128, bank128)):
            n = total // len(names) + (k < total % len(names))
            for _ in range(n):
                img = lv[torch.randint(len(lv), (), generator=g).item()]
                y = torch.randint(img.shape[1] - size + 1, (), generator=g).item()
                x = torch.randint(img.shape[2] - size + 1, (), generator=g).item()
                bank[size].append((img[:, y:y + size, x:x + size] * 255).round().to(torch.uint8))
                bank[f"ids{size}"].append(k + 1)
    return {key: torch.stack(v) if key in (64, 128) else torch.tensor(v) for key, v in bank.items()}


def clip_bank(names, g):
    """uint8 9-frame virtual-camera clips of 64 px (plus 5% from the shipped GIF):
    {'clips': [N, 3, 9, 64, 64], 'ids': caption index per clip (1-based; len(names)+1 = the GIF)}."""
    gif, out, ids = catalogue.gif_frames(), [], []
    n_gif = clips // 20
    for k, name in enumerate(tqdm(names, desc="clip bank", mininterval=5)):
        lv = levels(load_photo(name), 128)
        n = (clips - n_gif) // len(names) + (k < (clips - n_gif) % len(names))
        for _ in range(n):
            img = lv[torch.randint(len(lv), (), generator=g).item()]
            out.append((pairs.camera_clip(img, 64, 9, g) * 255).round().to(torch.uint8))
            ids.append(k + 1)
    for _ in range(n_gif):
        out.append((pairs.gif_clip(gif, 64, 9, g) * 255).round().to(torch.uint8))
        ids.append(len(names) + 1)
    return {"clips": torch.stack(out), "ids": torch.tensor(ids)}


# --------------------------------------------------------------------------- the training loop

def fit(desc, model, loss_fn, steps, lr, weight_decay, path, evaluate=None, amp=None, ema=0.0):
    """The one loop of all four trainings: AdamW, warm-up + cosine, bf16 autocast, gradient clip,
    a checkpoint (model, optimizer, RNG, step, log) every save_every seconds; resumes from `path`.
    ema > 0: an exponential moving average of the weights (decay `ema`) is kept, and is what the
    model holds at the end (its samples are cleaner than the last step's weights)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    avg = copy.deepcopy(model).requires_grad_(False) if ema else None
    g = torch.Generator().manual_seed(seed)
    start, log = 0, dict(loss=[], eval=[], seconds=0.0)
    st = load_state(path)
    if st is not None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        g.set_state(st["rng"])
        start, log = st["step"], st["log"]
        if avg is not None:
            avg.load_state_dict(st["ema"])
        print(f"  resumed {desc} at step {start} of {steps}")
    model.train()
    t_last = t_start = time.time()
    smooth = log["loss"][-1] if log["loss"] else None
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=desc, mininterval=10)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr)
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16 if amp is None else amp):
            loss = loss_fn(step, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if avg is not None:
            with torch.no_grad():
                for a, p in zip(avg.parameters(), model.parameters()):
                    a.lerp_(p, 1 - ema)
        smooth = loss.item() if smooth is None else 0.99 * smooth + 0.01 * loss.item()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{smooth:.4f}")
            log["loss"].append(smooth)
        done = step + 1 == steps
        if evaluate and ((step + 1) % eval_every == 0 or done):
            model.eval()
            log["eval"].append((step + 1, evaluate()))
            model.train()
            tqdm.write(f"  {desc} step {step + 1}: loss {smooth:.4f}, held-out {log['eval'][-1][1]}")
        if done or time.time() - t_last > save_every:
            log["seconds"] += time.time() - t_start
            t_start = t_last = time.time()
            save_state(path, dict(model=model.state_dict(), optimizer=opt.state_dict(), rng=g.get_state(),
                                  step=step + 1, log=log, ema=None if avg is None else avg.state_dict()))
    if avg is not None:
        model.load_state_dict(avg.state_dict())
    model.eval().requires_grad_(False)
    return log


def vae_loss(vae, x):
    """L1 + MSE of the round trip through the posterior's mode (a plain autoencoder with a tiny
    KL pull: sampled latents made this small VAE learn several times slower)."""
    post = vae.encode(x).latent_dist
    rec = vae.decode(post.mode()).sample.float()
    kl = post.kl().float().mean() / x[0].numel()
    return (rec - x).abs().mean() + (rec - x).square().mean() + 1e-6 * kl


def flip(x, g):
    """A random horizontal flip per sample."""
    m = (torch.rand(len(x), generator=g) < 0.5).to(x.device).view(-1, *[1] * (x.ndim - 1))
    return torch.where(m, x.flip(-1), x)


@torch.no_grad()
def round_trip_psnr(vae, items):
    """Mean PSNR (dB, uint8-quantized) of held-out pixels [3, ...] through the VAE and back."""
    recs = [(vae.decode(vae.encode(x[None].to(device) * 2 - 1).latent_dist.mode()).sample[0].float().cpu() + 1) / 2
            for x in items]
    return round(metrics.mean_psnr(recs, items), 2)


def vae_stage(name, vae, vae_step, steps, held, wdir, latents, amp=None):
    """Stages 2 and 3 of every backbone: the VAE fitted (its round trip on `held` measured), then
    latents(encode) of its bank, cached: the normalized latents and their statistics."""
    print(f"[{name}] 2/5 VAE, {steps} steps")
    vlog = fit("vae", vae, vae_step, steps, vae_lr, 0.0, os.path.join(wdir, "vae.pt"), lambda: round_trip_psnr(vae, held),
               amp=amp)
    print(f"[{name}] 3/5 latent statistics and the bank's latents")
    return vlog, cached(os.path.join(wdir, "latents.pt"), lambda: latents(lambda x: vae.encode(x).latent_dist.mode()))


def transformer_loss(tf, z, ctx, pooled, idx, g, call):
    """Flow matching on cached latents with captions (null text with probability caption_dropout)."""
    n = len(z)
    t = torch.where(torch.rand(n, generator=g) < 0.5, torch.sigmoid(torch.randn(n, generator=g)),
                    torch.rand(n, generator=g))  # half logit-normal (where content forms), half uniform
    eps = torch.randn(z.shape, generator=g).to(z.device)
    idx = torch.where(torch.rand(n, generator=g) < caption_dropout, torch.zeros_like(idx), idx).to(z.device)
    tb = t.to(z.device).view(-1, *[1] * (z.ndim - 1))
    v = call(tf, (1 - tb) * z + tb * eps, t.to(z.device), ctx[idx], None if pooled is None else pooled[idx])
    return (v.float() - (eps - z)).square().mean()


@torch.no_grad()
def caption_contexts(parts, captions, zero_pad):
    """Context (and tiny pooled vector) of the null text (index 0) and every caption, computed once."""
    ctx, pooled = backbones.t5_context(parts["tokenizer"], parts["text_encoder"], [""] + captions,
                                       tiny.TEXT_LEN, zero_pad)
    return ctx.to(device), pooled.to(device)


@torch.no_grad()
def encode_all(encode, pixels, batch=64, amp=None):
    """Latents (posterior modes) of a uint8 bank, in batches; under the training's bf16 autocast
    (in fp32 the 15,000 crops of tiny-flux took over 30 minutes on 2 cores)."""
    with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16 if amp is None else amp):
        return torch.cat([encode(pixels[i:i + batch].to(device).float() / 127.5 - 1).float().cpu()
                          for i in tqdm(range(0, len(pixels), batch), desc="encode bank", mininterval=5)])


# --------------------------------------------------------------------------- the two backbones

def pretrain_flux(folder, wdir, names):
    parts = tiny.build("tiny-flux", seed)
    vae, tf = parts["vae"].to(device), parts["transformer"].to(device)
    steps_vae, steps_tf = vae_steps or flux_vae_steps, tf_steps or flux_tf_steps
    print(f"[tiny-flux] 1/5 crop bank: {bank64} x 64 px and {bank128} x 128 px from {len(names)} photos")
    bank = cached(os.path.join(wdir, "bank.pt"), lambda: image_bank(list(names), torch.Generator().manual_seed(seed)))
    b64, b128 = bank[64].to(device), bank[128].to(device)
    held = [x for _, x in catalogue.eval_crops(128, per_photo=1)]  # a quick look; eval.py measures fully

    def vae_step(step, g):
        b, n = (b64, vae_batch) if step % 2 == 0 else (b128, max(1, vae_batch // 4))
        x = b[torch.randint(len(b), (n,), generator=g).to(device)].float() / 127.5 - 1
        return vae_loss(vae, flip(x, g))

    def latents(enc):
        z64, z128 = encode_all(enc, bank[64]), encode_all(enc, bank[128])
        shift, scale = z64.mean().item(), 1.0 / z64.std().item()
        return dict(z64=(z64 - shift) * scale, z128=(z128 - shift) * scale, shift=shift, scale=scale)
    vlog, lat = vae_stage("tiny-flux", vae, vae_step, steps_vae, held, wdir, latents)
    vae.register_to_config(shift_factor=lat["shift"], scaling_factor=lat["scale"])
    z64, z128 = lat["z64"].to(device), lat["z128"].to(device)
    ctx, pooled = caption_contexts(parts, list(names.values()), zero_pad=False)

    def tf_step(step, g):
        z, ids, n = (z64, bank["ids64"], tf_batch) if step % 2 == 0 else (z128, bank["ids128"], max(1, tf_batch // 4))
        pick = torch.randint(len(z), (n,), generator=g)
        return transformer_loss(tf, z[pick.to(device)], ctx, pooled, ids[pick], g, backbones.FluxBackbone.packed_call)

    print(f"[tiny-flux] 4/5 transformer, {steps_tf} steps")
    tlog = fit("transformer", tf, tf_step, steps_tf, tf_lr, 0.01, os.path.join(wdir, "transformer.pt"))
    print("[tiny-flux] 5/5 save")
    tiny.save(folder, {**parts, "vae": vae.cpu(), "transformer": tf.cpu()}, "tiny-flux")
    return dict(vae_heldout_psnr_db=vlog["eval"], final_loss=round(tlog["loss"][-1], 4),
                latent_shift=lat["shift"], latent_scale=lat["scale"],
                minutes=dict(vae=round(vlog["seconds"] / 60, 1), transformer=round(tlog["seconds"] / 60, 1)),
                steps=dict(vae=steps_vae, transformer=steps_tf))


def pretrain_wan(folder, wdir, names):
    parts = tiny.build("tiny-wan", seed + 1)
    vae, tf = parts["vae"].to(device), parts["transformer"].to(device)
    steps_vae, steps_tf = vae_steps or wan_vae_steps, tf_steps or wan_tf_steps
    print(f"[tiny-wan] 1/5 clip bank: {clips} clips of 9 x 64 x 64 from {len(names)} photos and the GIF")
    bank = cached(os.path.join(wdir, "bank.pt"), lambda: clip_bank(list(names), torch.Generator().manual_seed(seed)))
    cl = bank["clips"].to(device)
    g_held = torch.Generator().manual_seed(1000)
    held = [pairs.camera_clip(x, 64, 9, g_held) for _, x in catalogue.eval_crops(64, per_photo=1)]

    def vae_step(step, g):
        # 32 px windows of the 64 px clips: the VAE is convolutional, a quarter of the pixels per clip
        x = cl[torch.randint(len(cl), (clip_batch,), generator=g).to(device)]
        y, xx = torch.randint(33, (2,), generator=g).tolist()
        return vae_loss(vae, flip(x[..., y:y + 32, xx:xx + 32].float() / 127.5 - 1, g))

    def latents(enc):
        z = encode_all(enc, bank["clips"], batch=16)
        mean, std = z.mean((0, 2, 3, 4)), z.std((0, 2, 3, 4))
        return dict(z=(z - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1), mean=mean.tolist(), std=std.tolist())
    vlog, lat = vae_stage("tiny-wan", vae, vae_step, steps_vae, held, wdir, latents)
    vae.register_to_config(latents_mean=lat["mean"], latents_std=lat["std"])
    z = lat["z"].to(device)
    ctx, _ = caption_contexts(parts, list(names.values()) + [catalogue.GIF_CAPTION], zero_pad=True)

    def call(tf_, x, t, c, _):
        return tf_(hidden_states=x, timestep=t * 1000, encoder_hidden_states=c, return_dict=False)[0]

    def tf_step(step, g):
        pick = torch.randint(len(z), (16,), generator=g)
        return transformer_loss(tf, z[pick.to(device)], ctx, None, bank["ids"][pick], g, call)

    print(f"[tiny-wan] 4/5 transformer, {steps_tf} steps")
    tlog = fit("transformer", tf, tf_step, steps_tf, tf_lr, 0.01, os.path.join(wdir, "transformer.pt"))
    print("[tiny-wan] 5/5 save")
    tiny.save(folder, {**parts, "vae": vae.cpu(), "transformer": tf.cpu()}, "tiny-wan")
    return dict(vae_heldout_psnr_db=vlog["eval"], final_loss=round(tlog["loss"][-1], 4),
                minutes=dict(vae=round(vlog["seconds"] / 60, 1), transformer=round(tlog["seconds"] / 60, 1)),
                steps=dict(vae=steps_vae, transformer=steps_tf))


def pretrain_shapes(folder, wdir, _names):
    """The shapes world (shapes.py): the FLUX classes on drawn, captioned 64 px images. Unlike the
    photo backbones, the T5 encoder learns with the transformer, so its words carry meaning."""
    from data import shapes
    parts = tiny.build("tiny-shapes", seed + 2)
    vae, tf, enc = parts["vae"].to(device), parts["transformer"].to(device), parts["text_encoder"].to(device)
    steps_vae, steps_tf = vae_steps or shapes_vae_steps, tf_steps or shapes_tf_steps
    amp = shapes_bf16 and bf16  # every stage of this world: fp32 unless asked
    print(f"[tiny-shapes] 1/5 bank: {shapes_bank} drawn training images of 64 px")

    def make_bank():
        xs, caps = [], []
        for i in tqdm(range(shapes_bank), desc="draw", mininterval=5):
            x, c = shapes.draw(shapes.index("train", i))
            xs.append((x * 255).round().to(torch.uint8))
            caps.append(c)
        return dict(x=torch.stack(xs), captions=caps)
    bank = cached(os.path.join(wdir, "bank.pt"), make_bank)
    bx = bank["x"].to(device)
    held = list(shapes.batch("val", 0, 16)[0])

    def vae_step(step, g):
        x = bx[torch.randint(len(bx), (shapes_vae_batch,), generator=g).to(device)].float() / 127.5 - 1
        return vae_loss(vae, flip(x, g))

    def latents(enc):
        z = encode_all(enc, bank["x"], amp=amp)
        shift, scale = z.mean().item(), 1.0 / z.std().item()
        return dict(z=(z - shift) * scale, shift=shift, scale=scale)
    vlog, lat = vae_stage("tiny-shapes", vae, vae_step, steps_vae, held, wdir, latents, amp=amp)
    vae.register_to_config(shift_factor=lat["shift"], scaling_factor=lat["scale"])
    z = lat["z"].to(device)
    texts = ["", *bank["captions"]]  # row 0: the null text
    both = torch.nn.ModuleDict(dict(transformer=tf, text_encoder=enc))  # one optimizer for the two

    def tf_step(step, g):
        n = shapes_tf_batch
        pick = torch.randint(len(z), (n,), generator=g)
        row = torch.where(torch.rand(n, generator=g) < caption_dropout, 0, pick + 1).to(device)
        ctx, pooled = backbones.t5_context(parts["tokenizer"], enc, [texts[i] for i in row.tolist()],
                                           tiny.SHAPES_TEXT_LEN, zero_pad=False)  # with gradient: enc trains
        x0 = z[pick.to(device)]
        t = torch.where(torch.rand(n, generator=g) < 0.5, torch.sigmoid(torch.randn(n, generator=g)),
                        torch.rand(n, generator=g))
        t = (shapes_shift * t / (1 + (shapes_shift - 1) * t)).to(device)  # FLUX's time shift
        eps = torch.randn(x0.shape, generator=g).to(device)
        tb = t.view(-1, 1, 1, 1)
        xt = (1 - tb) * x0 + tb * eps
        v = backbones.FluxBackbone.packed_call(tf, xt, t, ctx, pooled)
        return (v.float() - (eps - x0)).square().mean()

    print(f"[tiny-shapes] 4/5 transformer and text encoder, {steps_tf} steps")
    tlog = fit("transformer", both, tf_step, steps_tf, tf_lr, 0.01, os.path.join(wdir, "transformer.pt"),
               amp=amp, ema=shapes_ema)
    print("[tiny-shapes] 5/5 save")
    tiny.save(folder, {**parts, "vae": vae.cpu(), "transformer": tf.cpu(), "text_encoder": enc.cpu()}, "tiny-shapes")
    return dict(vae_heldout_psnr_db=vlog["eval"], final_loss=round(tlog["loss"][-1], 4),
                latent_shift=lat["shift"], latent_scale=lat["scale"],
                minutes=dict(vae=round(vlog["seconds"] / 60, 1), transformer=round(tlog["seconds"] / 60, 1)),
                steps=dict(vae=steps_vae, transformer=steps_tf), bf16=amp)


@torch.no_grad()
def sample_sheet(folder, path):
    """A few samples from pure noise with the null text (Euler, 30 steps): a look at the prior, at
    the size it was trained on (tiny-wan saw 64 px clips only; at 128 px its samples are noise)."""
    bb = backbones.load(folder, device="cpu")
    g = torch.Generator().manual_seed(0)
    shape = (4,) + bb.latent_shape(bb.train_size, bb.train_size, bb.train_frames)
    x = torch.randn(shape, generator=g)
    ts = torch.linspace(1, 0, 31)
    for t, t2 in zip(ts[:-1], ts[1:]):
        x = x + (t2 - t) * bb.velocity(x, torch.full((4,), float(t)))[0]
    img = (bb.decode(x) + 1) / 2
    frames = img[:, :, img.shape[2] // 2] if bb.video else img  # the middle frame
    media.write_image(path, torch.cat(list(frames), dim=2))


def judge(folder):
    """The shapes prior judged (shapes.prior_score): samples.png beside its weights, and the numbers."""
    from data import shapes
    bb = backbones.load(folder, device="cpu", keep_text_encoder=True)
    scores, sheet = shapes.prior_score(bb)
    media.write_image(os.path.join(folder, "samples.png"), sheet)
    return scores


def main():
    if which not in ("tiny-flux", "tiny-wan", "tiny-shapes", "both"):
        fail(f"--which={which}: expected tiny-flux, tiny-wan, tiny-shapes or both")
    if device.startswith("cuda") and not torch.cuda.is_available():
        fail("--device=cuda: no CUDA GPU here")
    torch.set_num_threads(threads)
    if judge_only:
        folder = os.path.join(out, "tiny-shapes")
        if which != "tiny-shapes" or not os.path.isfile(os.path.join(folder, "pretrain.json")):
            fail(f"--judge_only judges a pre-trained tiny-shapes: --which=tiny-shapes, and {folder} must hold one")
        with open(os.path.join(folder, "pretrain.json")) as f:
            log = json.load(f)
        log["prior"] = judge(folder)
        media.write_json(os.path.join(folder, "pretrain.json"), log, indent=1)
        print(json.dumps(log["prior"]))
        return
    names = training_photos() if which != "tiny-shapes" else {}  # the shapes world draws its own
    # where Debian's photos are missing, catalogue.available has said so on stderr
    for kind in (["tiny-flux", "tiny-wan"] if which == "both" else [which]):
        folder, wdir = os.path.join(out, kind), os.path.join(work, kind)
        os.makedirs(folder, exist_ok=True)
        os.makedirs(wdir, exist_ok=True)
        log = {"tiny-flux": pretrain_flux, "tiny-wan": pretrain_wan, "tiny-shapes": pretrain_shapes}[kind](
            folder, wdir, names)
        log = {"bf16": bf16, **log}  # tiny-shapes reports its own (fp32 unless asked)
        log.update(seed=seed, device=device, torch_threads=threads)
        if kind == "tiny-shapes":  # a world with a test split: samples beside real images, and a number
            log.update(data="shapes.py's train split", prior=judge(folder))
        else:
            log.update(photos=list(names), held_out=list(catalogue.HELD_OUT))
            sample_sheet(folder, os.path.join(folder, "samples.png"))
        media.write_json(os.path.join(folder, "pretrain.json"), log, indent=1)
        print(f"[{kind}] done: {folder}")


if __name__ == "__main__":
    parse(globals(), sys.argv[1:])
    with fail.guard():
        main()
