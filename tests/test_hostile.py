"""Hostile but fair inputs: each is refused in one line (`error: ...`, exit code 2) naming the
file, or handled and said; no output is left half-written, overwritten or as *.partial* debris.

The cases run in this process (conftest.run_here) on the random tiny backbones; one per script
runs as a real process for the exit code. The slow tier fills a real disk (a tmpfs, as root)."""
import fcntl
import json
import os
import struct
import subprocess
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from data import media
from conftest import run, run_here, together
from test_errors import bad, files, folder, one_line, prompts  # noqa: F401 (fixtures)

STEP = ["--steps=1", "--progress=false"]
TRAIN = ["--task=haze", "--steps=1", "--cache_latents", "--pool=2", "--val_pairs=1", "--size=32", "--workers=0"]


def ffmpeg(*args):
    import imageio_ffmpeg
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def debris(path):
    return [f for f in files(path) if ".partial" in f or ".tmp" in f]


def bomb_png(path, w=30000, h=30000):
    """A PNG that declares w x h pixels in 45 bytes (an IHDR and an IEND, no pixels)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return str(path)


class Evil:
    """Pickled, it asks the loader to make a folder: a loader that ran it would leave the folder."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture
def flux(random_tiny, prompts):  # noqa: F811
    return [f"--backbone={random_tiny['tiny-flux']}", f"--tasks={prompts['tiny-flux', 'haze']}"]


# ------------------------------------------------------------------------- refused in one line

def test_a_decompression_bomb_is_refused_unread(flux, folder):  # noqa: F811
    err = bad(folder, "sample.py", bomb_png(folder / "bomb.png"), *flux, *STEP, match="bomb.png: declares more than")
    assert "decompression bombs" in err


def test_pickle_bearing_prompt_and_checkpoint_are_refused_and_never_run(random_tiny, folder):  # noqa: F811
    bbf = f"--backbone={random_tiny['tiny-flux']}"
    marker = folder / "ran"
    torch.save({"deep_prompt_bank": Evil(str(marker)), "alphas": [], "backend": "x"}, folder / "evil.pt")
    bad(folder, "sample.py", str(folder / "ok.png"), bbf, f"--tasks={folder / 'evil.pt'}", *STEP,
        match="evil.pt: holds pickled Python objects besides tensors; refused (nothing in it was run)")
    os.makedirs(folder / "run")
    torch.save({"prompt": Evil(str(marker))}, folder / "run" / "haze.ckpt.pt")
    code, outp, err = run_here("train.py", bbf, *TRAIN, "--resume", f"--out={folder / 'run'}")
    one_line(code, outp, err, "haze.ckpt.pt: holds pickled Python objects")
    assert not marker.exists()


def test_bad_step_counts_and_t0_are_refused(flux, folder):  # noqa: F811
    ok = str(folder / "ok.png")
    for option in ("--steps=0", "--steps=-3", "--chunk=0"):
        bad(folder, "sample.py", ok, *flux, "--progress=false", option, match="must be at least 1")
    for value in ("1.5", "-0.5", "1", "nan"):
        bad(folder, "sample.py", ok, *flux, *STEP, f"--t0={value}", match="T0 must lie in (0, 1)")
    bad(folder, "sample.py", ok, *flux, *STEP, "--fps=-8", match="--fps=-8.0 must be positive")
    bbf = flux[0]
    bad(folder, "train.py", bbf, *TRAIN, "--steps=0", match="--steps=0 and --val_every=250 must be at least 1")
    bad(folder, "train.py", bbf, *TRAIN, "--val_every=0", match="must be at least 1")
    bad(folder, "train.py", bbf, *TRAIN, "--t0=1.5", match="--t0=1.5: T0 must lie in (0, 1)")


def test_out_of_range_prompts_are_refused(random_tiny, folder):  # noqa: F811
    import backbones
    import prompt as prompt_lib
    bb = backbones.load(random_tiny["tiny-flux"], device="cpu")
    huge = bb.new_prompt(task="haze", bridge="ebr", t0=0.4)
    with torch.no_grad():
        huge.bank.fill_(1e30)
    prompt_lib.save(huge, folder / "huge.safetensors")
    for t0 in (5, 0, -0.5, "x"):
        prompt_lib.save(bb.new_prompt(task="haze", bridge="ebr", t0=t0), folder / f"t0={t0}.safetensors")
    bbf, ok = f"--backbone={random_tiny['tiny-flux']}", str(folder / "ok.png")
    bad(folder, "sample.py", ok, bbf, f"--tasks={folder / 'huge.safetensors'}", *STEP,
        match="huge.safetensors: prompt holds values up to 1e+30")
    for t0 in (5, 0, -0.5, "x"):
        bad(folder, "sample.py", ok, bbf, f"--tasks={folder / f't0={t0}.safetensors'}", *STEP,
            match=f"its metadata gives t0={t0}; T0 must lie in (0, 1)")


