"""Images, videos and datasets: the offline photos of the tiny default, crops and virtual-camera
clips, file I/O, and the training sources train.py and eval.py read.

Pixels are float tensors in [0, 1]: images [3, H, W], clips [3, F, H, W].
"""
import glob
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

# The real photos that scikit-image and scikit-learn ship (always here: pip installs them), with a
# short caption each.
PIP_PHOTOS = {
    "astronaut": "a photo of an astronaut in a white space suit",
    "chelsea": "a photo of a ginger cat",
    "china": "a photo of a chinese temple",
    "hubble_deep_field": "a photo of galaxies in deep space",
    "retina": "a photo of a retina",
    "immunohistochemistry": "a microscope photo of stained tissue",
    "motorcycle_left": "a photo of a red motorcycle",
    "motorcycle_right": "a photo of a red motorcycle",
    "camera": "a grayscale photo of a cameraman",
    "brick": "a grayscale photo of a brick wall",
    "grass": "a grayscale photo of grass",
    "gravel": "a grayscale photo of gravel",
    "moon": "a grayscale photo of the moon surface",
    "coins": "a grayscale photo of coins",
    "clock": "a grayscale photo of a clock",
    "cell": "a grayscale microscope photo of a cell",
}
# Photos and illustrations of Debian's wallpaper packages (1-24 megapixels), read from where apt
# installs them:  apt-get install plasma-workspace-wallpapers ukui-wallpapers lomiri-wallpapers
# lomiri-wallpapers-16.04 lomiri-wallpapers-20.04
DEBIAN_PACKAGES = ("plasma-workspace-wallpapers", "ukui-wallpapers", "lomiri-wallpapers",
                   "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04")
