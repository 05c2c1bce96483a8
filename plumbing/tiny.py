"""The tiny default backbones: the same diffusers classes as FLUX.1-dev and Wan 2.1, small
enough to pre-train on 2 CPU cores (pretrain.py) and to ship in the repo (weights/).

tiny-flux: AutoencoderKL (16 latent channels, 4x) + FluxTransformer2DModel (2 double-stream and
           6 single-stream blocks, 4 heads x 32) + a T5 encoder with the ByT5 tokenizer.
tiny-shapes: the FLUX classes again, smaller (2 double + 4 single blocks, a VAE of half the width), for the
           shapes world (shapes.py); its T5 encoder is trained with the prior on the world's captions,
           so that words mean something to it (the photo backbones' encoders are random). Its
           tokenizer has one token per word, as T5's own vocabulary has for common words: a 2-layer
           encoder over bytes learned to read the captions too slowly for a CPU (docs/shapes.md).
tiny-wan:  AutoencoderKLWan (48 channels, 4x space, 4x time) + WanTransformer3DModel (6 blocks,
           4 heads x 32) + a UMT5 encoder with the ByT5 tokenizer.
           48 latent channels (as Wan 2.2's VAE), not Wan 2.1's 16: 4 frames x 4 x 4 px x 3 colours
           into 16 numbers is 12x compression, too much for a VAE this small (docs/tiny.md).
The photo backbones' text encoders are random and frozen: a caption still gives its own context, which is all the
conditioning pathway needs (ByT5 needs no vocabulary file, so nothing is downloaded).
The tiny FLUX has no CLIP: its pooled vector is the mean of the T5 states (backbones.t5_context).
"""
import copy

import torch
from diffusers import AutoencoderKL, AutoencoderKLWan, FluxTransformer2DModel, WanTransformer3DModel
from transformers import ByT5Tokenizer, T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

TEXT_LEN = 32  # text tokens (bytes) of the tiny models' context: the prompt has this many tokens
TEXT = dict(vocab_size=384, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)

FLUX_VAE = dict(block_out_channels=[32, 64, 64], down_block_types=["DownEncoderBlock2D"] * 3,
                up_block_types=["UpDecoderBlock2D"] * 3, layers_per_block=1, latent_channels=16,
                norm_num_groups=8, mid_block_add_attention=False)  # 8 groups: 32 would be per-channel
                # (instance) norm in the first block, which costs the decoder its colours
FLUX_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=6, attention_head_dim=32,
                        num_attention_heads=4, joint_attention_dim=64, pooled_projection_dim=64,
                        guidance_embeds=False, axes_dims_rope=[8, 12, 12])
SHAPES_TEXT_LEN = 24  # words (a caption has 4 and the end token; an instruction more; FLUX pads its context too)
# the shapes world's words, and those of the instructions the notebooks try; a word never seen in
# pre-training keeps its random embedding, as an unseen byte sequence would
WORDS = ("red green blue yellow purple orange white black cyan pink circle square triangle ring and on "
         "remove the haze rain snow dark low light blur noise from this image photo and make it clear "
         "clean sharp bright restore a an of").split()
SHAPES_VAE = dict(FLUX_VAE, block_out_channels=[16, 32, 32, 32], down_block_types=["DownEncoderBlock2D"] * 4,
                  up_block_types=["UpDecoderBlock2D"] * 4)  # flat shapes: a quarter of the width, 8x: 4 x 4 tokens
SHAPES_TRANSFORMER = dict(FLUX_TRANSFORMER, num_single_layers=4)
WAN_VAE = dict(base_dim=16, z_dim=48, dim_mult=[1, 2, 2], num_res_blocks=1, temperal_downsample=[True, True],
               scale_factor_spatial=4, scale_factor_temporal=4,
               latents_mean=[0.0] * 48, latents_std=[1.0] * 48)  # pretrain.py sets the measured ones
WAN_TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32, in_channels=48,
                       out_channels=48, text_dim=64, freq_dim=64, ffn_dim=384, num_layers=6,
                       cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64)


# each tiny backbone: (transformer config, VAE config, text tokens); all FLUX classes but tiny-wan's
ARCH = {"tiny-flux": (FLUX_TRANSFORMER, FLUX_VAE, TEXT_LEN), "tiny-shapes": (SHAPES_TRANSFORMER, SHAPES_VAE, SHAPES_TEXT_LEN),
        "tiny-wan": (WAN_TRANSFORMER, WAN_VAE, TEXT_LEN)}


def word_tokenizer(length=SHAPES_TEXT_LEN):
    """A T5-style tokenizer with one token per word of WORDS (pad 0, end 1, unknown 2), made here
    with the tokenizers library: nothing to download, and it saves and loads as any tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=length)


def build(kind, seed=0):
    """Fresh (random) parts of a tiny backbone: dict of transformer, vae, text_encoder, tokenizer."""
    if kind not in ARCH:
        raise ValueError(f"unknown tiny backbone {kind!r}")
    torch.manual_seed(seed)
    tf, vae, length = ARCH[kind]
    tok = ByT5Tokenizer(model_max_length=length)
    if kind == "tiny-wan":
        return dict(transformer=WanTransformer3DModel(**tf), vae=AutoencoderKLWan(**vae),
                    text_encoder=UMT5EncoderModel(UMT5Config(**TEXT)).eval(), tokenizer=tok)
    if kind == "tiny-shapes":
        tok = word_tokenizer(length)
    return dict(transformer=FluxTransformer2DModel(**tf), vae=AutoencoderKL(**vae),
                text_encoder=T5EncoderModel(T5Config(**dict(TEXT, vocab_size=len(tok)))).eval(), tokenizer=tok)


def save(folder, parts, kind):
    """The diffusers folder layout, so that backbones.load reads it like a real model folder."""
    sub = "" if kind == "tiny-wan" else "_2"  # FLUX keeps T5 as its second text encoder
    # the shapes world ships in fp16 (half the bytes; loading upcasts): the repo's size caps
    half = (lambda m: copy.deepcopy(m).half()) if kind == "tiny-shapes" else (lambda m: m)
    half(parts["transformer"]).save_pretrained(f"{folder}/transformer")
    half(parts["vae"]).save_pretrained(f"{folder}/vae")
    half(parts["text_encoder"]).save_pretrained(f"{folder}/text_encoder{sub}")
    parts["tokenizer"].save_pretrained(f"{folder}/tokenizer{sub}")