def test_a_missing_file_in_a_json_list_is_found_before_the_first_step(random_tiny, folder):  # noqa: F811
    media.write_image(str(folder / "a.png"), torch.rand(3, 32, 32))
    entries = [dict(image_path="a.png", target_path="a.png", degradation="Rain"),
               dict(image_path="gone/1.png", target_path="gone/2.png", degradation="Rain")]
    (folder / "list.json").write_text(json.dumps(entries))
    code, outp, err = run_here("train.py", f"--backbone={random_tiny['tiny-flux']}", *TRAIN, "--task=rain",
                               f"--data={folder / 'list.json'}", f"--out={folder / 'run'}")
    one_line(code, outp, err, "list.json: 2 of the 4 files it lists are missing (the first: ")
    assert os.listdir(folder / "run") == ["train.lock"]  # nothing else written


# ------------------------------------------------------------------ never an overwrite, never debris

def test_two_inputs_of_one_name_get_two_outputs_or_a_refusal(flux, folder):  # noqa: F811
    (folder / "pics").mkdir()
    for ext in ("jpg", "png"):
        Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(folder / "pics" / f"photo.{ext}")
    code, outp, err = run_here("sample.py", str(folder / "pics"), *flux, *STEP, f"--out={folder / 'out'}")
    assert code == 0, err
    assert sorted(os.listdir(folder / "out")) == ["photo_jpg_restored_tiny-flux-haze.png",
                                                  "photo_png_restored_tiny-flux-haze.png"]
    for sub in ("x", "y"):
        (folder / sub).mkdir()
        media.write_image(str(folder / sub / "haze.png"), torch.rand(3, 32, 32))
    bad(folder, "sample.py", str(folder / "x" / "haze.png"), str(folder / "y" / "haze.png"), *flux, *STEP,
        f"--out={folder / 'o'}/", match="would both be restored to")


def test_an_unwritable_out_is_found_before_the_work(flux, folder):  # noqa: F811
    bad(folder, "sample.py", str(folder / "ok.png"), *flux, *STEP, f"--out={folder / 'ok.png' / 'sub'}/",
        match="ok.png is a file, not a folder")


def test_a_failed_write_leaves_nothing_and_says_so(flux, folder, monkeypatch):  # noqa: F811
    import imageio.v2 as iio2

    class BrokenEncoder:  # exits "well" having written a file without its moov atom
        def __init__(self, path, *a, **k):
            self.path = path

        def append_data(self, frame):
            pass

        def close(self):
            open(self.path, "wb").write(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)
    monkeypatch.setattr(iio2, "get_writer", BrokenEncoder)
    with pytest.raises(OSError, match="c.mp4: could not be written \\(the encoder wrote 0 of 5 frames"):
        media.write_video(str(folder / "c.mp4"), torch.rand(3, 5, 16, 16), 8.0)
    monkeypatch.undo()

    def full_disk(self, fp, *a, **k):
        open(fp, "wb").write(b"\x89PNG\r\n")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Image.Image, "save", full_disk)
    bad(folder, "sample.py", str(folder / "ok.png"), *flux, *STEP, f"--out={folder / 'r.png'}",
        match="r.png: could not be written (No space left on device); nothing was left there")
    assert not debris(folder)


def test_two_writers_of_one_file_never_share_a_temporary_name(tmp_path):
    # two trainers saving the same checkpoint at once: each rename is of a whole file of its own
    path = str(tmp_path / "haze.ckpt.pt")

    def saver(k):
        for i in range(200):
            media.atomic(path, lambda tmp: torch.save({"k": k, "i": i}, tmp),
                         lambda tmp: torch.load(tmp, weights_only=True))
    errors = together(saver)
    assert not errors and torch.load(path, weights_only=True)["i"] == 199 and os.listdir(tmp_path) == ["haze.ckpt.pt"]


