# %% [markdown]
# # 01 · Prompts in token space fail; prompts in embedding space restore
#
# The paper's first finding (Sec. 3.1, Fig. 2, Table 5), with the paper's method only. Take a
# frozen text-to-image flow model and a noisy degraded latent z_t = (1-t) z_deg + t eps (eq. 1).
# Ask the backbone for its clean estimate x0_hat = z_t - t v under several kinds of conditioning:
#
# 1. **the null text** (the bare backbone);
# 2. **a natural-language instruction**, "remove the haze from this image and make it clear";
# 3. **token embeddings optimized through the frozen text encoder** (textual inversion / prompt tuning);
# 4. **embeddings optimized where the backbone's attention reads them**: (a) the text-encoder output
#    itself, (b) the paper's gated residual prompt added at every attention block (Sec. 3.3, Table 5).
#
# (3) and (4) minimize the same loss, ||x0_hat - z_clean||^2 (eq. 2), with everything else frozen.
# First on the shapes world (notebook 00), whose text encoder learned its captions, so that words
# are a real test; then on the photo backbone, whose text encoder is random. The cell below picks
# the photo backbone: `None` is the tiny default shipped in this repo (CPU).

# %%
BACKBONE = None   # or "flux" / "wan" / a local folder, with the weights and a GPU
TASK = "haze"
import functools, os, sys, time
sys.path.insert(0, os.path.abspath(".."))  # the repo's own modules
import torch
import matplotlib.pyplot as plt
import backbones, bridge, lab, metrics, train
from data import shapes
from lab import FAST, N_TEST, SEEDS, WORLD, psnr, show  # the notebooks' shared opening
show_px = functools.partial(show, fontsize=8, interpolation="nearest")  # the world's 64 px images: every pixel seen

# %% [markdown]
# ## 1. The shapes world: which conditioning restores? Words, token-space tuning, the encoder's output, the residual prompt
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
bb = backbones.load(WORLD, keep_text_encoder=True)  # tiny-shapes (notebook 00), its encoder kept
FIG2_TASK, FIG2_STEPS = "haze", (4 if FAST else 300)
INSTRUCTION = "remove the haze from this image and make it clear"
TUNED = ("token space", "encoder output", "residual prompt")
tok, enc, length = bb.text

def one_step(z_deg, t, eps, condition):
    """The clean estimate x0_hat = z_t - t v (eq. 2) from the eq.-1 state of z_deg at t."""
    context, prompts = condition()
    z_t, sigma = bridge.forward("naive", z_deg, z_deg, eps, t, bb.t0)  # eq. (1): z_clean plays no part
    return bridge.clean_estimate(z_t, sigma, bb.velocity(z_t, sigma, prompts, context=context)[0])