DEBIAN_DIRS = ("/usr/share/wallpapers", "/usr/share/backgrounds")
DEBIAN_PHOTOS = {
    "Altai": "an illustration of blue mountains over a lake",
    "Autumn": "a painting of an autumn tree and a girl",
    "BytheWater": "a photo of a wooden pier at sunset",
    "Canopee": "an abstract illustration of a yellow road",
    "Cascade": "an abstract illustration of green and blue terraces",
    "Cluster": "an abstract illustration of red hexagons",
    "ColdRipple": "a grey photo of a jetty in the fog",
    "ColorfulCups": "a photo of colourful cups from above",
    "DarkestHour": "a dark blue photo of a lake at dusk",
    "Elarun": "an abstract illustration of blue curves",
    "EveningGlow": "a photo of boats on a lake at sunset",
    "FallenLeaf": "a photo of an autumn leaf",
    "Flow": "an abstract illustration of a rainbow stream of hexagons",
    "FlyingKonqui": "an illustration of a green dragon on blue",
    "Grey": "a grayscale photo of a curved facade",
    "Honeywave": "an abstract illustration of orange and blue shapes",
    "IceCold": "an abstract illustration of blue ice",
    "Kay": "an abstract illustration of pastel triangles",
    "Kite": "a photo of a kite in a blue sky with clouds",
    "Kokkini": "an abstract illustration of red waves",
    "MilkyWay": "a photo of stars in a purple night sky",
    "OneStandsOut": "a photo of green plants from above",
    "Opal": "an abstract illustration of blue and brown planes",
    "PastelHills": "an abstract illustration of pastel hills",
    "Patak": "an illustration of a paper plane over water",
    "Path": "a photo of a path in a pine forest",
    "SafeLanding": "an illustration of a rocket in a colourful landscape",
    "Shell": "an abstract illustration of purple shells",
    "Volna": "an aerial photo of waves on a beach",
    "summer_1am": "a photo of a lake at dusk",
    "2004default": "an illustration of a pink ribbon on cyan",
    "Bridge_by_Sander_Klootwijk": "a photo of bridge cables over a beach",
    "Dragonfly_by_Bolly": "a photo of leaves against the sky",
    "Fossa_by_Jasper_Roks": "an abstract illustration of red shapes",
    "Infinite-Sea_by_Aury88": "an illustration of the milky way over the sea",
    "Kleiber_by_Lukas_Baubkus": "a photo of a bird on a tree trunk",
    "Painting-Colors_by__herobrine7gamer": "an illustration of coloured stripes",
    "Picture_0B_by_freespace": "a photo of a red bowl with a fig",
    "Picture_1A_by_freespace": "a photo of paint brushes",
    "Wine_by_Jakkub_Mede": "a photo of a room with a chair",
    "aitzgorri_by_Aitzol_Berasategi": "a photo of autumn trees below a mountain",
    "analogpattern_by_Peter_Nerlich": "a photo of a blurred green and purple pattern",
    "calla": "an illustration of a calla flower",
    "city": "an illustration of flat teal shapes",
    "desert": "an illustration of a yellow dune",
    "firstgeneration": "an illustration of a mask on blue",
    "fluent-color": "an abstract illustration of purple waves",
    "focal-ubuntukylin": "an illustration of a logo on dark blue",
    "free_by_Peter_Nerlich": "a photo of a bird below lamps",
    "friends_by_Aitzol_Berasategi": "a photo of two dogs at a door",
    "goldfish": "an illustration of a pink goldfish",
    "greentock_by_Peter_Nerlich": "a photo of a clock face",
    "life_by_Aitzol_Berasategi": "a photo of a stream among rocks",
    "picosdeeuropa_by_Aitzol_Berasategi": "a photo of a mountain path",
    "rhythm": "an illustration of pink and cyan ribbons",
    "rollpaper": "an illustration of a paper roll",
    "seeding_by_Clements_Engelhardt": "a photo of dandelions at sunset",
    "string": "an abstract illustration of blue and yellow strings",
    "sunset_by_Aitzol_Berasategi": "a photo of the sun over a hill",
    "the-mouse": "an illustration of a glowing creature",
    "umang_by_Abhishek_Mudgal": "an abstract illustration of purple and orange colours",
    "warty-final-ubuntu": "an orange and red texture",
}
# Never seen in pre-training nor in prompt training: the evaluation set. Three pip-shipped photos
# and five real photos of the Debian packages (boats at sunset, a forest path, paint brushes, a
# stream among rocks, a bird on bark: colour, fine texture, foliage, water, bokeh).
HELD_OUT_PIP = ("coffee", "rocket", "flower")
HELD_OUT_DEBIAN = ("EveningGlow", "Path", "Picture_1A_by_freespace", "life_by_Aitzol_Berasategi",
                   "Kleiber_by_Lukas_Baubkus")
HELD_OUT = HELD_OUT_PIP + HELD_OUT_DEBIAN
TRAIN_PHOTOS = {**PIP_PHOTOS, **{k: v for k, v in DEBIAN_PHOTOS.items() if k not in HELD_OUT}}
MAX_SIDE = 1536  # photos are read with their short side at most this (the originals reach 6000 px)
GIF_CAPTION = "a short animation"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")


def debian_path(name):
    """Where apt put a Debian wallpaper (the largest version of it), or None if not installed."""
    from PIL import Image
    found = [f for f in glob.glob(os.path.join(DEBIAN_DIRS[0], name, "contents", "images", "*"))
             + glob.glob(os.path.join(DEBIAN_DIRS[1], name + ".*")) if f.lower().endswith((".png", ".jpg"))]
    if not found:
        return None
    def pixels(f):
        with Image.open(f) as im:
            return im.size[0] * im.size[1]
    return max(found, key=pixels)


def available(names):
    """The names among `names` whose photo is on this machine (pip photos always are)."""
    return [n for n in names if n not in DEBIAN_PHOTOS or debian_path(n)]


