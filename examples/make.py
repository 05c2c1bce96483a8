"""Make the example inputs from the held-out photos (never seen in training):
one degraded 256 px image per task, and a short degraded clip. Deterministic.

    python examples/make.py
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import data  # noqa: E402
import degrade  # noqa: E402

SOURCES = dict(haze="rocket", rain="coffee", snow="flower", lowlight="coffee", blur="rocket")

if __name__ == "__main__":
    os.makedirs(os.path.join(HERE, "clean"), exist_ok=True)
    for i, (task, name) in enumerate(SOURCES.items()):
        img = data.photo(name)
        _, h, w = img.shape
        s = 256 / min(h, w)
        img = data.resize(img, round(h * s), round(w * s))
        _, h, w = img.shape
        img = img[:, (h - 256) // 2:(h + 256) // 2, (w - 256) // 2:(w + 256) // 2]
        data.write_image(os.path.join(HERE, "clean", f"{task}.png"), img)
        data.write_image(os.path.join(HERE, f"{task}.png"), degrade.degrade(task, img, torch.Generator().manual_seed(i)))
    g = torch.Generator().manual_seed(10)
    clip = data.camera_clip(data.photo("flower"), 64, 17, g)
    data.write_video(os.path.join(HERE, "clean", "clip_rain.mp4"), clip, 8.0)
    data.write_video(os.path.join(HERE, "clip_rain.mp4"), degrade.degrade("rain", clip, g), 8.0)
    print("wrote", sorted(os.listdir(HERE)))
