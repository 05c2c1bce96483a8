"""The paper's three forward constructions and the sampler of each (mixing: sample.velocity).

Flow matching as in FLUX and Wan: z_t = (1-t) x0 + t eps (t=1 noise, t=0 data), v = eps - x0,
so the backbone's clean estimate is x0_hat = z_t - sigma v (eq. 2). Each construction is one
coefficient triple: z = c_deg(t) z_deg + c_clean(t) z_clean + sigma(t) eps, with sigma(t) the
noise level the frozen backbone is told, t in (0, T0]. Training draws one t, builds z and
regresses x0_hat onto z_clean (eqs. 7, 10). Sampling starts at the construction's state at
t = T0 (c_clean = 0 for all three) and steps down to t ~ 0 on a family of states:
- naive: the backbone's own flow family (c_deg = 0, c_clean = 1-t, sigma = t), i.e. its ordinary
  Euler / DDIM step x' = (1-t') x0_hat + t' eps_hat. That is how the paper samples a prompt trained
  on eq. (1) (Sec. 3.1): the states move from z_deg towards the estimate, away from the
  training states, which stay at z_deg: the train-test mismatch of Sec. 3.1 and Fig. 3c.
- ddbm, ebr: the construction's own family, so sampling visits the states training showed the
  prompt (Sec. 3.2, Fig. 3d); for 'ebr' this is the authors' released update rule.
Derivations of all of it: docs/derivations.md.
"""
import torch

T0 = 0.4      # start noise level of the bridge (paper Sec. 4.4; ablated 0.1..0.6)
T_MIN = 1e-4  # last grid point of the sampler (authors' release)
STEPS = 20    # grid points = backbone calls per prompt (authors' release)
BRIDGES = ("naive", "ddbm", "ebr")


def _ddbm_T(t0):
    # DDBM's VE bridge has s_max = T/2 at mid-way. We pick T so that the largest noise
    # level the backbone sees, s/(1+s), equals T0: the same top noise as the other two.
    return 2 * t0 / (1 - t0)


def coefficients(bridge, t, t0=T0):
    """(c_deg, c_clean, sigma) of a construction at time t (tensor, any shape)."""
    if bridge == "naive":
        # eq. (1): z_t = (1-t) z_deg + t eps. The signal stays anchored at z_deg.
        return 1 - t, torch.zeros_like(t), t
    if bridge == "ddbm":
        # eqs. (3)-(6): DDBM's VE bridge z = a z_deg + b z_clean + s eps, tau in [0, T],
        # a = tau^2/T^2, b = 1 - a, s^2 = tau^2 (1 - tau^2/T^2); tau/T = t/T0.
        # Put in eq.-1 form: sigma = s/(1+s), y = (1-sigma)(a z_deg + b z_clean) + sigma eps.
        T = _ddbm_T(t0)
        r2 = (t / t0) ** 2
        s = ((r2 * T**2) * (1 - r2)).clamp(min=0).sqrt()
        sigma = s / (1 + s)
        return (1 - sigma) * r2, (1 - sigma) * (1 - r2), sigma
    if bridge == "ebr":
        # eq. (9): z_t = (1-t)[(1 - t/T0) z_clean + (t/T0) z_deg] + t eps.
        return (1 - t) * (t / t0), (1 - t) * (1 - t / t0), t
    known(bridge)


def known(bridge):
    """A clear error for a bridge name we do not have (train.py calls it before writing anything)."""
    if bridge not in BRIDGES:
        raise ValueError(f"unknown bridge {bridge!r}; choose one of {', '.join(BRIDGES)}")


def _per_sample(t, z):
    """Broadcast a per-sample time [B] (or a scalar) against a latent [B, ...]."""
    t = torch.as_tensor(t, dtype=torch.float32, device=z.device)
    return t.reshape(-1, *([1] * (z.ndim - 1))) if t.ndim else t


