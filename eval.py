"""Evaluate restoration: PSNR and SSIM (RGB and Y) per image, a CSV, a summary JSON, a table.

    python eval.py --task=haze                              # held-out photos; degraded, bare, shipped prompt
    python eval.py --task=haze --prompts=a.safetensors,b.safetensors --data=path/to/pairs
    python eval.py --vae_only --size=512                     # what the VAE alone keeps of clean photos
    python eval.py --task=rain --data=photos --choose_detail=0,1,2,4,8,16 --choose_above=0,0.12 --choose_floor=0,0.004   # choose its decode

Rows: the degraded input; the clean image through the VAE and back (the ceiling of any
latent-space restoration); the frozen backbone sampled from the same noisy degraded start with no
prompt (gates at zero, EBR sampler); then each prompt with its own bridge and T0.
Metrics are computed on uint8-quantized images. Y is MATLAB's rgb2ycbcr luma
(16 + 65.481 R + 128.553 G + 24.966 B); SSIM uses the 11x11 Gaussian window (sigma 1.5,
K1 0.01, K2 0.03) on each channel, averaged. Videos: the mean over frames.
"""
import csv
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from tqdm import tqdm

import backbones
import data
import prompt as prompt_lib
import sample
from cli import fail, parse

# ---------------------------------------------------------------- config (override: --key=value)
task = "haze"         # haze | rain | snow | lowlight | blur
prompts = ""          # comma-separated prompt files or task names (default: the shipped prompt)
backbone = ""         # tiny-flux (default), tiny-wan, flux, wan, or a local folder
video = False         # with no --backbone: the tiny video backbone instead of the image one
data_source = "heldout"   # heldout | photos | a folder | list.json (as in train.py)
count = 0             # pairs to evaluate (0: all of heldout, 16 of other sources)
size = 0              # crop size (0: the backbone's default training size)
frames = 0            # clip length for video backbones (0: the backbone's default)
bare = True           # include the frozen backbone with no prompt
keep_detail = -1.0    # as in sample.py: >0 keeps the input's detail (std in px), 0 the decoded latent, -1 the prompt's/backbone's
decoded_above = -1.0  # as in sample.py: where the change reaches this, the decoded latent (0: nowhere, -1: the prompt's)
min_change = -1.0     # as in sample.py: changes below this left out, larger ones pass nearly whole (0: none, -1: the prompt's)
choose_detail = ""    # e.g. 0,1,2,4,8,16: decode one prompt with each keep_detail on training pairs, write the best into it
choose_above = "0"    # with --choose_detail: the decoded_above values tried with each width, e.g. 0,0.06,0.12,0.25
choose_floor = "0"    # with --choose_detail: the min_change values tried with each width, e.g. 0,0.004,0.008,0.016
vae_only = False      # only the degraded and VAE round-trip rows (the ceiling; e.g. with --size=512)
seed = 0              # seeds the pairs and the sampler's starting noise
pictures = 4          # pairs written as pictures, <out>/pair_<i>.png: each row's output side by side, then clean
out = ""              # folder for the CSV/JSON/pictures (default runs/eval-<backbone>-<task>)
device = ""           # cuda, cuda:1, cpu (default: the GPU if there is one, else the CPU)
vae_dtype = ""        # VAE precision: bf16 | fp32 (default: bf16 on GPU, fp32 on CPU)
ALIASES = {"data": "data_source"}


# ------------------------------------------------------------------------------ metrics

def quantize(x):
    """[0, 1] float -> the float values of its uint8 image."""
    return (x.clamp(0, 1) * 255).round()


def rgb_to_y(x255):
    """MATLAB rgb2ycbcr luma of [3, ...] in 0..255 -> [1, ...] in 16..235."""
    r, g, b = x255 / 255
    return (16 + 65.481 * r + 128.553 * g + 24.966 * b)[None]


def psnr(a255, b255):
    mse = (a255 - b255).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


def _gauss_window(size=11, sigma=1.5):
    """The 1-D Gaussian whose outer product is SSIM's 11x11 window: two 1-D passes give the same
    sums as one 2-D pass at a fifth of the cost (eval.choose scores a hundred decodes a pair)."""
    a = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-a**2 / (2 * sigma**2))
    return (g / g.sum())[None, None, None]


def ssim(a255, b255):
    """Mean SSIM of [C, H, W] images in 0..255 (Wang et al. 2004), valid windows only."""
    g = _gauss_window()
    blur = lambda x: F.conv2d(F.conv2d(x, g), g.transpose(2, 3))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a255.double()[:, None], b255.double()[:, None]
    mu_a, mu_b = blur(a), blur(b)
    saa = blur(a * a) - mu_a**2
    sbb = blur(b * b) - mu_b**2
    sab = blur(a * b) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return m.mean().item()


