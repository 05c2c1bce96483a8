"""train.py, sample.py and eval.py end to end on tiny random backbones, and bad input."""
import os

import pytest
import torch
from safetensors.torch import load_file

import data
import sample
from conftest import run

TRAIN = ["train.py", "--task=haze", "--pool=6", "--val_pairs=2", "--batch=2", "--size=32"]


def test_train_writes_prompt_and_resume_continues_exactly(random_tiny, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    code, outp, err = run(*TRAIN, f"--backbone={random_tiny['tiny-flux']}", "--steps=4", "--val_every=2", f"--out={a}")
    assert code == 0, err
    assert "trainable numbers" in outp and "val PSNR" in outp
    assert (a / "haze.safetensors").is_file() and (a / "haze_val.png").is_file()
    code, _, err = run(*TRAIN, f"--backbone={random_tiny['tiny-flux']}", "--steps=2", "--val_every=2", f"--out={b}")
    assert code == 0, err
    code, outp, err = run(*TRAIN, f"--backbone={random_tiny['tiny-flux']}", "--steps=4", "--val_every=2",
                          f"--out={b}", "--resume")
    assert code == 0, err
    assert "resumed from" in outp
    pa, pb = load_file(a / "haze.safetensors"), load_file(b / "haze.safetensors")
    assert torch.equal(pa["bank"], pb["bank"]) and torch.equal(pa["gates"], pb["gates"])
    assert pa["gates"].abs().sum() > 0  # it did learn something
    ck_a = torch.load(a / "haze.ckpt.pt", weights_only=True)
    ck_b = torch.load(b / "haze.ckpt.pt", weights_only=True)
    assert ck_a["log"] == ck_b["log"]  # the same losses, step for step


def test_train_on_video_backbone(random_tiny, tmp_path):
    code, outp, err = run("train.py", "--task=rain", f"--backbone={random_tiny['tiny-wan']}", "--steps=2",
                          "--pool=2", "--val_pairs=1", "--batch=1", "--size=32", "--frames=5", f"--out={tmp_path}")
    assert code == 0, err
    assert "(3, 5, 32, 32) px" in outp
    import backbones
    import prompt as prompt_lib
    t0 = backbones.SIZES["tiny-wan"]["t0"]  # no --t0: the backbone's own start noise level
    assert f"T0 {t0}" in outp and prompt_lib.load(tmp_path / "rain.safetensors").meta["t0"] == str(t0)


@pytest.fixture(scope="module")
def prompts(random_tiny, tmp_path_factory):
    """Random non-zero prompts for both random tiny backbones, as files."""
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
    return out


def test_sample_image_any_size_mixed(random_tiny, prompts, tmp_path):
    src = tmp_path / "in.jpg"
    data.write_image(str(src), torch.rand(3, 29, 37))
    tasks = f"{prompts['tiny-flux', 'haze']},{prompts['tiny-flux', 'rain']}"
    code, outp, err = run("sample.py", str(src), f"--tasks={tasks}", f"--backbone={random_tiny['tiny-flux']}")
    assert code == 0, err
    dst = tmp_path / "in_restored_tiny-flux-haze+tiny-flux-rain.png"
    assert dst.is_file() and data.read_image(str(dst)).shape == (3, 29, 37)


def test_sample_says_when_the_decode_left_the_input_unchanged(random_tiny, prompts, tmp_path):
    # a floor above every change gives the input back, bit for bit, and sample.py says so
    src = tmp_path / "in.png"
    data.write_image(str(src), torch.rand(3, 24, 24))
    common = [str(src), f"--tasks={prompts['tiny-flux', 'haze']}", f"--backbone={random_tiny['tiny-flux']}",
              "--keep_detail=4", "--decoded_above=0"]
    code, outp, err = run("sample.py", *common, "--min_change=1", "--out=" + str(tmp_path / "same.png"))
    assert code == 0, err
    assert "unchanged" in outp
    assert torch.equal(data.read_image(str(tmp_path / "same.png")), data.read_image(str(src)))
    code, outp, err = run("sample.py", *common, "--min_change=0", "--out=" + str(tmp_path / "moved.png"))
    assert code == 0, err
    assert "unchanged" not in outp
    assert not torch.equal(data.read_image(str(tmp_path / "moved.png")), data.read_image(str(src)))


def test_sample_video_odd_frames_and_windows(random_tiny, prompts, tmp_path):
    for n in (2, 11):  # 2 frames: padded to 5 and trimmed; 11: two overlapping windows of 9 frames
        src = tmp_path / f"clip{n}.mp4"
        data.write_video(str(src), torch.rand(3, n, 24, 40), 10.0)
        dst = tmp_path / f"out{n}.mp4"
        code, _, err = run("sample.py", str(src), f"--tasks={prompts['tiny-wan', 'rain']}",
                           f"--backbone={random_tiny['tiny-wan']}", f"--out={dst}", "--seed=3")
        assert code == 0, err
        clip, fps = data.read_video(str(dst))
        assert clip.shape == (3, n, 24, 40) and fps == pytest.approx(10.0)


def test_long_clip_windows_are_clips_of_their_own(random_tiny, prompts, monkeypatch):
    # a window is cut in pixel frames and encoded alone, so it starts on a single-frame latent as
    # every clip the backbone knows does: frames only the first window covers are exactly that
    # window restored as its own clip, and the last frames those of the last window
    import backbones
    monkeypatch.setattr(sample, "progress", False)
    bb = backbones.load(random_tiny["tiny-wan"])
    ps, b, t = sample.prepare(bb, [prompts["tiny-wan", "rain"]])
    clip = torch.rand(3, 13, 16, 24, generator=torch.Generator().manual_seed(0))
    assert sample.frame_windows(13, bb.window) == [0, 4] and bb.window == 9
    whole = sample.restore(bb, clip, ps, b, t)
    first, last = (sample.restore(bb, clip[:, o:o + 9], ps, b, t) for o in (0, 4))
    assert whole.shape == clip.shape
    assert torch.equal(whole[:, :4], first[:, :4]) and torch.equal(whole[:, 9:], last[:, 5:])
    overlap = whole[:, 4:9]  # blended: between the two windows' frames
    lo, hi = torch.minimum(first[:, 4:], last[:, :5]), torch.maximum(first[:, 4:], last[:, :5])
    assert (overlap >= lo - 1e-6).all() and (overlap <= hi + 1e-6).all()


def test_sample_folder_to_folder(random_tiny, prompts, tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(2):
        data.write_image(str(tmp_path / "in" / f"{i}.png"), torch.rand(3, 16, 16))
    code, _, err = run("sample.py", str(tmp_path / "in"), f"--tasks={prompts['tiny-flux', 'haze']}",
                       f"--backbone={random_tiny['tiny-flux']}", f"--out={tmp_path / 'out'}")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == [f"{i}_restored_tiny-flux-haze.png" for i in range(2)]


def test_seed_seeds_the_sampler(random_tiny, prompts, tmp_path):
    src = tmp_path / "in.png"
    data.write_image(str(src), torch.rand(3, 16, 16))
    outs = []
    for i, s in enumerate((1, 1, 2)):
        dst = tmp_path / f"o{i}.png"
        code, _, err = run("sample.py", str(src), f"--tasks={prompts['tiny-flux', 'haze']}",
                           f"--backbone={random_tiny['tiny-flux']}", f"--out={dst}", f"--seed={s}")
        assert code == 0, err
        outs.append(data.read_image(str(dst)))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_tiled_velocity_blends_exactly():
    # a pointwise velocity gives the same answer tiled or whole: the blending weights sum to one
    f = lambda x, s: torch.stack([torch.sin(x) * s.reshape(-1, *[1] * (x.ndim - 1)), x**2])  # noqa: E731
    x, s = torch.randn(2, 4, 20, 26), torch.tensor([0.3, 0.2])
    v = sample.tiled(f, x.shape, [8, 8], k=2)
    assert v is not f and torch.allclose(v(x, s), f(x, s), atol=1e-6)
    clip = torch.randn(1, 4, 7, 8, 8)
    v = sample.tiled(f, clip.shape, [3, 8, 8], k=2)  # tiles along three dims
    assert torch.allclose(v(clip, s[:1]), f(clip, s[:1]), atol=1e-6)


def bad(args, tmp_path, match):
    before = set(os.listdir(tmp_path))
    code, outp, err = run(*args)
    assert code == 2, (outp, err)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], err
    assert "Traceback" not in err
    assert set(os.listdir(tmp_path)) == before  # nothing half-written


def test_bad_inputs_get_one_line_errors(random_tiny, prompts, tmp_path):
    bbf = f"--backbone={random_tiny['tiny-flux']}"
    haze = f"--tasks={prompts['tiny-flux', 'haze']}"
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    data.write_image(str(tmp_path / "ok.png"), torch.rand(3, 16, 16))
    data.write_image(str(tmp_path / "tiny.png"), torch.rand(3, 3, 5))
    bad(["sample.py", str(tmp_path / "empty.png"), haze, bbf], tmp_path, "empty")
    bad(["sample.py", str(tmp_path / "junk.png"), haze, bbf], tmp_path, "not a readable image")
    bad(["sample.py", str(tmp_path / "junk.mp4"), f"--tasks={prompts['tiny-wan', 'haze']}",
         f"--backbone={random_tiny['tiny-wan']}"], tmp_path, "not a readable video")
    bad(["sample.py", str(tmp_path / "tiny.png"), haze, bbf], tmp_path, "too small")
    bad(["sample.py", str(tmp_path / "ok.png"), "--tasks=fog", bbf], tmp_path, "unknown task 'fog'")
    bad(["sample.py", str(tmp_path / "ok.png"), f"--tasks={prompts['tiny-wan', 'haze']}", bbf], tmp_path,
        "was made for")
    bad(["sample.py", str(tmp_path / "ok.png"), haze, bbf, f"--out={tmp_path / 'ok.png'}"], tmp_path,
        "would overwrite the input")
    bad(["sample.py", str(tmp_path / "missing.png"), haze, bbf], tmp_path, "no such file")
    bad(["sample.py", str(tmp_path / "ok.png"), haze, "--backbone=/nowhere"], tmp_path, "not a name")
    bad(["train.py", "--task=fog", bbf, "--steps=1", f"--out={tmp_path / 'ok.png'}"], tmp_path, "unknown task")
    bad(["train.py", "--bridge=ddim", bbf], tmp_path, "unknown bridge")
    bad(["train.py", "--stepz=3"], tmp_path, "unknown option --stepz")
    bad(["train.py", "--attention=fast", bbf], tmp_path, "--attention=fast")
    bad(["train.py", "--gain=-2", bbf], tmp_path, "--gain=-2.0 must be positive")
    bad(["sample.py", str(tmp_path / "ok.png"), haze, bbf, "--vae_dtype=fp16"], tmp_path, "bf16 or fp32")


def test_coarse_prompt_trains_and_restores_with_the_bare_velocity(random_tiny, tmp_path, monkeypatch):
    # train.py --coarse=W stores W in the prompt; sample.py then asks the backbone for the bare
    # velocity as well, in the same batched call, and uses v_bare + gain * lowpass(v_prompt - v_bare)
    import backbones
    import bridge
    import prompt as prompt_lib
    code, outp, err = run(*TRAIN, f"--backbone={random_tiny['tiny-flux']}", "--steps=2", "--val_every=2",
                          "--coarse=1.5", "--gain=2.5", f"--out={tmp_path}")
    assert code == 0, err
    assert "coarse 1.5 latent px, gain 2.5" in outp
    p = prompt_lib.load(str(tmp_path / "haze.safetensors"))
    assert p.coarse == (1.5, 2.5)
    bb = backbones.load(random_tiny["tiny-flux"])
    monkeypatch.setattr(sample, "progress", False)
    seen, real = [], bb.velocity
    monkeypatch.setattr(bb, "velocity", lambda x, s, ps=(None,): (seen.append(list(ps)), real(x, s, ps))[1])
    y = torch.randn(1, *bb.latent_shape(32, 32), generator=torch.Generator().manual_seed(0))
    got = sample.sample_latents(bb, y, [p], "ebr", 0.2)
    assert all(len(c) == 2 and c[0] is p and c[1] is None for c in seen)
    eps = torch.randn(y.shape, generator=torch.Generator().manual_seed(sample.seed))
    want = bridge.sample("ebr", lambda x, s: bridge.coarse(*real(x, s, [p, None]), 1.5, 2.5), y, eps, 0.2)
    assert torch.allclose(got, want, atol=1e-5)


def test_keep_detail_adds_only_the_coarse_change_to_the_input(random_tiny, prompts, monkeypatch):
    # with keep_detail the output is input + lowpass(decoded - the input's VAE round trip): a
    # sampler that changes nothing gives the input back exactly, where the plain decode gives the
    # VAE's version of it; a change reaches the output low-passed
    import backbones
    import bridge
    bb = backbones.load(random_tiny["tiny-flux"])
    assert bb.keep_detail == backbones.SIZES["tiny-flux"]["keep_detail"] > 0
    assert backbones.load(random_tiny["tiny-wan"]).keep_detail == 0
    ps, b, t = sample.prepare(bb, [prompts["tiny-flux", "haze"]])
    x = torch.rand(3, 24, 40, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(sample, "progress", False)
    shift = torch.zeros(1, *bb.latent_shape(24, 40)).index_fill_(1, torch.tensor([0]), 0.5)
    for change, want_same in ((0.0, True), (1.0, False)):
        monkeypatch.setattr(sample, "sample_latents", lambda bb_, y, *a, **k: y + change * shift)
        monkeypatch.setattr(sample, "keep_detail", 0.0)
        plain = sample.restore(bb, x, ps, b, t)
        monkeypatch.setattr(sample, "keep_detail", -1.0)  # the backbone's: 2 px
        kept = sample.restore(bb, x, ps, b, t)
        rec = sample.from_latents(bb, sample.to_latents(bb, x), x)
        assert kept.shape == x.shape and not torch.allclose(plain, x, atol=1e-2)
        if want_same:
            assert torch.allclose(kept, x, atol=1e-6) and torch.allclose(plain, rec)
        else:
            want = (x + bridge.lowpass(plain - rec, bb.keep_detail)).clamp(0, 1)
            assert torch.allclose(kept, want, atol=1e-6) and not torch.allclose(kept, x, atol=1e-3)
    # a prompt's own choice (eval.py --choose_detail) wins over the backbone's, --keep_detail over both
    ps[0].meta["keep_detail"] = "0"
    assert torch.equal(sample.restore(bb, x, ps, b, t), plain)
    monkeypatch.setattr(sample, "keep_detail", float(bb.keep_detail))
    monkeypatch.setattr(sample, "decoded_above", 0.0)
    assert torch.equal(sample.restore(bb, x, ps, b, t), kept)


def test_decode_settings_resolution(random_tiny, monkeypatch):
    # explicit options > each prompt's own > the backbone's; mixed prompts take the smallest of each
    import backbones
    import prompt as prompt_lib
    bb = backbones.load(random_tiny["tiny-flux"])
    own = prompt_lib.Prompt(2, 4, 1, keep_detail=4, decoded_above=0.2, min_change=0.01)
    none = prompt_lib.Prompt(2, 4, 1)
    assert own.decode == (4.0, 0.2, 0.01) and none.decode == (None, None, None)
    d = (bb.keep_detail, 0.0, 0.0)
    assert sample.decode_settings(bb) == sample.decode_settings(bb, [none]) == sample.decode_settings(bb, [None]) == d
    assert sample.decode_settings(bb, [own]) == (4.0, 0.2, 0.01)
    assert sample.decode_settings(bb, [own, none]) == (min(4.0, bb.keep_detail), 0.2, 0.0)
    other = prompt_lib.Prompt(2, 4, 1, keep_detail=0, decoded_above=0.1, min_change=0.004)
    assert sample.decode_settings(bb, [own, other]) == (0.0, 0.1, 0.004)
    monkeypatch.setattr(sample, "keep_detail", 1.0)
    monkeypatch.setattr(sample, "decoded_above", 0.0)
    assert sample.decode_settings(bb, [own]) == (1.0, 0.0, 0.01)
    monkeypatch.setattr(sample, "min_change", 0.0)
    assert sample.decode_settings(bb, [own]) == (1.0, 0.0, 0.0)


def test_min_change_leaves_out_small_changes_and_shrinks_large_ones():
    # a change below the floor (a drift of a grey level where there was nothing to restore) is
    # left out, so the input comes back exactly; a larger one passes nearly whole (a garrote)
    x = torch.full((3, 32, 32), 0.5)
    base = x.clone()
    decoded = x.clone()
    decoded[:, :, :16] += 0.003  # a drift below the floor
    decoded[:, :, 16:] += 0.2  # a restoration
    out = sample.kept(x, decoded, base, 1.0, 0.0, 0.01)
    assert torch.equal(out[:, :, :8], x[:, :, :8])
    assert torch.allclose(out[:, :, 24:], x[:, :, 24:] + 0.2 - 0.01**2 / 0.2, atol=1e-5)
    decoded[:, :, 16:] -= 0.4  # the same for a change downwards
    assert torch.allclose(sample.kept(x, decoded, base, 1.0, 0.0, 0.01)[:, :, 24:], x[:, :, 24:] - 0.2 + 0.01**2 / 0.2, atol=1e-5)
    assert torch.equal(sample.kept(x, decoded, base, 1.0, 0.0, 0.0), sample.kept(x, decoded, base, 1.0))
    assert not torch.equal(sample.kept(x, decoded, base, 1.0, 0.0, 0.0)[:, :, :8], x[:, :, :8])
    assert torch.equal(sample.kept(x, decoded, base, 0.0, 0.0, 0.01), decoded)  # the plain decode has no floor


def test_decoded_above_fades_to_the_decode_where_the_change_is_large():
    # where the change (decoded - base) is large the output is the decoded latent, where there is
    # none it is the input: a removed streak does not come back with the input's detail
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    base = x.clone()
    decoded = x.clone()
    decoded[:, :, 20:] = 0.0  # a large change on the right
    out = sample.kept(x, decoded, base, 2.0, 0.05)
    assert torch.allclose(out[:, :, :8], x[:, :, :8], atol=1e-6)  # nothing changed there
    assert torch.allclose(out[:, :, 26:], decoded[:, :, 26:], atol=1e-6)  # changed a lot: the decode
    assert torch.equal(sample.kept(x, decoded, base, 2.0, 0.0), sample.kept(x, decoded, base, 2.0))
    assert torch.equal(sample.kept(x, decoded, base, 0.0, 0.05), decoded)