def tune(kind, seed, lr, steps, pool=256):
    """Conditioning `kind` of `bb` tuned for `steps` AdamW steps on `pool` training pairs drawn with `seed`."""
    zd, zc = train.encode_pairs(bb, lab.training_pairs(bb, FIG2_TASK, pool, seed), f"encode seed {seed}")
    torch.manual_seed(seed)
    if kind == "token space":
        ids = tok([INSTRUCTION], padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
        U = enc.get_input_embeddings()(ids.to(bb.device)).detach().clone().requires_grad_(True)
        params, condition = [U], lambda: (bb.encode_text(embeds=U), [None])
    elif kind == "encoder output":  # the token states and (FLUX) the pooled vector
        C = bb.context.detach().clone().requires_grad_(True)
        Q = None if bb.pooled is None else bb.pooled.detach().clone().requires_grad_(True)
        params, condition = [C] + ([Q] if Q is not None else []), lambda: ({"context": C, "pooled": Q}, [None])
    else:
        P = bb.new_prompt(task=FIG2_TASK)
        params, condition = list(P.parameters()), lambda: (None, [P])
    opt, g = torch.optim.AdamW(params, lr=lr), torch.Generator().manual_seed(1_000 + seed)
    for _ in range(steps):
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

def seed_plot(results, degraded, title, figsize):
    """Each conditioning's PSNR, a dot per seed and a bar for its 95% interval, against the input's."""
    fig, ax = plt.subplots(figsize=figsize)
    for i, k in enumerate(results):
        m, h = lab.interval(results[k])
        ax.scatter([i] * len(results[k]), results[k], s=12, alpha=0.6)
        ax.errorbar([i], [m], yerr=[h if h < 1e9 else 0], fmt="k_", capsize=6)
    ax.axhline(degraded, color="gray", ls=":", label="degraded input")
    ax.set_xticks(range(len(results))); ax.set_xticklabels(list(results), fontsize=8)
    ax.set_xlabel("conditioning"); ax.set_ylabel("PSNR of the one-step estimate (dB)"); ax.legend(fontsize=8)
    ax.set_title(f"{title}: each dot a seed (untrained ones: one value), bars the 95% interval", fontsize=9)
    plt.tight_layout(); plt.show()

splits = {name: lab.held_out(bb, FIG2_TASK, name, N_TEST) for name in ("val", "test")}
latents = {name: train.encode_pairs(bb, ps, "encode")[0] for name, ps in splits.items()}
captions = bb.encode_text([shapes.draw(shapes.index("test", i))[1] for i in range(N_TEST)])
fixed = {"null text": lambda: (None, [None]), "instruction": lambda: (bb.encode_text([INSTRUCTION]), [None]),
         "its caption": lambda: (captions, [None])}
CANDIDATE_LRS = [bb.train_lr, 5 * bb.train_lr, 20 * bb.train_lr]
lr = {k: max(CANDIDATE_LRS, key=lambda r: lab.mean([{"psnr": v} for v in psnrs(
          estimates(tune(k, 0, r, FIG2_STEPS), splits["val"], latents["val"]), splits["val"])])) for k in TUNED}
print("learning rates chosen on val (seed 0):", lr)
outs = {k: estimates(c, splits["test"], latents["test"]) for k, c in fixed.items()}
fig2 = {k: [lab.mean([{"psnr": v} for v in psnrs(outs[k], splits["test"])])] for k in fixed}
for k in TUNED:
    fig2[k] = []
    for seed in SEEDS:
        out = estimates(tune(k, seed, lr[k], FIG2_STEPS), splits["test"], latents["test"])
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
        show_px(axes[i, j], d if k == "degraded" else c if k == "clean" else outs[k][i], k if i == 0 else "")
plt.tight_layout(); plt.show()
seed_plot(fig2, degraded, FIG2_TASK, (8, 3))

# %%
ours = fig2["residual prompt"]
best_words = max(("null text", "instruction", "its caption"), key=lambda k: fig2[k][0])
for other in (best_words, "token space", "encoder output"):
    d = [a - b for a, b in zip(ours, fig2[other] * len(ours) if len(fig2[other]) == 1 else fig2[other])]
    print(f"paper (Fig. 2{', Table 5' if other == 'encoder output' else ''}): the residual prompt beats "
          f"{other if other != best_words else f'the best of the words ({best_words})'}: {lab.fmt(d)} -> {lab.verdict(d)}")

# %% [markdown]
# ## 2. The photos: the same conditionings on tiny-flux
#
# The same question on the photo backbone, with the same `tune` and `estimates` as above, on the
# held-out haze crops (32: 4 of each of the 8 held-out photos), over the same seeds. Two things
# differ. This backbone's text encoder is random (a tiny T5 never trained), so the words here test
# nothing: an instruction is just another caption to it, and token-space tuning can only move
# within what a random encoder can express. And the learning rates are not chosen on val: they are
# those under which each one's training loss fell furthest in a few tries on training photos (the
# text-side ones live at the scale of the encoder's states, where the prompt's rate barely moves
# them).

# %%
bb = backbones.load(BACKBONE, keep_text_encoder=True)
tok, enc, length = bb.text
PHOTO_STEPS, PHOTO_POOL = (8 if FAST else 600), (16 if FAST else 256)
PHOTO_LR = {"token space": 20 * bb.train_lr, "encoder output": 20 * bb.train_lr, "residual prompt": bb.train_lr}
test = lab.held_out(bb, FIG2_TASK, "test", 4 if FAST else 32)
test_z = train.encode_pairs(bb, test, "encode")[0]
fixed = {"null text": lambda: (None, [None]), "instruction": lambda: (bb.encode_text([INSTRUCTION]), [None])}
outs = {k: estimates(c, test, test_z) for k, c in fixed.items()}
photo = {k: [sum(psnrs(outs[k], test)) / len(test)] for k in fixed}
for k in TUNED:
    photo[k] = []
    for seed in SEEDS:
        t_start = time.time()
        out = estimates(tune(k, seed, PHOTO_LR[k], PHOTO_STEPS, PHOTO_POOL), test, test_z)
        outs.setdefault(k, out)  # seed 0's pictures
        photo[k].append(sum(psnrs(out, test)) / len(test))
        print(f"{k}, seed {seed}: {photo[k][-1]:.2f} dB ({time.time() - t_start:.0f} s)")
degraded_photo = lab.mean([metrics.metrics(d, c) for d, c in test])
print(f"{bb.name}, {FIG2_TASK}, one step from t = T0 = {bb.t0}, {len(test)} held-out crops "
      f"(degraded input {degraded_photo:.2f} dB), {PHOTO_STEPS} steps per tuned run:")
for k, v in photo.items():
    print(f"  {k:<16} PSNR {lab.fmt(v) if len(v) > 1 else f'{v[0]:.2f} dB (no training: one value)'}")

# %%
cols = ["degraded", *fixed, *TUNED, "clean"]
fig, axes = plt.subplots(4, len(cols), figsize=(2 * len(cols), 8.4))
for i in range(4):  # pictures of four crops (seed 0); the numbers over all
    d, c = test[i]
    for j, k in enumerate(cols):
        img = d if k == "degraded" else c if k == "clean" else outs[k][i]
        show(axes[i, j], img, (f"{k}\n" if i == 0 else "") + f"{psnr(img, c):.1f} dB", fontsize=8)
plt.tight_layout(); plt.show()
seed_plot(photo, degraded_photo, f"{bb.name}, {FIG2_TASK}", (7, 3))

# %% [markdown]
# ### Verdicts on the photos
#
# Computed from this run's numbers, seed by seed. "Restores" means a gain over the degraded input
# whose whole interval is above 1 dB.

# %%
ours = photo["residual prompt"]
for k in photo:
    gain = [v - degraded_photo for v in photo[k]]
    said = {"REPRODUCED": "yes", "NOT REPRODUCED": "no", "INCONCLUSIVE": "inconclusive"}[lab.verdict([g - 1 for g in gain])]
    said = "" if len(gain) == 1 else f" -> restores (the whole interval above 1 dB): {said}"
    print(f"{k}: gain over the degraded input {lab.fmt(gain)}{said}")
best_words = max(fixed, key=lambda k: photo[k][0])
for other in (best_words, "token space", "encoder output"):
    d = [a - b for a, b in zip(ours, photo[other] * len(ours) if len(photo[other]) == 1 else photo[other])]
    print(f"paper (Fig. 2{', Table 5' if other == 'encoder output' else ''}): the residual prompt beats "
          f"{other if other != best_words else f'the best of the words ({best_words})'}: {lab.fmt(d)} -> {lab.verdict(d)}")
token = [v - degraded_photo for v in photo["token space"]]
print(f"paper (Fig. 2): token-space tuning does not restore (gains under 1 dB): {lab.fmt(token)} ->",
      lab.verdict([1 - g for g in token]))

# %% [markdown]
# ### What this shows
#
# The verdicts above are computed from this run. On the shapes world, whose text encoder learned
# the world's captions, the paper's finding holds: words (even the image's own caption) and
# token-space tuning leave the haze, the tuned encoder output gains about 2 dB, and the residual
# prompt restores, about 5 dB over the input and 3 dB ahead of the encoder output. On tiny-flux the
# words test nothing (a random encoder),
# token-space tuning gains under a dB or so, and both embedding-space conditionings gain about
# 3 dB; there the tuned encoder output comes out ahead of the residual prompt, so Table 5 is not
# reproduced on photos. Look at the pictures before the numbers: on the photos both
# embedding-space outputs take on the clean crop's warmer colours under a woven grid of noise;
# neither gives back a clean-looking crop. On the shapes world the residual prompt's outputs have
# no such grid: the haze is lifted, the colours pushed (an orange ring turns red, a white triangle
# yellowish), the edges soft; there token space and the encoder output are the ones that add
# coloured noise and blotches.
