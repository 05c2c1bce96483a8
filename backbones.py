"""Thin loaders for FLUX.1-dev (images) and Wan 2.1 T2V 1.3B (videos), and the tiny defaults.

The rest of the repo sees one small interface and never the backbone's name:
  bb.encode(pixels), bb.decode(latents)   pixels in [-1, 1]: [B,3,H,W] or [B,3,F,H,W]
  bb.velocity(x, sigma, prompts)          one batched call, [k, B, ...] for k prompts (None: bare)
  bb.new_prompt(task=...)                 a zero-gate prompt of the right shape
  bb.load_prompt(path)                    a prompt file on bb.device; one made for another backbone refused
  bb.video, bb.multiple, bb.latent_shape(h, w, frames), bb.kind, bb.device, and SETTINGS' values
Everything FLUX- or Wan-specific (packing, ids, pooled projection, guidance, timestep convention,
VAE scaling, the real configs) lives here. A backbone computes on bb.device and returns there.
The transformer is bf16 on GPU and fp32 on CPU; the VAE likewise unless vae_dtype says;
load(cpu_bf16=True) restores in bf16 on a CPU with AMX units (sample.py's default).
"""
import json
import os
import warnings

from plumbing.lowbits import load_stored, offloaded, store  # first: it quiets bitsandbytes, which diffusers imports if installed

import diffusers
import torch
import transformers
from diffusers import AutoencoderKL, AutoencoderKLWan, FluxTransformer2DModel, WanTransformer3DModel

import prompt

# loading a few-MB model needs no progress bars (and an error stays the one line on stderr)
diffusers.utils.logging.disable_progress_bar()
transformers.utils.logging.disable_progress_bar()
# cpu_bf16: the attention's RMS norms get bf16 queries and fp32 weights, computed exactly, unfused
warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")

HERE = os.path.dirname(os.path.abspath(__file__))
HUB = {"flux": "black-forest-labs/FLUX.1-dev", "wan": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"}
TINY = {"tiny-flux": os.path.join(HERE, "weights", "tiny-flux"),
        "tiny-wan": os.path.join(HERE, "weights", "tiny-wan"),
        "tiny-shapes": os.path.join(HERE, "weights", "tiny-shapes")}
DEFAULT = {"image": "tiny-flux", "video": "tiny-wan"}
AMX = torch.cpu._is_amx_tile_supported()  # bf16 matrix units on this CPU: what load(cpu_bf16=True) needs
CONTEXT_LEN = {"flux": 512, "wan": 226}  # text tokens the authors' prompts were made for
# Working sizes and the paper's settings per backbone kind: training crop (px), clip length and
# batch; the tile restored at once (px, a side or (height, width); bigger inputs go in overlapping
# tiles) and the video window (frames); the learning rate; T0, the bridge's start noise; the VAE's
# precision ("": bf16 on GPU) and diffusers' VAE tiling: inputs larger than vae_tile px (0: the
# VAE's own, 1024 px for FLUX, the sampler's tile for Wan) are encoded and decoded in overlapping
# tiles, so that the VAE's memory is a function of its tile, not of the input.
# Every kind restores in tiles of its training size: the state a sigma names depends on the
# resolution (tokens), so T0 then means in sampling what it meant in training; a 480 x 832 Wan clip
# goes in two 480 px tiles. Wan's windows are its 33 training frames, its VAE fp32 as the authors
# keep it. The tiny ones: the sizes they were pre-trained on; lr 5e-3
# for thousands of steps, not 20k-40k; T0 as notebook 02 chose it for the paper-form prompt.
# data and heldout: what train.py learns from and eval.py scores on unless --data says otherwise
# (tiny-shapes: its own world's training images and test split, shapes.py).
# What this repo adds per kind is in extensions.PER_KIND.
SETTINGS = {
    "flux": dict(train_size=512, train_frames=1, train_batch=2, tile=512, window=1, train_lr=5e-4, t0=0.4,
                 vae_dtype="", vae_tiling=True, vae_tile=0, data="photos", heldout="heldout"),
    "wan": dict(train_size=480, train_frames=33, train_batch=2, tile=480, window=33, train_lr=5e-4, t0=0.4,
                vae_dtype="fp32", vae_tiling=True, vae_tile=0, data="photos", heldout="heldout"),
    "tiny-flux": dict(train_size=128, train_frames=1, train_batch=4, tile=128, window=1, train_lr=5e-3, t0=0.2,
                      vae_dtype="", vae_tiling=True, vae_tile=512, data="photos", heldout="heldout"),
    "tiny-wan": dict(train_size=64, train_frames=9, train_batch=4, tile=64, window=9, train_lr=5e-3, t0=0.2,
                     vae_dtype="", vae_tiling=True, vae_tile=256, data="photos", heldout="heldout"),
    "tiny-shapes": dict(train_size=64, train_frames=1, train_batch=8, tile=64, window=1, train_lr=5e-3, t0=0.4,
                        vae_dtype="", vae_tiling=True, vae_tile=512, data="shapes", heldout="shapes-test")}

# The real architectures, to build them without their weights:
# bench.py --arch makes them with random weights on a GPU, the tests on the meta device.
ARCH = {
    "flux": dict(
        transformer=dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                         num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                         guidance_embeds=True, axes_dims_rope=[16, 56, 56]),
        vae=dict(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                 up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=16,
                 norm_num_groups=32, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
                 use_quant_conv=False, use_post_quant_conv=False),
        pooled=768),  # CLIP's pooled vector
    "wan": dict(
        transformer=dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                         out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
                         cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6),
        vae=dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True])),
}


