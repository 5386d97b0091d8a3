"""``nas.retrain``: a run killed before its first checkpoint can be started again in its folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nas.retrain import load_checkpoint, main

REPO = Path(__file__).resolve().parents[2]
ARCH = {
    "format": "convnas.arch/1",
    "backbone": "cifar_resnet20",
    "num_classes": 10,
    "resolution": 16,
    "slots": "all",
    "ops": {"layer1.0.conv2": {"op": "octconv", "alpha": 0.5}},
}
# Epoch 1 of 4,000 synthetic images lasts seconds on one thread: long enough to be killed in.
ARGS = ["--dataset", "synthetic", "--batch-size", "32", "--augment", "none", "--no-progress",
        "--subset", "4000", "--epochs", "1", "--no-latency"]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def killed_run(tmp_path) -> tuple[Path, Path]:
    """A real run SIGKILLed during epoch 1: its folder has config.json but no last.pt."""
    arch = tmp_path / "member.json"
    arch.write_text(json.dumps(ARCH))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nas.retrain", str(arch), *ARGS, "--out", str(out)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "config.json").is_file():  # written just before epoch 1 starts
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    assert (out / "config.json").is_file() and not (out / "last.pt").exists()
    return arch, out


@pytest.mark.slow
@pytest.mark.parametrize("resume", [False, True], ids=["rerun", "resume"])
def test_a_run_killed_before_its_first_checkpoint_starts_again_from_epoch_1(
    killed_run, resume, capsys
):
    arch, out = killed_run
    assert main([str(arch), *ARGS, "--out", str(out), *(["--resume"] if resume else [])]) == 0
    printed = capsys.readouterr().out
    note = f"{str(out)!r} has no last.pt (its run stopped before the first epoch ended); "
    assert (note + "starting from epoch 1" in printed) == resume
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["epoch"] for s in lines] == [1]
    assert json.loads((out / "config.json").read_text())["resumed_at_epoch"] is None
    assert (out / "result.json").is_file()


def test_resume_still_refuses_a_folder_that_does_not_exist(tmp_path, capsys):
    arch = tmp_path / "member.json"
    arch.write_text(json.dumps(ARCH))
    assert main([str(arch), *ARGS, "--out", str(tmp_path / "typo"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"nothing to resume in '{tmp_path / 'typo'}'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member.json"]


@pytest.mark.parametrize("kept", ["last.pt", "result.json"])
def test_a_folder_with_a_checkpoint_or_a_result_is_still_never_overwritten(tmp_path, kept, capsys):
    arch = tmp_path / "member.json"
    arch.write_text(json.dumps(ARCH))
    out = tmp_path / "run"
    out.mkdir()
    (out / kept).write_text("precious")
    (out / "config.json").write_text("{}")
    assert main([str(arch), *ARGS, "--out", str(out)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(["config.json", kept])
    assert (out / kept).read_text() == "precious"
