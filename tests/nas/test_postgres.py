"""A real PostgreSQL server as the study storage: what a cluster of workers uses.

Runs when ``CONVNAS_TEST_POSTGRES_URL`` names a server where the user may create databases,
e.g. ``postgresql://postgres@127.0.0.1:55432/postgres``; ``.ci/run`` starts a throwaway
server and sets it. Each test works in a database of its own, dropped afterwards.
"""

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.backends.optuna_backend import open_storage

ROOT = Path(__file__).resolve().parents[2]
SERVER = os.environ.get("CONVNAS_TEST_POSTGRES_URL")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SERVER, reason="CONVNAS_TEST_POSTGRES_URL is not set (.ci/run sets it)"),
]


_OPEN = """
import pathlib, sys, time
import optuna
import nas.backends.optuna_backend as b
barrier, url, name, n = sys.argv[1:5]
pathlib.Path(barrier, name).touch()
while len(list(pathlib.Path(barrier).iterdir())) < int(n):
    time.sleep(0.001)
optuna.logging.set_verbosity(optuna.logging.ERROR)
optuna.create_study(storage=b.open_storage(url), study_name=name)
print("ok")
"""


def test_workers_opening_a_new_database_together_all_succeed(postgres_database, tmp_path):
    barrier = tmp_path / "ready"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN, str(barrier), postgres_database, f"s{i}", "4"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-1500:]
        assert out.strip() == "ok"
    names = sorted(s.study_name for s in open_storage(postgres_database).get_all_studies())
    assert names == ["s0", "s1", "s2", "s3"]


def test_two_search_workers_share_one_study_on_postgresql(postgres_database, tmp_path):
    cmd = [
        sys.executable, "-m", "nas.search",
        "--backbone", "cifar_resnet20",
        "--resolution", "16",
        "--dataset", "synthetic",
        "--evaluator", "evaluators.surrogate:evaluate",
        "--evaluator-option", "seconds_per_epoch=0.3",
        "--budget", "7MFLOPs",
        "--trials", "12",
        "--storage", postgres_database,
        "--study", "pg",
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for w, (_out, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-2000:]
    assert sum("New study 'pg'" in out for out, _ in outputs) == 1
    assert sum("Resuming study 'pg'" in out for out, _ in outputs) == 1
    trials = optuna.load_study(
        study_name="pg", storage=open_storage(postgres_database)
    ).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    complete = [t for t in done if not t.user_attrs.get("rejected")]  # what --trials counts
    assert 12 <= len(complete) <= 13  # the other worker may finish the trial it is running
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len({t.system_attrs["convnas:owner"]["pid"] for t in complete}) == 2
    evaluated = [t.user_attrs["arch_id"] for t in complete if "duplicate_of" not in t.user_attrs]
    assert len(evaluated) == len(set(evaluated))
    # infeasible trials carry the dashboard's legacy constraint list on PostgreSQL too
    infeasible = [t for t in done if t.user_attrs.get("feasible") is False]
    assert infeasible
    assert all(any(c > 0 for c in t.system_attrs["constraints"]) for t in infeasible)
    assert (tmp_path / "out" / "pareto" / "pareto.json").is_file()
