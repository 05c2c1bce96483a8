"""The real backbones' defaults at real size, on the meta device (shapes only, no weights): FLUX
and Wan restore in tiles of their training size, Wan with its VAE in fp32, diffusers'
VAE tiling above a tile, bounded batches for a clip through an image backbone, clear errors."""
import pytest
import torch

import backbones
import sample
from conftest import run_here, transformer_inputs


def test_flux_restores_in_tiles_of_its_training_size():
    bb = backbones.random_backbone("flux", "meta")
    assert bb.tile == bb.train_size == 512 and bb.train_batch == 2
    assert bb.vae.use_tiling  # diffusers' own VAE tiling, above its 1024 px tile
    seen = transformer_inputs(bb)
    p = bb.new_prompt(task="a")
    y = sample.restore(bb, torch.empty(3, 1024, 1024, device="meta"), [p], "ebr", 0.4, steps=2, progress=False)
    assert y.shape == (3, 1024, 1024)
    # 128 x 128 latents in tiles of 64 overlapping by 16: three along each side, nine tiles of 32 x 32 tokens
    assert [s["hidden_states"] for s in seen] == [(9, 32 * 32, 64)] * 2


def test_wan_restores_480x832_in_two_tiles_of_its_training_size_with_its_vae_in_fp32():
    bb = backbones.random_backbone("wan", "meta")
    assert bb.tile == bb.train_size == 480 and bb.train_batch == 2 and bb.vae_dtype == "fp32"
    assert backbones.dtypes("cuda", bb.vae_dtype) == (torch.bfloat16, torch.float32)
    assert bb.vae.use_tiling and bb.vae.tile_sample_min_height == bb.vae.tile_sample_min_width == 480
    seen = transformer_inputs(bb)
    p = bb.new_prompt(task="a")
    for h, w in ((480, 832), (832, 480)):
        seen.clear()
        y = sample.restore(bb, torch.empty(3, 33, h, w, device="meta"), [p], "ebr", 0.4, steps=2, progress=False)
        assert y.shape == (3, 33, h, w)
        assert [s["hidden_states"] for s in seen] == [(2, 16, 9, 60, 60)] * 2  # two tiles, one window


def test_tiny_backbones_tile_their_vae_above_their_vae_tile():
    # the VAE's memory is a function of its tile: 512 px on tiny-flux, 256 px on tiny-wan
    for kind, side in (("tiny-flux", 512), ("tiny-wan", 256)):
        bb = backbones.random_backbone(kind, "meta")
        assert bb.vae.use_tiling and bb.vae_tile == side and bb.train_batch == 4
    assert bb.vae.tile_sample_min_height == bb.vae.tile_sample_min_width == 256


def test_a_clip_through_an_image_backbone_goes_in_bounded_batches(flux_bb):
    seen = transformer_inputs(flux_bb)
    p = flux_bb.new_prompt(task="a")
    clip = torch.rand(3, 10, 16, 16, generator=torch.Generator().manual_seed(0))
    y = sample.restore(flux_bb, clip, [p], "ebr", 0.4, steps=2, chunk=4, progress=False)
    assert y.shape == clip.shape
    assert max(s["hidden_states"][0] for s in seen) == 4  # frames 0-3, 4-7, 8-9: never all ten at once
    assert sample.restore(flux_bb, clip[:, :4], [p], "ebr", 0.4, steps=2, chunk=4, progress=False).equal(y[:, :4])


@pytest.mark.parametrize("tile", ["20", "4"])
def test_a_bad_tile_is_a_one_line_error(random_tiny, tmp_path, tile):
    from data import media
    src = tmp_path / "in.png"
    media.write_image(str(src), torch.rand(3, 16, 16))
    code, outp, err = run_here("sample.py", str(src), "--tasks=haze", f"--backbone={random_tiny['tiny-flux']}",
                               f"--tile={tile}")
    assert code == 2 and err.strip() == f"error: --tile={tile}: {random_tiny['tiny-flux'].rstrip('/').split('/')[-1]} " \
                                        f"needs a multiple of 8 px"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


# ------------------------------------------------------------- memory: a function of the tile

