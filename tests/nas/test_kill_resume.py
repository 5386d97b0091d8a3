"""SIGKILL a running search in the middle of a trial, then run the same command again."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.backends.optuna_backend import open_storage

ROOT = Path(__file__).resolve().parents[2]


def _trials(storage: str):
    # Polls while the search creates the database: open_storage copes with both processes
    # setting up the schema at once (plain RDBStorage would raise IntegrityError then).
    try:
        study = optuna.load_study(study_name="kill", storage=open_storage(storage))
    except KeyError:  # not created yet
        return []
    return study.get_trials()


@pytest.mark.slow
def test_sigkill_loses_no_completed_trial_and_the_rerun_finishes_the_count(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = tmp_path / "s.db"
    storage = f"sqlite:///{db}"
    cmd = [
        sys.executable,
        "-m",
        "nas.search",
        "--backbone",
        "cifar_resnet20",
        "--resolution",
        "16",
        "--dataset",
        "synthetic",
        "--evaluator",
        "evaluators.surrogate:evaluate",
        "--evaluator-option",
        "seconds_per_epoch=0.4",
        "--objectives",
        "accuracy,flops",
        "--sampler",
        "random",
        "--trials",
        "8",
        "--storage",
        str(db),
        "--study",
        "kill",
        "--out",
        str(tmp_path / "out"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 150
        while True:  # wait until 3 trials are complete and the next one is running
            assert proc.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "the search made no progress"
            trials = _trials(storage) if db.exists() else []
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if len(done) >= 3 and running and "arch_id" in running[0].user_attrs:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {t.number: t.values for t in _trials(storage) if t.state == TrialState.COMPLETE}
    interrupted = [t.number for t in _trials(storage) if t.state == TrialState.RUNNING]
    assert len(interrupted) == 1 and len(before) >= 3

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"Resuming study 'kill' in {db}: {len(before)} trials already evaluated" in rerun.stdout
    assert "1 interrupted trial(s) marked failed" in rerun.stdout
    after = {t.number: t for t in _trials(storage)}
    assert sum(t.state == TrialState.COMPLETE for t in after.values()) == 8
    assert {n: after[n].values for n in before} == before  # nothing completed was lost
    killed = after[interrupted[0]]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs["failure"].startswith(f"interrupted: worker process {proc.pid} on ")
    assert (tmp_path / "out" / "pareto" / "pareto.json").is_file()
