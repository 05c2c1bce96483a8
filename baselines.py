"""What the frozen prior buys: per task a classical method, and a small supervised network.

    python baselines.py --task=haze                          # train the U-Net as train.py trains a prompt
    python baselines.py --task=haze --resume --steps=6000    # continue exactly, and further
    python baselines.py --video --task=rain                  # tiny-wan's clips, the U-Net per frame
    python baselines.py --choose --task=haze                 # the classical method's settings, on training pairs

Classical (nothing learned; scikit-image / SciPy): CLASSICAL. Supervised: a residual U-Net trained
on train.py's pairs (source, seed, crop size; streamed, or its pool with --cache_pairs) in its loop
shape (batch, --accum, a seeded generator per micro-batch, AdamW, --steps), loss the pixel MSE; writes <out>/<task>.safetensors,
<task>.ckpt.pt (--resume continues exactly), <task>_val.png. eval.py --baselines scores both.
"""
import itertools
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from scipy import ndimage as ndi
from skimage import exposure, filters
from torch import nn
from tqdm import tqdm

import backbones
import metrics
from data import dataset, degrade, media, pairs
from plumbing import checkpoint
from plumbing.cli import fail, parse

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = os.path.join(HERE, "prompts")

# ---------------------------------------------------------------- config (override: --key=value)
backbone = ""        # tiny-flux (default), tiny-wan, flux, wan, or a local folder: only its crop size, clip length and name
video = False        # with no --backbone: the tiny video backbone instead of the image one
task = "haze"        # haze | rain | snow | lowlight | blur
data_source = "photos"  # photos | a folder (input/ + gt/, or clean images) | list.json, as in train.py
any_label = False    # a .json list: its Mixed and None entries too (as in train.py)
data_root = ""       # a .json list: where its relative paths start (as in train.py)
steps = 1500         # optimizer steps (train.py's default)
batch = 0            # pairs per micro-batch (0: the backbone's, as train.py)
accum = 1            # micro-batches per step; their gradients are averaged
lr = 1e-3            # AdamW learning rate of the U-Net
size = 0             # crop size in pixels (0: the backbone's training size)
frames = 0           # clip length for video backbones (0: the backbone's)
workers = 2          # data loader processes (train.py's)
cache_pairs = False  # a fixed pool of `pool` pairs made once instead of streaming (train.py --cache_latents; the shipped U-Nets)
pool = 256           # --cache_pairs: training pairs, made once (train.py's)
val_pairs = 8        # validation pairs (train.py's)
val_every = 250      # steps between validations and checkpoints
widths = (16, 32, 64, 128)  # U-Net channels per level (a Python literal)
out = ""             # output folder (default runs/<backbone>-<task>-unet; with --choose prompts/<backbone>/baselines)
resume = False       # continue from <out>/<task>.ckpt.pt
choose = False       # instead of training: score the classical method's settings on training pairs, store the best
choose_count = 32    # --choose: training pairs scored (the first of train.py's pool)
seed = 0             # the net's init, the data, the draws of each micro-batch (train.py's)
device = ""          # cuda, cuda:1, cpu (default: the GPU if there is one, else the CPU)
threads = 0          # torch CPU threads (0: torch's default)
ALIASES = {"data": "data_source", "cache_latents": "cache_pairs"}


# ------------------------------------------------------------------------------ classical
# Each takes one float64 image [H, W, 3] in [0, 1] and its settings; classical() clips the result.

def guided_filter(guide, src, radius, eps):
    """He, Sun and Tang, "Guided image filtering" (ECCV 2010), grey guide, box windows."""
    box = lambda a: ndi.uniform_filter(a, 2 * radius + 1, mode="reflect")  # noqa: E731
    m_i, m_p = box(guide), box(src)
    a = (box(guide * src) - m_i * m_p) / (box(guide * guide) - m_i * m_i + eps)
    return box(a) * guide + box(m_p - a * m_i)


