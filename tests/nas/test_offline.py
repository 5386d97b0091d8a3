"""The main command on a machine that cannot download: the bundled sample replaces CIFAR-10.

No test here downloads anything. The search processes get ``https_proxy`` pointed at a closed
local port, so a download attempt fails at once even on a machine with internet; the probe of
the download server (which a proxy skips) is tested only where the server's name does not
resolve.
"""

import json
import os
import pickle
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from evaluators.data import cifar_unavailable
from nas.config import SearchConfig
from nas.plan import prepare
from nas.search import main

ROOT = Path(__file__).resolve().parents[2]
NO_NET = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
OFFLINE_LINE = (
    "offline: searching on the bundled 2,500-image CIFAR-10 sample (CIFAR-10 is not in "
    "--data-dir 'data' and could not be downloaded); pass --data-dir DIR holding "
    "cifar-10-batches-py/ for the full set"
)
# A real (tiny) proxy training on the sample: 1 epoch of 3 steps of 16 images.
TINY = [
    "--backbone",
    "cifar_resnet20",
    "--resolution",
    "16",
    "--budget",
    "7MFLOPs",
    "--objectives",
    "accuracy,flops",
    "--proxy-epochs",
    "1",
    "--proxy-subset",
    "90",
    "--batch-size",
    "16",
    "--evaluator-option",
    "max_steps_per_epoch=3",
]


def _search(cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "nas.search", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **NO_NET, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )


def _resolves(host):
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _write_cifar10(root, n=20):
    """CIFAR-10's python layout with ``n`` random images per batch."""
    rng, folder = np.random.default_rng(0), root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            "labels": [i % 10 for i in range(n)],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))


@pytest.mark.slow
def test_the_default_search_offline_runs_on_the_sample_says_so_once_and_records_it(tmp_path):
    proc = _search(tmp_path, *TINY, "--trials", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == OFFLINE_LINE
    assert sum("offline" in line for line in lines) == 1
    assert lines.index(OFFLINE_LINE) < next(i for i, s in enumerate(lines) if s.startswith("trial"))
    assert "proxy cifar10-sample, 1 epoch" in lines[2]
    (folder,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert folder.name.startswith("cifar_resnet20-16-all-cifar10-sample-7MFLOPs-")
    record = json.loads((folder / "search_config.json").read_text())
    assert record["config"]["dataset"] == record["settings"]["dataset"] == "cifar10-sample"
    assert record["eval_config"]["dataset"] == "cifar10-sample"
    assert "could not download cifar10" in record["offline"]
    assert not (tmp_path / "data").exists()  # the failed download left nothing behind

    import optuna

    study = optuna.load_study(
        study_name=folder.name, storage=f"sqlite:///{tmp_path}/runs/convnas.db"
    )
    assert study.user_attrs["convnas"]["dataset"] == "cifar10-sample"
    assert study.trials[0].user_attrs["proxy"]["dataset"] == "cifar10-sample"

    # The same command again resumes the sample study (and says offline once more).
    again = _search(tmp_path, *TINY, "--trials", "2")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == OFFLINE_LINE
    assert f"Resuming study '{folder.name}'" in again.stdout


def _plan(tmp_path, **kw):
    kw = {"backbone": "cifar_resnet20", "resolution": 16, "data_dir": str(tmp_path / "data"), **kw}
    return prepare(
        SearchConfig(**kw, storage=f"sqlite:///{tmp_path}/x.db", objectives=("accuracy", "flops")),
        sample_fallback=True,
    )


def test_full_cifar10_on_disk_is_searched_under_another_study_name(tmp_path, monkeypatch):
    for k, v in NO_NET.items():
        monkeypatch.setenv(k, v)
    offline = _plan(tmp_path)
    assert offline.config.dataset == "cifar10-sample" and offline.offline is not None
    _write_cifar10(tmp_path / "data")
    full = _plan(tmp_path)
    assert full.config.dataset == "cifar10" and full.offline is None
    assert full.study.startswith("cifar_resnet20-16-all-cifar10-nobudget-")
    assert offline.study.startswith("cifar_resnet20-16-all-cifar10-sample-nobudget-")
    assert full.resolved["dataset"] == "cifar10"
    # Only the dataset differs between the two studies' settings.
    diff = {k for k in full.resolved if full.resolved[k] != offline.resolved[k]}
    assert diff == {"dataset"}
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--no-download"], r"cifar10 is not in --data-dir 'data' .*downloading is off"),
        (["--dataset", "cifar10"], r"could not download cifar10 from https://www\.cs\.toronto"),
        (["--dataset", " CIFAR10 "], r"could not download cifar10 from https://www\.cs\.toronto"),
    ],
)
def test_no_download_or_an_explicit_cifar10_keep_the_error(
    args, match, tmp_path, monkeypatch, capsys
):
    for k, v in NO_NET.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    assert main([*TINY, *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("python -m nas.search: error: ")
    assert re.search(match, captured.err)
    assert list(tmp_path.iterdir()) == []


def test_a_custom_evaluator_keeps_the_dataset_as_given(tmp_path, monkeypatch):
    for k, v in NO_NET.items():
        monkeypatch.setenv(k, v)
    monkeypatch.syspath_prepend(str(ROOT))
    plan = _plan(tmp_path, evaluator="experiments.surrogate:evaluate")
    assert plan.config.dataset == "cifar10" and plan.offline is None


@pytest.mark.skipif(_resolves("www.cs.toronto.edu"), reason="this machine reaches CIFAR's server")
def test_without_network_the_probe_answers_fast_and_writes_nothing(tmp_path, monkeypatch):
    for k in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(k, raising=False)
    t0 = time.monotonic()
    reason = cifar_unavailable("cifar10", tmp_path / "data", probe_s=2.0)
    assert time.monotonic() - t0 < 2.5
    assert reason.startswith("cannot reach https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
    assert list(tmp_path.iterdir()) == []


def test_cifar10_on_disk_needs_no_network(tmp_path, monkeypatch):
    for k, v in NO_NET.items():
        monkeypatch.setenv(k, v)
    _write_cifar10(tmp_path)
    assert cifar_unavailable("cifar10", tmp_path) is None
