"""What the scripts restore and train on: files, photos, degradations and the pairs made of them.

media.py    image and video files (read, write atomically, refuse what is too big), pixel helpers
photos.py   the offline photo catalogue: scikit-image/-learn's photos and Debian's wallpapers
shapes.py   the shapes world: captioned images that code draws, for the tiny-shapes prior
degrade.py  the synthetic degradations (haze, rain, snow, low light, blur), seeded
pairs.py    (degraded, clean) pairs: crops, virtual-camera clips, folders, JSON lists, generated
dataset.py  the pairs as a stream: a torch Dataset whose n-th item is the n-th pair of a seeded stream
"""
