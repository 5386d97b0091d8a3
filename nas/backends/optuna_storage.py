"""Opening a storage with Optuna: race-safe creation, SQLite tuning, and what a storage holds.

What a storage string means is :mod:`nas.storage`'s business; this module opens it. Imports
optuna (sqlalchemy for relational databases) and :mod:`nas.storage`; must not import other
``nas`` modules.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import optuna

from nas.storage import describe_storage, storage_file

__all__ = ["list_studies", "open_storage", "study_exists", "study_settings"]


def open_storage(storage: str, *, create: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``storage`` (see :func:`describe_storage`).

    With ``create`` the parent folder of a local file is created; without it a missing local
    file raises ``ValueError`` (used by read-only commands such as export).
    """
    kind, url = describe_storage(storage)
    path = storage_file(storage)
    if path is not None:
        if not create and not path.is_file():
            raise ValueError(f"storage {storage!r}: file {str(path)!r} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        if path is not None:
            _check_journal(storage, path)
        return optuna.storages.JournalStorage(JournalFileBackend(str(url)))
    _check_driver(storage, url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several workers (and the heartbeat thread) write to one file: wait for the lock.
        engine_kwargs["connect_args"] = {"timeout": 60}
    try:
        rdb = _open_rdb(url, engine_kwargs)
    except Exception as e:  # noqa: BLE001 - driver errors differ per database; one line for users
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot open storage {storage!r}: {first}") from None
    if url.startswith("sqlite"):
        _tune_sqlite(rdb.engine)
    return rdb


def _check_journal(storage: str, path: Path) -> None:
    """An existing journal file must start with an Optuna journal record (a JSON object)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        first = f.readline(1 << 20)
    try:
        record = json.loads(first)
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict) or "op_code" not in record:
        raise ValueError(
            f"storage {storage!r} is not an Optuna journal file (its first line is not a "
            "journal record); name a new file or the journal of a study"
        )


#: database -> (the convnas extra that installs its driver, the URL scheme that uses it)
_DRIVER_EXTRAS = {
    "postgresql": ("postgres", "postgresql+psycopg"),
    "mysql": ("mysql", "mysql+pymysql"),
    "mariadb": ("mysql", "mariadb+pymysql"),
}


def _check_driver(storage: str, url: str) -> None:
    """A database URL whose Python driver is missing: name the extra that installs one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        u = make_url(url)
        dialect = u.get_dialect()
    except (ArgumentError, NoSuchModuleError):
        return  # opening it says what is wrong
    try:
        dialect.import_dbapi()
    except ImportError as e:
        database = u.get_backend_name()
        missing = e.name or u.get_driver_name()
        extra, scheme = _DRIVER_EXTRAS.get(database, (None, None))
        if extra is None:
            raise ValueError(
                f"storage {storage!r}: its driver {missing!r} is not installed"
            ) from None
        use = "" if u.drivername == scheme else f" and write the URL as {scheme}://..."
        raise ValueError(
            f"storage {storage!r}: the {database} driver {missing!r} is not installed; "
            f"install the {extra} extra (pip install -e '.[{extra}]'){use}"
        ) from None


def _open_rdb(url: str, engine_kwargs: dict[str, Any], attempts: int = 8) -> Any:
    """``RDBStorage(url)``, retried while another process is setting up the same database.

    Optuna creates the tables and then inserts the schema version rows (``version_info``,
    ``alembic_version``) after checking that they are missing. Two processes that open a new
    database at the same moment -- workers started together, or a reader polling a study that
    is being created -- can both see them missing; the slower one then fails with "table ...
    already exists" (SQLite, MySQL; PostgreSQL says it with a ``ProgrammingError`` or a unique
    violation on its catalog), an ``IntegrityError`` on the version rows, or "database is
    locked". The database is fine: the other process set it up, so opening it again succeeds.
    """
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, OperationalError, ProgrammingError) as e:
            transient = isinstance(e, IntegrityError) or any(
                m in str(e).lower() for m in ("locked", "already exists")
            )
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _tune_sqlite(engine: Any) -> None:
    """Write-ahead logging with ``synchronous=NORMAL`` on every connection.

    A trial writes a few dozen attributes, each its own transaction; with SQLite's default
    rollback journal every commit waits for an fsync (~15 ms each here). In WAL mode with
    NORMAL sync a commit survives a killed process (what resuming relies on); only a power
    loss can drop the last commits. WAL needs a local file system, as SQLite locking does.
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened while creating tables reconnect with the pragmas


def list_studies(storage: str) -> list[str]:
    """Names of the studies in an existing storage (empty when the file does not exist)."""
    path = storage_file(storage)
    if path is not None and not path.is_file():
        return []
    st = open_storage(storage, create=False)
    return [s.study_name for s in st.get_all_studies()]


def study_exists(storage: str, name: str) -> bool:
    return name in list_studies(storage)


def study_settings(storage: str, name: str) -> dict[str, Any] | None:
    """The ``convnas`` settings recorded in an existing study (None if it has none)."""
    path = storage_file(storage)
    if path is not None and not path.is_file():
        return None
    st = open_storage(storage, create=False)
    try:
        sid = st.get_study_id_from_name(name)
    except KeyError:
        return None
    return st.get_study_user_attrs(sid).get("convnas")
