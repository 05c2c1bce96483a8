"""Endpoints of the three constructions (paper eqs. 1, 3-6, 9), the states their samplers visit
(Sec. 3.1, 3.2, Fig. 3c), and the identities of docs/derivations.md."""
import pytest
import torch

import bridge

T0 = 0.4


@pytest.fixture
def z():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(3, 4, 6, 6, generator=g) for _ in range(3)]  # z_deg, z_clean, eps


def state(name, z, t):
    return bridge.forward(name, *z, torch.full((3,), t), T0)


def test_ebr_endpoints(z):
    z_deg, z_clean, eps = z
    x, sigma = state("ebr", z, T0)
    assert torch.allclose(x, (1 - T0) * z_deg + T0 * eps, atol=1e-6)
    assert torch.allclose(sigma, torch.full((3,), T0))
    x, sigma = state("ebr", z, 0.0)
    assert torch.allclose(x, z_clean) and sigma.abs().max() == 0


def test_ebr_noise_monotone_and_signal_moves_to_clean():
    t = torch.linspace(0, T0, 101)
    c_deg, c_clean, sigma = bridge.coefficients("ebr", t, T0)
    assert (sigma.diff() > 0).all()  # noise grows with t
    lam = c_deg / (c_deg + c_clean)  # share of z_deg in the signal: 0 at t=0, 1 at T0
    assert (lam.diff() > 0).all() and lam[0] == 0 and torch.isclose(lam[-1], torch.tensor(1.0))


def test_ddbm_pinned_at_both_ends(z):
    z_deg, z_clean, _ = z
    x, sigma = state("ddbm", z, T0)
    assert torch.allclose(x, z_deg, atol=1e-6) and sigma.abs().max() < 1e-6
    x, sigma = state("ddbm", z, 0.0)
    assert torch.allclose(x, z_clean, atol=1e-6) and sigma.abs().max() < 1e-6


def test_ddbm_variance_peaks_midway_at_t0():
    t = torch.linspace(0, T0, 401)
    _, _, sigma = bridge.coefficients("ddbm", t, T0)
    assert abs(t[sigma.argmax()].item() - T0 / 2**0.5) < 2e-3  # tau^2 = T^2/2
    assert abs(sigma.max().item() - T0) < 1e-4


def test_ddbm_is_eq6_of_the_ve_bridge(z):
    # eq. (4) then (6): y = (1-sigma)(a z_deg + b z_clean) + sigma eps with sigma = s/(1+s)
    z_deg, z_clean, eps = z
    t = 0.25
    T = 2 * T0 / (1 - T0)
    tau = t / T0 * T
    a, b, s = tau**2 / T**2, 1 - tau**2 / T**2, (tau**2 * (1 - tau**2 / T**2)) ** 0.5
    sig = s / (1 + s)
    x, sigma = state("ddbm", z, t)
    assert torch.allclose(x, (1 - sig) * (a * z_deg + b * z_clean) + sig * eps, atol=1e-6)
    assert torch.allclose(sigma, torch.full((3,), sig))


def test_naive_anchored_at_degraded(z):
    z_deg, z_clean, eps = z
    for t in (0.0, 0.1, T0):
        x, sigma = state("naive", z, t)
        assert torch.allclose(x, (1 - t) * z_deg + t * eps, atol=1e-6)  # z_clean never enters


def oracle(z_clean):
    # the velocity that makes x0_hat = x - sigma v equal z_clean exactly
    return lambda x, sigma: (x - z_clean) / sigma.reshape(-1, 1, 1, 1)


@pytest.mark.parametrize("name", bridge.BRIDGES)
def test_sampler_recovers_clean_from_oracle(z, name):
    z_deg, z_clean, eps = z
    out = bridge.sample(name, oracle(z_clean), z_deg, eps, T0)
    assert torch.allclose(out, z_clean, atol=1e-5)


def clean_shares(xs, ts, z_deg, z_clean):
    """lambda = c_clean / (1 - sigma) of each state x at its t: the share of z_clean in its signal
    (1 - lambda of eq. 8). x ~ a z_deg + b z_clean + noise by least squares over every number of
    the latents (all states in one product): a random eps is nearly orthogonal to both."""
    basis = torch.stack([z_deg.flatten(), z_clean.flatten()], 1).double()
    ab = torch.linalg.solve(basis.T @ basis, basis.T @ torch.stack([x.flatten() for x in xs], 1).double())
    sigma = torch.stack([bridge.coefficients("ebr", torch.tensor(t), T0)[2] for t in ts])  # sigma = t for naive and EBR
    return (ab[1] / (1 - sigma.double())).tolist()


