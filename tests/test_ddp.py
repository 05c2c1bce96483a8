"""Several processes with torch's own launcher (torchrun, gloo on CPU): one prompt trained
data-parallel, and a folder's files shared among ranks.

The relation checked for training: micro-batch slot j (= rank * accum + m) draws its pairs, t and
noise from its own generator, and a step averages the prompt's gradients over all slots. So
`torchrun --nproc_per_node=2 train.py --batch=2` and `train.py --batch=2 --accum=2` (one process)
take the same steps on the same draws, and with two slots the sum of the two gradients is the
same float either way (a + b == b + a), so the prompts, the losses and the generators' states
are equal bit for bit. The test chains both layouts in one run: steps 1-2 in one process
(--accum=2), steps 3-4 resumed by two processes, against 4 steps of two processes from scratch.
"""
import os

import pytest
import torch
from safetensors.torch import load_file

from data import media
from conftest import run

TRAIN = ["train.py", "--task=haze", "--pool=6", "--val_pairs=2", "--batch=2", "--size=32", "--threads=1",
         "--val_every=2"]
TORCHRUN = ["torchrun", "--standalone", "--nproc_per_node=2"]

pytestmark = pytest.mark.slow  # two processes each, started by torchrun: a minute or two


def test_two_processes_train_what_one_process_with_accum_2_trains(random_tiny, tmp_path):
    bb = f"--backbone={random_tiny['tiny-flux']}"
    a, b = tmp_path / "a", tmp_path / "b"
    code, outp, err = run(*TORCHRUN, *TRAIN, bb, "--steps=4", f"--out={a}")
    assert code == 0, err
    assert "batch 2 x 1 micro-batches x 2 processes" in outp
    assert outp.count("step 4: loss") == 1  # rank 0 alone reports and validates
    code, _, err = run(*TRAIN, bb, "--steps=2", "--accum=2", f"--out={b}")
    assert code == 0, err
    code, outp, err = run(*TORCHRUN, *TRAIN, bb, "--steps=4", f"--out={b}", "--resume")
    assert code == 0, err
    assert "resumed from" in outp
    pa, pb = load_file(a / "haze.safetensors"), load_file(b / "haze.safetensors")
    assert torch.equal(pa["bank"], pb["bank"]) and torch.equal(pa["gates"], pb["gates"])
    assert pa["gates"].abs().sum() > 0
    ck_a = torch.load(a / "haze.ckpt.pt", weights_only=True)
    ck_b = torch.load(b / "haze.ckpt.pt", weights_only=True)
    assert ck_a["log"] == ck_b["log"] and len(ck_a["log"]) == 4
    assert len(ck_a["rng"]) == 2 and all(torch.equal(x, y) for x, y in zip(ck_a["rng"], ck_b["rng"]))
    assert not torch.equal(ck_a["rng"][0], ck_a["rng"][1])  # the ranks drew different pairs
    # a resume with another number of micro-batches per step is refused in one line
    code, _, err = run(*TRAIN, bb, "--steps=6", f"--out={b}", "--resume")
    assert code == 2 and "micro-batches per step" in err and "Traceback" not in err


def test_a_folder_is_shared_among_ranks(random_tiny, tmp_path):
    import backbones
    import prompt as prompt_lib
    bb = backbones.load(random_tiny["tiny-flux"], device="cpu")
    p = bb.new_prompt(task="haze", bridge="ebr", t0=0.4)
    with torch.no_grad():
        p.gates.fill_(0.3)
    prompt_lib.save(p, tmp_path / "haze.safetensors")
    (tmp_path / "in").mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        media.write_image(str(tmp_path / "in" / f"{i}.png"), torch.rand(3, 16, 24, generator=g))
    args = ["sample.py", str(tmp_path / "in"), f"--tasks={tmp_path / 'haze.safetensors'}",
            f"--backbone={random_tiny['tiny-flux']}", "--threads=1"]
    code, outp, err = run(*TORCHRUN, *args, f"--out={tmp_path / 'two'}")
    assert code == 0, err
    names = [f"{i}_restored_haze.png" for i in range(3)]
    assert sorted(os.listdir(tmp_path / "two")) == names
    done = [line.split(" -> ")[0].split("] ") for line in outp.splitlines() if " -> " in line]
    assert sorted(src for _, src in done) == sorted(str(tmp_path / "in" / f"{i}.png") for i in range(3)), outp
    assert {who for who, _ in done} == {"[rank 0", "[rank 1"}  # each file once, both ranks worked
    code, _, err = run(*args, f"--out={tmp_path / 'one'}")
    assert code == 0, err
    for n in names:  # the same restoration whichever process made it
        assert torch.equal(media.read_image(str(tmp_path / "two" / n)), media.read_image(str(tmp_path / "one" / n)))
