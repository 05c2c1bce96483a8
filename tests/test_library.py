"""backbones.py against diffusers' own pipelines, on tiny random configs of the real classes: with
a zero-gate prompt one velocity call is the transformer called as FluxPipeline / WanPipeline call
it (guidance 1, the conditional call only, sigma on the 1/1000 grid), and the VAE normalization
round-trips as the pipelines decode."""
import torch
from diffusers import FluxPipeline

import backbones


def test_flux_velocity_is_the_pipelines_transformer_call(flux_bb):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 8, 12, generator=g)  # [B, C, H, W] latents of a 64 x 96 image
    sigma = torch.tensor([0.7, 0.2534])
    p = flux_bb.new_prompt(task="zero")  # gates at zero: the bare backbone
    got = flux_bb.velocity(x, sigma, [p])[0]
    b, c, h, w = x.shape
    packed = FluxPipeline._pack_latents(x, b, c, h, w)
    ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, x.device, x.dtype)
    t = (sigma * 1000).round()  # the pipeline's timesteps are sigmas x 1000
    guidance = torch.full([b], 1.0) if flux_bb.transformer.config.guidance_embeds else None
    out = flux_bb.transformer(hidden_states=packed, timestep=t / 1000, guidance=guidance,
                              pooled_projections=flux_bb.pooled.expand(b, -1),
                              encoder_hidden_states=flux_bb.context.expand(b, -1, -1),
                              txt_ids=torch.zeros(flux_bb.context.shape[1], 3), img_ids=ids, return_dict=False)[0]
    want = FluxPipeline._unpack_latents(out, h * 8, w * 8, 8)  # a VAE scale of 8 px per latent
    assert torch.allclose(got, want, atol=1e-5)


def test_wan_velocity_is_the_pipelines_transformer_call(wan_bb):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 3, 8, 8, generator=g)
    sigma = torch.tensor([0.7, 0.2534])
    got = wan_bb.velocity(x, sigma, [wan_bb.new_prompt(task="zero")])[0]
    want = wan_bb.transformer(hidden_states=x, timestep=(sigma * 1000).round(),
                              encoder_hidden_states=wan_bb.context.expand(2, -1, -1), return_dict=False)[0]
    assert torch.allclose(got, want, atol=1e-5)


def test_vae_normalization_round_trips_as_the_pipelines_decode(flux_bb, wan_bb):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    z = flux_bb.encode(img)
    cfg = flux_bb.vae.config
    raw = flux_bb.vae.encode(img).latent_dist.mode()
    assert torch.allclose(z, (raw - cfg.shift_factor) * cfg.scaling_factor, atol=1e-6)
    want = flux_bb.vae.decode(z / cfg.scaling_factor + cfg.shift_factor, return_dict=False)[0]  # FluxPipeline's decode
    assert torch.allclose(flux_bb.decode(z), want, atol=1e-5)
    clip = torch.rand(1, 3, 5, 32, 32, generator=g) * 2 - 1
    z = wan_bb.encode(clip)
    cfg = wan_bb.vae.config
    mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)
    assert torch.allclose(z, (wan_bb.vae.encode(clip).latent_dist.mode() - mean) * inv_std, atol=1e-5)
    want = wan_bb.vae.decode(z / inv_std + mean, return_dict=False)[0]  # WanPipeline's decode
    assert torch.allclose(wan_bb.decode(z), want, atol=1e-5)


def test_random_backbone_keeps_each_class_fp32_modules():
    bb = backbones.random_backbone("wan", "meta", dtype=torch.bfloat16)
    kept = bb.transformer._keep_in_fp32_modules
    dtypes = {n: q.dtype for n, q in bb.transformer.named_parameters()}
    assert any(dt == torch.float32 for dt in dtypes.values()) and any(dt == torch.bfloat16 for dt in dtypes.values())
    for n, dt in dtypes.items():
        assert (dt == torch.float32) == any(k in n.split(".") for k in kept), n
