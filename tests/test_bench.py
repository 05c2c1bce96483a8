"""bench.py --arch: the same measurements the GPU run prints, on the tiny architectures on the CPU
(at a fraction of their sizes), and the one line it gives without a GPU; in the slow tier, the
default bench's table (python bench.py) at small sizes."""
import pytest
import torch

import backbones
import bench
import sample
import train
from plumbing import cli
from conftest import run, run_here


def cli_config(mod):
    """A script's config block as it is now (the values its command line sets)."""
    return {name: getattr(mod, name) for name, _ in cli.options(mod.__file__)}


SMALL = {"tiny-flux": dict(train_size=32, tile=32), "tiny-wan": dict(train_size=16, tile=16, train_frames=5, window=5)}


@pytest.mark.parametrize("kind", ["tiny-flux", "tiny-wan"])
def test_arch_bench_prints_every_row(kind, monkeypatch, capsys):
    monkeypatch.setitem(backbones.SETTINGS, kind, dict(backbones.SETTINGS[kind], **SMALL[kind]))
    configs = {mod: cli_config(mod) for mod in (sample, train)}
    for key, val in dict(arch=kind, device="cpu", repeats=1, steps=2, threads=torch.get_num_threads()).items():
        monkeypatch.setattr(bench, key, val)
    rows = bench.main_arch()
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + len(rows)  # a header, the column names, a line per row
    for (name, *_), line in zip(rows, out[2:]):
        assert line.strip().startswith(name)
    what = "windows" if kind == "tiny-wan" else "tiles"
    want = ["forward", "train step / forward", "train step / forward grad ckpt"] * 2 + \
        ["one call", "restore / calls x one call", "sampler alone (no VAE)", "mix 2 prompts / 1 prompt",
         "VAE encode + decode float32", "VAE encode + decode bfloat16", f"one call on {what}", f"restore {what}"]
    assert len(rows) == len(want)
    for (name, secs, ref, peak, _), words in zip(rows, want):
        assert all(w in name for w in words.split()), (name, words)
        assert secs > 0 and (ref is None or ref > 0) and peak is None  # no GPU memory on the CPU
    assert sum(r[2] is not None for r in rows) == 8  # the ratios: 4 train steps, 2 restores, sampler, mixing
    assert "(2 windows)" in rows[-1][0] if kind == "tiny-wan" else "(3 tiles)" in rows[-1][0]
    assert {mod: cli_config(mod) for mod in (sample, train)} == configs  # bench passes settings, sets none


def test_arch_bench_without_a_gpu_says_so_in_one_line(monkeypatch, capsys):
    code, outp, err = run("bench.py", "--arch=flux", env={"CUDA_VISIBLE_DEVICES": ""})
    assert code == 2 and not outp and err.startswith("error: bench.py --arch=flux needs a CUDA GPU")
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for arch, device, why in (("wan", "cpu", "builds the real architecture on a GPU"), ("sdxl", "", "choose one of")):
        monkeypatch.setattr(bench, "arch", arch)
        monkeypatch.setattr(bench, "device", device)
        with pytest.raises(SystemExit) as e:
            bench.main_arch()
        out = capsys.readouterr()
        assert e.value.code == 2 and not out.out and out.err.startswith("error: ") and why in out.err
        assert len(out.err.strip().splitlines()) == 1


@pytest.mark.slow
def test_default_bench_prints_its_table():
    # python bench.py (the tiny default on the CPU), at small sizes: every ratio row is printed
    code, outp, err = run_here("bench.py", "--size=32", "--photo_size=64", "--repeats=1", "--steps=2", "--big_photo=72x48",
                               f"--threads={torch.get_num_threads()}")
    assert code == 0, err
    table = outp.split("target\n", 1)[1].splitlines()
    want = ["train step / forward", "restore 32px / (2 calls x one call)", "the same, detail kept / plain decode",
            "mix 2 prompts / 1 prompt", "mix 3 prompts / 1 prompt", "restore a 64x64 photo",
            "the same, coarse prompt / plain", "restore a 72x48 photo, sample.py (s)", "its peak memory (GiB)",
            "seconds per megapixel"]  # tiny-flux keeps detail and trains coarse prompts (extensions.py)
    assert len(table) == len(want)
    for line, name in zip(table, want):
        assert line.strip().startswith(name), (line, name)
        assert all(float(v) > 0 for v in line[40:].split()[:3]), line  # time, reference, ratio
