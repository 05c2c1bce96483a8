"""Bad input gets one line, `error: ...`, exit code 2, no traceback, and nothing written.

The cases run in this process (conftest.run_here: a script's main as `python script args` runs
it, without a new interpreter); one case per script also runs as a real process, for the exit
code and the stderr a user sees."""
import os

import pytest
import torch

from data import media
from conftest import run, run_here


@pytest.fixture(scope="module")
def prompts(random_tiny, tmp_path_factory):
    """Random non-zero prompts for both random tiny backbones, as files (test_pipeline's), and
    for tiny-flux a coarse one and one trained at another T0."""
    import backbones
    import prompt as prompt_lib
    d = tmp_path_factory.mktemp("prompts")
    out = {}
    for kind in ("tiny-flux", "tiny-wan"):
        bb = backbones.load(random_tiny[kind], device="cpu")
        for task in ("haze", "rain"):
            p = bb.new_prompt(task=task, bridge="ebr", t0=0.4)
            with torch.no_grad():
                p.gates.fill_(0.3)
            path = d / f"{kind}-{task}.safetensors"
            prompt_lib.save(p, path)
            out[kind, task] = str(path)
    bb = backbones.load(random_tiny["tiny-flux"], device="cpu")
    for key, meta in (("coarse", dict(task="haze", bridge="ebr", t0=0.1, coarse=2.0, gain=8.0)),
                      ("t0=0.2", dict(task="rain", bridge="ebr", t0=0.2))):
        p = bb.new_prompt(**meta)
        with torch.no_grad():
            p.gates.fill_(0.3)
        path = d / f"tiny-flux-{key}.safetensors"
        prompt_lib.save(p, path)
        out["tiny-flux", key] = str(path)
    return out


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """The test's folder, also the working directory: an output a script would write by default
    (runs/...) would land here and be seen."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("YPT_DEBUG", raising=False)  # it turns the one line back into a traceback
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    media.write_image(str(tmp_path / "ok.png"), torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)))
    media.write_image(str(tmp_path / "tiny.png"), torch.rand(3, 3, 5))
    return tmp_path


def files(path):
    return {os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs + ["."]}


def one_line(code, outp, err, match):
    assert code == 2, (code, outp, err)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], err
    assert "Traceback" not in err + outp


def bad(folder, script, *args, match, process=False):
    """Run script with args (in this process, or as a process of its own): one line naming `match`."""
    before = files(folder)
    code, outp, err = (run if process else run_here)(script, *args)
    one_line(code, outp, err, match)
    assert files(folder) == before  # nothing written, not even half
    return err


def test_sample_bad_inputs(random_tiny, prompts, folder):
    bbf, bbw = f"--backbone={random_tiny['tiny-flux']}", f"--backbone={random_tiny['tiny-wan']}"
    haze = f"--tasks={prompts['tiny-flux', 'haze']}"
    ok = str(folder / "ok.png")
    bad(folder, "sample.py", str(folder / "empty.png"), haze, bbf, match="empty")
    bad(folder, "sample.py", str(folder / "junk.png"), haze, bbf, match="not a readable image")
    bad(folder, "sample.py", str(folder / "junk.mp4"), f"--tasks={prompts['tiny-wan', 'haze']}", bbw,
        match="not a readable video")
    bad(folder, "sample.py", str(folder / "tiny.png"), haze, bbf, match="5x3 px is too small")
    bad(folder, "sample.py", ok, "--tasks=fog", bbf, match="unknown task 'fog'")
    bad(folder, "sample.py", ok, f"--tasks={prompts['tiny-wan', 'haze']}", bbf, match="was made for")
    bad(folder, "sample.py", ok, haze, bbf, f"--out={ok}", match="would overwrite the input")
    bad(folder, "sample.py", str(folder / "missing.png"), haze, bbf, match="no such file")
    bad(folder, "sample.py", ok, haze, "--backbone=/nowhere", match="not a name")
    bad(folder, "sample.py", ok, haze, bbf, "--vae_dtype=fp16", match="bf16 or fp32")
    bad(folder, "sample.py", ok, bbf, match="no task given")
    bad(folder, "sample.py", haze, bbf, match="no input given")
    bad(folder, "sample.py", ok, haze, bbf, "--stepz=3", match="unknown option --stepz")
    bad(folder, "sample.py", ok, haze, bbf, "--seed=x", match="--seed=x: expected a")


def test_sample_paper_and_mixing_refusals(random_tiny, prompts, folder):
    bbf = f"--backbone={random_tiny['tiny-flux']}"
    ok = str(folder / "ok.png")
    for option in ("--keep_detail=2", "--decoded_above=0.1", "--min_change=0"):  # extensions, even when off
        bad(folder, "sample.py", ok, f"--tasks={prompts['tiny-flux', 'haze']}", bbf, "--paper", option,
            match="are extensions; --paper decodes the latent as it is")
    err = bad(folder, "sample.py", ok, f"--tasks={prompts['tiny-flux', 'coarse']}", bbf, "--paper",
              match="is a coarse prompt (extensions.py), not the paper's form")
    assert "tiny-flux-coarse.safetensors" in err
    mix = f"--tasks={prompts['tiny-flux', 'haze']},{prompts['tiny-flux', 't0=0.2']}"
    err = bad(folder, "sample.py", ok, mix, bbf, match="the prompts were trained at different T0")
    assert "haze 0.4" in err and "rain 0.2" in err and "pass --t0" in err
    ddbm = folder / "ddbm"  # the same prompt, said to be trained on another bridge
    import prompt as prompt_lib
    p = prompt_lib.load(prompts["tiny-flux", "rain"])
    p.meta["bridge"] = "ddbm"
    prompt_lib.save(p, str(ddbm) + ".safetensors")
    bad(folder, "sample.py", ok, f"--tasks={prompts['tiny-flux', 'haze']},{ddbm}.safetensors", bbf,
        match="trained on different bridges (ddbm, ebr); pass --bridge")


def test_sample_mixing_works_where_the_refusal_says_so(random_tiny, prompts, folder):
    # what the messages ask for is enough: --t0 mixes the two T0s, and without --paper the
    # coarse prompt restores (a sampler of one step: the point is that it runs, not how well)
    bbf = f"--backbone={random_tiny['tiny-flux']}"
    ok = str(folder / "ok.png")
    mix = f"--tasks={prompts['tiny-flux', 'haze']},{prompts['tiny-flux', 't0=0.2']}"
    code, outp, err = run_here("sample.py", ok, mix, bbf, "--t0=0.3", "--steps=1", "--progress=false",
                               f"--out={folder / 'mixed.png'}")
    assert code == 0, err
    assert "T0 0.3, 1 steps" in outp and (folder / "mixed.png").is_file()
    code, outp, err = run_here("sample.py", ok, f"--tasks={prompts['tiny-flux', 'coarse']}", bbf, "--steps=1",
                               "--progress=false", f"--out={folder / 'coarse.png'}")
    assert code == 0, err
    assert "T0 0.1" in outp and "the paper's method" not in outp and (folder / "coarse.png").is_file()
    assert "extensions.py: coarse prompt (width" in outp  # said when it starts: which method runs


# a case that stopped failing would run the script: on a few small pairs, for one step, not for minutes
TRAIN = ["--steps=1", "--pool=2", "--val_pairs=1", "--size=32"]
EVAL = ["--count=1", "--size=32", "--pictures=0"]
CHOOSE = ["--count=1", "--size=32", "--keep_detail=0,1", "--decoded_above=0", "--min_change=0"]


@pytest.mark.catalogue
def test_train_bad_inputs(random_tiny, folder):
    bbf = f"--backbone={random_tiny['tiny-flux']}"
    bad(folder, "train.py", "--task=fog", bbf, *TRAIN, f"--out={folder / 'ok.png'}", match="unknown task 'fog'")
    bad(folder, "train.py", "--bridge=ddim", bbf, *TRAIN, match="unknown bridge 'ddim'")
    bad(folder, "train.py", "--stepz=3", *TRAIN, match="unknown option --stepz")
    bad(folder, "train.py", "--attention=fast", bbf, *TRAIN, match="--attention=fast")
    bad(folder, "train.py", "--gain=-2", bbf, *TRAIN, match="--gain=-2.0 must be positive")
    bad(folder, "train.py", "--batch=-1", bbf, *TRAIN, match="--batch=-1 must be at least 0")
    bad(folder, "train.py", "--accum=0", bbf, *TRAIN, match="--accum=0 at least 1")
    for option in ("--coarse=2", "--gain=8"):
        bad(folder, "train.py", "--paper", option, bbf, *TRAIN, match="--coarse and --gain are extensions")
    bad(folder, "train.py", bbf, *TRAIN, "--size=30", match="--size=30 must be a multiple of")
    bad(folder, "train.py", bbf, *TRAIN, f"--out={folder / 'ok.png'}", match="is a file; train.py writes a folder")


@pytest.mark.catalogue
def test_eval_and_choose_decode_bad_inputs(random_tiny, prompts, folder):
    bbf = f"--backbone={random_tiny['tiny-flux']}"
    bad(folder, "eval.py", "--paper", "--min_change=0.1", bbf, *EVAL, match="are extensions; --paper decodes")
    bad(folder, "eval.py", "--prompts=fog", bbf, *EVAL, match="unknown task 'fog'")
    bad(folder, "eval.py", f"--prompts={prompts['tiny-flux', 'coarse']}", "--paper", bbf, *EVAL,
        match="is a coarse prompt")
    bad(folder, "choose_decode.py", bbf, *CHOOSE, match="--prompt: give the .safetensors prompt file")
    bad(folder, "choose_decode.py", f"--prompt={prompts['tiny-flux', 'haze']}", "--data=heldout", bbf, *CHOOSE,
        match="--data=heldout: a decode is chosen on training pairs")
    bad(folder, "choose_decode.py", f"--prompt={prompts['tiny-flux', 'haze']}", bbf, *CHOOSE, "--keep_detail=1,x",
        match="--keep_detail=1,x: expected numbers")
    bad(folder, "choose_decode.py", f"--prompt={folder / 'missing.safetensors'}", bbf, *CHOOSE,
        match="prompt file not found")


@pytest.mark.catalogue
def test_each_script_as_a_process(random_tiny, prompts, folder):
    # the exit code and stderr of a real process: after a backbone and a prompt were loaded
    # (sample.py), at the command line's parsing (train.py), and before anything loads
    bbf = f"--backbone={random_tiny['tiny-flux']}"
    bad(folder, "sample.py", str(folder / "junk.png"), f"--tasks={prompts['tiny-flux', 'haze']}", bbf,
        match="not a readable image", process=True)
    bad(folder, "train.py", "--stepz=3", *TRAIN, match="unknown option --stepz", process=True)
    bad(folder, "eval.py", "--paper", "--min_change=0.1", *EVAL, match="are extensions", process=True)
    bad(folder, "choose_decode.py", "--data=heldout", f"--prompt={prompts['tiny-flux', 'haze']}", *CHOOSE,
        match="--data=heldout", process=True)
