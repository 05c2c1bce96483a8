"""What extensions.py adds to the paper: the coarse prompt's velocity, the kept detail, the decode
settings, and that each is off where the paper's method is asked for."""
import types

import torch

import extensions
import prompt as prompt_lib
import sample
from plumbing import tiles


def checker(n):
    return (torch.arange(n)[:, None] + torch.arange(n)[None, :]) % 2 * 2.0 - 1  # +-1 per pixel


def test_lowpass_keeps_the_coarse_and_drops_the_fine():
    flat = torch.full((2, 3, 12, 12), 1.5)
    assert torch.allclose(extensions.lowpass(flat, 2.0), flat, atol=1e-6)
    assert extensions.lowpass(checker(12).expand(2, 3, 12, 12), 2.0).abs().max() < 0.05
    clip = torch.randn(1, 4, 3, 10, 10)  # a video latent: each frame on its own
    assert torch.allclose(extensions.lowpass(clip, 1.0)[:, :, 1], extensions.lowpass(clip[:, :, 1], 1.0), atol=1e-6)


def test_coarse_takes_the_fine_velocity_from_the_bare_backbone():
    g = torch.Generator().manual_seed(0)
    bare = torch.randn(2, 4, 16, 16, generator=g)
    shift = torch.randn(2, 4, 1, 1, generator=g)  # a flat colour move: coarse
    prompted = bare + shift - checker(16) * 0.5  # the prompt moves the colour and drops part of the fine field
    assert torch.equal(extensions.coarse(prompted, bare, 0), prompted)  # width 0: the paper's prompt
    assert (extensions.coarse(prompted, bare, 2.0) - (bare + shift)).abs().max() < 0.03
    # the gain scales the coarse move only (the fine field still comes from the bare velocity)
    assert (extensions.coarse(prompted, bare, 2.0, 3.0) - (bare + 3 * shift)).abs().max() < 0.09
    assert torch.equal(extensions.coarse(prompted, bare, 0, 3.0), prompted)


def test_velocity_calls_the_bare_backbone_only_for_a_coarse_prompt():
    g = torch.Generator().manual_seed(0)
    bare = torch.randn(1, 4, 16, 16, generator=g)
    shift = torch.randn(1, 4, 1, 1, generator=g)
    paper_form = prompt_lib.Prompt(2, 4, 1, task="a")
    wide = prompt_lib.Prompt(2, 4, 1, task="b", coarse=2.0, gain=5.0)
    asked = []

    def velocity(x, s, ps):  # what the backbone returns for each entry: its own velocity, bare last
        asked.append(list(ps))
        return torch.stack([bare + shift - checker(16) * 0.5 if p is wide else
                            bare + shift if p is paper_form else bare for p in ps])
    bb = types.SimpleNamespace(velocity=velocity)
    _, boxes, weight = tiles.layout(bare.shape[2:], [16, 16])
    v = sample.velocity(bb, bare, torch.ones(1), [paper_form], boxes, weight)
    assert asked[-1] == [paper_form] and torch.equal(v, bare + shift)  # the paper: as it is
    v = sample.velocity(bb, bare, torch.ones(1), [wide, paper_form], boxes, weight)
    assert asked[-1] == [wide, paper_form, None]  # the bare backbone, last, in the same call
    wide_v = 2 * v - (bare + shift)  # the mix is the mean of the two
    assert (wide_v - (bare + 5 * shift)).abs().max() < 0.15


def test_decode_settings_resolution():
    # explicit options > each prompt's own > the backbone kind's default; a mix takes the smallest of each
    own = prompt_lib.Prompt(2, 4, 1, keep_detail=4, decoded_above=0.2, min_change=0.01)
    none = prompt_lib.Prompt(2, 4, 1)
    width = extensions.PER_KIND["tiny-flux"]["keep_detail"]
    d = (width, 0.0, 0.0)
    assert extensions.decode_settings("tiny-flux", []) == extensions.decode_settings("tiny-flux", [none]) == d
    assert extensions.decode_settings("tiny-flux", [None]) == d
    assert extensions.decode_settings("flux", [none]) == extensions.decode_settings("wan", []) == (0.0, 0.0, 0.0)
    assert extensions.decode_settings("tiny-flux", [own]) == (4.0, 0.2, 0.01)
    assert extensions.decode_settings("tiny-flux", [own, none]) == (min(4.0, width), 0.2, 0.0)
    other = prompt_lib.Prompt(2, 4, 1, keep_detail=0, decoded_above=0.1, min_change=0.004)
    assert extensions.decode_settings("tiny-flux", [own, other]) == (0.0, 0.1, 0.004)
    assert extensions.decode_settings("tiny-flux", [own], 1.0, 0.0) == (1.0, 0.0, 0.01)
    assert extensions.decode_settings("tiny-flux", [own], 1.0, 0.0, 0.0) == (1.0, 0.0, 0.0)


def test_min_change_leaves_out_small_changes_and_shrinks_large_ones():
    # a change below the floor (a drift of a grey level where there was nothing to restore) is
    # left out, so the input comes back exactly; a larger one passes nearly whole (a garrote)
    x = torch.full((3, 32, 32), 0.5)
    base, decoded = x.clone(), x.clone()
    decoded[:, :, :16] += 0.003  # a drift below the floor
    decoded[:, :, 16:] += 0.2  # a restoration
    out = extensions.apply_decode(x, decoded, base, 1.0, 0.0, 0.01)
    assert torch.equal(out[:, :, :8], x[:, :, :8])
    assert torch.allclose(out[:, :, 24:], x[:, :, 24:] + 0.2 - 0.01**2 / 0.2, atol=1e-5)
    decoded[:, :, 16:] -= 0.4  # the same for a change downwards
    down = extensions.apply_decode(x, decoded, base, 1.0, 0.0, 0.01)
    assert torch.allclose(down[:, :, 24:], x[:, :, 24:] - 0.2 + 0.01**2 / 0.2, atol=1e-5)
    assert torch.equal(extensions.apply_decode(x, decoded, base, 1.0, 0.0, 0.0), extensions.apply_decode(x, decoded, base, 1.0))
    assert not torch.equal(extensions.apply_decode(x, decoded, base, 1.0, 0.0, 0.0)[:, :, :8], x[:, :, :8])
    assert torch.equal(extensions.apply_decode(x, decoded, base, 0.0, 0.0, 0.01), decoded)  # the paper's decode


def test_decoded_above_fades_to_the_decode_where_the_change_is_large():
    # where the change is large the output is the decoded latent, where there is none the input:
    # a removed streak does not come back with the input's detail
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    base, decoded = x.clone(), x.clone()
    decoded[:, :, 20:] = 0.0  # a large change on the right
    out = extensions.apply_decode(x, decoded, base, 2.0, 0.05)
    assert torch.allclose(out[:, :, :8], x[:, :, :8], atol=1e-6)  # nothing changed there
    assert torch.allclose(out[:, :, 26:], decoded[:, :, 26:], atol=1e-6)  # changed a lot: the decode
    assert torch.equal(extensions.apply_decode(x, decoded, base, 2.0, 0.0), extensions.apply_decode(x, decoded, base, 2.0))
    assert torch.equal(extensions.apply_decode(x, decoded, base, 0.0, 0.05), decoded)
