"""Several worker processes on one study: the same command started twice on a journal file."""

import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_workers_share_one_journal_study_and_stop_at_the_requested_count(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = tmp_path / "study.log"
    cmd = [
        sys.executable,
        "-m",
        "nas.search",
        "--backbone", "cifar_resnet20",
        "--resolution", "16",
        "--dataset", "synthetic",
        "--evaluator", "evaluators.surrogate:evaluate",
        # Each simulated epoch sleeps, so both workers are busy at the same time.
        "--evaluator-option", "seconds_per_epoch=0.3",
        "--budget", "7MFLOPs",
        "--trials", "16",
        "--storage", str(journal),
        "--study", "shared",
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # noqa: E501
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for w, (_out, err) in zip(workers, outputs):
        assert w.returncode == 0, err
    # One of them created the study, the other joined it.
    assert sum("New study 'shared'" in out for out, _ in outputs) == 1
    assert sum("Resuming study 'shared'" in out for out, _ in outputs) == 1

    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    complete = [t for t in done if not t.user_attrs.get("rejected")]  # what --trials counts
    # Each worker stops once the study holds 16 evaluated trials; the other may finish the
    # trial it is running, so the study ends with 16 or 17. Proposals over the budget are in
    # the study too (rejected, infeasible), and both workers report the storage's count.
    assert 16 <= len(complete) <= 17
    rejected = len(done) - len(complete)
    assert rejected > 0
    assert all((t.user_attrs["flops"] > 7_000_000) == (t not in complete) for t in done)
    # The worker that stopped last read every rejection of both from the storage.
    printed = [
        int(re.search(r"(\d+) proposals rejected over budget", out)[1]) for out, _ in outputs
    ]
    assert max(printed) == rejected
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # Both processes did trials.
    owners = {t.system_attrs["convnas:owner"]["pid"] for t in complete}
    assert len(owners) == 2
    # An architecture is evaluated once per study: repeats are marked as duplicates.
    evaluated = [t.user_attrs["arch_id"] for t in complete if "duplicate_of" not in t.user_attrs]
    assert len(evaluated) == len(set(evaluated))
