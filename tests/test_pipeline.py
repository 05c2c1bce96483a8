"""train.py and sample.py end to end on tiny random backbones: the paper's method bit for bit,
mixes at one T0, resume, any size, windows, and the extensions' place in the path."""
import os
import types

import pytest
import torch
from safetensors.torch import load_file

import backbones
import bridge
import extensions
import prompt as prompt_lib
import sample
from data import media
from plumbing import tiles
from conftest import run_here

TRAIN = ["train.py", "--task=haze", "--pool=6", "--val_pairs=2", "--batch=2", "--size=32"]


@pytest.fixture
def train(clean_folder):
    return lambda *args: run_here(*TRAIN, f"--data={clean_folder}", *args)


def test_train_writes_prompt_and_resume_continues_exactly(random_tiny, train, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = (f"--backbone={random_tiny['tiny-flux']}", "--val_every=2", "--paper")  # paper: half the calls
    code, outp, err = train(*common, "--steps=4", f"--out={a}")
    assert code == 0, err
    assert "trainable numbers" in outp and "val PSNR" in outp
    assert (a / "haze.safetensors").is_file() and (a / "haze_val.png").is_file()
    code, _, err = train(*common, "--steps=2", f"--out={b}")
    assert code == 0, err
    code, outp, err = train(*common, "--steps=4", f"--out={b}", "--resume")
    assert code == 0, err
    assert "resumed from" in outp
    pa, pb = load_file(a / "haze.safetensors"), load_file(b / "haze.safetensors")
    assert torch.equal(pa["bank"], pb["bank"]) and torch.equal(pa["gates"], pb["gates"])
    assert pa["gates"].abs().sum() > 0  # it did learn something
    ck_a = torch.load(a / "haze.ckpt.pt", weights_only=True)
    ck_b = torch.load(b / "haze.ckpt.pt", weights_only=True)
    assert ck_a["log"] == ck_b["log"]  # the same losses, step for step


def test_train_defaults_paper_and_extended(random_tiny, train, tmp_path):
    # tiny-flux's new prompts are coarse (an extension) at its T0; --paper trains the paper's form
    # at the backbone's T0; tiny-wan has no extension by default
    ext = extensions.PER_KIND["tiny-flux"]
    for args, want in (([], (ext["coarse"], ext["gain"], ext["t0"])),
                       (["--paper"], (0.0, 1.0, backbones.SETTINGS["tiny-flux"]["t0"])),
                       (["--coarse=0"], (0.0, 1.0, backbones.SETTINGS["tiny-flux"]["t0"]))):
        out = tmp_path / "-".join(args or ["default"])
        code, outp, err = train(f"--backbone={random_tiny['tiny-flux']}", "--steps=1", f"--out={out}", *args)
        assert code == 0, err
        p = prompt_lib.load(str(out / "haze.safetensors"))
        assert (*extensions.coarse_of(p), float(p.meta["t0"])) == want
        assert f"T0 {want[2]}" in outp


def test_train_on_video_backbone(random_tiny, clean_folder, tmp_path):
    code, outp, err = run_here("train.py", "--task=rain", f"--backbone={random_tiny['tiny-wan']}", "--steps=2",
                               f"--data={clean_folder}",
                               "--pool=2", "--val_pairs=1", "--batch=1", "--size=32", "--frames=5", f"--out={tmp_path}")
    assert code == 0, err
    assert "(3, 5, 32, 32) px" in outp
    t0 = backbones.SETTINGS["tiny-wan"]["t0"]  # no --t0: the backbone's own start noise level
    p = prompt_lib.load(tmp_path / "rain.safetensors")
    assert f"T0 {t0}" in outp and p.meta["t0"] == str(t0) and extensions.coarse_of(p) == (0.0, 1.0)


@pytest.fixture(scope="module")
def prompts(random_tiny, tmp_path_factory):
    """Random non-zero prompts for both random tiny backbones, as files: paper-form haze and rain
    at T0 0.4, a coarse one, and one at another T0."""
    d = tmp_path_factory.mktemp("prompts")
    out = {}
    for kind in ("tiny-flux", "tiny-wan"):
        bb = backbones.load(random_tiny[kind], device="cpu")
        for task, meta in (("haze", {}), ("rain", {}), ("coarse", dict(coarse=1.5, gain=2.5)), ("other", dict(t0=0.2))):
            p = bb.new_prompt(task=task, bridge="ebr", **dict(dict(t0=0.4), **meta))
            with torch.no_grad():
                p.gates.fill_(0.3)
                p.bank.normal_(generator=torch.Generator().manual_seed(len(task)))
            path = d / f"{kind}-{task}.safetensors"
            prompt_lib.save(p, path)
            out[kind, task] = str(path)
    return out


@pytest.fixture(scope="module")
def flux(random_tiny):
    return backbones.load(random_tiny["tiny-flux"], device="cpu")


def test_paper_method_is_the_bridge_sampler_on_the_mean_velocity_then_the_vae(flux, prompts):
    # sample.restore with --paper is exactly the paper: bridge.sample on the mean of the prompts'
    # velocities (one batched call), from the degraded latent, then the VAE's decode, bit for bit
    x = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(0))
    for names in ([prompts["tiny-flux", "haze"]], [prompts["tiny-flux", "haze"], prompts["tiny-flux", "rain"]]):
        ps, br, t0, decode = sample.prepare(flux, names, paper=True)
        assert decode == extensions.PAPER_DECODE and t0 == 0.4
        got = sample.restore(flux, x, ps, br, t0, decode, steps=6, seed=3, progress=False)
        y = flux.encode(x[None] * 2 - 1)
        eps = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
        z = bridge.sample(br, lambda z_, s: flux.velocity(z_, s, ps).mean(0), y, eps, t0, steps=6)
        want = ((flux.decode(z) + 1) / 2).clamp(0, 1)[0]
        assert torch.equal(got, want)
    # with the extensions the same prompts decode otherwise on tiny-flux (its kept detail)
    ps, br, t0, decode = sample.prepare(flux, names)
    assert decode[0] == extensions.PER_KIND["tiny-flux"]["keep_detail"]
    assert not torch.equal(sample.restore(flux, x, ps, br, t0, decode, steps=6, seed=3, progress=False), got)


