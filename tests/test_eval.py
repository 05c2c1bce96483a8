"""Metrics against an independent reference (scikit-image), and eval.py end to end."""
import json

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import metrics
from conftest import run_here


def pair(seed=0, shape=(3, 40, 52)):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(*shape, generator=g)
    return a, (a + 0.1 * torch.randn(*shape, generator=g)).clamp(0, 1)


def test_psnr_ssim_match_scikit_image():
    a, b = pair()
    m = metrics.metrics(a, b)
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
    per = [metrics.metrics(a[:, f], b[:, f])["psnr"] for f in range(4)]
    assert metrics.metrics(a, b)["psnr"] == pytest.approx(np.mean(per))
    q = (a * 255).round() / 255
    assert metrics.metrics(q, q + 0.001)["psnr"] == float("inf")  # equal after uint8 quantization


def test_eval_writes_csv_json_and_table(random_tiny, clean_folder, tmp_path):
    import backbones
    import extensions
    import prompt as prompt_lib
    bb = backbones.load(random_tiny["tiny-flux"], device="cpu")
    # gates at zero at the bare row's T0 (with extensions: this kind's; --paper: the backbone's):
    # the bare backbone, so the same numbers as the bare row
    for paper, t0 in ((False, extensions.defaults(bb.kind)["t0"]), (True, bb.t0)):
        prompt_lib.save(bb.new_prompt(task="haze", bridge="ebr", t0=t0), tmp_path / "haze.safetensors")
        out = tmp_path / f"paper{paper}"
        code, outp, err = run_here("eval.py", "--task=haze", f"--backbone={random_tiny['tiny-flux']}",
                                   f"--data={clean_folder}", "--count=2", "--size=32", f"--paper={paper}",
                                   f"--prompts={tmp_path / 'haze.safetensors'}", f"--out={out}")
        assert code == 0, err
        summary = json.load(open(out / "summary.json"))
        assert set(summary["summary"]) == {"degraded", "VAE round trip of clean", "bare backbone", "prompt ebr"}
        assert summary["pairs"] == 2 and summary["paper"] == paper
        assert ("the paper's method" in outp) == paper and "PSNR-Y" in outp
        rows = open(out / "per_image.csv").read().splitlines()
        assert len(rows) == 1 + 2 * 4  # header + 2 pairs x 4 methods
        assert summary["summary"]["prompt ebr"] == summary["summary"]["bare backbone"]
        assert summary["summary"]["bare backbone"] != summary["summary"]["degraded"]
        assert (summary["decode"]["prompt ebr"] == list(extensions.PAPER_DECODE)) == paper
    # the pictures: degraded | VAE | bare | prompt | clean, each at the crop's size, the first one the input
    from data import media
    from data import pairs
    assert sorted(f.name for f in out.glob("pair_*.png")) == ["pair_0.png", "pair_1.png"]
    pic = media.read_image(out / "pair_1.png")
    assert pic.shape == (3, 32, 5 * 32)
    deg = pairs.make_pairs(clean_folder, "haze", 2, 32, 1, torch.Generator().manual_seed(0 + 7))[1][0]
    assert (pic[:, :, :32] - deg).abs().max() <= 0.5 / 255 + 1e-6


@pytest.mark.catalogue
def test_vae_only_rows(random_tiny, tmp_path):
    # the VAE's ceiling alone, at any size: no prompt is needed (none is looked up)
    code, outp, err = run_here("eval.py", "--vae_only", "--prompts=no/such.safetensors", f"--backbone={random_tiny['tiny-flux']}",
                          "--data=photos", "--count=1", "--size=64", f"--out={tmp_path}")
    assert code == 0, err
    summary = json.load(open(tmp_path / "summary.json"))
    assert set(summary["summary"]) == {"degraded", "VAE round trip of clean"} and summary["size"] == 64


