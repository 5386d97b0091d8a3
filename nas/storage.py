"""Storage strings: what ``--storage`` means, where its file is, how the dashboard opens it.

A storage is a database URL (``sqlite:///runs/convnas.db``, ``postgresql://...``), a SQLite
file (``*.db``) or an Optuna journal file (``*.log``). This module only reads the string; it
opens nothing (:mod:`nas.backends.optuna_storage` does). It imports only the standard library
and must not import optuna, ray, ``evaluators`` or any other ``nas`` module: the command-line
parsers read :data:`DEFAULT_STORAGE` from here before anything heavy is imported.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ACCEPTED",
    "DATABASES",
    "DEFAULT_STORAGE",
    "dashboard_command",
    "describe_storage",
    "storage_file",
]

DEFAULT_STORAGE = "sqlite:///runs/convnas.db"
#: Databases Optuna's RDB storage is used with (SQLAlchemy dialect names, ``+driver`` allowed).
DATABASES = ("sqlite", "postgresql", "mysql", "mariadb")
ACCEPTED = (
    "sqlite:///runs/convnas.db, postgresql+psycopg://user@host/db, "
    "mysql+pymysql://user@host/db, a journal file (*.log, *.journal) or a SQLite file (*.db)"
)
_JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def describe_storage(storage: str) -> tuple[str, str]:
    """``(kind, canonical)`` for a storage string, without touching it.

    ``kind`` is ``"journal"`` (a path ending in .log/.journal/.jsonl: Optuna's journal file)
    or ``"rdb"`` (a database URL such as ``sqlite:///runs/convnas.db`` or
    ``postgresql://user@host/db``; a bare path ending in .db/.sqlite/.sqlite3 means SQLite).
    Raises ``ValueError`` naming the value and the accepted forms.
    """
    if not isinstance(storage, str) or not storage.strip():
        raise ValueError(f"storage must be a non-empty string, got {storage!r}")
    s = storage.strip()
    if "://" in s:
        scheme = s.split("://", 1)[0]
        if not scheme or not all(c.isalnum() or c in "+_" for c in scheme):
            raise ValueError(f"storage {storage!r} is not a database URL; accepted: {ACCEPTED}")
        database = scheme.split("+", 1)[0].lower()
        if database not in DATABASES:
            raise ValueError(
                f"storage {storage!r}: unknown database {database!r} (known: "
                f"{', '.join(DATABASES)}); accepted: {ACCEPTED}"
            )
        if scheme.startswith("sqlite") and not s.startswith("sqlite:///"):
            raise ValueError(f"storage {storage!r}: a SQLite URL looks like sqlite:///path/x.db")
        return "rdb", s
    if s.endswith(_JOURNAL_SUFFIXES):
        return "journal", s
    if s.endswith(_SQLITE_SUFFIXES):
        return "rdb", f"sqlite:///{s}"
    raise ValueError(f"storage {storage!r} is not a database URL or a file; accepted: {ACCEPTED}")


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        rest = url[len("sqlite:///") :].split("?", 1)[0]
        return Path(rest) if rest and rest != ":memory:" else None
    return None


def storage_file(storage: str) -> Path | None:
    """The local file behind a storage string (SQLite or journal), else None."""
    kind, url = describe_storage(storage)
    return Path(url) if kind == "journal" else _sqlite_path(url)


def dashboard_command(storage: str) -> str:
    """The ``optuna-dashboard ...`` command that opens ``storage`` (local files made absolute)."""
    kind, url = describe_storage(storage)
    path = storage_file(storage)
    if path is not None:
        target = str(path.resolve())
        return f"optuna-dashboard {target if kind == 'journal' else 'sqlite:///' + target}"
    return f"optuna-dashboard {url}"
