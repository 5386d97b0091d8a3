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

SURROGATE = "evaluators.surrogate:evaluate"

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.fixture
def small(small_search):
    """A tiny one-trial search (``tests/nas/conftest.py``)."""
    return [*small_search, "--trials", "1"]


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
def test_search_refuses_an_out_that_cannot_be_written(small, here, capsys, out, match):
    assert _code(search_main, [*small, "--out", out]) == 2
    _one_line(capsys.readouterr().err, match.format(here=here))
    assert _tree(here) == ["afile"]  # no runs/, no database


@pytest.mark.parametrize(
    "storage, match", UNWRITABLE_STORAGE, ids=[s for s, _ in UNWRITABLE_STORAGE]
)
def test_search_refuses_a_storage_that_cannot_be_written(small, here, capsys, storage, match):
    assert _code(search_main, [*small, "--storage", storage]) == 2
    _one_line(capsys.readouterr().err, match)
    assert _tree(here) == ["afile"]


def test_the_api_refuses_an_unwritable_out_before_the_study_exists(here):
    with pytest.raises(ValueError, match="out 'afile/x' cannot be created: .* is a file"):
        run_search(
            backbone="cifar_resnet20",
            resolution=16,
            dataset="synthetic",
            evaluator=SURROGATE,
            trials=1,
            storage="s.db",
            out="afile/x",
            stream=io.StringIO(),
        )
    assert _tree(here) == ["afile"]


@pytest.mark.skipif(ROOT_USER, reason="root writes into read-only folders")
def test_search_refuses_a_read_only_folder(small, here, capsys):
    ro = here / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert _code(search_main, [*small, "--out", "ro/out"]) == 2
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
        evaluator=SURROGATE,
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


# -- 4, 5: architecture and config files that are deeply nested, folders or devices ----------
DEEP_JSON = '{"a": ' * 100_000
DEEP_LIST = "[" * 100_000


@pytest.mark.parametrize(
    "content, match",
    [
        (DEEP_JSON, "not a usable JSON document: its objects or lists are nested too deeply"),
        (DEEP_LIST, "not a usable JSON document: its objects or lists are nested too deeply"),
        ('{"format": ', "not valid JSON: Expecting value at line 1"),
    ],
    ids=["deep-object", "deep-list", "truncated"],
)
@pytest.mark.parametrize("command", ["describe", "retrain"])
def test_a_broken_architecture_file_is_one_line(here, capsys, command, content, match):
    (here / "arch.json").write_text(content)
    if command == "describe":
        from nas.describe import main as describe_main

        code = _code(describe_main, ["arch.json"])
    else:
        code = _code(retrain_main, ["arch.json", "--dataset", "synthetic", "--out", "o"])
    assert code == 2
    _one_line(capsys.readouterr().err, f"arch.json: {match}")
    assert _tree(here) == ["afile", "arch.json"]


@pytest.mark.parametrize(
    "path, match",
    [
        (".", "architecture file '.' is a folder, not a file"),
        ("/dev/null", "architecture file '/dev/null' is a device, not a file"),
        ("nope.json", "architecture file 'nope.json' does not exist"),
    ],
)
@pytest.mark.parametrize("command", ["describe", "retrain"])
def test_a_folder_or_a_device_as_architecture_file_is_named_as_such(
    here, capsys, command, path, match
):
    if command == "describe":
        from nas.describe import main as describe_main

        code = _code(describe_main, [path])
    else:
        code = _code(retrain_main, [path, "--dataset", "synthetic", "--out", "o"])
    assert code == 2
    _one_line(capsys.readouterr().err, match)
    assert _tree(here) == ["afile"]


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("deep.json", DEEP_JSON, "config file 'deep.json': its objects or lists are nested too"),
        ("deep.toml", "a = " + DEEP_LIST, "config file 'deep.toml': its tables are nested too"),
        ("lr.json", '{"lr": -1}', "config file 'lr.json': lr must be a positive number, got -1"),
        ("lr.toml", "lr = -1", "config file 'lr.toml': lr must be a positive number, got -1"),
        ("r.json", '{"recipe": "nope"}', "config file 'r.json': unknown recipe 'nope'; valid"),
        ("m.json", '{"milestones": [0]}', "milestones must be a list of epochs >= 1, got [0]"),
        (".", None, "config file '.' is a folder, not a JSON or TOML file"),
        ("/dev/null", None, "config file '/dev/null' is a device or other special file"),
    ],
    ids=["deep-json", "deep-toml", "lr-json", "lr-toml", "recipe", "milestones", "dir", "dev"],
)
def test_config_files_are_checked_whole_even_where_a_flag_overrides_them(
    here, capsys, name, content, match
):
    (here / "arch.json").write_text(json.dumps(ARCH))
    before = ["afile", "arch.json"]
    if content is not None:
        (here / name).write_text(content)
        before = sorted([*before, name])
    argv = ["arch.json", "--dataset", "synthetic", "--out", "o", "--config", name]
    # --lr and --milestones given on the command line: the file's bad values are still refused
    assert _code(retrain_main, [*argv, "--lr", "0.1", "--milestones", "2"]) == 2
    _one_line(capsys.readouterr().err, match)
    assert _tree(here) == before


