"""The supernet evaluator's options (``--evaluator-option KEY=VALUE``), read and checked.

:func:`parse_options` turns ``EvalConfig.extra`` into a :class:`SupernetOptions` or raises a
one-sentence ``ValueError`` naming the bad key or value and what is allowed; ``nas.plan`` calls
it before any study, folder or file exists. Imports only the standard library (no torch, so a
command's bad option fails fast); must not import other ``evaluators`` modules or ``nas``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OPTION_KEYS", "SAMPLING_MODES", "SupernetOptions", "parse_options"]

#: How training picks a path per batch.
SAMPLING_MODES = ("budget", "uniform")

#: Keys of ``EvalConfig.extra`` read by the supernet evaluator (besides the proxy's own
#: ``max_steps_per_epoch``, ``max_val_batches``, ``synthetic_size``, ``cpu_threads``, ``augment``).
OPTION_KEYS = {
    "supernet_epochs": "epochs of supernet training on the proxy split (positive int, default 10)",
    "bn_batches": "training batches that recalibrate BatchNorm before each score "
    "(positive int, default 4)",
    "supernet_sampling": "'budget' (default: train only paths within the FLOPs/params "
    "budgets, by rejection sampling) or 'uniform' (every path)",
    "supernet_lr": "peak learning rate of supernet training (number > 0, default: the proxy's lr)",
    "supernet_dir": "folder of the trained supernet files (default: <run folder>/supernet)",
    "supernet_menu": "the operator menu the supernet holds (set by the search: its --ops)",
}


@dataclass(frozen=True)
class SupernetOptions:
    """The supernet evaluator's settings (see :data:`OPTION_KEYS`)."""

    epochs: int = 10
    bn_batches: int = 4
    sampling: str = "budget"
    lr: float | None = None
    directory: str = "runs/supernet"
    menu: str | None = None


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"evaluator option {key} must be a positive integer, got {value!r}")
    return value


def parse_options(extra: Mapping[str, Any]) -> SupernetOptions:
    """Read the supernet's keys of ``extra``; ``ValueError`` names a bad value."""
    kw: dict[str, Any] = {}
    if "supernet_epochs" in extra:
        kw["epochs"] = _positive_int("supernet_epochs", extra["supernet_epochs"])
    if "bn_batches" in extra:
        kw["bn_batches"] = _positive_int("bn_batches", extra["bn_batches"])
    if "supernet_sampling" in extra:
        v = extra["supernet_sampling"]
        if v not in SAMPLING_MODES:
            raise ValueError(
                f"evaluator option supernet_sampling must be one of {', '.join(SAMPLING_MODES)}, "
                f"got {v!r}"
            )
        kw["sampling"] = v
    if "supernet_lr" in extra:
        v = extra["supernet_lr"]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")
        if not ok:
            raise ValueError(f"evaluator option supernet_lr must be a number > 0, got {v!r}")
        kw["lr"] = float(v)
    for key, name in (("supernet_dir", "directory"), ("supernet_menu", "menu")):
        if key in extra:
            v = extra[key]
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"evaluator option {key} must be a non-empty text, got {v!r}")
            kw[name] = v
    return SupernetOptions(**kw)
