"""Study names: the settings that define a study, the name derived from them, its folder.

Running the same command again resumes its study because the default name is derived from
the settings that define the search (:func:`defining_settings`, hashed by
:func:`default_study_name`); changing any of them means a different study. Imports only the
standard library; must not import other ``nas`` modules, optuna or ``evaluators``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["default_study_name", "defining_settings", "flops_tag", "slug", "study_folder"]


def flops_tag(n: float) -> str:
    """``2.5e9`` -> ``"2.5G"``: a count in three significant digits for names."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def slug(text: str) -> str:
    """``text`` as a short name part: unsafe characters become ``-``, at most 40 of them."""
    return "".join(c if c.isalnum() or c in "._" else "-" for c in text).strip("-")[:40]


def defining_settings(
    config: Any,
    space: Any,
    rungs: tuple[int, ...],
    device: str,
    num_classes: int,
    resolution: int,
    evaluator: str,
    cost_range: Any,
    builtin: bool = True,
) -> dict[str, Any]:
    """The settings that define a study: changing any of them means a different search.

    ``builtin``: ``evaluator`` is one of the built-in evaluators, which score the accuracy
    objective as ``config.proxy_score`` says (else ``proxy_score`` is recorded as None).
    """
    uses_latency = "latency" in config.objectives or config.max_latency_ms is not None
    return {
        "backbone": config.backbone,
        "resolution": resolution,
        "num_classes": num_classes,
        "slots": config.slots,
        "ops": [s.label for s in space.menu],
        "dataset": config.dataset,
        "proxy_epochs": config.proxy_epochs,
        "proxy_subset": config.proxy_subset,
        "proxy_resolution": config.proxy_resolution,
        # What the built-in evaluators maximise as accuracy; a custom evaluator defines its own.
        "proxy_score": config.proxy_score if builtin else None,
        "batch_size": config.batch_size,
        "fidelities": list(rungs),
        "objectives": list(config.objectives),
        "max_flops": config.max_flops,
        "max_params": config.max_params,
        "max_latency_ms": config.max_latency_ms,
        "evaluator": evaluator,
        "evaluator_options": dict(config.evaluator_options),
        # Latency is only comparable on one kind of device.
        "latency_device": device if uses_latency else None,
        # Derived from the above; kept for the exporter's hypervolume reference point.
        "space": {
            "slots": len(space.slots),
            "min_flops": cost_range.min_flops,
            "max_flops": cost_range.max_flops,
            "min_params": cost_range.min_params,
            "max_params": cost_range.max_params,
        },
    }


def default_study_name(settings: Mapping[str, Any]) -> str:
    """``<backbone>-<resolution>-<slots>-<dataset>-<budgets>-<hash of the settings>``."""
    blob = json.dumps(settings, sort_keys=True).encode()
    digest = hashlib.sha256(blob).hexdigest()[:6]
    budgets = []
    if settings["max_flops"] is not None:
        budgets.append(flops_tag(settings["max_flops"]) + "FLOPs")
    if settings["max_params"] is not None:
        budgets.append(flops_tag(settings["max_params"]) + "params")
    if settings["max_latency_ms"] is not None:
        budgets.append(f"{settings['max_latency_ms']:g}ms")
    parts = [
        settings["backbone"],
        str(settings["resolution"]),
        settings["slots"],
        slug(settings["dataset"].split(":")[0]),
        *(budgets or ["nobudget"]),
        digest,
    ]
    return "-".join(parts)


def study_folder(name: str) -> str:
    """The folder name of a study under ``runs/``: unsafe characters become ``_``."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
