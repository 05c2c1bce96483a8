"""How a restoration is scored: PSNR and SSIM in two conventions, and the paper's normalized score.

Ours (`metrics`): uint8-quantized, on RGB and on MATLAB's luma Y, SSIM with the 11x11 Gaussian
window of Wang et al. The paper's (`paper_metrics`, the authors' evaluation code): float RGB in
[0, 1], scikit-image's defaults (SSIM's 7x7 uniform window). Clips: the mean over frames.
`score`: PSNR and SSIM min-max normalized across candidates, then averaged (paper Sec. 4.4).
"""
import math

import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def quantize(x):
    """[0, 1] float -> the float values (0..255) of its uint8 image."""
    return (x.clamp(0, 1) * 255).round()


def rgb_to_y(x255):
    """MATLAB rgb2ycbcr luma of [3, ...] in 0..255 -> [1, ...] in 16..235."""
    r, g, b = x255 / 255
    return (16 + 65.481 * r + 128.553 * g + 24.966 * b)[None]


def psnr(a255, b255):
    """PSNR (dB) of two arrays in 0..255; inf where they are equal."""
    mse = (a255 - b255).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


def mean_psnr(outs, refs):
    """The mean PSNR (dB) of images in [0, 1] against their references, both uint8-quantized: a
    training run's validation line (train.py, baselines.py)."""
    return sum(psnr(quantize(o), quantize(r)) for o, r in zip(outs, refs)) / len(outs)


def _gauss_window(size=11, sigma=1.5):
    """The 1-D Gaussian whose outer product is SSIM's 11x11 window: two 1-D passes give the same
    sums as one 2-D pass at a fifth of the cost (choose_decode.py scores a hundred decodes a pair)."""
    a = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-a**2 / (2 * sigma**2))
    return (g / g.sum())[None, None, None]


def ssim(a255, b255):
    """Mean SSIM of [C, H, W] images in 0..255 (Wang et al. 2004), valid windows only."""
    g = _gauss_window()
    blur = lambda x: F.conv2d(F.conv2d(x, g), g.transpose(2, 3))  # noqa: E731
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a255.double()[:, None], b255.double()[:, None]
    mu_a, mu_b = blur(a), blur(b)
    saa = blur(a * a) - mu_a**2
    sbb = blur(b * b) - mu_b**2
    sab = blur(a * b) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return m.mean().item()


def metrics(pred, target):
    """PSNR/SSIM in RGB and on Y of an image [3, H, W] or a clip [3, F, H, W] (mean over frames)."""
    if pred.ndim == 4:
        per = [metrics(pred[:, f], target[:, f]) for f in range(pred.shape[1])]
        return {k: sum(p[k] for p in per) / len(per) for k in per[0]}
    p, t = quantize(pred), quantize(target)
    py, ty = rgb_to_y(p), rgb_to_y(t)
    return dict(psnr=psnr(p, t), ssim=ssim(p, t), psnr_y=psnr(py, ty), ssim_y=ssim(py, ty))


def paper_metrics(pred, target):
    """PSNR and SSIM as the authors' evaluation code scores them, by the same library calls:
    scikit-image on float RGB in [0, 1], no quantization, data_range 1, channel_axis 2, its
    default 7x7 uniform window. A clip: the mean over frames."""
    if pred.ndim == 4:
        per = [paper_metrics(pred[:, f], target[:, f]) for f in range(pred.shape[1])]
        return {k: sum(p[k] for p in per) / len(per) for k in per[0]}
    a = pred.detach().double().cpu().permute(1, 2, 0).numpy()
    b = target.detach().double().cpu().permute(1, 2, 0).numpy()
    return dict(psnr_paper=float(peak_signal_noise_ratio(b, a, data_range=1)),
                ssim_paper=float(structural_similarity(b, a, data_range=1, channel_axis=2)))


def restorable(pair_list):
    """(pairs, their degraded inputs' metrics) without the pairs whose degraded input equals the
    clean image (a blur of one pixel over a flat crop): nothing to restore, and an infinite PSNR
    that would make every mean infinite."""
    kept = [((d, c), m) for d, c in pair_list for m in [metrics(d, c)] if m["psnr"] < float("inf")]
    return [pc for pc, _ in kept], [m for _, m in kept]


def score(results, reference=None):
    """{candidate: {"psnr", "ssim", ...}} -> {candidate: score}: PSNR and SSIM each min-max normalized
    across the candidates, then averaged (the paper's Sec. 4.4 procedure; notebook 02 chooses T0
    with it). With a reference (the degraded input's metrics) it counts among the candidates for
    the range and scores 0: a spread of 0.04 dB among candidates that all gain 5 dB then weighs
    0.04 / 5, where plain min-max would stretch it over the whole scale."""
    norm = {c: [] for c in results}
    for k in ("psnr", "ssim"):
        vals = [r[k] for r in results.values()] + ([reference[k]] if reference else [])
        lo, span = (reference[k] if reference else min(vals)), max(vals) - min(vals)
        for c, r in results.items():
            norm[c].append((r[k] - lo) / span if span > 0 else 1.0)
    return {c: sum(v) / len(v) for c, v in norm.items()}
