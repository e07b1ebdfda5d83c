"""Pretraining under torchrun on the CPU (gloo, 2 processes): the run one process makes, and resumable
on another number of processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lab.methods.store import load_results
from lab.nn.checkpoints import load_model
from lab.paths import scale_dir

SCRIPT = Path(__file__).with_name("ddp_pretrain.py")


@pytest.fixture
def data_folder(tiny_corpus, tmp_path, monkeypatch):
    """`folder(name)`: an empty LAB_DATA sharing the tiny corpus, for this process and the ones it starts."""
    corpus = scale_dir("tiny") / "corpus"

    def folder(name: str) -> Path:
        root = tmp_path / name
        (root / "tiny").mkdir(parents=True)
        (root / "tiny" / "corpus").symlink_to(corpus)
        monkeypatch.setenv("LAB_DATA", str(root))
        return root

    return folder


def torchrun(nproc: int, out: Path, *steps: int) -> list:
    env = {**os.environ, "LAB_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                    str(SCRIPT), str(out), *map(str, steps)], check=True, env=env, timeout=300)
    return json.loads((out / "losses.json").read_text())


def one_process(out: Path, *steps: int) -> list:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import ddp_pretrain
    finally:
        sys.path.pop(0)
    ddp_pretrain.main(out, list(steps))
    return json.loads((out / "losses.json").read_text())


def checkpoints(root: Path) -> dict[str, Path]:
    return {p.name: p for p in (root / "tiny" / "checkpoints").glob("slm-*/step*")}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_model(a).state_dict(), load_model(b).state_dict()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=1e-5, msg=name)


def test_two_processes_train_as_one_and_resume_on_one(data_folder, one_thread):
    one = data_folder("one")
    single = one_process(one, 3, 6)

    two = data_folder("two")
    ddp = torchrun(2, two, 3, 6)
    assert [s for s, _ in ddp] == [s for s, _ in single]
    assert [loss for _, loss in ddp] == pytest.approx([loss for _, loss in single], rel=1e-5)
    ours, theirs = checkpoints(one), checkpoints(two)
    assert sorted(ours) == sorted(theirs) == ["step00000003", "step00000006"]
    for name in ours:
        assert_same_weights(ours[name], theirs[name])
    rows = load_results("tiny")  # rank 0 alone stored them: one row per checkpoint
    assert len(rows) == 2 and set(rows["domain"]) == {"generic"}

    # Stopped after the first checkpoint on two processes, continued on one.
    resumed = data_folder("resumed")
    torchrun(2, resumed, 3)
    after = one_process(resumed, 3, 6)  # from the main run saved at the first branch's fork, step 2
    assert [s for s, _ in after] == [3, 4, 5, 6] == [s for s, _ in single[-4:]]
    assert [loss for _, loss in after] == pytest.approx([loss for _, loss in single[-4:]], rel=1e-5)
    assert_same_weights(checkpoints(one)["step00000006"], checkpoints(resumed)["step00000006"])