def dark_channel_prior(x, patch=15, omega=0.95, radius=8, eps=1e-3, t_min=0.1):
    """He, Sun and Tang, "Single image haze removal using dark channel prior" (CVPR 2009), the
    transmission refined by the guided filter (their ECCV 2010 paper) in place of soft matting."""
    dark = ndi.minimum_filter(x.min(2), patch)
    top = np.argsort(dark.ravel())[-max(1, dark.size // 1000):]  # the haziest 0.1 %
    airlight = x.reshape(-1, 3)[top[x.reshape(-1, 3)[top].sum(1).argmax()]]  # the brightest input pixel among them
    airlight = np.maximum(airlight, 1e-3)
    t = 1 - omega * ndi.minimum_filter((x / airlight).min(2), patch)
    t = guided_filter(x.mean(2), t, radius, eps)
    return (x - airlight) / np.maximum(t, t_min)[..., None] + airlight


def gamma_gain_median(x, gamma=0.5, mean=0.45, median=3):
    """A power-law (gamma) curve and a gain to a set mean brightness (Gonzalez and Woods, "Digital
    Image Processing", 3.2), then a median filter for the sensor noise (Tukey 1974)."""
    y = exposure.adjust_gamma(np.clip(x, 0, 1), gamma)
    y = y * (mean / max(y.mean(), 1e-6))
    return ndi.median_filter(y, size=(median, median, 1)) if median > 1 else y


def _rank(x, op, size):
    """A grey opening (erosion then dilation: removes bright structures narrower than `size`,
    Serra, "Image Analysis and Mathematical Morphology", 1982) or a median, per channel."""
    f = ndi.grey_opening if op == "opening" else ndi.median_filter
    return f(x, size=(size, size, 1))


def streak_filter(x, op="opening", size=5):
    """Rain: the streaks are bright and a few pixels wide; an opening or a median wider than them."""
    return _rank(x, op, size)


def flake_filter(x, op="opening", size=5, clip=1.0):
    """Snow: flakes removed as rain's streaks are, then the veil by a contrast stretch of the
    clip .. 100 - clip percentiles to [0, 1] (Gonzalez and Woods, 3.2; clip 0: min to max)."""
    y = _rank(x, op, size)
    lo, hi = np.percentile(y, [clip, 100 - clip])
    return exposure.rescale_intensity(y, in_range=(lo, max(hi, lo + 1e-6)), out_range=(0.0, 1.0))


def unsharp(x, radius=2.0, amount=0.5):
    """Blur: an unsharp mask (scikit-image's), blind: it never reads the kernel degrade.py drew."""
    return filters.unsharp_mask(x, radius=radius, amount=amount, channel_axis=2)


# task -> (name, function, settings used when none are stored, the settings --choose scores)
CLASSICAL = {
    "haze": ("dark channel prior", dark_channel_prior, dict(patch=15, omega=0.95, radius=8),
             dict(patch=[3, 7, 15], omega=[0.8, 0.95], radius=[8, 32])),
    "lowlight": ("gamma, gain, median", gamma_gain_median, dict(gamma=0.5, mean=0.45, median=3),
                 dict(gamma=[0.5, 0.7, 0.85], mean=[0.35, 0.45], median=[3, 5, 7])),
    "rain": ("streak filter", streak_filter, dict(op="opening", size=5),
             dict(op=["opening", "median"], size=[3, 5, 7, 9, 13])),
    "snow": ("flake filter and stretch", flake_filter, dict(op="opening", size=5, clip=1.0),
             dict(op=["opening", "median"], size=[3, 5, 7], clip=[0.0, 0.5, 1.0])),
    "blur": ("unsharp mask", unsharp, dict(radius=2.0, amount=0.5),
             dict(radius=[1.0, 2.0, 4.0, 6.0], amount=[0.3, 0.5, 1.0])),
}


def classical_file(name, prompts_dir=PROMPTS):
    """Where the settings --choose stored for a backbone: <prompts_dir>/<name>/baselines/classical.json."""
    return os.path.join(prompts_dir, name, "baselines", "classical.json")


def classical_settings(name, task, prompts_dir=PROMPTS):
    """The classical method's settings for this backbone and task: the stored ones, else CLASSICAL's."""
    degrade.known(task)
    path = classical_file(name, prompts_dir)
    stored = json.load(open(path)).get(task, {}) if os.path.isfile(path) else {}
    return {**CLASSICAL[task][2], **stored.get("settings", {})}


def classical(task, x, settings=None):
    """x: an image [3, H, W] or a clip [3, F, H, W] in [0, 1] -> the classical method's output,
    same shape, dtype and device; a clip frame by frame."""
    degrade.known(task)
    _, fn, default, _ = CLASSICAL[task]
    s = {**default, **(settings or {})}
    clip = x[:, None] if x.ndim == 3 else x
    a = clip.detach().cpu().double().permute(1, 2, 3, 0).numpy()
    y = torch.from_numpy(np.stack([np.clip(fn(f, **s), 0, 1) for f in a])).permute(3, 0, 1, 2)
    y = y.to(device=x.device, dtype=x.dtype)
    return y[:, 0] if x.ndim == 3 else y


def choose_classical(task, pair_list):
    """Every setting of CLASSICAL[task]'s grid on the pairs: [(settings, metrics, score)], best
    first; the score is metrics.score's (PSNR and SSIM gains over the degraded input, normalized)."""
    grid = CLASSICAL[task][3]
    cands = [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())]
    keys = ("psnr", "ssim")
    mean = lambda ms: {k: sum(m[k] for m in ms) / len(ms) for k in keys}  # noqa: E731
    before = mean([metrics.metrics(d, c) for d, c in pair_list])
    res = {i: mean([metrics.metrics(classical(task, d, s), c) for d, c in pair_list]) for i, s in enumerate(cands)}
    sc = metrics.score(res, before)
    order = sorted(res, key=lambda i: -sc[i])
    return before, [(cands[i], res[i], sc[i]) for i in order]


# ------------------------------------------------------------------------------ the U-Net

class UNet(nn.Module):
    """A residual U-Net (Ronneberger, Fischer and Brox 2015): per level two 3x3 convolutions with
    ReLU, 2x2 max-pooling down, bilinear upsampling and the skip concatenated on the way up; a
    1x1 head adds the result to the input. The head starts at zero: untrained, it gives its input
    back (as a zero-gate prompt does). [B, 3, H, W] of any size -> the same."""

    def __init__(self, widths=(16, 32, 64, 128)):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        two = lambda a, b: nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.ReLU(),  # noqa: E731
                                         nn.Conv2d(b, b, 3, padding=1), nn.ReLU())
        self.widths = widths
        self.down = nn.ModuleList(two(a, b) for a, b in zip((3,) + widths[:-1], widths))
        self.up = nn.ModuleList(two(a + b, b) for a, b in zip(widths[:0:-1], widths[-2::-1]))
        self.head = nn.Conv2d(widths[0], 3, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        skips, h = [], x
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else F.max_pool2d(h, 2, ceil_mode=True))
            skips.append(h)
        for block, skip in zip(self.up, skips[-2::-1]):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], 1))
        return x + self.head(h)


