"""--low_memory: the frozen transformer's weights stored in fewer bits, for one consumer GPU.

    tf = store(tf, low_memory(True, training=True), "cuda")   # float8 (diffusers' layerwise casting)
    tf = store(tf, low_memory(True), "cuda")                   # NF4 (bitsandbytes), to restore
    stored_bytes(tf); planned_bytes(meta_tf, "nf4")            # measured / from the shapes alone

The computation stays in the model's dtype; gradients pass through the stored layers to the
prompt. On a GPU, offloaded() keeps a text encoder or the VAE on the CPU, each layer brought over
when it runs (diffusers' group offloading); the transformer itself never leaves the GPU.
"""
import logging

import torch

# bitsandbytes, imported by diffusers when installed, warns on the CPU that an optional kernel
# package is missing; the pure-torch path it then takes is the one tested here
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

# --low_memory: the frozen transformer's weights stored in fewer bits; the computation stays in
# bb.dtype, the prompt and the sampler's state in fp32. Training: float8 through diffusers' own
# layerwise casting (no dependency; FLUX 14.1 GiB, its norms' linears left at 16 bits; fits a 24 GB
# card with grad ckpt). Restoring: bitsandbytes NF4 (4 bits, double-quantized scales; FLUX 5.7 GiB,
# a 12 GB card). Both train a prompt on the tiny default within 0.01 dB of full precision
# (docs/RESULTS.md); int8 (bitsandbytes LLM.int8) is kept for comparison.
LOW_MEMORY = {"train": "fp8", "restore": "nf4"}
STORAGES = ("fp8", "int8", "nf4")


def _bnb():
    import bitsandbytes
    return bitsandbytes


def _linears(tf):
    """(parent, name, linear) for every nn.Linear the storage takes: all but the fp32 ones."""
    keep = tf._keep_in_fp32_modules or []
    return [(m, n, c) for full, m in tf.named_modules() for n, c in m.named_children()
            if type(c) is torch.nn.Linear and not any(k in f"{full}.{n}".split(".") for k in keep)]


def low_memory(on, training=False):
    """The storage --low_memory means for training or for restoring ("" when off)."""
    return LOW_MEMORY["train" if training else "restore"] if on else ""


def offloaded(module, device, storage):
    """On a GPU with a storage: the module (text encoder, VAE) kept on the CPU, each of its layers
    brought to the GPU when it runs (diffusers' group offloading); elsewhere simply moved there."""
    if not storage or torch.device(device).type != "cuda":
        return module.to(device)
    from diffusers.hooks import apply_group_offloading
    apply_group_offloading(module.to("cpu"), onload_device=torch.device(device), offload_device=torch.device("cpu"),
                           offload_type="leaf_level")
    return module


def store(tf, storage, device):
    """The transformer `tf` with its linear weights stored as `storage` (fp8: diffusers' layerwise
    float8 casting, which leaves the norms' linears in 16 bits; int8, nf4: bitsandbytes), on
    `device`. Move it there only through here: float8 is cast before the move and bitsandbytes
    quantizes as the weights move, so the 16-bit weights never reach the device whole. Gradients reach the input (the prompt)."""
    if storage not in STORAGES:
        raise ValueError(f"storage {storage!r}: choose one of {', '.join(STORAGES)}")
    if storage == "fp8":  # cast where the weights are (the CPU, as loaded), then moved: 14 GiB reach a GPU, not 22
        tf.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=tf.dtype)
        return tf.to(device)
    if torch.device(device).type == "meta":  # shapes only: nothing to quantize
        return tf.to(device)
    for parent, name, lin in _linears(tf):
        new = _empty(lin, storage)
        _put(new, "weight", lin.weight.data, storage, device)
        if lin.bias is not None:
            new.bias = torch.nn.Parameter(lin.bias.data, requires_grad=False)
        setattr(parent, name, new.to(device))  # quantized here, one layer at a time
    return tf.to(device).requires_grad_(False)


def _empty(lin, storage):
    """bitsandbytes' layer for the nn.Linear `lin`, on the meta device (no weights yet)."""
    bnb = _bnb()
    if storage == "nf4":
        return bnb.nn.Linear4bit(lin.in_features, lin.out_features, lin.bias is not None, compute_dtype=lin.weight.dtype,
                                 quant_type="nf4", device="meta")
    return bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, lin.bias is not None, has_fp16_weights=False,
                               threshold=6.0, device="meta")


def _put(layer, key, w, storage, device):
    """Set a bitsandbytes layer's weight from the 16-bit `w`: quantized as it moves to `device`."""
    bnb = _bnb()
    if storage == "nf4":
        layer.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4", module=layer).to(device)
    else:
        layer.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False).to(device)


