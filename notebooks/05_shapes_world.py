# %% [markdown]
# # 05 · A prior that knows its world: the paper's method where it can show
#
# On the photo backbones a failure of the method cannot be told from a failure of the prior: a
# 3M-parameter model pre-trained on 73 photos knows little of photos. Here the world is small
# enough for such a model to learn: one or two flat shapes of named colours on a gradient, 64 px,
# drawn by code with a caption (`shapes.py`). `tiny-shapes` has the FLUX classes and goes through
# the same code path (`backbones.load`, `bridge`, `prompt`, `train.py`, `sample.py`, `eval.py`);
# its T5 encoder was trained with the prior on the captions, so words mean something to it.
#
# Everything here is the paper's method: prompts of the paper's form, the paper's sampler, the
# decoded latent as the output (`extensions.PAPER_DECODE`). Every comparison is over training
# seeds (each a separate run: its own init, training pairs and draws), scored on the world's
# **test** split, reported as a mean with a 95% Student-t interval over seeds (`lab.py`).

# %%
BACKBONE = "tiny-shapes"
import json, os, sys
sys.path.insert(0, os.path.abspath(".."))  # the repo's own modules
import torch
import matplotlib.pyplot as plt
import backbones, bridge, degrade, eval as metrics, lab

FAST = bool(os.environ.get("YPT_FAST"))     # CI sets this: far fewer steps, same code
torch.set_num_threads(int(os.environ.get("YPT_THREADS", "2")))
SEEDS = [0, 1] if FAST else [0, 1, 2, 3, 4]
STEPS = 2 if FAST else 200                  # prompt training steps, the same for every arm
N_TEST = 4 if FAST else 100                 # test images per score
TASKS = degrade.TASKS

def show(ax, img, title=""):
    ax.imshow(img.clamp(0, 1).permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=8); ax.axis("off")

bb = backbones.load(BACKBONE)
print(f"{bb.name}: prompt {bb.prompt_shape}, T0 {bb.t0}, {bb.train_size} px, lr {bb.train_lr}; "
      f"{len(SEEDS)} seeds x {STEPS} steps per arm, {N_TEST} test images")

# %% [markdown]
# ## The prior
#
# Pre-training's own judgement (`pretrain.py --which=tiny-shapes`, written beside the weights):
# samples from noise with the null text (top two rows) beside real test images (bottom two), and
# for each the PSNR to its nearest neighbour among 20,000 training images. Real test images are new
# draws of the world, so their score is what "of the domain" means here.

# %%
log = json.load(open(os.path.join(backbones.TINY[BACKBONE], "pretrain.json")))
print({k: log[k] for k in ("steps", "minutes", "vae_heldout_psnr_db")})
print("nearest-neighbour PSNR (median):", log["prior"])
img = plt.imread(os.path.join(backbones.TINY[BACKBONE], "samples.png"))
plt.figure(figsize=(8, 4)); plt.imshow(img, interpolation="nearest"); plt.axis("off")
plt.title("samples (rows 1-2) and real test images (rows 3-4)"); plt.show()

# %% [markdown]
# ## One prompt per degradation (EBR, seed 0)
#
# A prompt per task, trained for STEPS steps on the training split, restores the test split.
# Three test images each: degraded | bare backbone (the same sampler, no prompt) | prompt | clean.

# %%
first = {}
fig, axes = plt.subplots(len(TASKS), 12, figsize=(14, 1.4 * len(TASKS)))
for r, task in enumerate(TASKS):
    test = lab.held_out(bb, task, "test", N_TEST)
    p = lab.trained(bb, task, seed=0, bridge_name="ebr", steps=STEPS)
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
# ## Table 4: naive, DDBM, EBR (the same recipe, steps and seeds)
#
# Each arm trains on its own construction's states and is sampled the way the paper samples it
# (`bridge.py`): naive by the backbone's ordinary flow step from the noised degraded latent, so its
# states leave the family it was trained on; DDBM and EBR on their own families. Task: rain.

# %%
TASK = "rain"
test = lab.held_out(bb, TASK, "test", N_TEST)
per_seed = {name: [] for name in bridge.BRIDGES}
for name in bridge.BRIDGES:
    for seed in SEEDS:
        p = lab.trained(bb, TASK, seed=seed, bridge_name=name, steps=STEPS)
        rows = lab.scores(bb, [p], name, bb.t0, test)
        per_seed[name].append((lab.mean(rows, "psnr"), lab.mean(rows, "ssim")))
print(f"{TASK}, {N_TEST} test images, {len(SEEDS)} seeds, T0 {bb.t0}: mean ± 95% interval over seeds")
for name, v in per_seed.items():
    print(f"  {name:<6} PSNR {lab.fmt([a for a, _ in v])}   SSIM {lab.fmt([b for _, b in v], '')}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
for ax, k, label in ((axes[0], 0, "PSNR (dB)"), (axes[1], 1, "SSIM")):
    for i, name in enumerate(bridge.BRIDGES):
        vals = [v[k] for v in per_seed[name]]
        m, h = lab.interval(vals)
        ax.scatter([i] * len(vals), vals, s=12, alpha=0.6)
        ax.errorbar([i], [m], yerr=[h if h < 1e9 else 0], fmt="k_", capsize=6)
    ax.set_xticks(range(3)); ax.set_xticklabels(bridge.BRIDGES); ax.set_xlabel("construction"); ax.set_ylabel(label)
axes[0].set_title(f"{TASK}: each dot a seed, bars the 95% interval"); plt.tight_layout(); plt.show()

# %% [markdown]
# ## Verdicts
#
# The paper's order naive < DDBM < EBR, each pair judged on per-seed differences (the same seeds
# and test images): "reproduced" only where the whole interval is on the paper's side.

# %%
def diffs(a, b, k=0):
    return [x[k] - y[k] for x, y in zip(per_seed[a], per_seed[b])]

for a, b in (("ebr", "naive"), ("ebr", "ddbm"), ("ddbm", "naive")):
    d = diffs(a, b)
    print(f"{a} > {b} (PSNR): {lab.fmt(d)} -> {lab.verdict(d)}")