# -- 8: mistakes found without torch, in well under a second ----------------------------------
QUICK = [
    ("nas.search", ["--ops", "conv,foo", "--dataset", "synthetic"], "unknown operator 'foo'"),
    ("nas.search", ["--ops", "oct(b=1)"], "bad parameter 'b=1' for oct; allowed: alpha"),
    ("nas.search", ["--ops", "oct(a=x)"], "parameter value 'x' in 'oct(a=x)' is not a number"),
    (
        "nas.search",
        ["--ops", "conv,scconv(a=1.5)"],
        "error: operator menu entry 'scconv(a=1.5)': alpha must be a number in the open "
        "interval (0, 1), got 1.5\n",
    ),
    (
        "nas.search",
        ["--ops", "oct(a=0.5|1)"],
        "'oct(a=0.5|1)': alpha must be a number in [0, 1) (the share of low-frequency "
        "channels), got 1\n",
    ),
    (
        "nas.search",
        ["--ops", "linear(rank=0)"],
        "'linear(rank=0)': rank must be 'full' or an integer >= 1, got 0\n",
    ),
    (
        "nas.search",
        ["--ops", "scconv(r=2.5)"],
        "'scconv(r=2.5)': r must be an integer >= 1 (the squeeze ratio), got 2.5\n",
    ),
    ("nas.retrain", ["bad.json", "--dataset", "synthetic"], "bad.json: not valid JSON"),
    ("nas.retrain", ["fmt.json", "--dataset", "synthetic"], "format must be 'convnas.arch/1'"),
    ("nas.describe", ["bad.json"], "bad.json: not valid JSON"),
    ("nas.describe", ["/dev/null"], "is a device, not a file"),
]