def test_paper_refuses_a_coarse_prompt_and_finds_the_paper_form_one(flux, prompts, tmp_path):
    with pytest.raises(media.InputError, match="coarse prompt"):
        sample.prepare(flux, [prompts["tiny-flux", "coarse"]], paper=True)
    # a task name: prompts/<backbone>/paper/<task> where there is one, else the shipped one
    folder = tmp_path / flux.name
    (folder / "paper").mkdir(parents=True)
    for src, dst in ((prompts["tiny-flux", "coarse"], folder / "haze.safetensors"),
                     (prompts["tiny-flux", "haze"], folder / "paper" / "haze.safetensors"),
                     (prompts["tiny-flux", "rain"], folder / "rain.safetensors")):
        dst.write_bytes(open(src, "rb").read())
    ps, *_ = sample.prepare(flux, ["haze", "rain"], paper=True, prompts_dir=str(tmp_path))
    assert [extensions.coarse_of(p)[0] for p in ps] == [0.0, 0.0]  # paper/haze, and rain (paper-form) beside it
    assert extensions.coarse_of(sample.prepare(flux, ["haze"], prompts_dir=str(tmp_path))[0][0])[0] > 0  # the shipped


def test_a_mix_runs_at_one_t0(flux, prompts, random_tiny, tmp_path):
    names = [prompts["tiny-flux", "haze"], prompts["tiny-flux", "other"]]  # trained at 0.4 and 0.2
    with pytest.raises(media.InputError, match="different T0"):
        sample.prepare(flux, names)
    assert sample.prepare(flux, names, t0=0.3)[2] == 0.3
    src = tmp_path / "in.png"
    media.write_image(str(src), torch.rand(3, 16, 16))
    code, outp, err = run_here("sample.py", str(src), f"--tasks={','.join(names)}", "--t0=0.3", "--steps=3",
                               f"--backbone={random_tiny['tiny-flux']}", f"--out={tmp_path / 'o.png'}", "--progress=false")
    assert code == 0, err
    assert "(ebr, T0 0.3, 3 steps)" in outp


