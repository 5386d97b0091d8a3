"""Bad input to the commands (issue 9, items 3-10): one line, exit 2, nothing written.

Each case runs the real command (its ``main``) in an empty folder and checks the message, the
exit code and that the folder holds afterwards exactly what it held before.
"""

import io
import json
import os
import sys
from pathlib import Path

import pytest

from nas.export import main as export_main
from nas.retrain import main as retrain_main
from nas.search import main as search_main
from nas.search import run_search

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # for experiments.surrogate
    sys.path.insert(0, str(ROOT))

SMALL = [
    "--backbone",
    "cifar_resnet20",
    "--resolution",
    "16",
    "--dataset",
    "synthetic",
    "--evaluator",
    "experiments.surrogate:evaluate",
    "--trials",
    "1",
]
ARCH = {
    "format": "convnas.arch/1",
    "backbone": "cifar_resnet20",
    "num_classes": 10,
    "resolution": 16,
    "slots": "all",
}
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def _code(main, argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own checks
        return e.code


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _one_line(err: str, match: str) -> None:
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert match in err, err


@pytest.fixture
def here(tmp_path, monkeypatch):
    """An empty working folder with one plain file, ``afile``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder\n")
    return tmp_path


# -- 3: paths that cannot be written ----------------------------------------------------------
UNWRITABLE_OUT = [
    ("afile/sub", "out 'afile/sub' cannot be created: '{here}/afile' is a file, not a folder"),
    ("afile", "out 'afile' is a file, not a folder"),
    ("/dev/null", "out '/dev/null' is a device, not a folder"),
    ("/dev/null/sub", "out '/dev/null/sub' cannot be created: '/dev/null' is a device"),
    ("/proc/convnas-out", "out '/proc/convnas-out' cannot be created: nothing can be created in"),
]
UNWRITABLE_STORAGE = [
    ("afile/s.db", "storage 'afile/s.db': folder 'afile' is a file, not a folder"),
    ("/dev/null/sub/s.db", "folder '/dev/null/sub' cannot be created: '/dev/null' is a device"),
    ("sqlite:////proc/convnas.db", "storage 'sqlite:////proc/convnas.db': folder '/proc' cannot"),
    ("/dev/null/s.log", "folder '/dev/null' is a device, not a folder"),
    (".", "is not a database URL"),
]


@pytest.mark.parametrize("out, match", UNWRITABLE_OUT, ids=[o for o, _ in UNWRITABLE_OUT])
def test_search_refuses_an_out_that_cannot_be_written(here, capsys, out, match):
    assert _code(search_main, [*SMALL, "--out", out]) == 2
    _one_line(capsys.readouterr().err, match.format(here=here))
    assert _tree(here) == ["afile"]  # no runs/, no database


@pytest.mark.parametrize(
    "storage, match", UNWRITABLE_STORAGE, ids=[s for s, _ in UNWRITABLE_STORAGE]
)
def test_search_refuses_a_storage_that_cannot_be_written(here, capsys, storage, match):
    assert _code(search_main, [*SMALL, "--storage", storage]) == 2
    _one_line(capsys.readouterr().err, match)
    assert _tree(here) == ["afile"]


def test_the_api_refuses_an_unwritable_out_before_the_study_exists(here):
    with pytest.raises(ValueError, match="out 'afile/x' cannot be created: .* is a file"):
        run_search(
            backbone="cifar_resnet20",
            resolution=16,
            dataset="synthetic",
            evaluator="experiments.surrogate:evaluate",
            trials=1,
            storage="s.db",
            out="afile/x",
            stream=io.StringIO(),
        )
    assert _tree(here) == ["afile"]


@pytest.mark.skipif(ROOT_USER, reason="root writes into read-only folders")
def test_search_refuses_a_read_only_folder(here, capsys):
    ro = here / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert _code(search_main, [*SMALL, "--out", "ro/out"]) == 2
        _one_line(capsys.readouterr().err, "nothing can be created in")
        assert _tree(here) == ["afile", "ro"]
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("out, match", UNWRITABLE_OUT, ids=[o for o, _ in UNWRITABLE_OUT])
def test_retrain_refuses_an_out_that_cannot_be_written(here, capsys, out, match):
    arch = here / "afile.json"
    arch.write_text(json.dumps(ARCH))
    code = _code(retrain_main, [str(arch), "--dataset", "synthetic", "--out", out])
    assert code == 2
    _one_line(capsys.readouterr().err, "--" + match.format(here=here))
    assert _tree(here) == ["afile", "afile.json"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stored")
    run_search(
        backbone="cifar_resnet20",
        resolution=16,
        dataset="synthetic",
        evaluator="experiments.surrogate:evaluate",
        sampler="random",
        trials=2,
        storage=str(tmp / "s.db"),
        study="st",
        out=str(tmp / "out"),
        export=False,
        stream=io.StringIO(),
    )
    return tmp / "s.db"


@pytest.mark.parametrize("out, match", UNWRITABLE_OUT, ids=[o for o, _ in UNWRITABLE_OUT])
def test_export_refuses_an_out_that_cannot_be_written(stored, here, capsys, out, match):
    assert _code(export_main, ["--storage", str(stored), "--out", out]) == 2
    _one_line(capsys.readouterr().err, match.format(here=here))
    assert _tree(here) == ["afile"]