class Backbone:
    video = False
    temporal = 1  # frames per latent frame
    pooled = None  # FLUX's pooled text vector
    zero_pad_text = False  # Wan zeroes the text states past each text's true length
    cpu_bf16 = False  # load(cpu_bf16=True) on a CPU with bf16 matrix units: the calls below autocast to bf16

    def __init__(self, name, transformer, vae, context, device, dtype, kind):
        """kind: the key of SETTINGS (and of extensions.PER_KIND) whose values this backbone takes;
        a subclass then tiles its VAE where they ask (vae_tiling)."""
        self.name, self.transformer, self.vae, self.kind = name, transformer, vae, kind
        self.device, self.dtype = torch.device(device), dtype
        self.context = context.to(self.device, dtype)  # [1, L, text_dim], the null text
        for m in (transformer, vae):
            m.requires_grad_(False).eval()
        self.injector = prompt.Injector(transformer)
        self.prompt_shape = (self.context.shape[1], self.injector.dim, self.injector.num_gates)  # (K, D, gates)
        self.text = None  # (tokenizer, T5 encoder, length) kept only when asked for (notebooks, pre-training)
        self.clip = None  # FLUX's (CLIP tokenizer, CLIP text model), kept with the text encoder
        self.__dict__.update(SETTINGS[kind])

    # ----------------------------------------------------------------- prompts
    def new_prompt(self, **meta):
        return prompt.Prompt(*self.prompt_shape, backbone=self.name, **meta).to(self.device)

    def load_prompt(self, path):
        """A prompt file (prompt.load) on this backbone's device; one of another shape refused, naming both."""
        p = prompt.load(path)
        if p.shape != self.prompt_shape:
            k, d, g = self.prompt_shape
            raise ValueError(f"prompt '{p.meta.get('task', '?')}' was made for {p.describe()}, but this "
                             f"backbone is {self.name} ({k}x{d}, {g} gates)")
        return p.to(self.device)

    def latent_shape(self, h, w, frames=1):
        """The latent of one [3, (frames,) h, w] input: [16, (latent frames,) h/8, w/8]."""
        lat = [h // self.vae_scale, w // self.vae_scale]
        return tuple([self.latent_channels] + ([(frames - 1) // self.temporal + 1] if self.video else []) + lat)

    def velocity(self, x, sigma, prompts=(None,), context=None):
        """v for each prompt, from one batched call: [k, B, ...].

        sigma: [B] noise levels in [0, 1] (continuous; the timestep convention is applied
        here). context: a text context from encode_text() instead of the null text.
        """
        prompts = list(prompts)  # checked once, when loaded (load_prompt) or made (new_prompt)
        k = len(prompts)
        xs = x.to(self.device, self.dtype).repeat(k, *([1] * (x.ndim - 1)))
        ctx = self.context if context is None else context["context"].to(self.device, self.dtype)
        ctx = ctx.expand(x.shape[0], -1, -1).repeat(k, 1, 1)  # [1 or B, L, D] -> [k*B, L, D]
        pooled = self.pooled if context is None or context.get("pooled") is None else context["pooled"]
        if pooled is not None:
            pooled = pooled.to(self.device, self.dtype).expand(x.shape[0], -1).repeat(k, 1)
        self.injector.active = prompts
        try:
            with torch.autocast("cpu", torch.bfloat16, enabled=self.cpu_bf16):
                v = self._call(xs, sigma.to(self.device).float().repeat(k), ctx, pooled)
        finally:
            self.injector.active = []
        return v.float().reshape(k, *x.shape)

    def encode_text(self, texts=None, embeds=None):
        """The context of some texts, or of token embeddings `embeds` [B, L, d] fed through the
        frozen text encoder (token-space prompting, notebook 01). Needs keep_text_encoder=True."""
        if self.text is None:
            raise RuntimeError("load the backbone with keep_text_encoder=True to encode text")
        tok, enc, length = self.text
        ctx, mean = t5_context(tok, enc, texts, length, self.zero_pad_text, embeds)
        if self.video:
            return dict(context=ctx, pooled=None)
        if self.clip is None:  # the tiny FLUX: the mean of its T5 states
            return dict(context=ctx, pooled=mean)
        # FLUX: CLIP's pooled output of the same texts; token-space prompting tunes T5's input alone
        texts = list(texts) if texts is not None else [""] * len(ctx)
        return dict(context=ctx, pooled=clip_pooled(*self.clip, texts))


class FluxBackbone(Backbone):
    """FluxTransformer2DModel + AutoencoderKL (16 channels)."""

    def __init__(self, name, transformer, vae, context, pooled, device, dtype, kind="flux"):
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = vae.config.latent_channels
        self.multiple = self.vae_scale * 2  # latents are packed 2x2 into tokens
        if torch.device(device).type == "cpu":
            vae.to(memory_format=torch.channels_last)
        super().__init__(name, transformer, vae, context, device, dtype, kind)
        self.pooled = pooled.to(self.device, dtype)
        # diffusers' VAE tiling above its own tile (its config's sample_size, 1024 px for FLUX) or
        # vae_tile (the tiny VAE's sample_size is its 32 px training crop), tiles overlapping by a quarter
        if self.vae_tiling:
            vae.enable_tiling()
            if self.vae_tile:
                vae.tile_sample_min_size, vae.tile_latent_min_size = self.vae_tile, self.vae_tile // self.vae_scale

    # on the CPU the VAE's convolutions run channels-last: 1.4-1.7x faster, the same to ~1e-4
    def encode(self, pixels):
        pixels = pixels.to(self.device, self.vae.dtype).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", torch.bfloat16, enabled=self.cpu_bf16):
            z = self.vae.encode(pixels).latent_dist.mode()
        return ((z - (self.vae.config.shift_factor or 0)) * self.vae.config.scaling_factor).float().contiguous()

    def decode(self, z):
        z = z.to(self.device, self.vae.dtype) / self.vae.config.scaling_factor + (self.vae.config.shift_factor or 0)
        with torch.autocast("cpu", torch.bfloat16, enabled=self.cpu_bf16):
            return self.vae.decode(z.contiguous(memory_format=torch.channels_last)).sample.float().contiguous()

    @staticmethod
    def packed_call(tf, x, t, ctx, pooled, guidance=None):
        """FLUX's transformer `tf` on latents x [B, C, H, W]: 2x2 patches packed into tokens
        [B, H/2 * W/2, 4C], each with its (0, row, column) id, the text tokens with zero ids;
        the output unpacked back to [B, C, H, W]."""
        b, c, h, w = x.shape
        tokens = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w // 4, c * 4)
        ids = torch.zeros(h // 2, w // 2, 3, device=x.device)
        ids[..., 1] = torch.arange(h // 2, device=x.device)[:, None]
        ids[..., 2] = torch.arange(w // 2, device=x.device)[None, :]
        out = tf(hidden_states=tokens, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=t,
                 img_ids=ids.reshape(-1, 3), txt_ids=torch.zeros(ctx.shape[1], 3, device=x.device),
                 guidance=guidance, return_dict=False)[0]
        d = out.shape[-1]
        return out.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, d // 4, h, w)

    def _call(self, x, sigma, ctx, pooled):
        # the release puts 1000 t on the grid 1000..1; the transformer multiplies by 1000 itself
        t = (sigma * 1000).round().clamp(1, 1000) / 1000
        guidance = torch.ones_like(t) if self.transformer.config.guidance_embeds else None
        return self.packed_call(self.transformer, x, t.to(self.dtype), ctx, pooled, guidance)


class WanBackbone(Backbone):
    """WanTransformer3DModel + AutoencoderKLWan; videos [B, 3, F, H, W]."""
    video = True
    zero_pad_text = True

    def __init__(self, name, transformer, vae, context, device, dtype, kind="wan"):
        cfg = vae.config
        self.temporal = cfg.scale_factor_temporal
        self.vae_scale, self.latent_channels = cfg.scale_factor_spatial, cfg.z_dim
        self.multiple = cfg.scale_factor_spatial * transformer.config.patch_size[1]
        super().__init__(name, transformer, vae, context, device, dtype, kind)
        self.mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1).to(self.device)
        self.std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1).to(self.device)
        # diffusers' VAE tiling above the sampler's tile (its long side on both axes, so a portrait
        # clip is no more tiled than a landscape one), tiles overlapping by 64 px
        if self.vae_tiling:
            side = self.vae_tile or (max(self.tile) if isinstance(self.tile, tuple) else self.tile)
            vae.enable_tiling(tile_sample_min_height=side, tile_sample_min_width=side,
                              tile_sample_stride_height=side - 64, tile_sample_stride_width=side - 64)

    def frames_ok(self, n):
        return n >= 1 and (n - 1) % self.temporal == 0

    def encode(self, pixels):
        with torch.autocast("cpu", torch.bfloat16, enabled=self.cpu_bf16):
            z = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist.mode().float()
        return (z - self.mean) / self.std

    def decode(self, z):
        z = (z.to(self.device).float() * self.std + self.mean).to(self.vae.dtype)
        with torch.autocast("cpu", torch.bfloat16, enabled=self.cpu_bf16):
            return self.vae.decode(z).sample.float()

    def _call(self, x, sigma, ctx, pooled=None):
        t = (sigma * 1000).round().clamp(0, 999)  # Wan takes the raw integer timestep
        return self.transformer(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]


# --------------------------------------------------------------------------- diffusers' pipelines
# What FluxPipeline and WanPipeline draw with: the schedulers of the hub folders
# (scheduler/scheduler_config.json of FLUX.1-dev and Wan2.1-T2V-1.3B-Diffusers) and the pipelines'
# default guidance and step counts; the tiny backbones draw as their kind does
PIPELINES = {
    "flux": dict(scheduler="FlowMatchEulerDiscreteScheduler", guidance=3.5, steps=28,
                 config=dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                             base_image_seq_len=256, max_image_seq_len=4096)),
    "wan": dict(scheduler="UniPCMultistepScheduler", guidance=5.0, steps=50,
                config=dict(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)),
}


@torch.no_grad()
def draw(bb, text, size, frames=1, seed=0, steps=0, guidance=0.0):
    """A clean image [3, size, size] (clip [3, frames, size, size]) in [0, 1] on the CPU, drawn by
    diffusers' own pipeline around bb's transformer (its scheduler and guidance) from a text
    context of bb.encode_text, seeded by a CPU generator; decoded by bb.decode, which is the
    pipelines' decode (tests/test_library.py) and also takes the tiny VAE's absent shift. No prompt acts."""
    kind = "flux" if isinstance(bb, FluxBackbone) else "wan"
    cfg = PIPELINES[kind]
    scheduler = getattr(diffusers, cfg["scheduler"])(**cfg["config"])
    common = dict(height=size, width=size, num_inference_steps=steps or cfg["steps"], output_type="latent",
                  guidance_scale=guidance or cfg["guidance"], generator=torch.Generator().manual_seed(seed))
    parts = dict(scheduler=scheduler, vae=bb.vae, transformer=bb.transformer, tokenizer=None, text_encoder=None)
    if kind == "flux":  # the caller's text context instead of the pipeline's text encoders
        pipe = diffusers.FluxPipeline(**parts, text_encoder_2=None, tokenizer_2=None)
        pipe.set_progress_bar_config(disable=True)
        z = pipe(prompt_embeds=text["context"], pooled_prompt_embeds=text["pooled"], **common).images
        z = pipe._unpack_latents(z, size, size, pipe.vae_scale_factor)  # tokens -> [1, C, h, w]
    else:
        pipe = diffusers.WanPipeline(**parts)
        pipe.set_progress_bar_config(disable=True)
        z = pipe(prompt_embeds=text["context"], negative_prompt_embeds=bb.context, num_frames=frames, **common).frames
    return ((bb.decode(z)[0] + 1) / 2).clamp(0, 1).cpu()


# --------------------------------------------------------------------------- text encoders

def t5_context(tokenizer, encoder, texts, length, zero_pad, embeds=None):
    """(T5/UMT5 last hidden states at `length` tokens, of texts or of token embeddings; their mean
    over the real tokens). Wan cuts each text to its true length and zero-pads back
    (zero_pad=True); FLUX keeps the pad tokens' states (and gives the encoder no mask)."""
    dev = next(encoder.parameters()).device
    if embeds is None:
        tok = tokenizer(list(texts), padding="max_length", max_length=length, truncation=True,
                        add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        mask = tok.attention_mask.to(dev)
        embeds = encoder.get_input_embeddings()(tok.input_ids.to(dev))
    else:
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=dev)
    h = encoder(inputs_embeds=embeds, attention_mask=mask if zero_pad else None).last_hidden_state
    m = mask[..., None].to(h.device, h.dtype)
    if zero_pad:
        h = h * m
    return h, (h * m).sum(1) / m.sum(1).clamp(min=1)  # the tiny FLUX's pooled vector (it has no CLIP)


def _folder_kind(path):
    cfg = os.path.join(path, "transformer", "config.json")
    if not os.path.isfile(cfg):
        raise ValueError(f"{path} is not a diffusers model folder (no transformer/config.json); pass "
                         f"--backbone flux|wan|tiny-flux|tiny-wan or a local FLUX/Wan folder")
    cls = json.load(open(cfg))["_class_name"]
    if cls == "FluxTransformer2DModel":
        return "flux"
    if cls == "WanTransformer3DModel":
        return "wan"
    raise ValueError(f"{path}: transformer {cls} is neither FLUX nor Wan")


def _pretrained(cls, where, sub, **kw):
    try:
        return cls.from_pretrained(where, subfolder=sub, **kw)
    except (OSError, ValueError) as e:
        raise RuntimeError(f"could not load {sub} of {where} ({str(e).splitlines()[0][:160]}). "
                           f"With no hub access, download the model elsewhere and pass its local "
                           f"folder: --backbone /path/to/folder") from None


def _subfolder(where, sub):
    """The local folder of a model's part: in a local folder, or the hub's files fetched to its cache."""
    if os.path.isdir(where):
        return os.path.join(where, sub)
    try:
        import huggingface_hub
        return os.path.join(huggingface_hub.snapshot_download(where, allow_patterns=[f"{sub}/*"]), sub)
    except Exception as e:  # offline, unknown id, no access: the hub raises many types
        raise RuntimeError(f"could not load {sub} of {where} ({str(e).splitlines()[0][:160]}). With no hub access, "
                           f"download the model elsewhere and pass its local folder: --backbone /path/to/folder") from None


def dtypes(device, vae_dtype=None):
    """(transformer dtype, VAE dtype) on a device: bf16 on GPU, fp32 elsewhere; vae_dtype
    ('bf16' or 'fp32') overrides the VAE's."""
    half = torch.device(device).type == "cuda"
    names = {"bf16": torch.bfloat16, "fp32": torch.float32}
    if vae_dtype and vae_dtype not in names:
        raise ValueError(f"--vae_dtype={vae_dtype}: choose bf16 or fp32")
    vae = names[vae_dtype] if vae_dtype else (torch.bfloat16 if half else torch.float32)
    return (torch.bfloat16 if half else torch.float32), vae


def resolve(backbone=None, video=False):
    """(where, name, key) of a backbone without loading it: its folder or hub id, its name (where
    its files go) and its SETTINGS key (tiny-flux, tiny-wan, flux, wan). Reads at most a folder's
    transformer/config.json; a tiny name resolves even before its weights exist."""
    backbone = backbone or DEFAULT["video" if video else "image"]
    if backbone in TINY:
        return TINY[backbone], backbone, backbone
    if os.path.isdir(backbone) and os.path.basename(os.path.normpath(backbone)) in TINY:
        name = os.path.basename(os.path.normpath(backbone))  # a tiny backbone's folder: its own settings
        return backbone, name, name
    where = HUB.get(backbone, backbone)
    hub = {v: k for k, v in HUB.items()}
    if os.path.isdir(where):
        kind = _folder_kind(where)
    elif where in hub:
        kind = hub[where]
    else:
        raise ValueError(f"backbone {backbone!r} is not a name (tiny-flux, tiny-wan, flux, wan), "
                         f"one of the hub ids {', '.join(HUB.values())}, or an existing folder")
    name = backbone if backbone in HUB else os.path.basename(os.path.normpath(where))
    return where, name, ("tiny-" if os.path.isfile(os.path.join(where, "pretrain.json")) else "") + kind


def load(backbone=None, video=False, device=None, keep_text_encoder=False, vae_dtype=None, storage="", cpu_bf16=False):
    """A Backbone from 'tiny-flux', 'tiny-wan', 'flux', 'wan', a hub id or a local folder.

    No name: the shipped tiny default (images: tiny-flux, videos: tiny-wan). bf16 on GPU, fp32
    on CPU (see dtypes). The text encoder runs once for the null context and is freed unless kept.
    storage (low_memory()): the transformer's weights in fewer bits (store), and on a GPU the text
    encoders and the VAE kept on the CPU, each layer brought over when it runs (diffusers' offloading).
    cpu_bf16: on a CPU with bf16 matrix units (Intel AMX), the transformer's and the VAE's calls
    autocast to bf16, as a GPU runs them (the linear layers' weights kept in bf16, the rest fp32):
    restores about 1.8x faster, within a grey level of fp32 (docs/RESULTS.md); no effect elsewhere.
    Training keeps fp32.
    """
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTokenizer, T5EncoderModel, UMT5EncoderModel

    where, name, key = resolve(backbone, video)
    if name in TINY and not os.path.isdir(where):
        raise ValueError(f"{name} weights are missing at {where}; run `python pretrain.py` to make them")
    flux = not key.endswith("wan")  # the FLUX classes: flux, tiny-flux, tiny-shapes
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype, vae_dtype = dtypes(device, vae_dtype or SETTINGS[key]["vae_dtype"])
    # the text encoders first, for the null context; freed (unless kept) before the transformer
    # moves to the device, so that they never share its memory
    sub = "_2" if flux else ""  # FLUX's T5 is its second text encoder; Wan has only UMT5
    tok = _pretrained(AutoTokenizer, where, f"tokenizer{sub}")
    enc = offloaded(_pretrained(T5EncoderModel if flux else UMT5EncoderModel, where, f"text_encoder{sub}",
                                 torch_dtype=dtype), device, storage).eval()
    length = min(CONTEXT_LEN["flux" if flux else "wan"], tok.model_max_length)
    with torch.no_grad():  # the null context is computed once, with no graph
        context, mean = t5_context(tok, enc, [""], length, zero_pad=not flux)
        clip, pooled = None, None
        if flux and (os.path.isdir(os.path.join(where, "text_encoder")) or not os.path.isdir(where)):
            clip = (_pretrained(CLIPTokenizer, where, "tokenizer"),
                    offloaded(_pretrained(CLIPTextModel, where, "text_encoder", torch_dtype=dtype), device, storage).eval())
            pooled = clip_pooled(*clip, [""])  # FLUX's pooled vector: CLIP's pooled output
        elif flux:
            pooled = mean  # the tiny default has no CLIP
    text = (tok, enc.requires_grad_(False), length)
    if not keep_text_encoder:
        text = enc = clip = None
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    tf_cls = FluxTransformer2DModel if flux else WanTransformer3DModel
    if storage:  # stored as it loads, tensor by tensor: the host never holds the 16-bit transformer
        tf = load_stored(tf_cls, _subfolder(where, "transformer"), storage, device, dtype)
    else:
        tf = _pretrained(tf_cls, where, "transformer", torch_dtype=dtype).to(device)
    vae = offloaded(_pretrained(AutoencoderKL if flux else AutoencoderKLWan, where, "vae", torch_dtype=vae_dtype),
                    device, storage)
    if flux:
        bb = FluxBackbone(name, tf, vae, context, pooled, device, dtype, key)
    else:
        bb = WanBackbone(name, tf, vae, context, device, dtype, key)
    bb.text, bb.clip = text, clip and (clip[0], clip[1].requires_grad_(False))
    bb.cpu_bf16 = cpu_bf16 and bb.device.type == "cpu" and AMX
    if bb.cpu_bf16:  # the linear layers' weights cast once to what autocast casts them to per call (6% faster)
        for m in tf.modules():
            if isinstance(m, torch.nn.Linear):
                m.to(torch.bfloat16)
    return bb


def random_backbone(kind, device="cpu", vae_dtype=None, seed=0, dtype=None, storage=""):
    """The architecture `kind` (flux, wan: the real configs above; tiny-flux, tiny-wan, tiny-shapes: tiny.py's)
    with random weights and a random null context of the right shape: no download. Built on the
    device directly (a 12 B model in seconds on a GPU; shapes only on the meta device), in the
    dtypes from_pretrained gives: the class's fp32 modules stay fp32. dtype overrides the device's.
    storage: as load's (on the meta device the weights keep their 16 bits: shapes only); the model is
    then built on the CPU and stored as it moves, so the 16-bit transformer never reaches the device
    whole (the host holds it: FLUX 22 GiB)."""
    from plumbing import tiny
    real = kind in ARCH
    if kind not in ARCH and kind not in TINY:
        raise ValueError(f"unknown architecture {kind!r}; choose one of {', '.join(list(ARCH) + list(TINY))}")
    flux = kind != "wan" and kind != "tiny-wan"
    device = torch.device(device)
    dtype_, vae_dtype = dtypes(device, vae_dtype or SETTINGS[kind]["vae_dtype"])
    dtype = dtype or dtype_
    cfg = ARCH[kind] if real else dict(transformer=tiny.ARCH[kind][0], vae=tiny.ARCH[kind][1],
                                       pooled=tiny.FLUX_TRANSFORMER["pooled_projection_dim"])
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    build = torch.device("cpu") if storage and device.type != "meta" else device  # stored before it moves
    try:
        with torch.device(build):
            torch.set_default_dtype(dtype)
            tf = (FluxTransformer2DModel if flux else WanTransformer3DModel)(**cfg["transformer"])
            torch.set_default_dtype(vae_dtype)
            vae = (AutoencoderKL if flux else AutoencoderKLWan)(**cfg["vae"])
    finally:
        torch.set_default_dtype(default)
    for name, q in tf.named_parameters():  # as from_pretrained does: these names stay fp32
        if any(k in name.split(".") for k in tf._keep_in_fp32_modules or []):
            q.data = q.data.to(torch.float32)
    if storage:
        tf, vae = store(tf, storage, device), offloaded(vae, device, storage)
    length = CONTEXT_LEN[kind] if real else tiny.ARCH[kind][2]
    width = tf.config.joint_attention_dim if flux else tf.config.text_dim
    g = torch.Generator().manual_seed(seed + 1)
    context = torch.randn(1, length, width, generator=g) * 0.1  # T5 states are of this order
    if flux:
        pooled = torch.randn(1, cfg["pooled"], generator=g) * 0.1
        return FluxBackbone(kind, tf, vae, context, pooled, device, dtype, kind)
    return WanBackbone(kind, tf, vae, context, device, dtype, kind)


def clip_pooled(tokenizer, clip, texts):
    """CLIP's pooled output of some texts at 77 tokens, as FluxPipeline computes it."""
    dev = next(clip.parameters()).device
    ids = tokenizer(list(texts), padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    return clip(ids.to(dev), output_hidden_states=False).pooler_output
