"""Restore images and videos with learned prompts.

    python sample.py examples/haze.png --tasks=haze
    python sample.py examples/haze.png --tasks=haze --paper     # exactly the paper's method
    python sample.py in.mp4 --tasks rain,snow                   # two prompts mixed, the tiny video model
    python sample.py folder/ --tasks=lowlight --out=restored/
    torchrun --nproc_per_node=4 sample.py folder/ --tasks=rain --out=restored/   # inputs shared out

A task is a name (prompts/<backbone>/<task>.safetensors; with --paper the paper-form one in
prompts/<backbone>/paper/ where the shipped one is not) or a prompt file (ours or the authors' .pt).
Several tasks are mixed: their velocities averaged in one sampler run at one T0. Any size (tiles.py).
Without --paper, extensions.py applies. PNG, or mp4 at the input's (average) fps; never over an input
or another output.
"""
import functools
import os
import sys
import tempfile

import torch
import torch.nn.functional as F
from tqdm import tqdm

import backbones
import bridge
import extensions
from data import media
from plumbing import ddp, lowbits, tiles
from plumbing.cli import fail, parse

PROMPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts")

# ---------------------------------------------------------------- config (override: --key=value)
tasks = ""            # task names or prompt files, comma-separated; several are mixed
backbone = ""         # default: tiny-flux for images, tiny-wan for videos; flux, wan or a local folder
video = False         # treat a folder as the frames of one clip (default: a folder of images)
paper = False         # exactly the paper's method: paper-form prompts, the decoded latent as it is
out = ""              # a file (one input) or a folder; default: beside the input with a suffix
seed = 0              # seeds the sampler's starting noise (the same noise on every device)
steps = bridge.STEPS  # grid points of the sampler = backbone calls per prompt
t0 = 0.0              # start noise level of the bridge (0: the prompts' own; needed to mix different ones)
bridge_name = ""      # naive | ddbm | ebr (default: the prompts' own)
keep_detail = -1.0    # extension: >0 output = input + the restored change low-passed at this std (px); 0: off; -1: the prompt's
decoded_above = -1.0  # extension: with keep_detail, the decoded latent where the change reaches this (0: off; -1: the prompt's)
min_change = -1.0     # extension: with keep_detail, changes below this (0..1) are left out (0: off; -1: the prompt's)
tile = 0              # largest side in px restored whole, bigger inputs in tiles (0: the backbone's)
window = 0            # frames restored at once, longer clips in windows (0: the backbone's)
chunk = 16            # samples per backbone call (tiles x frames): lower it where a GPU runs out of memory
device = ""           # cuda, cuda:1, cpu (default: this rank's GPU if there is one, else the CPU)
vae_dtype = ""        # VAE precision: bf16 | fp32 (default: bf16 on GPU, fp32 on CPU)
fps = 0.0             # output fps for a folder of frames (0: 8)
progress = True       # progress bars on stderr (false: a quiet log, one line per input)
threads = 0           # torch CPU threads (0: torch's default)
cpu_bf16 = True       # on a CPU with bf16 matrix units (Intel AMX): the backbone in bf16, ~1.8x faster, within a grey level of fp32; false: fp32
max_pixels = media.MAX_PIXELS  # a frame of more pixels is refused before any work (memory grows with them); 0: no limit
max_gif_pixels = media.MAX_GIF_PIXELS  # a GIF (read whole) of more frames x pixels is refused before any work; 0: no limit
low_memory = False    # the frozen transformer in 4 bits (lowbits.LOW_MEMORY), text encoders and VAE offloaded: FLUX on a 12 GB GPU
ALIASES = {"bridge": "bridge_name"}


