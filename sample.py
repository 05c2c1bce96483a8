"""Restore images and videos with learned prompts.

    python sample.py examples/haze.png --tasks=haze
    python sample.py in.mp4 --tasks rain,snow           # two prompts mixed, the tiny video model
    python sample.py folder/ --tasks=lowlight --out=restored/
    python sample.py x.png --tasks=runs/tiny-flux-haze-ebr/haze.safetensors

A task is a name (looked up in prompts/<backbone>/<task>.safetensors) or a prompt file
(ours, or the authors' released .pt). Several tasks are mixed by averaging their velocities,
all prompts in one batched backbone call per step (paper Sec. 3.3).
Any size: the input is padded (reflect) to what the backbone needs and cropped back; inputs
larger than the backbone's tile are restored in overlapping tiles whose velocities are blended at
every step (no seams), clips longer than its window in overlapping windows of frames, each
restored on its own and blended (no frame dropped). With keep_detail (not in the paper) the
output is the input plus the low-pass of what the restoration changed, so the input's fine detail
does not go through the VAE, with decoded_above the decoded latent where the change is large
(a streak removed), and with min_change a change too small to be a restoration is left out; each
prompt carries its own choice of all three (eval.py --choose_detail).
Outputs: PNG for images, mp4 at the input's fps for videos; never over the input.

Latents, noise and the sampler's state live on the backbone's device from encode to decode; the
restored pixels come back to the device of the input. Under torchrun (several processes) the
inputs are shared out among the ranks, each on its own GPU:

    torchrun --nproc_per_node=4 sample.py folder/ --tasks=rain --out=restored/
"""
import os
import sys

import torch
import torch.nn.functional as F
from tqdm import tqdm

import backbones
import bridge
import data
import ddp
import prompt as prompt_lib
from cli import fail, parse

# ---------------------------------------------------------------- config (override: --key=value)
tasks = ""            # task names or prompt files, comma-separated; several are mixed
backbone = ""         # default: tiny-flux for images, tiny-wan for videos; flux, wan or a local folder
video = False         # treat a folder as the frames of one clip (default: a folder of images)
out = ""              # a file (one input) or a folder; default: beside the input with a suffix
seed = 0              # seeds the sampler's starting noise (the same noise on every device)
steps = bridge.STEPS  # grid points of the sampler = backbone calls per prompt
t0 = 0.0              # start noise level of the bridge (0: the prompt's own T0)
bridge_name = ""      # naive | ddbm | ebr (default: the prompt's own)
keep_detail = -1.0    # >0: output = input + the restored change, low-passed at this std (px); 0: the decoded latent; -1: the prompt's, else the backbone's
decoded_above = -1.0  # with keep_detail: where the change reaches this (mean |change|, 0..1), the decoded latent instead; 0: nowhere; -1: the prompt's
min_change = -1.0     # with keep_detail: changes smaller than this (0..1, each pixel and colour) are left out, larger ones pass nearly whole; 0: none; -1: the prompt's
# where task names are looked up: <prompts_dir>/<backbone>/<task>.safetensors
prompts_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts")
tile = 0              # largest side in px restored whole, bigger inputs in tiles (0: the backbone's)
window = 0            # frames restored at once, longer clips in windows (0: the backbone's)
chunk = 16            # tiles per backbone call
device = ""           # cuda, cuda:1, cpu (default: this rank's GPU if there is one, else the CPU)
vae_dtype = ""        # VAE precision: bf16 | fp32 (default: bf16 on GPU, fp32 on CPU)
fps = 0.0             # output fps for a folder of frames (0: 8)
progress = True       # progress bars on stderr
threads = 0           # torch CPU threads (0: torch's default)
ALIASES = {"bridge": "bridge_name"}


def prompt_path(bb, name):
    """A task name or a file -> the file: <prompts_dir>/<backbone>/<task>.safetensors for a name."""
    return name if os.path.isfile(name) else os.path.join(prompts_dir, bb.name, f"{name}.safetensors")


