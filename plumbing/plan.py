"""Memory as a number before a GPU is touched: the planned peak of training and of restoring, from
shapes on the meta device.

    parts = plan.training("flux", storage="fp8", ckpt=True)   # {"weights": bytes, "step": bytes, ...}
    parts = plan.restoring("flux", 1024, 1024, storage="nf4")

Each runs the repo's own code (train.encode_batch then train.train_step; sample.restore) on the
architecture built on the meta device and counts every tensor storage as it is created and freed
(Counted): the peak of what torch's allocator holds, which a GPU reports as
torch.cuda.max_memory_allocated, less the allocator's rounding and the kernels' workspaces (the
CUDA context, some 0.5 GiB, is outside both). Attention is counted as flash attention (memory
linear in the tokens), what train.py asks for on CUDA. bench.py --arch prints these figures.
"""
import contextlib
import weakref

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import backbones  # upward, as plan.py alone does: it measures the top level
from . import lowbits


class Counted(TorchDispatchMode):
    """Within it, the bytes of every tensor storage an operation creates, until it is freed: .now
    and .peak (bytes above what existed before). The modules' own parameters and buffers are
    followed too, so that one replaced in place (float8 casting's) counts once."""

    def __init__(self, *modules):
        super().__init__()
        self.now = self.peak = 0
        self.live = {}
        for t in {id(t): t for m in modules for t in [*m.parameters(), *m.buffers()]}.values():
            st = t.untyped_storage()
            if id(st) not in self.live:
                self.live[id(st)] = weakref.finalize(st, self._free, id(st), st.nbytes())

    def _free(self, key, n):
        self.now -= n
        self.live.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {id(t.untyped_storage()) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()  # views share it; torch keeps one Python object per storage
                if id(st) not in self.live and id(st) not in given:  # new, not a view of an input (a weight)
                    n = st.nbytes()
                    self.live[id(st)] = weakref.finalize(st, self._free, id(st), n)
                    self.now += n
                    self.peak = max(self.peak, self.now)
        return out


def _flash(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """scaled_dot_product_attention as flash attention computes it (output and log-sum-exp kept,
    no tokens x tokens matrix), on any device: the meta device's own choice is the math kernel."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)[0]


@contextlib.contextmanager
def counted(*modules):
    """Counted(*modules), with attention counted as flash attention."""
    sdpa = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _flash
    try:
        with Counted(*modules) as c:
            yield c
    finally:
        F.scaled_dot_product_attention = sdpa


def _bytes(module):
    return sum(q.numel() * q.element_size() for q in module.parameters())


def shapes(kind, storage="", dtype=torch.bfloat16, vae_dtype=None):
    """The backbone `kind` on the meta device as a GPU holds it: the transformer in `dtype` (bf16)
    with `storage`'s layout where it has one on the meta device (fp8), the VAE in its kind's dtype."""
    vae_dtype = vae_dtype or backbones.SETTINGS[kind]["vae_dtype"] or ("bf16" if dtype == torch.bfloat16 else "fp32")
    return backbones.random_backbone(kind, "meta", vae_dtype=vae_dtype, dtype=dtype,
                                     storage="fp8" if storage == "fp8" else "")


def weights(bb, kind, storage, dtype, offload=True):
    """Bytes of the weights on the GPU: the transformer as stored; the VAE unless --low_memory
    offloads it (on a GPU: then one of its layers at a time, counted as its largest)."""
    tf = backbones.random_backbone(kind, "meta", dtype=dtype).transformer if storage == "fp8" else bb.transformer
    stored = lowbits.planned_bytes(tf, storage, dtype)[0]
    vae = max(_bytes(m) for m in bb.vae.modules() if not list(m.children())) if storage and offload else _bytes(bb.vae)
    return stored, vae


def training(kind, size=0, frames=0, batch=0, storage="", ckpt=False, dtype=torch.bfloat16, vae_dtype=None, offload=True):
    """Planned bytes of one training step of `kind` at its training size and batch (or these), by
    part: transformer and vae (weights), encode (encoding a streamed batch of pixel pairs), step
    (the prompt, AdamW's state, the step's activations and gradients, given the latents), peak."""
    import train
    bb = shapes(kind, storage, dtype, vae_dtype)
    size, batch = size or bb.train_size, batch or bb.train_batch
    frames = (frames or bb.train_frames) if bb.video else 1
    if ckpt or storage:
        bb.transformer.enable_gradient_checkpointing()
    px = torch.empty((batch, 3, frames, size, size) if bb.video else (batch, 3, size, size), dtype=torch.uint8, device="meta")
    with counted(bb.vae) as enc:
        z = train.encode_batch(bb, px, px)
    g = torch.Generator().manual_seed(0)
    with counted(bb.transformer) as step:
        p = bb.new_prompt(task="plan")
        opt = torch.optim.AdamW(p.parameters(), lr=1e-4)
        train.train_step(bb, p, opt, [z], [g], "ebr", bb.t0)
    tf, vae = weights(bb, kind, storage, dtype, offload)
    latents = 2 * z[0].numel() * z[0].element_size()
    return dict(transformer=tf, vae=vae, encode=enc.peak, step=step.peak, peak=tf + vae + max(enc.peak, latents + step.peak))


def restoring(kind, h, w, frames=1, storage="", dtype=torch.bfloat16, vae_dtype=None, steps=2, offload=True):
    """Planned bytes of restoring one h x w image (frames x h x w clip) with one prompt by
    sample.restore, by part: transformer and vae (weights), run (the sampler and the VAE), peak.
    `storage` nf4 counts its stored bytes and one linear's weight dequantized at a time (NF4
    cannot be built on the meta device)."""
    import sample
    bb = shapes(kind, storage, dtype, vae_dtype)
    x = torch.empty((3, frames, h, w) if bb.video else (3, h, w), device="meta")
    p = bb.new_prompt(task="plan")
    with counted(bb.transformer, bb.vae) as c, torch.no_grad():
        sample.restore(bb, x, [p], "ebr", bb.t0, steps=steps, progress=False)
    tf, vae = weights(bb, kind, storage, dtype, offload)
    if storage in ("nf4", "int8"):
        tf += max(c.weight.numel() for _, _, c in lowbits._linears(bb.transformer)) * torch.finfo(dtype).bits // 8
    return dict(transformer=tf, vae=vae, run=c.peak, peak=tf + vae + c.peak)


def cpu_peak(fn):
    """(fn's result, the peak of the CPU allocator's bytes above their level at the start), from
    torch.profiler's allocation records: torch.cuda.max_memory_allocated's accounting, on a CPU run."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    stack, events = list(prof.profiler.kineto_results.experimental_event_tree()), []
    while stack:
        e = stack.pop()
        stack += e.children
        if type(e.extra_fields).__name__ == "_ExtraFields_Allocation" and e.extra_fields.device.type == "cpu":
            events.append((e.start_time_ns, e.extra_fields.alloc_size))
    now = peak = 0
    for _, n in sorted(events, key=lambda t: t[0]):
        now += n
        peak = max(peak, now)
    return out, peak
