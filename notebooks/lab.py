"""What the notebooks share: their opening (CI's fast mode, threads, pictures, PSNR), the shapes
world's settings (WORLD, SEEDS, STEPS, N_TEST and the learning rate chosen on val), and what turns
an experiment into a verdict: a prompt trained for a seed (kept on disk, so a rebuild trains
nothing twice), its scores on held-out images, and a mean with a 95% interval over seeds.

    from lab import FAST, psnr, show, to_pixels

    p = lab.trained(bb, "rain", seed=3, bridge_name="ebr", t0=0.4, steps=600)
    per_image = lab.scores(bb, [p], "ebr", 0.4, lab.held_out(bb, "rain", "test", 128))
    lab.interval([per-seed means]) -> (mean, half width);  lab.verdict(per-seed differences) -> word

Each seed is a separate training run: its own prompt init, its own training pairs and draws.
Settings are chosen on the "val" split and scored on "test" (the shapes world), never the same
images; on the photo backbones the validation pairs are training photos' crops, the test the
held-out photos' crops.
"""
import hashlib
import math
import os

import torch
from scipy import stats

import baselines
import extensions
import metrics
import prompt
import sample
import train
from data import pairs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "runs", "lab")  # trained prompts, by backbone and settings
FAST = bool(os.environ.get("YPT_FAST"))  # CI sets this: far fewer steps, same code
torch.set_num_threads(int(os.environ.get("YPT_THREADS", "2")))  # 1 when a notebook shares the CPU

# T0 is a setting, chosen on validation crops: notebook 02's Fig. 7 sweep picks 0.6 on tiny-flux and
# 0.2 on tiny-wan (the mean normalized score over 5 seeds). Notebooks 03 and 04 train and sample the
# photo prompts there; a backbone not listed keeps its paper-form T0 (bb.t0).
VAL_T0 = {"tiny-flux": 0.6, "tiny-wan": 0.2}

# The shapes world's experiments (notebooks 00-04 open with them): every arm of every comparison
# trains STEPS steps per seed and is scored on N_TEST images of the world's test split
WORLD = "tiny-shapes"
SEEDS = [0, 1] if FAST else [0, 1, 2, 3, 4]
STEPS = 2 if FAST else 200
N_TEST = 4 if FAST else 100