@pytest.fixture
def big():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(2, 16, 32, 32, generator=g) for _ in range(3)]  # z_deg, z_clean, eps


def test_naive_sampling_leaves_its_training_family(big):
    # Sec. 3.1, Fig. 3c: eq. (1) trains on states whose signal is z_deg alone; sampling moves the
    # states towards the clean estimate, so the prompt meets states it never saw in training
    z_deg, z_clean, eps = big
    traj = []
    bridge.sample("naive", oracle(z_clean), z_deg, eps, T0, trajectory=traj)
    ts = [t for t, _, _ in traj]
    sampled = clean_shares([x for _, x, _ in traj], ts, z_deg, z_clean)
    trained = clean_shares([bridge.forward("naive", *big, torch.full((2,), t), T0)[0] for t in ts], ts, z_deg, z_clean)
    assert max(abs(v) for v in trained) < 0.01  # training: the signal never leaves z_deg
    assert abs(sampled[0]) < 0.01 and sampled[-1] > 0.99  # sampling: from z_deg to z_clean
    assert all(b > a for a, b in zip(sampled, sampled[1:]))  # rising all the way
    for t, v in zip(ts, sampled):  # and as the Euler step predicts: 1 - t (1-T0) / (T0 (1-t))
        assert abs(v - (1 - t * (1 - T0) / (T0 * (1 - t)))) < 0.01, t


def test_ebr_sampling_stays_on_its_training_family(big):
    # Sec. 3.2: a bridge's sampler visits the states its prompt was trained on
    z_deg, z_clean, eps = big
    traj = []
    bridge.sample("ebr", oracle(z_clean), z_deg, eps, T0, trajectory=traj)
    assert len(traj) == bridge.STEPS
    ts = [t for t, _, _ in traj]
    for t, x, _ in traj:
        assert torch.allclose(x, bridge.forward("ebr", *big, torch.full((2,), t), T0)[0], atol=1e-5), t
    for t, v in zip(ts, clean_shares([x for _, x, _ in traj], ts, z_deg, z_clean)):
        assert abs(v - (1 - t / T0)) < 0.01, t  # EBR's c_clean / (1 - sigma)


def test_naive_sampler_is_the_backbones_euler_step(z):
    # x' = (1-t') x0_hat + t' eps_hat with the flow's eps_hat is x' = x - (t - t') v, any velocity
    z_deg, _, eps = z
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(2))
    model = lambda x, s: torch.einsum("oc,bchw->bohw", w, x) * (1 + s.reshape(-1, 1, 1, 1))  # noqa: E731
    traj = []
    bridge.sample("naive", model, z_deg, eps, T0, trajectory=traj)
    assert torch.allclose(traj[0][1], (1 - T0) * z_deg + T0 * eps, atol=1e-6)  # starts at eq. (1)'s state
    for (t, x, _), (t2, x2, _) in zip(traj, traj[1:]):
        v = model(x, torch.full((x.shape[0],), t))
        assert torch.allclose(x2, x - (t - t2) * v, atol=1e-5), t


def test_ddbm_sampler_leaves_the_pinned_end_with_seed_noise(z):
    z_deg, z_clean, eps = z
    traj = []
    bridge.sample("ddbm", oracle(z_clean), z_deg, eps, T0, trajectory=traj)
    assert torch.allclose(traj[0][1], z_deg, atol=1e-6)  # starts exactly at z_deg
    t1, x1, _ = traj[1]
    _, _, s = bridge.coefficients("ddbm", torch.tensor(t1), T0)
    assert torch.allclose(x1, (1 - s) * z_deg + s * eps, atol=1e-5)