def metrics(pred, target):
    """PSNR/SSIM in RGB and on Y of an image [3, H, W] or a clip [3, F, H, W] (mean over frames)."""
    if pred.ndim == 4:
        per = [metrics(pred[:, f], target[:, f]) for f in range(pred.shape[1])]
        return {k: sum(p[k] for p in per) / len(per) for k in per[0]}
    p, t = quantize(pred), quantize(target)
    py, ty = rgb_to_y(p), rgb_to_y(t)
    return dict(psnr=psnr(p, t), ssim=ssim(p, t), psnr_y=psnr(py, ty), ssim_y=ssim(py, ty))


def perceptual_metrics():
    """LPIPS, DISTS, CLIPIQA, MUSIQ need a library and downloaded weights: say which are absent."""
    why = {}
    try:
        import pyiqa  # noqa: F401
        why = {m: "pyiqa is installed, but its weights download at first use (no download here)"
               for m in ("lpips", "dists", "clipiqa", "musiq")}
    except ImportError:
        why = {m: "needs the pyiqa package and its downloaded weights" for m in ("lpips", "dists", "clipiqa", "musiq")}
    return why


def score(results, reference=None):
    """{candidate: {"psnr", "ssim", ...}} -> {candidate: score}: PSNR and SSIM each min-max normalized
    across the candidates, then averaged (the paper's Sec. 4.4 procedure; notebook 02 chooses T0
    with it). With a reference (the degraded input's metrics) it counts among the candidates for
    the range and scores 0: a spread of 0.04 dB among candidates that all gain 5 dB then weighs
    0.04 / 5, where plain min-max would stretch it over the whole scale."""
    norm = {c: [] for c in results}
    for k in ("psnr", "ssim"):
        vals = [r[k] for r in results.values()] + ([reference[k]] if reference else [])
        lo, span = (reference[k] if reference else min(vals)), max(vals) - min(vals)
        for c, r in results.items():
            norm[c].append((r[k] - lo) / span if span > 0 else 1.0)
    return {c: sum(v) / len(v) for c, v in norm.items()}


def choose(bb, path, p, pairs, before):
    """Decode one prompt's restorations with each (keep_detail, decoded_above, min_change) of
    --choose_detail, --choose_above and --choose_floor (sample.kept: the same sampled latents each
    way; training crops fit one tile), score them against the degraded input, and write the best
    into the prompt file, which sample.py, eval.py and the web page then use. Chosen on training
    pairs, never on held-out ones."""
    values = lambda text: [float(v) for v in text.split(",") if v.strip()] or [0.0]
    widths, aboves, floors = values(choose_detail), values(choose_above), values(choose_floor)
    # the decoded latent (width 0) has neither a threshold nor a floor
    cands = [(w, a, f) for w in widths for a in (aboves if w else [0.0]) for f in (floors if w else [0.0])]
    rows = {c: [] for c in cands}
    sample.seed = seed
    br, t0_ = p.meta.get("bridge", "ebr"), float(p.meta.get("t0", bb.t0))
    ref = {k: sum(m[k] for m in before) / len(before) for k in ("psnr", "ssim")}
    for i, (deg, clean) in enumerate(tqdm(pairs, desc=f"choose the decode of {task}")):
        y = sample.to_latents(bb, deg)
        decoded = sample.from_latents(bb, sample.sample_latents(bb, y, [p], br, t0_, f"{i}"), deg)
        base = sample.from_latents(bb, y, deg)
        for c in cands:
            rows[c].append(metrics(sample.kept(deg, decoded, base, *c), clean))
    results = {c: {k: sum(r[k] for r in rs) / len(rs) for k in ("psnr", "ssim")} for c, rs in rows.items()}
    scores = score(results, ref)
    best = max(cands, key=lambda c: (scores[c], *(-v for v in c)))  # a tie goes to the smaller setting
    print(f"\ndecode of {path} on {len(pairs)} {data_source} pairs ({bb.name}):")
    print(f"{'keep_detail':<12} {'above':>6} {'floor':>6} {'PSNR':>7} {'SSIM':>7} {'score':>6}")
    print(f"{'(degraded)':<12} {'':>6} {'':>6} {ref['psnr']:7.2f} {ref['ssim']:7.4f}")
    for c in cands:
        r = results[c]
        print(f"{c[0]:<12g} {c[1]:>6g} {c[2]:>6g} {r['psnr']:7.2f} {r['ssim']:7.4f} {scores[c]:6.3f}"
              + ("  <- chosen" if c == best else ""))
    p.meta["keep_detail"], p.meta["decoded_above"], p.meta["min_change"] = (f"{v:g}" for v in best)
    prompt_lib.save(p, path)
    print(f"wrote keep_detail={best[0]:g} decoded_above={best[1]:g} min_change={best[2]:g} into {path}")
    return best, results


# ------------------------------------------------------------------------------ the loop

