"""The offline photo catalogue: the photos scikit-image/-learn ship and those of Debian's wallpaper
packages, with a caption each; the held-out evaluation set and its fixed crops; the tiny GIF.
"""
import functools
import glob
import os
import sys

import numpy as np
import torch

from .media import InputError, read_image, resize

# The real photos that scikit-image and scikit-learn ship (always here: pip installs them), with a
# short caption each.
PIP_PHOTOS = {
    "astronaut": "a photo of an astronaut in a white space suit",
    "chelsea": "a photo of a ginger cat",
    "china": "a photo of a chinese temple",
    "hubble_deep_field": "a photo of galaxies in deep space",
    "retina": "a photo of a retina",
    "immunohistochemistry": "a microscope photo of stained tissue",
    "motorcycle_left": "a photo of a red motorcycle",
    "motorcycle_right": "a photo of a red motorcycle",
    "camera": "a grayscale photo of a cameraman",
    "brick": "a grayscale photo of a brick wall",
    "grass": "a grayscale photo of grass",
    "gravel": "a grayscale photo of gravel",
    "moon": "a grayscale photo of the moon surface",
    "coins": "a grayscale photo of coins",
    "clock": "a grayscale photo of a clock",
    "cell": "a grayscale microscope photo of a cell",
}
# Photos and illustrations of Debian's wallpaper packages (1-24 megapixels), read from where apt
# installs them (README: apt-get install plasma-workspace-wallpapers ukui-wallpapers lomiri-wallpapers).
# YPT_DEBIAN_ROOT points the catalogue elsewhere (default /usr/share): an empty folder runs as a
# machine without them (.ci/run's second pass).
DEBIAN_PACKAGES = ("plasma-workspace-wallpapers", "ukui-wallpapers", "lomiri-wallpapers",
                   "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04")
