"""Restore images and videos with learned prompts.

    python sample.py examples/haze.png --tasks=haze
    python sample.py in.mp4 --tasks rain,snow           # two prompts mixed, the tiny video model
    python sample.py folder/ --tasks=lowlight --out=restored/
    python sample.py x.png --tasks=runs/tiny-flux-haze-ebr/haze.safetensors

A task is a name (looked up in prompts/<backbone>/<task>.safetensors) or a prompt file
(ours, or the authors' released .pt). Several tasks are mixed by averaging their velocities,
all prompts in one batched backbone call per step (paper Sec. 3.3).
Any size: the input is padded (reflect) to what the backbone needs and cropped back; images
larger than the backbone's tile and clips longer than its window are restored in overlapping
tiles/windows whose velocities are blended at every step, so there are no seams and no frame
is dropped. Outputs: PNG for images, mp4 at the input's fps for videos; never over the input.
"""
import os
import sys

import torch
import torch.nn.functional as F
from tqdm import tqdm

import backbones
import bridge
import data
import prompt as prompt_lib
from cli import fail, parse

# ---------------------------------------------------------------- config (override: --key=value)
tasks = ""
backbone = ""         # default: tiny-flux for images, tiny-wan for videos
video = False         # treat a folder as the frames of one clip (default: a folder of images)
out = ""              # a file (one input) or a folder; default: beside the input with a suffix
seed = 0              # seeds the sampler's starting noise
steps = bridge.STEPS
t0 = 0.0              # 0: the prompt's own T0
bridge_name = ""      # --bridge: default the prompt's own
prompts_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts")
tile = 0              # 0: the backbone's default (largest side restored whole)
window = 0            # 0: the backbone's default (frames per window)
chunk = 16            # tiles per backbone call
device = ""
fps = 0.0             # output fps for a folder of frames (0: 8)
ALIASES = {"bridge": "bridge_name"}


def resolve_prompts(bb, names):
    """Task names or files -> checked prompts."""
    out_ = []
    for name in names:
        path = name if os.path.isfile(name) else os.path.join(prompts_dir, bb.name, f"{name}.safetensors")
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
    return prompts, bridges.pop(), t0 or float(prompts[0].meta.get("t0", bridge.T0))


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


def tiled(velocity_many, shape, sizes, k, bar=None):
    """A velocity on the full latent that runs the backbone on overlapping tiles (and windows of
    latent frames), `chunk` tiles per call, and blends them with ramps (MultiDiffusion-style).
    sizes: the tile size along each of the latent's dims after [B, C]."""
    dims = shape[2:]
    sizes = [min(s, d) for s, d in zip(sizes, dims)]
    overlaps = [max(1, s // 4) if s < d else 0 for s, d in zip(sizes, dims)]
    axes = [starts(d, s, o) for d, s, o in zip(dims, sizes, overlaps)]
    if all(len(a) == 1 for a in axes):
        return velocity_many  # fits whole: one call
    boxes = [()]
    for a in axes:
        boxes = [b + (o,) for b in boxes for o in a]
    weight = torch.ones(())
    for a, s, o in zip(axes, sizes, overlaps):
        weight = weight[..., None] * ramp(len(a), s, o)

    def where(b):
        return tuple(slice(o, o + s) for o, s in zip(b, sizes))

    def v(x, sigma):
        acc, norm = torch.zeros((k,) + tuple(x.shape)), torch.zeros(x.shape[2:])
        for i in range(0, len(boxes), chunk):
            group = boxes[i:i + chunk]
            xs = torch.cat([x[(slice(None), slice(None)) + where(b)] for b in group])
            vs = velocity_many(xs, sigma.repeat(len(group))).cpu()  # [k, n*B, C, ...]
            for j, b in enumerate(group):
                acc[(slice(None),) * 3 + where(b)] += vs[:, j * x.shape[0]:(j + 1) * x.shape[0]] * weight
                norm[where(b)] += weight
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
    """An image [3, H, W] or a clip [3, F, H, W] in [0, 1] -> latents, padded to what the backbone
    takes: sides to its multiple, and for a video backbone frames to 4k+1 (the last repeated)."""
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
    return torch.cat([bb.encode(b[None] * 2 - 1).cpu() for b in batch])


@torch.no_grad()
def from_latents(bb, z, x):
    """Latents from to_latents(bb, x) -> pixels of x's own shape (padding cropped off)."""
    h, w = x.shape[-2:]
    rec = ((torch.cat([bb.decode(zi[None]).cpu() for zi in z]) + 1) / 2).clamp(0, 1)[..., :h, :w]
    if bb.video:
        rec = rec[0, :, :x.shape[1] if x.ndim == 4 else 1]
        return rec if x.ndim == 4 else rec[:, 0]
    return rec[0] if x.ndim == 3 else rec.transpose(0, 1)


@torch.no_grad()
def restore(bb, x, prompts, bridge_, t0_, desc=""):
    """x: an image [3, H, W] or a clip [3, F, H, W] in [0, 1] -> restored, same shape."""
    h, w = x.shape[-2:]
    if min(h, w) < bb.multiple:
        raise data.InputError(f"{desc}: {w}x{h} px is too small; {bb.name} needs at least "
                              f"{bb.multiple} px on each side")
    y = to_latents(bb, x)
    eps = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
    sizes = [(tile or bb.tile) // (bb.multiple // 2)] * 2
    if bb.video:
        sizes = [((window or bb.window) - 1) // bb.temporal + 1] + sizes
    bar = tqdm(total=len(bridge.grid(t0_, bridge.T_MIN, steps)), desc=f"restore {desc}", leave=False)
    many = tiled(lambda z, s: bb.velocity(z, s, prompts), y.shape, sizes, len(prompts), bar)

    def velocity(z, s):
        bar.update(1)
        return bridge.mixed(many)(z, s)

    z0 = bridge.sample(bridge_, velocity, y, eps, t0_, steps=steps)
    bar.close()
    return from_latents(bb, z0, x)


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
    bb = backbones.load(backbone or None, video=is_video, device=device or None)
    prompts, bridge_, t0_ = prepare(bb, names)
    for s, kind, o in tqdm(plan, desc="inputs", disable=len(plan) == 1):
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
        print(f"{s} -> {o}")


if __name__ == "__main__":
    args = parse(globals(), sys.argv[1:], ALIASES)
    with fail.guard():
        main(args)
