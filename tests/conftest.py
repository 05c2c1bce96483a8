"""Tiny random configs of the real classes (the sizes diffusers' own tests use) and helpers."""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.append(os.path.join(ROOT, "notebooks"))  # the notebooks' shared helpers (lab.py)
SHARED = os.path.join(ROOT, "..", "shared")

from diffusers import AutoencoderKL, AutoencoderKLWan, FluxTransformer2DModel, WanTransformer3DModel  # noqa: E402

import backbones  # noqa: E402

torch.set_num_threads(2)


def tiny_flux_parts(seed=0):
    torch.manual_seed(seed)
    tf = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    vae = AutoencoderKL(block_out_channels=[32, 64], down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, layers_per_block=1, latent_channels=16,
                        norm_num_groups=32, scaling_factor=0.3611, shift_factor=0.1159)
    return tf, vae


def tiny_wan_parts(seed=0):
    torch.manual_seed(seed)
    tf = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                               in_channels=16, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
                               num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                               rope_max_seq_len=32)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    return tf, vae


@pytest.fixture
def flux_bb():
    tf, vae = tiny_flux_parts()
    g = torch.Generator().manual_seed(1)
    return backbones.FluxBackbone("test-flux", tf, vae, torch.randn(1, 8, 32, generator=g),
                                  torch.randn(1, 32, generator=g), "cpu", torch.float32)


@pytest.fixture
def wan_bb():
    tf, vae = tiny_wan_parts()
    g = torch.Generator().manual_seed(1)
    return backbones.WanBackbone("test-wan", tf, vae, torch.randn(1, 8, 32, generator=g), "cpu", torch.float32)


def need_shared():
    if not os.path.isdir(os.path.join(SHARED, "ypt")):
        pytest.skip("../shared/ypt is absent: the authors' released prompts are not here")
    return os.path.join(SHARED, "ypt")


def run(*args, cwd=ROOT, env=None):
    """Run one of the repo's scripts as a user would; returns (exit code, stdout, stderr).
    args may start with "torchrun" (torch's own launcher, run as python -m torch.distributed.run)."""
    import subprocess
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2", **(env or {}))
    env.pop("YPT_DEBUG", None)
    if args and args[0] == "torchrun":
        args = ("-m", "torch.distributed.run", *args[1:])
    p = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="session")
def random_tiny(tmp_path_factory):
    """Folders of the shipped tiny architectures with random weights (what pretrain.py writes)."""
    import json

    from plumbing import tiny
    root = tmp_path_factory.mktemp("tiny")
    out = {}
    for kind in ("tiny-flux", "tiny-wan"):
        folder = root / kind
        tiny.save(str(folder), tiny.build(kind), kind)
        (folder / "pretrain.json").write_text(json.dumps({"random": True}))
        out[kind] = str(folder)
    return out


def run_here(script, *args):
    """Run a script's main in this process, as `python script args` would: (exit code, stdout,
    stderr). Its config block is restored afterwards. Far faster than run() (no new interpreter,
    no import of torch and diffusers); one run() per script keeps the real exit-code contract."""
    import contextlib
    import importlib
    import io

    from plumbing import cli
    mod = importlib.import_module(script[:-3])
    saved = {name: getattr(mod, name) for name, _ in cli.options(mod.__file__)}
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rest = cli.parse(vars(mod), list(args), getattr(mod, "ALIASES", None))
            with cli.fail.guard():
                mod.main(rest) if mod.main.__code__.co_argcount else mod.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        for name, value in saved.items():
            setattr(mod, name, value)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def clean_folder(tmp_path_factory):
    """A folder of four small clean photos (crops of scikit-image's): fast training data that
    reads the same whether or not the Debian photo packages are installed."""
    from data import media
    from data import photos
    folder = tmp_path_factory.mktemp("clean")
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        img = photos.photo(name)
        media.write_image(str(folder / f"{name}.png"), media.resize(img[:, :256, :256], 48, 48))
    return str(folder)


def transformer_inputs(bb):
    """The shapes of every tensor the transformer is called with, call by call (a list that grows)."""
    seen = []
    bb.transformer.register_forward_pre_hook(
        lambda m, a, kw: seen.append({k: tuple(v.shape) for k, v in kw.items() if torch.is_tensor(v)}),
        with_kwargs=True)
    return seen


def together(job, n=2, timeout=300):
    """Run job(0) ... job(n-1) in n threads released at once; the exceptions they raised, in a list."""
    import threading
    start, errors = threading.Barrier(n), []

    def one(i):
        start.wait()
        try:
            job(i)
        except Exception as e:  # noqa: BLE001 (the caller asserts the list is empty)
            errors.append(e)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors
