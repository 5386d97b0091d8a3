"""``Metrics``: what one evaluation of a candidate produced, and the objectives a search uses.

The record every evaluator returns (the proxy evaluator of :mod:`evaluators.objectives`, a
custom one, the surrogate of the tests) and the names and directions of the objectives a
search optimises. Imports only the standard library; must not import other ``evaluators``
modules, torch, or ``nas``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["OBJECTIVES", "OBJECTIVE_DIRECTIONS", "Metrics", "accuracy_objective"]

#: Objective names a search may use, and whether each is maximised or minimised.
OBJECTIVES = ("accuracy", "flops", "params", "latency")
OBJECTIVE_DIRECTIONS = {
    "accuracy": "maximize",
    "flops": "minimize",
    "params": "minimize",
    "latency": "minimize",
}


@dataclass
class Metrics:
    """What one evaluation produced. ``None`` means "not measured" (e.g. skipped over budget).

    ``feasible`` is False when any budget is broken (``violations`` then maps the budget name
    to how far over it is, > 0); ``failure`` is a one-line reason when the evaluation failed
    (non-finite loss, out of memory, an exception inside an op), in which case ``accuracy``
    is None. ``fidelity`` is the number of proxy epochs actually trained (0: none).

    ``score`` is the value the search maximises as its accuracy objective, when it is not
    ``accuracy`` itself: the built-in evaluators set it from ``EvalConfig.proxy_score``
    (``exp(-val_loss)`` by default); ``None`` (a custom evaluator that does not set it) means
    ``accuracy`` is the objective. See :func:`accuracy_objective`.

    Units: ``accuracy`` is validation top-1 as a fraction in [0, 1]; ``latency_ms`` the median
    and ``latency_iqr_ms`` the interquartile range of timed forward passes; ``train_time_s``
    the proxy training time spent on this architecture so far (all fidelity levels);
    ``violations`` values are relative excesses (``value / budget - 1``).
    """

    arch_id: str
    flops: int
    params: int
    inference_params: int
    accuracy: float | None = None
    score: float | None = None
    latency_ms: float | None = None
    latency_iqr_ms: float | None = None
    latency_source: str | None = None  # "measured" or "predicted"
    train_time_s: float = 0.0
    zero_cost: float | None = None
    fidelity: int = 0
    feasible: bool = True
    violations: dict[str, float] = field(default_factory=dict)
    failure: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Metrics:
        return cls(**d)


def accuracy_objective(m: Metrics) -> float | None:
    """The value of the accuracy objective: ``m.score`` when set, else ``m.accuracy``."""
    return m.score if m.score is not None else m.accuracy
