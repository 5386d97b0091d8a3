"""``--backend ray``: search workers placed by a real local Ray instance, one shared study."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.backends.optuna_backend import open_storage

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("ray.tune")

BASE = [
    sys.executable, "-m", "nas.search",
    "--backbone", "cifar_resnet20",
    "--resolution", "16",
    "--dataset", "synthetic",
    "--evaluator", "evaluators.surrogate:evaluate",
    "--evaluator-option", "seconds_per_epoch=0.2",
    "--budget", "7MFLOPs",
    "--study", "ray",
]  # fmt: skip


def _run(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*BASE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=400
    )


@pytest.mark.slow
def test_ray_workers_fill_one_study_that_the_optuna_backend_then_resumes(tmp_path):
    # A relative storage path: the driver resolves it before Ray runs workers elsewhere.
    r = _run(["--backend", "ray", "--workers", "2", "--trials", "8", "--storage", "s.db"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Ray Tune: 2 workers on a local Ray instance (1 CPU, auto GPU each)" in r.stdout
    assert "Search stopped: reached 8 evaluated trials" in r.stdout
    assert "Configuration for experiment" not in r.stdout  # Tune's own tables stay out
    study = optuna.load_study(study_name="ray", storage=open_storage(str(tmp_path / "s.db")))
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    complete = [t for t in done if not t.user_attrs.get("rejected")]  # what --trials counts
    rejected = len(done) - len(complete)
    assert all((t.user_attrs["flops"] > 7_000_000) == (t not in complete) for t in done)
    assert f"; {rejected} proposals rejected over budget, not counted)" in r.stdout
    assert 8 <= len(complete) <= 9  # the other worker may finish the trial it is running
    owners = {t.system_attrs["convnas:owner"]["pid"] for t in complete}
    assert len(owners) == 2  # two Ray worker processes did trials ...
    record = json.loads((tmp_path / "runs" / "ray" / "search_config.json").read_text())
    assert record["config"]["backend"] == "ray"  # the driver's record; workers leave it alone
    evaluated = [t.user_attrs["arch_id"] for t in complete if "duplicate_of" not in t.user_attrs]
    assert len(evaluated) == len(set(evaluated))  # ... and never the same architecture twice
    assert (tmp_path / "runs" / "ray" / "pareto" / "pareto.json").is_file()
    assert any((tmp_path / "runs" / "ray" / "ray").iterdir())  # Tune's own files

    # The same study, continued by the default backend in this process.
    again = _run(["--trials", str(len(complete) + 2), "--storage", "s.db"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"Resuming study 'ray' in s.db: {len(complete)} trials already evaluated" in again.stdout
    after = optuna.load_study(study_name="ray", storage=open_storage(str(tmp_path / "s.db")))
    evaluated = [
        t
        for t in after.get_trials()
        if t.state == TrialState.COMPLETE and not t.user_attrs.get("rejected")
    ]
    assert len(evaluated) == len(complete) + 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ray-address", "auto"], "ray_address 'auto' needs the ray backend (--backend ray)"),
        (["--backend", "ray", "--workers", "0"], "workers '0' must be >= 1"),
        (["--backend", "ray", "--cpus-per-worker", "0"], "cpus per worker must be a number > 0"),
        (["--backend", "ray", "--gpus-per-worker", "-1"], "gpus per worker must be a number >= 0"),
        (["--backend", "spark"], "invalid choice: 'spark'"),
        (
            ["--backend", "ray", "--ray-address", "127.0.0.1:1"],
            "cannot reach the Ray cluster at '127.0.0.1:1' (Connection refused)",
        ),
    ],
)
def test_bad_backend_arguments_are_one_line_exit_2_and_write_nothing(tmp_path, args, message):
    r = _run([*args, "--trials", "2", "--storage", "s.db"], tmp_path)
    assert r.returncode == 2
    assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []
