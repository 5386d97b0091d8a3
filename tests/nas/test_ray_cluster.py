"""``--backend ray`` on a real two-node Ray cluster, one node stopped in the middle of a search.

The cluster is Ray's own test helper (:class:`ray.cluster_utils.Cluster`): a head node (GCS,
raylet, object store) and a second node with its own raylet, object store and ports, joined to
the head over TCP as a node on another machine would be. Each has one CPU, so the two search
workers run one on each node. The search (``python -m nas.search --ray-address HEAD``, in a
process of its own) keeps its study on the PostgreSQL server named by
``CONVNAS_TEST_POSTGRES_URL`` (``.ci/run`` starts one; the test is skipped without it), in a
database of its own, as workers on several machines would. Once both workers have finished trials,
the second node is removed (all of its processes killed); the worker on the head must carry
the study to its trial count, with every trial completed before the loss still complete and
no trial left running.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.backends.constraints import is_rejected
from nas.backends.optuna_backend import open_storage

ROOT = Path(__file__).resolve().parents[2]
SERVER = os.environ.get("CONVNAS_TEST_POSTGRES_URL")
TRIALS = 12

pytest.importorskip("ray.tune")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SERVER, reason="CONVNAS_TEST_POSTGRES_URL is not set (.ci/run sets it)"),
]


@pytest.fixture()
def cluster(tmp_path):
    from ray.cluster_utils import Cluster

    c = Cluster(shutdown_at_exit=False)
    try:
        c.add_node(num_cpus=1, include_dashboard=False)  # the head
        second = c.add_node(num_cpus=1)
        c.wait_for_nodes()
        yield c, second
    finally:
        c.shutdown()


def _trials(storage: str) -> list:
    try:
        study = optuna.load_study(study_name="cluster", storage=open_storage(storage))
    except KeyError:  # not created yet
        return []
    return study.get_trials(deepcopy=False)


def test_a_search_survives_losing_a_ray_node(cluster, postgres_database, tmp_path):
    c, second = cluster
    storage = postgres_database
    argv = [
        sys.executable, "-m", "nas.search",
        "--backend", "ray", "--ray-address", c.address, "--workers", "2",
        "--backbone", "cifar_resnet20", "--resolution", "16", "--dataset", "synthetic",
        "--evaluator", "evaluators.surrogate:evaluate",
        "--evaluator-option", "seconds_per_epoch=0.4",
        "--budget", "7MFLOPs", "--trials", str(TRIALS),
        "--storage", storage, "--study", "cluster",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "search.log"
    with open(log, "w") as out:
        search = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            # Wait until both workers (one per node) have completed trials.
            deadline = time.monotonic() + 900  # minutes on a loaded 2-core machine
            while True:
                done = [
                    t
                    for t in _trials(storage)
                    if t.state == TrialState.COMPLETE and not is_rejected(t)
                ]
                owners = {t.system_attrs["convnas:owner"]["pid"] for t in done}
                if len(owners) == 2 or search.poll() is not None:
                    break
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
            assert search.poll() is None, log.read_text()[-3000:]
            assert len(done) < TRIALS  # the node goes in the middle of the search
            before = {t.number: t.values for t in done}
            c.remove_node(second, allow_graceful=False)  # the second machine is gone
            code = search.wait(timeout=900)
        finally:
            if search.poll() is None:
                search.kill()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert f"Ray Tune: 2 workers on {c.address} (1 CPU, auto GPU each)" in text
    assert "Ray worker failed: worker" in text  # the one on the lost node
    assert f"Search stopped: reached {TRIALS} evaluated trials" in text

    trials = _trials(storage)
    complete = {t.number: t.values for t in trials if t.state == TrialState.COMPLETE}
    evaluated = [t for t in trials if t.state == TrialState.COMPLETE and not is_rejected(t)]
    assert TRIALS <= len(evaluated) <= TRIALS + 1  # the count is reached ...
    assert all(complete.get(n) == v for n, v in before.items())  # ... nothing done is lost
    running = [(t.number, t.system_attrs.get("convnas:owner")) for t in trials
               if t.state == TrialState.RUNNING]  # fmt: skip
    assert not running, text[-3000:]
    # The trial the lost worker was running (if it was not between two trials) is failed by
    # the driver as soon as Tune reports the worker failed, not minutes later by a heartbeat.
    # Lost while its sampler was still proposing (before it recorded its owner), the trial
    # has no owner tag: the driver fails it as left without an owner by the failed worker.
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) <= 1, [t.user_attrs for t in failed]
    for t in failed:
        assert t.user_attrs["failure"].startswith(
            (
                "interrupted: its Ray worker failed (worker ",
                "interrupted: left without an owner by a failed worker (ray:",
            )
        ), t.user_attrs["failure"]
        assert "Marked 1 trial of the failed workers as interrupted" in text
    after_loss = {
        t.system_attrs["convnas:owner"]["pid"] for t in evaluated if t.number not in before
    }
    assert len(after_loss) >= 1
    print(text)  # shown with -s: the README's "Several machines" output