def main():
    global size, frames, out
    bb = backbones.load(backbone or None, video=video, device=device or None, vae_dtype=vae_dtype or None)
    size = size or bb.train_size
    frames = frames or (bb.train_frames if bb.video else 1)
    names = [p.strip() for p in (prompts or task).split(",") if p.strip()]
    if choose_detail and (len(names) != 1 or data_source == "heldout"):
        fail("--choose_detail decodes one prompt on training pairs: give one prompt and --data=photos "
             "(or a folder), not the held-out photos the tables report")
    if choose_detail and not sample.prompt_path(bb, names[0]).endswith(".safetensors"):
        fail(f"--choose_detail writes its choice into the prompt: {names[0]} is not a .safetensors prompt")
    ps = [] if vae_only else sample.resolve_prompts(bb, names)
    n = count or (0 if data_source == "heldout" else 16)
    pairs = data.make_pairs(data_source, task, n, size, frames, torch.Generator().manual_seed(seed + 7), bb.video)
    # a pair the degradation left unchanged (a blur kernel of one pixel over a flat crop) has
    # nothing to restore, and its infinite PSNR would make every mean infinite
    kept = [((d, c), m) for d, c in pairs for m in [metrics(d, c)] if m["psnr"] < float("inf")]
    if len(kept) < len(pairs):
        print(f"{len(pairs) - len(kept)} of {len(pairs)} pairs left out: their degraded input equals the clean image")
    if not kept:
        fail("every pair's degraded input equals its clean image: nothing to evaluate")
    pairs, before = [pc for pc, _ in kept], [m for _, m in kept]
    if choose_detail:
        return choose(bb, sample.prompt_path(bb, names[0]), ps[0], pairs, before)
    out = out or os.path.join("runs", f"eval-{bb.name}-{task}")
    os.makedirs(out, exist_ok=True)
    # the VAE round trip of the clean image is the ceiling of any restoration in latent space
    methods = [("degraded", None, None, None), ("VAE round trip of clean", None, None, None)]
    if bare and not vae_only:
        methods.append(("bare backbone", None, "ebr", bb.t0))
    labels = [f"prompt {p.meta.get('bridge', 'ebr')}" for p in ps]
    for name, p, label in zip(names, ps, labels):
        if labels.count(label) > 1:  # same bridge twice: tell them apart by file
            label += f" ({name})"
        methods.append((label, p, p.meta.get("bridge", "ebr"), float(p.meta.get("t0", bb.t0))))
    rows = []
    sample.seed, sample.keep_detail, sample.decoded_above, sample.min_change = seed, keep_detail, decoded_above, min_change
    for i, (deg, clean) in enumerate(tqdm(pairs, desc=f"eval {task}")):
        preds = []
        for label, p, br, t0_ in methods:
            if label == "degraded":
                pred = deg
            elif label == "VAE round trip of clean":
                pred = sample.from_latents(bb, sample.to_latents(bb, clean), clean)
            else:
                pred = sample.restore(bb, deg, [p], br, t0_, desc=f"{i}")
            rows.append(dict(index=i, method=label, **(before[i] if label == "degraded" else metrics(pred, clean))))
            preds.append(pred)
        if i < pictures:  # to be looked at: numbers alone once called a darker, worse image restored
            row = torch.cat(preds + [clean], -1)
            data.write_image(os.path.join(out, f"pair_{i}.png"), row[:, row.shape[1] // 2] if bb.video else row)
    keys = ["psnr", "ssim", "psnr_y", "ssim_y"]
    summary = {}
    for label, *_ in methods:
        sel = [r for r in rows if r["method"] == label]
        summary[label] = {k: sum(r[k] for r in sel) / len(sel) for k in keys}
    csv_path, json_path = os.path.join(out, "per_image.csv"), os.path.join(out, "summary.json")
    with open(csv_path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["index", "method"] + keys)
        wr.writeheader()
        wr.writerows(rows)
    unavailable = perceptual_metrics()
    json.dump(dict(task=task, backbone=bb.name, data=data_source, pairs=len(pairs), size=size, seed=seed,
                   decode={label: sample.decode_settings(bb, [p]) for label, p, br, _ in methods if br},
                   summary=summary, unavailable=unavailable), open(json_path, "w"), indent=1)
    print(f"\n{task} on {len(pairs)} {data_source} pairs ({bb.name}, {size} px), uint8-quantized:")
    print(f"{'method':<24} {'PSNR':>7} {'SSIM':>7} {'PSNR-Y':>7} {'SSIM-Y':>7}")
    for label, m in summary.items():
        print(f"{label:<24} {m['psnr']:7.2f} {m['ssim']:7.4f} {m['psnr_y']:7.2f} {m['ssim_y']:7.4f}")
    for k, why in unavailable.items():
        print(f"{k}: unavailable: {why}")
    print(f"wrote {csv_path} and {json_path}" + (f"; pictures ({', '.join(l for l, *_ in methods)}, clean): "
          f"{out}/pair_0..{min(pictures, len(pairs)) - 1}.png" if pictures else ""))
    return summary


if __name__ == "__main__":
    parse(globals(), sys.argv[1:], ALIASES)
    with fail.guard():
        main()
