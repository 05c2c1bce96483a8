"""The shapes world: captioned images that code draws, for a tiny prior that can learn its domain.

A photo prior small enough for a CPU is weak, so on tiny-flux a failure of the method cannot be
told from a failure of the prior. Here the domain is small enough to learn well: one flat shape
(circle, square, triangle, ring) of a named colour near the centre of a two-colour gradient,
64 x 64 px, with a caption that names them ("red ring on green"). Image n is a function
of n alone, so the splits are index ranges that never meet:
    train: n in [0, 10^7)   validation: [10^7, 2*10^7)   test: [2*10^7, ...)
Settings are chosen on validation images and scored on test images, never the same ones.
"""
import math

import numpy as np
import torch
from PIL import Image, ImageDraw

SIZE = 64
SPLITS = {"train": 0, "val": 10_000_000, "test": 20_000_000}
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 50),
           "purple": (140, 60, 180), "orange": (240, 140, 30), "white": (235, 235, 235), "black": (25, 25, 25),
           "cyan": (40, 200, 210), "pink": (240, 130, 180)}
SHAPES = ("circle", "square", "triangle", "ring")
SUPER = 4  # drawn at 4x and downsampled: anti-aliased edges, as a camera would see them


def _mask(kind, cx, cy, r, angle, S):
    """The shape's coverage at S x S px (255 inside), drawn with PIL."""
    m = Image.new("L", (S, S), 0)
    d = ImageDraw.Draw(m)
    if kind in ("circle", "ring"):
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        if kind == "ring":
            d.ellipse([cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r], fill=0)
    else:
        n = 4 if kind == "square" else 3
        d.polygon([(cx + r * math.cos(angle + 2 * math.pi * k / n), cy + r * math.sin(angle + 2 * math.pi * k / n))
                   for k in range(n)], fill=255)
    return m


def draw(n, size=SIZE):
    """(image [3, size, size] float in [0, 1], caption) of image n: a function of n alone."""
    rng = np.random.default_rng(n)
    names = list(COLOURS)
    bg = rng.choice(len(names), 2, replace=False)
    k = 1  # one shape (two, one hiding the other, were more than a CPU-sized prior learned)
    cols = [int(c) for c in rng.choice([i for i in range(len(names)) if i != bg[0]], k, replace=False)]
    kinds = [SHAPES[int(i)] for i in rng.integers(0, len(SHAPES), k)]
    # the background: a linear gradient from the named colour halfway to a second one, any direction
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
    w = np.clip(0.5 + (xx * math.cos(a) + yy * math.sin(a)) * rng.uniform(0.6, 1.2), 0, 1)[..., None]
    c0, c1 = np.array(COLOURS[names[bg[0]]]), np.array(COLOURS[names[bg[1]]])
    img = (1 - w) * c0 + w * (0.5 * c0 + 0.5 * c1)  # the named colour dominates
    S = size * SUPER
    for kind, c in zip(kinds, cols):
        r = rng.uniform(0.2, 0.32) * S
        # near the centre: where a shape lies is what a CPU-sized prior learned last (docs/shapes.md)
        cx, cy = S / 2 + rng.uniform(-0.08, 0.08, 2) * S
        m = _mask(kind, cx, cy, r, rng.uniform(0, 2 * math.pi), S).resize((size, size), Image.Resampling.BOX)
        alpha = np.asarray(m, dtype=np.float64)[..., None] / 255  # anti-aliased edges
        img = (1 - alpha) * img + alpha * np.array(COLOURS[names[c]])
    caption = " and ".join(f"{names[c]} {kind}" for kind, c in zip(kinds, cols)) + f" on {names[bg[0]]}"
    x = torch.from_numpy(np.round(img).astype(np.float32) / 255).permute(2, 0, 1)
    return x.contiguous(), caption


def index(split, i):
    """The global index of the i-th image of a split."""
    return SPLITS[split] + i


def batch(split, start, count, size=SIZE):
    """Images [count, 3, size, size] and their captions, the split's images start..start+count-1."""
    items = [draw(index(split, i), size) for i in range(start, start + count)]
    return torch.stack([x for x, _ in items]), [c for _, c in items]


class Split:
    """The images of a split as training items ("shapes:<n>", drawn when read), n from 0 to count-1:
    a sequence, so that dataset.Pairs can permute it without drawing anything."""

    def __init__(self, split, count=1_000_000):
        self.split, self.count = split, count

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        if not 0 <= i < self.count:
            raise IndexError(i)
        return f"shapes:{index(self.split, int(i))}"


def read(item):
    """The clean image of an item "shapes:<n>"."""
    return draw(int(item.split(":", 1)[1]))[0]


