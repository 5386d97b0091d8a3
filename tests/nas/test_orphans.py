"""Failing the trials of a worker known to be gone, by its owner tag (no Ray needed)."""

import optuna
from optuna.trial import TrialState

from nas.backends.heartbeat import (
    OWNER_KEY,
    OWNER_TAG_ENV,
    fail_interrupted,
    fail_orphans,
    owner_record,
)


def _study_with_running(tmp_path, owners):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    for owner in owners:
        t = study.ask()
        if owner is not None:
            storage.set_trial_system_attr(t._trial_id, OWNER_KEY, owner)
    return study


def test_owner_record_carries_the_launchers_tag(monkeypatch):
    monkeypatch.delenv(OWNER_TAG_ENV, raising=False)
    assert owner_record("h", 7, "s") == {"host": "h", "pid": 7, "start": "s"}
    monkeypatch.setenv(OWNER_TAG_ENV, "ray:h:1:2/1")
    assert owner_record("h", 7, "s") == {"host": "h", "pid": 7, "start": "s", "tag": "ray:h:1:2/1"}


def test_only_the_failed_workers_trials_are_failed(tmp_path):
    other_host = {"host": "elsewhere", "pid": 1, "start": None}
    study = _study_with_running(
        tmp_path,
        [
            {**other_host, "tag": "run/0"},
            {**other_host, "tag": "run/1"},  # the lost worker
            {**other_host, "tag": "other-run/1"},  # same index, another search
            other_host,  # no tag
        ],
    )
    # A fresh heartbeat-less trial on another host is not stale yet: only the tag fails it.
    assert fail_interrupted(study, host="here", pid=2, start=None, stale_after_s=300) == 0
    assert fail_orphans(study, {"run/1": "its Ray worker failed (worker 1: gone)"}) == 1
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.RUNNING, TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING]
    failed = study.get_trials()[1]
    assert failed.user_attrs["failure"] == "interrupted: its Ray worker failed (worker 1: gone)"
    assert fail_orphans(study, {"run/1": "again"}) == 0  # finished trials are left alone


def test_a_trial_left_without_an_owner_is_failed_once_a_worker_is_known_lost(tmp_path):
    # A worker lost between study.ask() and recording its owner: no tag, no heartbeat names
    # the trial, and nothing else would ever finish it (seen on a loaded 2-core CI machine).
    other_host = {"host": "elsewhere", "pid": 1, "start": None, "tag": "run/0"}
    study = _study_with_running(tmp_path, [other_host, None])
    assert fail_orphans(study, {}) == 0  # no worker is known to be gone
    assert fail_orphans(study, {"run/1": "gone"}, unowned_after_s=3600) == 0  # too fresh
    assert fail_orphans(study, {"run/1": "gone"}, unowned_after_s=0) == 1
    live, orphan = study.get_trials()
    assert live.state == TrialState.RUNNING  # a live worker's trial is left alone
    assert orphan.state == TrialState.FAIL
    assert orphan.user_attrs["failure"] == (
        "interrupted: left without an owner by a failed worker (run/1)"
    )
