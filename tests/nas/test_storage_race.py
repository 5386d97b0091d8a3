"""Processes that open one new SQLite database at the same moment all get a working storage."""

import subprocess
import sys
from pathlib import Path

import pytest

from nas.backends.optuna_backend import open_storage

ROOT = Path(__file__).resolve().parents[2]

# Each process imports everything, says it is ready, waits until all are ready (a file
# barrier), then opens the storage and adds a study of its own, so the schema set-up of all
# of them overlaps. ``attempts`` is how often open_storage may try (1 = no retry).
_OPEN = """
import pathlib, sys, time
import optuna
import nas.backends.optuna_storage as b
barrier, url, name, n, attempts = sys.argv[1:6]
real = b._open_rdb
b._open_rdb = lambda u, kw: real(u, kw, attempts=int(attempts))
pathlib.Path(barrier, name).touch()
while len(list(pathlib.Path(barrier).iterdir())) < int(n):
    time.sleep(0.001)
optuna.logging.set_verbosity(optuna.logging.ERROR)
storage = b.open_storage(url)
optuna.create_study(storage=storage, study_name=name)
print("ok")
"""


def _open_at_once(db: Path, n: int, attempts: int) -> list[tuple]:
    barrier = db.parent / "ready"
    barrier.mkdir()
    url = f"sqlite:///{db}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN, str(barrier), url, f"s{i}", str(n), str(attempts)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    return [(p, *p.communicate(timeout=120)) for p in procs]


@pytest.mark.slow
def test_workers_opening_a_new_sqlite_file_together_all_succeed(tmp_path):
    db = tmp_path / "new.db"
    results = _open_at_once(db, 4, attempts=8)
    for proc, out, err in results:
        assert proc.returncode == 0, err[-1500:]
        assert out.strip() == "ok"
    names = sorted(s.study_name for s in open_storage(f"sqlite:///{db}").get_all_studies())
    assert names == [f"s{i}" for i in range(4)]
