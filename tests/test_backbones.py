"""The loaders on local folders of tiny random models, encode/decode, timestep conventions."""
import json

import pytest
import torch
from transformers import ByT5Tokenizer, T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

import backbones
from conftest import tiny_flux_parts, tiny_wan_parts


def save_folder(path, kind):
    tf, vae = tiny_flux_parts() if kind == "flux" else tiny_wan_parts()
    tok = ByT5Tokenizer(model_max_length=8)
    cfg = dict(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    enc = (T5EncoderModel(T5Config(**cfg)) if kind == "flux" else UMT5EncoderModel(UMT5Config(**cfg))).eval()
    sub = "_2" if kind == "flux" else ""
    tf.save_pretrained(path / "transformer")
    vae.save_pretrained(path / "vae")
    enc.save_pretrained(path / f"text_encoder{sub}")
    tok.save_pretrained(path / f"tokenizer{sub}")
    return enc, tok


def test_flux_folder_loads_with_null_context(tmp_path):
    enc, tok = save_folder(tmp_path, "flux")
    bb = backbones.load(str(tmp_path), device="cpu")
    assert isinstance(bb, backbones.FluxBackbone) and not bb.video
    assert bb.kind == "flux" and bb.tile == backbones.SETTINGS["flux"]["tile"]  # a folder of FLUX's kind
    assert bb.prompt_shape == (8, 32, 2) and bb.multiple == 4
    ids = tok([""], padding="max_length", max_length=8, return_tensors="pt").input_ids
    with torch.no_grad():
        want = enc(ids).last_hidden_state  # FLUX keeps the pad tokens' states
    assert torch.allclose(bb.context, want, atol=1e-6)
    assert torch.allclose(bb.pooled, want[:, :1].mean(1), atol=1e-6)  # "" is one real token (EOS)
    x = torch.rand(1, 3, 16, 24) * 2 - 1
    z = bb.encode(x)
    assert z.shape == (1, 16, 8, 12) and bb.decode(z).shape == x.shape
    v = bb.velocity(z, torch.tensor([0.25]))
    assert v.shape == (1, *z.shape) and torch.isfinite(v).all()


def test_wan_folder_loads_with_zero_padded_null_context(tmp_path):
    save_folder(tmp_path, "wan")
    bb = backbones.load(str(tmp_path), device="cpu")
    assert isinstance(bb, backbones.WanBackbone) and bb.video
    assert bb.kind == "wan" and bb.window == backbones.SETTINGS["wan"]["window"]
    assert bb.context.shape == (1, 8, 32)
    assert bb.context[0, 1:].abs().max() == 0 and bb.context[0, 0].abs().max() > 0  # cut, zero-padded
    assert bb.frames_ok(9) and bb.frames_ok(1) and not bb.frames_ok(8)
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    z = bb.encode(x)
    assert z.shape == (1, 16, 2, 2, 2) and bb.decode(z).shape == x.shape


def test_kind_and_its_settings(random_tiny):
    # a folder pretrain.py wrote (it has pretrain.json) is of a tiny kind, with that kind's settings;
    # the architectures built from their configs say their own kind
    for kind, folder in random_tiny.items():
        bb = backbones.load(folder, device="cpu")
        assert bb.kind == kind and bb.name == kind
        assert {k: getattr(bb, k) for k in backbones.SETTINGS[kind]} == backbones.SETTINGS[kind]
    for kind in ("flux", "wan", "tiny-flux", "tiny-wan"):
        bb = backbones.random_backbone(kind, "meta")
        assert bb.kind == kind and {k: getattr(bb, k) for k in backbones.SETTINGS[kind]} == backbones.SETTINGS[kind]
    with pytest.raises(ValueError, match="unknown architecture 'sdxl'"):
        backbones.random_backbone("sdxl", "meta")


def test_packed_call_packs_unpacks_and_gives_ids():
    seen = {}

    def tf(**kw):  # an identity transformer: what it is given comes back
        seen.update(kw)
        return (kw["hidden_states"],)
    z = torch.randn(2, 16, 6, 8)
    out = backbones.FluxBackbone.packed_call(tf, z, torch.ones(2), torch.zeros(1, 5, 4), None)
    assert seen["hidden_states"].shape == (2, 12, 64) and torch.equal(out, z)  # 2x2 patches as tokens, and back
    assert seen["img_ids"].shape == (12, 3) and seen["img_ids"][5].tolist() == [0, 1, 1]  # token 5: row 1, column 1
    assert seen["txt_ids"].shape == (5, 3) and not seen["txt_ids"].any()


def seen_timesteps(bb, x, sigma):
    seen = []
    h = bb.transformer.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["timestep"].clone()), with_kwargs=True)
    bb.velocity(x, sigma)
    h.remove()
    return seen[0].tolist()


def test_timestep_conventions(flux_bb, wan_bb):
    # FLUX: 1000 t on the grid 1000..1, divided by 1000 (the transformer multiplies by 1000)
    assert seen_timesteps(flux_bb, torch.randn(2, 16, 4, 4), torch.tensor([0.40004, 0.0])) \
        == pytest.approx([0.4, 0.001])
    # Wan: the raw integer timestep in [0, 1000)
    assert seen_timesteps(wan_bb, torch.randn(2, 16, 1, 4, 4), torch.tensor([0.4, 1.0])) == [400, 999]


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not a name"):
        backbones.load(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="not a diffusers model folder"):
        backbones.load(str(tmp_path))
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="neither FLUX nor Wan"):
        backbones.load(str(tmp_path))


def test_hub_load_offline_says_what_to_pass(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    with pytest.raises(RuntimeError, match="pass its local folder"):
        backbones.load("flux", device="cpu")


@pytest.mark.parametrize("kind", ["flux", "wan"])
def test_text_contexts_and_token_space_gradients(tmp_path, kind):
    save_folder(tmp_path, kind)
    bb = backbones.load(str(tmp_path), device="cpu", keep_text_encoder=True)
    null = bb.encode_text([""])
    assert torch.allclose(null["context"], bb.context, atol=1e-6)
    other = bb.encode_text(["remove the haze"])
    assert not torch.allclose(other["context"], bb.context)
    # token-space prompting: embeddings at the encoder's input, gradients through the frozen encoder
    tok, enc, length = bb.text
    ids = tok(["remove the haze"], padding="max_length", max_length=length, return_tensors="pt").input_ids
    U = enc.get_input_embeddings()(ids).detach().requires_grad_(True)
    x = torch.randn(1, 16, 1, 4, 4) if bb.video else torch.randn(1, 16, 4, 4)
    bb.velocity(x, torch.tensor([0.3]), context=bb.encode_text(embeds=U))[0].square().mean().backward()
    assert U.grad is not None and U.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())