def test_unchanged_pairs_are_left_out_of_every_mean(random_tiny, tmp_path):
    # a blur of one pixel over a flat crop changes nothing: its PSNR is infinite, and so was the mean
    from data import media
    for d in ("input", "gt"):
        (tmp_path / "pairs" / d).mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 40, 40, generator=g), torch.rand(3, 40, 40, generator=g)
    for name, deg, clean in [("same.png", a, a), ("other.png", b, a)]:
        media.write_image(tmp_path / "pairs" / "input" / name, deg)
        media.write_image(tmp_path / "pairs" / "gt" / name, clean)
    code, outp, err = run_here("eval.py", "--vae_only", f"--backbone={random_tiny['tiny-flux']}", f"--data={tmp_path / 'pairs'}",
                          "--count=6", "--size=32", f"--out={tmp_path / 'out'}")
    assert code == 0, err
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    left = 6 - summary["pairs"]
    assert 0 < left < 6 and f"{left} of 6 pairs left out" in outp
    assert all(v < float("inf") for m in summary["summary"].values() for v in m.values())
    # only unchanged pairs: a one-line error, not a table of infinities
    (tmp_path / "pairs" / "input" / "other.png").unlink()
    (tmp_path / "pairs" / "gt" / "other.png").unlink()
    code, outp, err = run_here("eval.py", "--vae_only", f"--backbone={random_tiny['tiny-flux']}", f"--data={tmp_path / 'pairs'}",
                          "--count=2", "--size=32", f"--out={tmp_path / 'out2'}")
    assert code == 2 and "nothing to evaluate" in err and "Traceback" not in err


def test_score_is_min_max_normalized_mean():
    got = metrics.score({"a": dict(psnr=10, ssim=0.5), "b": dict(psnr=12, ssim=0.4), "c": dict(psnr=11, ssim=0.45)})
    assert got == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.5})
    got = metrics.score({"a": dict(psnr=10, ssim=0.5), "b": dict(psnr=12, ssim=0.6)})
    assert got == {"a": 0.0, "b": 1.0}
    # against the degraded input: each gain as a fraction of the best gain, so a tiny PSNR spread
    # weighs little (min-max would call a and b a tie)
    res = {"a": dict(psnr=20.04, ssim=0.50), "b": dict(psnr=20.00, ssim=0.60)}
    assert metrics.score(res) == {"a": 0.5, "b": 0.5}
    got = metrics.score(res, dict(psnr=10.0, ssim=0.40))
    assert got["a"] == pytest.approx((1 + 0.5) / 2) and got["b"] == pytest.approx((10 / 10.04 + 1) / 2)
    # a metric no candidate improves counts against them over the range that includes the input
    got = metrics.score(res, dict(psnr=10.0, ssim=0.70))
    assert got["a"] == pytest.approx((1 - 1) / 2) and got["b"] == pytest.approx((10 / 10.04 - 0.5) / 2)


def test_choose_decode_writes_the_best_scored_decode_into_the_prompt(random_tiny, clean_folder, tmp_path):
    import backbones
    import extensions
    import prompt as prompt_lib
    bb = backbones.load(random_tiny["tiny-flux"], device="cpu")
    path = tmp_path / "haze.safetensors"
    prompt_lib.save(bb.new_prompt(task="haze", bridge="ebr", t0=bb.t0), path)
    args = ["choose_decode.py", "--task=haze", f"--backbone={random_tiny['tiny-flux']}", "--count=2", "--size=32",
            f"--prompt={path}", "--keep_detail=0,1,4"]
    code, outp, err = run_here(*args, "--data=heldout")  # the held-out photos are for the tables, never for choosing
    assert code == 2 and "training pairs" in err
    assert not set(extensions.DECODE_KEYS) & set(prompt_lib.load(path).meta)  # nothing chosen, nothing written
    code, outp, err = run_here(*args, f"--data={clean_folder}", "--decoded_above=0,0.1", "--min_change=0,0.01")
    assert code == 0, err
    rows = [line.split() for line in outp.splitlines() if line[:1] in "014" and len(line.split()) >= 6]
    scores = {tuple(float(v) for v in r[:3]): float(r[5]) for r in rows}
    chosen = [tuple(float(v) for v in r[:3]) for r in rows if "chosen" in r[-1]]
    assert set(scores) == {(0.0, 0.0, 0.0)} | {(w, a, f) for w in (1.0, 4.0) for a in (0.0, 0.1) for f in (0.0, 0.01)}
    assert len(chosen) == 1
    assert scores[chosen[0]] == max(scores.values())
    assert tuple(float(prompt_lib.load(path).meta[k]) for k in extensions.DECODE_KEYS) == chosen[0]


