"""Image and video files, and pixel helpers.

Pixels are float tensors in [0, 1]: images [3, H, W], clips [3, F, H, W]. Reading accepts any
common image mode (grayscale, alpha, palette, CMYK, 16-bit) and video container; what a reader
leaves out (a TIFF's other pages, a truncated clip's end) it says on stderr. Every write goes to
a temporary file first, is re-opened to check it is whole, and only then renamed into place:
outputs are never half-written, and a failed write leaves no file behind.
"""
import glob
import json
import os
import re
import subprocess
import sys
import threading

import numpy as np
import torch
import torch.nn.functional as F

# a frame's pixels above which sample.py and the page refuse an input before any work: a restore's
# memory grows with the pixels of a frame (docs/RESULTS.md), never with a clip's length
MAX_PIXELS = 16_000_000
# frames x pixels of a GIF above which it is refused before any work: a GIF is read whole (as
# float32, 12 bytes a pixel, a few copies at once), an mp4 a window at a time
MAX_GIF_PIXELS = 16_000_000
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")


class InputError(ValueError):
    """Bad input from the user: printed as one line, exit code 2."""


NOTES = []  # every note said, in order: the web page shows a request its own


def note(msg, said=set()):
    """What a reader left out or changed, one line on stderr (the work goes on), once per process."""
    if msg not in said:
        said.add(msg)
        NOTES.append(msg)
        print(f"note: {msg}", file=sys.stderr, flush=True)


def read_image(path, max_side=None):
    """[3, H, W] in [0, 1]: grayscale repeated, alpha dropped, palette/CMYK converted, 16-bit
    scaled; with max_side, shrunk (antialiased) so that its short side is at most max_side."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: file is empty")
    try:
        with Image.open(path) as im:
            if max_side and im.format == "JPEG":
                im.draft(im.mode, (max_side, max_side))  # decode at a reduced scale: much faster
            im.load()
            pages = getattr(im, "n_frames", 1)
            im = ImageOps.exif_transpose(im)  # as a viewer shows it: the output keeps that orientation
            if im.mode not in ("1", "L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "F"):
                # palette, CMYK, YCbCr, ...: their raw arrays are not RGB
                im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
            if max_side and min(im.size) > max_side and im.mode in ("L", "LA", "RGB", "RGBA"):
                s = max_side / min(im.size)
                im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.LANCZOS)
            a = np.array(im)
            mode = im.mode
    except Image.DecompressionBombError:
        raise InputError(f"{path}: declares more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels "
                         f"(PIL's limit against decompression bombs); refused unread") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: not a readable image ({e})") from None
    if pages > 1:
        note(f"{path}: {pages} pages (or frames); only the first was read")
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


def write_sheet(path, rows):
    """Rows of images [3, H, W] (a clip [3, F, H, W]: its middle frame) side by side, the rows
    stacked, written as one picture (a training run's validation sheet: degraded | restored | clean)."""
    frame = lambda x: x[:, x.shape[1] // 2] if x.ndim == 4 else x  # noqa: E731
    write_image(path, torch.cat([torch.cat([frame(x) for x in row], 2) for row in rows], 1))


def write_image(path, img):
    """PNG (lossless) or whatever the suffix asks for, written atomically."""
    from PIL import Image
    a = (_finite(path, img).clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)

    def check(tmp):
        with Image.open(tmp) as im:
            im.load()  # a truncated file fails here
            if im.size != (a.shape[1], a.shape[0]):
                raise OSError(f"reads back as {im.size[0]}x{im.size[1]} px")
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
           ".webp": "WEBP"}.get(os.path.splitext(path)[1].lower(), "PNG")
    atomic(path, lambda tmp: Image.fromarray(a).save(tmp, format=fmt), check)


def read_video(path):
    """([3, F, H, W] in [0, 1], fps). Every frame once, in the order of its timestamp: a clip of
    variable frame rate keeps its frames and its length when written back at the returned fps,
    the average rate (said on stderr). A clip that ends before its declared length is read as far
    as it goes, and that is said too."""
    import imageio.v3 as iio
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: file is empty")
    gif = os.path.splitext(path)[1].lower() == ".gif"
    try:
        meta = iio.immeta(path)
        # passthrough: no frame duplicated or dropped to fit a constant rate
        frames = iio.imread(path) if gif else iio.imread(path, output_params=["-fps_mode", "passthrough"])
    except Exception as e:  # imageio raises many types for broken containers
        raise InputError(f"{path}: not a readable video ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if frames.ndim == 3:  # a single frame, or grayscale frames
        frames = frames[None] if frames.shape[-1] in (3, 4) else frames[..., None]
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise InputError(f"{path}: no frames could be read")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    fps = float(meta.get("fps") or (1000.0 / meta["duration"] if meta.get("duration") else 8.0))
    if not gif:
        fps = _say_what_was_read(path, len(frames), fps, meta.get("duration"))
    return torch.from_numpy(frames[..., :3].astype(np.float32) / 255).permute(3, 0, 1, 2), fps


def _say_what_was_read(path, n, fps, duration):
    """A note when the clip is shorter than it declares (truncated) or of variable frame rate
    (its stream's average rate, fps, off the rate its timestamps are counted in, tbr). -> the
    clip's rate: with a variable one, its frames over its duration."""
    if duration and fps and n < round(duration * fps) - 1:
        note(f"{path}: truncated? read {n} frames ({n / fps:.2f} s) of the {round(duration * fps)} "
             f"({duration:.2f} s) it declares; going on with those")
        return fps
    import imageio_ffmpeg
    head = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path],
                          capture_output=True, text=True).stderr
    m = re.search(r"Video:.*?([\d.]+)k? fps, ([\d.]+)(k?) tbr", head)
    if m and abs(float(m[2]) * (1000 if m[3] else 1) - float(m[1])) > 0.01 * float(m[1]):
        fps = n / duration if duration else fps
        note(f"{path}: variable frame rate: its {n} frames read once each, in the order of their "
             f"timestamps, at its average rate, {fps:.3f} fps")
    return fps


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


