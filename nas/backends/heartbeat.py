"""Interrupted trials: who owns a running trial, its heartbeat, and failing the orphans.

Every trial records its owner (host, process id, process start time) and a heartbeat that a
background thread refreshes every ``heartbeat_s`` seconds. Before each proposal, running
trials of the study whose owner process on this host is gone, or whose heartbeat is older than
``stale_after_s`` (other hosts), are marked FAIL with ``failure`` explaining the interruption.
This works the same for SQLite, journal files and database URLs.

A launcher that knows when its workers are gone for good (the Ray driver, once Tune reports a
worker failed) names each worker with an owner tag (the ``CONVNAS_OWNER_TAG`` environment
variable, saved in the owner record) and fails the trials still running under a failed
worker's tag at once with :func:`fail_orphans`, without waiting for a stale heartbeat.

Imports optuna only; must not import the engine or the other modules of
:mod:`nas.backends` that build on it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

__all__ = [
    "HEARTBEAT_KEY",
    "INTERRUPTED_PREFIX",
    "OWNER_KEY",
    "Heartbeat",
    "OWNER_TAG_ENV",
    "fail_interrupted",
    "fail_orphans",
    "owner_record",
    "pid_alive",
    "process_start",
]

OWNER_KEY = "convnas:owner"
HEARTBEAT_KEY = "convnas:heartbeat"
INTERRUPTED_PREFIX = "interrupted"
OWNER_TAG_ENV = "CONVNAS_OWNER_TAG"


def owner_record(host: str, pid: int, start: str | None) -> dict[str, Any]:
    """The owner saved on a running trial; with ``tag`` when the launcher set one."""
    owner: dict[str, Any] = {"host": host, "pid": pid, "start": start}
    tag = os.environ.get(OWNER_TAG_ENV)
    if tag:
        owner["tag"] = tag
    return owner


def process_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell reused pids apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` (started at ``start``, if known) still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    if start is not None:
        now = process_start(pid)
        return now is None or now == start
    return True


class Heartbeat:
    """Refreshes a trial's heartbeat system attribute from a daemon thread."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int, every_s: float):
        self._storage, self._trial_id, self._every = storage, trial_id, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="convnas-heartbeat")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._storage.set_trial_system_attr(self._trial_id, HEARTBEAT_KEY, time.time())
            except Exception:  # noqa: BLE001 - a missed beat must never kill the search
                pass


def fail_interrupted(
    study: optuna.Study, *, host: str, pid: int, start: str | None, stale_after_s: float
) -> int:
    """Mark running trials of ``study`` whose worker is gone as FAIL; return how many.

    ``host``, ``pid`` and ``start`` identify the calling process (whose own trials are
    left alone); a trial on another host is interrupted when its heartbeat is older than
    ``stale_after_s``.
    """
    storage = study._storage
    now = time.time()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(OWNER_KEY) or {}
        beat = t.system_attrs.get(HEARTBEAT_KEY)
        if owner.get("host") == host and owner.get("pid") == pid and (owner.get("start") == start):
            continue  # our own (cannot happen between trials, but be safe)
        reason = None
        if owner.get("host") == host and isinstance(owner.get("pid"), int):
            if not pid_alive(owner["pid"], owner.get("start")):
                reason = (
                    f"{INTERRUPTED_PREFIX}: worker process {owner['pid']} on {host} "
                    "stopped during the trial (killed or crashed)"
                )
        elif isinstance(beat, (int, float)) and now - beat > stale_after_s:
            reason = (
                f"{INTERRUPTED_PREFIX}: no heartbeat from worker "
                f"{owner.get('host', '?')}:{owner.get('pid', '?')} for {now - beat:.0f} s"
            )
        elif beat is None and t.datetime_start is not None:
            age = now - t.datetime_start.timestamp()
            if age > stale_after_s and not owner:
                reason = f"{INTERRUPTED_PREFIX}: running for {age:.0f} s without an owner"
        if reason is None:
            continue
        n += _fail(storage, t._trial_id, reason)
    return n


def _fail(storage: Any, trial_id: int, reason: str) -> bool:
    try:
        storage.set_trial_user_attr(trial_id, "failure", reason)
        storage.set_trial_user_attr(trial_id, "status", "failed: " + reason)
        return bool(storage.set_trial_state_values(trial_id, TrialState.FAIL))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # another worker got there first


def fail_orphans(
    study: optuna.Study, reasons: Mapping[str, str], *, unowned_after_s: float = 2.0
) -> int:
    """Fail the running trials whose owner tag is a key of ``reasons``; return how many.

    ``reasons`` maps the tag of each worker known to be gone to why (e.g. Tune's error
    line); the failure reads ``interrupted: <reason>``. A worker lost between creating a trial
    and recording its owner leaves a trial with no owner at all, which no tag or heartbeat
    names; when some worker is known to be gone, such a trial older than ``unowned_after_s``
    (a live worker records its owner within milliseconds) is failed too.
    """
    n = 0
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(OWNER_KEY)
        tag = (owner or {}).get("tag")
        if tag in reasons:
            n += _fail(study._storage, t._trial_id, f"{INTERRUPTED_PREFIX}: {reasons[tag]}")
        elif (
            reasons
            and not owner
            and t.datetime_start is not None
            and now - t.datetime_start.timestamp() > unowned_after_s
        ):
            gone = ", ".join(sorted(reasons))
            reason = f"{INTERRUPTED_PREFIX}: left without an owner by a failed worker ({gone})"
            n += _fail(study._storage, t._trial_id, reason)
    return n
