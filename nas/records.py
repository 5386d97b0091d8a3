"""What the search engine reports: one trial's outcome, the study at start and end, stored rows.

Plain dataclasses, no Optuna types, so progress displays (:mod:`nas.progress`), the exporter
(:mod:`nas.export`) and the Ray driver can read them without importing optuna. Imports only
the standard library; must not import any other ``nas`` module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FINETUNE_KEY",
    "RERANK_KEY",
    "RunSummary",
    "StudyInfo",
    "TrialOutcome",
    "TrialRow",
    "finetune_study_key",
    "rerank_study_key",
    "is_scored_only",
]

#: The user attribute of a trial row that holds its ``--supernet-finetune`` record. Optuna
#: refuses to change a finished trial, so the record is stored as the study's user attribute
#: :func:`finetune_study_key` and shown on the trial's row when rows are read back.
FINETUNE_KEY = "supernet_finetune"


def finetune_study_key(number: int) -> str:
    """``"supernet_finetune:12"``: the study user attribute holding trial 12's record."""
    return f"{FINETUNE_KEY}:{number}"


#: The user attribute of a trial row that holds its ``--rerank`` record (:mod:`nas.rerank`),
#: stored like the fine-tuning record as the study user attribute :func:`rerank_study_key`.
RERANK_KEY = "rerank"


def rerank_study_key(number: int) -> str:
    """``"rerank:12"``: the study user attribute holding trial 12's re-ranking scores."""
    return f"{RERANK_KEY}:{number}"


def is_scored_only(extra: Any) -> bool:
    """Whether an evaluator's ``extra`` record (``evaluator_extra``) says the candidate was
    scored, not trained: the supernet evaluator writes ``extra["supernet"]`` (its accuracy
    comes from shared weights after BatchNorm recalibration, with no epochs of its own)."""
    return isinstance(extra, dict) and isinstance(extra.get("supernet"), dict)


@dataclass
class TrialOutcome:
    """What happened to one trial of this run, for progress displays."""

    number: int
    status: str  # "feasible", "infeasible", "stopped", "duplicate", "failed", "rejected"
    arch_id: str
    accuracy: float | None
    flops: int
    params: int
    latency_ms: float | None
    fidelity: int
    seconds: float
    message: str
    #: False when the accuracy is a score of weights not trained for this candidate (the
    #: supernet evaluator): there are no epochs to show.
    trained: bool = True
    #: The accuracy objective's value when it is not ``accuracy`` (validation top-1) itself:
    #: ``exp(-val loss)`` under ``--proxy-score loss``.
    score: float | None = None


@dataclass
class StudyInfo:
    """State of the study when a run starts."""

    name: str
    storage: str
    resumed: bool
    n_complete: int  # evaluated: COMPLETE trials not rejected on price (what --trials counts)
    n_feasible: int
    n_failed: int
    n_interrupted_now: int
    n_rejected: int = 0  # COMPLETE trials rejected on price (over a FLOPs/params budget)
    #: a new study's enqueued warm start: the uniform networks' labels, and how many random
    warm_uniform: tuple[str, ...] = ()
    warm_random: int = 0


@dataclass
class RunSummary:
    """State of the study when a run ends, and why it ended.

    ``n_complete`` counts the *evaluated* trials (what ``--trials`` asks for); proposals that
    broke a FLOPs or params budget are told to the study too, as infeasible, but are counted
    in ``n_rejected`` only (``n_rejected_run``: by this run). ``rejections_exhausted`` says the
    run stopped because too many proposals in a row were rejected.
    """

    n_complete: int
    n_feasible: int
    n_failed: int
    n_run: int
    stop_reason: str
    seconds: float
    outcomes: list[TrialOutcome] = field(default_factory=list)
    pareto_size: int = 0  # distinct feasible non-dominated architectures
    best_accuracy: float | None = None  # best accuracy among feasible trials
    n_rejected: int = 0  # in the study
    n_rejected_run: int = 0  # by this run
    rejections_exhausted: bool = False


@dataclass
class TrialRow:
    """One trial as the exporter and summaries see it (no Optuna types)."""

    number: int
    state: str  # "COMPLETE", "FAIL", "RUNNING", ...
    values: list[float] | None
    feasible: bool
    pareto: bool
    user_attrs: dict[str, Any]
    completed_at: float | None = None  # POSIX time the trial finished

    def metric(self, name: str) -> Any:
        return self.user_attrs.get(name)
