"""The shapes world (shapes.py) and its backbone, tiny-shapes: the data, the splits, the code path."""
import json
import os

import pytest
import torch

import backbones
import extensions
from data import pairs, shapes
from plumbing import tiny
from conftest import run



def test_an_image_is_a_function_of_its_index_and_the_splits_never_meet():
    x, cap = shapes.draw(shapes.index("val", 3))
    y, cap2 = shapes.draw(shapes.index("val", 3))
    assert torch.equal(x, y) and cap == cap2
    assert x.shape == (3, shapes.SIZE, shapes.SIZE) and 0 <= x.min() and x.max() <= 1
    assert not torch.equal(x, shapes.draw(shapes.index("test", 3))[0])
    starts = sorted(shapes.SPLITS.values())  # each split's range ends where the next begins
    assert len(shapes.Split("train")) <= starts[1] - starts[0] and starts[1] - starts[0] <= starts[2] - starts[1]


def test_captions_name_what_is_drawn_and_fit_the_text_encoder():
    xs, caps = shapes.batch("train", 0, 200)
    tok = tiny.word_tokenizer()
    for c in caps:  # one token per word, every word known, and room for the end token
        ids = tok(c).input_ids
        assert len(ids) == len(c.split()) + 1 <= tiny.SHAPES_TEXT_LEN and tok.unk_token_id not in ids
    for c in caps[:50]:
        parts = c.split(" on ")
        assert len(parts) == 2 and parts[1] in shapes.COLOURS
        for thing in parts[0].split(" and "):
            colour, kind = thing.split(" ")
            assert colour in shapes.COLOURS and kind in shapes.SHAPES
    # some pixel of an image is its shape's named colour
    x, c = xs[0], caps[0]
    colour = torch.tensor(shapes.COLOURS[c.split(" ")[0]]).float() / 255
    assert (x - colour[:, None, None]).abs().sum(0).min() < 0.05  # some pixel is the named colour


def test_the_word_tokenizer_saves_loads_and_marks_unseen_words(tmp_path):
    from transformers import AutoTokenizer
    tok = tiny.word_tokenizer()
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)  # as backbones.load reads it
    text = ["red ring on blue", "remove the haze from this image and make it clear", "purple elephant"]
    assert again(text).input_ids == tok(text).input_ids
    assert tok("purple elephant").input_ids == [tok.convert_tokens_to_ids("purple"), tok.unk_token_id, tok.eos_token_id]


def test_training_items_are_drawn_lazily_and_eval_pairs_are_fixed():
    items, synthetic = pairs.items("shapes", "rain")
    assert synthetic and len(items) == 1_000_000 and items[5] == f"shapes:{shapes.index('train', 5)}"
    assert torch.equal(pairs.load(items[5]), shapes.draw(shapes.index("train", 5))[0])
    a = pairs.make_pairs("shapes-test", "rain", 3, 64, 1, torch.Generator().manual_seed(0))
    b = pairs.make_pairs("shapes-test", "rain", 3, 64, 1, torch.Generator().manual_seed(1))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert torch.equal(a[0][1], shapes.draw(shapes.index("test", 0))[0])
    v = pairs.make_pairs("shapes-val", "rain", 1, 64, 1, torch.Generator())
    assert not torch.equal(v[0][1], a[0][1])


def test_tiny_shapes_runs_the_flux_path_with_its_own_settings():
    bb = backbones.random_backbone("tiny-shapes")
    assert bb.kind == "tiny-shapes" and isinstance(bb, backbones.FluxBackbone)
    assert bb.prompt_shape == (tiny.SHAPES_TEXT_LEN, 128, 6) and bb.data == "shapes" and bb.heldout == "shapes-test"
    z = bb.encode(shapes.batch("test", 0, 2)[0] * 2 - 1)
    assert z.shape == (2, 16, 8, 8)  # an 8x VAE: 4 x 4 tokens
    v = bb.velocity(z, torch.full((2,), 0.3), [None, bb.new_prompt(task="rain")])
    assert v.shape == (2, 2, 16, 8, 8) and torch.equal(v[0], v[1])  # a zero-gate prompt changes nothing


@pytest.mark.skipif(not os.path.isfile(os.path.join(backbones.TINY["tiny-shapes"], "pretrain.json")),
                    reason="the shapes world's weights are not made yet (python pretrain.py --which=tiny-shapes)")
def test_shipped_shapes_prior_knows_its_world():
    # pre-training's own judgement, recorded beside the weights: samples score near real test images
    log = json.load(open(os.path.join(backbones.TINY["tiny-shapes"], "pretrain.json")))
    p = log["prior"]  # the judge reads the real images back
    assert p["read_back_real_test"] > 0.95 and 0 <= p["read_back_samples_for_captions"] <= 1, p
    bb = backbones.load("tiny-shapes", device="cpu", keep_text_encoder=True)
    a, b = bb.encode_text(["red circle on blue", "blue circle on red"])["context"].unbind(0)
    assert (a - b).abs().mean() > 1e-3  # the trained encoder tells colours apart


