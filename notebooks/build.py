"""Run the teaching notebooks from their jupytext sources and write them with their outputs.

    python notebooks/build.py                             # all of them, full setting (what is committed)
    YPT_FAST=1 python notebooks/build.py --out=/tmp/nb    # a quick run (what the slow tests do)
    python notebooks/build.py --only=02
    YPT_THREADS=1 python notebooks/build.py --only=02 --backbone=tiny-wan --out=runs/nb-tiny-wan

The sources are NN_name.py beside this script (percent format); NN_name.ipynb is what it writes.
Each notebook reads BACKBONE at the top: None is the shipped tiny default (CPU); --backbone sets it
("flux", "wan" or a local folder, with the weights and a GPU).
"""
import glob
import os
import sys
import time

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
# every NN_name.py beside this script is a notebook source
NAMES = sorted(os.path.basename(f)[:-3] for f in glob.glob(os.path.join(HERE, "[0-9][0-9]_*.py")))


def source(name, backbone=None):
    """The notebook of NN_name.py, not yet run; backbone replaces its BACKBONE = None."""
    nb = jupytext.read(os.path.join(HERE, f"{name}.py"), fmt="py:percent")
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if backbone:
        for c in nb.cells:
            if c.cell_type == "code":
                c.source = c.source.replace("BACKBONE = None", f"BACKBONE = {backbone!r}")
    return nb


def run(nb, timeout=6 * 3600):
    """Execute in this folder (the notebooks import the repo from '..'). A cell may train dozens of
    prompts: on tiny-wan and one thread, notebook 02's T0 sweep alone runs over an hour."""
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": HERE}}).execute()
    return tidy(nb)


def tidy(nb):
    """Drop the progress bars (and tqdm's no-widgets warning) that stream to stderr: a reader
    needs the prints and figures, not hundreds of progress lines."""
    def is_noise(o):
        t = "".join(o.get("text", ""))
        return o.get("name") == "stderr" and ("\r" in t or "it/s" in t or "IProgress" in t or not t.strip())
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = [o for o in c.outputs if not (o.output_type == "stream" and is_noise(o))]
    return nb


def build(name, out=HERE, backbone=None):
    """Run one notebook from its source and write out/name.ipynb; returns the executed notebook."""
    os.makedirs(out, exist_ok=True)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = run(source(name, backbone))
    nbformat.write(nb, os.path.join(out, f"{name}.ipynb"))
    return nb


def main(args):
    out, only, backbone = HERE, None, None
    for a in args:
        if a.startswith("--out="):
            out = a[6:]
        elif a.startswith("--only="):
            only = a[7:]
        elif a.startswith("--backbone="):
            backbone = a[11:]
        else:
            sys.exit(f"build.py: unknown argument {a}")
    names = [n for n in NAMES if not only or n.startswith(only)]
    if not names:
        sys.exit(f"build.py: --only={only} matches none of {', '.join(NAMES)}")
    for name in names:
        t = time.time()
        build(name, out, backbone)
        print(f"{name}: ran in {time.time() - t:.0f} s -> {os.path.join(out, name + '.ipynb')}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
