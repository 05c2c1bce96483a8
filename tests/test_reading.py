"""What a student reads to follow one restore: the repo's own functions it calls (a sys.setprofile
trace of `python sample.py examples/haze.png --tasks=haze`), and the one function, sample.velocity,
that stands between the sampler and the transformer."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

TRACE = r"""
import inspect, json, os, runpy, sys
root, out = sys.argv[1], sys.argv[2]
calls = {}

def profile(frame, event, arg):
    c = frame.f_code  # a named function of the repo; nested ones are read with the function they sit in
    if event == "call" and c.co_filename.startswith(root + os.sep) and c.co_flags & inspect.CO_NEWLOCALS \
            and "<" not in c.co_qualname and os.sep + "tests" + os.sep not in c.co_filename:
        key = os.path.relpath(c.co_filename, root) + ":" + c.co_qualname
        calls[key] = calls.get(key, 0) + 1

sys.argv = [os.path.join(root, "sample.py")] + sys.argv[3:]
sys.path.insert(0, root)
import diffusers, PIL.Image, torch, tqdm, transformers  # noqa: E401,F401  (the libraries' imports, untraced: faster)
sys.setprofile(profile)
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    sys.setprofile(None)
    json.dump(calls, open(out, "w"), indent=1)
"""


def traced(tmp_path, runs):
    """{args: the functions and their call counts} of each run, the runs side by side (two cores)."""
    procs = {}
    for args in runs:
        out = tmp_path / f"calls{len(procs)}.json"
        procs[args] = (out, subprocess.Popen(
            [sys.executable, "-c", TRACE, ROOT, str(out), "examples/haze.png", "--tasks=haze",
             f"--out={tmp_path / f'restored{len(procs)}.png'}", "--steps=2", "--progress=false", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    calls = {}
    for args, (out, p) in procs.items():
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        calls[args] = json.load(open(out))
    return calls


@pytest.mark.slow  # two traced restores: half a minute of the fast tier's five
def test_a_restore_reads_in_few_functions_with_one_velocity_between_sampler_and_transformer(tmp_path):
    # at most 50 and 45 named functions (nanoGPT's sample path: about 15 functions in 2 files)
    runs = traced(tmp_path, [(), ("--paper",)])
    for args, most in (((), 50), (("--paper",), 45)):
        calls = runs[args]
        assert len(calls) <= most, f"{len(calls)} functions for a restore {args}:\n" + "\n".join(sorted(calls))
        # each sampler step: one call of sample.velocity, which calls the backbone once (all tiles fit one call)
        assert calls["sample.py:velocity"] == calls["backbones.py:Backbone.velocity"] == 2
        assert calls["bridge.py:sample"] == 1
        # the prompt is checked once, when it is loaded, never per call
        assert calls["backbones.py:Backbone.load_prompt"] == calls["prompt.py:load"] == 1
        assert ("extensions.py:coarse" in calls) != bool(args)  # the extension's place: off with --paper
        assert not any(k.startswith(("plumbing/tiles.py:tiled", "bridge.py:mixed", "extensions.py:velocities"))
                       for k in calls)  # the wrappers sample.velocity replaced
    assert os.path.isfile(tmp_path / "restored0.png") and os.path.isfile(tmp_path / "restored1.png")