def count(module):
    """Learned numbers of a module (a prompt: its bank and gates; a U-Net: its weights)."""
    return sum(q.numel() for q in module.parameters())


def frames_of(x):
    """[3, H, W] or [3, F, H, W] -> [F, 3, H, W] (a clip's frames as a batch)."""
    return x[None] if x.ndim == 3 else x.transpose(0, 1)


@torch.no_grad()
def restore_unet(net, x, chunk=8):
    """x: an image [3, H, W] or a clip [3, F, H, W] in [0, 1] -> the U-Net's output, clipped to
    [0, 1], same shape and device; a clip frame by frame, `chunk` frames at a time."""
    dev = next(net.parameters()).device
    f = frames_of(x)
    y = torch.cat([net(f[i:i + chunk].to(dev)) for i in range(0, len(f), chunk)]).clamp(0, 1).to(x.device)
    return y[0] if x.ndim == 3 else y.transpose(0, 1)


def unet_path(name, task, prompts_dir=PROMPTS):
    """The shipped U-Net of a backbone and task: <prompts_dir>/<name>/baselines/<task>.safetensors."""
    return os.path.join(prompts_dir, name, "baselines", f"{task}.safetensors")


def save_unet(net, path, **meta):
    """safetensors with its widths and how it was trained in the metadata, written atomically. The
    weights in fp16 (half the bytes; load_unet computes in fp32); training checkpoints (*.ckpt.pt) stay fp32."""
    meta = {k: str(v) for k, v in meta.items()}
    meta.update(format="unet-baseline", widths=",".join(map(str, net.widths)))
    tensors = {k: v.detach().half().cpu().contiguous() for k, v in net.state_dict().items()}

    def write(tmp):
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)
    media.atomic(path, write, load_file)  # re-read before the rename


