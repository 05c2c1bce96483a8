"""--resume: a training run's checkpoint, shared by train.py (the prompt) and baselines.py (the
U-Net): the learned tensors under `name`, the optimizer, each micro-batch generator's state, the
step, the log and the settings; written atomically, read back without running code in it."""
import pickle

import torch

from data import media
from plumbing.cli import fail


def save(path, name, model, opt, rng, step, log, config):
    """The run's state at `path`, re-read before the rename: a full disk fails here, not at the next --resume."""
    state = {name: model.state_dict(), "optimizer": opt.state_dict(), "rng": rng, "step": step, "log": log,
             "config": config}
    media.atomic(path, lambda tmp: torch.save(state, tmp), lambda tmp: torch.load(tmp, map_location="cpu", weights_only=True))


def load(path, name, script):
    """A checkpoint's state, or one line naming the file: never running code in it."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        fail(f"{path}: holds pickled Python objects besides tensors; refused (nothing in it was run)")
    except Exception as e:  # truncated or not a checkpoint: torch raises several types
        fail(f"{path}: not a readable checkpoint, truncated? ({type(e).__name__}: {' '.join(str(e).split())[:120]}); "
             f"delete it to start afresh")
    if not isinstance(ck, dict) or not {name, "optimizer", "rng", "step", "log", "config"} <= set(ck):
        fail(f"{path}: not a {script} checkpoint")
    return ck


def resume(ck, path, name, model, opt, gens, states, flag, cached, pool):
    """Continue from ck: refused where it was trained on other data (a pool, `--flag`, or streamed),
    else the model's, the optimizer's and each generator's state. Returns (step, log)."""
    was = ck["config"][flag]
    if was != cached:
        fail(f"{path} was trained on " + (f"{pool}; resume it with --{flag}" if was
                                         else f"streamed data; resume it without --{flag}"))
    model.load_state_dict(ck[name])
    opt.load_state_dict(ck["optimizer"])
    for g, s in zip(gens, states):
        g.set_state(s)
    return ck["step"], ck["log"]
