"""Choose how one prompt decodes (an extension: extensions.py) and write the choice into it.

    python choose_decode.py --task=haze --prompt=runs/tiny-flux-haze-ebr/haze.safetensors
    python choose_decode.py --video --task=rain --prompt=prompts/tiny-wan/rain.safetensors --count=16

The prompt restores `count` training pairs once; each candidate (keep_detail, decoded_above,
min_change) from the lists below decodes the same sampled latents (extensions.apply_decode).
Candidates are scored as in the paper's Sec. 4.4 (PSNR and SSIM min-max normalized, averaged),
with the degraded input among them at score 0, and the best is written into the prompt's
metadata, which sample.py, eval.py and the web page then use (unless --paper). Training pairs
only: never the held-out photos that eval.py reports.
"""
import sys

import torch
from tqdm import tqdm

import backbones
import extensions
import metrics
import sample
from prompt import save as save_prompt  # by this name: the option --prompt takes `prompt`
from data import pairs
from plumbing.cli import fail, parse

# ---------------------------------------------------------------- config (override: --key=value)
task = "haze"                    # the degradation of the training pairs
prompt = ""                      # the prompt file to choose for (.safetensors; it is rewritten)
backbone = ""                    # tiny-flux (default), tiny-wan, flux, wan, or a local folder
video = False                    # with no --backbone: the tiny video backbone
data_source = "photos"           # photos | a folder | list.json (training pairs; never heldout)
any_label = False    # a .json list: its Mixed and None entries too (else refused)
data_root = ""       # a .json list: where its relative paths start (default: its folder, then the working one)
count = 32                       # training pairs restored
size = 0                         # crop size (0: the backbone's training size)
frames = 0                       # clip length for video backbones (0: the backbone's)
keep_detail = "0,1,2,4,8,16"     # keep_detail values tried (0: the decoded latent, the paper's)
decoded_above = "0,0.06,0.12,0.25"   # decoded_above values tried with each width > 0
min_change = "0,0.004,0.008,0.016,0.031,0.063,0.125"   # min_change values tried with each width > 0
seed = 0                         # seeds the pairs and the sampler's starting noise
device = ""                      # cuda, cuda:1, cpu (default: the GPU if there is one)
ALIASES = {"data": "data_source"}


def values(text, name):
    try:
        out = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"--{name}={text}: expected numbers separated by commas")
    if not out or min(out) < 0:
        fail(f"--{name}={text}: give one or more values >= 0")
    return out


def candidates(widths, aboves, floors):
    """Every combination; the decoded latent (width 0) has neither a threshold nor a floor."""
    return [(w, a, f) for w in widths for a in (aboves if w else [0.0]) for f in (floors if w else [0.0])]


def choose(bb, p, pair_list, before, cands, seed_):
    """-> (best candidate, {candidate: mean PSNR/SSIM}, {candidate: score}, the degraded input's
    mean PSNR/SSIM); before: the degraded input's metrics per pair."""
    ref = {k: sum(m[k] for m in before) / len(before) for k in ("psnr", "ssim")}
    rows = {c: [] for c in cands}
    br, t0 = p.meta.get("bridge", "ebr"), float(p.meta.get("t0", bb.t0))
    for i, (deg, clean) in enumerate(tqdm(pair_list, desc="restore training pairs")):
        y = sample.to_latents(bb, deg)
        z = sample.sample_latents(bb, y, [p], br, t0, seed=seed_, progress=False)
        decoded, base = sample.from_latents(bb, z, deg), sample.from_latents(bb, y, deg)
        for c in cands:
            rows[c].append(metrics.metrics(extensions.apply_decode(deg, decoded, base, *c), clean))
    results = {c: {k: sum(r[k] for r in rs) / len(rs) for k in ("psnr", "ssim")} for c, rs in rows.items()}
    scores = metrics.score(results, ref)
    best = max(cands, key=lambda c: (scores[c], *(-v for v in c)))  # a tie goes to the smaller setting
    return best, results, scores, ref


def main():
    global size, frames  # the options "0: the backbone's", resolved once below
    if not prompt or not prompt.endswith(".safetensors"):
        fail("--prompt: give the .safetensors prompt file to choose for (the choice is written into it)")
    if data_source == "heldout":
        fail("--data=heldout: a decode is chosen on training pairs, never on the held-out photos eval.py reports")
    cands = candidates(values(keep_detail, "keep_detail"), values(decoded_above, "decoded_above"),
                       values(min_change, "min_change"))
    bb = backbones.load(backbone or None, video=video, device=device or None)
    p = bb.load_prompt(prompt)
    print(f"{extensions.in_effect([extensions.coarse_of(p)])}; choosing its decode, an extension (--paper ignores it)")
    size, frames = size or bb.train_size, frames or (bb.train_frames if bb.video else 1)
    pair_list = pairs.make_pairs(data_source, task, count, size, frames, torch.Generator().manual_seed(seed + 7),
                                 bb.video, any_label=any_label, data_root=data_root)
    pair_list, before = metrics.restorable(pair_list)
    if not pair_list:
        fail("every pair's degraded input equals its clean image: nothing to choose on")
    best, results, scores, ref = choose(bb, p, pair_list, before, cands, seed)
    print(f"\ndecode of {prompt} on {len(pair_list)} {data_source} pairs ({bb.name}):")
    print(f"{'keep_detail':<12} {'decoded_above':>13} {'min_change':>10} {'PSNR':>7} {'SSIM':>7} {'score':>6}")
    print(f"{'(degraded)':<12} {'':>13} {'':>10} {ref['psnr']:7.2f} {ref['ssim']:7.4f}")
    for c in cands:
        r = results[c]
        print(f"{c[0]:<12g} {c[1]:>13g} {c[2]:>10g} {r['psnr']:7.2f} {r['ssim']:7.4f} {scores[c]:6.3f}"
              + ("  <- chosen" if c == best else ""))
    p.meta.update({k: f"{v:g}" for k, v in zip(extensions.DECODE_KEYS, best)})
    save_prompt(p.cpu(), prompt)
    print(f"wrote keep_detail={best[0]:g} decoded_above={best[1]:g} min_change={best[2]:g} into {prompt}")


if __name__ == "__main__":
    parse(globals(), sys.argv[1:], ALIASES)
    with fail.guard():
        main()
