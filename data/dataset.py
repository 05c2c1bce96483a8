"""Training data that streams: a torch Dataset whose item n is the n-th pair of a seeded stream
over any source (pairs.items), and the sampler that hands one process its micro-batches.

    ds = Pairs(*pairs.items(source, task), task, size, frames, video, seed)
    ds[n]: item order(n // L)[n % L] (a seeded permutation per epoch of the L items), read,
           cropped and, if clean, degraded with a generator seeded from (seed, n): uint8 pairs
Nothing is read while the dataset is built; a worker reads one file (or pair) per item asked
for, and the loader keeps at most 2 batches per worker in flight, so memory does not grow with
the list. A pair depends on (seed, n) alone, not on the worker that made it, so --resume only
restores the step, and micro-batch slot j of a step is the same pair whichever process runs it.
"""
import numpy as np
import torch

from . import pairs


def generator(*key):
    """A CPU generator seeded from a tuple of ints (independent streams for distinct keys)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0]))


def to_uint8(x):
    return (x * 255).round().to(torch.uint8)


class Pairs(torch.utils.data.Dataset):
    """Map-style over sample numbers n = 0, 1, 2, ... (every epoch a new order, every n a new crop
    and degradation). stream: 0 training, 1 the validation pairs (other draws of the same items)."""

    def __init__(self, items, synthetic, task, size, frames, video, seed, stream=0):
        self.items, self.synthetic, self.task = items, synthetic, task
        self.size, self.frames, self.video, self.seed, self.stream = size, frames, video, seed, stream
        self._epoch, self._order = None, None

    def order(self, epoch):
        if epoch != self._epoch:  # one permutation at a time, per process
            self._epoch, self._order = epoch, torch.randperm(len(self.items), generator=generator(self.seed, self.stream, 0, epoch))
        return self._order

    def __getitem__(self, n):
        item = self.items[self.order(n // len(self.items))[n % len(self.items)]]
        px = pairs.load(item)
        deg, clean = pairs.draw(px, self.synthetic, self.task, self.size, self.frames, self.video,
                                generator(self.seed, self.stream, 1, n))
        return to_uint8(deg), to_uint8(clean)  # a quarter of float32's bytes between processes


class Steps(torch.utils.data.Sampler):
    """The sample numbers of this process's micro-batches, step by step from `start` to `steps`:
    slot j of step s (of `slots` per step over all processes) takes n = (s * slots + j) * batch
    + 0..batch-1, so its pairs do not depend on how the slots are shared among processes."""

    def __init__(self, start, steps, mine, slots, batch):
        self.start, self.steps, self.mine, self.slots, self.batch = start, steps, list(mine), slots, batch

    def __iter__(self):
        for s in range(self.start, self.steps):
            for j in self.mine:
                yield from range((s * self.slots + j) * self.batch, (s * self.slots + j + 1) * self.batch)

    def __len__(self):
        return max(0, self.steps - self.start) * len(self.mine) * self.batch


def batches(ds, sampler, batch, workers):
    """The micro-batches (uint8 [B, 3, (F,) H, W] degraded, clean) in the sampler's order, read by
    `workers` processes (0: this one). An error in a worker is raised here as its own one line."""
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers,
                                         prefetch_factor=2 if workers else None)
    it = iter(loader)
    while True:
        try:
            b = next(it)
        except StopIteration:
            return
        except Exception as e:  # torch re-raises a worker's error with its traceback in the message
            if "Original Traceback" not in str(e):
                raise
            raise type(e)(str(e).strip().splitlines()[-1].split(": ", 1)[-1]) from None
        yield b


def val_pairs(items, synthetic, task, size, frames, video, seed, n):
    """n fixed validation pairs of the same source (stream 1: other crops, other degradations)."""
    ds = Pairs(items, synthetic, task, size, frames, video, seed, stream=1)
    return [tuple(x.float() / 255 for x in ds[i]) for i in range(n)]
