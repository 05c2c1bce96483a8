"""The gated residual prompt (paper Sec. 3.3, Table 5) and the only code that puts it into a block.

A prompt is one bank P [1, K, D] shared by all attention blocks and one scalar gate per block,
initialised at zero so that an untrained prompt leaves the backbone exactly as it was. It lives
where the backbone's attention reads text (after the text projection), not in token space.
How it enters, as in the authors' release: FLUX double-stream block l: the normalized text stream
entering attention becomes norm_ctx + alpha_l P; single-stream block l: its first K (text)
positions get + alpha_l P. Wan: every attn2 returns Attn(h, c) + alpha_l Attn(h, c + P).
Forward hooks bind the attention modules' arguments by name, so keyword or position alike.
"""
import inspect
import math
import os
import pickle

import torch
from diffusers import FluxTransformer2DModel, WanTransformer3DModel
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from data import media


# a trained prompt's values are of order 1 to 10; far beyond, the attention overflows (a black output)
MAX_ABS = 1e3


class Prompt(nn.Module):
    """One task's prompt: bank [1, K, D] (randn * 0.02) and gates [L] (zeros), fp32."""

    def __init__(self, tokens, dim, gates, **meta):
        super().__init__()
        self.bank = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.gates = nn.Parameter(torch.zeros(gates))
        self.meta = {k: str(v) for k, v in meta.items()}  # backbone, task, bridge, t0, ...
        self.shape = (tokens, dim, gates)  # (K, D, gates): what a backbone's prompt_shape must equal

    def describe(self):
        k, d, g = self.shape
        return f"{self.meta.get('backbone', '?')} ({k}x{d}, {g} gates)"


# ---------------------------------------------------------------------------- save / load

