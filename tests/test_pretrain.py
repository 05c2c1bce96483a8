"""pretrain.py for a few steps (the full recipe makes the shipped weights), and the tiny default."""
import json
import os
import subprocess

import pytest
import torch

import backbones
from data import pairs, photos
from conftest import ROOT, run


@pytest.mark.slow
def test_pretrain_smoke_makes_loadable_backbones(tmp_path):
    # the pip-shipped photos alone (CI need not install the Debian photo packages)
    code, outp, err = run("pretrain.py", "--pip_only", "--vae_steps=2", "--tf_steps=2", "--bank64=16", "--bank128=16",
                          "--clips=20", "--eval_every=2", f"--out={tmp_path}", f"--work={tmp_path / 'work'}")
    assert code == 0, err
    for kind, video in (("tiny-flux", False), ("tiny-wan", True)):
        folder = tmp_path / kind
        log = json.load(open(folder / "pretrain.json"))
        assert log["held_out"] == list(photos.HELD_OUT) and log["steps"]["transformer"] == 2
        assert log["photos"] == list(photos.PIP_PHOTOS) and len(log["vae_heldout_psnr_db"]) == 1
        bb = backbones.load(str(folder), device="cpu")
        assert bb.video == video and bb.prompt_shape[0] == 32
        assert (folder / "samples.png").is_file()


@pytest.mark.catalogue
def test_held_out_photos_never_in_training_sources(monkeypatch):
    # record every photo that pre-training and prompt training read (a small stand-in is read
    # instead: the names are what matters, and decoding 70 wallpapers of up to 6000 px is not)
    import pretrain
    seen = []

    def photo(name):
        seen.append(name)
        return torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(len(seen)))
    monkeypatch.setattr(photos, "photo", photo)
    for name in pretrain.training_photos():  # what both tiny backbones pre-train on (plus the GIF for video)
        pretrain.load_photo(name)
    assert set(seen) == set(photos.available(photos.TRAIN_PHOTOS))  # each of them, by its catalogue name
    pairs.make_pairs("photos", "haze", 4, 32, 1, torch.Generator().manual_seed(0), False)  # train.py's default
    pairs.make_pairs("photos", "rain", 2, 32, 5, torch.Generator().manual_seed(0), True)
    assert seen and set(seen) <= set(photos.TRAIN_PHOTOS) and not set(seen) & set(photos.HELD_OUT)
    assert not set(photos.HELD_OUT) & set(photos.TRAIN_PHOTOS)
    photos.eval_crops(32)  # the evaluation set reads exactly the held-out photos
    assert set(seen) - set(photos.TRAIN_PHOTOS) == set(photos.available(photos.HELD_OUT))


@pytest.mark.skipif(not os.path.isdir(backbones.TINY["tiny-flux"]), reason="shipped weights absent")
def test_shipped_weights_size_and_layout():
    # what a clone carries (git's view: ignored checkpoints and sheets left out): the photo and clip
    # backbones and their prompts at most 30 MB, the supervised baselines (fp16 U-Nets) at most 10 MB
    # more, the shapes world (fp16 weights and its prompts) at most 8 MB more
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "weights", "prompts"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    size = lambda fs: sum(os.path.getsize(os.path.join(ROOT, f)) for f in fs)  # noqa: E731
    base = [f for f in files if "/baselines/" in f]
    world = [f for f in files if "/tiny-shapes/" in f]
    rest = set(files) - set(base) - set(world)
    assert size(rest) <= 30 * 2**20, f"{size(rest) / 2**20:.1f} MB"
    assert size(base) <= 10 * 2**20, f"{size(base) / 2**20:.1f} MB"
    assert size(world) <= 8 * 2**20, f"{size(world) / 2**20:.1f} MB"
    bb = backbones.load(device="cpu")
    assert bb.name == "tiny-flux" and not any(p.requires_grad for p in bb.transformer.parameters())
    x = torch.rand(1, 3, 32, 32)
    assert bb.decode(bb.encode(x * 2 - 1)).shape == (1, 3, 32, 32)


def test_fit_resumes_where_it_stopped(tmp_path, monkeypatch):
    # a run killed mid-way and started again ends where an uninterrupted run ends, bit for bit
    import pretrain
    monkeypatch.setattr(pretrain, "save_every", 0)  # a checkpoint after every step
    monkeypatch.setattr(pretrain, "bf16", False)

    def run(path, stop=None):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)

        def loss(step, g):
            if step == stop:
                raise KeyboardInterrupt  # killed here
            x = torch.randn(8, 4, generator=g)
            return (model(x) - x.sum(1, keepdim=True)).square().mean()
        pretrain.fit("t", model, loss, 6, 0.1, 0.0, str(path))
        return model

    whole = run(tmp_path / "a.pt")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b.pt", stop=3)
    assert torch.load(tmp_path / "b.pt", weights_only=False)["step"] == 3
    resumed = run(tmp_path / "b.pt")
    assert torch.equal(whole.weight, resumed.weight) and torch.equal(whole.bias, resumed.bias)


def test_fit_keeps_a_moving_average_and_ships_it(tmp_path):
    # with ema, the model holds the average of its weights over the steps, not the last step's
    import pretrain
    torch.manual_seed(0)
    model, target = torch.nn.Linear(4, 1), torch.randn(64, 4)

    def loss(step, g):
        return (model(target) - 1).square().mean()
    last = torch.nn.Linear(4, 1)
    last.load_state_dict(model.state_dict())
    pretrain.fit("plain", last, lambda s, g: (last(target) - 1).square().mean(), 30, 0.1, 0.0, str(tmp_path / "a.pt"))
    pretrain.fit("ema", model, loss, 30, 0.1, 0.0, str(tmp_path / "b.pt"), ema=0.9)
    assert not torch.allclose(model.weight, last.weight)  # the same steps, averaged
    again = torch.nn.Linear(4, 1)  # resuming a finished run gives the average back from the checkpoint
    pretrain.fit("ema", again, lambda s, g: (again(target) - 1).square().mean(), 30, 0.1, 0.0, str(tmp_path / "b.pt"), ema=0.9)
    assert torch.equal(again.weight, model.weight)
