"""Any size: overlapping latent tiles whose velocities are blended at every step (no seams), and
overlapping windows of frames for long clips. Both blend with linear ramps over the overlap.
"""
import torch


def starts(length, size, overlap):
    """Tile origins covering [0, length) with tiles of `size` overlapping by at least `overlap`."""
    if length <= size:
        return [0]
    return sorted(set(range(0, length - size, max(1, size - overlap))) | {length - size})


def ramp(n, size, overlap):
    """Blending weight along one axis of a tile: linear ramps over the overlap, never zero."""
    if n == 1 or overlap == 0:
        return torch.ones(size)
    r = torch.ones(size)
    k = min(overlap, size // 2)
    edge = torch.linspace(1 / (k + 1), k / (k + 1), k)
    r[:k], r[size - k:] = edge, edge.flip(0)
    return r


def layout(dims, sizes):
    """Tiles over latent dims (after [B, C]): (tile sizes, overlaps, tile origins)."""
    sizes = [min(s, d) for s, d in zip(sizes, dims)]
    overlaps = [max(1, s // 4) if s < d else 0 for s, d in zip(sizes, dims)]
    boxes = [()]
    for a in [starts(d, s, o) for d, s, o in zip(dims, sizes, overlaps)]:
        boxes = [b + (o,) for b in boxes for o in a]
    return sizes, overlaps, boxes


def tiled(velocity_many, shape, sizes, k, chunk=16, bar=None):
    """A velocity on the full latent that runs the backbone on overlapping tiles (along any of
    the latent's dims), at most `chunk` samples per call, blended with ramps (MultiDiffusion-style).
    sizes: the tile size along each of the latent's dims after [B, C]. Everything stays on the
    device of the latent (no copy per step)."""
    sizes, overlaps, boxes = layout(shape[2:], sizes)
    if len(boxes) == 1:
        return velocity_many  # fits whole: one call
    weight = torch.ones(())
    for i, (s, o) in enumerate(zip(sizes, overlaps)):
        weight = weight[..., None] * ramp(len({b[i] for b in boxes}), s, o)
    on = {}  # the weights on the latent's device, copied there once

    def where(b):
        return tuple(slice(o, o + s) for o, s in zip(b, sizes))

    def v(x, sigma):
        if x.device not in on:
            on[x.device] = weight.to(x.device)
        weight_ = on[x.device]
        acc = torch.zeros((k,) + tuple(x.shape), device=x.device)
        norm = torch.zeros(x.shape[2:], device=x.device)
        per = max(1, chunk // x.shape[0])  # tiles per call: at most `chunk` samples (or one tile)
        for i in range(0, len(boxes), per):
            group = boxes[i:i + per]
            xs = torch.cat([x[(slice(None), slice(None)) + where(b)] for b in group])
            vs = velocity_many(xs, sigma.repeat(len(group)))  # [k, n*B, C, ...]
            for j, b in enumerate(group):
                acc[(slice(None),) * 3 + where(b)] += vs[:, j * x.shape[0]:(j + 1) * x.shape[0]] * weight_
                norm[where(b)] += weight_
            if bar is not None:
                bar.set_postfix(tiles=f"{min(i + per, len(boxes))}/{len(boxes)}")
        return acc / norm
    return v


def frame_windows(n, size):
    """Origins of the windows of `size` frames covering a clip of n frames (overlap >= 1 frame)."""
    return starts(n, size, max(1, (size - 1) // 8))
