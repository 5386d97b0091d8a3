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