@pytest.mark.slow
def test_pretrain_smoke_makes_the_shapes_world(tmp_path):
    code, outp, err = run("pretrain.py", "--which=tiny-shapes", "--vae_steps=2", "--tf_steps=2", "--shapes_bank=64",
                          "--eval_every=2", f"--out={tmp_path}", f"--work={tmp_path / 'work'}")
    assert code == 0, err
    folder = tmp_path / "tiny-shapes"
    log = json.load(open(folder / "pretrain.json"))
    assert log["steps"]["transformer"] == 2 and set(log["prior"]) >= {"read_back_real_test", "read_back_samples_for_captions"}
    bb = backbones.load(str(folder), device="cpu", keep_text_encoder=True)
    assert bb.kind == "tiny-shapes" and bb.transformer.dtype == torch.float32
    assert (folder / "samples.png").is_file()


def test_the_judge_reads_the_world_back_and_fails_blobs():
    # the prior's score can fail: captions are read back from real images, not from the same images
    # smeared into blobs, nor with another image's caption
    assert shapes.labels("red ring and blue circle on green") == ({("red", "ring"), ("blue", "circle")}, "green")
    x, caps = shapes.batch("test", 0, 200)
    real = shapes.read_back(x, caps).float().mean()
    assert real > 0.95
    blobs = extensions.lowpass(x, 8.0)  # a blurred circle is still a circle; nothing else survives
    assert shapes.read_back(blobs, caps).float().mean() < real / 4
    square = [i for i, c in enumerate(caps) if "square" in c]  # a rounded square is a blob, not a square
    assert shapes.read_back(blobs[square], [caps[i] for i in square]).float().mean() < 0.05
    assert shapes.read_back(x, caps[1:] + caps[:1]).float().mean() < 0.02


def test_read_parts_says_which_part_of_a_caption_fails():
    x, caps = shapes.batch("test", 0, 100)
    real = shapes.read_parts(x, caps)
    assert min(real.values()) > 0.95
    blobs = shapes.read_parts(extensions.lowpass(x, 8.0), caps)  # blurred: colours and background stay, outlines go
    assert blobs["background"] > 0.9 and blobs["shapes"] < real["shapes"] / 2 and blobs["of_the_world"] < real["of_the_world"]
    other = shapes.read_parts(x, caps[1:] + caps[:1])  # another image's caption: its words mostly fail
    assert other["of_the_world"] == real["of_the_world"] and other["background"] < 0.5 and other["shapes"] < 0.05
    assert set(shapes.read_parts(x)) == {"of_the_world"}  # without captions, only whether it is of the world


def test_words_read_swaps_one_word_of_a_caption():
    assert [shapes._swap("red ring on blue", w) for w in ("kind", "colour", "bg")] == [
        "red circle on blue", "green ring on blue", "red ring on green"]
    bb = backbones.load("tiny-shapes", device="cpu", keep_text_encoder=True)
    z = bb.encode(shapes.batch("test", 0, 2)[0] * 2 - 1)
    moved = shapes.words_read(bb, z, shapes.batch("test", 0, 2)[1], torch.Generator().manual_seed(0), times=(0.5,))
    assert set(moved) == {f"t=0.5, {w}" for w in ("kind", "colour", "bg", "null text")}
    assert all(v > 0 for v in moved.values())  # each changed caption reaches the velocity


def test_lab_intervals_and_verdicts():
    import lab
    m, h = lab.interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert m == 3.0 and abs(h - 2.776 * (2.5 ** 0.5) / 5 ** 0.5) < 1e-3  # t(0.975, 4) = 2.776
    assert lab.verdict([0.5, 0.6, 0.4, 0.55, 0.45]) == "REPRODUCED"
    assert lab.verdict([-0.5, -0.6, -0.4, -0.55, -0.45]) == "NOT REPRODUCED"
    assert lab.verdict([0.5, -0.6, 0.4, -0.55, 0.45]) == "INCONCLUSIVE"
    assert lab.verdict([3.0]) == "INCONCLUSIVE"  # one seed decides nothing


def test_lab_trains_once_per_seed_and_scores_a_batch(tmp_path):
    import lab
    bb = backbones.random_backbone("tiny-shapes")
    p = lab.trained(bb, "haze", seed=1, steps=2, pool=4, cache=str(tmp_path))
    files = list((tmp_path / f"tiny-shapes-{lab.fingerprint(bb)}").iterdir())  # kept per weights
    assert len(files) == 1 and "seed1" in files[0].name
    again = lab.trained(bb, "haze", seed=1, steps=2, pool=4, cache=str(tmp_path))  # read back, not retrained
    assert torch.equal(p.bank, again.bank)
    other_weights = backbones.random_backbone("tiny-shapes", seed=1)
    assert lab.fingerprint(other_weights) != lab.fingerprint(bb)
    other = lab.trained(bb, "haze", seed=2, steps=2, pool=4, cache=str(tmp_path))
    assert not torch.equal(p.bank, other.bank)
    test = lab.held_out(bb, "haze", "test", 3)
    rows = lab.scores(bb, [p], "ebr", bb.t0, test)
    assert len(rows) == 3 and all(0 < r["psnr"] < 100 for r in rows)
