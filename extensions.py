"""What this repo adds to the paper. Everything here is off with --paper, and each piece alone
with the switch named beside it.

- coarse prompt: the prompt steers only the low-passed velocity, its fine part is the bare
  backbone's (train.py --coarse=W --gain=g; off: --coarse=0). Why: on a small prior the paper's
  prompt gives up the prior's denoising and leaves fine-grained noise (docs/extensions.md).
- kept detail: output = input + the low-passed restored change, so the input's fine detail never
  goes through a small, lossy VAE (sample.py --keep_detail=W; off: 0).
- decoded_above: where that change is large (a streak removed), the decoded latent (off: 0).
- min_change: changes too small to be a restoration are left out (off: 0).
- a decode chosen per prompt on training photos (choose_decode.py), stored in the prompt file.
"""
import math

import torch
import torch.nn.functional as F

# What new prompts, and prompts with no decode of their own, get on each backbone kind: where they
# restore better (the tiny image backbone, docs/RESULTS.md); every other kind: the paper's.
PER_KIND = {"tiny-flux": dict(coarse=2.0, gain=8.0, t0=0.1, keep_detail=2.0)}
DECODE_KEYS = ("keep_detail", "decoded_above", "min_change")
PAPER_DECODE = (0.0, 0.0, 0.0)  # the decoded latent as it is
# said when the output is the input itself (sample.py prints it, the web page shows it)
UNCHANGED = "unchanged: the decode left out every change (min_change; --paper or --min_change=0 shows the raw output)"


def defaults(kind):
    return PER_KIND.get(kind, {})


def in_effect(coarse=(), decode=PAPER_DECODE):
    """The line a script prints when it starts: the paper's method, or the extensions in effect
    (coarse: (width, gain) per prompt; decode: keep_detail, decoded_above, min_change) and their switches."""
    on = [f"coarse prompt (width {w:g}, gain {g:g}; train.py --coarse=0 trains without)" for w, g in sorted(set(coarse)) if w]
    on += [f"{name} {v:g} (off: --{name}=0)" for name, v in zip(DECODE_KEYS, decode) if v]
    return ("method: the paper's, no extension" if not on else
            f"method: the paper's + extensions.py: {', '.join(on)}; --paper turns them all off")


# ------------------------------------------------------------------------- the coarse prompt

def lowpass(x, width):
    """The coarse part of a latent field: a Gaussian blur of std `width` latent pixels over the
    last two (spatial) dims, each channel and frame on its own, mirrored at the edges (a latent
    smaller than the kernel repeats its border instead). Shifted slices summed, not conv2d: on a
    CPU a one-channel conv2d takes ~19 copies of its input (3 MP: 0.65 GB), this takes three."""
    r = max(1, round(3 * width))
    k = [math.exp(-i * i / (2 * width**2)) for i in range(-r, r + 1)]
    k = [v / sum(k) for v in k]
    y = x.reshape(-1, *x.shape[-2:])
    mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
    for dim, pad in ((-1, (r, r, 0, 0)), (-2, (0, 0, r, r))):
        p = F.pad(y[:, None], pad, mode=mode)[:, 0]
        n = y.shape[dim]
        y = k[0] * p.narrow(dim, 0, n)
        for i in range(1, len(k)):
            y = y.add_(p.narrow(dim, i, n), alpha=k[i])
        del p
    return y.reshape(x.shape)


def coarse_of(p):
    """(width, gain) a prompt was trained with; width 0 is the paper's prompt form (None: bare)."""
    if p is None:
        return 0.0, 1.0
    return float(p.meta.get("coarse", 0)), float(p.meta.get("gain", 1))


def coarse(v_prompt, v_bare, width, gain=1.0):
    """v_bare + gain * lowpass(v_prompt - v_bare): the prompt's coarse move on the bare backbone's
    fine detail. The gain: EBR's target velocity carries the degradation divided by T0, so a small
    T0 asks the prompt for more than it can give; with a gain g it gives 1/g of that."""
    return v_prompt if not width else v_bare + gain * lowpass(v_prompt - v_bare, width)


def prompted(bb, p, z_t, sigma):
    """The velocity one prompt gives, as training and the sampler use it: its own (the paper), or
    for a coarse prompt its low-pass on the bare backbone's fine part (no gradient through that)."""
    width, gain = coarse_of(p)
    if not width:
        return bb.velocity(z_t, sigma, [p])[0]
    with torch.no_grad():  # first: with gradient checkpointing the prompted call is recomputed in
        v_bare = bb.velocity(z_t, sigma)[0]  # backward, and must be the last call the hooks saw
    return coarse(bb.velocity(z_t, sigma, [p])[0], v_bare, width, gain)


# ------------------------------------------------------------------------------- the decode

def decode_settings(kind, prompts, keep_detail=-1.0, decoded_above=-1.0, min_change=-1.0):
    """The decode a restore uses: each option where given (>= 0), else the prompts' own choice,
    else the backbone kind's default keep_detail and 0, 0. A mix takes the smallest of each (0:
    none), which passes the most of every prompt's change. A prompt's own: the decode
    choose_decode.py chose for it, kept in its file (None where none was chosen)."""
    own = [tuple(None if p.meta.get(k) is None else float(p.meta[k]) for k in DECODE_KEYS)
           for p in prompts if p is not None] or [(None, None, None)]
    if keep_detail < 0:
        keep_detail = min(defaults(kind).get("keep_detail", 0.0) if k is None else k for k, _, _ in own)
    if decoded_above < 0:
        decoded_above = min([a for _, a, _ in own if a] or [0.0])
    if min_change < 0:
        min_change = min(m or 0.0 for _, _, m in own)
    return keep_detail, decoded_above, min_change


def apply_decode(x, decoded, base, keep_detail, decoded_above=0.0, min_change=0.0):
    """The output pixels: the decoded latent (keep_detail 0, the paper), or the input plus the
    low-pass (std keep_detail px) of what the restoration changed, decoded - base, with base =
    D(E(x)) the input's own round trip. min_change: a non-negative garrote, c (1 - m^2 / c^2), so
    a drift of a grey level where there was nothing to restore is left out and a real change
    passes nearly whole. decoded_above: where the change (mean over colours, blurred 1 px)
    reaches it, fade to the decoded latent: there the input's detail is what was removed (a
    streak, a flake)."""
    if not keep_detail:
        return decoded
    change = decoded - base
    move = lowpass(change, keep_detail)
    if min_change:
        move = move * (1 - min_change**2 / move.square().clamp(min=1e-12)).clamp(min=0)
    out = (x + move).clamp(0, 1)
    if not decoded_above:
        return out
    m = (lowpass(change.abs().mean(0, keepdim=True), 1.0) / decoded_above).clamp(0, 1)
    return m * decoded + (1 - m) * out
