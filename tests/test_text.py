"""Text conditioning of a FLUX folder with both of its text encoders: CLIP gives the pooled vector
(its width differs from T5's, as in FLUX.1-dev: 768 against 4096), T5 the context."""
import json

import pytest
import torch
from transformers import ByT5Tokenizer, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

import backbones
from conftest import tiny_flux_parts


def clip_tokenizer(folder):
    """A CLIP tokenizer from a vocabulary of single letters (no download)."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {t: i for i, t in enumerate(["!"] + letters + [f"{c}</w>" for c in letters]
                                       + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


@pytest.fixture(scope="module")
def flux_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux")
    tf, vae = tiny_flux_parts()  # T5 width 32 (joint_attention_dim); the pooled projection is 32 wide too
    cfg = dict(tf.config)
    cfg["pooled_projection_dim"] = 24  # CLIP's width, not T5's
    tf = type(tf).from_config(cfg)
    tf.save_pretrained(root / "transformer")
    vae.save_pretrained(root / "vae")
    torch.manual_seed(0)
    CLIPTextModel(CLIPTextConfig(vocab_size=55, hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=77, eos_token_id=54)
                  ).save_pretrained(root / "text_encoder")
    (root / "tokenizer").mkdir()
    clip_tokenizer(root / "tokenizer").save_pretrained(root / "tokenizer")
    T5EncoderModel(T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2)
                   ).save_pretrained(root / "text_encoder_2")
    ByT5Tokenizer(model_max_length=16).save_pretrained(root / "tokenizer_2")
    return str(root)


def test_flux_pooled_vector_is_clips_and_text_conditions_the_velocity(flux_folder):
    bb = backbones.load(flux_folder, device="cpu", keep_text_encoder=True)
    assert bb.kind == "flux" and bb.pooled.shape == (1, 24) and bb.context.shape[-1] == 32
    clip_tok, clip = bb.clip
    ids = clip_tok([""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert torch.allclose(bb.pooled, clip(ids).pooler_output)  # the null text's pooled vector
    x, s = torch.randn(1, 16, 8, 8), torch.full((1,), 0.5)
    ctx = bb.encode_text(["remove the haze"])
    assert ctx["pooled"].shape == (1, 24)
    v_text, v_null = bb.velocity(x, s, context=ctx)[0], bb.velocity(x, s)[0]
    assert v_text.shape == x.shape and not torch.allclose(v_text, v_null)
    # token-space prompting: T5's input embeddings, CLIP's null pooled vector
    embeds = bb.text[1].get_input_embeddings()(torch.zeros(1, 16, dtype=torch.long))
    ctx = bb.encode_text(embeds=embeds)
    assert torch.allclose(ctx["pooled"], bb.pooled) and bb.velocity(x, s, context=ctx).shape == (1, *x.shape)


def test_text_encoders_are_freed_unless_kept(flux_folder):
    bb = backbones.load(flux_folder, device="cpu")
    assert bb.text is None and bb.clip is None and bb.pooled.shape == (1, 24)
    with pytest.raises(RuntimeError, match="keep_text_encoder"):
        bb.encode_text(["x"])
