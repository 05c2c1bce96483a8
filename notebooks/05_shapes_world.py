# %% [markdown]
# # 05 · A prior that knows its world: the paper's method where it can show
#
# On the photo backbones a failure of the method cannot be told from a failure of the prior: a
# 3M-parameter model pre-trained on 73 photos knows little of photos. Here the world is small
# enough for such a model to learn: one flat shape of a named colour on a gradient, 64 px,
# drawn by code with a caption (`data/shapes.py`). `tiny-shapes` has the FLUX classes and goes through
# the same code path (`backbones.load`, `bridge`, `prompt`, `train.py`, `sample.py`, `eval.py`);
# its T5 encoder was trained with the prior on the captions, so words mean something to it.
#
# Everything here is the paper's method: prompts of the paper's form, the paper's sampler, the
# decoded latent as the output (`extensions.PAPER_DECODE`). Every comparison is over training
# seeds (each a separate run: its own init, training pairs and draws), scored on the world's
# **test** split, reported as a mean with a 95% Student-t interval over seeds (`lab.py`).

# %%
BACKBONE = "tiny-shapes"
import functools, json, os, sys
sys.path.insert(0, os.path.abspath(".."))  # the repo's own modules
import torch
import matplotlib.pyplot as plt
import backbones, bridge, metrics, lab, train
from data import degrade, pairs, shapes

from lab import FAST  # the notebooks' shared opening: CI's fast mode, threads, pictures
SEEDS = [0, 1] if FAST else [0, 1, 2, 3, 4]
STEPS = 2 if FAST else 200                  # prompt training steps, the same for every arm
N_TEST = 4 if FAST else 100                 # test images per score
TASKS = degrade.TASKS
show = functools.partial(lab.show, fontsize=8, interpolation="nearest")  # 64 px images: every pixel seen

bb = backbones.load(BACKBONE, keep_text_encoder=True)  # the encoder is kept for Fig. 2
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
# drawn for a caption that it reads that caption back from, against the share of real images.

# %%
log = json.load(open(os.path.join(backbones.TINY[BACKBONE], "pretrain.json")))
print({k: log[k] for k in ("steps", "minutes", "vae_heldout_psnr_db")})
print("the judge:", log["prior"])
img = plt.imread(os.path.join(backbones.TINY[BACKBONE], "samples.png"))
plt.figure(figsize=(8, 6)); plt.imshow(img, interpolation="nearest"); plt.axis("off")
plt.title("from the null text (rows 1-2); for the captions of rows 5-6 (rows 3-4); real test images (rows 5-6)",
          fontsize=8); plt.show()

# %% [markdown]
# ## The learning rate, chosen on val
#
# Every prompt below trains with one learning rate, chosen here: an EBR rain prompt (seed 0, T0,
# STEPS steps) per candidate, restored by the paper's sampler on **val** images; the best PSNR wins.
# The same rate then serves every arm, task and T0 (the paper trains its arms with one recipe).

# %%
LR_CANDIDATES = [bb.train_lr, 5 * bb.train_lr, 20 * bb.train_lr]
val_rain = lab.held_out(bb, "rain", "val", N_TEST)
on_val = {r: lab.mean(lab.scores(bb, [lab.trained(bb, "rain", seed=0, steps=STEPS, lr=r)], "ebr", bb.t0, val_rain))
          for r in LR_CANDIDATES}
LR = max(LR_CANDIDATES, key=on_val.get)
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
# ## Fig. 2: which conditioning restores? Words, token-space tuning, the encoder's output, the residual prompt
#
# The paper's first finding (Sec. 3.1), where words mean something: this T5 encoder learned the
# world's captions with the prior. From the noisy degraded state at t = T0 (eq. 1), the backbone's
# one-step clean estimate (eq. 2) under six conditionings:
# 1. the null text (the bare backbone);
# 2. the instruction "remove the haze from this image and make it clear" (its words are in the
#    tokenizer's vocabulary, but pre-training read only "and" of them);
# 3. the clean image's own caption: words the prior knows, naming what should be there;
# 4. token embeddings tuned through the frozen encoder (prompt tuning), from the instruction's;
# 5. the encoder's output tuned directly (token states and pooled vector), from the null text's;
# 6. the paper's gated residual prompt.
#
# (4)-(6) minimize the same loss (eq. 2 on eq.-1 states) on the same draws. Each one's learning
# rate is chosen on **val** images (seed 0) from three; then every seed is scored on **test**.

