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

# a frame's pixels above which sample.py and the page refuse an input before any work: a restore's
# memory grows with the pixels of a frame (docs/RESULTS.md), never with a clip's length
MAX_PIXELS = 16_000_000
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


def video_length(path):
    """(frames, fps) of a clip, from its container (nothing kept in memory)."""
    import imageio.v2 as iio2
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise InputError(f"{path}: no such file" if not os.path.isfile(path) else f"{path}: file is empty")
    try:
        with iio2.get_reader(path, "ffmpeg") as r:
            n, fps = r.count_frames(), float(r.get_meta_data().get("fps") or 8.0)
    except Exception as e:  # imageio raises many types for broken containers
        raise InputError(f"{path}: not a readable video ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if n == 0:
        raise InputError(f"{path}: no frames could be read")
    return n, fps


def read_window(path, first, count):
    """Frames [first, first + count) of a clip as [3, n, H, W] in [0, 1] (n < count at its end): a
    long clip is read a window at a time, never whole (ffmpeg seeks to the first frame)."""
    import imageio.v2 as iio2
    frames = []
    try:
        with iio2.get_reader(path, "ffmpeg") as r:
            for i in range(first, first + count):
                frames.append(r.get_data(i))
    except IndexError:  # past the last frame
        pass
    except Exception as e:
        raise InputError(f"{path}: not a readable video ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not frames:
        raise InputError(f"{path}: no frames from frame {first} on")
    a = np.stack(frames)
    a = np.repeat(a[..., None], 3, axis=-1) if a.ndim == 3 else a
    return torch.from_numpy(a[..., :3].astype(np.float32) / 255).permute(3, 0, 1, 2)


def write_video(path, clip, fps):
    """mp4 (H.264, high quality) at the given fps, written atomically. clip: [3, F, H, W], or an
    iterable of such windows of frames, each encoded as it comes (a long clip never whole in memory)."""
    import imageio.v2 as iio2
    import imageio.v3 as iio
    windows = [clip] if torch.is_tensor(clip) else clip
    tmp = _tmp(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gif":
        a = np.concatenate([_bytes(c) for c in windows])
        iio.imwrite(tmp, a, extension=".gif", duration=1000 / fps, loop=0)
    else:
        w = iio2.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=9, macro_block_size=1)
        try:
            for c in windows:
                for frame in _bytes(c):
                    w.append_data(frame)
        except BaseException:  # a window that failed to come: ffmpeg stopped, no half-written clip left
            w.close()
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        w.close()
    os.replace(tmp, path)


def _bytes(clip):
    """[3, F, H, W] in [0, 1] -> [F, H, W, 3] uint8."""
    return (clip.clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy() * 255).round().astype(np.uint8)


def _tmp(path):
    base, ext = os.path.splitext(path)
    return f"{base}.partial{os.getpid()}{ext}"


def _pil_format(path):
    ext = os.path.splitext(path)[1].lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
            ".webp": "WEBP"}.get(ext, "PNG")


def frame_size(path):
    """(width, height) of an image or of a clip's frames, from the file's header: nothing decoded."""
    if is_video(path) and not str(path).lower().endswith(".gif"):
        import imageio.v3 as iio
        return tuple(iio.immeta(path)["size"])
    import warnings

    from PIL import Image
    with warnings.catch_warnings():  # the header only: check_pixels, not PIL's warning, says what is too big
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            return im.size


def check_pixels(path, max_pixels, how="--max_pixels"):
    """Refuse up front a frame of more than max_pixels pixels (0: no limit), in one line that says
    how to raise the limit. An unreadable header passes: the reader then says what is wrong."""
    try:
        w, h = frame_size(path)
    except Exception:
        return
    if max_pixels and w * h > max_pixels:
        raise InputError(f"{path}: {w}x{h} px ({w * h / 1e6:.1f} MP a frame) is above the limit of {max_pixels} px "
                         f"({max_pixels / 1e6:g} MP), set so that a restore stays within a few GB of memory; "
                         f"to restore it anyway: {how}={w * h}")


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
