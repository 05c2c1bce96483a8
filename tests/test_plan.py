"""Memory planned from shapes on the meta device (plan.py) against what the CPU's allocator
records running the same code on a tiny config (torch.profiler's allocation records: the
accounting torch.cuda.max_memory_allocated does): the training step within 5% with and without
gradient checkpointing, encoding a batch within 15% (the convolutions' own buffers are not
tensors the plan sees), and the real FLUX's planned figures in their range."""
import pytest
import torch

import backbones
import train
from plumbing import plan

SIZE, FRAMES, BATCH = 32, 5, 2


def measured(kind, ckpt):
    """(encode, step) peaks of the CPU allocator, the bytes above where each started."""
    bb = backbones.random_backbone(kind, "cpu")
    if ckpt:
        bb.transformer.enable_gradient_checkpointing()
    px = (BATCH, 3, FRAMES, SIZE, SIZE) if bb.video else (BATCH, 3, SIZE, SIZE)
    deg = torch.randint(0, 255, px, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    z, enc = plan.cpu_peak(lambda: train.encode_batch(bb, deg, deg))
    g = torch.Generator().manual_seed(0)

    def step():
        p = bb.new_prompt(task="plan")
        train.train_step(bb, p, torch.optim.AdamW(p.parameters(), lr=1e-4), [z], [g], "ebr", bb.t0)
    return enc, plan.cpu_peak(step)[1]


@pytest.mark.parametrize("kind", ["tiny-flux", pytest.param("tiny-wan", marks=pytest.mark.slow)])
def test_the_planned_training_step_is_what_the_cpu_allocates(kind):
    for ckpt in (False, True):
        planned = plan.training(kind, SIZE, FRAMES, BATCH, ckpt=ckpt, dtype=torch.float32, vae_dtype="fp32")
        enc, step = measured(kind, ckpt)
        assert abs(planned["step"] / step - 1) <= 0.05, (kind, ckpt, planned, step)
        if kind == "tiny-flux":  # Wan's 3-D convolutions unfold their input in buffers of their own
            assert abs(planned["encode"] / enc - 1) <= 0.15, (kind, planned, enc)
        assert planned["peak"] >= planned["transformer"] + planned["step"]


def test_float8_casting_in_place_is_counted_once():
    bf16 = plan.training("tiny-flux", SIZE, batch=1, ckpt=True, dtype=torch.float32, vae_dtype="fp32")
    fp8 = plan.training("tiny-flux", SIZE, batch=1, storage="fp8", dtype=torch.float32, vae_dtype="fp32")
    assert fp8["transformer"] < 0.6 * bf16["transformer"]
    assert fp8["step"] < bf16["step"] + bf16["transformer"] * 0.3  # one block's weights cast up at a time, not all


def test_bench_plan_prints_the_planned_rows_without_a_gpu(monkeypatch, capsys):
    import bench
    monkeypatch.setitem(backbones.SETTINGS, "tiny-flux", dict(backbones.SETTINGS["tiny-flux"], train_size=16, tile=16))
    for key, val in dict(arch="tiny-flux", plan=True).items():
        monkeypatch.setattr(bench, key, val)
    rows = bench.main_arch()
    out = capsys.readouterr().out
    assert "planned memory of tiny-flux" in out and len(rows) == 6
    assert "restore 32x32, batch 1, --low_memory (nf4)" in out and "train 16x16, batch 1, --low_memory (fp8 + grad ckpt)" in out
    low, full = rows[-1][-1], rows[-2][-1]
    assert low["transformer"] < full["transformer"] and low["run"] == full["run"]


@pytest.mark.slow
def test_the_real_flux_and_wan_plans_fit_the_readmes_cards():
    gib = 2**30
    assert plan.training("flux", batch=1, storage="fp8")["peak"] < 20 * gib  # a 24 GB card
    assert plan.restoring("flux", 1024, 1024, storage="nf4")["peak"] < 11 * gib  # a 12 GB card
    assert plan.training("wan", batch=1, storage="fp8")["peak"] < 8 * gib
    default = plan.training("flux", batch=1)
    assert default["peak"] > default["transformer"] > 22 * gib  # bf16 weights alone


@pytest.mark.slow
def test_bench_gpu_dry_runs_end_to_end_and_writes_one_table(tmp_path):
    from conftest import run
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Earlier\n\nkept\n")
    for _ in range(2):  # a second run replaces its section
        code, out, err = run("bench.py", "--gpu", "--dry", f"--results={results}", "--threads=1")
        assert code == 0, err
    text = results.read_text()
    assert text.startswith("# Results\n\n## Earlier\n\nkept\n") and text.count("## One GPU: `bench.py --gpu` --dry") == 1
    rows = [line for line in text.splitlines() if line.startswith("| tiny-")]
    assert len(rows) == 13 and all(line.count("|") == 8 for line in rows)
    assert "torchrun --nproc_per_node=2" in rows[-1] and "trained, exit 0" in rows[-1]  # two ranks, gloo
    assert sum("restore" in line for line in rows) == 4 and sum("--low_memory" in line for line in rows) == 6