# %%
FIG2_TASK, FIG2_STEPS = "haze", (4 if FAST else 300)
INSTRUCTION = "remove the haze from this image and make it clear"
TUNED = ("token space", "encoder output", "residual prompt")
tok, enc, length = bb.text

def one_step(z_deg, t, eps, condition):
    """The clean estimate x0_hat = z_t - t v (eq. 2) from the eq.-1 state of z_deg at t."""
    context, prompts = condition()
    z_t, sigma = bridge.forward("naive", z_deg, z_deg, eps, t, bb.t0)  # eq. (1): z_clean plays no part
    return bridge.clean_estimate(z_t, sigma, bb.velocity(z_t, sigma, prompts, context=context)[0])

def tune(kind, seed, lr):
    """Conditioning `kind` tuned for FIG2_STEPS AdamW steps on 256 training pairs drawn with `seed`."""
    zd, zc = train.encode_pairs(bb, pairs.make_pairs(bb.data, FIG2_TASK, 256, bb.train_size, 1,
                                                      torch.Generator().manual_seed(seed)), "encode")
    torch.manual_seed(seed)
    if kind == "token space":
        ids = tok([INSTRUCTION], padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
        U = enc.get_input_embeddings()(ids).detach().clone().requires_grad_(True)
        params, condition = [U], lambda: (bb.encode_text(embeds=U), [None])
    elif kind == "encoder output":
        C, Q = (x.detach().clone().requires_grad_(True) for x in (bb.context, bb.pooled))
        params, condition = [C, Q], lambda: ({"context": C, "pooled": Q}, [None])
    else:
        P = bb.new_prompt(task=FIG2_TASK)
        params, condition = list(P.parameters()), lambda: (None, [P])
    opt, g = torch.optim.AdamW(params, lr=lr), torch.Generator().manual_seed(1_000 + seed)
    for _ in range(FIG2_STEPS):
        idx = torch.randint(len(zd), (bb.train_batch,), generator=g)
        t, eps = bridge.sample_t(bb.train_batch, bb.t0, generator=g), torch.randn(zd[idx].shape, generator=g)
        loss = (one_step(zd[idx], t, eps, condition) - zc[idx]).square().mean()
        opt.zero_grad(); loss.backward(); opt.step()
    return condition

@torch.no_grad()
def estimates(condition, split_pairs, latents):
    """Pixels of the one-step estimates of a split's degraded latents (fixed noise)."""
    eps = torch.randn(latents.shape, generator=torch.Generator().manual_seed(2))
    x0 = one_step(latents, torch.full((len(latents),), bb.t0), eps, condition)  # one batch: a caption per image
    return ((bb.decode(x0) + 1) / 2).clamp(0, 1)

def psnrs(images, split_pairs):
    return [metrics.metrics(o, c)["psnr"] for o, (_, c) in zip(images, split_pairs)]

splits = {name: lab.held_out(bb, FIG2_TASK, name, N_TEST) for name in ("val", "test")}
latents = {name: train.encode_pairs(bb, ps, "encode")[0] for name, ps in splits.items()}
captions = bb.encode_text([shapes.draw(shapes.index("test", i))[1] for i in range(N_TEST)])
fixed = {"null text": lambda: (None, [None]), "instruction": lambda: (bb.encode_text([INSTRUCTION]), [None]),
         "its caption": lambda: (captions, [None])}
CANDIDATE_LRS = [bb.train_lr, 5 * bb.train_lr, 20 * bb.train_lr]
lr = {k: max(CANDIDATE_LRS, key=lambda r: lab.mean([{"psnr": v} for v in psnrs(
          estimates(tune(k, 0, r), splits["val"], latents["val"]), splits["val"])])) for k in TUNED}
print("learning rates chosen on val (seed 0):", lr)
outs = {k: estimates(c, splits["test"], latents["test"]) for k, c in fixed.items()}
fig2 = {k: [lab.mean([{"psnr": v} for v in psnrs(outs[k], splits["test"])])] for k in fixed}
for k in TUNED:
    fig2[k] = []
    for seed in SEEDS:
        out = estimates(tune(k, seed, lr[k]), splits["test"], latents["test"])
        outs.setdefault(k, out)  # seed 0's pictures
        fig2[k].append(lab.mean([{"psnr": v} for v in psnrs(out, splits["test"])]))
degraded = lab.mean([metrics.metrics(d, c) for d, c in splits["test"]])
print(f"{FIG2_TASK}, one step from t = T0 = {bb.t0}, {N_TEST} test images (degraded input {degraded:.2f} dB):")
for k, v in fig2.items():
    print(f"  {k:<16} PSNR {lab.fmt(v) if len(v) > 1 else f'{v[0]:.2f} dB (no training: one value)'}")

# %%
cols = ["degraded", *fixed, *TUNED, "clean"]
fig, axes = plt.subplots(3, len(cols), figsize=(1.6 * len(cols), 5))
for i in range(3):
    d, c = splits["test"][i]
    for j, k in enumerate(cols):
        show(axes[i, j], d if k == "degraded" else c if k == "clean" else outs[k][i], k if i == 0 else "")
plt.tight_layout(); plt.show()
fig, ax = plt.subplots(figsize=(8, 3))
for i, k in enumerate(fig2):
    m, h = lab.interval(fig2[k])
    ax.scatter([i] * len(fig2[k]), fig2[k], s=12, alpha=0.6)
    ax.errorbar([i], [m], yerr=[h if h < 1e9 else 0], fmt="k_", capsize=6)
ax.axhline(degraded, color="gray", ls=":", label="degraded input")
ax.set_xticks(range(len(fig2))); ax.set_xticklabels(list(fig2), fontsize=8)
ax.set_xlabel("conditioning"); ax.set_ylabel("PSNR of the one-step estimate (dB)"); ax.legend(fontsize=8)
ax.set_title(f"{FIG2_TASK}: each dot a seed (untrained ones: one value), bars the 95% interval", fontsize=9)
plt.tight_layout(); plt.show()

# %%
ours = fig2["residual prompt"]
best_words = max(("null text", "instruction", "its caption"), key=lambda k: fig2[k][0])
for other in (best_words, "token space", "encoder output"):
    d = [a - b for a, b in zip(ours, fig2[other] * len(ours) if len(fig2[other]) == 1 else fig2[other])]
    print(f"paper (Fig. 2{', Table 5' if other == 'encoder output' else ''}): the residual prompt beats "
          f"{other if other != best_words else f'the best of the words ({best_words})'}: {lab.fmt(d)} -> {lab.verdict(d)}")

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
        p = lab.trained(bb, TASK, seed=seed, bridge_name=name, steps=STEPS, lr=LR)
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

# %% [markdown]
# ## Fig. 7: choosing T0 on validation images
#
# The paper picks T0 = 0.4 by a min-max normalized score (each metric scaled to [0, 1] across the
# candidates, then averaged). Here: an EBR rain prompt per candidate T0 and seed (the same steps),
# scored on the **val** split; the normalized score is computed per seed, so the interval is over
# seeds. The T0 chosen here is then scored once on the test split.

# %%
CANDS = [0.2, 0.4] if FAST else [0.2, 0.4, 0.6, 0.8]
val = lab.held_out(bb, TASK, "val", N_TEST)
sweep = {t0: [] for t0 in CANDS}  # per seed: (PSNR, SSIM) on val
for seed in SEEDS:
    for t0 in CANDS:
        rows = lab.scores(bb, [lab.trained(bb, TASK, seed=seed, bridge_name="ebr", t0=t0, steps=STEPS, lr=LR)], "ebr", t0, val)
        sweep[t0].append((lab.mean(rows, "psnr"), lab.mean(rows, "ssim")))

def normalized(i):  # seed i's normalized score of each candidate
    out = {}
    for k in (0, 1):
        vals = [sweep[t][i][k] for t in CANDS]
        lo, hi = min(vals), max(vals)
        for t in CANDS:
            out[t] = out.get(t, 0) + ((sweep[t][i][k] - lo) / (hi - lo) if hi > lo else 1.0) / 2
    return out
norm = [normalized(i) for i in range(len(SEEDS))]
chosen = max(CANDS, key=lambda t: sum(n[t] for n in norm))
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
for ax, label, vals in ((axes[0], "PSNR on val (dB)", lambda t: [v[0] for v in sweep[t]]),
                        (axes[1], "SSIM on val", lambda t: [v[1] for v in sweep[t]]),
                        (axes[2], "normalized score (0-1)", lambda t: [n[t] for n in norm])):
    ms = [lab.interval(vals(t)) for t in CANDS]
    ax.errorbar(CANDS, [m for m, _ in ms], yerr=[h if h < 1e9 else 0 for _, h in ms], fmt="o-", capsize=4)
    ax.set(xlabel="T0 (the prompt's training and sampling start)", ylabel=label)
axes[0].set_title(f"{TASK}, {len(SEEDS)} seeds, {N_TEST} val images: mean and 95% interval", fontsize=9)
plt.tight_layout(); plt.show()
for t in CANDS:
    print(f"T0 {t}: PSNR {lab.fmt([v[0] for v in sweep[t]])}  SSIM {lab.fmt([v[1] for v in sweep[t]], '')}  "
          f"normalized {lab.fmt([n[t] for n in norm], '')}")
rows = lab.scores(bb, [lab.trained(bb, TASK, seed=0, bridge_name="ebr", t0=chosen, steps=STEPS, lr=LR)], "ebr", chosen, test)
print(f"chosen on val: T0 {chosen}; on the test split (seed 0): PSNR {lab.mean(rows, 'psnr'):.2f} dB")
others = [t for t in CANDS if t != 0.4]
d = [n[0.4] - max(n[t] for t in others) for n in norm]
print(f"paper (Fig. 7): T0 = 0.4 scores best: 0.4 minus the best other {lab.fmt(d, '')} -> {lab.verdict(d)}")

# %% [markdown]
# ## Sec. 3.3: two prompts mixed by averaging their velocities
#
# A haze prompt and a rain prompt, each trained alone (EBR, the same T0 and steps, per seed), on test
# images with haze and then rain. The paper's claim: the average of the two prompts' velocities in
# one sampler run restores the mixed degradation; judged here against the better single prompt.

# %%
g = torch.Generator().manual_seed(7)
both = [(degrade.degrade("rain", degrade.degrade("haze", c, g), g), c) for _, c in test]
mixing = {k: [] for k in ("haze prompt", "rain prompt", "mixed")}
for seed in SEEDS:
    ph, pr = (lab.trained(bb, t, seed=seed, bridge_name="ebr", steps=STEPS, lr=LR) for t in ("haze", "rain"))
    for k, ps in (("haze prompt", [ph]), ("rain prompt", [pr]), ("mixed", [ph, pr])):
        mixing[k].append(lab.mean(lab.scores(bb, ps, "ebr", bb.t0, both)))
print(f"haze+rain input: {lab.mean([metrics.metrics(d, c) for d, c in both]):.2f} dB")
for k, v in mixing.items():
    print(f"  {k:<12} PSNR {lab.fmt(v)}")
d = [m - max(h, r) for m, h, r in zip(mixing["mixed"], mixing["haze prompt"], mixing["rain prompt"])]
print(f"paper (Sec. 3.3): the mix beats the better single prompt: {lab.fmt(d)} -> {lab.verdict(d)}")

# %% [markdown]
# ## What the frozen prior buys: the prompt beside a classical method and a supervised U-Net
#
# Per task, on the same test images, three ways to restore:
# - **classical**: the textbook method of `baselines.py`, nothing learned (haze: the dark channel
#   prior; rain and snow: a morphological opening or median; low light: a gamma curve and gain;
#   blur: an unsharp mask); its two or three settings chosen on **val** images by `metrics.score`;
# - **U-Net**: a residual U-Net of 487k weights (`baselines.UNet`) trained from scratch on the very
#   pairs, batch and steps each seed's prompt had (pixel MSE, AdamW at 1e-3; `lab.unet`);
# - **prompt**: the paper's method, about 4k numbers steering the frozen prior (EBR at T0, the decoded
#   latent), the prompts of the sections above.
#
# The paper's claim is that the prior, unlocked by a small prompt, restores as task-specific models
# do. Each difference is taken per seed (the classical method has no seed: its one score is
# subtracted from each seed's).

# %%
import baselines
N_VAL = 4 if FAST else 32
buys, pics = {}, {}
for task in TASKS:
    val, test_t = lab.held_out(bb, task, "val", N_VAL), lab.held_out(bb, task, "test", N_TEST)
    settings = baselines.choose_classical(task, val)[1][0][0]  # the best setting on val
    cl_out = [baselines.classical(task, d, settings) for d, _ in test_t]
    row = dict(degraded=lab.mean([metrics.metrics(d, c) for d, c in test_t]),
               classical=lab.mean([metrics.metrics(o, c) for o, (_, c) in zip(cl_out, test_t)]), unet=[], prompt=[])
    for seed in SEEDS:
        p = lab.trained(bb, task, seed=seed, bridge_name="ebr", steps=STEPS, lr=LR)
        net = lab.unet(bb, task, seed, steps=STEPS)
        pr_out, un_out = lab.restored(bb, [p], "ebr", bb.t0, test_t), [baselines.restore_unet(net, d) for d, _ in test_t]
        row["prompt"].append(lab.mean([metrics.metrics(o, c) for o, (_, c) in zip(pr_out, test_t)]))
        row["unet"].append(lab.mean([metrics.metrics(o, c) for o, (_, c) in zip(un_out, test_t)]))
        if seed == SEEDS[0]:
            pics[task] = [test_t[0][0], cl_out[0], un_out[0], pr_out[0], test_t[0][1]]
    buys[task] = row
    print(f"{task}: classical settings chosen on val {settings}")

# %%
print(f"{'task':<10} {'degraded':>9} {'classical':>10} {'U-Net':>16} {'prompt':>16}   (PSNR dB, {N_TEST} test images, "
      f"{len(SEEDS)} seeds, {STEPS} steps each)")
for task, r in buys.items():
    print(f"{task:<10} {r['degraded']:9.2f} {r['classical']:10.2f} {lab.fmt(r['unet'], ''):>16} {lab.fmt(r['prompt'], ''):>16}")
for task, r in buys.items():
    for other in ("classical", "unet"):
        d = [p - (r[other] if other == "classical" else u) for p, u in zip(r["prompt"], r["unet"])]
        print(f"{task}: the prompt beats the {'U-Net' if other == 'unet' else other}: {lab.fmt(d)} -> {lab.verdict(d)}")

# %%
fig, ax = plt.subplots(figsize=(8, 3.2))
for i, (task, r) in enumerate(buys.items()):
    for j, (name, vals) in enumerate((("degraded", [r["degraded"]]), ("classical", [r["classical"]]),
                                      ("U-Net", r["unet"]), ("prompt", r["prompt"]))):
        m, h = lab.interval(vals)
        ax.errorbar([i + 0.18 * (j - 1.5)], [m], yerr=[h if h < 1e9 else 0], fmt="o", color=f"C{j}", capsize=3,
                    label=name if i == 0 else None)
ax.set_xticks(range(len(buys))); ax.set_xticklabels(list(buys)); ax.set_xlabel("task")
ax.set_ylabel("PSNR (dB), test images"); ax.legend(fontsize=7); ax.set_title("mean and 95% interval over seeds")
plt.tight_layout(); plt.show()
fig, axes = plt.subplots(len(TASKS), 5, figsize=(7, 1.45 * len(TASKS)))
for r, task in enumerate(TASKS):
    for j, (name, x) in enumerate(zip(("degraded", "classical", "U-Net", "prompt", "clean"), pics[task])):
        show(axes[r, j], x, f"{task}: {name}" if j == 0 else name)
plt.tight_layout(); plt.show()
