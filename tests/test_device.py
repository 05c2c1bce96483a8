"""One device policy: latents, noise and the sampler's state live where the backbone computes.

A backbone built on the meta device is the stand-in: any tensor that leaves for the CPU on the
way (`.cpu()` cannot copy out of meta) or is made on the CPU and mixed in (meta and cpu do not
mix) raises. Every call of the backbone is also checked to get its inputs already on its device
(no copy per step). The real FLUX and Wan configs go through restore's shape logic at real size.
"""
import pytest
import torch
from torch.nn.attention import SDPBackend

import backbones
import bridge
import sample
import train
from plumbing import tiles
from conftest import transformer_inputs


def watched(bb):
    """Calls of bb.velocity, refusing inputs that are not already on the backbone's device."""
    calls, velocity = [], bb.velocity

    def checked(x, sigma, prompts=(None,), context=None):
        assert x.device == bb.device and sigma.device == bb.device, (x.device, sigma.device)
        calls.append(tuple(x.shape))
        return velocity(x, sigma, prompts, context)
    bb.velocity = checked
    return calls


FAST = dict(steps=3, progress=False)


@pytest.fixture(params=["tiny-flux", "tiny-wan"])
def meta_bb(request):
    return backbones.random_backbone(request.param, "meta")


def test_restore_keeps_everything_on_the_backbones_device(meta_bb):
    bb = meta_bb
    calls = watched(bb)
    p = bb.new_prompt(task="a")
    whole = (3, 9, 48, 64) if bb.video else (3, 48, 64)      # one tile / one window
    split = (3, 17, 40, 200) if bb.video else (3, 40, 200)   # several tiles (and two windows)
    for shape in (whole, split):
        calls.clear()
        x = torch.empty(shape, device="meta")
        y = sample.restore(bb, x, [p, p], "ebr", 0.4, **FAST)  # two prompts mixed
        assert y.shape == x.shape and y.device == x.device
        windows = len(tiles.frame_windows(shape[1], bb.window)[0]) if bb.video else 1
        assert len(calls) == 3 * windows and windows == (2 if bb.video and shape == split else 1)
    assert calls[0][0] > 1  # the last input went in tiles, batched in one call


def test_training_and_validation_stay_on_the_backbones_device(meta_bb, monkeypatch):
    bb = meta_bb
    calls = watched(bb)
    frames = bb.train_frames if bb.video else 1
    g = torch.Generator().manual_seed(0)
    px = (3, frames, 16, 16) if bb.video else (3, 16, 16)
    pairs = [(torch.rand(px, generator=g), torch.rand(px, generator=g)) for _ in range(3)]  # pixels on the CPU
    zd, zc = train.encode_pairs(bb, pairs, "encode")
    assert zd.device == bb.device and zd.shape[1:] == bb.latent_shape(16, 16, frames)
    p = bb.new_prompt(task="a")
    opt = torch.optim.AdamW(p.parameters(), lr=1e-3)
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    loss = train.train_step(bb, p, opt, train.cached(zd, zc, gens, 2, bb.device), gens, "ebr", 0.4)  # two of 2
    assert loss.device == bb.device and calls == [(2,) + zd.shape[1:]] * 2
    calls.clear()
    sampler = bridge.sample  # validation's sampler, on a grid of 3 (a meta forward is slow)
    monkeypatch.setattr(bridge, "sample", lambda *a, **k: sampler(*a, **dict(k, steps=3)))
    assert train.validate(bb, p, zd, 0, "ebr", 0.4, chunk=3).shape == (3,) + px
    assert calls == [tuple(zd.shape)] * 3
    row = sample.from_latents(bb, sample.to_latents(bb, pairs[0][1].to(bb.device)), pairs[0][1].to(bb.device))
    assert row.shape == px  # eval.py's VAE round-trip row


def on_meta(name):
    """The real architecture `name` with no weights, the shapes its transformer is called with (a list
    that grows), and restore(*size): one paper-form prompt's 2-step restore of an empty input of that size."""
    bb = backbones.random_backbone(name, "meta")
    seen, p = transformer_inputs(bb), bb.new_prompt(task="a")
    return bb, seen, lambda *size: sample.restore(bb, torch.empty(3, *size, device="meta"), [p], "ebr", 0.4,
                                                  steps=2, progress=False)


