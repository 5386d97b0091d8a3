"""Reuse: the same architecture is never evaluated twice in a study.

A repeated proposal (same ``arch_id``) is told the values, constraints and metrics of the
earlier trial (``duplicate_of`` names it). Earlier *failures* are reused too, except
interruptions. When another worker is evaluating the architecture right now, the trial waits
for that result instead of training twice. Imports optuna, :mod:`nas.budgets`,
:mod:`nas.records`, :mod:`nas.backends.constraints` and :mod:`nas.backends.heartbeat`; must
not import the engine or :mod:`nas.backends.trial` (which call it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.backends.constraints import CONSTRAINTS_LEGACY_KEY, constraint_values
from nas.backends.heartbeat import INTERRUPTED_PREFIX
from nas.budgets import Budgets
from nas.records import TrialOutcome, is_scored_only

__all__ = ["find_earlier", "reuse", "wait_for_running"]


def find_earlier(study: optuna.Study, arch_id: str, number: int) -> FrozenTrial | None:
    """The earlier finished trial of ``arch_id`` whose result counts (interruptions do not)."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if t.number == number or t.user_attrs.get("arch_id") != arch_id:
            continue
        if t.state == TrialState.FAIL and str(t.user_attrs.get("failure", "")).startswith(
            INTERRUPTED_PREFIX
        ):
            continue  # an interruption says nothing about the architecture
        if t.state == TrialState.FAIL and "interrupted by the user" in str(
            t.user_attrs.get("failure", "")
        ):
            continue
        return t
    return None


def wait_for_running(
    study: optuna.Study,
    arch_id: str,
    number: int,
    fail_interrupted: Callable[[], int],
    poll_s: float = 0.5,
) -> FrozenTrial | None:
    """Wait while an earlier RUNNING trial (another worker's) evaluates ``arch_id``.

    Only lower-numbered trials are waited for, so two workers never wait for each other.
    A worker that dies is noticed by ``fail_interrupted()`` (its trial becomes FAIL as
    interrupted, which is not reused), and then this trial evaluates the architecture.
    """
    while True:
        running = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number < number and t.user_attrs.get("arch_id") == arch_id
        ]
        if not running:
            return find_earlier(study, arch_id, number)
        time.sleep(poll_s)
        fail_interrupted()


def reuse(
    study: optuna.Study,
    trial: optuna.Trial,
    earlier: FrozenTrial,
    budgets: Budgets,
    fail: Callable[[optuna.Trial, str], None],
    outcome: Callable[..., TrialOutcome],
) -> TrialOutcome:
    """Tell ``trial`` the values, constraints and metrics of ``earlier`` (``duplicate_of``).

    An earlier failure fails ``trial`` too, through ``fail(trial, reason)``.
    """
    root = earlier.user_attrs.get("duplicate_of", earlier.number)
    skip = {"duplicate_of", "status"}
    for k, v in earlier.user_attrs.items():
        if k not in skip and k not in trial.user_attrs:
            trial.set_user_attr(k, v)
    trial.set_user_attr("duplicate_of", root)
    trial.set_user_attr("train_time_s", 0.0)
    ua = earlier.user_attrs
    if earlier.state == TrialState.FAIL:
        reason = f"same architecture as trial {root}, which failed: {ua.get('failure')}"
        fail(trial, reason)
        return outcome("failed", None, None, 0, reason)
    names = budgets.names
    cons = constraint_values(earlier)
    if names:
        values = [float(cons.get(n, 0.0)) for n in names]
        for n, v in zip(names, values):
            trial.set_constraint(n, v)
        study._storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_LEGACY_KEY, values)
    msg = f"same architecture as trial {root}: result reused"
    trial.set_user_attr("status", msg)
    study.tell(trial, list(earlier.values))
    feasible = ua.get("feasible", True)
    acc = ua.get("accuracy") if feasible else None
    score = ua.get("score") if feasible else None
    trained = not is_scored_only(ua.get("evaluator_extra"))
    return outcome(
        "duplicate",
        acc,
        ua.get("latency_ms"),
        int(ua.get("fidelity", 0)),
        msg,
        trained=trained,
        score=score,
    )