def resolve_prompts(bb, names):
    """Task names or files -> checked prompts."""
    out_ = []
    for name in names:
        path = prompt_path(bb, name)
        if not os.path.isfile(path):
            if name.endswith((".safetensors", ".pt")) or os.sep in name:
                raise data.InputError(f"prompt file not found: {name}")
            have = sorted(f[:-12] for f in os.listdir(os.path.join(prompts_dir, bb.name))
                          if f.endswith(".safetensors")) if os.path.isdir(os.path.join(prompts_dir, bb.name)) else []
            raise data.InputError(f"unknown task {name!r} for {bb.name}: known tasks are {', '.join(have) or 'none'} "
                                  f"(in {os.path.join(prompts_dir, bb.name)}); train one with python train.py --task={name}")
        out_.append(bb.check(prompt_lib.load(path)))
    return out_


def prepare(bb, names):
    """Task names or files -> (prompts, bridge, T0): what restore() takes (main and app.py)."""
    prompts = resolve_prompts(bb, names)
    bridges = {bridge_name or p.meta.get("bridge", "ebr") for p in prompts}
    if len(bridges) > 1:
        raise data.InputError(f"the prompts were trained on different bridges ({', '.join(sorted(bridges))}); pass --bridge")
    return prompts, bridges.pop(), t0 or float(prompts[0].meta.get("t0", bb.t0))


def starts(length, size, overlap):
    """Tile origins covering [0, length) with tiles of `size` overlapping by at least `overlap`."""
    if length <= size:
        return [0]
    return sorted(set(range(0, length - size, max(1, size - overlap))) | {length - size})


