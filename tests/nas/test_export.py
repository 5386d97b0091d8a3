"""Pareto export: files load back, agree with each other and with the study."""

import csv
import io
import json

import pytest

from nas.export import export_study
from nas.export import main as export_main
from nas.search import run_search


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    res = run_search(
        backbone="cifar_resnet20",
        resolution=16,
        dataset="synthetic",
        budget="7MFLOPs",
        evaluator="evaluators.surrogate:evaluate",
        sampler="random",
        trials=14,
        storage=str(tmp / "s.db"),
        study="exp",
        out=str(tmp / "out"),
        stream=io.StringIO(),
    )
    return tmp, res


def test_export_files_load_back_and_agree(searched):
    tmp, res = searched
    folder = tmp / "out" / "pareto"
    doc = json.loads((folder / "pareto.json").read_text())
    assert doc["format"] == "convnas.pareto/1" and doc["study"] == "exp"
    assert doc["objectives"] == ["accuracy", "flops", "params", "latency"]
    assert doc["budgets"] == {"flops": 7_000_000}
    members = doc["members"]
    assert [m["arch_id"] for m in members] == [m["arch_id"] for m in res.pareto]
    assert len({m["arch_id"] for m in members}) == len(members) > 0
    assert 0 < doc["hypervolume"] <= 1 and doc["hypervolume"] == pytest.approx(res.hypervolume)
    with open(folder / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["arch_id"] for r in rows] == [m["arch_id"] for m in members]

    from evaluators.cost import get_cost_model
    from nas.describe import main as describe_main
    from search_spaces.arch import load_architecture

    cm = get_cost_model("cifar_resnet20", 10, 16, "all")
    for m, row in zip(members, rows):
        arch = load_architecture(folder / m["file"])
        assert arch.arch_id == m["arch_id"] == row["arch_id"]
        cost = cm.cost(arch)
        assert cost.flops == m["flops"] == int(row["flops"]) <= 7_000_000
        assert cost.params == m["params"] == int(row["params"])
        assert float(row["accuracy"]) == pytest.approx(m["accuracy"])
        assert m["values"]["accuracy"] == m["accuracy"]
        assert m["architecture"]["ops"] == json.loads(arch.to_json())["ops"]
    assert describe_main([str(folder / members[0]["file"]), "--json"]) == 0
    assert (folder / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    files = {p.name for p in folder.iterdir()}
    assert files == {"pareto.json", "pareto.csv", "pareto.png", *(m["file"] for m in members)}


def test_re_export_replaces_the_folder_whole_and_leaves_no_temporaries(searched):
    tmp, _ = searched
    out = tmp / "again"
    (out / "pareto").mkdir(parents=True)
    (out / "pareto" / "stale.json").write_text("{}")
    path = export_study(str(tmp / "s.db"), "exp", out)
    assert path == out / "pareto" / "pareto.json"
    assert not (out / "pareto" / "stale.json").exists()
    assert [p.name for p in out.iterdir()] == ["pareto"]


def test_export_command_line(searched, tmp_path, capsys):
    tmp, res = searched
    assert export_main(["--storage", str(tmp / "s.db"), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert f"{len(res.pareto)} Pareto-optimal" in out
    assert (tmp_path / "o" / "pareto" / "pareto.json").is_file()


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--study", "nope"], "study 'nope' is not in storage"),
        (["--storage", "missing.db"], "does not exist"),
        (["--storage", "x.txt"], "is not a database URL"),
    ],
)
def test_export_errors_are_one_line_exit_2_and_write_nothing(
    searched, tmp_path, capsys, monkeypatch, argv, match
):
    tmp, _ = searched
    monkeypatch.chdir(tmp_path)
    if "--storage" not in argv:
        argv = [*argv, "--storage", str(tmp / "s.db")]
    assert export_main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_export_folder_and_files_follow_the_umask(searched, tmp_path, umask):
    import os

    tmp, _ = searched
    old = os.umask(umask)
    try:
        export_study(str(tmp / "s.db"), "exp", tmp_path / "o")
    finally:
        os.umask(old)
    folder = tmp_path / "o" / "pareto"
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    for f in folder.iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f.name
