"""The authors' JSON list files as published: their degradation labels map to our tasks, their
relative paths resolve against the list's folder, the working folder or --data_root."""
import json
import os

import pytest
import torch

from data import media, pairs

# the label set of the authors' published lists
PUBLISHED = ["Haze", "Rain", "Raindrop", "Snow", "LowLight", "Low-light", "Blur", "Motion blur", "Mixed", "None"]


@pytest.fixture
def published(tmp_path):
    """A list in test_img_jsons/ with paths relative to the folder above it, as the authors ship
    them (test_img_data/<set>/...), one pair per label."""
    root = tmp_path / "release"
    (root / "test_img_jsons").mkdir(parents=True)
    entries = []
    for i, label in enumerate(PUBLISHED):
        for kind in ("input", "gt"):
            path = root / "test_img_data" / "set" / kind / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            media.write_image(str(path), torch.full((3, 8, 8), i / 10))
        entries.append(dict(image_path=f"test_img_data/set/input/{i}.png", target_path=f"test_img_data/set/gt/{i}.png",
                            degradation=label, dataset="set"))
    path = root / "test_img_jsons" / "list.json"
    path.write_text(json.dumps(entries))
    return root, str(path)


def picked(items):
    return sorted(int(os.path.basename(a)[:-4]) for a, _ in items)


def test_labels_map_to_tasks_whatever_the_case(published, monkeypatch):
    root, path = published
    monkeypatch.chdir(root)  # the authors run from the folder above their lists
    with pytest.raises(media.InputError, match="no single task"):
        pairs.json_list(path, "haze")  # Mixed and None are refused, with a message
    want = dict(haze=[0], rain=[1, 2], snow=[3], lowlight=[4, 5], blur=[6, 7])
    for task, idx in want.items():
        assert picked(pairs.json_list(path, task, any_label=True)) == sorted(idx + [8, 9])
    entries = json.load(open(path))
    json.dump([e for e in entries if e["degradation"] not in ("Mixed", "None")], open(path, "w"))
    for task, idx in want.items():
        items = pairs.json_list(path, task)
        assert picked(items) == idx and all(os.path.isfile(a) and os.path.isfile(b) for a, b in items)


def test_a_list_with_no_entry_for_the_task_and_unknown_labels_are_errors(tmp_path):
    path = tmp_path / "l.json"
    (tmp_path / "a.png").write_bytes(b"")  # a list's files must exist (a stat; nothing is read here)
    (tmp_path / "b.png").write_bytes(b"")
    path.write_text(json.dumps([dict(image_path="a.png", target_path="b.png", degradation="RAIN")]))
    assert len(pairs.json_list(str(path), "rain")) == 1  # any case
    with pytest.raises(media.InputError, match="no entries for degradation 'haze'"):
        pairs.json_list(str(path), "haze")  # never a haze prompt trained on rain
    path.write_text(json.dumps([dict(image_path="a.png", target_path="b.png", degradation="Fog")]))
    with pytest.raises(media.InputError, match="unknown degradation label 'Fog'"):
        pairs.json_list(str(path), "haze")


def test_relative_paths_resolve_against_the_list_the_working_folder_or_data_root(published, tmp_path, monkeypatch):
    root, path = published
    monkeypatch.chdir(tmp_path)  # elsewhere: neither here nor beside the list is there a test_img_data/
    items = pairs.json_list(path, "snow", any_label=True, data_root=str(root))
    assert len(items) == 3 and all(os.path.isfile(a) and os.path.isfile(b) for a, b in items)
    monkeypatch.chdir(root)  # from the folder the authors run in, with no --data_root
    assert pairs.json_list(path, "snow", any_label=True) == items
    got = pairs.make_pairs(path, "snow", 3, 8, 1, torch.Generator().manual_seed(0), any_label=True)  # as train.py makes them
    assert len(got) == 3 and got[0][0].shape == (3, 8, 8)
