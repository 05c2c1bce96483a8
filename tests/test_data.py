"""Degradations, photos, file reading and writing."""
import numpy as np
import pytest
import torch
from PIL import Image

from data import degrade, media, pairs, photos


@pytest.mark.catalogue
def test_degradations_are_seeded_bounded_and_change_the_image():
    x = photos.eval_crops(64, 1)[0][1]
    for task in degrade.TASKS:
        a = degrade.degrade(task, x, torch.Generator().manual_seed(3))
        b = degrade.degrade(task, x, torch.Generator().manual_seed(3))
        c = degrade.degrade(task, x, torch.Generator().manual_seed(4))
        assert a.shape == x.shape and torch.equal(a, b), task
        assert 0 <= a.min() and a.max() <= 1
        assert (a - x).abs().mean() > 0.005, task  # it degrades
        assert not torch.equal(a, c), task  # parameters are random


@pytest.mark.catalogue
def test_degradation_directions():
    x = photos.eval_crops(64, 1)[0][1]
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert degrade.degrade("lowlight", x, g()).mean() < 0.5 * x.mean()  # darker
    haze = degrade.degrade("haze", x, g())
    assert haze.mean() > x.mean() and haze.std() < x.std()  # brighter, less contrast
    blur = degrade.degrade("blur", x, g())
    hf = lambda y: (y[:, 1:] - y[:, :-1]).abs().mean()  # noqa: E731
    assert hf(blur) < hf(x)


def test_clip_degradation_keeps_one_scene():
    clip = torch.rand(3, 5, 32, 32)
    y = degrade.degrade("haze", clip, torch.Generator().manual_seed(0))
    assert y.shape == clip.shape
    frame_wise = [degrade.degrade("haze", clip[:, f], torch.Generator().manual_seed(0)) for f in range(2)]
    assert torch.allclose(y[:, 0], frame_wise[0])  # same parameters for every frame of the clip


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task 'fog'"):
        degrade.degrade("fog", torch.rand(3, 8, 8), torch.Generator())


@pytest.mark.catalogue
def test_held_out_photos_are_not_training_photos():
    assert not set(photos.HELD_OUT) & set(photos.TRAIN_PHOTOS)
    crops = photos.eval_crops(64, 4)
    assert len(crops) == 4 * len(photos.available(photos.HELD_OUT)) and crops[0][1].shape == (3, 64, 64)


def test_camera_clip_moves_smoothly():
    g = torch.Generator().manual_seed(0)
    clip = pairs.camera_clip(photos.photo("astronaut"), 32, 9, g)
    assert clip.shape == (3, 9, 32, 32)
    step = (clip[:, 1:] - clip[:, :-1]).abs().mean()
    assert 0 < step < (clip[:, 0] - pairs.camera_clip(photos.photo("china"), 32, 9, g)[:, 0]).abs().mean()


@pytest.mark.parametrize("mode,arr", [
    ("L", np.full((9, 7), 128, np.uint8)),
    ("RGBA", np.full((9, 7, 4), 200, np.uint8)),
    ("I;16", np.full((9, 7), 65535, np.uint16)),
    ("LA", np.full((9, 7, 2), 50, np.uint8)),
])
def test_read_image_modes(tmp_path, mode, arr):
    path = str(tmp_path / "x.png")
    im = Image.fromarray(arr)
    assert im.mode == mode
    im.save(path)
    x = media.read_image(path)
    assert x.shape == (3, 9, 7) and 0 <= x.min() <= x.max() <= 1
    want = {"L": 128 / 255, "RGBA": 200 / 255, "I;16": 1.0, "LA": 50 / 255}[mode]
    assert torch.allclose(x, torch.full_like(x, want), atol=1e-3)


def test_bad_image_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"definitely not an image")
    with pytest.raises(media.InputError, match="empty"):
        media.read_image(str(tmp_path / "empty.png"))
    with pytest.raises(media.InputError, match="not a readable image"):
        media.read_image(str(tmp_path / "junk.png"))
    with pytest.raises(media.InputError, match="no such file"):
        media.read_image(str(tmp_path / "none.png"))


def test_video_round_trip_and_bad_video(tmp_path):
    clip = torch.rand(3, 5, 32, 48)
    media.write_video(str(tmp_path / "c.mp4"), clip, 12.0)
    back, fps = media.read_video(str(tmp_path / "c.mp4"))
    assert back.shape == clip.shape and fps == pytest.approx(12.0)
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(media.InputError, match="not a readable video"):
        media.read_video(str(tmp_path / "bad.mp4"))


