"""How budgets become Optuna constraints, and how a trial's feasibility is read back.

Optuna 5 stores constraints set with ``Trial.set_constraint(key, value)`` as system
attributes ``constraints:<key>``; optuna-dashboard 0.21 reads only the legacy list under
the system attribute ``constraints``. Both are written (the same values, in the order of
the study's ``constraint_names`` user attribute), so samplers, ``study.best_trials`` and
the dashboard agree on feasibility. A constraint value is the relative overshoot
``value / budget - 1`` (> 0: broken); a budget that could not be checked because an
earlier one already failed (latency of a model never built) is recorded as 0.

Imports optuna and :mod:`nas.budgets`; must not import the engine or the other modules of
:mod:`nas.backends` that build on it.
"""

from __future__ import annotations

from collections.abc import Mapping

import optuna
from optuna.trial import FrozenTrial

from nas.budgets import Budgets

__all__ = [
    "CONSTRAINTS_LEGACY_KEY",
    "REJECTED_KEY",
    "constraint_values",
    "is_feasible",
    "is_rejected",
    "set_constraints",
    "slack",
]

CONSTRAINTS_LEGACY_KEY = "constraints"  # what optuna-dashboard reads
#: User attribute of a proposal rejected on price (over a FLOPs or params budget, never
#: built): it is COMPLETE and infeasible, so samplers learn the budget, but it is not one of
#: the evaluated trials that ``--trials`` counts.
REJECTED_KEY = "rejected"


def constraint_values(trial: FrozenTrial) -> dict[str, float]:
    """The constraint values a finished trial recorded, by budget name."""
    return dict(trial.constraints)


def is_feasible(trial: FrozenTrial) -> bool:
    """Whether every constraint of ``trial`` is met (no constraints: feasible)."""
    return all(v <= 0 for v in trial.constraints.values())


def is_rejected(trial: FrozenTrial) -> bool:
    """Whether ``trial`` was rejected on price (see :data:`REJECTED_KEY`)."""
    return bool(trial.user_attrs.get(REJECTED_KEY, False))


def set_constraints(
    study: optuna.Study,
    trial: optuna.Trial,
    budgets: Budgets,
    violations: Mapping[str, float],
) -> None:
    """Record ``trial``'s constraints: the overshoot for a broken budget, else its slack."""
    names = budgets.names
    if not names:
        return
    values = [
        float(violations.get(n, 0.0)) if violations.get(n, 0.0) > 0 else slack(trial, budgets, n)
        for n in names
    ]
    for n, v in zip(names, values):
        trial.set_constraint(n, v)
    # optuna-dashboard 0.21 reads only the legacy list: write it too.
    study._storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_LEGACY_KEY, values)


def slack(trial: optuna.Trial, budgets: Budgets, name: str) -> float:
    """``value / budget - 1`` (<= 0) for a satisfied budget; 0 when not measured."""
    key = {"flops": "flops", "params": "params", "latency": "latency_ms"}[name]
    value = trial.user_attrs.get(key)
    limit = budgets.limit(name)
    if value is None or limit is None:
        return 0.0
    return min(0.0, float(value) / float(limit) - 1.0)
