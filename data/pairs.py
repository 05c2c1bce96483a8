"""Training and evaluation pairs (degraded, clean): random crops and virtual-camera clips of the
photos, paired folders, JSON lists in the authors' format, generated clean images.
"""
import glob
import json
import math
import os

import torch
import torch.nn.functional as F

from . import photos  # photos.photo is looked up on the module, so that tests can patch it
from . import shapes
from .media import IMAGE_EXTS, VIDEO_EXTS, InputError, file_kind, list_images, read_image, read_video, read_window, resize, video_shape


def random_crop(img, size, g, min_scale=0.25, max_scale=1.0):
    """A random rescale (relative to the photo), crop and horizontal flip: [3, size, size]."""
    _, h, w = img.shape
    lo = max(min_scale, size / min(h, w))  # never upsample past the photo's own resolution
    s = lo + (max(max_scale, lo) - lo) * torch.rand((), generator=g).item()
    img = resize(img, max(size, round(h * s)), max(size, round(w * s)))
    _, h, w = img.shape
    y = torch.randint(0, h - size + 1, (), generator=g).item()
    x = torch.randint(0, w - size + 1, (), generator=g).item()
    crop = img[:, y:y + size, x:x + size]
    return crop.flip(-1) if torch.rand((), generator=g) < 0.5 else crop