def load_unet(path, device="cpu"):
    """(UNet in eval mode on device, its metadata) from save_unet's file."""
    if not os.path.isfile(path):
        raise media.InputError(f"U-Net file not found: {path}")
    try:
        with safe_open(path, "pt") as f:
            meta = dict(f.metadata() or {})
        if meta.get("format") != "unet-baseline":
            raise KeyError("format")
        net = UNet(int(w) for w in meta["widths"].split(","))
        net.load_state_dict(load_file(path))
    except (KeyError, ValueError, RuntimeError, SafetensorError, OSError) as e:
        raise media.InputError(f"{path} is not a U-Net file of baselines.py ({type(e).__name__}: {e})") from None
    return net.to(device).eval().requires_grad_(False), meta


# ------------------------------------------------------------------------------ training

def backbone_settings(backbone="", video=False):
    """(name, settings) of a backbone without loading it: its name (where its files go) and
    backbones.SETTINGS of its kind (crop size, clip length)."""
    _, name, key = backbones.resolve(backbone or None, video)
    return name, backbones.SETTINGS[key]


def cached(xd, xc, gens, batch):
    """Micro-batches from a pool made once (--cache_pairs): each generator of gens draws `batch` pairs."""
    for gm in gens:
        idx = torch.randint(len(xd), (batch,), generator=gm)
        yield xd[idx], xc[idx]


def train_step(net, opt, micro):
    """One optimizer step, as train.train_step takes it: per micro-batch (degraded, clean) of
    `micro`, frames as a batch, the pixel MSE, backward; gradients averaged, AdamW."""
    opt.zero_grad(set_to_none=True)
    total, n = 0.0, 0
    dev = next(net.parameters()).device
    for xd, xc in micro:
        d = torch.cat([frames_of(x) for x in xd]).to(dev)
        c = torch.cat([frames_of(x) for x in xc]).to(dev)
        loss = (net(d) - c).square().mean()
        loss.backward()
        total, n = total + loss.item(), n + 1
    for q in net.parameters():
        if q.grad is not None:
            q.grad.div_(n)
    opt.step()
    return total / n


def restorers(bb, task, unet_file=""):
    """eval.py --baselines' rows: ([(label, restore(deg) -> pred, learned numbers)], what they are): the
    classical method with the settings stored for this backbone (baselines.classical_settings) and
    the supervised U-Net of unet_file (default: this backbone's shipped one; absent: left out, said so)."""
    settings = classical_settings(bb.name, task)
    name = CLASSICAL[task][0]
    if not os.path.isfile(classical_file(bb.name)):
        print(f"classical: no settings chosen for {bb.name}, the defaults of baselines.CLASSICAL (choose them: "
              f"python baselines.py --choose --backbone={bb.name} --task={task})")
    rows = [(f"classical: {name}", lambda d: classical(task, d, settings), 0)]
    about = dict(classical=dict(method=name, settings=settings))
    path = unet_file or unet_path(bb.name, task)
    if not unet_file and not os.path.isfile(path):
        print(f"no supervised U-Net for {bb.name} / {task} at {os.path.relpath(path)}: row left out (train it: "
              f"python baselines.py --backbone={bb.name} --task={task} --out={os.path.relpath(os.path.dirname(path))})")
        return rows, about
    net, meta = load_unet(path, bb.device)
    if meta.get("task") != task:
        raise media.InputError(f"{path} is a U-Net for {meta.get('task')!r}, not {task!r}")
    rows.append(("supervised U-Net", lambda d: restore_unet(net, d), count(net)))
    about["unet"] = dict(file=os.path.relpath(path), **{k: meta.get(k) for k in ("widths", "steps", "backbone", "data", "seed", "size")})
    return rows, about