def save(prompt, path):
    """safetensors with the settings in its metadata, written atomically."""
    (_, k, d), g = prompt.bank.shape, prompt.gates.numel()
    meta = dict(prompt.meta, format="residual-prompt", tokens=str(k), dim=str(d), gates=str(g))

    def write(tmp):
        save_file({"bank": prompt.bank.detach().float().cpu().contiguous(),
                   "gates": prompt.gates.detach().float().cpu().contiguous()}, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # safetensors writes 0600; a shipped prompt must be readable by all
    media.atomic(str(path), write, load_file)  # re-read before the rename: a full disk fails there


def load(path):
    """A prompt from our safetensors or from the authors' released .pt ({'backend', ...})."""
    if not os.path.isfile(path):
        raise ValueError(f"prompt file not found: {path}")
    try:
        if str(path).endswith(".pt"):
            raw = torch.load(path, map_location="cpu", weights_only=True)  # never runs code in the file
            bank = raw["deep_prompt_bank"]["prompts"].float()
            gates = torch.stack([torch.as_tensor(a).float().reshape(()) for a in raw["alphas"]])
            task = os.path.basename(path)[:-3].split("_", 1)[-1]
            meta = dict(backbone=raw["backend"], task=task, bridge="ebr", t0="0.4",
                        source="authors' release")
        else:
            tensors = load_file(path)
            with safe_open(path, "pt") as f:
                meta = dict(f.metadata() or {})
            bank, gates = tensors["bank"], tensors["gates"]
            meta.pop("format", None)
            for key in ("tokens", "dim", "gates"):
                meta.pop(key, None)
    except pickle.UnpicklingError:
        raise ValueError(f"{path}: holds pickled Python objects besides tensors; refused (nothing in it "
                         f"was run)") from None
    except (KeyError, TypeError, RuntimeError, SafetensorError, OSError, EOFError) as e:
        raise ValueError(f"{path} is not a prompt file ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    if bank.ndim != 3 or bank.shape[0] != 1 or gates.ndim != 1:
        raise ValueError(f"{path}: prompt bank must be [1, K, D] and gates [L], "
                         f"got {list(bank.shape)} and {list(gates.shape)}")
    if not (torch.isfinite(bank).all() and torch.isfinite(gates).all()):
        raise ValueError(f"{path}: prompt holds NaN or Inf values; refusing to use it")
    big = max(bank.abs().max().item(), gates.abs().max().item())
    if big > MAX_ABS:
        raise ValueError(f"{path}: prompt holds values up to {big:.3g}, where a trained prompt's stay far "
                         f"below {MAX_ABS:g}; refusing to use it")
    if "t0" in meta:
        try:
            t0 = float(meta["t0"])
        except ValueError:
            t0 = math.nan
        if not 0 < t0 < 1:
            raise ValueError(f"{path}: its metadata gives t0={meta['t0']}; T0 must lie in (0, 1)")
    p = Prompt(bank.shape[1], bank.shape[2], gates.numel(), **meta)
    with torch.no_grad():
        p.bank.copy_(bank)
        p.gates.copy_(gates)
    return p


# ---------------------------------------------------------------------------- injection

class Injector:
    """Hooks on a transformer's attention; `active` says which prompts the next call uses.

    active = [p1, p2, ...] with a batch of k*B samples runs prompt i on the i-th group of B
    samples (one batched call for a mixed sample). None in the list means the bare backbone.
    An empty list (the default) leaves the transformer untouched.
    """

    def __init__(self, transformer):
        self.active = []
        self._per_sample = None
        self.handles = [transformer.register_forward_pre_hook(self._prepare, with_kwargs=True)]
        if isinstance(transformer, FluxTransformer2DModel):
            self.dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
            blocks = list(transformer.transformer_blocks)
            singles = list(transformer.single_transformer_blocks)
            for l, b in enumerate(blocks):
                self.handles.append(b.attn.register_forward_pre_hook(
                    self._flux(l, "encoder_hidden_states"), with_kwargs=True))
            for j, b in enumerate(singles):
                self.handles.append(b.attn.register_forward_pre_hook(
                    self._flux(len(blocks) + j, "hidden_states"), with_kwargs=True))
            self.num_gates = len(blocks) + len(singles)
        elif isinstance(transformer, WanTransformer3DModel):
            self.dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
            for l, b in enumerate(transformer.blocks):
                self.handles.append(b.attn2.register_forward_hook(self._wan_cross(l), with_kwargs=True))
            self.num_gates = len(transformer.blocks)
        else:
            raise TypeError(f"no prompt injection for {type(transformer).__name__}")

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []

    # one pass per transformer call: the per-sample bank and gates of this batch
    def _prepare(self, module, args, kwargs):
        self._per_sample = None
        if not any(p is not None for p in self.active):
            return None
        x = inspect.signature(module.forward).bind(*args, **kwargs).arguments["hidden_states"]
        k = len(self.active)
        if x.shape[0] % k:
            raise ValueError(f"batch of {x.shape[0]} cannot be split among {k} prompts")
        ref = next(p for p in self.active if p is not None)
        banks = torch.cat([p.bank if p is not None else torch.zeros_like(ref.bank) for p in self.active])
        gates = torch.stack([p.gates if p is not None else torch.zeros_like(ref.gates) for p in self.active])
        rep = x.shape[0] // k
        self._per_sample = (banks.to(x.device).repeat_interleave(rep, 0),
                            gates.to(x.device).repeat_interleave(rep, 0))
        return None

    def _flux(self, l, arg):
        """Add alpha_l P to the first K positions of the attention input `arg`: the whole
        normalized text stream of a double-stream block (encoder_hidden_states), or the text
        positions, which come first, of a single-stream block's sequence (hidden_states)."""
        def hook(module, args, kwargs):
            if self._per_sample is None:
                return None
            bank, gates = self._per_sample
            alpha = gates[:, l].reshape(-1, 1, 1)
            b = inspect.signature(module.forward).bind(*args, **kwargs)
            h = b.arguments[arg]
            k = bank.shape[1]
            text = (h[:, :k].float() + alpha * bank).to(h.dtype)
            b.arguments[arg] = torch.cat([text, h[:, k:]], dim=1)
            return b.args, b.kwargs
        return hook

    def _wan_cross(self, l):
        def hook(module, args, kwargs, output):
            if self._per_sample is None:
                return None
            bank, gates = self._per_sample
            alpha = gates[:, l].reshape(-1, 1, 1)
            b = inspect.signature(module.forward).bind(*args, **kwargs)
            c = b.arguments["encoder_hidden_states"]
            b.arguments["encoder_hidden_states"] = (c.float() + bank).to(c.dtype)
            # module.forward (not module(...)) so this second attention call runs no hooks
            second = module.forward(*b.args, **b.kwargs)
            return (output.float() + alpha * second.float()).to(output.dtype)
        return hook
