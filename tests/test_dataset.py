"""Training data that streams (dataset.py): nothing read while the dataset is built, one read per
pair drawn, every pair a function of (seed, n) whichever worker makes it, and a run interrupted
mid-way resumed to the prompt of an uninterrupted one, bit for bit."""
import json
import os

import pytest
import torch
from safetensors.torch import load_file

import backbones
import train
from data import dataset, media, pairs
from conftest import run_here


@pytest.fixture
def paired_list(tmp_path):
    """An authors' JSON list of 40 distinct pairs of 24 x 28 px."""
    g = torch.Generator().manual_seed(0)
    entries = []
    for i in range(40):
        for kind in ("input", "gt"):
            path = tmp_path / kind / f"{i}.png"
            path.parent.mkdir(exist_ok=True)
            media.write_image(str(path), torch.rand(3, 24, 28, generator=g))
        entries.append(dict(image_path=f"input/{i}.png", target_path=f"gt/{i}.png", degradation="Rain", dataset="x"))
    (tmp_path / "list.json").write_text(json.dumps(entries))
    return str(tmp_path / "list.json")


@pytest.fixture
def reads(monkeypatch):
    """The files pairs.read decodes, in order."""
    seen, real = [], pairs.read
    monkeypatch.setattr(pairs, "read", lambda path: (seen.append(path), real(path))[1])
    return seen


def test_nothing_is_read_while_building_and_one_file_per_image_drawn(paired_list, reads, random_tiny, tmp_path):
    items, synthetic = pairs.items(paired_list, "rain")
    ds = dataset.Pairs(items, synthetic, "rain", 16, 1, False, seed=0)
    assert len(items) == 40 and not synthetic and reads == []
    deg, clean = ds[5]
    assert deg.dtype == torch.uint8 and deg.shape == clean.shape == (3, 16, 16) and len(reads) == 2
    # a training run reads the validation pairs, then each step's pairs when it takes them
    del reads[:]
    code, outp, err = run_here("train.py", "--task=rain", f"--data={paired_list}", f"--backbone={random_tiny['tiny-flux']}",
                               "--size=16", "--batch=2", "--accum=2", "--steps=1", "--val_pairs=1", "--workers=0",
                               f"--out={tmp_path / 'run'}", "--paper")
    assert code == 0, err
    assert "40 paired items streamed" in outp
    assert len(reads) == 2 * (1 + 2 * 2)  # (degraded, clean) x (validation + steps x accum x batch)


def test_a_pair_is_a_function_of_the_seed_and_its_number(clean_folder):
    items, synthetic = pairs.items(clean_folder, "haze")
    ds = dataset.Pairs(items, synthetic, "haze", 16, 1, False, seed=3)
    again = dataset.Pairs(items, synthetic, "haze", 16, 1, False, seed=3)
    for n in (0, 7, 5, 0):  # any order, any instance
        assert all(torch.equal(a, b) for a, b in zip(ds[n], again[n]))
    assert not torch.equal(ds[0][0], ds[4][0])  # a fresh crop and degradation at every draw
    # each epoch takes every item once, in its own order
    epochs = [[ds.order(e)[k].item() for k in range(len(items))] for e in range(3)]
    assert all(sorted(e) == list(range(len(items))) for e in epochs) and len({tuple(e) for e in epochs}) > 1
    # the loader's batches are the same whichever processes read them
    steps = dataset.Steps(1, 3, [0, 1], 2, 2)
    assert list(steps) == [4, 5, 6, 7, 8, 9, 10, 11] and len(steps) == 8
    assert list(dataset.Steps(1, 3, [1], 2, 2)) == [6, 7, 10, 11]  # slot 1 of two: rank 1 of two processes
    one = list(dataset.batches(ds, steps, 2, 0))
    two = list(dataset.batches(ds, steps, 2, 2))
    assert len(one) == 4 and all(torch.equal(a, b) for x, y in zip(one, two) for a, b in zip(x, y))
    assert torch.equal(one[0][1][1], ds[5][1])