def test_odd_sized_clips_are_restored_whole(random_tiny, prompts, folder):  # noqa: F811
    media.write_video(str(folder / "odd.mp4"), torch.rand(3, 5, 57, 101), 8.0)
    back, fps = media.read_video(str(folder / "odd.mp4"))
    assert back.shape == (3, 5, 57, 101) and fps == 8.0
    code, outp, err = run_here("sample.py", str(folder / "odd.mp4"), f"--backbone={random_tiny['tiny-wan']}",
                               f"--tasks={prompts['tiny-wan', 'rain']}", *STEP)
    assert code == 0, err
    assert media.read_video(str(folder / "odd_restored_tiny-wan-rain.mp4"))[0].shape == (3, 5, 57, 101)
    assert not debris(folder)


# ------------------------------------------------------------------------------- read and said

def test_variable_frame_rate_keeps_frames_and_length(tmp_path, capfd):
    import imageio_ffmpeg
    path = str(tmp_path / "vfr.mp4")  # 40 frames: 30 in the first second, then 10 at 5 fps
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "40", "-vf",
           "setpts='if(lt(N,30),N/30,1+(N-30)*0.2)/TB'", "-fps_mode", "vfr", "-c:v", "libx264", path)
    n, secs = imageio_ffmpeg.count_frames_and_secs(path)
    clip, fps = media.read_video(path)
    assert clip.shape[1] == n == 40
    assert "variable frame rate: its 40 frames read once each" in capfd.readouterr().err
    media.write_video(str(tmp_path / "out.mp4"), clip, fps)
    n2, secs2 = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "out.mp4"))
    assert n2 == 40 and abs(secs2 - secs) < 2 / fps
    # the windowed reader sample.py and the page restore clips with: the same frames and rate
    assert media.video_length(path) == (40, fps)
    windows = [media.read_window(path, first, 9) for first in range(0, 40, 7)]  # overlapping, as restored
    assert torch.equal(torch.cat([w[:, :7] for w in windows], 1), clip)


def test_a_truncated_clip_says_what_was_read(tmp_path, capfd):
    path = tmp_path / "whole.mp4"  # moov first (faststart), so that half of the file still opens
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-frames:v", "40", "-g", "5", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path))
    (tmp_path / "half.mp4").write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    clip, _ = media.read_video(str(tmp_path / "half.mp4"))
    err = capfd.readouterr().err
    assert 0 < clip.shape[1] < 40 and f"truncated? read {clip.shape[1]} frames" in err and "of the 40 (4.00 s)" in err


def test_multipage_tiff_and_exif_orientation(tmp_path, capfd):
    pages = [Image.new("RGB", (24, 16), c) for c in ("red", "green", "blue")]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    x = media.read_image(str(tmp_path / "pages.tif"))
    assert x.shape == (3, 16, 24) and x[0].min() == 1  # the first page, red
    assert "pages.tif: 3 pages (or frames); only the first was read" in capfd.readouterr().err
    im = Image.new("RGB", (32, 16), "white")
    im.paste((0, 0, 0), (0, 0, 16, 16))  # stored: black on the left; shown (orientation 6, turned 90 degrees clockwise): black on top
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    x = media.read_image(str(tmp_path / "turned.jpg"))
    assert x.shape == (3, 32, 16) and x[:, :16].mean() < 0.1 < 0.9 < x[:, 16:].mean()


def test_exif_orientation_is_kept_in_the_output(flux, folder):  # noqa: F811
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (32, 16), "gray").save(folder / "turned.jpg", exif=exif)
    code, outp, err = run_here("sample.py", str(folder / "turned.jpg"), *flux, *STEP)
    assert code == 0, err
    assert Image.open(folder / "turned_restored_tiny-flux-haze.png").size == (16, 32)  # as a viewer shows the input


# ------------------------------------------------------------------------------- train.py --resume

