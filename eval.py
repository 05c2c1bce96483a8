"""Evaluate restoration: PSNR and SSIM (RGB and Y) per image, a CSV, a summary JSON, a table, pictures.

    python eval.py --task=haze                    # the held-out photos: degraded, VAE, bare, the shipped prompt
    python eval.py --task=haze --paper            # the paper's method (paper-form prompt, plain decode)
    python eval.py --task=haze --prompts=a.safetensors,b.safetensors --data=path/to/pairs
    python eval.py --vae_only --size=512          # what the VAE alone keeps of clean photos
    python eval.py --task=haze --baselines        # and beside them a classical method and a U-Net (baselines.py)

Rows: degraded; clean through the VAE and back (the ceiling in latent space); the bare backbone
from the same start; each prompt (its bridge, T0); with --baselines a classical method and a U-Net.
Ours: uint8-quantized, Y MATLAB's luma, SSIM the 11x11 Gaussian window; the paper's (the authors'
code): float RGB in [0, 1], scikit-image's defaults (7x7 uniform window). Clips: mean over frames.
"""
import csv
import json
import os
import sys

import torch
from tqdm import tqdm

import backbones
import extensions
import metrics
import sample
from baselines import count as learned_numbers, restorers  # `count` is an option here
from data import media, pairs
from plumbing import lowbits
from plumbing.cli import fail, parse

# ---------------------------------------------------------------- config (override: --key=value)
task = "haze"         # haze | rain | snow | lowlight | blur
prompts = ""          # comma-separated prompt files or task names (default: the shipped prompt)
backbone = ""         # tiny-flux (default), tiny-wan, flux, wan, or a local folder
video = False         # with no --backbone: the tiny video backbone instead of the image one
data_source = ""      # heldout | shapes-test | shapes-val | photos | a folder | list.json ('': the backbone's held-out set)
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
baselines = False     # also the classical method and the supervised U-Net of baselines.py (same pairs, metrics, pictures)
unet = ""             # with --baselines: the U-Net file (default prompts/<backbone>/baselines/<task>.safetensors)
pictures = 4          # pairs written as pictures, <out>/pair_<i>.png: each row's output side by side, then clean
out = ""              # folder for the CSV/JSON/pictures (default runs/eval-<backbone>-<task>)
device = ""           # cuda, cuda:1, cpu (default: the GPU if there is one, else the CPU)
vae_dtype = ""        # VAE precision: bf16 | fp32 (default: bf16 on GPU, fp32 on CPU)
low_memory = False    # as in sample.py: the frozen transformer in 4 bits, text encoders and VAE offloaded
ALIASES = {"data": "data_source"}


# ------------------------------------------------------------------------------ the loop

