"""A real tiny search (proxy training on synthetic data) and optuna-dashboard on its study.

The dashboard check starts ``optuna-dashboard <storage>`` as a subprocess, reads its JSON API
and loads the study page in headless Chromium (Debian's ``chromium``; ``.ci/run`` installs
it). With ``CONVNAS_SAVE_SCREENSHOT=1`` the screenshot is also written to
``experiments/results/dashboard.png``.
"""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nas.search import run_search

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


@pytest.fixture(scope="module")
def real_search(tmp_path_factory):
    """Four trials of cifar_resnet20 at 16x16 on synthetic data with the real evaluator."""
    tmp = tmp_path_factory.mktemp("e2e")
    out = io.StringIO()
    res = run_search(
        backbone="cifar_resnet20",
        resolution=16,
        dataset="synthetic",
        budget="7MFLOPs",
        proxy_epochs=2,
        proxy_subset=200,
        batch_size=16,
        trials=4,
        seed=1,
        device="cpu",
        evaluator_options={"max_steps_per_epoch": 2, "max_val_batches": 2, "synthetic_size": 400},
        storage=str(tmp / "s.db"),
        study="tiny",
        out=str(tmp / "out"),
        stream=out,
    )
    return tmp, res, out.getvalue()


@pytest.mark.slow
def test_real_search_completes_with_feasible_and_infeasible_trials(real_search):
    tmp, res, log = real_search
    assert res.n_complete == 4 and res.pareto
    assert "4/4 done" in log and "Dashboard: optuna-dashboard sqlite:///" in log
    from nas.backends.optuna_backend import load_rows

    rows, _ = load_rows(str(tmp / "s.db"), "tiny")
    feasible = [r for r in rows if r.feasible]
    infeasible = [r for r in rows if r.state == "COMPLETE" and not r.feasible]
    assert feasible and infeasible
    for r in feasible:
        ua = r.user_attrs
        assert 0.0 <= ua["accuracy"] <= 1.0 and ua["fidelity"] in (1, 2)
        assert ua["latency_ms"] > 0 and ua["latency_source"] == "measured"
        assert ua["evaluator_extra"]["proxy"]["train_images"] > 0
    for r in infeasible:
        assert r.user_attrs["flops"] > 7_000_000 and r.user_attrs["fidelity"] == 0
    for m in res.pareto:
        assert m["flops"] <= 7_000_000
        assert (tmp / "out" / "pareto" / m["file"]).is_file()


@pytest.mark.slow
def test_the_accuracy_objective_is_the_validation_likelihood_by_default(real_search):
    import math

    import optuna

    tmp, res, log = real_search
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp / 's.db'}")
    assert study.metric_names[0] == "likelihood"  # what the dashboard calls the objective
    assert study.user_attrs["convnas"]["proxy_score"] == "loss"
    feasible = [t for t in study.trials if t.user_attrs.get("feasible")]
    assert feasible
    for t in feasible:
        ua = t.user_attrs
        loss = ua["evaluator_extra"]["proxy"]["val_loss"]
        assert ua["score"] == pytest.approx(math.exp(-loss), rel=1e-12)
        assert t.values[0] == ua["score"] != ua["accuracy"]
        assert ua["rung_score"][str(ua["fidelity"])] == ua["score"]
        assert ua["rung_accuracy"][str(ua["fidelity"])] == ua["accuracy"]
        assert f"acc {ua['accuracy']:.4f}  score {ua['score']:.4f}" in log
    doc = json.loads((tmp / "out" / "pareto" / "pareto.json").read_text())
    for m in doc["members"]:
        assert m["score"] == m["values"]["accuracy"] and 0 < m["score"] <= 1


@pytest.mark.slow
def test_a_study_from_before_the_proxy_score_resumes_only_with_top1(tmp_path):
    import optuna

    tiny = dict(
        backbone="cifar_resnet20", resolution=16, dataset="synthetic", budget="7MFLOPs",
        proxy_epochs=1, proxy_subset=64, batch_size=16, seed=1, device="cpu",
        objectives="accuracy,flops", storage=str(tmp_path / "s.db"), study="old",
        out=str(tmp_path / "out"), stream=io.StringIO(),
        evaluator_options={"max_steps_per_epoch": 1, "max_val_batches": 1,
                           "synthetic_size": 128},
    )  # fmt: skip
    run_search(trials=1, proxy_score="accuracy", **tiny)
    # what a study made before --proxy-score holds: its settings without the key
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.load_study(study_name="old", storage=storage)
    settings = dict(study.user_attrs["convnas"])
    del settings["proxy_score"]
    study.set_user_attr("convnas", settings)
    with pytest.raises(ValueError, match="created with proxy_score='accuracy', this command has "
                       "proxy_score='loss'"):
        run_search(trials=2, **tiny)
    res = run_search(trials=2, proxy_score="accuracy", **tiny)
    assert res.n_complete == 2
    scored = [t for t in optuna.load_study(study_name="old", storage=storage).trials
              if "score" in t.user_attrs]  # fmt: skip
    assert len(scored) == 2
    assert all(t.values[0] == t.user_attrs["score"] == t.user_attrs["accuracy"] for t in scored)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture()
def dashboard(real_search):
    tmp, res, _ = real_search
    exe = Path(sys.executable).parent / "optuna-dashboard"
    exe = str(exe) if exe.exists() else shutil.which("optuna-dashboard")
    if exe is None:
        pytest.skip("optuna-dashboard is not installed (pip install -e '.[dev]')")
    port = _free_port()
    storage = f"sqlite:///{tmp / 's.db'}"
    proc = subprocess.Popen(
        [exe, storage, "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                _get_json(f"{base}/api/studies")
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"optuna-dashboard exited: {proc.stderr.read().decode()[-500:]}")
                time.sleep(0.1)
        else:
            pytest.fail("optuna-dashboard did not answer within 30 s")
        yield base, res
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.browser
def test_dashboard_shows_named_metrics_architecture_and_infeasible_trials(dashboard, tmp_path):
    base, res = dashboard
    studies = _get_json(f"{base}/api/studies")["study_summaries"]
    sid = next(s["study_id"] for s in studies if s["study_name"] == "tiny")
    detail = _get_json(f"{base}/api/studies/{sid}")
    # --proxy-score loss (the default): the accuracy objective is exp(-validation loss)
    assert detail["objective_names"] == ["likelihood", "flops", "params", "latency_ms"]
    trials = detail["trials"]
    feasible = [t for t in trials if {"key": "feasible", "value": "True"} in t["user_attrs"]]
    infeasible = [t for t in trials if {"key": "feasible", "value": "False"} in t["user_attrs"]]
    assert feasible and infeasible
    # The dashboard marks a trial infeasible when any legacy constraint value is > 0.
    assert all(any(c > 0 for c in t["constraints"]) for t in infeasible)
    assert all(t["constraints"] and all(c <= 0 for c in t["constraints"]) for t in feasible)
    for t in trials:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        assert json.loads(attrs["arch"])["format"] == "convnas.arch/1"
        assert len(attrs["arch_id"]) == 16
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    url = f"{base}/dashboard/studies/{sid}"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=20000",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    assert "tiny" in dom
    for name in ("likelihood", "flops", "params", "latency_ms"):
        assert name in dom, name
    assert "Infeasible" in dom  # the Pareto-front plot's legend for constraint-breaking trials
    shot = tmp_path / "dashboard.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("CONVNAS_SAVE_SCREENSHOT"):
        shutil.copy(shot, ROOT / "experiments" / "results" / "dashboard.png")