def photo(name):
    """One photo as [3, H, W] in [0, 1] (grayscale repeated to RGB, short side <= MAX_SIDE)."""
    import skimage.data as sk
    if name in DEBIAN_PHOTOS:
        path = debian_path(name)
        if path is None:
            raise InputError(f"photo {name!r} is not installed: apt-get install {' '.join(DEBIAN_PACKAGES)}")
        return read_image(path, MAX_SIDE)
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images
        imgs = load_sample_images()
        a = imgs.images[[os.path.basename(f) for f in imgs.filenames].index(name + ".jpg")]
    elif name.startswith("motorcycle_"):
        left, right, _ = sk.stereo_motorcycle()
        a = left if name.endswith("left") else right
    else:
        a = getattr(sk, name)()
    t = torch.from_numpy(np.array(a)).float() / 255
    t = t[None].repeat(3, 1, 1) if t.ndim == 2 else t[..., :3].permute(2, 0, 1)
    return t.contiguous()


def gif_frames():
    """The tiny animated GIF scikit-image ships: [3, F, H, W]."""
    import imageio.v3 as iio
    import skimage.data as sk
    a = iio.imread(os.path.join(os.path.dirname(sk.__file__), "no_time_for_that_tiny.gif"))
    return torch.from_numpy(a[..., :3]).float().permute(3, 0, 1, 2) / 255