def load_stored(cls, folder, storage, device, dtype):
    """cls.from_pretrained(folder, torch_dtype=dtype) stored as `storage` on `device`, as it loads:
    the model built on the meta device in its storage's layout, then each tensor of the safetensors
    files read alone, cast to `dtype` (the class's fp32 modules to fp32), stored and moved. The host
    holds one tensor at a time (FLUX's largest, 75 MB in bf16), never the 16-bit model (22 GiB)."""
    import glob
    import os

    from accelerate import init_empty_weights
    from accelerate.utils import set_module_tensor_to_device
    from safetensors import safe_open
    if storage not in STORAGES:
        raise ValueError(f"storage {storage!r}: choose one of {', '.join(STORAGES)}")
    with init_empty_weights():
        tf = cls.from_config(cls.load_config(folder))
    keep = tf._keep_in_fp32_modules or []
    for name, q in tf.named_parameters():
        q.data = q.data.to(torch.float32 if any(k in name.split(".") for k in keep) else dtype)
    if storage == "fp8":
        tf.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    layers = {}  # weight name -> (bitsandbytes layer, storage) for the replaced linears
    for parent, name, lin in ([] if storage == "fp8" else _linears(tf)):
        new = _empty(lin, storage)
        if lin.bias is not None:  # in the model's dtype, as store keeps it
            new.bias = torch.nn.Parameter(lin.bias.data, requires_grad=False)
        setattr(parent, name, new)
        full = next(f for f, m in tf.named_modules() if m is new)
        layers[f"{full}.weight"] = new
    files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    if not files:
        raise ValueError(f"{folder}: no .safetensors weights to load in {storage}")
    for file in files:
        with safe_open(file, "pt") as fh:
            for key in fh.keys():
                w = fh.get_tensor(key)
                if key in layers:
                    _put(layers[key], "weight", w.to(dtype), storage, device)
                else:
                    module, _, leaf = key.rpartition(".")
                    at = getattr(tf.get_submodule(module), leaf)
                    set_module_tensor_to_device(tf, key, device, value=w.to(at.dtype))
                del w
    missing = [n for n, q in tf.named_parameters() if q.device.type == "meta"]
    if missing and torch.device(device).type != "meta":
        raise ValueError(f"{folder}: no weights for {len(missing)} parameters, e.g. {missing[0]}")
    return tf.to(device).eval().requires_grad_(False)


def stored_bytes(tf):
    """Bytes the transformer's weights take as stored: parameters and quantization state (not
    buffers such as Wan's rotary tables, which are computed, not loaded)."""
    seen, total = set(), 0
    tensors = list(tf.parameters())
    for q in tf.parameters():
        st = getattr(q, "quant_state", None)
        while st is not None:
            tensors += [t for t in (st.absmax, st.code) if t is not None]
            st = getattr(st, "state2", None)
    for m in tf.modules():
        if getattr(m, "SCB", None) is not None:
            tensors.append(m.SCB)
        w = getattr(m, "weight", None)
        if getattr(w, "SCB", None) is not None:
            tensors.append(w.SCB)
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def planned_bytes(tf, storage="", dtype=torch.bfloat16):
    """What store(tf, storage) would take, from the parameters' shapes alone (so on the meta
    device, for the real FLUX and Wan): the quantized linears' weights and scales, everything
    else at `dtype` (the class's fp32 modules at fp32). Returns (bytes, numbers left at 16 bits)."""
    at = lambda q: 4 if q.dtype == torch.float32 else torch.tensor([], dtype=dtype).element_size()  # noqa: E731
    if storage == "fp8":  # diffusers' own choice of layers, applied to a meta copy
        tf = type(tf).from_config(tf.config).to("meta") if tf.device.type != "meta" else tf
        tf.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
        left = sum(q.numel() for q in tf.parameters() if q.dtype != torch.float8_e4m3fn)
        return sum(q.numel() * (1 if q.dtype == torch.float8_e4m3fn else at(q)) for q in tf.parameters()), left
    weights = {id(c.weight): c.weight for _, _, c in (_linears(tf) if storage else [])}
    total = sum(q.numel() * at(q) for q in tf.parameters() if id(q) not in weights)
    left = sum(q.numel() for q in tf.parameters() if id(q) not in weights)
    for w in weights.values():
        n, rows = w.numel(), w.shape[0]
        if storage == "int8":  # int8 weights, one fp32 scale per output row
            total += n + 4 * rows
        else:  # nf4: two per byte, a uint8 scale per 64, an fp32 scale of those per 256 blocks, the code
            blocks = -(-n // 64)
            total += n // 2 + blocks + 4 * -(-blocks // 256) + 4 * (16 + 256)  # + the two code tables
    return total, left
