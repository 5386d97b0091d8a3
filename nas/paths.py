"""Output paths checked before anything is written: can this folder or file be created here?

The commands check ``--out`` and a local ``--storage`` with these before a study, a run folder
or a file exists, so a path that cannot be written (a file where a folder is needed,
``/proc/...``, ``/dev/null/sub``, a read-only folder) is one sentence and exit code 2 rather
than a traceback after the study was created. The check creates an empty temporary folder in
the nearest existing folder and removes it at once: the only test that also holds for root,
for whom permission bits do not stop writes but ``/proc`` and read-only mounts still do.

Imports only the standard library; must not import torch, optuna, ray, ``evaluators``,
``search_spaces`` or other ``nas`` modules (the command lines call it before anything heavy).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = ["check_writable_file", "check_writable_folder"]

_FIX = "pass a folder this user can write"


def _kind(p: Path) -> str:
    mode = p.stat().st_mode
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a folder"


def _describe(p: Path) -> str:
    kind = _kind(p)
    return kind if kind == "not a folder" else f"{kind}, not a folder"


def check_writable_folder(path: str | os.PathLike, what: str) -> None:
    """``ValueError`` unless ``path`` is a writable folder or one that can be created.

    ``what`` starts the message, e.g. ``"out 'runs/x'"``; nothing is left on disk.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{what} is {_describe(p)}; {_FIX}")
    existing = p.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(
            f"{what} cannot be created: {str(existing)!r} is {_describe(existing)}; {_FIX}"
        )
    probe = None
    try:
        probe = tempfile.mkdtemp(prefix=".convnas-write-check-", dir=existing)
    except OSError as e:
        reason = e.strerror or str(e)
        if existing == p.absolute():
            raise ValueError(f"{what} cannot be written ({reason}); {_FIX}") from None
        raise ValueError(
            f"{what} cannot be created: nothing can be created in {str(existing)!r} "
            f"({reason}); {_FIX}"
        ) from None
    finally:
        if probe is not None:  # removed even when Ctrl-C lands here
            os.rmdir(probe)


def check_writable_file(path: str | os.PathLike, what: str) -> None:
    """``ValueError`` unless ``path`` is a writable file or one that can be created."""
    p = Path(path)
    if p.exists():
        if p.is_dir():
            raise ValueError(f"{what} is a folder, not a file")
        if not p.is_file():
            raise ValueError(f"{what} is {_kind(p).replace('not a folder', 'not a file')}")
        if not os.access(p, os.R_OK | os.W_OK):
            raise ValueError(f"{what} cannot be written: this user may not write {str(p)!r}")
    parent = p.parent if str(p.parent) else Path(".")
    check_writable_folder(parent, f"{what}: folder {str(parent)!r}")