def resize(x, h, w):
    """Area-aware resize of [..., C, H, W] (antialiased bilinear)."""
    shape = x.shape
    y = F.interpolate(x.reshape(-1, *shape[-3:]), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return y.reshape(*shape[:-2], h, w).clamp(0, 1)


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


def eval_crops(size=128, per_photo=4):
    """The evaluation set: `per_photo` fixed crops of each held-out photo on this machine, resized
    so that the short side is 2*size. Returns [(name, [3, size, size])]."""
    out = []
    for name in available(HELD_OUT):
        img = photo(name)
        _, h, w = img.shape
        s = 2 * size / min(h, w)
        img = resize(img, round(h * s), round(w * s))
        _, h, w = img.shape
        for i in range(per_photo):
            y = (h - size) * (i // 2)
            x = (w - size) * (i % 2)
            out.append((f"{name}_{i}", img[:, y:y + size, x:x + size].contiguous()))
    return out


# --------------------------------------------------------------------------- files

class InputError(ValueError):
    """Bad input from the user: printed as one line, exit code 2."""


def read_image(path, max_side=None):
    """[3, H, W] in [0, 1]: grayscale repeated, alpha dropped, palette/CMYK converted, 16-bit
    scaled; with max_side, shrunk (antialiased) so that its short side is at most max_side."""
    from PIL import Image, UnidentifiedImageError
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: file is empty")
    try:
        with Image.open(path) as im:
            if max_side and im.format == "JPEG":
                im.draft(im.mode, (max_side, max_side))  # decode at a reduced scale: much faster
            im.load()
            if im.mode not in ("1", "L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "F"):
                # palette, CMYK, YCbCr, ...: their raw arrays are not RGB
                im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
            if max_side and min(im.size) > max_side and im.mode in ("L", "LA", "RGB", "RGBA"):
                s = max_side / min(im.size)
                im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.LANCZOS)
            a = np.array(im)
            mode = im.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: not a readable image ({e})") from None
    if mode in ("I;16", "I;16B", "I;16L", "I") or a.dtype == np.uint16 or a.dtype == np.int32:
        a = a.astype(np.float32) / 65535.0
    elif a.dtype == bool:
        a = a.astype(np.float32)
    elif mode == "F":
        a = a.astype(np.float32)
    else:
        a = a.astype(np.float32) / 255.0
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.shape[2] == 2:  # grayscale + alpha
        a = np.repeat(a[..., :1], 3, axis=2)
    elif a.shape[2] >= 4:
        a = a[..., :3]
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).clamp(0, 1)


def write_image(path, img):
    """PNG (lossless) or whatever the suffix asks for, written atomically."""
    from PIL import Image
    a = (img.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    tmp = _tmp(path)
    Image.fromarray(a).save(tmp, format=_pil_format(path))
    os.replace(tmp, path)


def read_video(path):
    """([3, F, H, W] in [0, 1], fps)."""
    import imageio.v3 as iio
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: file is empty")
    try:
        meta = iio.immeta(path)
        frames = iio.imread(path)
    except Exception as e:  # imageio raises many types for broken containers
        raise InputError(f"{path}: not a readable video ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if frames.ndim == 3:  # a single frame, or grayscale frames
        frames = frames[None] if frames.shape[-1] in (3, 4) else frames[..., None]
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise InputError(f"{path}: no frames could be read")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    fps = float(meta.get("fps") or (1000.0 / meta["duration"] if meta.get("duration") else 8.0))
    return torch.from_numpy(frames[..., :3].astype(np.float32) / 255).permute(3, 0, 1, 2), fps


def write_video(path, clip, fps):
    """mp4 (H.264, high quality) at the given fps, written atomically."""
    import imageio.v3 as iio
    a = (clip.clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy() * 255).round().astype(np.uint8)
    tmp = _tmp(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gif":
        iio.imwrite(tmp, a, extension=".gif", duration=1000 / fps, loop=0)
    else:
        iio.imwrite(tmp, a, extension=ext or ".mp4", fps=fps, codec="libx264", quality=9,
                    macro_block_size=1)
    os.replace(tmp, path)


def _tmp(path):
    base, ext = os.path.splitext(path)
    return f"{base}.partial{os.getpid()}{ext}"


def _pil_format(path):
    ext = os.path.splitext(path)[1].lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
            ".webp": "WEBP"}.get(ext, "PNG")


def is_video(path):
    return os.path.splitext(str(path))[1].lower() in VIDEO_EXTS


def list_images(folder):
    return sorted(f for f in glob.glob(os.path.join(folder, "*")) if f.lower().endswith(IMAGE_EXTS))


# --------------------------------------------------------------------------- training sources

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


def json_list(path, task=None):
    """The authors' JSON format: [{"image_path", "target_path", "degradation", "dataset"}];
    image_path/target_path may be lists of frames (video). Relative paths are taken from the
    JSON file's folder."""
    try:
        items = json.load(open(path))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a readable JSON list ({e})") from None
    root = os.path.dirname(os.path.abspath(path))
    fix = lambda p: [fix(q) for q in p] if isinstance(p, list) else (p if os.path.isabs(p) else os.path.join(root, p))  # noqa: E731
    out = []
    for it in items:
        if not isinstance(it, dict) or "image_path" not in it or "target_path" not in it:
            raise InputError(f"{path}: every entry needs image_path and target_path")
        if task and it.get("degradation", task) != task:
            continue
        out.append((fix(it["image_path"]), fix(it["target_path"])))
    if not out:
        raise InputError(f"{path}: no entries" + (f" for degradation {task!r}" if task else ""))
    return out


def load_pair_item(item):
    """A (degraded, clean) pair of paths (or lists of frame paths) -> tensors."""
    def one(p):
        if isinstance(p, list):
            return torch.stack([read_image(f) for f in p], dim=1)
        return read_video(p)[0] if is_video(p) else read_image(p)
    deg, clean = one(item[0]), one(item[1])
    if deg.shape != clean.shape:
        raise InputError(f"{item[0]}: size {tuple(deg.shape)} differs from its target {tuple(clean.shape)}")
    return deg, clean


def fit(x, multiple, max_side=None):
    """Resize [..., H, W] to the nearest size divisible by `multiple` (keeping the aspect),
    never above max_side."""
    h, w = x.shape[-2:]
    s = 1.0 if max_side is None else min(1.0, max_side / max(h, w))
    nh = max(multiple, int(round(h * s / multiple)) * multiple)
    nw = max(multiple, int(round(w * s / multiple)) * multiple)
    return x if (nh, nw) == (h, w) else resize(x, nh, nw)


def ceil_to(n, m):
    return int(math.ceil(n / m) * m)


def _aligned_crop(deg, clean, size, g):
    """The same random crop of a pair ([3, H, W] or [3, F, H, W]); smaller inputs are resized up."""
    h, w = clean.shape[-2:]
    if min(h, w) < size:
        s = size / min(h, w)
        deg, clean = resize(deg, math.ceil(h * s), math.ceil(w * s)), resize(clean, math.ceil(h * s), math.ceil(w * s))
        h, w = clean.shape[-2:]
    y = torch.randint(0, h - size + 1, (), generator=g).item()
    x = torch.randint(0, w - size + 1, (), generator=g).item()
    return deg[..., y:y + size, x:x + size], clean[..., y:y + size, x:x + size]


def _window(clip, frames, g):
    n = clip.shape[1]
    if n < frames:
        raise InputError(f"a training clip has {n} frames; {frames} are needed")
    s = torch.randint(0, n - frames + 1, (), generator=g).item()
    return clip[:, s:s + frames]


def make_pairs(source, task, n, size, frames, g, video=False, clean=None):
    """n (degraded, clean) pixel pairs of `size` px (clips of `frames` frames if video).

    source: 'photos' (the shipped training photos, degraded synthetically), 'heldout' (the
    evaluation crops, never used for training), a folder with input/ and gt/ (paired), a folder
    of clean images or videos (degraded synthetically), a .json list in the authors' format, or
    'generate' with the clean images passed in `clean` (a list of tensors).
    """
    from degrade import degrade
    if source == "heldout":
        out = []
        for i, (name, img) in enumerate(eval_crops(size)):
            gi = torch.Generator().manual_seed(1000 + i)
            x = camera_clip(img, size, frames, gi) if video else img
            out.append((degrade(task, x, gi), x))
        return out[:n] if n else out
    if source == "photos" or source == "generate":
        imgs = list(clean) if source == "generate" else available(TRAIN_PHOTOS)
        loaded, out = {}, []  # photos are read when first drawn, kept as uint8 (73 photos: 0.8 GB)
        for _ in range(n):
            img = imgs[torch.randint(len(imgs), (), generator=g).item()]
            if isinstance(img, str):
                if img not in loaded:
                    loaded[img] = (photo(img) * 255).round().to(torch.uint8)
                img = loaded[img].float() / 255
            if img.ndim == 4:
                x = _aligned_crop(img, img, size, g)[1]
                x = _window(x, frames, g) if video else x[:, 0]
            else:
                x = camera_clip(img, size, frames, g) if video else random_crop(img, size, g)
            out.append((degrade(task, x, g), x))
        return out
    if os.path.isfile(source) and source.endswith(".json"):
        items = json_list(source, task)
    elif os.path.isdir(os.path.join(source, "input")):
        items = paired_folder(source)
    elif os.path.isdir(source):
        files = [f for f in sorted(glob.glob(os.path.join(source, "*"))) if f.lower().endswith(IMAGE_EXTS + VIDEO_EXTS)]
        if not files:
            raise InputError(f"{source}: no images or videos")
        cleans = [read_video(f)[0] if is_video(f) else read_image(f) for f in files]
        return make_pairs("generate", task, n, size, frames, g, video, clean=cleans)
    else:
        raise InputError(f"--data {source!r}: not 'photos', 'generate', a folder or a .json list")
    loaded = [load_pair_item(it) for it in items]
    out = []
    for _ in range(n):
        deg, cl = loaded[torch.randint(len(loaded), (), generator=g).item()]
        if video:
            if deg.ndim != 4:
                raise InputError("a video backbone needs clips (lists of frames or videos), got images")
            s = torch.randint(0, max(1, deg.shape[1] - frames + 1), (), generator=g).item()
            deg, cl = deg[:, s:s + frames], cl[:, s:s + frames]
            if deg.shape[1] < frames:
                raise InputError(f"a training clip has {deg.shape[1]} frames; {frames} are needed")
        elif deg.ndim == 4:
            deg, cl = deg[:, 0], cl[:, 0]
        out.append(_aligned_crop(deg, cl, size, g))
    return out
