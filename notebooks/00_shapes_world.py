# %% [markdown]
# # 00 · A prior that knows its world: where the paper's method can show
#
# On the photo backbones a failure of the method cannot be told from a failure of the prior: a
# 3M-parameter model pre-trained on 73 photos knows little of photos. Here the world is small
# enough for such a model to learn: one flat shape of a named colour on a gradient, 64 px,
# drawn by code with a caption (`data/shapes.py`). `tiny-shapes` has the FLUX classes and goes through
# the same code path (`backbones.load`, `bridge`, `prompt`, `train.py`, `sample.py`, `eval.py`);
# its T5 encoder was trained with the prior on the captions, so words mean something to it.
#
# This notebook shows the world, its prior and one prompt per degradation. Notebooks 01-04 then
# test each claim of the paper here first, and on the photo backbones after. Everything on this
# world is the paper's method: prompts of the paper's form, the paper's sampler, the decoded latent
# as the output (`extensions.PAPER_DECODE`). Every comparison is over training seeds (each a
# separate run: its own init, training pairs and draws), scored on the world's **test** split,
# reported as a mean with a 95% Student-t interval over seeds (`lab.py`).

# %%
import functools, json, os, sys
sys.path.insert(0, os.path.abspath(".."))  # the repo's own modules
import matplotlib.pyplot as plt
import backbones, metrics, lab
from data import degrade
from lab import FAST, N_TEST, SEEDS, STEPS, WORLD  # the notebooks' shared opening and the world's settings
TASKS = degrade.TASKS
show = functools.partial(lab.show, fontsize=8, interpolation="nearest")  # 64 px images: every pixel seen

bb = backbones.load(WORLD)
print(f"{bb.name}: prompt {bb.prompt_shape}, T0 {bb.t0}, {bb.train_size} px, lr {bb.train_lr}; "
      f"{len(SEEDS)} seeds x {STEPS} steps per arm, {N_TEST} test images")

# %% [markdown]
# ## The prior
#
# Pre-training's own judgement (`pretrain.py --which=tiny-shapes`, written beside the weights):
# samples from noise with the null text (rows 1-2), samples drawn for the captions of the real test
# images in rows 5-6 (rows 3-4, classifier-free guidance 4), and those real test images. The
# numbers come from a judge (`shapes.read_back`, which reads a caption back from the pixels: each
# shape's colour and kind from its outline, the background from the border): the share of samples
# drawn for a caption that it reads that caption back from, against the share of real images;
# and, where that all-or-nothing test fails, which part does (`shapes.read_parts`: the share that
# reads as some image of this world, and those with the caption's background, colour, shape).

# %%
log = json.load(open(os.path.join(backbones.TINY[WORLD], "pretrain.json")))
print({k: log[k] for k in ("steps", "minutes", "vae_heldout_psnr_db")})
print("the judge:", log["prior"])
img = plt.imread(os.path.join(backbones.TINY[WORLD], "samples.png"))
plt.figure(figsize=(8, 6)); plt.imshow(img, interpolation="nearest"); plt.axis("off")
plt.title("from the null text (rows 1-2); for the captions of rows 5-6 (rows 3-4); real test images (rows 5-6)",
          fontsize=8); plt.show()

# %% [markdown]
# ## The learning rate, chosen on val
#
# Every prompt on this world (here and in notebooks 01-04) trains with one learning rate, chosen by
# `lab.learning_rate`: an EBR rain prompt (seed 0, T0, STEPS steps) per candidate, restored by the
# paper's sampler on **val** images; the best PSNR wins. The same rate then serves every arm, task
# and T0 (the paper trains its arms with one recipe).

# %%
LR, on_val = lab.learning_rate(bb)
print("rain on val, PSNR by learning rate:", {f"{r:g}": round(v, 2) for r, v in on_val.items()}, f"-> {LR:g}")

# %% [markdown]
# ## One prompt per degradation (EBR, seed 0)
#
# A prompt per task, trained for STEPS steps on the training split at the rate LR, restores the
# test split. Three test images each: degraded | bare backbone (the same sampler, no prompt) | prompt | clean.

# %%
first = {}
fig, axes = plt.subplots(len(TASKS), 12, figsize=(14, 1.4 * len(TASKS)))
for r, task in enumerate(TASKS):
    test = lab.held_out(bb, task, "test", N_TEST)
    p = lab.trained(bb, task, seed=0, bridge_name="ebr", steps=STEPS, lr=LR)
    bare, ours = lab.restored(bb, [None], "ebr", bb.t0, test), lab.restored(bb, [p], "ebr", bb.t0, test)
    m = lambda outs: lab.mean([metrics.metrics(o, c) for o, (_, c) in zip(outs, test)])  # noqa: E731
    first[task] = dict(degraded=lab.mean([metrics.metrics(d, c) for d, c in test]), bare=m(bare), prompt=m(ours))
    for k in range(3):
        d, c = test[k]
        for j, (name, x) in enumerate((("degraded", d), ("bare", bare[k]), ("prompt", ours[k]), ("clean", c))):
            show(axes[r, 4 * k + j], x, f"{task}: {name}" if k == 0 else name)
plt.tight_layout()
if not FAST:  # the README's first picture
    plt.savefig(os.path.join("..", "docs", "shapes_world.png"), dpi=80)
plt.show()
print(f"{'task':<10} {'degraded':>9} {'bare':>9} {'prompt':>9}   (PSNR dB, {N_TEST} test images, one seed)")
for task, m in first.items():
    print(f"{task:<10} {m['degraded']:9.2f} {m['bare']:9.2f} {m['prompt']:9.2f}")

# %% [markdown]
# ## Where each claim of the paper is tested
#
# | the paper | this world, then the photos |
# |---|---|
# | Fig. 2, Table 5: words and token-space tuning do not restore, the residual prompt does | notebook 01 |
# | Table 4 (naive < DDBM < EBR), Fig. 3, Fig. 6, Fig. 7 (T0) | notebook 02 |
# | Sec. 3.3: mixing two prompts by averaging velocities; video | notebook 03 |
# | Tables 1-3: beside methods built for restoration | notebook 04 |