def main_choose(name, vid):
    """--choose: the classical method's settings chosen on training pairs, kept in <out>/classical.json."""
    folder = out or os.path.join(PROMPTS, name, "baselines")
    path = os.path.join(folder, "classical.json")
    pair_list = pairs.make_pairs(data_source, task, choose_count, size, frames, torch.Generator().manual_seed(seed), vid,
                                 None, any_label, data_root)
    before, ranked = choose_classical(task, pair_list)
    label = CLASSICAL[task][0]
    print(f"{label} for {task} on {len(pair_list)} {data_source} pairs ({name}, {size} px); "
          f"degraded {before['psnr']:.2f} / {before['ssim']:.4f}")
    print(f"{'settings':<52} {'PSNR':>7} {'SSIM':>7} {'score':>6}")
    for i, (s, m, sc) in enumerate(ranked):
        shown = ", ".join(f"{k}={v}" for k, v in s.items())
        print(f"{shown:<52} {m['psnr']:7.2f} {m['ssim']:7.4f} {sc:6.3f}" + ("  <- chosen" if i == 0 else ""))
    os.makedirs(folder, exist_ok=True)
    stored = json.load(open(path)) if os.path.isfile(path) else {}
    stored[task] = dict(method=label, settings=ranked[0][0], data=data_source, pairs=len(pair_list),
                        size=size, seed=seed, psnr=round(ranked[0][1]["psnr"], 4), ssim=round(ranked[0][1]["ssim"], 4))
    media.write_json(path, stored, indent=1, sort_keys=True)
    print(f"wrote {path}")


