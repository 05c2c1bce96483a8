"""The real backbones' defaults at real size, on the meta device (shapes only, no weights): FLUX
and Wan restore in tiles of their training size, Wan with its VAE in fp32, diffusers'
VAE tiling above a tile, bounded batches for a clip through an image backbone, clear errors."""
import pytest
import torch

import backbones
import sample
from conftest import run_here, transformer_inputs


def test_flux_restores_in_tiles_of_its_training_size():
    bb = backbones.random_backbone("flux", "meta")
    assert bb.tile == bb.train_size == 512 and bb.train_batch == 2
    assert bb.vae.use_tiling  # diffusers' own VAE tiling, above its 1024 px tile
    seen = transformer_inputs(bb)
    p = bb.new_prompt(task="a")
    y = sample.restore(bb, torch.empty(3, 1024, 1024, device="meta"), [p], "ebr", 0.4, steps=2, progress=False)
    assert y.shape == (3, 1024, 1024)
    # 128 x 128 latents in tiles of 64 overlapping by 16: three along each side, nine tiles of 32 x 32 tokens
    assert [s["hidden_states"] for s in seen] == [(9, 32 * 32, 64)] * 2


def test_wan_restores_480x832_in_two_tiles_of_its_training_size_with_its_vae_in_fp32():
    bb = backbones.random_backbone("wan", "meta")
    assert bb.tile == bb.train_size == 480 and bb.train_batch == 2 and bb.vae_dtype == "fp32"
    assert backbones.dtypes("cuda", bb.vae_dtype) == (torch.bfloat16, torch.float32)
    assert bb.vae.use_tiling and bb.vae.tile_sample_min_height == bb.vae.tile_sample_min_width == 480
    seen = transformer_inputs(bb)
    p = bb.new_prompt(task="a")
    for h, w in ((480, 832), (832, 480)):
        seen.clear()
        y = sample.restore(bb, torch.empty(3, 33, h, w, device="meta"), [p], "ebr", 0.4, steps=2, progress=False)
        assert y.shape == (3, 33, h, w)
        assert [s["hidden_states"] for s in seen] == [(2, 16, 9, 60, 60)] * 2  # two tiles, one window


def test_tiny_backbones_keep_their_plain_vae():
    for kind in ("tiny-flux", "tiny-wan"):
        bb = backbones.random_backbone(kind, "meta")
        assert not bb.vae_tiling and not bb.vae.use_tiling and bb.train_batch == 4


def test_a_clip_through_an_image_backbone_goes_in_bounded_batches(flux_bb):
    seen = transformer_inputs(flux_bb)
    p = flux_bb.new_prompt(task="a")
    clip = torch.rand(3, 10, 16, 16, generator=torch.Generator().manual_seed(0))
    y = sample.restore(flux_bb, clip, [p], "ebr", 0.4, steps=2, chunk=4, progress=False)
    assert y.shape == clip.shape
    assert max(s["hidden_states"][0] for s in seen) == 4  # frames 0-3, 4-7, 8-9: never all ten at once
    assert sample.restore(flux_bb, clip[:, :4], [p], "ebr", 0.4, steps=2, chunk=4, progress=False).equal(y[:, :4])


@pytest.mark.parametrize("tile", ["20", "4"])
def test_a_bad_tile_is_a_one_line_error(random_tiny, tmp_path, tile):
    import media
    src = tmp_path / "in.png"
    media.write_image(str(src), torch.rand(3, 16, 16))
    code, outp, err = run_here("sample.py", str(src), "--tasks=haze", f"--backbone={random_tiny['tiny-flux']}",
                               f"--tile={tile}", "--prompts_dir=/nowhere")
    assert code == 2 and err.strip() == f"error: --tile={tile}: {random_tiny['tiny-flux'].rstrip('/').split('/')[-1]} " \
                                        f"needs a multiple of 8 px"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