def prepare(bb, names, paper=False, bridge_name="", t0=0.0, keep_detail=-1.0, decoded_above=-1.0,
            min_change=-1.0, prompts_dir=PROMPTS):
    """Task names or files -> (prompts, bridge, T0, decode): what restore() takes besides the input.
    Each prompt is checked as it loads (with paper: the paper's form only). A mix is one sampler
    run: its prompts share a bridge and a T0 unless they are passed. A task name is the file
    <prompts_dir>/<backbone>/<task>.safetensors, with paper its paper-form twin in <...>/paper/
    where the backbone ships one."""
    prompts, folder = [], os.path.join(prompts_dir, bb.name)
    for name in names:
        own = os.path.join(folder, "paper", f"{name}.safetensors")
        path = name if os.path.isfile(name) else own if paper and os.path.isfile(own) else \
            os.path.join(folder, f"{name}.safetensors")
        if not os.path.isfile(path):
            if name.endswith((".safetensors", ".pt")) or os.sep in name:
                raise media.InputError(f"prompt file not found: {name}")
            have = sorted(f[:-12] for f in os.listdir(folder) if f.endswith(".safetensors")) if os.path.isdir(folder) else []
            raise media.InputError(f"unknown task {name!r} for {bb.name}: known tasks are {', '.join(have) or 'none'} "
                                   f"(in {folder}); train one with python train.py --task={name}")
        p = bb.load_prompt(path)
        if paper and extensions.coarse_of(p)[0]:
            raise media.InputError(f"{path} is a coarse prompt (extensions.py), not the paper's form: "
                                   f"drop --paper, or give a prompt trained with train.py --paper")
        prompts.append(p)
    bridges = {bridge_name or p.meta.get("bridge", "ebr") for p in prompts}
    if len(bridges) > 1:
        raise media.InputError(f"the prompts were trained on different bridges ({', '.join(sorted(bridges))}); pass --bridge")
    t0s = sorted({float(p.meta.get("t0", bb.t0)) for p in prompts})
    if not t0 and len(t0s) > 1:
        trained = ", ".join(f"{p.meta.get('task', '?')} {float(p.meta.get('t0', bb.t0)):g}" for p in prompts)
        raise media.InputError(f"the prompts were trained at different T0 ({trained}); a mix is one sampler run "
                               f"at one T0: pass --t0")
    decode = extensions.PAPER_DECODE if paper else extensions.decode_settings(
        bb.kind, prompts, keep_detail, decoded_above, min_change)
    return prompts, bridges.pop(), t0 or t0s[0], decode


