"""Synthetic degradations, each with randomized, seeded parameters.

    degrade(task, x, g) -> degraded x
x: an image [3, H, W] or a clip [3, F, H, W] in [0, 1]; g: a torch.Generator. A clip gets one
set of parameters for all its frames (one scene, one weather) but fresh rain and snow per frame.
"""
import math

import torch
import torch.nn.functional as F

TASKS = ("haze", "rain", "snow", "lowlight", "blur")


def _u(g, lo, hi):
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def _conv(x, k):
    """Convolve each channel of [C, H, W] with a 2-D kernel, reflect padding."""
    kh, kw = k.shape
    xp = F.pad(x[None], (kw // 2, kw - 1 - kw // 2, kh // 2, kh - 1 - kh // 2), mode="reflect")
    return F.conv2d(xp.transpose(0, 1), k[None, None]).transpose(0, 1)[0]


def _gauss(sigma):
    r = max(1, math.ceil(3 * sigma))
    a = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-a**2 / (2 * sigma**2))
    return (k[:, None] * k[None, :]) / k.sum() ** 2


def _line_kernel(length, angle_deg):
    """A normalized line of `length` pixels at `angle` (degrees from vertical)."""
    n = int(length) | 1
    k = torch.zeros(n, n)
    a = math.radians(angle_deg)
    for s in torch.linspace(-(n - 1) / 2, (n - 1) / 2, 4 * n):
        y, x = round((n - 1) / 2 + s.item() * math.cos(a)), round((n - 1) / 2 + s.item() * math.sin(a))
        k[min(max(y, 0), n - 1), min(max(x, 0), n - 1)] = 1
    return k / k.sum()


# ------------------------------------------------------------------------- the five tasks

def haze_params(g):
    return dict(beta=_u(g, 0.6, 1.8), A=_u(g, 0.75, 1.0), tint=[_u(g, -0.04, 0.04) for _ in range(3)],
                mix=_u(g, 0.3, 0.8))


def haze(x, p, g):
    # I = J t + A (1 - t), t = exp(-beta d); depth proxy d mixes "far at the top" with the
    # smoothed luminance of the scene, normalized to [0, 1]
    _, h, w = x.shape
    ramp = torch.linspace(1, 0, h)[:, None].expand(h, w)
    lum = _conv(x.mean(0, keepdim=True), _gauss(max(h, w) / 16))[0]
    d = p["mix"] * ramp + (1 - p["mix"]) * (1 - lum)
    d = (d - d.min()) / (d.max() - d.min() + 1e-6)
    t = torch.exp(-p["beta"] * (0.3 + 0.7 * d))
    A = (p["A"] + torch.tensor(p["tint"])).clamp(0, 1).view(3, 1, 1)
    return x * t + A * (1 - t)


def rain_params(g):
    return dict(density=_u(g, 0.003, 0.01), length=_u(g, 9, 21), angle=_u(g, -25, 25),
                strength=_u(g, 0.5, 0.9), width=_u(g, 0.5, 1.2))


def rain(x, p, g):
    # sparse noise, thresholded, smeared with a line kernel at an angle, screen-blended
    _, h, w = x.shape
    drops = (torch.rand(1, h, w, generator=g) < p["density"]).float()
    drops = _conv(drops, _gauss(p["width"]) * 4)
    streaks = _conv(drops, _line_kernel(p["length"], p["angle"])) * p["length"] * 0.6
    streaks = (streaks * p["strength"]).clamp(0, 1)
    return 1 - (1 - x) * (1 - streaks)


def snow_params(g):
    return dict(density=_u(g, 0.002, 0.006), A=_u(g, 0.85, 1.0), beta=_u(g, 0.2, 0.6), angle=_u(g, -20, 20))


def snow(x, p, g):
    # layered flakes of several sizes with blur, plus mild haze
    _, h, w = x.shape
    out = x * math.exp(-p["beta"]) + p["A"] * (1 - math.exp(-p["beta"]))
    for size, dens, bright in ((0.6, 1.0, 0.8), (1.2, 0.4, 0.9), (2.2, 0.12, 1.0)):
        flakes = (torch.rand(1, h, w, generator=g) < p["density"] * dens).float()
        flakes = _conv(flakes, _gauss(size)) * (2 * math.pi * size**2)
        flakes = _conv(flakes, _line_kernel(3 + 2 * size, p["angle"])) * 1.5
        out = out + (bright - out) * flakes.clamp(0, 1)
    return out


def lowlight_params(g):
    return dict(scale=_u(g, 0.08, 0.35), gamma=_u(g, 1.2, 2.0), photons=_u(g, 60, 300), read=_u(g, 0.003, 0.015))


def lowlight(x, p, g):
    # exposure scale and gamma, then Poisson-Gaussian sensor noise
    dark = p["scale"] * x.clamp(0, 1) ** p["gamma"]
    shot = torch.poisson(dark * p["photons"], generator=g) / p["photons"]
    return shot + p["read"] * torch.randn(x.shape, generator=g)


def blur_params(g):
    # a random camera-shake trajectory (after Boracchi & Foi 2012, simplified): a random walk
    # with momentum, rasterized into a kernel
    n, size = 64, int(_u(g, 7, 15)) | 1
    pos, vel, pts = torch.zeros(2), torch.randn(2, generator=g), []
    for _ in range(n):
        vel = 0.8 * vel + 0.5 * torch.randn(2, generator=g)
        pos = pos + vel / vel.norm().clamp(min=1e-6) * 0.5
        pts.append(pos.clone())
    pts = torch.stack(pts)
    pts = pts - pts.mean(0)
    pts = pts / pts.abs().max().clamp(min=1e-6) * (size - 1) / 2 + (size - 1) / 2
    k = torch.zeros(size, size)
    for y, x in pts.round().long().clamp(0, size - 1).tolist():
        k[y, x] += 1
    return dict(kernel=k / k.sum())


def blur(x, p, g):
    return _conv(x, p["kernel"])


FUNCS = dict(haze=(haze_params, haze), rain=(rain_params, rain), snow=(snow_params, snow),
             lowlight=(lowlight_params, lowlight), blur=(blur_params, blur))


def known(task):
    """A clear error for a task we have no degradation for."""
    if task not in FUNCS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def degrade(task, x, g):
    """Degrade an image [3, H, W] or a clip [3, F, H, W]; result clamped to [0, 1]."""
    known(task)
    make, apply = FUNCS[task]
    p = make(g)
    if x.ndim == 3:
        return apply(x, p, g).clamp(0, 1)
    return torch.stack([apply(x[:, f], p, g) for f in range(x.shape[1])], dim=1).clamp(0, 1)
