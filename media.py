"""Image and video files, and pixel helpers.

Pixels are float tensors in [0, 1]: images [3, H, W], clips [3, F, H, W]. Reading accepts any
common image mode (grayscale, alpha, palette, CMYK, 16-bit) and video container; every write
goes to a temporary file first and is renamed into place, so outputs are never half-written.
"""
import glob
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")


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


def _frames_tensor(frames):
    """Decoded uint8 frames [F, H, W, (C)] -> [3, F, H, W] float32 in [0, 1], as read_video gives."""
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return torch.from_numpy(frames[..., :3].astype(np.float32) / 255).permute(3, 0, 1, 2)


_SHAPES = {}  # path -> (frames, height, width), counted once per process


def video_shape(path):
    """(frames, height, width) of a video file without keeping its frames (ffmpeg counts them)."""
    import imageio.v3 as iio
    if path not in _SHAPES:
        try:
            if os.path.splitext(path)[1].lower() == ".gif":
                from PIL import Image
                with Image.open(path) as im:
                    _SHAPES[path] = (getattr(im, "n_frames", 1), im.size[1], im.size[0])
            else:
                import imageio_ffmpeg
                w, h = iio.immeta(path)["size"]
                _SHAPES[path] = (imageio_ffmpeg.count_frames_and_secs(path)[0], h, w)
        except Exception as e:  # imageio and ffmpeg raise many types for broken containers
            raise InputError(f"{path}: not a readable video ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    return _SHAPES[path]


def read_window(path, first, count):
    """Frames [first, first + count) of a video as read_video gives them ([3, count, H, W] in
    [0, 1]), decoded one at a time: the frames before the window are skipped, none after it read."""
    import imageio.v3 as iio
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    kept = []
    try:
        for i, frame in enumerate(iio.imiter(path)):
            if i >= first:
                kept.append(frame)
            if len(kept) == count:
                break
    except Exception as e:
        raise InputError(f"{path}: not a readable video ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if len(kept) < count:
        raise InputError(f"{path}: frames {first}-{first + count - 1} asked for, the video has {first + len(kept)}")
    return _frames_tensor(np.stack(kept))


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


def resize(x, h, w):
    """Area-aware resize of [..., C, H, W] (antialiased bilinear)."""
    shape = x.shape
    y = F.interpolate(x.reshape(-1, *shape[-3:]), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return y.reshape(*shape[:-2], h, w).clamp(0, 1)


def ceil_to(n, m):
    return int(math.ceil(n / m) * m)


def fit(x, multiple, max_side=None):
    """Resize [..., H, W] to the nearest size divisible by `multiple` (keeping the aspect),
    never above max_side."""
    h, w = x.shape[-2:]
    s = 1.0 if max_side is None else min(1.0, max_side / max(h, w))
    nh = max(multiple, int(round(h * s / multiple)) * multiple)
    nw = max(multiple, int(round(w * s / multiple)) * multiple)
    return x if (nh, nw) == (h, w) else resize(x, nh, nw)
