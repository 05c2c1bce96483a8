"""The gated residual prompt on FLUX and Wan structures: identity at zero gates, gradients,
mixing, save/load, the authors' released prompts, and the real configs on the meta device."""
import glob
import os

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import FluxTransformer2DModel, WanTransformer3DModel

import backbones
import prompt as prompt_lib
from conftest import need_shared

FLUX_DEV = backbones.ARCH["flux"]["transformer"]  # the real configs
WAN_13B = backbones.ARCH["wan"]["transformer"]


def latent(bb, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 16, 3, 4, 4) if bb.video else (2, 16, 4, 4)
    return torch.randn(*shape, generator=g)


@pytest.fixture(params=["flux_bb", "wan_bb"])
def bb(request):
    return request.getfixturevalue(request.param)


def test_zero_gates_is_the_bare_backbone(bb):
    x, s = latent(bb), torch.tensor([0.3, 0.1])
    p = bb.new_prompt(task="haze")
    bare = bb.velocity(x, s)[0]
    assert torch.equal(bb.velocity(x, s, [p])[0], bare)
    with torch.no_grad():
        p.gates.fill_(0.5)
    assert not torch.allclose(bb.velocity(x, s, [p])[0], bare, atol=1e-4)  # the prompt does enter
    assert torch.equal(bb.velocity(x, s)[0], bare)  # and leaves nothing behind


def test_gradients_reach_only_prompt_and_gates(bb):
    p = bb.new_prompt(task="haze")
    with torch.no_grad():
        p.gates.fill_(0.1)
    bb.velocity(latent(bb), torch.tensor([0.3, 0.1]), [p])[0].square().mean().backward()
    assert p.bank.grad is not None and p.bank.grad.abs().sum() > 0
    assert p.gates.grad is not None and (p.gates.grad != 0).all()  # every block's gate is used
    assert all(q.grad is None for q in bb.transformer.parameters())
    assert all(not q.requires_grad for q in bb.transformer.parameters())


def test_zero_gates_first_step_moves_only_the_gates(bb):
    # docs/derivations.md: the bank enters as alpha_l P (FLUX) or alpha_l Attn(h, c + P) (Wan), so
    # at alpha = 0 its gradient is exactly zero while each gate's is <dL/dout, P-term>, not zero
    p = bb.new_prompt(task="haze")
    bb.velocity(latent(bb), torch.tensor([0.3, 0.1]), [p])[0].square().mean().backward()
    assert p.bank.grad is not None and torch.count_nonzero(p.bank.grad) == 0
    assert (p.gates.grad != 0).all()
    bank = p.bank.detach().clone()
    opt = torch.optim.AdamW(p.parameters(), lr=5e-4)  # train.py's optimizer (weight decay 0.01)
    opt.step()
    assert torch.equal(p.bank, bank * (1 - 5e-4 * 0.01))  # the first step only decays the bank
    assert (p.gates != 0).all()
    # on FLUX a zero bank would leave the gates nothing to learn from either (the random bank breaks
    # the tie); on Wan the gate multiplies Attn(h, c + 0) = Attn(h, c), which is not zero
    q = bb.new_prompt(task="haze")
    with torch.no_grad():
        q.bank.zero_()
    bb.velocity(latent(bb), torch.tensor([0.3, 0.1]), [q])[0].square().mean().backward()
    assert torch.count_nonzero(q.bank.grad) == 0
    flux = isinstance(bb, backbones.FluxBackbone)
    assert (torch.count_nonzero(q.gates.grad) == 0) if flux else (q.gates.grad != 0).all()


def test_mixed_batch_equals_separate_calls(bb):
    x, s = latent(bb), torch.tensor([0.3, 0.1])
    p1, p2 = bb.new_prompt(task="a"), bb.new_prompt(task="b")
    with torch.no_grad():
        p1.gates.fill_(0.3)
        p2.gates.fill_(-0.2)
    both = bb.velocity(x, s, [p1, p2, None])
    assert both.shape == (3, *x.shape)
    for i, p in enumerate([p1, p2, None]):
        assert torch.allclose(both[i], bb.velocity(x, s, [p])[0], atol=1e-5)