def test_a_clip_restored_window_by_window_is_the_clip_restored_whole(random_tiny):
    # sample.py reads, restores and writes a clip a window at a time: the same frames as whole
    for kind, chunk in (("tiny-wan", 16), ("tiny-flux", 4)):
        bb = backbones.load(random_tiny[kind], device="cpu")
        p = bb.new_prompt(task="a")
        x = torch.rand(3, 21, 24, 32, generator=torch.Generator().manual_seed(0))
        kw = dict(steps=1, chunk=chunk, progress=False)
        reads = []

        def read(first, count):
            reads.append(count)
            return x[:, first:first + count]
        parts = list(sample.restore_windows(bb, read, 21, [p], "ebr", 0.2, **kw))
        assert torch.equal(torch.cat(parts, dim=1), sample.restore(bb, x, [p], "ebr", 0.2, **kw)), kind
        assert max(reads) <= max(bb.window, chunk) and len(parts) > 1, (kind, reads)


def test_frames_are_read_and_written_in_windows(tmp_path):
    from data import media
    x, fps = media.read_video("examples/clip_rain.mp4")
    assert media.video_length("examples/clip_rain.mp4") == (x.shape[1], fps)
    for first, count in ((0, 5), (5, 9), (12, 9)):
        assert torch.equal(media.read_window("examples/clip_rain.mp4", first, count), x[:, first:first + count])
    media.write_video(str(tmp_path / "whole.mp4"), x, fps)
    media.write_video(str(tmp_path / "windows.mp4"), (x[:, i:i + 5] for i in range(0, x.shape[1], 5)), fps)
    assert (tmp_path / "whole.mp4").read_bytes() == (tmp_path / "windows.mp4").read_bytes()

    def broken():
        yield x[:, :5]
        raise RuntimeError("a window failed")
    with pytest.raises(RuntimeError):
        media.write_video(str(tmp_path / "broken.mp4"), broken(), fps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whole.mp4", "windows.mp4"]  # nothing half-written


def test_an_input_above_max_pixels_is_refused_up_front(random_tiny, tmp_path):
    from data import media
    src = tmp_path / "in.png"
    media.write_image(str(src), torch.rand(3, 30, 40))
    code, outp, err = run_here("sample.py", str(src), "--tasks=haze", f"--backbone={random_tiny['tiny-flux']}",
                               "--max_pixels=1000")
    assert code == 2 and not outp and err.count("\n") == 1
    assert err.startswith(f"error: {src}: 40x30 px (0.0 MP a frame) is above the limit of 1000 px")
    assert err.strip().endswith("to restore it anyway: --max_pixels=1200")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
    assert media.MAX_PIXELS >= 12_000_000  # a phone photo passes


def peak_run(*args):
    """(exit code, stderr, peak resident memory in GiB) of `python args` run from the repo."""
    import os
    import subprocess
    import sys
    from conftest import ROOT
    with open(os.devnull, "w") as null:
        p = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=null, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="2"))
        err = p.stderr.read()
        _, status, usage = os.wait4(p.pid, 0)  # this child's own peak (ru_maxrss: KiB)
    return os.waitstatus_to_exitcode(status), err, usage.ru_maxrss / 2**20


@pytest.mark.slow
def test_memory_is_a_function_of_the_tile_not_of_the_input(tmp_path):
    from data import media
    from PIL import Image
    # 12000 x 12000: refused from its header, in one line that says how to raise the limit
    Image.new("RGB", (12000, 12000)).save(tmp_path / "big.png")
    code, err, peak = peak_run("sample.py", str(tmp_path / "big.png"), "--tasks=haze")
    assert code == 2 and err.count("\n") == 1 and "to restore it anyway: --max_pixels=144000000" in err, err
    assert peak < 1.5, peak  # the imports; the image is never decoded
    # a 3 MP photo (3.4 GB with an untiled VAE) in tiles, one sampler step
    media.write_image(str(tmp_path / "photo.png"), media.resize(torch.rand(3, 150, 200), 1500, 2000))
    code, err, peak = peak_run("sample.py", str(tmp_path / "photo.png"), "--tasks=haze", "--steps=1", "--progress=false")
    assert code == 0 and peak < 1.5, (err, peak)
    # a clip ten times longer takes no more memory: read, restored and written a window at a time
    g = torch.Generator().manual_seed(0)
    peaks = []
    for n in (40, 400):
        clip = media.resize(torch.rand(3, n, 8, 8, generator=g), 64, 64)
        media.write_video(str(tmp_path / f"clip{n}.mp4"), clip, 8.0)
        code, err, peak = peak_run("sample.py", str(tmp_path / f"clip{n}.mp4"), "--tasks=rain", "--steps=1",
                                   "--progress=false")
        assert code == 0, err
        assert media.video_length(str(tmp_path / f"clip{n}_restored_rain.mp4"))[0] == n
        peaks.append(peak)
    assert peaks[1] < peaks[0] + 0.1, peaks