@pytest.mark.parametrize("module, argv, match", QUICK, ids=[" ".join(q[1]) for q in QUICK])
def test_quick_mistakes_are_reported_before_torch_is_imported(here, module, argv, match):
    import subprocess

    (here / "bad.json").write_text('{"format": ')
    (here / "fmt.json").write_text('{"format": "convnas.arch/2"}')
    code = (
        "import sys\n"
        f"from {module} import main\n"
        f"rc = main({argv!r})\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch', rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.stdout.strip() == "no torch 2", r.stdout + r.stderr
    _one_line(r.stderr, match)
    assert _tree(here) == ["afile", "bad.json", "fmt.json"]


def test_the_torch_free_operator_table_matches_the_real_one():
    from search_spaces.ops import OPS
    from search_spaces.slots import SLOT_POLICIES
    from search_spaces.syntax import OP_SIGNATURES, SLOT_POLICY_NAMES

    assert {n: (i.label, dict(i.hparams)) for n, i in OPS.items()} == {
        n: (label, dict(hp)) for n, (label, hp) in OP_SIGNATURES.items()
    }
    assert list(OPS) == list(OP_SIGNATURES)
    assert SLOT_POLICY_NAMES == SLOT_POLICIES


PROBES = [None, -1, 0, 1, 2, 3, -0.5, 0.0, 1e-9, 0.25, 0.5, 0.999, 1.0, 1.5, 2.0, 2.5]
PROBES += [float("inf"), float("-inf"), float("nan")]


def test_the_torch_free_ranges_accept_exactly_what_the_operators_accept():
    from search_spaces.ops import OPS
    from search_spaces.syntax import PARAM_RANGES

    assert set(PARAM_RANGES) == {(n, p) for n, i in OPS.items() for p in i.hparams}
    for (op, param), (_, ok) in PARAM_RANGES.items():
        for value in PROBES:
            try:
                OPS[op].validate(**{param: value})
                accepted = True
            except ValueError:
                accepted = False
            assert ok(value) == accepted, (op, param, value)


# -- 6: flags that would do nothing, options nobody reads -------------------------------------
USELESS = [
    (["--workers", "4"], "--workers 4 does nothing with the optuna backend; add --backend ray"),
    (["--cpus-per-worker", "2"], "--cpus-per-worker 2.0 does nothing with the optuna backend"),
    (["--gpus-per-worker", "1"], "--gpus-per-worker 1.0 does nothing with the optuna backend"),
    (["--ray-address", "auto"], "ray_address 'auto' needs the ray backend (--backend ray)"),
]


@pytest.mark.parametrize("extra, match", USELESS, ids=[u[0][0] for u in USELESS])
def test_ray_only_flags_are_refused_without_the_ray_backend(small, here, capsys, extra, match):
    assert _code(search_main, [*small, *extra]) == 2
    _one_line(capsys.readouterr().err, match)
    assert _tree(here) == ["afile"]


def test_an_unknown_proxy_score_is_one_sentence_and_nothing_written(small, here, capsys):
    assert _code(search_main, [*small, "--proxy-score", "top5"]) == 2
    _one_line(
        capsys.readouterr().err,
        "argument --proxy-score: invalid choice: 'top5' (choose from 'loss', 'accuracy')",
    )
    assert _tree(here) == ["afile"]
    with pytest.raises(ValueError, match="^proxy_score must be one of loss, accuracy, got 'top1'$"):
        run_search(dataset="synthetic", proxy_score="top1", stream=io.StringIO())
    assert _tree(here) == ["afile"]


def test_the_api_refuses_ray_only_settings_without_the_ray_backend(here):
    with pytest.raises(ValueError, match=r"^workers=3 does nothing with the optuna backend"):
        run_search(dataset="synthetic", workers=3, stream=io.StringIO())
    assert _tree(here) == ["afile"]


def test_unknown_options_of_the_built_in_evaluator_are_refused_with_the_known_ones(
    small, here, capsys
):
    argv = ["--backbone", "cifar_resnet20", "--dataset", "synthetic", "--trials", "1"]
    assert _code(search_main, [*argv, "--evaluator-option", "max_step_per_epoch=2"]) == 2
    _one_line(
        capsys.readouterr().err,
        "evaluator option 'max_step_per_epoch' is not read by the built-in evaluator; its "
        "options are augment, cpu_threads, latency_cache_dir, latency_calibrate, max_states, "
        "max_steps_per_epoch,",
    )
    assert _tree(here) == ["afile"]
    # A custom evaluator gets whatever it is given (the surrogate reads seconds_per_epoch).
    extra = ["--evaluator-option", "seconds_per_epoch=0", "--storage", "s.db", "--out", "o"]
    assert _code(search_main, [*small, *extra]) == 0


# -- 7: messages that say what is wrong and what is accepted ----------------------------------
def _pymysql_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("pymysql") is None


STORAGES = [
    ("junk.log", "storage 'junk.log' is not an Optuna journal file (its first line is not a"),
    ("foo://h/db", "unknown database 'foo' (known: sqlite, postgresql, mysql, mariadb); accepted"),
    ("redis://h", "accepted: sqlite:///runs/convnas.db, postgresql+psycopg://user@host/db, mysql"),
    ("runs/x.txt", "is not a database URL or a file; accepted: sqlite:///runs/convnas.db"),
]
if _pymysql_missing():
    STORAGES += [
        (
            "mysql://u@127.0.0.1/db",
            "the mysql driver 'MySQLdb' is not installed; install the mysql extra "
            "(pip install -e '.[mysql]') and write the URL as mysql+pymysql://",
        ),
        ("mysql+pymysql://u@127.0.0.1/db", "the mysql driver 'pymysql' is not installed; inst"),
    ]


@pytest.mark.parametrize("storage, match", STORAGES, ids=[s for s, _ in STORAGES])
def test_storage_messages_name_the_problem_and_the_accepted_forms(
    small, here, capsys, storage, match
):
    (here / "junk.log").write_text("hello\n")
    assert _code(search_main, [*small, "--storage", storage]) == 2
    _one_line(capsys.readouterr().err, match)
    assert _tree(here) == ["afile", "junk.log"]
    assert (here / "junk.log").read_text() == "hello\n"


def test_export_names_a_file_that_is_not_a_journal(here, capsys):
    (here / "junk.log").write_text("hello\n")
    assert _code(export_main, ["--storage", "junk.log"]) == 2
    _one_line(capsys.readouterr().err, "storage 'junk.log' is not an Optuna journal file")
    assert _tree(here) == ["afile", "junk.log"]


FIDELITIES = [
    (["--proxy-epochs", "1", "--fidelities", "x"], "fidelities 'x' must be 'auto', 'off' or"),
    (["--proxy-epochs", "1", "--fidelities", "x"], "ending at --proxy-epochs 1, like 1\n"),
    (["--fidelities", "2,1"], "fidelities '2,1' must be 'auto', 'off' or increasing epoch counts"),
    (["--proxy-epochs", "4", "--fidelities", "0,4"], "--proxy-epochs 4, like 1,2,4\n"),
    (
        ["--proxy-epochs", "4", "--fidelities", "1,2"],
        "must end at --proxy-epochs 4, like 1,2,4",
    ),
]


@pytest.mark.parametrize("extra, match", FIDELITIES, ids=[" ".join(f[0]) for f in FIDELITIES])
def test_fidelity_messages_suggest_valid_values_without_python_tuples(
    small, here, capsys, extra, match
):
    assert _code(search_main, [*small, *extra]) == 2
    err = capsys.readouterr().err
    _one_line(err, match)
    assert "(" not in err.split("error:", 1)[1]  # no Python tuple like (2, 1)
    assert _tree(here) == ["afile"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fidelities": (2, 1)}, r"^fidelities '2,1' must be 'auto', 'off' or increasing"),
        ({"objectives": ("accuracy", "speed")}, r"^objectives 'accuracy,speed' must be a comma"),
        ({"objectives": ["flops", "flops"]}, r"^objectives 'flops,flops' name an objective twice"),
        ({"ops": ("conv",)}, r"^the operator menu must be one string like 'conv,oct', got a tuple"),
    ],
)
def test_api_messages_show_values_as_typed_not_as_python_tuples(here, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_search(dataset="synthetic", stream=io.StringIO(), **kwargs)
    assert _tree(here) == ["afile"]


# -- 9: quiet endings: a closed pipe, an empty plot, concurrent temporary files ---------------
def test_describe_into_a_pipe_that_closes_early_ends_quietly(here):
    import subprocess

    arch = ROOT / "examples" / "resnet50_scconv_oct.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # The reader is gone before describe prints (it takes a second to start): EPIPE at once.
    reader = subprocess.Popen(["true"], stdin=subprocess.PIPE)
    reader.wait()
    r = subprocess.run(
        [sys.executable, "-m", "nas.describe", str(arch)],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    reader.stdin.close()
    assert r.stderr == ""  # no BrokenPipeError, no "Exception ignored"
    assert r.returncode == 0


def test_exporting_a_study_without_feasible_trials_warns_nothing(here):
    import warnings

    from nas.export import export_study

    run_search(
        backbone="cifar_resnet20",
        resolution=16,
        dataset="synthetic",
        evaluator=SURROGATE,
        evaluator_options={"fail_fraction": 1.0},  # every candidate diverges
        trials=2,
        storage="s.db",
        study="none",
        out="o",
        export=False,
        stream=io.StringIO(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No artists with labels" was one
        doc = json.loads(export_study("s.db", "none", "o").read_text())
    assert doc["n_feasible"] == 0 and doc["members"] == []
    assert (here / "o" / "pareto" / "pareto.png").stat().st_size > 0


def test_search_config_is_written_through_a_temporary_file_of_its_own(here, monkeypatch):
    from nas import runner

    names = []
    real_replace = os.replace

    def spy(src, dst):
        names.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(runner.os, "replace", spy)
    for _ in range(2):
        runner.write_json(here / "search_config.json", {"a": 1})
    assert len(names) == 2 and names[0] != names[1]
    assert all(n.startswith(".search_config.json.") and n.endswith(".tmp") for n in names)
    assert json.loads((here / "search_config.json").read_text()) == {"a": 1}
    assert _tree(here) == ["afile", "search_config.json"]


# -- 10: the README's surrogate evaluator works from any folder -------------------------------
def test_the_shipped_surrogate_evaluator_works_from_a_folder_outside_the_checkout(
    small_search, here
):
    import subprocess

    # Only the installed packages on the path (as after pip install), not the checkout's
    # experiments/ folder, and the working folder is elsewhere.
    site = here / "site"
    site.mkdir()
    for pkg in ("nas", "evaluators", "search_spaces"):
        (site / pkg).symlink_to(ROOT / pkg)
    argv = [*small_search, "--trials", "2"]  # with --evaluator evaluators.surrogate:evaluate
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "nas.search", *argv, "--storage", "s.db", "--study", "any"],
        capture_output=True,
        text=True,
        env=env,
        cwd=here,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "reached 2 evaluated trials" in r.stdout
    r = subprocess.run(
        [sys.executable, "-c", "import experiments"], capture_output=True, text=True, env=env
    )
    assert r.returncode != 0  # the checkout's experiments/ really was out of reach