def ramp(n, size, overlap):
    """Blending weight along one axis of a tile: linear ramps over the overlap, never zero."""
    if n == 1 or overlap == 0:
        return torch.ones(size)
    r = torch.ones(size)
    k = min(overlap, size // 2)
    edge = torch.linspace(1 / (k + 1), k / (k + 1), k)
    r[:k], r[size - k:] = edge, edge.flip(0)
    return r


def layout(dims, sizes):
    """Tiles over latent dims (after [B, C]): (tile sizes, overlaps, tile origins)."""
    sizes = [min(s, d) for s, d in zip(sizes, dims)]
    overlaps = [max(1, s // 4) if s < d else 0 for s, d in zip(sizes, dims)]
    boxes = [()]
    for a in [starts(d, s, o) for d, s, o in zip(dims, sizes, overlaps)]:
        boxes = [b + (o,) for b in boxes for o in a]
    return sizes, overlaps, boxes


def tile_sizes(bb):
    """The tile size of the sampler in latent units along each dim after [B, C] (for a video
    backbone, a whole window's latent frames first: restore() cuts longer clips beforehand)."""
    sizes = [(tile or bb.tile) // (bb.multiple // 2)] * 2
    if bb.video:
        sizes = [((window or bb.window) - 1) // bb.temporal + 1] + sizes
    return sizes


def tiled(velocity_many, shape, sizes, k, bar=None):
    """A velocity on the full latent that runs the backbone on overlapping tiles (along any of
    the latent's dims), `chunk` tiles per call, and blends them with ramps (MultiDiffusion-style).
    sizes: the tile size along each of the latent's dims after [B, C]. Everything stays on the
    device of the latent (no copy per step)."""
    sizes, overlaps, boxes = layout(shape[2:], sizes)
    if len(boxes) == 1:
        return velocity_many  # fits whole: one call
    weight = torch.ones(())
    for i, (s, o) in enumerate(zip(sizes, overlaps)):
        weight = weight[..., None] * ramp(len({b[i] for b in boxes}), s, o)
    on = {}  # the weights on the latent's device, copied there once

    def where(b):
        return tuple(slice(o, o + s) for o, s in zip(b, sizes))

    def v(x, sigma):
        if x.device not in on:
            on[x.device] = weight.to(x.device)
        weight_ = on[x.device]
        acc = torch.zeros((k,) + tuple(x.shape), device=x.device)
        norm = torch.zeros(x.shape[2:], device=x.device)
        for i in range(0, len(boxes), chunk):
            group = boxes[i:i + chunk]
            xs = torch.cat([x[(slice(None), slice(None)) + where(b)] for b in group])
            vs = velocity_many(xs, sigma.repeat(len(group)))  # [k, n*B, C, ...]
            for j, b in enumerate(group):
                acc[(slice(None),) * 3 + where(b)] += vs[:, j * x.shape[0]:(j + 1) * x.shape[0]] * weight_
                norm[where(b)] += weight_
            if bar is not None:
                bar.set_postfix(tiles=f"{min(i + chunk, len(boxes))}/{len(boxes)}")
        return acc / norm
    return v


def _pad(t, ph, pw):
    """Pad [N, 3, H, W] at the bottom/right (reflect where the image is big enough)."""
    h, w = t.shape[-2:]
    return F.pad(t, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


@torch.no_grad()
def to_latents(bb, x):
    """An image [3, H, W] or a clip [3, F, H, W] in [0, 1] -> latents on the backbone's device,
    padded to what the backbone takes: sides to its multiple, and for a video backbone frames to
    4k+1 (the last repeated)."""
    x = x.to(bb.device)
    h, w = x.shape[-2:]
    ph, pw = data.ceil_to(h, bb.multiple) - h, data.ceil_to(w, bb.multiple) - w
    if bb.video:  # one clip [1, 3, F, H, W]
        clip = x if x.ndim == 4 else x[:, None]
        n = clip.shape[1]
        pf = data.ceil_to(n - 1, bb.temporal) + 1 - n
        clip = torch.cat([clip, clip[:, -1:].expand(-1, pf, -1, -1)], dim=1)
        batch = _pad(clip.transpose(0, 1), ph, pw).transpose(0, 1)[None]
    else:  # images [N, 3, H, W]: a clip's frames go through an image backbone as a batch
        batch = _pad(x[None] if x.ndim == 3 else x.transpose(0, 1), ph, pw)
    return torch.cat([bb.encode(b[None] * 2 - 1) for b in batch])


@torch.no_grad()
def from_latents(bb, z, x):
    """Latents from to_latents(bb, x) -> pixels of x's own shape (padding cropped off), on x's device."""
    h, w = x.shape[-2:]
    rec = ((torch.cat([bb.decode(zi[None]) for zi in z]) + 1) / 2).clamp(0, 1)[..., :h, :w]
    if bb.video:
        rec = rec[0, :, :x.shape[1] if x.ndim == 4 else 1]
        rec = rec if x.ndim == 4 else rec[:, 0]
    else:
        rec = rec[0] if x.ndim == 3 else rec.transpose(0, 1)
    return rec.to(x.device)


@torch.no_grad()
def sample_latents(bb, y, prompts, bridge_, t0_, desc=""):
    """The sampler on latents y (from to_latents): tiles, mixed prompts. The starting
    noise is drawn on the CPU from `seed` (the same on every device) and moved once."""
    eps = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.device)
    bar = tqdm(total=len(bridge.grid(t0_, bridge.T_MIN, steps)), desc=f"restore {desc}", leave=False,
               disable=not progress)
    # a prompt trained with --coarse keeps its width and gain; it needs the bare velocity as well
    widths, gains = zip(*[p.coarse if p is not None else (0.0, 1.0) for p in prompts])
    calls = list(prompts) + ([None] if any(widths) else [])
    many = tiled(lambda z, s: bb.velocity(z, s, calls), y.shape, tile_sizes(bb), len(calls), bar)
    mix = bridge.mixed(many, list(widths), list(gains))  # after tiling: the low-pass sees the whole latent

    def velocity(z, s):
        bar.update(1)
        return mix(z, s)

    z0 = bridge.sample(bridge_, velocity, y, eps, t0_, steps=steps)
    bar.close()
    return z0


def frame_windows(n, size):
    """Origins of the windows of `size` frames covering a clip of n frames (overlap >= 1 frame)."""
    return starts(n, size, max(1, (size - 1) // 8))


# said when the output is the input itself (sample.py's line, the web page's note)
UNCHANGED = "unchanged: the decode left out every change; README, min_change"


def decode_settings(bb, prompts=()):
    """(keep_detail, decoded_above, min_change) restore decodes with: the options where given
    (>= 0), else each prompt's own choice (eval.py --choose_detail), else the backbone's width and
    0, 0. Mixed prompts take the smallest of each (0: none), which passes the most of every
    prompt's change."""
    own = [p.decode for p in prompts if p is not None] or [(None, None, None)]
    width = min(bb.keep_detail if w is None else w for w, _, _ in own)
    above = min([a for _, a, _ in own if a] or [0.0])
    floor = min(f or 0.0 for _, _, f in own)
    pick = lambda option, own_: option if option >= 0 else own_
    return pick(keep_detail, width), pick(decoded_above, above), pick(min_change, floor)


def kept(x, decoded, base, width, above=0.0, floor=0.0):
    """The output restore gives: the decoded latent (width 0), or the input plus the low-pass of
    what the restoration changed, decoded - base with base = D(E(x)), the input's own round trip:
    the input's fine detail, which a small VAE loses on the way in, then never goes through it
    (README, "keep the input's detail"). With `floor`, a low-passed change smaller than `floor` is
    left out and a larger one passes nearly whole (a non-negative garrote, c (1 - floor^2 / c^2)):
    a restoration that has nothing to do (a blur over flat sky) still drifts by a grey level or
    two, and on an input already 45-57 dB from clean that drift alone cost up to 15 dB (README,
    "The decode, chosen per prompt").
    With `above`, where the change around a pixel (its mean absolute value over the colours,
    blurred by 1 px) reaches `above`, the output fades to the decoded latent: there the input's
    detail is what was removed (a streak, a flake)."""
    if not width:
        return decoded
    change = decoded - base
    move = bridge.lowpass(change, width)
    if floor:  # a garrote: 0 below the floor, then rising to the change itself (0.2 passes as 0.195 at 0.031)
        move = move * (1 - floor**2 / move.square().clamp(min=1e-12)).clamp(min=0)
    out = (x + move).clamp(0, 1)
    if not above:
        return out
    m = (bridge.lowpass(change.abs().mean(0, keepdim=True), 1.0) / above).clamp(0, 1)
    return m * decoded + (1 - m) * out


@torch.no_grad()
def restore(bb, x, prompts, bridge_, t0_, desc=""):
    """x: an image [3, H, W] or a clip [3, F, H, W] in [0, 1] -> restored, same shape and device.

    A clip longer than the window is cut into windows of pixel frames, each encoded, restored and
    decoded on its own, and the windows' frames are blended with ramps where they overlap. Not
    windows of one long latent: a video VAE encodes a clip's first frame alone and the next in
    groups of four, the backbone only knows clips that begin with such a single frame, and a
    window starting on a group came out worse than its input (README, notebooks)."""
    h, w = x.shape[-2:]
    if min(h, w) < bb.multiple:
        raise data.InputError(f"{desc}: {w}x{h} px is too small; {bb.name} needs at least "
                              f"{bb.multiple} px on each side")
    size = window or bb.window
    if not (bb.video and x.ndim == 4 and x.shape[1] > size):
        y = to_latents(bb, x)
        out = from_latents(bb, sample_latents(bb, y, prompts, bridge_, t0_, desc), x)
        width, above, floor = decode_settings(bb, prompts)
        return kept(x, out, from_latents(bb, y, x) if width else None, width, above, floor)
    origins = frame_windows(x.shape[1], size)
    r = ramp(len(origins), size, max(1, (size - 1) // 8)).to(x.device)
    acc, norm = torch.zeros_like(x), torch.zeros(x.shape[1], device=x.device)
    for i, o in enumerate(origins):
        y = restore(bb, x[:, o:o + size], prompts, bridge_, t0_, f"{desc} frames {o}-{o + size - 1}")
        acc[:, o:o + size] += y * r[:, None, None]
        norm[o:o + size] += r
    return acc / norm[:, None, None]


def collect_inputs(paths):
    """-> [(source path, kind)] with kind 'image', 'video' or 'frames' (a folder as one clip)."""
    items = []
    for p in paths:
        if os.path.isdir(p):
            files = data.list_images(p)
            if not files:
                raise data.InputError(f"{p}: no images in this folder")
            items += [(p, "frames")] if video else [(f, "image") for f in files]
        elif not os.path.exists(p):
            raise data.InputError(f"{p}: no such file or folder")
        else:
            items.append((p, "video" if data.is_video(p) else "image"))
    return items


def output_path(src, kind, suffix, many):
    ext = ".mp4" if kind in ("video", "frames") else ".png"
    base = os.path.splitext(os.path.basename(os.path.normpath(src)))[0] + suffix + ext
    if not out:
        return os.path.join(os.path.dirname(os.path.normpath(src)) or ".", base)
    if many or os.path.isdir(out) or out.endswith(os.sep):
        return os.path.join(out, base)
    return out


def main(paths):
    if not paths:
        fail("no input given: python sample.py IMAGE|VIDEO|FOLDER --tasks=haze")
    if not tasks:
        fail("no task given: --tasks=haze (or several: --tasks=rain,snow)")
    items = collect_inputs(paths)
    if out and not os.path.isdir(out) and len(items) > 1 and os.path.splitext(out)[1]:
        fail(f"--out={out} is a file name, but there are {len(items)} inputs; give a folder")
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    suffix = "_restored_" + "+".join(os.path.splitext(os.path.basename(n))[0] for n in names)
    # plan every output before any work: nothing is ever written over an input
    inputs = {os.path.realpath(s) for s, _ in items}
    plan = [(s, kind, output_path(s, kind, suffix, len(items) > 1)) for s, kind in items]
    for s, _, o in plan:
        if os.path.realpath(o) in inputs:
            fail(f"output {o} would overwrite the input; choose another --out")
    is_video = any(kind != "image" for _, kind, _ in plan)
    # several processes (torchrun): each takes every world()-th input, on its own device
    plan = plan[ddp.rank()::ddp.world()]
    if not plan:
        return
    if threads:
        torch.set_num_threads(threads)
    bb = backbones.load(backbone or None, video=is_video, device=ddp.device(device), vae_dtype=vae_dtype or None)
    if bb.video and window and not bb.frames_ok(window):
        fail(f"--window={window}: {bb.name} needs a frame count of the form {bb.temporal}k+1")
    prompts, bridge_, t0_ = prepare(bb, names)
    for s, kind, o in tqdm(plan, desc="inputs", disable=len(plan) <= 1 or not progress):
        if kind == "image":
            x, rate = data.read_image(s), None
        elif kind == "video":
            x, rate = data.read_video(s)
        else:
            frames = [data.read_image(f) for f in data.list_images(s)]
            if len({tuple(f.shape) for f in frames}) != 1:
                raise data.InputError(f"{s}: the frames differ in size")
            x, rate = torch.stack(frames, dim=1), fps or 8.0
        y = restore(bb, x, prompts, bridge_, t0_, desc=os.path.basename(os.path.normpath(s)))
        os.makedirs(os.path.dirname(o) or ".", exist_ok=True)
        if x.ndim == 4:
            data.write_video(o, y, rate)
        else:
            data.write_image(o, y)
        who = f"[rank {ddp.rank()}] " if ddp.world() > 1 else ""
        # one write per line, newline included: ranks share stdout, and print() writes the text and
        # its end separately (unbuffered, another rank's line could land between them)
        # a prompt whose chosen decode leaves out every change it makes (blur on the tiny default:
        # none of its decodes beat the input) gives the input back: say so rather than let it pass
        same = f" ({UNCHANGED})" if torch.equal(x, y) else ""
        sys.stdout.write(f"{who}{s} -> {o}{same}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    args = parse(globals(), sys.argv[1:], ALIASES)
    with fail.guard():
        main(args)
