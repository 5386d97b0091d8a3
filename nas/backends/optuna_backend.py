"""The Optuna backend's public names, gathered in one place (the old import path).

The default backend runs the search in this process with Optuna's ask-and-tell interface. It
is built from one module per concept; new code imports from them directly:

* :mod:`nas.backends.engine`: :class:`OptunaSearch`, the loop (open or join, ask, tell)
* :mod:`nas.backends.trial`: one trial (price, reuse, fidelity ladder, record)
* :mod:`nas.backends.reuse`: an architecture is never evaluated twice in a study
* :mod:`nas.backends.warm_start`: budget-fitting random architectures for a new study
* :mod:`nas.backends.heartbeat`: trial owners, heartbeats, failing interrupted trials
* :mod:`nas.backends.constraints`: budgets as Optuna constraints, feasibility
* :mod:`nas.backends.samplers`: the samplers by name
* :mod:`nas.backends.results`: a stored study as plain rows, hypervolume
* :mod:`nas.backends.optuna_storage`: opening storages (race retries, SQLite tuning)
* and, free of optuna: :mod:`nas.storage` (storage strings), :mod:`nas.budgets`,
  :mod:`nas.halving` (the fidelity ladder and its successive-halving rule),
  :mod:`nas.records` (what the engine reports)

This module defines nothing; it must not be imported by the modules it gathers.
"""

from __future__ import annotations

from nas.backends.engine import OptunaSearch
from nas.backends.heartbeat import INTERRUPTED_PREFIX
from nas.backends.optuna_storage import list_studies, open_storage, study_exists, study_settings
from nas.backends.results import METRIC_NAMES, hypervolume, load_rows
from nas.backends.samplers import SAMPLERS, make_sampler
from nas.backends.trial import Evaluate
from nas.budgets import BUDGET_NAMES, Budgets
from nas.halving import FidelityLadder
from nas.records import RunSummary, StudyInfo, TrialOutcome, TrialRow
from nas.storage import describe_storage, storage_file

__all__ = [
    "BUDGET_NAMES",
    "INTERRUPTED_PREFIX",
    "METRIC_NAMES",
    "SAMPLERS",
    "Budgets",
    "Evaluate",
    "FidelityLadder",
    "OptunaSearch",
    "RunSummary",
    "StudyInfo",
    "TrialOutcome",
    "TrialRow",
    "describe_storage",
    "hypervolume",
    "list_studies",
    "load_rows",
    "make_sampler",
    "open_storage",
    "storage_file",
    "study_exists",
    "study_settings",
]