def show(ax, img, title="", fontsize=9, **imshow):
    """Show an image [3, H, W] (or the middle frame of a clip) in [0, 1] on a matplotlib axis."""
    img = img[:, img.shape[1] // 2] if img.ndim == 4 else img
    ax.imshow(img.clamp(0, 1).permute(1, 2, 0).cpu().numpy(), **imshow)
    ax.set_title(title, fontsize=fontsize)
    ax.axis("off")


def to_pixels(bb, z):
    """Latents -> pixels in [0, 1] on the CPU."""
    return ((bb.decode(z).cpu() + 1) / 2).clamp(0, 1)


def psnr(a, b):
    return metrics.metrics(a, b)["psnr"]


def held_out(bb, task, split="test", n=128):
    """n (degraded, clean) pairs: the shapes world's val/test split, or (photo backbones) the
    held-out photos' crops for "test" and training photos' crops for "val"."""
    if bb.data == "shapes":
        return pairs.make_pairs(f"shapes-{split}", task, n, bb.train_size, 1, None)
    source = "heldout" if split == "test" else bb.data
    frames = bb.train_frames if bb.video else 1
    return pairs.make_pairs(source, task, n if split != "test" else 0, bb.train_size, frames,
                            torch.Generator().manual_seed(10_000), bb.video)[:n]


def fingerprint(bb):
    """8 hex digits of the transformer's weights: a prompt kept for other weights is never reused."""
    head = torch.cat([p.detach().flatten()[:256].float().cpu() for p in bb.transformer.parameters()])
    return hashlib.sha1(head.numpy().tobytes()).hexdigest()[:8]


def training_pairs(bb, task, pool, seed):
    """The `pool` training pairs of a seed: what lab.trained's prompt and lab.unet's U-Net both learn from."""
    frames = bb.train_frames if bb.video else 1
    return pairs.make_pairs(bb.data, task, pool, bb.train_size, frames, torch.Generator().manual_seed(seed), bb.video)


def trained(bb, task, seed, bridge_name="ebr", t0=None, steps=600, pool=256, batch=None, lr=None, cache=CACHE,
            coarse=0, gain=1):
    """A paper-form prompt trained by train.py's step on `pool` training pairs drawn with `seed`,
    which also seeds the prompt's init and the training draws. Kept under runs/lab/. coarse > 0:
    the extension's coarse prompt of that low-pass width and gain (extensions.coarse), same recipe."""
    t0, lr = t0 or bb.t0, lr or bb.train_lr
    at = "" if lr == bb.train_lr else f"-lr{lr:g}"  # the backbone's rate keeps the names prompts were kept under
    form = f"-coarse{coarse:g}-gain{gain:g}" if coarse else ""
    name = f"{task}-{bridge_name}{form}-t0{t0:g}-steps{steps}-pool{pool}{at}-seed{seed}.safetensors"
    path = os.path.join(cache, f"{bb.name}-{fingerprint(bb)}", name)
    if os.path.isfile(path):
        return bb.load_prompt(path)
    zd, zc = train.encode_pairs(bb, training_pairs(bb, task, pool, seed), f"encode seed {seed}")
    torch.manual_seed(seed)
    p = bb.new_prompt(task=task, bridge=bridge_name, t0=t0, **({"coarse": coarse, "gain": gain} if coarse else {}))
    opt = torch.optim.AdamW(p.parameters(), lr=lr)
    gens = [torch.Generator().manual_seed(1_000 + seed)]
    for _ in range(steps):
        train.train_step(bb, p, opt, train.cached(zd, zc, gens, batch or bb.train_batch, bb.device), gens, bridge_name, t0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    prompt.save(p, path)
    return p


def unet(bb, task, seed, steps=600, pool=256, batch=None, lr=1e-3, cache=CACHE):
    """The supervised baseline for a seed: baselines.UNet trained by baselines.train_step on the very
    pairs, batch and steps lab.trained gives the prompt of that seed (pixel MSE, AdamW). Kept under runs/lab/."""
    path = os.path.join(cache, f"{bb.name}-{fingerprint(bb)}", f"unet-{task}-steps{steps}-pool{pool}-lr{lr:g}-seed{seed}.safetensors")
    if os.path.isfile(path):
        return baselines.load_unet(path)[0]
    pair_list = training_pairs(bb, task, pool, seed)
    xd, xc = torch.stack([d for d, _ in pair_list]), torch.stack([c for _, c in pair_list])
    torch.manual_seed(seed)
    net = baselines.UNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    gens = [torch.Generator().manual_seed(1_000 + seed)]
    for _ in range(steps):
        baselines.train_step(net, opt, baselines.cached(xd, xc, gens, batch or bb.train_batch))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    baselines.save_unet(net, path, task=task, seed=seed, steps=steps)
    return baselines.load_unet(path)[0]  # as kept (fp16 weights), so a rebuild scores the same net


@torch.no_grad()
def restored(bb, prompts, bridge_name, t0, pair_list, seed=0, decode=extensions.PAPER_DECODE):
    """The paper's sampler on every degraded input, and the decoded latent (or the extension's `decode`)."""
    if bb.video or len({d.shape for d, _ in pair_list}) > 1:
        return [sample.restore(bb, d, prompts, bridge_name, t0, decode, progress=False, seed=seed)
                for d, _ in pair_list]
    # images of one size: through the image backbone as one batch (sample.restore takes [3, N, H, W])
    x = torch.stack([d for d, _ in pair_list], 1)
    out = sample.restore(bb, x, prompts, bridge_name, t0, decode, progress=False, seed=seed, chunk=64)
    return list(out.unbind(1))


def scores(bb, prompts, bridge_name, t0, pair_list, seed=0, decode=extensions.PAPER_DECODE):
    """Per-image metrics (PSNR, SSIM: metrics.metrics) of the restorations of pair_list."""
    outs = restored(bb, prompts, bridge_name, t0, pair_list, seed, decode)
    return [metrics.metrics(o, c) for o, (_, c) in zip(outs, pair_list)]


def learning_rate(bb):
    """(the rate every shapes-world prompt trains at, {candidate: PSNR on val}): an EBR rain
    prompt (seed 0, T0, STEPS steps) per candidate, restored on N_TEST **val** images; the best
    PSNR wins, and serves every arm, task and T0 (the paper trains its arms with one recipe)."""
    val = held_out(bb, "rain", "val", N_TEST)
    on_val = {r: mean(scores(bb, [trained(bb, "rain", seed=0, steps=STEPS, lr=r)], "ebr", bb.t0, val))
              for r in (bb.train_lr, 5 * bb.train_lr, 20 * bb.train_lr)}
    return max(on_val, key=on_val.get), on_val


def mean(rows, key="psnr"):
    return sum(r[key] for r in rows) / len(rows)


def interval(values, level=0.95):
    """(mean, half width of the Student-t interval) of per-seed values; half width inf for one."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, math.inf
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m, stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)


def verdict(differences, level=0.95):
    """The word for a claim "A beats B" from per-seed differences A - B: REPRODUCED where the whole
    interval is above 0, NOT REPRODUCED where it is below, INCONCLUSIVE where it holds 0."""
    m, h = interval(differences, level)
    if m - h > 0:
        return "REPRODUCED"
    if m + h < 0:
        return "NOT REPRODUCED"
    return "INCONCLUSIVE"


def normalized(sweep):
    """Fig. 7's score, seed by seed: {T0: [(PSNR, SSIM) per seed]} -> [{T0: score} per seed]; within
    a seed each metric is min-max scaled to [0, 1] across the candidates, and the two averaged."""
    out = []
    for i in range(len(next(iter(sweep.values())))):
        score = dict.fromkeys(sweep, 0.0)
        for k in (0, 1):
            lo, hi = min(v[i][k] for v in sweep.values()), max(v[i][k] for v in sweep.values())
            for t in sweep:
                score[t] += ((sweep[t][i][k] - lo) / (hi - lo) if hi > lo else 1.0) / 2
        out.append(score)
    return out


def plot_sweep(sweep, norm, title, where="val"):
    """Fig. 7: PSNR, SSIM and the normalized score against T0, mean and 95% interval over seeds."""
    import matplotlib.pyplot as plt  # only the notebooks draw
    cands = list(sweep)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for ax, label, vals in ((axes[0], f"PSNR on {where} (dB)", lambda t: [v[0] for v in sweep[t]]),
                            (axes[1], f"SSIM on {where}", lambda t: [v[1] for v in sweep[t]]),
                            (axes[2], "normalized score (0-1, higher is better)", lambda t: [n[t] for n in norm])):
        ms = [interval(vals(t)) for t in cands]
        ax.errorbar(cands, [m for m, _ in ms], yerr=[h if h < 1e9 else 0 for _, h in ms], fmt="o-", capsize=4)
        ax.set(xlabel="T0 (the prompt's training and sampling start)", ylabel=label)
    axes[0].set_title(title, fontsize=9)
    plt.tight_layout(); plt.show()
    for t in cands:
        print(f"T0 {t}: PSNR {fmt([v[0] for v in sweep[t]])}  SSIM {fmt([v[1] for v in sweep[t]], '')}  "
              f"normalized {fmt([n[t] for n in norm], '')}")


def fmt(values, unit=" dB"):
    m, h = interval(values)
    return f"{m:.2f} ± {h:.2f}{unit}" if math.isfinite(h) else f"{m:.2f}{unit} (one seed)"