def authors_ebr_sampler(model, y, eps, t0=0.4, t_min=1e-4, n=20):
    """The authors' update rule, written out literally."""
    ts = torch.linspace(t0, t_min, n).tolist()
    x = (1 - t0) * y + t0 * eps
    for i, t in enumerate(ts):
        v = model(x, torch.full((x.shape[0],), t))
        x0 = x - t * v
        if i + 1 == len(ts):
            return x0
        t2 = ts[i + 1]
        c0 = (1 - t) * (1 - t / t0)
        A = (1 - t) * t / t0
        eps_hat = (x - c0 * x0 - A * y) / max(t, 1e-4)
        x = (1 - t2) * ((1 - t2 / t0) * x0 + (t2 / t0) * y) + t2 * eps_hat


def test_ebr_sampler_matches_authors_rule_step_by_step(z):
    z_deg, _, eps = z
    w = torch.randn(4, 4)
    model = lambda x, s: torch.einsum("oc,bchw->bohw", w, x) * (1 + s.reshape(-1, 1, 1, 1))  # noqa: E731
    ours = bridge.sample("ebr", model, z_deg, eps, 0.4)
    ref = authors_ebr_sampler(model, z_deg, eps)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_training_times_in_range():
    t = bridge.sample_t(1000, T0, generator=torch.Generator().manual_seed(0))
    assert t.min() >= bridge.T_MIN and t.max() <= T0


def test_unknown_bridge():
    with pytest.raises(ValueError, match="unknown bridge"):
        bridge.coefficients("ddim", torch.tensor(0.1))


@pytest.mark.parametrize("name", bridge.BRIDGES)
def test_target_velocity_in_the_state_and_z_deg(z, name):
    # docs/derivations.md: c_deg + c_clean + sigma = 1 for all three, so the velocity that lands
    # x0_hat = z - sigma v on z_clean is v* = eps - z_clean + (c_deg / sigma)(z_deg - z_clean)
    z_deg, z_clean, eps = z
    for t in (0.01, 0.1, 0.2, 0.35):
        c_deg, c_clean, sigma = bridge.coefficients(name, torch.tensor(t), T0)
        assert abs(float(c_deg + c_clean + sigma) - 1) < 1e-6
        x, s = state(name, z, t)
        v_star = eps - z_clean + (c_deg / sigma) * (z_deg - z_clean)
        assert torch.allclose(v_star, (x - z_clean) / s.reshape(-1, 1, 1, 1), atol=1e-4)
        assert torch.allclose(bridge.clean_estimate(x, s, v_star), z_clean, atol=1e-5)


def test_naive_target_grows_like_one_over_t(z):
    # the degradation's share of v* is c_deg / sigma: (1-t)/t for naive, (1-t)/T0 for EBR, -> 0 for DDBM
    z_deg, z_clean, eps = z
    rms = lambda x: x.square().mean().sqrt().item()  # noqa: E731
    for t in (1e-1, 1e-2, 1e-3, 1e-4):
        tt = torch.tensor(t)
        k = {n: float(bridge.coefficients(n, tt, T0)[0] / bridge.coefficients(n, tt, T0)[2]) for n in bridge.BRIDGES}
        assert abs(k["naive"] * t - (1 - t)) < 1e-4 and abs(k["ebr"] - (1 - t) / T0) < 1e-4
        assert k["ddbm"] < 2 * t / T0  # r / (T sqrt(1 - r^2)) with r = t / T0
        x, s = state("naive", z, t)
        v_star = (x - z_clean) / s.reshape(-1, 1, 1, 1)
        assert abs(t * rms(v_star) / rms(z_deg - z_clean) - 1) < 0.1  # |v*| ~ |z_deg - z_clean| / t


def test_ddbm_sampling_states_carry_the_first_steps_gap(big):
    # docs/derivations.md: after the call-free pinned step, eps_hat = eps + k (z_deg - z_clean),
    # k = c_clean(t_1) / sigma(t_1), so each later state is DDBM's own plus sigma(t) k (z_deg - z_clean)
    z_deg, z_clean, eps = big
    traj = []
    bridge.sample("ddbm", oracle(z_clean), z_deg, eps, T0, trajectory=traj)
    _, c_clean1, sigma1 = bridge.coefficients("ddbm", torch.tensor(traj[1][0]), T0)
    k = float(c_clean1 / sigma1)
    for t, x, _ in traj[1:]:
        sigma = float(bridge.coefficients("ddbm", torch.tensor(t), T0)[2])
        own = bridge.forward("ddbm", *big, torch.full((2,), t), T0)[0]
        assert torch.allclose(x, own + sigma * k * (z_deg - z_clean), atol=1e-4), t
