"""Any size: the layout of overlapping latent tiles, whose velocities sample.velocity blends at
every step (no seams), and of overlapping windows of frames for long clips. Both blend with
linear ramps over the overlap (MultiDiffusion-style).
"""
import torch


def layout(dims, sizes):
    """Overlapping tiles over latent dims (after [B, C]): (tile sizes, each tile's slices, the
    blending weight of a tile). One tile where the latent fits whole. Along each axis the tiles
    overlap by at least an eighth of a tile, and a tile's weight ramps linearly over the overlap
    (never zero); a tile's weight is its axes' ramps multiplied."""
    sizes = [min(s, d) for s, d in zip(sizes, dims)]
    # an eighth of a tile: no seams on the photos looked at, and 0.72x the tiles of a quarter (docs/RESULTS.md)
    overlaps = [max(1, s // 8) if s < d else 0 for s, d in zip(sizes, dims)]
    origins = [[0] if d <= s else sorted(set(range(0, d - s, max(1, s - o))) | {d - s})
               for d, s, o in zip(dims, sizes, overlaps)]
    boxes = [()]
    for a, s in zip(origins, sizes):
        boxes = [b + (slice(o, o + s),) for b in boxes for o in a]
    weight = torch.ones(())
    for a, s, o in zip(origins, sizes, overlaps):
        r = torch.ones(s)
        if len(a) > 1 and o > 0:
            k = min(o, s // 2)
            edge = torch.linspace(1 / (k + 1), k / (k + 1), k)
            r[:k], r[s - k:] = edge, edge.flip(0)
        weight = weight[..., None] * r
    return sizes, boxes, weight


def frame_windows(n, size):
    """(origins, blending weight per frame) of the windows of `size` frames covering a clip of n
    frames: layout along the frame axis (a window of 4k+1 frames: overlap (size - 1) // 8, at least 1)."""
    _, boxes, weight = layout([n], [size])
    return [b[0].start for b in boxes], weight