def test_resume_checks_the_checkpoint_and_one_trainer_per_folder(random_tiny, folder, monkeypatch):  # noqa: F811
    import train
    # the validation's 20 sampler steps are not what is tested here: the decoded latents stand in
    monkeypatch.setattr(train, "validate", lambda bb, p, zd, *a: ((bb.decode(zd) + 1) / 2).clamp(0, 1))
    bbf, out = f"--backbone={random_tiny['tiny-flux']}", f"--out={folder / 'run'}"
    code, _, err = run_here("train.py", bbf, *TRAIN, out)
    assert code == 0, err
    ckpt = folder / "run" / "haze.ckpt.pt"
    saved = ckpt.read_bytes()
    code, outp, err = run_here("train.py", bbf, *TRAIN, out, "--resume", "--steps=2", "--bridge=naive", "--seed=7",
                               "--t0=0.5")
    one_line(code, outp, err, "haze.ckpt.pt was trained otherwise: --bridge=naive (the checkpoint: ebr), "
                              "--t0=0.5 (the checkpoint: 0.1), --seed=7 (the checkpoint: 0)")
    assert "--force" in err and ckpt.read_bytes() == saved
    code, outp, err = run_here("train.py", bbf, *TRAIN, out, "--resume", "--steps=2", "--seed=7", "--force")
    assert code == 0 and "--force: resuming under other settings" in outp, err
    assert torch.load(ckpt, weights_only=True)["step"] == 2
    # a second trainer on the folder: refused while the first holds its lock
    fd = os.open(folder / "run" / "train.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        code, outp, err = run_here("train.py", bbf, *TRAIN, out)
        one_line(code, outp, err, "is in use by another train.py")
    finally:
        os.close(fd)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated
    code, outp, err = run_here("train.py", bbf, *TRAIN, out, "--resume", "--steps=3")
    one_line(code, outp, err, f"{ckpt}: not a readable checkpoint, truncated?")
    assert not debris(folder)


def test_each_script_as_a_process(flux, folder):  # noqa: F811
    # the exit code and the one line of real processes (refused before a backbone loads)
    bad(folder, "sample.py", str(folder / "ok.png"), *flux, *STEP, "--t0=1.5", match="T0 must lie in (0, 1)",
        process=True)
    bad(folder, "train.py", flux[0], *TRAIN, "--steps=0", match="--steps=0 and", process=True)


# ------------------------------------------------------------------------------------- the page

def test_the_page_says_one_line_and_leaves_nothing(random_tiny, prompts, tmp_path, monkeypatch):  # noqa: F811
    pytest.importorskip("gradio", reason="gradio is not installed: pip install -r requirements-app.txt")
    import gradio as gr

    import app
    import backbones
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    os.makedirs(tmp_path / "gradio")
    monkeypatch.setattr(app, "BACKBONES", {False: backbones.load(random_tiny["tiny-flux"], device="cpu")})
    haze = [prompts["tiny-flux", "haze"]]
    with pytest.raises(gr.Error) as e:
        app.restore(bomb_png(tmp_path / "bomb.png"), haze, 1, 0, 0)
    assert e.value.message.startswith("bomb.png: declares more than") and "/" not in e.value.message
    media.write_image(str(tmp_path / "ok.png"), torch.rand(3, 32, 32))

    def full_disk(self, fp, *a, **k):
        open(fp, "wb").write(b"\x89PNG\r\n")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(gr.Error) as e:
        app.restore(str(tmp_path / "ok.png"), haze, 1, 0, 0)
    assert "ok_restored_tiny-flux-haze.png: could not be written (No space left on device)" in e.value.message
    assert "/" not in e.value.message  # no server path
    assert files(tmp_path / "gradio") == {"."}  # no partial file, no empty output folder


def test_the_page_restores_a_clip_in_windows_as_sample_py_does(random_tiny, prompts, folder, monkeypatch):  # noqa: F811
    pytest.importorskip("gradio", reason="gradio is not installed: pip install -r requirements-app.txt")
    import gradio as gr

    import app
    import backbones
    rain = prompts["tiny-wan", "rain"]
    media.write_video(str(folder / "long.mp4"), torch.rand(3, 13, 24, 32, generator=torch.Generator().manual_seed(0)), 8.0)
    code, outp, err = run_here("sample.py", str(folder / "long.mp4"), f"--backbone={random_tiny['tiny-wan']}",
                               f"--tasks={rain}", *STEP)
    assert code == 0, err
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder / "gradio"))
    os.makedirs(folder / "gradio")
    monkeypatch.setattr(app, "BACKBONES", {True: backbones.load(random_tiny["tiny-wan"], device="cpu", cpu_bf16=True)})
    window, reads = media.read_window, []
    monkeypatch.setattr(media, "read_video", None)  # never the whole clip
    monkeypatch.setattr(media, "read_window", lambda p, first, n: reads.append(n) or window(p, first, n))
    _, out, _ = app.restore(str(folder / "long.mp4"), [rain], 1, 0, 0)
    assert max(reads) == 9 and len(reads) > 1, reads  # tiny-wan's window, of a 13-frame clip
    assert open(out, "rb").read() == (folder / "long_restored_tiny-wan-rain.mp4").read_bytes()
    media.write_video(str(folder / "anim.gif"), torch.rand(3, 4, 32, 32), 8.0)  # read whole: 4 x 32 x 32 pixels
    monkeypatch.setattr(app, "max_gif_pixels", 4095)
    with pytest.raises(gr.Error) as e:
        app.restore(str(folder / "anim.gif"), [rain], 1, 0, 0)
    assert e.value.message.startswith("anim.gif: 4 frames of 32x32 px") and e.value.message.endswith(
        "to restore it anyway: python app.py --max_gif_pixels=4096, or convert it to mp4, which is read a window at a time")


