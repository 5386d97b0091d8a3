"""Ctrl-C while a search prepares (space built and priced, data checked): one line, exit 130.

A real ``python -m nas.search`` gets a real SIGINT. The moment is fixed by a custom evaluator
module: its import (inside the preparation) imports what the preparation will use, then writes
a marker file outside the working folder; the test waits for it, then signals. The signal then
lands in the work that follows (building the backbone, pricing it), or, with ``HOLD``, in the
import itself.
Nothing may be left in the working folder: no ``runs/``, no database, no study.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.runner import ctrl_c_held

ROOT = Path(__file__).resolve().parents[2]
EARLY = (
    "interrupted before the first trial; no study and no output folder were created "
    "(run the command again to start the search)"
)
HOOK = """\
import os, pathlib, time
# Everything the preparation imports, imported before the mark: what follows it is work.
import evaluators.cost, evaluators.data, search_spaces.backbones, search_spaces.space
from evaluators.surrogate import evaluate
pathlib.Path(os.environ["MARK"]).write_text("preparing")
if os.environ.get("HOLD"):
    time.sleep(120)  # the interrupt lands in this import
"""


def _interrupt_while_preparing(tmp_path: Path, argv: list[str], hold: bool):
    work, hook = tmp_path / "work", tmp_path / "hook"
    work.mkdir()
    hook.mkdir()
    (hook / "hook_eval.py").write_text(HOOK)
    mark = hook / "mark"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{hook}",
        "OMP_NUM_THREADS": "1",
        "MARK": str(mark),
        "HOLD": "1" if hold else "",
    }
    cmd = [sys.executable, "-m", "nas.search", *argv, "--evaluator", "hook_eval:evaluate"]
    proc = subprocess.Popen(
        cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not mark.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the search never reached its preparation"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err, sorted(p.name for p in work.rglob("*"))


def test_ctrl_c_while_the_evaluator_loads_is_one_line_and_writes_nothing(tmp_path):
    argv = ["--backbone", "cifar_resnet20", "--dataset", "synthetic", "--trials", "1"]
    code, out, err, left = _interrupt_while_preparing(tmp_path, argv, hold=True)
    assert code == 130, err
    assert "Traceback" not in err
    assert err.strip() == EARLY
    assert out == ""
    assert left == []  # no runs/, no convnas.db


@pytest.mark.slow
def test_ctrl_c_while_resnet50_is_built_and_priced_is_one_line_and_writes_nothing(tmp_path):
    # resnet50 at 224 takes seconds to build and price after the evaluator is loaded: the
    # signal lands in the middle of that (a later one would create the study and runs/).
    argv = ["--backbone", "resnet50", "--dataset", "synthetic", "--trials", "1"]
    code, out, err, left = _interrupt_while_preparing(tmp_path, argv, hold=False)
    assert code == 130, err
    assert "Traceback" not in err
    assert err.strip() == EARLY
    assert left == []


def test_ctrl_c_is_held_while_the_study_is_created_and_raised_after():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a signal handler runs between bytecodes: it has run by now
            reached.append("end of block")
    assert reached == ["end of block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_while_the_first_is_held_interrupts_at_once():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached.append("after the first")
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached.append("after the second")
    assert reached == ["after the first"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