def main():
    global size, frames, out  # the options "0: the backbone's", resolved once below
    if paper and max(keep_detail, decoded_above, min_change) >= 0:
        fail("--keep_detail, --decoded_above and --min_change are extensions; --paper decodes the latent as it is")
    if vae_only and baselines:
        fail("--vae_only and --baselines: the VAE's ceiling alone, or the restorations beside it; choose one")
    if unet and not baselines:
        fail("--unet is the U-Net row of --baselines; add --baselines")
    bb = backbones.load(backbone or None, video=video, device=device or None, vae_dtype=vae_dtype or None,
                        storage=lowbits.low_memory(low_memory))
    size, frames = size or bb.train_size, frames or (bb.train_frames if bb.video else 1)
    source = data_source or bb.heldout  # the held-out photos; tiny-shapes: its world's test split
    names = [p.strip() for p in (prompts or task).split(",") if p.strip()]
    ps = [] if vae_only else [sample.prepare(bb, [n], paper, "", 0.0, keep_detail, decoded_above, min_change)
                              for n in names]  # each prompt alone: (prompts, bridge, T0, decode)
    for name, (p, _, _, decode) in zip(names, ps):
        print(f"{name}: {extensions.in_effect([extensions.coarse_of(q) for q in p], decode)}")
    extra, about = restorers(bb, task, unet) if baselines else ([], {})
    n = count or (0 if source in ("heldout", "shapes-test", "shapes-val") else 16)
    pair_list = pairs.make_pairs(source, task, n, size, frames, torch.Generator().manual_seed(seed + 7), bb.video,
                                 any_label=any_label, data_root=data_root)
    kept, before = metrics.restorable(pair_list)
    if len(kept) < len(pair_list):
        print(f"{len(pair_list) - len(kept)} of {len(pair_list)} pairs left out: their degraded input equals the clean image")
    if not kept:
        fail("every pair's degraded input equals its clean image: nothing to evaluate")
    pair_list = kept
    out = out or os.path.join("runs", f"eval-{bb.name}-{task}" + ("-paper" if paper else ""))
    os.makedirs(out, exist_ok=True)
    # label -> (restore(i, deg, clean) -> pred, learned numbers (None: not a restoration), decode or
    # None); the VAE round trip of clean is the ceiling in latent space
    methods = {"degraded": (lambda i, d, c: d, 0, None),
               "VAE round trip of clean": (lambda i, d, c: sample.from_latents(bb, sample.to_latents(bb, c), c), None, None)}

    def sampler(p, br, t0, decode):
        return lambda i, d, c: sample.restore(bb, d, p, br, t0, decode, desc=f"{i}", seed=seed)

    if bare and not vae_only:  # the bare backbone from the same start as this backbone's new prompts
        t0_bare = bb.t0 if paper else extensions.defaults(bb.kind).get("t0", bb.t0)
        decode_bare = extensions.PAPER_DECODE if paper else extensions.decode_settings(bb.kind, [])
        methods["bare backbone"] = (sampler([None], "ebr", t0_bare, decode_bare), 0, decode_bare)
    labels = [f"prompt {br}" for _, br, _, _ in ps]
    for name, (p, br, t0, decode), label in zip(names, ps, labels):
        if labels.count(label) > 1:  # same bridge twice: tell them apart by file
            label += f" ({name})"
        methods[label] = (sampler(p, br, t0, decode), sum(learned_numbers(q) for q in p), decode)
    for label, fn, learned in extra:
        methods[label] = (lambda i, d, c, fn=fn: fn(d), learned, None)
    rows = []
    for i, (deg, clean) in enumerate(tqdm(pair_list, desc=f"eval {task}")):
        preds = []
        for label, (run, _, _) in methods.items():
            pred = run(i, deg, clean)
            ours = before[i] if label == "degraded" else metrics.metrics(pred, clean)
            rows.append(dict(index=i, method=label, **ours, **metrics.paper_metrics(pred, clean)))
            preds.append(pred)
        if i < pictures:  # to be looked at: numbers alone once called a darker, worse image restored
            media.write_sheet(os.path.join(out, f"pair_{i}.png"), [preds + [clean]])
    keys = ["psnr", "ssim", "psnr_y", "ssim_y", "psnr_paper", "ssim_paper"]
    summary = {}
    for label in methods:
        sel = [r for r in rows if r["method"] == label]
        summary[label] = {k: sum(r[k] for r in sel) / len(sel) for k in keys}
    learned = {label: n for label, (_, n, _) in methods.items()}
    csv_path, json_path = os.path.join(out, "per_image.csv"), os.path.join(out, "summary.json")
    with open(csv_path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["index", "method"] + keys)
        wr.writeheader()
        wr.writerows(rows)
    decodes = {label: d for label, (_, _, d) in methods.items() if d is not None}
    json.dump(dict(task=task, backbone=bb.name, data=source, pairs=len(pair_list), size=size, seed=seed,
                   paper=paper, decode=decodes, learned=learned, baselines=about, summary=summary,
                   metrics=dict(ours="uint8-quantized; SSIM 11x11 Gaussian window (sigma 1.5); _y on MATLAB's luma",
                                paper="float RGB in [0, 1], data_range 1; SSIM scikit-image's default 7x7 uniform window")),
              open(json_path, "w"), indent=1)
    how = "the paper's method" if paper else "with extensions"
    width = max(24, *(len(label) for label in methods))
    print(f"\n{task} on {len(pair_list)} {source} pairs ({bb.name}, {size} px, {how}); "
          f"ours: uint8-quantized, 11x11 Gaussian SSIM; paper's: float, 7x7 uniform SSIM (scikit-image):")
    head = ("method", "PSNR", "SSIM", "PSNR-Y", "SSIM-Y", "paper's PSNR", "SSIM")
    print("{:<{w}} {:>7} {:>7} {:>7} {:>7} | {:>13} {:>7} | learned".format(*head, w=width))
    for label, m in summary.items():
        n_learned = "-" if learned[label] is None else f"{learned[label]:,}"
        print(f"{label:<{width}} {m['psnr']:7.2f} {m['ssim']:7.4f} {m['psnr_y']:7.2f} {m['ssim_y']:7.4f} | "
              f"{m['psnr_paper']:13.2f} {m['ssim_paper']:7.4f} | {n_learned}")
    if "classical" in about:
        c = about["classical"]
        print(f"classical: {c['method']}, " + ", ".join(f"{k}={v}" for k, v in c["settings"].items()))
    if "unet" in about:
        u = about["unet"]
        print(f"supervised U-Net: {u['file']} (widths {u['widths']}, {u['steps']} steps on {u['data']}, seed {u['seed']})")
    print(f"wrote {csv_path} and {json_path}" + (f"; pictures ({', '.join(methods)}, clean): "
          f"{out}/pair_0..{min(pictures, len(pair_list)) - 1}.png" if pictures else ""))
    return summary


if __name__ == "__main__":
    parse(globals(), sys.argv[1:], ALIASES)
    with fail.guard():
        main()