def camera_clip(img, size, frames, g):
    """A virtual camera moving over a photo (pan and zoom): [3, frames, size, size]."""
    _, h, w = img.shape
    # boxes as (centre y, centre x, half side) in normalized [-1, 1] coordinates
    def box():
        half = 0.25 + 0.5 * torch.rand((), generator=g).item()
        cy, cx = [(1 - half) * (2 * torch.rand((), generator=g).item() - 1) for _ in range(2)]
        return torch.tensor([cy, cx, half])
    a, b = box(), box()
    b = a + (b - a) * 0.3  # gentle motion: a third of the way to a second random box
    s = torch.linspace(0, 1, frames)[:, None]
    cy, cx, half = (a + (b - a) * s).unbind(-1)
    aspect = h / w  # keep pixels square: the box spans `half` of the shorter side
    sx, sy = half * min(1, aspect), half * min(1, 1 / aspect)
    theta = torch.zeros(frames, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, sy, cy
    grid = F.affine_grid(theta, (frames, 3, size, size), align_corners=False)
    src = resize(img, min(h, 4 * size), round(w * min(h, 4 * size) / h)) if h > 4 * size else img
    clip = F.grid_sample(src[None].expand(frames, -1, -1, -1), grid, mode="bilinear",
                         padding_mode="reflection", align_corners=False)
    if torch.rand((), generator=g) < 0.5:
        clip = clip.flip(-1)
    return clip.permute(1, 0, 2, 3).clamp(0, 1)


def gif_clip(frames_all, size, frames, g):
    """`frames` consecutive GIF frames, upscaled to size x size."""
    n = frames_all.shape[1]
    start = torch.randint(0, max(1, n - frames + 1), (), generator=g).item()
    idx = [(start + i) % n for i in range(frames)]
    return resize(frames_all[:, idx], size, size)


def paired_folder(folder):
    """input/ and gt/ with matching file names -> [(input_path, gt_path)]."""
    inp, gt = os.path.join(folder, "input"), os.path.join(folder, "gt")
    pairs = []
    for f in list_images(inp):
        match = os.path.join(gt, os.path.basename(f))
        if not os.path.isfile(match):
            stem = os.path.splitext(os.path.basename(f))[0]
            found = [g for g in list_images(gt) if os.path.splitext(os.path.basename(g))[0] == stem]
            if not found:
                raise InputError(f"{f}: no matching ground truth in {gt}")
            match = found[0]
        pairs.append((f, match))
    if not pairs:
        raise InputError(f"{folder}: no images in {inp}")
    return pairs


# The authors' list files label each entry with a degradation; the labels they use, by our task
LABELS = {"haze": "haze", "rain": "rain", "raindrop": "rain", "snow": "snow", "lowlight": "lowlight",
          "low-light": "lowlight", "blur": "blur", "motion blur": "blur"}
NO_TASK = ("mixed", "none")  # entries of several degradations or of none: only with any_label


def json_list(path, task=None, any_label=False, data_root=""):
    """The authors' JSON format: [{"image_path", "target_path", "degradation", "dataset"}];
    image_path/target_path may be lists of frames (video). With a task, the entries whose label
    (LABELS, any case) is that task; "Mixed" and "None" entries too with any_label, else they are
    refused. Relative paths resolve against data_root, else the JSON's folder, else the working one."""
    try:
        items = json.load(open(path))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a readable JSON list ({e})") from None
    if not isinstance(items, list):
        raise InputError(f"{path}: not a JSON list of entries")
    roots = [data_root] if data_root else [os.path.dirname(os.path.abspath(path)), os.getcwd()]

    def fix(p):
        if isinstance(p, list):
            return [fix(q) for q in p]
        if os.path.isabs(p):
            return p
        return next((os.path.join(r, p) for r in roots if os.path.exists(os.path.join(r, p))), os.path.join(roots[0], p))
    out, untasked = [], {}
    for it in items:
        if not isinstance(it, dict) or "image_path" not in it or "target_path" not in it:
            raise InputError(f"{path}: every entry needs image_path and target_path")
        label = str(it.get("degradation", task or "")).strip()
        if task:
            if label.lower() in NO_TASK:
                untasked[label] = untasked.get(label, 0) + 1
                if not any_label:
                    continue
            elif label.lower() not in LABELS:
                raise InputError(f"{path}: unknown degradation label {label!r} (known: {', '.join(sorted(LABELS))}, "
                                 f"and Mixed/None with --any_label)")
            elif LABELS[label.lower()] != task:
                continue
        out.append((fix(it["image_path"]), fix(it["target_path"])))
    if untasked and not any_label:
        counts = ", ".join(f"{n} labelled {k!r}" for k, n in untasked.items())
        raise InputError(f"{path}: {counts}: such entries belong to no single task; pass --any_label to train "
                         f"the {task} prompt on them too")
    if not out:
        raise InputError(f"{path}: no entries" + (f" for degradation {task!r}" if task else ""))
    # every file checked now (a stat, no decode), not when first drawn hundreds of steps in
    listed = [f for pair in out for side in pair for f in (side if isinstance(side, list) else [side])]
    missing = [f for f in listed if not os.path.isfile(f)]
    if missing:
        raise InputError(f"{path}: {len(missing)} of the {len(listed)} files it lists are missing "
                         f"(the first: {missing[0]})" + ("" if data_root else "; --data_root says where they start"))
    return out


def read(path):
    """An image or video file -> [3, H, W] or [3, F, H, W] in [0, 1]: the one reader of training
    files (tests patch it to count decodes)."""
    return read_video(path)[0] if file_kind(path) != "image" else read_image(path)


class Clip:
    """A clip on disk, not decoded: a video file or a list of frame files. shape is the decoded
    clip's [3, F, H, W]; window(first, count) reads those frames only (a long 1080p video costs
    GBs decoded whole, for the few frames a training pair takes)."""
    ndim = 4

    def __init__(self, src):
        self.src = src
        if isinstance(src, list):
            from PIL import Image
            try:
                with Image.open(src[0]) as im:
                    w, h = im.size
            except OSError as e:
                raise InputError(f"{src[0]}: not a readable image ({e})") from None
            self.shape = (3, len(src), h, w)
        else:
            self.shape = (3,) + video_shape(src)

    def window(self, first, count):
        if isinstance(self.src, list):
            return torch.stack([read(f) for f in self.src[first:first + count]], dim=1)
        return read_window(self.src, first, count)


def load_pair_item(item):
    """A (degraded, clean) pair of paths -> images, or Clips for videos and lists of frame paths."""
    def one(p):
        return Clip(p) if isinstance(p, list) or file_kind(p) != "image" else read(p)
    deg, clean = one(item[0]), one(item[1])
    if tuple(deg.shape) != tuple(clean.shape):
        raise InputError(f"{item[0]}: size {tuple(deg.shape)} differs from its target {tuple(clean.shape)}")
    return deg, clean


def _crop_box(h, w, size, g):
    """A random size x size crop of an h x w input: (the size it is first resized up to, or None; y, x)."""
    up = None
    if min(h, w) < size:
        s = size / min(h, w)
        up = h, w = math.ceil(h * s), math.ceil(w * s)
    y = torch.randint(0, h - size + 1, (), generator=g).item()
    x = torch.randint(0, w - size + 1, (), generator=g).item()
    return up, y, x


def _crop(t, box, size):
    up, y, x = box
    t = resize(t, *up) if up else t
    return t[..., y:y + size, x:x + size]


def _aligned_crop(deg, clean, size, g):
    """The same random crop of a pair ([3, H, W] or [3, F, H, W]); smaller inputs are resized up."""
    box = _crop_box(*clean.shape[-2:], size, g)
    return _crop(deg, box, size), _crop(clean, box, size)


def _frames(clip, first, count):
    """Frames [first, first + count) of a decoded clip or of a Clip (read then)."""
    return clip.window(first, count) if isinstance(clip, Clip) else clip[:, first:first + count]


def items(source, task, any_label=False, data_root="", clean=None):
    """What a training source holds, nothing decoded: (items, synthetic). An item is a photo's
    name, a clean file's path, a clean tensor (`clean`, for 'generate') or a (degraded, clean)
    pair of paths; synthetic: the items are clean, degraded by degrade.py when drawn."""
    if source == "photos":
        return photos.available(photos.TRAIN_PHOTOS), True
    if source == "shapes":
        return shapes.Split("train"), True
    if source == "generate":
        return list(clean), True
    if os.path.isfile(source) and source.endswith(".json"):
        return json_list(source, task, any_label, data_root), False
    if os.path.isdir(os.path.join(source, "input")):
        return paired_folder(source), False
    if os.path.isdir(source):
        files = [f for f in sorted(glob.glob(os.path.join(source, "*"))) if f.lower().endswith(IMAGE_EXTS + VIDEO_EXTS)]
        if not files:
            raise InputError(f"{source}: no images or videos")
        return files, True
    raise InputError(f"--data {source!r}: not 'photos', 'shapes', 'generate', a folder or a .json list")


def load(item):
    """An item of items() -> its pixels: a clean image or clip, or a (degraded, clean) pair."""
    if torch.is_tensor(item):
        return item
    if isinstance(item, tuple):
        return load_pair_item(item)
    if item in photos.PIP_PHOTOS or item in photos.DEBIAN_PHOTOS:
        return photos.photo(item)
    if item.startswith("shapes:"):
        return shapes.read(item)
    return Clip(item) if file_kind(item) != "image" else read(item)


def draw(px, synthetic, task, size, frames, video, g):
    """One (degraded, clean) pair of an item's pixels, every random choice from g: a crop of a
    clean image (a virtual-camera clip on a video backbone) degraded by degrade.py, or the same
    crop (and window of frames) of a degraded image and its target."""
    from .degrade import degrade
    if synthetic:
        if px.ndim == 4:  # the crop, then the window of frames: only those frames are read
            box = _crop_box(*px.shape[-2:], size, g)
            n = px.shape[1]
            if video and n < frames:
                raise InputError(f"a training clip has {n} frames; {frames} are needed")
            s = torch.randint(0, n - frames + 1, (), generator=g).item() if video else 0
            x = _crop(_frames(px, s, frames if video else 1), box, size)
            x = x if video else x[:, 0]
        else:
            x = camera_clip(px, size, frames, g) if video else random_crop(px, size, g)
        return degrade(task, x, g), x
    deg, cl = px
    if video:
        if deg.ndim != 4:
            raise InputError("a video backbone needs clips (lists of frames or videos), got images")
        n = deg.shape[1]
        s = torch.randint(0, max(1, n - frames + 1), (), generator=g).item()
        if n < frames:
            raise InputError(f"a training clip has {n} frames; {frames} are needed")
        deg, cl = _frames(deg, s, frames), _frames(cl, s, frames)
    elif deg.ndim == 4:
        deg, cl = _frames(deg, 0, 1)[:, 0], _frames(cl, 0, 1)[:, 0]
    return _aligned_crop(deg, cl, size, g)


def make_pairs(source, task, n, size, frames, g, video=False, clean=None, any_label=False, data_root=""):
    """n (degraded, clean) pixel pairs of `size` px (clips of `frames` frames if video), all in
    memory (eval.py, choose_decode.py; train.py streams with dataset.py, and with --cache_latents
    takes iter_pairs' pairs one at a time)."""
    return list(iter_pairs(source, task, n, size, frames, g, video, clean, any_label, data_root))


def iter_pairs(source, task, n, size, frames, g, video=False, clean=None, any_label=False, data_root=""):
    """make_pairs' n pairs made one at a time, as they are taken: only the pair in hand is in memory.

    source: 'photos' (the shipped training photos, degraded synthetically), 'heldout' (the
    evaluation crops, never used for training), 'shapes' (the shapes world's training images),
    'shapes-val' and 'shapes-test' (its first n validation or test images; 128 if n is 0), a folder
    with input/ and gt/ (paired), a folder of clean images or videos (degraded synthetically), a .json
    list in the authors' format, or 'generate' with the clean images passed in `clean` (a list of tensors).
    """
    if source in ("shapes-val", "shapes-test", "heldout"):
        return _fixed(source, task, n, size, frames, video)
    its, synthetic = items(source, task, any_label, data_root, clean)  # here: a bad source refused before any work
    return _drawn(source, its, synthetic, task, n, size, frames, g, video)


def _fixed(source, task, n, size, frames, video):
    """The evaluation pairs: pair i degraded by its own seed 1000 + i (every method sees the same)."""
    from .degrade import degrade
    if source == "heldout":
        for i, (_, img) in enumerate(photos.eval_crops(size)):
            if n and i >= n:
                return
            gi = torch.Generator().manual_seed(1000 + i)
            x = camera_clip(img, size, frames, gi) if video else img
            yield degrade(task, x, gi), x
        return
    for i in range(n or 128):  # image i of the shapes world's split
        gi = torch.Generator().manual_seed(1000 + i)
        x = shapes.draw(shapes.index(source.split("-")[1], i))[0]
        yield degrade(task, x, gi), x


def _drawn(source, its, synthetic, task, n, size, frames, g, video):
    """n pairs of items drawn with g, each a fresh crop (and degradation) of an item."""
    loaded = {}  # the photos, kept as uint8 when first drawn (73 photos: 0.8 GB); other files read per draw
    for _ in range(n):
        i = torch.randint(len(its), (), generator=g).item()
        if source == "photos" and i not in loaded:
            loaded[i] = (load(its[i]) * 255).round().to(torch.uint8)
        px = loaded[i].float() / 255 if source == "photos" else load(its[i])
        yield draw(px, synthetic, task, size, frames, video, g)
