"""The baselines: each classical method restores its own degradation on held-out crops, the U-Net
trains on train.py's data and resumes bit for bit, its file and the classical settings load."""
import json
import os

import pytest
import torch
from safetensors.torch import load_file

import baselines
import metrics
from data import degrade, photos
from conftest import ROOT, run_here

# PSNR gain (dB, uint8 convention) each classical method must reach over the degraded input on
# one seeded 128 px crop of each held-out photo, with the settings shipped for tiny-flux. Without
# Debian's photos the held-out set is the three pip photos, two of them bright: a gamma lifts
# them less (1.8 dB there, 5.6 on all eight), so low light's margin is smaller there.
MARGIN = {"haze": 4.0, "lowlight": 4.0, "rain": 4.0, "snow": 3.0, "blur": 0.1}
MARGIN_PIP_ONLY = dict(MARGIN, lowlight=1.0)


@pytest.fixture(scope="module")
def heldout():
    """One crop of each held-out photo (every 4th of photos.eval_crops): what eval.py reads."""
    return list(enumerate(photos.eval_crops(128)))[::4]


@pytest.mark.catalogue
@pytest.mark.parametrize("task", degrade.TASKS)
def test_classical_method_restores_its_own_degradation(task, heldout):
    settings = baselines.classical_settings("tiny-flux", task)
    gains = []
    for i, (_, clean) in heldout:
        deg = degrade.degrade(task, clean, torch.Generator().manual_seed(1000 + i))  # as pairs.make_pairs("heldout")
        out = baselines.classical(task, deg, settings)
        assert out.shape == deg.shape and out.dtype == deg.dtype and 0 <= out.min() and out.max() <= 1
        psnr = lambda x: metrics.psnr(metrics.quantize(x), metrics.quantize(clean))  # noqa: E731
        gains.append(psnr(out) - psnr(deg))
    margin = MARGIN if len(heldout) == len(photos.HELD_OUT) else MARGIN_PIP_ONLY
    assert sum(gains) / len(gains) > margin[task], f"{task}: mean gain {sum(gains) / len(gains):.2f} dB"


def test_classical_on_a_clip_is_frame_by_frame():
    g = torch.Generator().manual_seed(0)
    clip = torch.rand(3, 3, 24, 20, generator=g)
    out = baselines.classical("snow", clip)
    assert out.shape == clip.shape
    assert torch.equal(out[:, 1], baselines.classical("snow", clip[:, 1]))


def test_shipped_classical_settings_are_on_their_grid():
    for kind in ("tiny-flux", "tiny-wan"):
        path = baselines.classical_file(kind)
        stored = json.load(open(path)) if os.path.isfile(path) else {}
        for task, entry in stored.items():
            grid = baselines.CLASSICAL[task][3]
            assert all(v in grid[k] for k, v in entry["settings"].items()), (kind, task)


