"""End to end on what the repo ships: the pre-trained tiny backbones, their task prompts, examples/."""
import os

import pytest
import torch

import metrics
from data import degrade, media
from conftest import ROOT, run_here

KINDS = ("tiny-flux", "tiny-wan")


@pytest.mark.parametrize("kind", KINDS)
def test_every_task_has_a_shipped_prompt_and_a_paper_form_one(kind):
    import backbones
    import extensions
    import sample
    bb = backbones.load(kind, device="cpu")
    for task in degrade.TASKS:
        path = os.path.join(ROOT, "prompts", kind, f"{task}.safetensors")
        assert os.path.isfile(path), f"missing shipped prompt {path}"
        p = bb.load_prompt(path)  # the shape and gate count fit this backbone
        assert p.meta["backbone"] == kind and p.meta["task"] == task and p.meta["bridge"] == "ebr"
        if extensions.coarse_of(p)[0]:  # a coarse prompt: this kind's width, gain and T0
            ext = extensions.defaults(kind)
            assert extensions.coarse_of(p) == (ext["coarse"], ext["gain"]) and float(p.meta["t0"]) == ext["t0"]
        assert set(extensions.DECODE_KEYS) <= set(p.meta)  # its decode was chosen (choose_decode.py)
        assert torch.isfinite(p.bank).all() and p.gates.abs().sum() > 0  # trained, not a fresh init
        # --paper finds a prompt of the paper's form for every task, at the backbone's T0
        (q,), _, t0, decode = sample.prepare(bb, [task], paper=True)
        assert extensions.coarse_of(q) == (0.0, 1.0) and t0 == bb.t0 and decode == extensions.PAPER_DECODE
        assert q.meta["task"] == task and q.gates.abs().sum() > 0


def test_readme_first_command_restores_the_example(tmp_path):
    # `python sample.py examples/haze.png --tasks=haze`, written to tmp so the repo stays clean
    src = os.path.join(ROOT, "examples", "haze.png")
    dst = tmp_path / "haze_restored.png"
    code, _, err = run_here("sample.py", src, "--tasks=haze", f"--out={dst}", "--progress=false")
    assert code == 0, err
    deg = media.read_image(src)
    clean = media.read_image(os.path.join(ROOT, "examples", "clean", "haze.png"))
    out = media.read_image(str(dst))
    assert out.shape == deg.shape
    # the shipped prompt really restores this held-out photo: several dB of PSNR, and SSIM up too
    # (measured 0.68 -> 0.85 and more), which a darker or grid-covered output would not give
    got, before = metrics.metrics(out, clean), metrics.metrics(deg, clean)
    assert got["psnr"] > before["psnr"] + 1.0 and got["ssim"] > before["ssim"] + 0.05


def test_train_on_images_generated_by_the_frozen_backbone(random_tiny, tmp_path):
    code, outp, err = run_here("train.py", "--task=snow", "--data=generate", "--generate_count=2",
                          f"--backbone={random_tiny['tiny-flux']}", "--steps=2", "--pool=2", "--val_pairs=1",
                          "--batch=1", "--size=32", f"--out={tmp_path}")
    assert code == 0, err
    assert "data: generate / snow" in outp and (tmp_path / "snow.safetensors").is_file()
