"""The command line: --help read from each script's config block, and the option parsing."""
import importlib
import os
import re

import pytest

from plumbing import cli
from conftest import ROOT, run, run_here

SCRIPTS = ["train.py", "sample.py", "eval.py", "choose_decode.py", "bench.py", "pretrain.py"]


def help_of(script):
    mod = importlib.import_module(script[:-3])
    with pytest.raises(SystemExit) as e:
        cli.parse(vars(mod), ["--steps=3", "--help"], getattr(mod, "ALIASES", None))
    return mod, e.value.code


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_gives_every_option_its_default_and_one_line(script, capsys):
    mod, code = help_of(script)
    text = capsys.readouterr().out
    assert code == 0
    assert text.startswith(mod.__doc__.strip().splitlines()[0])
    lines = text.splitlines()
    shown = {v: k for k, v in getattr(mod, "ALIASES", {}).items()}
    opts = cli.options(mod.__file__)
    assert len(opts) >= 5
    for name, what in opts:
        assert what, f"{script}: --{name} has no help line"
        flag = f"--{shown.get(name, name)}={cli._show(getattr(mod, name))}"  # the default, not --steps=3
        assert sum(line.strip().startswith(flag + " ") and line.rstrip().endswith(what) for line in lines) == 1, flag
    # the options are exactly the module's public lower-case settings before its first function
    assert [n for n, _ in opts] == [n for n in mod.__dict__ if n in dict(opts)]
    assert "ALIASES" not in dict(opts)


def test_help_from_the_command_line_exits_0_before_any_work(tmp_path, monkeypatch):
    code, outp, err = run("train.py", "--help")  # a real process: nothing else on stdout or stderr
    assert code == 0 and "--bridge='ebr'" in outp and "--accum=1" in outp and not err.strip()
    monkeypatch.chdir(tmp_path)  # where a script that went on to work would write
    for script in SCRIPTS:
        code, outp, err = run_here(script, "-h", "--steps=1")
        assert code == 0 and outp.startswith(importlib.import_module(script[:-3]).__doc__.strip()[:40]), script
        assert not err
    assert not os.listdir(tmp_path)


def test_parse_keeps_its_semantics_and_reads_literals(tmp_path):
    src = tmp_path / "script.py"
    src.write_text('"""A script."""\nimport os\n\n# ---- config\nsteps = 10  # steps\nlr = 0.5  # lr\n'
                   'name = ""  # a name\nfast = False  # fast\ncache = (8, 4)  # two sizes\nlimit = None  # none\n'
                   'ALIASES = {"n": "name"}\n\n\ndef main():\n    pass\n')
    fresh = {"__file__": str(src), "__doc__": "A script.", "os": os, "steps": 10, "lr": 0.5, "name": "", "fast": False,
             "cache": (8, 4), "limit": None, "ALIASES": {}, "main": print}
    cfg = dict(fresh)
    rest = cli.parse(cfg, ["in.png", "--steps", "3", "--lr=1e-3", "--n", "x", "--fast", "--cache=(2,1)",
                           "--limit=7", "out"], {"n": "name"})
    assert rest == ["in.png", "out"]
    assert (cfg["steps"], cfg["lr"], cfg["name"], cfg["fast"], cfg["cache"], cfg["limit"]) == (3, 1e-3, "x", True, (2, 1), 7)
    cfg = dict(fresh)
    cli.parse(cfg, ["--limit=word", "--fast=no"])
    assert cfg["limit"] == "word" and cfg["fast"] is False
    for bad, why in (["--os=x"], "unknown option --os"), (["--main=1"], "unknown option --main"), \
                     (["--cache=3"], "expected a tuple"), (["--steps=1.5"], "expected a int"), \
                     (["--ALIASES=1"], "unknown option"):
        with pytest.raises(SystemExit):
            cli.parse(cfg, bad)
    assert cli.options(str(src)) == [("steps", "steps"), ("lr", "lr"), ("name", "a name"), ("fast", "fast"),
                                     ("cache", "two sizes"), ("limit", "none")]


def test_config_block_shapes_pretrain_uses(tmp_path):
    # pretrain.py's block: pairs (a, b = 1, 2), chains (a = b = None), a help on the line above
    src = tmp_path / "pre.py"
    src.write_text('"""Pre-train."""\n# not the block\nx = 1  # not an option\n'
                   '# ------------------------------------------ config (override: --key=value)\n'
                   'vae_steps_a, tf_steps_a = 24, 80  # a: VAE steps, transformer steps\n'
                   '# latents cached: 64 px and 128 px crops\ncache = (60, 15)\n'
                   'vae_steps = tf_steps = None  # both at once\n_private = 3  # no\n\n\ndef configure():\n    pass\n'
                   'after = 2  # not in the block\n')
    assert cli.options(str(src)) == [("vae_steps_a", "a: VAE steps, transformer steps"),
                                     ("tf_steps_a", "a: VAE steps, transformer steps"),
                                     ("cache", "latents cached: 64 px and 128 px crops"),
                                     ("vae_steps", "both at once"), ("tf_steps", "both at once")]
    fresh = {"__file__": str(src), "__doc__": "Pre-train.", "x": 1, "vae_steps_a": 24, "tf_steps_a": 80,
             "cache": (60, 15), "vae_steps": None, "tf_steps": None, "_private": 3, "after": 2}
    text = cli.usage(fresh)
    assert text.startswith("Pre-train.") and re.search(r"\n  --cache=\(60, 15\) +latents cached: 64 px", text)
    assert re.search(r"\n  --tf_steps=None +both at once", text) and "--x=" not in text and "--after" not in text
    cfg = dict(fresh)
    cli.parse(cfg, ["--vae_steps=2", "--cache=(8,4)", "--tf_steps_a", "5"])
    assert (cfg["vae_steps"], cfg["cache"], cfg["tf_steps_a"]) == (2, (8, 4), 5)
    for bad in ("--x=2", "--after=3", "--_private=1"):
        with pytest.raises(SystemExit):
            cli.parse(cfg, [bad])


def test_examples_make_help_and_bad_options_write_nothing():
    # --help used to fall through to re-making every example
    here = os.path.join(ROOT, "examples")
    before = {f: os.path.getmtime(os.path.join(here, f)) for f in os.listdir(here)}
    code, outp, err = run("examples/make.py", "--help")
    assert code == 0 and "--sheet" in outp and "wrote" not in outp
    code, outp, err = run("examples/make.py", "--sheet=fog")
    assert code != 0 and "fog" in err and "Traceback" not in err
    code, outp, err = run("examples/make.py", "--bogus")
    assert code != 0 and "--bogus" in err and "Traceback" not in err
    assert {f: os.path.getmtime(os.path.join(here, f)) for f in os.listdir(here)} == before