def test_sample_image_any_size_mixed(random_tiny, prompts, tmp_path):
    src = tmp_path / "in.jpg"
    media.write_image(str(src), torch.rand(3, 29, 37))
    tasks = f"{prompts['tiny-flux', 'haze']},{prompts['tiny-flux', 'rain']}"
    code, outp, err = run_here("sample.py", str(src), f"--tasks={tasks}", f"--backbone={random_tiny['tiny-flux']}",
                               "--steps=4", "--progress=false")
    assert code == 0, err
    dst = tmp_path / "in_restored_tiny-flux-haze+tiny-flux-rain.png"
    assert dst.is_file() and media.read_image(str(dst)).shape == (3, 29, 37)
    before = dst.read_bytes()
    code, outp, err = run_here("sample.py", str(src), f"--tasks={tasks}", f"--backbone={random_tiny['tiny-flux']}",
                               "--steps=4", "--progress=false", "--paper")
    assert code == 0, err  # the paper's method writes beside the default's output, not over it
    assert (tmp_path / "in_restored_tiny-flux-haze+tiny-flux-rain_paper.png").is_file() and dst.read_bytes() == before


def test_sample_says_when_the_decode_left_the_input_unchanged(random_tiny, prompts, tmp_path):
    # a floor above every change gives the input back, bit for bit, and sample.py says so
    src = tmp_path / "in.png"
    media.write_image(str(src), torch.rand(3, 24, 24))
    common = [str(src), f"--tasks={prompts['tiny-flux', 'haze']}", f"--backbone={random_tiny['tiny-flux']}",
              "--keep_detail=4", "--decoded_above=0", "--steps=3", "--progress=false"]
    code, outp, err = run_here("sample.py", *common, "--min_change=1", "--out=" + str(tmp_path / "same.png"))
    assert code == 0, err
    assert "unchanged" in outp
    assert torch.equal(media.read_image(str(tmp_path / "same.png")), media.read_image(str(src)))
    code, outp, err = run_here("sample.py", *common, "--min_change=0", "--out=" + str(tmp_path / "moved.png"))
    assert code == 0, err
    assert "unchanged" not in outp
    assert not torch.equal(media.read_image(str(tmp_path / "moved.png")), media.read_image(str(src)))


def test_sample_video_odd_frames_and_windows(random_tiny, prompts, tmp_path):
    for n in (2, 11):  # 2 frames: padded to 5 and trimmed; 11: two overlapping windows of 9 frames
        src = tmp_path / f"clip{n}.mp4"
        media.write_video(str(src), torch.rand(3, n, 24, 40), 10.0)
        dst = tmp_path / f"out{n}.mp4"
        code, _, err = run_here("sample.py", str(src), f"--tasks={prompts['tiny-wan', 'rain']}", "--steps=3",
                                f"--backbone={random_tiny['tiny-wan']}", f"--out={dst}", "--seed=3", "--progress=false")
        assert code == 0, err
        clip, fps = media.read_video(str(dst))
        assert clip.shape == (3, n, 24, 40) and fps == pytest.approx(10.0)


