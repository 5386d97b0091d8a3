"""Budgets: the upper limits on FLOPs, parameters and latency that make a candidate infeasible.

Imports only the standard library; must not import any other ``nas`` module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BUDGET_NAMES", "Budgets"]

BUDGET_NAMES = ("flops", "params", "latency")


@dataclass(frozen=True)
class Budgets:
    """Upper limits; ``None`` means unlimited. FLOPs and params are counts, latency in ms."""

    max_flops: int | None = None
    max_params: int | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_flops", "max_params", "max_latency_ms"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not v > 0 or not math.isfinite(v)):
                raise ValueError(f"{name} must be a positive number or None, got {v!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """The budgets that are set, in the fixed order flops, params, latency."""
        limits = (self.max_flops, self.max_params, self.max_latency_ms)
        return tuple(n for n, v in zip(BUDGET_NAMES, limits) if v is not None)

    def limit(self, name: str) -> float | None:
        return {"flops": self.max_flops, "params": self.max_params, "latency": self.max_latency_ms}[
            name
        ]