ROOT_VARIABLE = "YPT_DEBIAN_ROOT"
DEBIAN_PHOTOS = {
    "Altai": "an illustration of blue mountains over a lake",
    "Autumn": "a painting of an autumn tree and a girl",
    "BytheWater": "a photo of a wooden pier at sunset",
    "Canopee": "an abstract illustration of a yellow road",
    "Cascade": "an abstract illustration of green and blue terraces",
    "Cluster": "an abstract illustration of red hexagons",
    "ColdRipple": "a grey photo of a jetty in the fog",
    "ColorfulCups": "a photo of colourful cups from above",
    "DarkestHour": "a dark blue photo of a lake at dusk",
    "Elarun": "an abstract illustration of blue curves",
    "EveningGlow": "a photo of boats on a lake at sunset",
    "FallenLeaf": "a photo of an autumn leaf",
    "Flow": "an abstract illustration of a rainbow stream of hexagons",
    "FlyingKonqui": "an illustration of a green dragon on blue",
    "Grey": "a grayscale photo of a curved facade",
    "Honeywave": "an abstract illustration of orange and blue shapes",
    "IceCold": "an abstract illustration of blue ice",
    "Kay": "an abstract illustration of pastel triangles",
    "Kite": "a photo of a kite in a blue sky with clouds",
    "Kokkini": "an abstract illustration of red waves",
    "MilkyWay": "a photo of stars in a purple night sky",
    "OneStandsOut": "a photo of green plants from above",
    "Opal": "an abstract illustration of blue and brown planes",
    "PastelHills": "an abstract illustration of pastel hills",
    "Patak": "an illustration of a paper plane over water",
    "Path": "a photo of a path in a pine forest",
    "SafeLanding": "an illustration of a rocket in a colourful landscape",
    "Shell": "an abstract illustration of purple shells",
    "Volna": "an aerial photo of waves on a beach",
    "summer_1am": "a photo of a lake at dusk",
    "2004default": "an illustration of a pink ribbon on cyan",
    "Bridge_by_Sander_Klootwijk": "a photo of bridge cables over a beach",
    "Dragonfly_by_Bolly": "a photo of leaves against the sky",
    "Fossa_by_Jasper_Roks": "an abstract illustration of red shapes",
    "Infinite-Sea_by_Aury88": "an illustration of the milky way over the sea",
    "Kleiber_by_Lukas_Baubkus": "a photo of a bird on a tree trunk",
    "Painting-Colors_by__herobrine7gamer": "an illustration of coloured stripes",
    "Picture_0B_by_freespace": "a photo of a red bowl with a fig",
    "Picture_1A_by_freespace": "a photo of paint brushes",
    "Wine_by_Jakkub_Mede": "a photo of a room with a chair",
    "aitzgorri_by_Aitzol_Berasategi": "a photo of autumn trees below a mountain",
    "analogpattern_by_Peter_Nerlich": "a photo of a blurred green and purple pattern",
    "calla": "an illustration of a calla flower",
    "city": "an illustration of flat teal shapes",
    "desert": "an illustration of a yellow dune",
    "firstgeneration": "an illustration of a mask on blue",
    "fluent-color": "an abstract illustration of purple waves",
    "focal-ubuntukylin": "an illustration of a logo on dark blue",
    "free_by_Peter_Nerlich": "a photo of a bird below lamps",
    "friends_by_Aitzol_Berasategi": "a photo of two dogs at a door",
    "goldfish": "an illustration of a pink goldfish",
    "greentock_by_Peter_Nerlich": "a photo of a clock face",
    "life_by_Aitzol_Berasategi": "a photo of a stream among rocks",
    "picosdeeuropa_by_Aitzol_Berasategi": "a photo of a mountain path",
    "rhythm": "an illustration of pink and cyan ribbons",
    "rollpaper": "an illustration of a paper roll",
    "seeding_by_Clements_Engelhardt": "a photo of dandelions at sunset",
    "string": "an abstract illustration of blue and yellow strings",
    "sunset_by_Aitzol_Berasategi": "a photo of the sun over a hill",
    "the-mouse": "an illustration of a glowing creature",
    "umang_by_Abhishek_Mudgal": "an abstract illustration of purple and orange colours",
    "warty-final-ubuntu": "an orange and red texture",
}
# Never seen in pre-training nor in prompt training: the evaluation set. Three pip-shipped photos
# and five real photos of the Debian packages (boats at sunset, a forest path, paint brushes, a
# stream among rocks, a bird on bark: colour, fine texture, foliage, water, bokeh).
# the package of each (the KDE ones, plasma-workspace-wallpapers, are the others)
PACKAGE_OF = {**{n: "ukui-wallpapers" for n in (
    "2004default", "calla", "city", "desert", "firstgeneration", "fluent-color", "focal-ubuntukylin", "goldfish",
    "rhythm", "rollpaper", "string", "the-mouse")},
    "warty-final-ubuntu": "lomiri-wallpapers",
    **{n: "lomiri-wallpapers-16.04" for n in DEBIAN_PHOTOS if "_by_" in n},
    **{n: "lomiri-wallpapers-20.04" for n in (
        "Fossa_by_Jasper_Roks", "Infinite-Sea_by_Aury88", "Kleiber_by_Lukas_Baubkus",
        "Painting-Colors_by__herobrine7gamer")}}
PACKAGE_OF = {n: PACKAGE_OF.get(n, "plasma-workspace-wallpapers") for n in DEBIAN_PHOTOS}
HELD_OUT_PIP = ("coffee", "rocket", "flower")
HELD_OUT_DEBIAN = ("EveningGlow", "Path", "Picture_1A_by_freespace", "life_by_Aitzol_Berasategi",
                   "Kleiber_by_Lukas_Baubkus")
HELD_OUT = HELD_OUT_PIP + HELD_OUT_DEBIAN
TRAIN_PHOTOS = {**PIP_PHOTOS, **{k: v for k, v in DEBIAN_PHOTOS.items() if k not in HELD_OUT}}
MAX_SIDE = 1536  # photos are read with their short side at most this (the originals reach 6000 px)
GIF_CAPTION = "a short animation"


def debian_root():
    return os.environ.get(ROOT_VARIABLE) or "/usr/share"


def debian_path(name):
    """Where apt put a Debian wallpaper (the largest version of it), or None if not installed."""
    return _debian_path(debian_root(), name)