def video_length(path):
    """(frames, fps) of a clip, from its container (nothing kept in memory): every frame counted
    once, and fps as read_video gives it (a variable rate's average, said on stderr)."""
    import imageio.v2 as iio2
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise InputError(f"{path}: no such file" if not os.path.isfile(path) else f"{path}: file is empty")
    try:
        with iio2.get_reader(path, "ffmpeg") as r:
            n, meta = r.count_frames(), r.get_meta_data()
    except Exception as e:  # imageio raises many types for broken containers
        raise InputError(f"{path}: not a readable video ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if n == 0:
        raise InputError(f"{path}: no frames could be read")
    return n, _say_what_was_read(path, n, float(meta.get("fps") or 8.0), meta.get("duration"))


_READERS = {}  # path -> an open reader of that clip and the frames of its last window


def read_window(path, first, count):
    """Frames [first, first + count) of a clip as [3, n, H, W] in [0, 1] (n < count at its end), as
    read_video has them: every frame once, in the order of its timestamp (passthrough: a variable
    frame rate keeps its frames). Windows are read in order from one open reader per clip, which
    keeps the last window's frames for an overlapping next one: a long clip is never whole in memory
    and never decoded twice."""
    import imageio.v2 as iio2
    st = _READERS.get(path)
    if st is None or first < min(st["kept"], default=st["next"]):  # a new clip, or back before the kept frames
        if st:
            st["reader"].close()
        try:
            r = iio2.get_reader(path, "ffmpeg", output_params=["-fps_mode", "passthrough"])
        except Exception as e:
            raise InputError(f"{path}: not a readable video ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
        st = _READERS[path] = dict(reader=r, it=iter(r), next=0, kept={})
    frames = []
    for i in range(first, first + count):
        while i >= st["next"] and st["it"] is not None:
            try:
                st["kept"][st["next"]] = next(st["it"])
                st["next"] += 1
            except StopIteration:  # the clip's end
                st["it"] = None
            except Exception as e:
                raise InputError(f"{path}: not a readable video ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
        if i not in st["kept"]:
            break
        frames.append(st["kept"][i])
    st["kept"] = {k: v for k, v in st["kept"].items() if k >= first}  # the next window may overlap this one
    if not frames:
        raise InputError(f"{path}: no frames from frame {first} on")
    a = np.stack(frames)
    a = np.repeat(a[..., None], 3, axis=-1) if a.ndim == 3 else a
    return torch.from_numpy(a[..., :3].astype(np.float32) / 255).permute(3, 0, 1, 2)


def write_video(path, clip, fps):
    """mp4 (H.264, high quality) at the given fps, written atomically. clip: [3, F, H, W], or an
    iterable of such windows of frames, each encoded as it comes (a long clip never whole in
    memory). A side of odd length (which 4:2:0 chroma cannot hold) is written in 4:4:4, full size."""
    import imageio.v2 as iio2
    import imageio.v3 as iio
    windows = [clip] if torch.is_tensor(clip) else clip
    ext = os.path.splitext(path)[1].lower()
    written = [0]  # frames handed to the encoder, which the check counts back
    if ext == ".gif":
        def write(tmp):
            a = np.concatenate([_bytes(_finite(path, c)) for c in windows])
            written[0] = len(a)
            iio.imwrite(tmp, a, extension=".gif", duration=1000 / fps, loop=0)

        def check(tmp):
            from PIL import Image
            with Image.open(tmp) as im:
                if getattr(im, "n_frames", 1) != written[0]:
                    raise OSError(f"reads back with {getattr(im, 'n_frames', 1)} frames of {written[0]}")
    else:
        def write(tmp):  # ffmpeg quiet: its failures are found by the check, and said in one line
            w, it = None, iter(windows)
            try:
                while True:
                    try:
                        c = next(it)
                    except StopIteration:
                        break
                    except Exception as e:  # the restoration's own error, not the writer's: said as it is
                        e.upstream = True
                        raise
                    a = _bytes(_finite(path, c))
                    if w is None:
                        odd = {"pixelformat": "yuv444p"} if a.shape[1] % 2 or a.shape[2] % 2 else {}
                        w = iio2.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=9,
                                            macro_block_size=1, ffmpeg_log_level="quiet", **odd)
                    for frame in a:
                        w.append_data(frame)
                    written[0] += len(a)
            finally:
                if w is not None:
                    w.close()

        def check(tmp):
            import imageio_ffmpeg
            try:
                n = imageio_ffmpeg.count_frames_and_secs(tmp)[0]
            except RuntimeError:
                n = 0
            if n != written[0]:
                raise OSError(f"the encoder wrote {n} of {written[0]} frames (disk full?)")
    atomic(path, write, check)


def _finite(path, x):
    if not torch.isfinite(x).all():
        raise InputError(f"{path}: not written: the restored pixels hold NaN or Inf")
    return x


def atomic(path, write, check):
    """write(tmp), check(tmp) (raises if the file is not whole), rename to path; on any failure
    the temporary file is removed and an OSError names path."""
    base, ext = os.path.splitext(path)  # a name of this process and thread: two writers never share one
    tmp = f"{base}.partial{os.getpid()}-{threading.get_ident() % 100000}{ext}"
    try:
        write(tmp)
        check(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, Exception) and not isinstance(e, InputError) and not getattr(e, "upstream", False):
            reason = e.strerror if isinstance(e, OSError) and e.strerror else " ".join(str(e).split())[:200]
            raise OSError(f"{path}: could not be written ({reason}); nothing was left there") from None
        raise


def write_json(path, obj, **dump):
    """obj as JSON at path, through atomic: re-read before the rename."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, **dump)
    atomic(path, write, lambda tmp: json.load(open(tmp)))


def _bytes(clip):
    """[3, F, H, W] in [0, 1] -> [F, H, W, 3] uint8."""
    return (clip.clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy() * 255).round().astype(np.uint8)


def check_size(path, max_pixels, max_gif=0, how="--"):
    """Refuse up front, from the file's header (nothing decoded), a frame of more than max_pixels
    pixels, or a GIF (read whole) of more than max_gif frames x pixels (0: no limit), in one line
    that says how to raise the limit (how: the option's prefix). An unreadable header passes: the
    reader then says what is wrong."""
    import warnings

    import imageio.v3 as iio
    from PIL import Image
    kind = file_kind(path)
    try:
        if kind == "video":
            w, h = iio.immeta(path)["size"]
        else:
            with warnings.catch_warnings():  # this check, not PIL's warning, says what is too big
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    w, h = im.size
    except Exception:
        return
    if max_pixels and w * h > max_pixels:
        raise InputError(f"{path}: {w}x{h} px ({w * h / 1e6:.1f} MP a frame) is above the limit of {max_pixels} px "
                         f"({max_pixels / 1e6:g} MP), set so that a restore stays within a few GB of memory; "
                         f"to restore it anyway: {how}max_pixels={w * h}")
    if not (max_gif and kind == "gif" and os.path.isfile(path)):
        return
    try:
        n, h, w = video_shape(path)
    except InputError:
        return
    if n * h * w > max_gif:
        raise InputError(f"{path}: {n} frames of {w}x{h} px ({n * h * w:,} pixels in all) is above the limit of "
                         f"{max_gif:,} for a GIF, which is read whole; to restore it anyway: {how}max_gif_pixels="
                         f"{n * h * w}, or convert it to mp4, which is read a window at a time")


def file_kind(path):
    """'gif' (a clip read whole), 'video' (a clip read a window at a time) or 'image', by extension."""
    ext = os.path.splitext(str(path))[1].lower()
    return "gif" if ext == ".gif" else "video" if ext in VIDEO_EXTS else "image"


def list_images(folder):
    return sorted(f for f in glob.glob(os.path.join(folder, "*")) if f.lower().endswith(IMAGE_EXTS))


def resize(x, h, w):
    """Area-aware resize of [..., C, H, W] (antialiased bilinear)."""
    shape = x.shape
    y = F.interpolate(x.reshape(-1, *shape[-3:]), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return y.reshape(*shape[:-2], h, w).clamp(0, 1)


def fit(x, multiple, max_side=None):
    """Resize [..., H, W] to the nearest size divisible by `multiple` (keeping the aspect),
    never above max_side."""
    h, w = x.shape[-2:]
    s = 1.0 if max_side is None else min(1.0, max_side / max(h, w))
    nh = max(multiple, int(round(h * s / multiple)) * multiple)
    nw = max(multiple, int(round(w * s / multiple)) * multiple)
    return x if (nh, nw) == (h, w) else resize(x, nh, nw)
