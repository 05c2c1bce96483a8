"""Endpoints of the three constructions (paper eqs. 1, 3-6, 9) and their samplers."""
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


@pytest.mark.parametrize("name", ["naive", "ebr"])
def test_sampler_visits_the_training_states(z, name):
    # with the oracle, every state the sampler visits is the forward construction itself
    z_deg, z_clean, eps = z
    traj = []
    bridge.sample(name, oracle(z_clean), z_deg, eps, T0, trajectory=traj)
    assert len(traj) == bridge.STEPS
    for t, x, _ in traj:
        assert torch.allclose(x, state(name, z, t)[0], atol=1e-5), t


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


def test_mixed_averages_velocities():
    many = lambda x, s: torch.stack([x, 3 * x])  # noqa: E731
    x = torch.randn(2, 4, 3, 3)
    assert torch.allclose(bridge.mixed(many)(x, torch.ones(2)), 2 * x)


def test_training_times_in_range():
    t = bridge.sample_t(1000, T0, generator=torch.Generator().manual_seed(0))
    assert t.min() >= bridge.T_MIN and t.max() <= T0


def test_unknown_bridge():
    with pytest.raises(ValueError, match="unknown bridge"):
        bridge.coefficients("ddim", torch.tensor(0.1))
