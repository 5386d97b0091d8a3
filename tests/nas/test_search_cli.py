"""The command line: bad values end with one line and exit 2, nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest

from nas.search import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


BAD = [
    (["--budget", "2GB"], "unknown unit 'B'"),
    (["--budget=-1G"], "greater than 0"),
    (["--budget", "-1G"], "greater than 0"),
    (["--max-params", "10X"], "parameter count '10X'"),
    (["--max-latency", "5 parsecs"], "latency '5 parsecs'"),
    (["--trials", "0"], "trials '0' must be >= 1"),
    (["--trials", "many"], "trials 'many' is not an integer"),
    (["--sampler", "cmaes"], "invalid choice: 'cmaes'"),
    (["--slots", "some"], "invalid choice: 'some'"),
    (["--objectives", "accuracy,speed"], "subset of accuracy, flops, params, latency"),
    (["--objectives", "flops,flops"], "twice"),
    (["--timeout", "0"], "greater than 0"),
    (["--timeout", "soon"], "not a duration"),
    (["--proxy-epochs", "0"], "proxy epochs '0' must be >= 1"),
    (["--resolution", "4"], "resolution '4' must be >= 8"),
    (["--fidelities", "2,1"], "increasing"),
    (["--fidelities", "1,3"], "must end at --proxy-epochs 2"),
    (["--storage", "runs/x.txt"], "is not a database URL"),
    (["--evaluator", "nope.module:fn"], "cannot import 'nope.module'"),
    (["--evaluator", "evaluators.surrogate:nothing"], "has no attribute 'nothing'"),
    (["--evaluator", "justamodule"], "must look like package.module:function"),
    (["--evaluator-option", "novalue"], "must look like KEY=VALUE"),
    (["--dataset", "mnist"], "dataset 'mnist' is not one of"),
    (["--backbone", "resnet9000"], "unknown backbone 'resnet9000'"),
    (["--ops", "conv,bogus"], "unknown operator 'bogus'"),
    (["--ops", "oct(a=2)"], "alpha"),
    (["--budget", "1MFLOPs"], "achievable FLOPs are 1.90 MFLOPs to 10.31 MFLOPs"),
    (["--max-params", "10k"], "achievable params are 41.36k to 272.47k"),
    (["--study", " "], "study must be a non-empty name"),
]
if not __import__("torch").cuda.is_available():
    BAD.append((["--device", "cuda"], "CUDA is not available"))


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own checks (type= functions, choices)
        return e.code


@pytest.mark.parametrize("extra, match", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_values_end_with_one_line_and_exit_2_writing_nothing(
    small_search, extra, match, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    code = _exit_code([*small_search, *extra])  # a repeated flag: the last one counts
    captured = capsys.readouterr()
    assert code == 2
    assert match in captured.err
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("python -m nas.search: error:")
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []  # no runs/, no database, no output folder


def test_budget_flags_parse_every_form_the_issue_lists():
    p = build_parser()
    for text in ("2GFLOPs", "2 GFLOPs", "2e9", "2G"):
        assert p.parse_args(["--budget", text]).budget == 2_000_000_000
    assert p.parse_args(["--budget", "500MFLOPs"]).budget == 500_000_000
    args = p.parse_args(["--max-params", "10M", "--max-latency", "15ms"])
    assert (args.max_params, args.max_latency) == (10_000_000, 15.0)
    d = p.parse_args([])
    assert (d.backbone, d.slots, d.sampler, d.objectives, d.storage) == (
        "resnet50",
        "all",
        "tpe",
        ("accuracy", "flops", "params", "latency"),
        "sqlite:///runs/convnas.db",
    )


def test_real_process_exit_code_and_single_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nas.search", "--budget", "2 parsecs"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "python -m nas.search: error: argument --budget: FLOPs budget '2 parsecs' has an "
        "unknown unit 'parsecs', e.g. write 2GFLOPs, 500MFLOPs, 2e9 or 2G (see --help)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_help_is_instant_and_lists_every_flag(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, nas.search; nas.search.build_parser().print_help();"
            "print('torch' in sys.modules)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    assert proc.stdout.strip().endswith("False")  # --help imports no torch
    for flag in (
        "--budget",
        "--max-params",
        "--max-latency",
        "--backbone",
        "--slots",
        "--ops",
        "--dataset",
        "--data-dir",
        "--no-download",
        "--resolution",
        "--proxy-epochs",
        "--proxy-subset",
        "--proxy-resolution",
        "--batch-size",
        "--objectives",
        "--sampler",
        "--trials",
        "--timeout",
        "--seed",
        "--device",
        "--storage",
        "--study",
        "--out",
        "--evaluator",
        "--fidelities",
    ):
        assert flag in proc.stdout, flag


def test_a_small_search_through_main_prints_progress_summary_and_dashboard(
    small_search, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main([*small_search, "--budget", "7MFLOPs", "--trials", "4", "--sampler", "random"]) == 0
    out = capsys.readouterr().out
    assert "New study 'cifar_resnet20-16-all-synthetic-7MFLOPs-" in out
    assert "4/4 done" in out and "Pareto set:" in out
    assert "Dashboard: optuna-dashboard sqlite:///" + str(tmp_path / "runs" / "convnas.db") in out
    study_dirs = list((tmp_path / "runs").iterdir())
    assert (
        sorted(p.name for p in study_dirs)[0]
        == "cifar_resnet20-16-all-synthetic-7MFLOPs-"
        + out.split("New study 'cifar_resnet20-16-all-synthetic-7MFLOPs-")[1][:6]
    )
    # The same command again resumes and says so.
    assert main([*small_search, "--budget", "7MFLOPs", "--trials", "5", "--sampler", "random"]) == 0
    out = capsys.readouterr().out
    assert "Resuming study" in out and "4 trials already evaluated" in out


@pytest.mark.slow
def test_resnet50_budget_inside_the_range_for_all_slots_and_refused_for_spatial(
    tmp_path, monkeypatch, capsys
):
    from nas.plan import prepare as _prepare
    from nas.search import SearchConfig

    monkeypatch.chdir(tmp_path)
    cfg = SearchConfig(max_flops=2_000_000_000, evaluator="evaluators.surrogate:evaluate")
    plan = _prepare(cfg)  # the defaults: resnet50, all slots, 224
    assert plan.cost_range.min_flops < 2e9 < plan.cost_range.max_flops
    assert (
        main(
            [
                "--budget",
                "2GFLOPs",
                "--slots",
                "spatial",
                "--evaluator",
                "evaluators.surrogate:evaluate",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "below the cheapest architecture" in err
    assert "achievable FLOPs are 2.52 GFLOPs to 4.11 GFLOPs" in err
    assert list(tmp_path.iterdir()) == []