def test_long_clip_windows_are_clips_of_their_own(random_tiny, prompts):
    # a window is cut in pixel frames and encoded alone, so it starts on a single-frame latent as
    # every clip the backbone knows does: frames only the first window covers are exactly that
    # window restored as its own clip, and the last frames those of the last window
    bb = backbones.load(random_tiny["tiny-wan"])
    ps, b, t, decode = sample.prepare(bb, [prompts["tiny-wan", "rain"]])
    clip = torch.rand(3, 13, 16, 24, generator=torch.Generator().manual_seed(0))
    assert tiles.frame_windows(13, bb.window)[0] == [0, 4] and bb.window == 9
    run = dict(steps=4, progress=False)
    whole = sample.restore(bb, clip, ps, b, t, decode, **run)
    first, last = (sample.restore(bb, clip[:, o:o + 9], ps, b, t, decode, **run) for o in (0, 4))
    assert whole.shape == clip.shape
    assert torch.equal(whole[:, :4], first[:, :4]) and torch.equal(whole[:, 9:], last[:, 5:])
    overlap = whole[:, 4:9]  # blended: between the two windows' frames
    lo, hi = torch.minimum(first[:, 4:], last[:, :5]), torch.maximum(first[:, 4:], last[:, :5])
    assert (overlap >= lo - 1e-6).all() and (overlap <= hi + 1e-6).all()


