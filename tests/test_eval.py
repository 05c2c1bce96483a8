"""Metrics against an independent reference (scikit-image), and eval.py end to end."""
import json

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import eval as ev
from conftest import run


def pair(seed=0, shape=(3, 40, 52)):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(*shape, generator=g)
    return a, (a + 0.1 * torch.randn(*shape, generator=g)).clamp(0, 1)


def test_psnr_ssim_match_scikit_image():
    a, b = pair()
    m = ev.metrics(a, b)
    qa = (a * 255).round().permute(1, 2, 0).numpy()
    qb = (b * 255).round().permute(1, 2, 0).numpy()
    assert m["psnr"] == pytest.approx(peak_signal_noise_ratio(qa, qb, data_range=255), abs=1e-6)
    ref = structural_similarity(qa, qb, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert m["ssim"] == pytest.approx(ref, abs=1e-6)
    # Y channel: MATLAB rgb2ycbcr luma, then the same references
    y = lambda q: 16 + (65.481 * q[..., 0] + 128.553 * q[..., 1] + 24.966 * q[..., 2]) / 255  # noqa: E731
    assert m["psnr_y"] == pytest.approx(peak_signal_noise_ratio(y(qa), y(qb), data_range=255), abs=1e-6)
    assert m["ssim_y"] == pytest.approx(structural_similarity(y(qa), y(qb), gaussian_weights=True, sigma=1.5,
                                                              use_sample_covariance=False, data_range=255), abs=1e-6)


def test_metrics_quantize_and_average_frames():
    a, b = pair(1, (3, 4, 24, 24))
    per = [ev.metrics(a[:, f], b[:, f])["psnr"] for f in range(4)]
    assert ev.metrics(a, b)["psnr"] == pytest.approx(np.mean(per))
    q = (a * 255).round() / 255
    assert ev.metrics(q, q + 0.001)["psnr"] == float("inf")  # equal after uint8 quantization


def test_eval_writes_csv_json_and_table(random_tiny, tmp_path):
    import backbones
    import prompt as prompt_lib
    bb = backbones.load(random_tiny["tiny-flux"], device="cpu")
    p = bb.new_prompt(task="haze", bridge="ebr", t0=bb.t0)  # gates at zero, the bare row's T0: the bare backbone
    prompt_lib.save(p, tmp_path / "haze.safetensors")
    code, outp, err = run("eval.py", "--task=haze", f"--backbone={random_tiny['tiny-flux']}", "--data=photos",
                          "--count=2", "--size=32", f"--prompts={tmp_path / 'haze.safetensors'}", f"--out={tmp_path}")
    assert code == 0, err
    summary = json.load(open(tmp_path / "summary.json"))
    assert set(summary["summary"]) == {"degraded", "VAE round trip of clean", "bare backbone", "prompt ebr"}
    assert summary["pairs"] == 2 and "lpips" in summary["unavailable"]
    assert "PSNR-Y" in outp and "unavailable" in outp
    rows = open(tmp_path / "per_image.csv").read().splitlines()
    assert len(rows) == 1 + 2 * 4  # header + 2 pairs x 4 methods
    # a prompt with zero gates is the bare backbone: the same numbers (same seed, same start)
    assert summary["summary"]["prompt ebr"] == summary["summary"]["bare backbone"]
    assert summary["summary"]["bare backbone"] != summary["summary"]["degraded"]


def test_vae_only_rows(random_tiny, tmp_path):
    # the VAE's ceiling alone, at any size: no prompt is needed (none is looked up)
    code, outp, err = run("eval.py", "--vae_only", "--prompts=no/such.safetensors", f"--backbone={random_tiny['tiny-flux']}",
                          "--data=photos", "--count=1", "--size=64", f"--out={tmp_path}")
    assert code == 0, err
    summary = json.load(open(tmp_path / "summary.json"))
    assert set(summary["summary"]) == {"degraded", "VAE round trip of clean"} and summary["size"] == 64