def test_writes_are_atomic_png(tmp_path):
    media.write_image(str(tmp_path / "a.png"), torch.rand(3, 8, 8))
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    assert Image.open(tmp_path / "a.png").format == "PNG"


def test_paired_folder_and_json(tmp_path):
    for sub in ("input", "gt"):
        (tmp_path / sub).mkdir()
        for i in range(3):
            media.write_image(str(tmp_path / sub / f"{i}.png"), torch.rand(3, 20, 24))
    pair_list = pairs.make_pairs(str(tmp_path), "haze", 4, 16, 1, torch.Generator().manual_seed(0))
    assert len(pair_list) == 4 and pair_list[0][0].shape == (3, 16, 16)
    lst = [{"image_path": f"input/{i}.png", "target_path": f"gt/{i}.png", "degradation": "rain",
            "dataset": "x"} for i in range(3)]
    (tmp_path / "list.json").write_text(__import__("json").dumps(lst))
    assert len(pairs.make_pairs(str(tmp_path / "list.json"), "rain", 2, 16, 1, torch.Generator())) == 2
    with pytest.raises(media.InputError, match="no entries for degradation 'snow'"):
        pairs.make_pairs(str(tmp_path / "list.json"), "snow", 2, 16, 1, torch.Generator())
    (tmp_path / "gt" / "2.png").unlink()
    with pytest.raises(media.InputError, match="no matching ground truth"):
        pairs.paired_folder(str(tmp_path))


def test_read_image_converts_palette_and_cmyk_and_shrinks(tmp_path):
    yy, xx = np.mgrid[0:40, 0:60]
    rgb = np.stack([xx * 4, yy * 6, 255 - xx * 4], -1).astype(np.uint8)  # smooth colours
    im = Image.fromarray(rgb)
    im.quantize(16).save(tmp_path / "p.png")  # palette: the raw array holds indices, not colours
    im.convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    for f in ("p.png", "c.jpg"):
        x = media.read_image(str(tmp_path / f))
        want = np.array(Image.open(tmp_path / f).convert("RGB"))  # colours, not palette indices or CMYK
        assert x.shape == (3, 40, 60) and torch.equal((x * 255).round().byte(), torch.from_numpy(want).permute(2, 0, 1))
        assert (x * 255 - torch.from_numpy(rgb).permute(2, 0, 1)).abs().mean() < 20, f  # near the original
    assert media.read_image(str(tmp_path / "p.png"), max_side=20).shape == (3, 20, 30)


@pytest.mark.catalogue
def test_debian_photos_are_named_and_held_out_ones_are_real_photos():
    assert set(photos.HELD_OUT_DEBIAN) <= set(photos.DEBIAN_PHOTOS)
    assert all(photos.DEBIAN_PHOTOS[n].startswith("a photo") for n in photos.HELD_OUT_DEBIAN)
    for name in photos.available(photos.HELD_OUT_DEBIAN)[:1]:  # where the packages are installed
        assert min(photos.photo(name).shape[1:]) == photos.MAX_SIDE
    missing = [n for n in photos.DEBIAN_PHOTOS if n not in photos.available(photos.DEBIAN_PHOTOS)]
    if missing:
        with pytest.raises(media.InputError, match="apt-get install"):
            photos.photo(missing[0])


@pytest.mark.catalogue
def test_missing_debian_photos_are_said_once_with_what_changes(tmp_path, monkeypatch, capsys):
    # the catalogue read from another root: one photo of ukui-wallpapers there, the rest missing
    (tmp_path / "backgrounds").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "backgrounds" / "calla.png")
    monkeypatch.setenv(photos.ROOT_VARIABLE, str(tmp_path))
    assert photos.available(["astronaut", "calla", "Path"]) == ["astronaut", "calla"]
    assert photos.photo("calla").shape == (3, 48, 64)
    photos.available(photos.TRAIN_PHOTOS)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"note: 61 of the {len(photos.DEBIAN_PHOTOS)} Debian wallpaper photos")
    held = len(photos.HELD_OUT_PIP)
    assert f"training photos are {len(photos.PIP_PHOTOS) + 1} of 73, the held-out set {held} of 8" in err
    assert "not comparable" in err and "apt-get install plasma-workspace-wallpapers" in err
    with pytest.raises(media.InputError, match="apt-get install lomiri-wallpapers-16.04"):
        photos.photo("life_by_Aitzol_Berasategi")