def test_sample_folder_to_folder(random_tiny, prompts, tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(2):
        media.write_image(str(tmp_path / "in" / f"{i}.png"), torch.rand(3, 16, 16))
    code, _, err = run_here("sample.py", str(tmp_path / "in"), f"--tasks={prompts['tiny-flux', 'haze']}", "--steps=2",
                            f"--backbone={random_tiny['tiny-flux']}", f"--out={tmp_path / 'out'}", "--progress=false")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == [f"{i}_restored_tiny-flux-haze.png" for i in range(2)]


def test_seed_seeds_the_sampler(flux, prompts):
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    ps, br, t0, decode = sample.prepare(flux, [prompts["tiny-flux", "haze"]], paper=True)
    outs = [sample.restore(flux, x, ps, br, t0, decode, steps=3, seed=s, progress=False) for s in (1, 1, 2)]
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_tiled_velocity_blends_exactly():
    # a pointwise velocity gives the same answer tiled or whole (the blending weights sum to one),
    # and the mix is the mean of the prompts' velocities, all from one batched call per tile group
    f = lambda x, s: torch.stack([torch.sin(x) * s.reshape(-1, *[1] * (x.ndim - 1)), x**2])  # noqa: E731
    bb = types.SimpleNamespace(velocity=lambda x, s, calls: f(x, s)[:len(calls)])
    mean = lambda x, s: f(x, s).mean(0)  # noqa: E731
    x, s = torch.randn(2, 4, 20, 26), torch.tensor([0.3, 0.2])
    _, boxes, weight = tiles.layout(x.shape[2:], [8, 8])
    assert len(boxes) > 1
    assert torch.allclose(sample.velocity(bb, x, s, [None, None], boxes, weight, chunk=4), mean(x, s), atol=1e-6)
    clip = torch.randn(1, 4, 7, 8, 8)
    _, boxes, weight = tiles.layout(clip.shape[2:], [3, 8, 8])  # tiles along three dims
    assert torch.allclose(sample.velocity(bb, clip, s[:1], [None, None], boxes, weight), mean(clip, s[:1]), atol=1e-6)


def test_coarse_prompt_trains_and_restores_with_the_bare_velocity(random_tiny, train, tmp_path, monkeypatch):
    # train.py --coarse=W stores W in the prompt; the sampler then asks the backbone for the bare
    # velocity as well, in the same batched call, and uses v_bare + gain * lowpass(v_prompt - v_bare)
    code, outp, err = train(f"--backbone={random_tiny['tiny-flux']}", "--steps=2", "--val_every=2",
                            "--coarse=1.5", "--gain=2.5", f"--out={tmp_path}")
    assert code == 0, err
    assert "coarse 1.5 latent px, gain 2.5" in outp
    p = prompt_lib.load(str(tmp_path / "haze.safetensors"))
    assert extensions.coarse_of(p) == (1.5, 2.5)
    bb = backbones.load(random_tiny["tiny-flux"])
    seen, real = [], bb.velocity
    monkeypatch.setattr(bb, "velocity", lambda x, s, ps=(None,): (seen.append(list(ps)), real(x, s, ps))[1])
    y = torch.randn(1, *bb.latent_shape(32, 32), generator=torch.Generator().manual_seed(0))
    got = sample.sample_latents(bb, y, [p], "ebr", 0.2, steps=5, progress=False)
    assert all(len(c) == 2 and c[0] is p and c[1] is None for c in seen)
    eps = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    want = bridge.sample("ebr", lambda x, s: extensions.coarse(*real(x, s, [p, None]), 1.5, 2.5), y, eps, 0.2, steps=5)
    assert torch.allclose(got, want, atol=1e-5)


def test_keep_detail_adds_only_the_coarse_change_to_the_input(flux, prompts, monkeypatch):
    # with keep_detail the output is input + lowpass(decoded - the input's VAE round trip): a
    # sampler that changes nothing gives the input back exactly, where the paper's decode gives the
    # VAE's version of it; a change reaches the output low-passed
    ps, b, t, _ = sample.prepare(flux, [prompts["tiny-flux", "haze"]])
    x = torch.rand(3, 24, 40, generator=torch.Generator().manual_seed(0))
    shift = torch.zeros(1, *flux.latent_shape(24, 40)).index_fill_(1, torch.tensor([0]), 0.5)
    width = 2.0
    rec = sample.from_latents(flux, sample.to_latents(flux, x), x)
    for change, want_same in ((0.0, True), (1.0, False)):
        monkeypatch.setattr(sample, "sample_latents", lambda bb_, y, *a, **k: y + change * shift)
        plain = sample.restore(flux, x, ps, b, t, extensions.PAPER_DECODE)
        kept = sample.restore(flux, x, ps, b, t, (width, 0.0, 0.0))
        assert kept.shape == x.shape and not torch.allclose(plain, x, atol=1e-2)
        if want_same:
            assert torch.allclose(kept, x, atol=1e-6) and torch.allclose(plain, rec)
        else:
            want = (x + extensions.lowpass(plain - rec, width)).clamp(0, 1)
            assert torch.allclose(kept, want, atol=1e-6) and not torch.allclose(kept, x, atol=1e-3)


def test_gradient_checkpointing_trains_every_prompt_form_the_same(random_tiny, train, tmp_path):
    # the same losses with and without --grad_ckpt, for the paper's prompt and a coarse one
    for form in ("--paper", "--coarse=1.5"):
        logs = []
        for ckpt in ("--grad_ckpt=false", "--grad_ckpt"):
            out = tmp_path / f"{form}{ckpt}"
            code, outp, err = train(f"--backbone={random_tiny['tiny-flux']}", "--steps=2", "--val_every=2",
                                    form, ckpt, f"--out={out}")
            assert code == 0, err
            logs.append(torch.load(out / "haze.ckpt.pt", weights_only=True)["log"])
        assert logs[0] == pytest.approx(logs[1], rel=1e-5)


def test_cpu_bf16_restores_within_a_level_of_fp32():
    # sample.py's default on a CPU with AMX units: the shipped haze prompt, the output within a level
    if not backbones.AMX:
        assert not backbones.load("tiny-flux", device="cpu", cpu_bf16=True).cpu_bf16  # a no-op there
        pytest.skip("this CPU has no AMX units: --cpu_bf16 leaves the restore in fp32")
    x = media.read_image(os.path.join(os.path.dirname(__file__), "..", "examples", "haze.png"))[:, :128, :160]
    outs = []
    for fast in (False, True):
        bb = backbones.load("tiny-flux", device="cpu", cpu_bf16=fast)
        assert bb.cpu_bf16 == fast
        prompts, br, t0, decode = sample.prepare(bb, ["haze"])
        outs.append((sample.restore(bb, x, prompts, br, t0, decode, steps=4, progress=False) * 255).round())
    diff = (outs[0] - outs[1]).abs()
    assert 0 < diff.max() <= 2 and diff.mean() < 0.5, (diff.max(), diff.mean())