def main():
    global size, frames, batch, out  # the options "0: the backbone's", resolved once below
    degrade.known(task)
    if batch < 0 or accum < 1:
        fail(f"--batch={batch} must be at least 0 (0: the backbone's) and --accum={accum} at least 1")
    if data_source == "generate":
        fail("--data=generate draws images from the backbone; the U-Net trains on photos, a folder or a JSON list")
    if not widths or min(widths) < 1:
        fail(f"--widths={widths}: give positive channel counts, e.g. (16,32,64,128)")
    if threads:
        torch.set_num_threads(threads)
    name, st = backbone_settings(backbone, video)
    vid = st["train_frames"] > 1
    size, frames, batch = size or st["train_size"], frames or st["train_frames"], batch or st["train_batch"]
    if choose:
        return main_choose(name, vid)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = out or os.path.join("runs", f"{name}-{task}-unet")
    if os.path.exists(out) and not os.path.isdir(out):
        fail(f"--out={out} is a file; baselines.py writes a folder")
    os.makedirs(out, exist_ok=True)
    ckpt_path = os.path.join(out, f"{task}.ckpt.pt")

    # the data exactly as train.py takes it: streamed from --seed's stream, or its pool then validation
    t_start = time.time()
    if cache_pairs:
        pair_list = pairs.make_pairs(data_source, task, pool + val_pairs, size, frames, torch.Generator().manual_seed(seed),
                                     vid, None, any_label, data_root)
        xd = torch.stack([d for d, _ in pair_list[:pool]])
        xc = torch.stack([c for _, c in pair_list[:pool]])
        val_list, desc = pair_list[pool:], f"{pool} training pairs"
    else:
        items, synthetic = pairs.items(data_source, task, any_label, data_root)
        ds = dataset.Pairs(items, synthetic, task, size, frames, vid, seed)
        val_list = dataset.val_pairs(items, synthetic, task, size, frames, vid, seed, val_pairs)
        desc = f"{len(items)} items streamed ({workers} workers)"
    vd = torch.stack([d for d, _ in val_list])
    vc = torch.stack([c for _, c in val_list])
    print(f"data: {data_source} / {task}: {desc} and {len(vd)} validation pairs of "
          f"{tuple(vc.shape[1:])} px ({time.time() - t_start:.0f} s)")

    torch.manual_seed(seed)  # the net's init
    net = UNet(widths).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    gens = [torch.Generator().manual_seed(seed + 1 + 1000 * j) for j in range(accum)]
    start, log = 0, []
    if resume and os.path.isfile(ckpt_path):
        ck = checkpoint.load(ckpt_path, "net", "baselines.py")
        if len(ck["rng"]) != accum or tuple(ck["config"]["widths"]) != net.widths:
            fail(f"{ckpt_path} was made with --accum={len(ck['rng'])} and --widths={tuple(ck['config']['widths'])}; "
                 f"this run has {accum} and {net.widths}")
        start, log = checkpoint.resume(ck, ckpt_path, "net", net, opt, gens, ck["rng"], "cache_pairs", cache_pairs,
                                       "a pool")
        print(f"resumed from {ckpt_path} at step {start}")
    elif resume:
        print(f"--resume: no checkpoint at {ckpt_path}, starting fresh")
    print(f"U-Net widths {'-'.join(map(str, net.widths))} on {dev}: {count(net):,} trainable numbers; lr {lr}, "
          f"batch {batch} x {accum} micro-batches" + (f" of {frames} frames" if vid else ""))
    meta = dict(task=task, backbone=name, data=data_source, seed=seed, size=size, frames=frames, lr=lr,
                batch=batch, accum=accum, cache_pairs=cache_pairs, pool=pool)

    def save(step):
        checkpoint.save(ckpt_path, "net", net, opt, [g.get_state() for g in gens], step, log,
                        dict(meta, widths=list(net.widths)))
        save_unet(net, os.path.join(out, f"{task}.safetensors"), steps=step, **meta)

    t_train = time.time()
    if not cache_pairs:  # train.py's stream for one process: micro-batches 0..accum-1 of every step from `start`
        stream = dataset.batches(ds, dataset.Steps(start, steps, range(accum), accum, batch), batch, workers)
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"U-Net {task}", mininterval=2)
    for step in bar:
        net.train()
        if cache_pairs:
            log.append(train_step(net, opt, cached(xd, xc, gens, batch)))
        else:
            log.append(train_step(net, opt, ((d.float() / 255, c.float() / 255) for d, c in (next(stream) for _ in gens))))
        bar.set_postfix(loss=f"{sum(log[-50:]) / len(log[-50:]):.4f}")
        if (step + 1) % val_every == 0 or step + 1 == steps:
            net.eval()
            rec = torch.stack([restore_unet(net, d) for d in vd])
            val, base = metrics.mean_psnr(rec, vc), metrics.mean_psnr(vd, vc)
            tqdm.write(f"step {step + 1}: loss {sum(log[-50:]) / len(log[-50:]):.5f}, val PSNR {val:.2f} dB "
                       f"(degraded {base:.2f} dB), {time.time() - t_train:.0f} s")
            media.write_sheet(os.path.join(out, f"{task}_val.png"), list(zip(vd, rec, vc))[:4])
            save(step + 1)
    if start >= steps:
        print(f"nothing to do: the checkpoint is already at step {start} of {steps}")
    print(f"U-Net written to {os.path.join(out, task + '.safetensors')} ({time.time() - t_train:.0f} s of training); "
          f"score it: python eval.py --task={task} --baselines --unet={os.path.join(out, task + '.safetensors')}")


if __name__ == "__main__":
    parse(globals(), sys.argv[1:], ALIASES)
    with fail.guard():
        main()