def tile_sizes(bb, shape, tile=0, window=0):
    """The sampler's tile in latent units along each dim after [B, C] of a latent of `shape` (for a
    video backbone a whole window's latent frames first: restore() cuts longer clips beforehand).
    tile (px): a side, or the backbone's (height, width), turned to lie along the input's long side."""
    th, tw = (tile, tile) if tile else (bb.tile if isinstance(bb.tile, tuple) else (bb.tile, bb.tile))
    if (shape[-2] > shape[-1]) != (th > tw):
        th, tw = tw, th
    sizes = [th // bb.vae_scale, tw // bb.vae_scale]
    if bb.video:
        sizes = [((window or bb.window) - 1) // bb.temporal + 1] + sizes
    return sizes


@torch.no_grad()
def to_latents(bb, x):
    """An image [3, H, W] or a clip [3, F, H, W] in [0, 1] -> latents on the backbone's device,
    padded to what the backbone takes: sides to its multiple, and for a video backbone frames to
    4k+1 (the last repeated)."""
    x = x.to(bb.device)
    h, w = x.shape[-2:]
    pad = (0, -w % bb.multiple, 0, -h % bb.multiple)  # at the right and the bottom, reflected where it can be
    mode = "reflect" if pad[3] < h and pad[1] < w else "replicate"
    if bb.video:  # one clip [1, 3, F, H, W]
        clip = x if x.ndim == 4 else x[:, None]
        n = clip.shape[1]
        pf = -(n - 1) % bb.temporal
        clip = torch.cat([clip, clip[:, -1:].expand(-1, pf, -1, -1)], dim=1)
        batch = F.pad(clip.transpose(0, 1), pad, mode=mode).transpose(0, 1)[None]
    else:  # images [N, 3, H, W]: a clip's frames go through an image backbone as a batch
        batch = F.pad(x[None] if x.ndim == 3 else x.transpose(0, 1), pad, mode=mode)
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


def velocity(bb, x, sigma, prompts, boxes, weight, chunk=16, bar=None):
    """The velocity a sampler step follows at the state x [B, C, ...] with noise level sigma [B]:
    1. the backbone on each tile (tiles.layout: boxes, and the blending weight on x's device), at
       most `chunk` samples per call, every prompt of a mix in the same batched call
       (bb.velocity returns one velocity per prompt);
    2. the tiles' velocities blended with their ramps: one velocity over the whole latent;
    3. extension (extensions.py): a coarse prompt also asks for the bare backbone (None), in the
       same call, and follows the bare backbone's fine part and its own low-passed coarse part;
    4. the mix (paper Sec. 3.3): the mean of the prompts' velocities.
    The paper's method is steps 1, 2 and 4 with paper-form prompts. bar: ticks once per call."""
    forms = [extensions.coarse_of(p) for p in prompts]
    coarse = any(width for width, _ in forms)
    calls = list(prompts) + [None] * coarse
    b, per = x.shape[0], max(1, chunk // x.shape[0])  # tiles per call
    v = torch.zeros((len(calls),) + tuple(x.shape), device=x.device)
    norm = torch.zeros(x.shape[2:], device=x.device)
    for i in range(0, len(boxes), per):
        group = boxes[i:i + per]
        xs = torch.cat([x[(slice(None), slice(None)) + box] for box in group])
        vs = bb.velocity(xs, sigma.repeat(len(group)), calls)  # [k, tiles * B, C, ...]
        for j, box in enumerate(group):
            v[(slice(None),) * 3 + box] += vs[:, j * b:(j + 1) * b] * weight
            norm[box] += weight
        if bar is not None:
            bar.set_postfix(tiles=f"{min(i + per, len(boxes))}/{len(boxes)}")
    v = v / norm
    if coarse:  # extension: each coarse prompt's low-passed move on the bare velocity, the last entry
        v = torch.stack([extensions.coarse(vp, v[-1], width, gain) for vp, (width, gain) in zip(v[:-1], forms)])
    if bar is not None:
        bar.update(1)
    return v.mean(0)


@torch.no_grad()
def sample_latents(bb, y, prompts, bridge_name, t0, steps=bridge.STEPS, seed=0, tile=0, window=0, chunk=16,
                   progress=True, desc=""):
    """The paper's sampler (bridge.sample) on latents y (from to_latents), following velocity().
    The starting noise is drawn on the CPU from `seed` (the same on every device) and moved once."""
    eps = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.device)
    _, boxes, weight = tiles.layout(y.shape[2:], tile_sizes(bb, y.shape, tile, window))
    weight = weight.to(y.device)  # once, not per step
    with tqdm(total=steps, desc=f"restore {desc}", leave=False, disable=not progress) as bar:
        step = functools.partial(velocity, bb, prompts=prompts, boxes=boxes, weight=weight, chunk=chunk, bar=bar)
        return bridge.sample(bridge_name, step, y, eps, t0, steps=steps)


@torch.no_grad()
def restore(bb, x, prompts, bridge_name, t0, decode=extensions.PAPER_DECODE, window=0, desc="", **sampler):
    """x: an image [3, H, W] or a clip [3, F, H, W] in [0, 1] -> restored, same shape and device.
    decode: (keep_detail, decoded_above, min_change) of extensions.apply_decode; (0, 0, 0) is the
    paper's decoded latent. sampler: steps, seed, tile, chunk, progress of sample_latents.

    A clip longer than the window is cut into windows of pixel frames, each encoded, restored and
    decoded on its own, blended where they overlap: a video VAE encodes a clip's first frame alone,
    and the backbone only knows clips that begin with such a frame."""
    h, w = x.shape[-2:]
    if min(h, w) < bb.multiple:
        raise media.InputError(f"{desc}: {w}x{h} px is too small; {bb.name} needs at least "
                               f"{bb.multiple} px on each side")
    chunk = sampler.get("chunk", 16)
    if not bb.video and x.ndim == 4 and x.shape[1] > chunk:  # a clip through an image backbone: bounded batches
        return torch.cat([restore(bb, x[:, i:i + chunk], prompts, bridge_name, t0, decode, window, desc, **sampler)
                          for i in range(0, x.shape[1], chunk)], dim=1)
    size = window or bb.window
    if not (bb.video and x.ndim == 4 and x.shape[1] > size):
        y = to_latents(bb, x)
        out = from_latents(bb, sample_latents(bb, y, prompts, bridge_name, t0, window=window, desc=desc, **sampler), x)
        if not decode[0]:  # the paper: the decoded latent as it is
            return out
        return extensions.apply_decode(x, out, from_latents(bb, y, x), *decode)  # extension: the input's detail kept
    origins, r = tiles.frame_windows(x.shape[1], size)
    r = r.to(x.device)
    acc, norm = torch.zeros_like(x), torch.zeros(x.shape[1], device=x.device)
    for o in origins:
        y = restore(bb, x[:, o:o + size], prompts, bridge_name, t0, decode, window, f"{desc} frames {o}-{o + size - 1}", **sampler)
        acc[:, o:o + size] += y * r[:, None, None]
        norm[o:o + size] += r
    return acc / norm[:, None, None]


def restore_windows(bb, read, n, prompts, bridge_name, t0, decode=extensions.PAPER_DECODE, window=0, desc="",
                    **sampler):
    """A clip of n frames read a window at a time, read(first, count) -> [3, count, H, W], restored
    as restore() restores it whole (the same frames): yields the restored frames in order, each
    as soon as no later window touches it. Memory is a function of the window, not of n."""
    chunk, size = sampler.get("chunk", 16), window or bb.window
    if not bb.video or n <= size:  # frames in bounded batches through an image backbone, or one window
        for i in range(0, n, chunk if not bb.video else n):
            yield restore(bb, read(i, chunk if not bb.video else n), prompts, bridge_name, t0, decode, window, desc,
                          **sampler)
        return
    origins, r = tiles.frame_windows(n, size)
    acc = norm = None  # frames [lo, lo + acc.shape[1]) still to be written
    lo = 0
    for j, o in enumerate(origins):
        y = restore(bb, read(o, size), prompts, bridge_name, t0, decode, window, f"{desc} frames {o}-{o + size - 1}",
                    **sampler)
        if acc is None:
            acc, norm = torch.zeros_like(y[:, :0]), torch.zeros(0, device=y.device)
        grow = o + size - lo - acc.shape[1]  # new frames, zero until a window adds to them
        acc = torch.cat([acc, acc.new_zeros(acc.shape[0], grow, *acc.shape[2:])], dim=1)
        norm = torch.cat([norm, norm.new_zeros(grow)])
        acc[:, o - lo:] += y * r[:, None, None].to(y.device)
        norm[o - lo:] += r.to(y.device)
        done = (origins[j + 1] if j + 1 < len(origins) else n) - lo
        yield acc[:, :done] / norm[:done, None, None]
        acc, norm, lo = acc[:, done:], norm[done:], lo + done


def clip_reader(path, kind="video", fps=0.0):
    """A clip file (not a GIF) or a folder of frames (kind 'frames', at fps, 0: 8) -> (read, frames,
    fps) for restore_windows: read(first, count) -> [3, n, H, W], never the whole clip."""
    if kind != "frames":
        n, rate = media.video_length(path)
        return (lambda first, count: media.read_window(path, first, count)), n, rate
    files, shapes = media.list_images(path), set()

    def read(first, count):
        frames = [media.read_image(f) for f in files[first:first + count]]
        shapes.update(tuple(f.shape) for f in frames)
        if len(shapes) > 1:
            raise media.InputError(f"{path}: the frames differ in size")
        return torch.stack(frames, dim=1)
    return read, len(files), fps or 8.0


def restore_clip(bb, src, out_path, kind="video", fps=0.0, **run):
    """A clip (see clip_reader) restored into the mp4 out_path, read, restored and written a window
    at a time. run: what restore_windows takes after the frame count."""
    read, n, rate = clip_reader(src, kind, fps)
    media.write_video(out_path, restore_windows(bb, read, n, **run), rate)


def plan_outputs(paths, suffix, video=False, out=""):
    """[(input, kind, output)] for every input before any work, kind 'image', 'video', 'gif' (a clip
    read whole) or 'frames' (a folder as one clip with video). An output goes beside its input (or into --out) as
    <stem><suffix>.png / .mp4; two inputs that would share one (photo.jpg and photo.png) get their
    extension in the name (photo_jpg_...); one still shared, or an output over an input, or a
    folder that cannot be written, is refused: nothing is ever overwritten."""
    items = []
    for p in paths:
        if os.path.isdir(p):
            files = media.list_images(p)
            if not files:
                fail(f"{p}: no images in this folder")
            items += [(p, "frames")] if video else [(f, "image") for f in files]
        elif not os.path.exists(p):
            fail(f"{p}: no such file or folder")
        else:
            items.append((p, media.file_kind(p)))
    many = len(items) > 1
    if out and not os.path.isdir(out) and many and os.path.splitext(out)[1]:
        fail(f"--out={out} is a file name, but there are {len(items)} inputs; give a folder")
    into = out if out and (many or os.path.isdir(out) or out.endswith(os.sep)) else ""  # a folder
    twice = set()
    for _ in range(2):  # the second time, a name that two inputs would share gets the input's extension
        plan = []
        for src, kind in items:
            stem, own = os.path.splitext(os.path.basename(os.path.normpath(src)))
            ext = ".png" if kind == "image" else ".mp4"
            dst = os.path.join(into or os.path.dirname(os.path.normpath(src)) or ".", stem + suffix + ext)
            dst = dst if into or not out else out
            if os.path.realpath(dst) in twice and own:
                dst = os.path.join(os.path.dirname(dst), f"{stem}_{own[1:]}{suffix}{ext}")
            plan.append((src, kind, dst))
        seen = {}
        for src, _, dst in plan:
            seen.setdefault(os.path.realpath(dst), []).append(src)
        twice = {dst for dst, srcs in seen.items() if len(srcs) > 1}
        if not twice:
            break
    for dst in sorted(twice):
        fail(f"{seen[dst][0]} and {seen[dst][1]} would both be restored to {dst}; restore them in separate runs "
             f"(or into separate --out folders)")
    inputs = {os.path.realpath(s) for s, _ in items}
    for _, _, dst in plan:
        if os.path.realpath(dst) in inputs:
            fail(f"output {dst} would overwrite the input; choose another --out")
    for folder in sorted({os.path.dirname(dst) or "." for _, _, dst in plan}):
        probe = folder
        while not os.path.exists(probe):  # the nearest folder that exists: makedirs starts there
            probe = os.path.dirname(os.path.abspath(probe))
        if not os.path.isdir(probe):
            fail(f"cannot write to {folder}: {probe} is a file, not a folder")
        try:
            tempfile.TemporaryFile(dir=probe).close()
        except OSError as e:
            fail(f"cannot write to {folder}: {e.strerror or e}")
    return plan


def main(paths):
    global bridge_name, t0  # the options "'': the prompts' own", resolved by prepare()
    if not paths:
        fail("no input given: python sample.py IMAGE|VIDEO|FOLDER --tasks=haze")
    if not tasks:
        fail("no task given: --tasks=haze (or several: --tasks=rain,snow)")
    if paper and max(keep_detail, decoded_above, min_change) >= 0:
        fail("--keep_detail, --decoded_above and --min_change are extensions; --paper decodes the latent as it is")
    if steps < 1 or chunk < 1:
        fail(f"--steps={steps} and --chunk={chunk} must be at least 1")
    if t0 != 0 and not 0 < t0 < 1:
        fail(f"--t0={t0}: T0 must lie in (0, 1) (0: the prompts' own)")
    if not 0 <= fps < float("inf"):
        fail(f"--fps={fps} must be positive (0: 8)")
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    suffix = "_restored_" + "+".join(os.path.splitext(os.path.basename(n))[0] for n in names) + ("_paper" if paper else "")
    plan = plan_outputs(paths, suffix, video, out)
    for s, kind, _ in plan:  # from the headers, before anything loads
        media.check_size(media.list_images(s)[0] if kind == "frames" else s, max_pixels, max_gif_pixels)
    is_video = any(kind != "image" for _, kind, _ in plan)
    plan = plan[ddp.RANK::ddp.WORLD]  # torchrun: each process takes every WORLD-th input
    if not plan:
        return
    if threads:
        torch.set_num_threads(threads)
    bb = backbones.load(backbone or None, video=is_video, device=ddp.device(device), vae_dtype=vae_dtype or None,
                        storage=lowbits.low_memory(low_memory), cpu_bf16=cpu_bf16)
    if bb.video and window and not bb.frames_ok(window):
        fail(f"--window={window}: {bb.name} needs a frame count of the form {bb.temporal}k+1")
    if tile and (tile % bb.multiple or tile < bb.multiple):
        fail(f"--tile={tile}: {bb.name} needs a multiple of {bb.multiple} px")
    prompts, bridge_name, t0, decode = prepare(bb, names, paper, bridge_name, t0, keep_detail, decoded_above, min_change)
    how = f"{bridge_name}, T0 {t0:g}, {steps} steps" + (", the paper's method" if paper else "")
    if ddp.RANK == 0:
        print(extensions.in_effect([extensions.coarse_of(p) for p in prompts], decode), flush=True)
    for s, kind, o in tqdm(plan, desc="inputs", disable=len(plan) <= 1 or not progress):
        x, rate = (media.read_image(s), None) if kind == "image" else media.read_video(s) if kind == "gif" else \
            (None, None)  # a GIF is read whole (up to --max_gif_pixels)
        run = dict(prompts=prompts, bridge_name=bridge_name, t0=t0, decode=decode, window=window,
                   desc=os.path.basename(os.path.normpath(s)), steps=steps, seed=seed, tile=tile, chunk=chunk,
                   progress=progress)
        os.makedirs(os.path.dirname(o) or ".", exist_ok=True)
        same = ""
        if x is None:  # an mp4 or a folder of frames: read, restored and written a window at a time
            restore_clip(bb, s, o, kind, fps, **run)
        else:
            y = restore(bb, x, **run)
            if x.ndim == 4:
                media.write_video(o, y, rate)
            else:
                media.write_image(o, y)
            same = f"; {extensions.UNCHANGED}" if torch.equal(x, y) else ""
        who = f"[rank {ddp.RANK}] " if ddp.WORLD > 1 else ""
        # one write per line, newline included: ranks share stdout
        sys.stdout.write(f"{who}{s} -> {o} ({how}{same})\n")
        sys.stdout.flush()


if __name__ == "__main__":
    args = parse(globals(), sys.argv[1:], ALIASES)
    with fail.guard():
        main(args)