def forward(bridge, z_deg, z_clean, eps, t, t0=T0):
    """A training state of the construction and the noise level to give the backbone."""
    c_deg, c_clean, sigma = coefficients(bridge, _per_sample(t, z_deg), t0)
    return c_deg * z_deg + c_clean * z_clean + sigma * eps, sigma.flatten() if sigma.ndim else sigma


def sample_t(n, t0=T0, t_min=T_MIN, generator=None, device="cpu"):
    """Training times t = t_min + (T0 - t_min) u, u ~ U(0, 1) (the authors' helper)."""
    return t_min + (t0 - t_min) * torch.rand(n, generator=generator, device=device)


def clean_estimate(z_t, sigma, v):
    """x0_hat = z_t - sigma v (eq. 2): what the loss of eq. (7)/(10) compares to z_clean."""
    return z_t - _per_sample(sigma, z_t) * v


def sampling_coefficients(bridge, t, t0=T0):
    """(c_deg, c_clean, sigma) of the family of states the sampler walks for a construction.

    'naive' walks the backbone's plain flow family z = (1-t) x0 + t eps (c_deg = 0): sampling a
    prompt trained on eq. (1) is the backbone's ordinary reverse process from the noised degraded
    latent (paper Sec. 3.1), whose states leave eq. (1)'s family (Fig. 3c). 'ddbm' and 'ebr' walk
    their own training family, which is what a bridge is for (Sec. 3.2)."""
    if bridge == "naive":
        return torch.zeros_like(t), 1 - t, t
    return coefficients(bridge, t, t0)


@torch.no_grad()
def sample(bridge, velocity, y, eps, t0=T0, t_min=T_MIN, steps=STEPS, trajectory=None):
    """Deterministic DDIM-like sampler on sampling_coefficients' family of states.

    velocity(x, sigma) -> v is any function (one prompt, a mix, an oracle): the sampler never
    knows about backbones. y is the degraded latent, eps the starting noise (seed it); the state
    stays on y's device and the coefficients are plain numbers, so a step copies nothing.
    Start: the construction's own state at t = T0, c_deg(T0) y + sigma(T0) eps (for 'naive' the
    noised degraded latent of eq. 1). At each grid point: v, then x0 = x - sigma v, then the
    noise that state implies, eps_hat = (x - c_deg y - c_clean x0) / sigma, then the next state
    c_deg' y + c_clean' x0 + sigma' eps_hat. For 'naive' (c_deg = 0) this is the backbone's Euler
    step x' = x - (t - t') v; for 'ebr' it is exactly the authors' update rule.
    Returns the clean estimate at the last grid point. `trajectory`, a list, collects (t, x, x0).
    """
    ts = torch.linspace(t0, t_min, steps).tolist()  # the grid: T0 down to t_min
    coef = [[float(c) for c in sampling_coefficients(bridge, torch.tensor(t), t0)] for t in ts]  # numbers, not tensors
    c_deg, _, sigma = [float(c) for c in coefficients(bridge, torch.tensor(ts[0]), t0)]
    x = c_deg * y + sigma * eps  # the training state at T0: c_clean(T0) = 0 for every construction
    for i, t in enumerate(ts):
        c_deg, c_clean, sigma = coef[i]
        if sigma > 0:
            x0 = x - sigma * velocity(x, torch.full((x.shape[0],), sigma, device=x.device))
            eps_hat = (x - c_deg * y - c_clean * x0) / max(sigma, T_MIN)
        else:
            # DDBM is pinned at z_deg with zero noise: the backbone sees no noise and its
            # estimate would be x itself, so this point costs no call and keeps the seed noise.
            x0, eps_hat = x, eps
        if trajectory is not None:
            trajectory.append((t, x.clone(), x0.clone()))
        if i + 1 < len(ts):
            c_deg, c_clean, sigma = coef[i + 1]
            x = c_deg * y + c_clean * x0 + sigma * eps_hat
    return x0