# ------------------------------------------------------------------------------- the judge
# An image of this world read back into its caption's words from its pixels, the way the drawing
# code wrote them. It judges the prior (prior_score, below): a sample drawn for a caption counts
# only if that caption is read back from it, which a blob or a smear does not pass.

PALETTE = torch.tensor(list(COLOURS.values()), dtype=torch.float32)


def labels(caption):
    """({(colour, kind), ...}, background colour) of a caption."""
    things, bg = caption.rsplit(" on ", 1)
    return {tuple(t.split(" ")) for t in things.split(" and ")}, bg


def _outline(patch):
    """(area over the circle through the farthest pixel, area over the smallest rotated rectangle
    around it with that rectangle's short over long side, area over the largest triangle inside its
    convex hull) of a filled patch of pixels, all from the pixels' corners."""
    from scipy.spatial import ConvexHull
    ys, xs = np.nonzero(patch)
    area = float(len(ys))
    r = math.sqrt(((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2).max()) + 0.5
    corners = np.concatenate([np.stack([ys + dy, xs + dx], 1) for dy in (-0.5, 0.5) for dx in (-0.5, 0.5)])
    hull = corners[ConvexHull(corners).vertices]
    rect, side = math.inf, 0.0
    for a, b in zip(hull, np.roll(hull, -1, 0)):  # the smallest rectangle has a side on a hull edge
        u = (b - a) / (np.linalg.norm(b - a) + 1e-9)
        p = hull @ np.stack([u, [-u[1], u[0]]], 1)
        w, h = np.ptp(p[:, 0]), np.ptp(p[:, 1])
        if w * h < rect:
            rect, side = w * h, min(w, h) / max(w, h, 1e-9)
    d = hull[None, :, :] - hull[:, None, :]  # the largest triangle on hull vertices
    cross = np.abs(d[:, :, None, 0] * d[:, None, :, 1] - d[:, :, None, 1] * d[:, None, :, 0]) / 2
    return area / (math.pi * r * r), area / rect, side, area / cross.max()


def describe(image, tol=30.0):
    """({(colour, kind), ...}, background colour) read from an image [3, H, W] in [0, 1]. The
    background: the named colour most of the border is near. A shape: the largest patch of pixels
    near another named colour, if it covers 1% of the image. Its kind from its outline: a hole
    makes a ring; a circle fills the circle through its farthest pixel (over 0.8); a square fills
    the smallest rectangle around it (over 0.82; a round blob fills it at most 0.79), near-square; a triangle is covered by the
    largest triangle inside it (area within 1.15 of it). Anything else is a blob, which no caption
    names."""
    from scipy import ndimage
    d = torch.cdist(image.permute(1, 2, 0).reshape(-1, 3).float() * 255, PALETTE)
    near, close = d.argmin(1).reshape(image.shape[1:]).numpy(), (d.amin(1) < tol).reshape(image.shape[1:]).numpy()
    edge = lambda a: np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])  # noqa: E731
    names = list(COLOURS)
    bg = int(np.bincount(edge(near)[edge(close)], minlength=len(names)).argmax())
    found = set()
    for c in range(len(names)):
        patches, n = ndimage.label((near == c) & close)
        if c == bg or n == 0:
            continue
        patch = patches == 1 + int(np.argmax(ndimage.sum(patches > 0, patches, range(1, n + 1))))
        area = int(patch.sum())
        if area < 0.01 * patch.size:
            continue
        filled = ndimage.binary_fill_holes(patch)
        circle, rect, side, triangle = _outline(filled)
        kind = ("ring" if filled.sum() - area > 0.15 * filled.sum() else "circle" if circle > 0.8
                else "square" if rect > 0.82 and side > 0.75 else "triangle" if triangle < 1.15 else "blob")
        found.add((names[c], kind))
    return found, names[bg]


def read_back(images, captions):
    """Per image [N, 3, H, W]: is its caption read back from it exactly (a bool tensor)?"""
    return torch.tensor([describe(x) == labels(c) for x, c in zip(images, captions)])


def read_parts(images, captions=None):
    """Shares of images [N, 3, H, W] that read as some image of this world (a named background and
    shapes of a named kind, no blob), and, given their captions, whose background, shape colours,
    and shapes (colour and kind) are their caption's: where read_back's all-or-nothing fails."""
    seen = [describe(x) for x in images]
    share = lambda hits: round(sum(hits) / len(hits), 3)  # noqa: E731
    world = share([bool(f) and all(k != "blob" for _, k in f) for f, _ in seen])
    if captions is None:
        return dict(of_the_world=world)
    want = [labels(c) for c in captions]
    return dict(of_the_world=world, background=share([b == wb for (_, b), (_, wb) in zip(seen, want)]),
                colours=share([{c for c, _ in f} == {c for c, _ in w} for (f, _), (w, _) in zip(seen, want)]),
                shapes=share([f == w for (f, _), (w, _) in zip(seen, want)]))


