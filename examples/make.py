"""Make the example inputs from the held-out photos (never seen in training):
one degraded 256 px image per task, and a short degraded clip. Deterministic.

    python examples/make.py
    python sample.py examples/haze.png --tasks=haze
    python sample.py examples/haze.png --tasks=haze --paper --out=examples/haze_paper.png
    python examples/make.py --sheet=haze
        # -> docs/example_haze.png: degraded | the paper's method | with extensions | clean, with
        #    PSNR / SSIM, from the very files the README's first command reads and writes
        #    (any of haze, rain, snow, lowlight, blur)
"""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from data import degrade  # noqa: E402
from data import media  # noqa: E402
from data import pairs  # noqa: E402
from data import photos  # noqa: E402

SOURCES = dict(haze="rocket", rain="coffee", snow="flower", lowlight="coffee", blur="rocket")

def sheet(task="haze"):
    """Put the example, its restorations by sample.py (the paper's method, and with extensions)
    and its clean source side by side, labelled with PSNR / SSIM against the clean image."""
    from PIL import Image, ImageDraw

    import metrics
    names = [("degraded", f"{task}.png"), ("the paper's method", f"{task}_paper.png"),
             ("with extensions", f"{task}_restored_{task}.png"), ("clean", f"clean/{task}.png")]
    paths = [os.path.join(HERE, f) for _, f in names]
    for path in paths:
        if not os.path.isfile(path):
            sys.exit(f"error: {path} is missing (run: python sample.py examples/{task}.png --tasks={task} and "
                     f"python sample.py examples/{task}.png --tasks={task} --paper --out=examples/{task}_paper.png)")
    imgs = [media.read_image(path) for path in paths]
    _, h, w = imgs[0].shape
    out = Image.new("RGB", (4 * w + 12, h + 22), "white")
    draw = ImageDraw.Draw(out)
    for i, ((label, _), img) in enumerate(zip(names, imgs)):
        if i < 3:
            m = metrics.metrics(img, imgs[-1])
            label += f"  {m['psnr']:.2f} dB / {m['ssim']:.3f}"
        out.paste(Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)), (i * (w + 4), 0))
        draw.text((i * (w + 4) + 4, h + 5), label, fill="black")
    dest = os.path.join(os.path.dirname(HERE), "docs", f"example_{task}.png")
    media.write_image(dest, torch.from_numpy(np.array(out)).permute(2, 0, 1) / 255.0)  # atomic, like every output
    print("wrote", dest)


def main():
    os.makedirs(os.path.join(HERE, "clean"), exist_ok=True)
    for i, (task, name) in enumerate(SOURCES.items()):
        img = photos.photo(name)
        _, h, w = img.shape
        s = 256 / min(h, w)
        img = media.resize(img, round(h * s), round(w * s))
        _, h, w = img.shape
        img = img[:, (h - 256) // 2:(h + 256) // 2, (w - 256) // 2:(w + 256) // 2]
        media.write_image(os.path.join(HERE, "clean", f"{task}.png"), img)
        media.write_image(os.path.join(HERE, f"{task}.png"), degrade.degrade(task, img, torch.Generator().manual_seed(i)))
    g = torch.Generator().manual_seed(10)
    clip = pairs.camera_clip(photos.photo("flower"), 64, 17, g)
    media.write_video(os.path.join(HERE, "clean", "clip_rain.mp4"), clip, 8.0)
    media.write_video(os.path.join(HERE, "clip_rain.mp4"), degrade.degrade("rain", clip, g), 8.0)
    print("wrote", sorted(os.listdir(HERE)))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args in (["--help"], ["-h"]):
        print(__doc__.strip())
    elif not args:
        main()
    elif len(args) == 1 and (args[0] == "--sheet" or args[0].startswith("--sheet=")):
        task = args[0].partition("=")[2] or "haze"
        if task not in SOURCES:
            sys.exit(f"error: --sheet={task}: the examples are {', '.join(SOURCES)}")
        sheet(task)
    else:
        sys.exit(f"error: unknown option {' '.join(args)} (python examples/make.py [--sheet[=TASK]] | --help)")