@functools.lru_cache(maxsize=None)
def _debian_path(root, name):
    from PIL import Image
    found = [f for f in glob.glob(os.path.join(root, "wallpapers", name, "contents", "images", "*"))
             + glob.glob(os.path.join(root, "backgrounds", name + ".*")) if f.lower().endswith((".png", ".jpg"))]
    if not found:
        return None
    def pixels(f):
        with Image.open(f) as im:
            return im.size[0] * im.size[1]
    return max(found, key=pixels)


def available(names):
    """The names among `names` whose photo is on this machine (pip photos always are). Where some
    of them are missing, says once per process on stderr what that changes (missing_notice)."""
    have = [n for n in names if n not in DEBIAN_PHOTOS or debian_path(n)]
    if len(have) < len(names):
        missing_notice()
    return have


_told = set()


def missing_notice():
    """One stderr line, once per process and catalogue root: which Debian photos are missing and
    what that changes. Returns the line ("" when nothing is missing)."""
    root = debian_root()
    missing = [n for n in DEBIAN_PHOTOS if not debian_path(n)]
    if not missing:
        return ""
    packages = sorted({PACKAGE_OF[n] for n in missing}, key=DEBIAN_PACKAGES.index)
    train = [n for n in TRAIN_PHOTOS if n not in missing]
    held = [n for n in HELD_OUT if n not in missing]
    line = (f"note: {len(missing)} of the {len(DEBIAN_PHOTOS)} Debian wallpaper photos are not installed under "
            f"{root} ({', '.join(packages)}): the shipped training photos are {len(train)} of {len(TRAIN_PHOTOS)}, "
            f"the held-out set {len(held)} of {len(HELD_OUT)} photos, so training and evaluation figures are "
            f"not comparable with README.md's and docs/RESULTS.md's; to install them: "
            f"apt-get install {' '.join(DEBIAN_PACKAGES[:3])}")
    if root not in _told:
        _told.add(root)
        print(line, file=sys.stderr, flush=True)
    return line


def photo(name):
    """One photo as [3, H, W] in [0, 1] (grayscale repeated to RGB, short side <= MAX_SIDE)."""
    import skimage.data as sk
    if name in DEBIAN_PHOTOS:
        path = debian_path(name)
        if path is None:
            raise InputError(f"photo {name!r} is not installed under {debian_root()}: "
                             f"apt-get install {PACKAGE_OF[name]}")
        return read_image(path, MAX_SIDE)
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images
        imgs = load_sample_images()
        a = imgs.images[[os.path.basename(f) for f in imgs.filenames].index(name + ".jpg")]
    elif name.startswith("motorcycle_"):
        left, right, _ = sk.stereo_motorcycle()
        a = left if name.endswith("left") else right
    else:
        a = getattr(sk, name)()
    t = torch.from_numpy(np.array(a)).float() / 255
    t = t[None].repeat(3, 1, 1) if t.ndim == 2 else t[..., :3].permute(2, 0, 1)
    return t.contiguous()


def gif_frames():
    """The tiny animated GIF scikit-image ships: [3, F, H, W]."""
    import imageio.v3 as iio
    import skimage.data as sk
    a = iio.imread(os.path.join(os.path.dirname(sk.__file__), "no_time_for_that_tiny.gif"))
    return torch.from_numpy(a[..., :3]).float().permute(3, 0, 1, 2) / 255


def eval_crops(size=128, per_photo=4):
    """The evaluation set: `per_photo` fixed crops of each held-out photo on this machine, resized
    so that the short side is 2*size. Returns [(name, [3, size, size])]."""
    out = []
    for name in available(HELD_OUT):
        img = photo(name)
        _, h, w = img.shape
        s = 2 * size / min(h, w)
        img = resize(img, round(h * s), round(w * s))
        _, h, w = img.shape
        for i in range(per_photo):
            y = (h - size) * (i // 2)
            x = (w - size) * (i % 2)
            out.append((f"{name}_{i}", img[:, y:y + size, x:x + size].contiguous()))
    return out
