"""Evaluate restoration: PSNR and SSIM (RGB and Y) per image, a CSV, a summary JSON, a table, pictures.

    python eval.py --task=haze                    # the held-out photos: degraded, VAE, bare, the shipped prompt
    python eval.py --task=haze --paper            # the paper's method (paper-form prompt, plain decode)
    python eval.py --task=haze --prompts=a.safetensors,b.safetensors --data=path/to/pairs
    python eval.py --vae_only --size=512          # what the VAE alone keeps of clean photos

Rows: the degraded input; the clean image through the VAE and back (the ceiling of any restoration
in latent space); the frozen backbone with no prompt from the same start; each prompt with its own
bridge and T0. Metrics on uint8-quantized images; Y is MATLAB's rgb2ycbcr luma; SSIM the 11x11
Gaussian window (sigma 1.5). Videos: the mean over frames.
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
import extensions
import media
import pairs
import prompt as prompt_lib
import sample
from cli import fail, parse

# ---------------------------------------------------------------- config (override: --key=value)
task = "haze"         # haze | rain | snow | lowlight | blur
prompts = ""          # comma-separated prompt files or task names (default: the shipped prompt)
backbone = ""         # tiny-flux (default), tiny-wan, flux, wan, or a local folder
video = False         # with no --backbone: the tiny video backbone instead of the image one
data_source = "heldout"   # heldout | photos | a folder | list.json (as in train.py)
any_label = False    # a .json list: its Mixed and None entries too (else refused)
data_root = ""       # a .json list: where its relative paths start (default: its folder, then the working one)
count = 0             # pairs to evaluate (0: all of heldout, 16 of other sources)
size = 0              # crop size (0: the backbone's default training size)
frames = 0            # clip length for video backbones (0: the backbone's default)
bare = True           # include the frozen backbone with no prompt
paper = False         # exactly the paper's method: paper-form prompts, the decoded latent as it is
keep_detail = -1.0    # extension, as in sample.py: >0 keeps the input's detail (std in px), 0 off, -1 the prompt's
decoded_above = -1.0  # extension, as in sample.py (0: off, -1: the prompt's)
min_change = -1.0     # extension, as in sample.py (0: off, -1: the prompt's)
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


# ------------------------------------------------------------------------------ the loop

def main():
    if paper and max(keep_detail, decoded_above, min_change) >= 0:
        fail("--keep_detail, --decoded_above and --min_change are extensions; --paper decodes the latent as it is")
    bb = backbones.load(backbone or None, video=video, device=device or None, vae_dtype=vae_dtype or None)
    size_ = size or bb.train_size
    frames_ = frames or (bb.train_frames if bb.video else 1)
    names = [p.strip() for p in (prompts or task).split(",") if p.strip()]
    ps = [] if vae_only else [sample.prepare(bb, [n], paper, "", 0.0, keep_detail, decoded_above, min_change)
                              for n in names]  # each prompt alone: (prompts, bridge, T0, decode)
    n = count or (0 if data_source == "heldout" else 16)
    pair_list = pairs.make_pairs(data_source, task, n, size_, frames_, torch.Generator().manual_seed(seed + 7), bb.video,
                                 any_label=any_label, data_root=data_root)
    # a pair the degradation left unchanged (a blur kernel of one pixel over a flat crop) has
    # nothing to restore, and its infinite PSNR would make every mean infinite
    kept = [((d, c), m) for d, c in pair_list for m in [metrics(d, c)] if m["psnr"] < float("inf")]
    if len(kept) < len(pair_list):
        print(f"{len(pair_list) - len(kept)} of {len(pair_list)} pairs left out: their degraded input equals the clean image")
    if not kept:
        fail("every pair's degraded input equals its clean image: nothing to evaluate")
    pair_list, before = [pc for pc, _ in kept], [m for _, m in kept]
    out_ = out or os.path.join("runs", f"eval-{bb.name}-{task}" + ("-paper" if paper else ""))
    os.makedirs(out_, exist_ok=True)
    # (label, prompts, bridge, T0, decode); the VAE round trip of clean is the ceiling in latent space
    methods = [("degraded", None, None, None, None), ("VAE round trip of clean", None, None, None, None)]
    if bare and not vae_only:  # the bare backbone from the same start as this backbone's new prompts
        t0_bare = bb.t0 if paper else extensions.defaults(bb.kind).get("t0", bb.t0)
        decode_bare = extensions.PAPER_DECODE if paper else extensions.decode_settings(bb.kind, [])
        methods.append(("bare backbone", [None], "ebr", t0_bare, decode_bare))
    labels = [f"prompt {br}" for _, br, _, _ in ps]
    for name, (p, br, t0_, decode), label in zip(names, ps, labels):
        if labels.count(label) > 1:  # same bridge twice: tell them apart by file
            label += f" ({name})"
        methods.append((label, p, br, t0_, decode))
    rows = []
    for i, (deg, clean) in enumerate(tqdm(pair_list, desc=f"eval {task}")):
        preds = []
        for label, p, br, t0_, decode in methods:
            if label == "degraded":
                pred = deg
            elif label == "VAE round trip of clean":
                pred = sample.from_latents(bb, sample.to_latents(bb, clean), clean)
            else:
                pred = sample.restore(bb, deg, p, br, t0_, decode, desc=f"{i}", seed=seed)
            rows.append(dict(index=i, method=label, **(before[i] if label == "degraded" else metrics(pred, clean))))
            preds.append(pred)
        if i < pictures:  # to be looked at: numbers alone once called a darker, worse image restored
            row = torch.cat(preds + [clean], -1)
            media.write_image(os.path.join(out_, f"pair_{i}.png"), row[:, row.shape[1] // 2] if bb.video else row)
    keys = ["psnr", "ssim", "psnr_y", "ssim_y"]
    summary = {}
    for label, *_ in methods:
        sel = [r for r in rows if r["method"] == label]
        summary[label] = {k: sum(r[k] for r in sel) / len(sel) for k in keys}
    csv_path, json_path = os.path.join(out_, "per_image.csv"), os.path.join(out_, "summary.json")
    with open(csv_path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["index", "method"] + keys)
        wr.writeheader()
        wr.writerows(rows)
    unavailable = perceptual_metrics()
    json.dump(dict(task=task, backbone=bb.name, data=data_source, pairs=len(pair_list), size=size_, seed=seed,
                   paper=paper, decode={label: decode for label, _, br, _, decode in methods if br},
                   summary=summary, unavailable=unavailable), open(json_path, "w"), indent=1)
    how = "the paper's method" if paper else "with extensions"
    print(f"\n{task} on {len(pair_list)} {data_source} pairs ({bb.name}, {size_} px, {how}), uint8-quantized:")
    print(f"{'method':<24} {'PSNR':>7} {'SSIM':>7} {'PSNR-Y':>7} {'SSIM-Y':>7}")
    for label, m in summary.items():
        print(f"{label:<24} {m['psnr']:7.2f} {m['ssim']:7.4f} {m['psnr_y']:7.2f} {m['ssim_y']:7.4f}")
    for k, why in unavailable.items():
        print(f"{k}: unavailable: {why}")
    print(f"wrote {csv_path} and {json_path}" + (f"; pictures ({', '.join(l for l, *_ in methods)}, clean): "
          f"{out_}/pair_0..{min(pictures, len(pair_list)) - 1}.png" if pictures else ""))
    return summary


if __name__ == "__main__":
    parse(globals(), sys.argv[1:], ALIASES)
    with fail.guard():
        main()