def test_a_folder_of_frames_is_read_in_windows_and_a_big_gif_refused(random_tiny, prompts, folder, monkeypatch):  # noqa: F811
    import sample
    wan = [f"--backbone={random_tiny['tiny-wan']}", f"--tasks={prompts['tiny-wan', 'rain']}", *STEP]
    os.makedirs(folder / "frames")
    for i in range(13):
        media.write_image(str(folder / "frames" / f"{i:03d}.png"), torch.rand(3, 24, 32))
    restore, sizes = sample.restore, []
    monkeypatch.setattr(sample, "restore", lambda bb, x, *a, **k: sizes.append(x.shape[1]) or restore(bb, x, *a, **k))
    code, outp, err = run_here("sample.py", str(folder / "frames"), "--video", *wan)
    assert code == 0, err
    assert max(sizes) == 9, sizes  # tiny-wan's window: never the 13 frames at once
    assert media.read_video(str(folder / "frames_restored_tiny-wan-rain.mp4"))[0].shape == (3, 13, 24, 32)
    media.write_image(str(folder / "frames" / "001.png"), torch.rand(3, 32, 24))
    bad(folder, "sample.py", str(folder / "frames"), "--video", *wan, match="frames: the frames differ in size")
    media.write_video(str(folder / "anim.gif"), torch.rand(3, 4, 32, 32), 8.0)  # read whole: 4 x 32 x 32 pixels
    assert run_here("sample.py", str(folder / "anim.gif"), *wan, "--max_gif_pixels=4096")[0] == 0
    monkeypatch.setattr(media, "read_video", None)  # refused from the header, never read
    bad(folder, "sample.py", str(folder / "anim.gif"), *wan, "--max_gif_pixels=4095",
        match="anim.gif: 4 frames of 32x32 px (4,096 pixels in all) is above the limit of 4,095 for a GIF, which is "
              "read whole; to restore it anyway: --max_gif_pixels=4096, or convert it to mp4")


# ------------------------------------------------------------------ slow: a real full disk (tmpfs)

@pytest.fixture
def mount(tmp_path):
    """mount(name, options) -> a fresh tmpfs at tmp_path/name (root only); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = []

    def make(name, options):
        path = tmp_path / name
        path.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]).returncode:
            pytest.skip("mount -t tmpfs failed here (a container without CAP_SYS_ADMIN?)")
        mounted.append(path)
        return path
    yield make
    for path in mounted:
        subprocess.run(["umount", str(path)])


@pytest.mark.slow  # real processes: a PNG and an mp4 onto a 4 KiB disk, then a read-only one
def test_a_full_or_read_only_disk_gives_one_line_and_no_file(random_tiny, prompts, folder, mount):  # noqa: F811
    media.write_image(str(folder / "big.png"), torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)))
    media.write_video(str(folder / "clip.mp4"), torch.rand(3, 9, 64, 64, generator=torch.Generator().manual_seed(0)), 8.0)
    full = mount("full", "size=4k")
    for src, kind in (("big.png", "tiny-flux"), ("clip.mp4", "tiny-wan")):
        code, outp, err = run("sample.py", str(folder / src), f"--backbone={random_tiny[kind]}",
                              f"--tasks={prompts[kind, 'rain']}", *STEP, f"--out={full}/")
        one_line(code, outp, err, "could not be written (")
        assert os.listdir(full) == [] and "->" not in outp  # no success line, no file
    ro = mount("ro", "ro,size=64k")
    code, outp, err = run("sample.py", str(folder / "big.png"), f"--backbone={random_tiny['tiny-flux']}",
                          f"--tasks={prompts['tiny-flux', 'rain']}", *STEP, f"--out={ro}/")
    one_line(code, outp, err, "Read-only file system")