def test_paper_metrics_match_scikit_image_on_float_rgb():
    # the authors' evaluation code: float RGB in [0, 1], data_range=1, the default 7x7 window,
    # channel_axis=2, no quantization
    a, b = pair(2, (3, 37, 45))
    m = metrics.paper_metrics(b, a)
    na, nb = a.double().permute(1, 2, 0).numpy(), b.double().permute(1, 2, 0).numpy()
    assert m["psnr_paper"] == pytest.approx(peak_signal_noise_ratio(na, nb, data_range=1), abs=1e-9)
    assert m["ssim_paper"] == pytest.approx(structural_similarity(na, nb, data_range=1, channel_axis=2), abs=1e-9)
    ours = metrics.metrics(b, a)  # a different convention, and different numbers
    assert abs(ours["ssim"] - m["ssim_paper"]) > 1e-3
    clip_a, clip_b = pair(3, (3, 3, 20, 24))
    per = [metrics.paper_metrics(clip_b[:, f], clip_a[:, f])["ssim_paper"] for f in range(3)]
    assert metrics.paper_metrics(clip_b, clip_a)["ssim_paper"] == pytest.approx(np.mean(per))


def test_eval_baselines_rows_and_pictures(random_tiny, clean_folder, tmp_path):
    # --baselines on two pairs: the classical and U-Net rows beside the prompt's, both metric
    # conventions, each method's learned numbers, and their columns in pair_<i>.png
    import backbones
    import baselines
    from data import media
    from data import pairs
    import prompt as prompt_lib
    bb = backbones.load(random_tiny["tiny-flux"], device="cpu")
    p = bb.new_prompt(task="snow", bridge="ebr", t0=bb.t0)
    prompt_lib.save(p, tmp_path / "snow.safetensors")
    code, _, err = run_here("baselines.py", "--task=snow", f"--backbone={random_tiny['tiny-flux']}", f"--data={clean_folder}",
                            "--size=32", "--pool=2", "--val_pairs=1", "--batch=1", "--steps=1", "--widths=(4,8)",
                            f"--out={tmp_path / 'unet'}")
    assert code == 0, err
    out = tmp_path / "eval"
    code, outp, err = run_here("eval.py", "--task=snow", f"--backbone={random_tiny['tiny-flux']}", f"--data={clean_folder}",
                               "--count=2", "--size=32", "--baselines", "--bare=false", f"--prompts={tmp_path / 'snow.safetensors'}",
                               f"--unet={tmp_path / 'unet' / 'snow.safetensors'}", f"--out={out}")
    assert code == 0, err
    summary = json.load(open(out / "summary.json"))
    rows = ["degraded", "VAE round trip of clean", "prompt ebr", "classical: flake filter and stretch", "supervised U-Net"]
    assert list(summary["summary"]) == rows
    assert all({"psnr", "ssim", "psnr_paper", "ssim_paper"} <= set(m) for m in summary["summary"].values())
    assert summary["learned"] == {"degraded": 0, "VAE round trip of clean": None, "prompt ebr": baselines.count(p), "classical: flake filter and stretch": 0,
                                  "supervised U-Net": baselines.count(baselines.UNet((4, 8)))}
    assert summary["baselines"]["unet"]["steps"] == "1" and "settings" in summary["baselines"]["classical"]
    assert "supervised U-Net" in outp and "paper's PSNR" in outp
    assert len(open(out / "per_image.csv").read().splitlines()) == 1 + 2 * len(rows)
    pic = media.read_image(out / "pair_0.png")
    assert pic.shape == (3, 32, (len(rows) + 1) * 32)  # every row, then clean
    deg = pairs.make_pairs(clean_folder, "snow", 2, 32, 1, torch.Generator().manual_seed(7))[0][0]
    settings = baselines.classical_settings(bb.name, "snow")
    assert (pic[:, :, 3 * 32:4 * 32] - baselines.classical("snow", deg, settings)).abs().max() <= 0.5 / 255 + 1e-6
    # a U-Net for another task is refused in one line
    code, _, err = run_here("eval.py", "--task=haze", f"--backbone={random_tiny['tiny-flux']}", f"--data={clean_folder}",
                            "--count=1", "--size=32", "--baselines", "--bare=false", f"--prompts={tmp_path / 'snow.safetensors'}",
                            f"--unet={tmp_path / 'unet' / 'snow.safetensors'}", f"--out={tmp_path / 'eval2'}")
    assert code == 2 and "not 'haze'" in err and "Traceback" not in err