def test_real_backbones_need_no_weights_for_their_settings():
    # FLUX and Wan: the U-Net trains at their crop size and clip length, read without loading them
    assert baselines.backbone_settings("flux")[0] == "flux"
    assert baselines.backbone_settings("flux")[1]["train_size"] == 512
    name, st = baselines.backbone_settings("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    assert st["train_size"] == 480 and st["train_frames"] == 33
    assert baselines.backbone_settings("", video=True)[0] == "tiny-wan"
    assert baselines.classical_settings("flux", "haze") == baselines.CLASSICAL["haze"][2]  # none chosen there


def test_unet_starts_as_the_identity_and_keeps_any_shape():
    net = baselines.UNet()
    assert baselines.count(net) == 487_331  # widths 16-32-64-128, as the docs state
    x = torch.rand(2, 3, 37, 50)
    assert torch.equal(net(x), x)  # the head starts at zero
    clip = torch.rand(3, 5, 24, 40)
    assert baselines.restore_unet(net.eval(), clip, chunk=2).shape == clip.shape


def test_unet_trains_on_the_data_train_py_trains_on(random_tiny, clean_folder, monkeypatch, tmp_path):
    # the same stream (items, crop, seed) or, with --cache_latents, the same pairs.make_pairs/iter_pairs call (source,
    # task, pool + validation pairs, crop, generator seed): the same pairs; each script is stopped there
    from data import dataset
    from data import pairs
    calls = []

    class Made(Exception):
        pass

    def spy_stream(self, items, synthetic, task, size, frames, video, seed, stream=0):
        calls.append((tuple(items), synthetic, task, size, frames, video, seed))
        raise Made

    def spy_pool(source, task, n, size, frames, g, video=False, *rest, **kw):
        calls.append((source, task, n, size, frames, g.initial_seed(), video))
        raise Made

    monkeypatch.setattr(dataset.Pairs, "__init__", spy_stream)
    monkeypatch.setattr(pairs, "make_pairs", spy_pool)
    monkeypatch.setattr(pairs, "iter_pairs", spy_pool)  # train.py takes its pool one pair at a time
    common = ["--task=rain", f"--backbone={random_tiny['tiny-flux']}", f"--data={clean_folder}", "--pool=3",
              "--val_pairs=1", "--seed=3"]
    for cached in ([], ["--cache_latents"]):
        for script in ("train.py", "baselines.py"):
            with pytest.raises(Made):
                run_here(script, *common, *cached, f"--out={tmp_path / script}")
    files = tuple(sorted(str(p) for p in __import__("pathlib").Path(clean_folder).iterdir()))
    assert calls[0] == calls[1] == (files, True, "rain", 128, 1, False, 3)
    assert calls[2] == calls[3] == (clean_folder, "rain", 4, 128, 1, 3, False)


@pytest.mark.parametrize("cache", [(), ("--cache_pairs",)])  # streamed, or a pool made once
def test_unet_training_resumes_bit_for_bit(clean_folder, tmp_path, cache):
    args = ["--task=haze", f"--data={clean_folder}", "--size=32", "--pool=4", "--val_pairs=1", "--batch=2",
            "--accum=2", "--widths=(4,8)", "--val_every=2", "--threads=1", *cache]
    code, out, err = run_here("baselines.py", *args, "--steps=4", f"--out={tmp_path / 'once'}")
    assert code == 0, err
    assert "trainable numbers" in out
    code, _, err = run_here("baselines.py", *args, "--steps=2", f"--out={tmp_path / 'twice'}")
    assert code == 0, err
    code, out, err = run_here("baselines.py", *args, "--steps=4", "--resume", f"--out={tmp_path / 'twice'}")
    assert code == 0 and "resumed" in out and "at step 2" in out, err
    a, b = load_file(tmp_path / "once" / "haze.safetensors"), load_file(tmp_path / "twice" / "haze.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = torch.load(tmp_path / "once" / "haze.ckpt.pt", weights_only=True)["log"]
    lb = torch.load(tmp_path / "twice" / "haze.ckpt.pt", weights_only=True)["log"]
    assert la == lb and len(la) == 4
    net, meta = baselines.load_unet(str(tmp_path / "once" / "haze.safetensors"))
    assert meta["task"] == "haze" and meta["steps"] == "4" and net.widths == (4, 8)
    assert (tmp_path / "once" / "haze_val.png").is_file()


def test_choose_stores_the_best_setting_of_the_grid(clean_folder, tmp_path):
    code, out, err = run_here("baselines.py", "--choose", "--task=rain", f"--data={clean_folder}", "--size=32",
                              "--choose_count=2", f"--out={tmp_path / 'tiny-flux' / 'baselines'}")
    assert code == 0, err
    assert "<- chosen" in out
    stored = json.load(open(tmp_path / "tiny-flux" / "baselines" / "classical.json"))
    grid = baselines.CLASSICAL["rain"][3]
    assert all(v in grid[k] for k, v in stored["rain"]["settings"].items())
    assert baselines.classical_settings("tiny-flux", "rain", str(tmp_path)) == stored["rain"]["settings"]


def test_bad_input_is_one_line(tmp_path):
    for args, says in [(["--task=fog"], "unknown task"), (["--data=generate"], "--data=generate"),
                       (["--widths=(0,8)"], "--widths")]:
        code, _, err = run_here("baselines.py", *args, f"--out={tmp_path}")
        assert code == 2 and says in err and "Traceback" not in err, (args, err)
    prompt_file = os.path.join(ROOT, "prompts", "tiny-flux", "haze.safetensors")
    with pytest.raises(ValueError, match="not a U-Net file"):
        baselines.load_unet(prompt_file)
