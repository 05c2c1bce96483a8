"""Any size: the layout of overlapping latent tiles, whose velocities sample.velocity blends at
every step (no seams), and of overlapping windows of frames for long clips. Both blend with
linear ramps over the overlap (MultiDiffusion-style).
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
    """Overlapping tiles over latent dims (after [B, C]): (tile sizes, each tile's slices, the
    blending weight of a tile: its axes' ramps multiplied). One tile where the latent fits whole."""
    sizes = [min(s, d) for s, d in zip(sizes, dims)]
    # an eighth of a tile: no seams on the photos looked at, and 0.72x the tiles of a quarter (docs/RESULTS.md)
    overlaps = [max(1, s // 8) if s < d else 0 for s, d in zip(sizes, dims)]
    origins = [starts(d, s, o) for d, s, o in zip(dims, sizes, overlaps)]
    boxes = [()]
    for a, s in zip(origins, sizes):
        boxes = [b + (slice(o, o + s),) for b in boxes for o in a]
    weight = torch.ones(())
    for a, s, o in zip(origins, sizes, overlaps):
        weight = weight[..., None] * ramp(len(a), s, o)
    return sizes, boxes, weight


def frame_windows(n, size):
    """Origins of the windows of `size` frames covering a clip of n frames (overlap >= 1 frame)."""
    return starts(n, size, max(1, (size - 1) // 8))