def test_real_flux_on_meta_packs_pads_and_tiles_at_real_size():
    bb, seen, restore = on_meta("flux")
    assert round(sum(q.numel() for q in bb.transformer.parameters()) / 1e9, 1) == 11.9
    assert bb.prompt_shape == (512, 3072, 57) and bb.tile == 512
    assert restore(512, 512).shape == (3, 512, 512)  # one tile: the whole input in one call
    tokens = (512 // 16) ** 2  # 8x VAE, then 2x2 latents per token
    assert seen[0]["hidden_states"] == (1, tokens, 64) and seen[0]["img_ids"] == (tokens, 3)
    assert seen[0]["encoder_hidden_states"] == (1, 512, 4096) and seen[0]["txt_ids"] == (512, 3)
    seen.clear()
    assert restore(1000, 1500).shape == (3, 1000, 1500)
    # padded to 1008 x 1504 px: latents 126 x 188 in tiles of 64 x 64 overlapping by at least 16:
    # 3 x 4 tiles, one batched call a step, the text context repeated for each tile
    assert [s["hidden_states"] for s in seen] == [(12, tokens, 64)] * 2
    assert seen[0]["encoder_hidden_states"] == (12, 512, 4096) and seen[0]["img_ids"] == (tokens, 3)


def test_real_wan_on_meta_pads_frames_and_windows_at_real_size():
    bb, seen, restore = on_meta("wan")
    assert round(sum(q.numel() for q in bb.transformer.parameters()) / 1e9, 3) == 1.419
    assert bb.prompt_shape == (226, 1536, 30) and bb.window == 33
    assert restore(33, 480, 832).shape == (3, 33, 480, 832)
    assert seen[0]["hidden_states"] == (2, 16, 9, 60, 60)  # 33 frames -> 9 latent frames, 8x space, two 480 px tiles
    seen.clear()
    assert restore(50, 480, 832).shape == (3, 50, 480, 832)  # two windows of 33 frames (0-32, 17-49), each 9 latent frames
    assert len(seen) == 2 * 2 and all(s["hidden_states"] == (2, 16, 9, 60, 60) for s in seen)


# ------------------------------------------------------------------------ attention kernels

def flags():
    c = torch.backends.cuda
    return dict(flash=c.flash_sdp_enabled(), efficient=c.mem_efficient_sdp_enabled(),
                math=c.math_sdp_enabled(), cudnn=c.cudnn_sdp_enabled())


@pytest.mark.parametrize("choice", ["math", "flash,efficient", "torch"])
def test_training_applies_the_chosen_attention_kernels(flux_bb, choice):
    outside = flags()
    p = flux_bb.new_prompt(task="a")
    seen = {}

    def note(when):
        seen.setdefault(when, flags())  # the hooks return None: they change nothing
    flux_bb.transformer.register_forward_pre_hook(lambda m, a, kw: note("forward"), with_kwargs=True)
    p.bank.register_hook(lambda grad: note("backward"))
    z = torch.randn(3, 16, 4, 4)
    kernels = train.attention_kernels(torch.device("cuda"), choice)  # what train.py passes on a GPU
    g = [torch.Generator().manual_seed(0)]
    train.train_step(flux_bb, p, torch.optim.AdamW(p.parameters()), train.cached(z, z, g, 2, flux_bb.device), g,
                     "ebr", 0.4, kernels)
    want = outside if choice == "torch" else {k: k in choice.split(",") for k in outside}
    assert seen == {"forward": want, "backward": want}
    assert flags() == outside  # and only inside the step


def test_attention_default_is_flash_and_efficient_on_cuda_only():
    assert train.attention == "auto"  # train.py's default
    assert train.attention_kernels(torch.device("cuda")) == [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    assert train.attention_kernels(torch.device("cpu")) is None  # torch's own choice
    assert train.attention_kernels(torch.device("cuda"), "torch") is None
    assert train.attention_kernels("cpu", "math") == [SDPBackend.MATH]  # asked for by name: on any device
    with pytest.raises(ValueError, match="--attention=cudnn,fast"):
        train.attention_kernels(torch.device("cuda"), "cudnn,fast")


# ------------------------------------------------------------------------ the VAE's precision

def test_vae_precision_policy():
    assert backbones.dtypes("cuda") == (torch.bfloat16, torch.bfloat16)
    assert backbones.dtypes("cpu") == (torch.float32, torch.float32)
    assert backbones.dtypes("cuda", "fp32") == (torch.bfloat16, torch.float32)
    with pytest.raises(ValueError, match="bf16 or fp32"):
        backbones.dtypes("cpu", "fp16")


@pytest.mark.catalogue
@pytest.mark.skipif(not backbones.os.path.isdir(backbones.TINY["tiny-flux"]), reason="shipped weights absent")
def test_bf16_vae_keeps_the_trained_tiny_vaes_output():
    # why bf16 is the GPU default: on the trained tiny VAE, bf16 loses at most a tenth of a dB
    # of what fp32 keeps (README); here on two held-out crops, with a margin
    import metrics
    from data import photos
    bb = backbones.load("tiny-flux", device="cpu")
    crops = [c for _, c in photos.eval_crops(64, 1)[:2]]  # two held-out photos, a crop each
    psnr = {}
    for dt in (torch.float32, torch.bfloat16):
        bb.vae.to(dt)
        psnr[dt] = [metrics.metrics(sample.from_latents(bb, sample.to_latents(bb, c), c), c)["psnr"] for c in crops]
    assert all(b > a - 0.5 for a, b in zip(psnr[torch.float32], psnr[torch.bfloat16])), psnr


def test_ranks_sharing_a_gpu_join_on_gloo(monkeypatch):
    from plumbing import ddp
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert ddp.backend(torch.device("cuda", 0)) == "gloo"  # nccl refuses two ranks on one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert ddp.backend(torch.device("cuda", 0)) == "nccl"
    assert ddp.backend(torch.device("cpu")) == "gloo"