@torch.no_grad()
def prior_score(bb, n=64, guidance=4.0):
    """How well a loaded shapes prior `bb` knows its world: (numbers, figure). Samples: Euler, 30
    steps, from noise. The number: the share of samples drawn for the captions of n real test
    images (classifier-free guidance `guidance`) whose caption read_back reads back from their
    pixels (the shape's colour and kind, the background), beside the same share of the real images
    themselves (the judge's ceiling). A blob, a smear or a caption ignored fails. The figure:
    samples from the null text (rows 1-2), samples for the captions of rows 5-6 (rows 3-4), real
    test images (rows 5-6). Where it fails: the share read back after the VAE's round trip, and
    from one-step estimates x0 = z_t - t v of the real images' latents noised to t, with their
    captions and with the null text (equal shares: the words are ignored); and how far each word
    of a caption moves the velocity (words_read); and read_parts' shares of each set of images."""
    real, captions = batch("test", 0, n)
    g = torch.Generator().manual_seed(0)
    text = bb.encode_text(captions)
    pixels = lambda latents: ((bb.decode(latents) + 1) / 2).clamp(0, 1)  # noqa: E731

    def draw(context):
        x = torch.randn((n,) + bb.latent_shape(bb.train_size, bb.train_size), generator=g)
        ts = torch.linspace(1, 0, 31)
        for t, t2 in zip(ts[:-1], ts[1:]):
            s = torch.full((n,), float(t))
            v = bb.velocity(x, s)[0]
            if context is not None:
                v = v + guidance * (bb.velocity(x, s, context=context)[0] - v)
            x = x + (t2 - t) * v
        return pixels(x)
    free, told = draw(None), draw(text)
    rows = [torch.cat(list(b[:8]), 2) for b in (free[:8], free[8:16], told[:8], told[8:16], real[:8], real[8:16])]
    share = lambda imgs: round(read_back(imgs, captions).float().mean().item(), 3)  # noqa: E731
    z = bb.encode(real * 2 - 1)
    one_step = {}
    for t in (0.2, 0.4, 0.6, 0.8):
        zt = (1 - t) * z + t * torch.randn(z.shape, generator=g)
        for name, context in (("caption", text), ("null text", None)):
            one_step[f"t={t}, {name}"] = share(pixels(zt - t * bb.velocity(zt, torch.full((n,), t), context=context)[0]))
    return dict(samples=n, guidance=guidance, read_back_real_test=share(real),
                read_back_samples_for_captions=share(told), read_back_vae_round_trip=share(pixels(z)),
                parts={"samples for captions": read_parts(told, captions), "null-text samples": read_parts(free),
                       "real test": read_parts(real, captions)},
                read_back_one_step_estimates=one_step, words_read=words_read(bb, z, captions, g)), torch.cat(rows, 1)


def _swap(caption, word):
    """The caption with its shape's kind, its colour or its background ("kind", "colour", "bg")
    replaced by another the image does not hold."""
    things, bg = caption.rsplit(" on ", 1)
    colour, kind = things.split(" ")[:2]
    other = [c for c in COLOURS if c not in (colour, bg)][0]
    if word == "kind":
        kind = SHAPES[(SHAPES.index(kind) + 1) % len(SHAPES)]
    colour, bg = (other, bg) if word == "colour" else (colour, other) if word == "bg" else (colour, bg)
    return f"{colour} {kind} on {bg}"


@torch.no_grad()
def words_read(bb, z, captions, g, times=(0.5, 0.9)):
    """How much each word of the caption moves the prior: the velocity's relative change
    |v(caption) - v(changed)| / |v(caption)| at latents z noised to t, when the shape's kind, its
    colour or the background word is swapped, and when the caption is dropped (null text)."""
    out, words = {}, ("kind", "colour", "bg")
    text = bb.encode_text(captions)  # each context once, not once per time
    swapped = {w: bb.encode_text([_swap(c, w) for c in captions]) for w in words}
    for t in times:
        zt = (1 - t) * z + t * torch.randn(z.shape, generator=g)
        s = torch.full((len(z),), t)
        v = bb.velocity(zt, s, context=text)[0]
        moved = {w: bb.velocity(zt, s, context=swapped[w])[0] for w in words}
        moved["null text"] = bb.velocity(zt, s)[0]
        out.update({f"t={t}, {w}": round(float((v - m).norm() / v.norm()), 3) for w, m in moved.items()})
    return out