def test_save_load_round_trip(tmp_path, flux_bb):
    p = flux_bb.new_prompt(task="rain", bridge="ebr", t0=0.4)
    with torch.no_grad():
        p.gates.uniform_(-1, 1)
    prompt_lib.save(p, tmp_path / "rain.safetensors")
    q = prompt_lib.load(str(tmp_path / "rain.safetensors"))
    assert torch.equal(p.bank, q.bank) and torch.equal(p.gates, q.gates)
    assert q.meta == {"backbone": "test-flux", "task": "rain", "bridge": "ebr", "t0": "0.4"}
    assert not list(tmp_path.glob("*.tmp*"))


def test_prompt_for_another_backbone_names_both(flux_bb, wan_bb, tmp_path):
    p = wan_bb.new_prompt(task="snow")
    p.gates = torch.nn.Parameter(torch.zeros(5))
    prompt_lib.save(p, tmp_path / "snow.safetensors")
    with pytest.raises(ValueError, match=r"made for test-wan \(8x24, 5 gates\).*test-flux \(8x32, 2 gates\)"):
        flux_bb.load_prompt(str(tmp_path / "snow.safetensors"))


def test_non_finite_and_corrupt_files_refused(tmp_path, flux_bb):
    p = flux_bb.new_prompt(task="x")
    with torch.no_grad():
        p.bank[0, 0, 0] = float("nan")
    prompt_lib.save(p, tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match="NaN or Inf"):
        prompt_lib.load(str(tmp_path / "nan.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="not a prompt file"):
        prompt_lib.load(str(tmp_path / "junk.safetensors"))
    with pytest.raises(ValueError, match="not found"):
        prompt_lib.load(str(tmp_path / "missing.safetensors"))


def test_released_wan_prompts_fit_real_wan_on_meta():
    ypt = need_shared()
    files = sorted(glob.glob(os.path.join(ypt, "wan_*.pt")))
    assert len(files) == 5
    with init_empty_weights(include_buffers=True):
        tf = WanTransformer3DModel(**WAN_13B)
    inj = prompt_lib.Injector(tf)
    assert (inj.dim, inj.num_gates) == (1536, 30)
    for f in files:
        raw = torch.load(f, map_location="cpu", weights_only=True)
        p = prompt_lib.load(f)
        assert p.shape == (226, inj.dim, inj.num_gates)
        assert p.shape == (226, 1536, 30) and p.meta["backbone"] == "wan"
        assert torch.equal(p.bank, raw["deep_prompt_bank"]["prompts"])
        assert torch.equal(p.gates, torch.stack(raw["alphas"]))
    assert -1.3 < p.gates.detach().min().item() and p.gates.detach().max().item() < 1.0  # the released gates lie in about -1.1..0.8
    # a forward of the real structure on the meta device, with the prompt injected in all 30 blocks
    inj.active = [p.to("meta")]
    with torch.device("meta"):
        out = tf(hidden_states=torch.empty(1, 16, 3, 8, 8), timestep=torch.empty(1),
                 encoder_hidden_states=torch.empty(1, 226, 4096), return_dict=False)[0]
    assert out.shape == (1, 16, 3, 8, 8)


def test_real_flux_takes_512x3072_prompt_with_57_gates_on_meta():
    with init_empty_weights():
        tf = FluxTransformer2DModel(**FLUX_DEV)
    inj = prompt_lib.Injector(tf)
    p = prompt_lib.Prompt(512, 3072, 57, backbone="flux")
    assert p.shape == (512, inj.dim, inj.num_gates)
    assert sum(q.numel() for q in p.parameters()) == 512 * 3072 + 57
    inj.active = [p.to("meta")]
    with torch.device("meta"):
        out = tf(hidden_states=torch.empty(1, 16, 64), encoder_hidden_states=torch.empty(1, 512, 4096),
                 pooled_projections=torch.empty(1, 768), timestep=torch.empty(1), img_ids=torch.empty(16, 3),
                 txt_ids=torch.empty(512, 3), guidance=torch.empty(1), return_dict=False)[0]
    assert out.shape == (1, 16, 64)


def test_wan_prompt_count_matches_paper():
    bb = backbones.random_backbone("wan", "meta")  # the paper's 347,166 learned numbers for Wan
    assert sum(q.numel() for q in bb.new_prompt(task="a").parameters()) == 226 * 1536 + 30 == 347_166
