"""Reading a study back: every trial as a plain row, its feasibility and Pareto flags, hypervolume.

Imports optuna, :mod:`nas.records`, :mod:`nas.fronts`, :mod:`nas.backends.constraints` and
:mod:`nas.backends.optuna_storage`; must not import the engine (which uses it) or any ``nas``
module above :mod:`nas.backends`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.backends.constraints import is_feasible
from nas.backends.optuna_storage import list_studies, open_storage
from nas.fronts import apply_rerank
from nas.records import (
    FINETUNE_KEY,
    RERANK_KEY,
    TrialRow,
    finetune_study_key,
    rerank_study_key,
)

__all__ = [
    "LIKELIHOOD_NAME",
    "METRIC_NAMES",
    "hypervolume",
    "load_rows",
    "metric_names",
    "record_finetune",
    "record_rerank",
    "rows_of",
]

#: Objective name -> metric name shown in the dashboard.
METRIC_NAMES = {
    "accuracy": "accuracy",
    "flops": "flops",
    "params": "params",
    "latency": "latency_ms",
}
#: The accuracy objective's dashboard name under ``--proxy-score loss``: its value is
#: ``exp(-validation loss)``, the geometric-mean probability of the true class.
LIKELIHOOD_NAME = "likelihood"


def metric_names(objectives: Sequence[str], proxy_score: str | None = None) -> list[str]:
    """The dashboard names of ``objectives``; the accuracy objective is ``likelihood`` when the
    study scores candidates by validation loss (``proxy_score="loss"``)."""
    names = dict(METRIC_NAMES)
    if proxy_score == "loss":
        names["accuracy"] = LIKELIHOOD_NAME
    return [names[o] for o in objectives]


def hypervolume(
    points: Sequence[Sequence[float]],
    directions: Sequence[str],
    reference: Sequence[float],
) -> float:
    """Hypervolume dominated by ``points`` up to ``reference`` (Optuna's WFG implementation).

    ``directions`` are ``"maximize"``/``"minimize"`` per objective; points that do not improve
    on the reference in every objective add nothing.
    """
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    ref = signs * np.asarray(reference, dtype=float)
    pts = [signs * np.asarray(p, dtype=float) for p in points]
    pts = [p for p in pts if np.all(p < ref)]
    if not pts:
        return 0.0
    return float(compute_hypervolume(np.stack(pts), ref))


def rows_of(study: optuna.Study) -> list[TrialRow]:
    """Every trial of ``study`` as a :class:`TrialRow`, feasibility and Pareto flags set.

    A ``--supernet-finetune`` record (a study user attribute, :func:`finetune_study_key`) is
    shown as the trial's ``supernet_finetune`` user attribute, a ``--rerank`` record
    (:func:`rerank_study_key`) as its ``rerank`` attribute; once trials are re-ranked, the
    Pareto flags are those of the re-ranked scores (:func:`nas.fronts.apply_rerank`).
    """
    trials = study.get_trials(deepcopy=False)
    study_attrs = study.user_attrs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = {t.number for t in study.best_trials}
    rows = []
    for t in trials:
        complete = t.state == TrialState.COMPLETE
        rows.append(
            TrialRow(
                number=t.number,
                state=t.state.name,
                values=list(t.values) if t.values is not None else None,
                feasible=complete and is_feasible(t),
                pareto=t.number in best and complete and is_feasible(t),
                user_attrs=_with_records(
                    t.user_attrs,
                    study_attrs.get(finetune_study_key(t.number)),
                    study_attrs.get(rerank_study_key(t.number)),
                ),
                completed_at=(
                    t.datetime_complete.timestamp() if t.datetime_complete is not None else None
                ),
            )
        )
    if any(RERANK_KEY in r.user_attrs for r in rows):  # only studies finished with --rerank
        apply_rerank(rows, _objectives(study))
    return rows


def _with_records(attrs: dict[str, Any], finetune: Any, rerank: Any) -> dict[str, Any]:
    out = dict(attrs)
    if isinstance(finetune, dict):
        out[FINETUNE_KEY] = finetune
    if isinstance(rerank, dict):
        out[RERANK_KEY] = rerank
    return out


def _objectives(study: optuna.Study) -> list[str]:
    """The study's objective names (a study made before they were stored: from metric names)."""
    return study.user_attrs.get("objectives") or [
        {**{v: k for k, v in METRIC_NAMES.items()}, LIKELIHOOD_NAME: "accuracy"}.get(m, m)
        for m in (study.metric_names or [])
    ]


def record_finetune(study: optuna.Study, number: int, record: dict[str, Any]) -> None:
    """Store trial ``number``'s ``--supernet-finetune`` record (replacing an earlier one)."""
    study.set_user_attr(finetune_study_key(number), record)


def record_rerank(study: optuna.Study, number: int, record: dict[str, Any]) -> None:
    """Store trial ``number``'s ``--rerank`` record (replacing an earlier one)."""
    study.set_user_attr(rerank_study_key(number), record)


def load_rows(storage: str, study_name: str) -> tuple[list[TrialRow], dict[str, Any]]:
    """All trials of a stored study as :class:`TrialRow` and the study's description.

    The description holds ``objectives``, ``directions``, ``metric_names``, ``budgets``,
    ``constraint_names`` and the ``convnas`` settings. Raises ``ValueError`` when the storage
    or study does not exist (naming the studies it holds).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = list_studies(storage)
    if study_name not in names:
        shown = ", ".join(repr(n) for n in names) or "none"
        raise ValueError(f"study {study_name!r} is not in storage {storage!r} (studies: {shown})")
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage, create=False))
    ua = study.user_attrs
    objectives = _objectives(study)
    info = {
        "study": study_name,
        "storage": storage,
        "objectives": objectives,
        "directions": [d.name.lower() for d in study.directions],
        "metric_names": study.metric_names,
        "budgets": ua.get("budgets", {}),
        "constraint_names": ua.get("constraint_names", []),
        "convnas": ua.get("convnas", {}),
    }
    return rows_of(study), info