def test_a_bad_file_met_in_a_worker_is_one_line(clean_folder, random_tiny, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in os.listdir(clean_folder):
        (folder / name).write_bytes(open(os.path.join(clean_folder, name), "rb").read())
    (folder / "junk.png").write_bytes(b"not an image")
    code, _, err = run_here("train.py", f"--data={folder}", f"--backbone={random_tiny['tiny-flux']}", "--size=16",
                            "--batch=4", "--steps=4", "--val_pairs=1", "--workers=1", f"--out={tmp_path / 'run'}")
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("error: ") and "junk.png: not a readable image" in err
    items, synthetic = pairs.items(str(folder), "haze")
    ds = dataset.Pairs(items, synthetic, "haze", 16, 1, False, seed=0)
    with pytest.raises(media.InputError) as e:  # raised in the worker, given here as the worker's own error
        list(dataset.batches(ds, dataset.Steps(0, 2, [0], 1, len(items)), len(items), 1))
    assert str(e.value).endswith("junk.png: not a readable image (cannot identify image file "
                                 f"'{folder / 'junk.png'}')")


@pytest.mark.slow  # three short runs with workers: half a minute on 2 busy cores
def test_a_run_interrupted_mid_way_resumes_to_the_same_prompt(clean_folder, random_tiny, tmp_path, monkeypatch):
    # workers read the data; the run is stopped during step 3 (after the checkpoint of step 2),
    # resumed, and ends where an uninterrupted run ends, bit for bit
    common = ("train.py", f"--data={clean_folder}", f"--backbone={random_tiny['tiny-flux']}", "--size=16", "--batch=2",
              "--val_pairs=1", "--val_every=2", "--steps=3", "--workers=2", "--paper")
    code, _, err = run_here(*common, f"--out={tmp_path / 'a'}")
    assert code == 0, err
    real, calls = train.train_step, []

    def stopped(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(train, "train_step", stopped)
    code, _, err = run_here(*common, f"--out={tmp_path / 'b'}")
    assert code == 130 and "interrupted" in err
    assert torch.load(tmp_path / "b" / "haze.ckpt.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(train, "train_step", real)
    code, outp, err = run_here(*common, f"--out={tmp_path / 'b'}", "--resume")
    assert code == 0 and "resumed from" in outp, err
    pa, pb = load_file(tmp_path / "a" / "haze.safetensors"), load_file(tmp_path / "b" / "haze.safetensors")
    assert torch.equal(pa["bank"], pb["bank"]) and torch.equal(pa["gates"], pb["gates"])
    ck = [torch.load(tmp_path / d / "haze.ckpt.pt", weights_only=True) for d in "ab"]
    assert ck[0]["log"] == ck[1]["log"] and len(ck[0]["log"]) == 3
    # a streamed run's checkpoint does not resume on cached latents, nor the other way round
    code, _, err = run_here(*common, f"--out={tmp_path / 'b'}", "--resume", "--steps=6", "--cache_latents", "--pool=4")
    assert code == 2 and "resume it without --cache_latents" in err



@pytest.mark.slow
def test_a_process_killed_mid_way_resumes_to_the_same_prompt(clean_folder, random_tiny, tmp_path):
    # train.py as a user runs it, killed by SIGKILL with its workers once a checkpoint is on disk
    # (wherever it then is: mid-step, mid-write), resumed: it ends where an uninterrupted run ends
    import signal
    import subprocess
    import sys
    import time
    from conftest import ROOT, run
    common = ("train.py", f"--data={clean_folder}", f"--backbone={random_tiny['tiny-flux']}", "--size=16", "--batch=2",
              "--val_pairs=1", "--val_every=1", "--steps=8", "--workers=2", "--paper", "--threads=1")
    code, _, err = run(*common, f"--out={tmp_path / 'a'}")
    assert code == 0, err
    ckpt = tmp_path / "b" / "haze.ckpt.pt"
    p = subprocess.Popen([sys.executable, *common, f"--out={tmp_path / 'b'}"], cwd=ROOT, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not ckpt.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)  # the process and its data workers, no chance to clean up
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    step = torch.load(ckpt, weights_only=True)["step"]
    assert 1 <= step < 8
    code, outp, err = run(*common, f"--out={tmp_path / 'b'}", "--resume")
    assert code == 0 and f"resumed from {ckpt} at step" in outp, err
    pa, pb = load_file(tmp_path / "a" / "haze.safetensors"), load_file(tmp_path / "b" / "haze.safetensors")
    assert torch.equal(pa["bank"], pb["bank"]) and torch.equal(pa["gates"], pb["gates"])

def write_list(folder, n, side):
    """An authors' JSON list of n pairs of distinct side x side JPEGs (a smooth scene, each with
    its own mark), written fast: about 10 KB a file."""
    import numpy as np
    from PIL import Image
    yy, xx = np.mgrid[0:side, 0:side]
    base = np.stack([xx * 255 // side, yy * 255 // side, (xx + yy) * 127 // side], -1).astype(np.uint8)
    entries = []
    for kind in ("input", "gt"):
        (folder / kind).mkdir(parents=True)
    for i in range(n):
        a = base.copy()
        r, c = divmod(i % 1024, 32)  # its own mark: where, and how bright
        a[r * 16:r * 16 + 16, c * 16:c * 16 + 16] = 40 + 10 * (i // 1024)
        Image.fromarray(a).save(folder / "gt" / f"{i}.jpg", quality=70)
        a[::7] = 255  # the "degraded" input: lines across it
        Image.fromarray(a).save(folder / "input" / f"{i}.jpg", quality=70)
        entries.append(dict(image_path=f"input/{i}.jpg", target_path=f"gt/{i}.jpg", degradation="Rain", dataset="big"))
    (folder / "list.json").write_text(json.dumps(entries))
    return str(folder / "list.json")


@pytest.mark.slow  # writes 40,000 JPEGs (1.5 GB, a minute or two), then trains the shipped tiny-flux for 20 steps
def test_a_list_of_20000_images_starts_within_a_minute_in_bounded_memory(tmp_path):
    import re
    import subprocess
    import sys
    import threading
    import time

    import psutil
    from conftest import ROOT
    path = write_list(tmp_path / "big", 20000, 512)
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2")
    start = time.time()
    proc = subprocess.Popen([sys.executable, "train.py", "--task=rain", f"--data={path}", "--steps=20", "--val_pairs=1",
                             "--workers=2", f"--out={tmp_path / 'run'}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log, first = [], []

    def read():  # the progress bar: the time its count is first above 0 bounds the first step's end
        while chunk := os.read(proc.stdout.fileno(), 4096):
            log.append(chunk.decode(errors="replace"))
            if not first and re.search(r"\b[1-9]\d*/20 \[", log[-1]):
                first.append(time.time() - start)
    reader = threading.Thread(target=read)
    reader.start()
    peak = peak_pss = 0
    while proc.poll() is None:
        try:
            ps = [psutil.Process(proc.pid)]
            ps += ps[0].children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in ps))
            peak_pss = max(peak_pss, sum(p.memory_full_info().pss for p in ps))
        except psutil.Error:  # a process ended between the listing and the reading
            pass
        time.sleep(0.5)
    reader.join()
    log = "".join(log)
    assert proc.returncode == 0, log[-2000:]
    assert "20000 paired items streamed" in log
    print(f"\n20,000-entry list: first step done within {first[0]:.1f} s of the start; peak resident set of the "
          f"main process and its workers {peak / 2**30:.2f} GiB (PSS {peak_pss / 2**30:.2f} GiB); "
          f"20 steps and a validation in {time.time() - start:.0f} s")
    assert first[0] < 60 and peak < 3 * 2**30


def test_generate_draws_with_the_librarys_pipelines_seeded(flux_bb, wan_bb):
    for bb, frames in ((flux_bb, 1), (wan_bb, 5)):
        text = dict(context=bb.context + 0.5, pooled=getattr(bb, "pooled", None))
        a, b, c = (backbones.draw(bb, text, 32, frames, seed=s, steps=3) for s in (1, 1, 2))
        assert a.shape == ((3, 32, 32) if frames == 1 else (3, 5, 32, 32)) and 0 <= a.min() <= a.max() <= 1
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_generated_images_are_kept_and_a_rerun_reuses_them(random_tiny, tmp_path, monkeypatch):
    import diffusers
    seen, drawn = [], []
    real_call, real_draw = diffusers.FluxPipeline.__call__, backbones.draw
    monkeypatch.setattr(diffusers.FluxPipeline, "__call__",
                        lambda self, **k: (seen.append((type(self.scheduler).__name__, self.scheduler.config.use_dynamic_shifting,
                                                        k["guidance_scale"], k["num_inference_steps"])), real_call(self, **k))[1])
    monkeypatch.setattr(backbones, "draw", lambda *a, **k: (drawn.append(a[1]), real_draw(*a, **k))[1])
    (tmp_path / "captions.txt").write_text("a red boat on a lake\n\na forest path\n")
    args = ("train.py", "--task=snow", "--data=generate", "--generate_count=3", f"--captions={tmp_path / 'captions.txt'}",
            f"--backbone={random_tiny['tiny-flux']}", "--steps=1", "--val_pairs=1", "--batch=1", "--size=32",
            "--workers=0", f"--out={tmp_path / 'run'}")
    code, outp, err = run_here(*args)
    assert code == 0, err
    assert seen == [("FlowMatchEulerDiscreteScheduler", True, 3.5, 28)] * 3  # FluxPipeline's own schedule and guidance
    files = sorted(os.listdir(tmp_path / "run" / "generated"))
    assert len(files) == 3 and all(f.endswith(".png") for f in files) and "3 clean items streamed" in outp
    code, outp, err = run_here(*args)
    assert code == 0 and len(drawn) == 3, err  # the second run drew nothing
    assert sorted(os.listdir(tmp_path / "run" / "generated")) == files
