"""The search config: every setting of one search, frozen, and the checks that need no data.

:class:`SearchConfig` is what the command line (:mod:`nas.search`) and the Python API
(:func:`nas.search.run_search`) both build, what ``search_config.json`` records and what a Ray
worker receives as a dict (:func:`config_from_dict`). :func:`check_config` rejects a bad value
with one sentence naming it before anything is built or written; the checks that need the
space, the data or the storage's contents are :func:`nas.plan.prepare`'s.

Imports :mod:`nas.storage`, :mod:`nas.halving`, :mod:`search_spaces.syntax` (the operator
menu checked as text, without torch) and, to check ``--backend ray``,
:mod:`nas.backends.ray_backend` when called; must not import torch, optuna, ``evaluators``,
or the ``nas`` modules that use the config (plan, runner, search).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from evaluators.config import PROXY_SCORES
from nas.halving import parse_fidelities
from nas.storage import DEFAULT_STORAGE, describe_storage
from search_spaces.syntax import split_menu

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_EVALUATOR",
    "OBJECTIVE_NAMES",
    "PROXY_SCORES",
    "SAMPLER_NAMES",
    "SLOT_POLICY_NAMES",
    "SearchConfig",
    "check_config",
    "config_from_dict",
    "parse_evaluator_options",
    "parse_objectives",
    "positive_int",
]

DEFAULT_EVALUATOR = "evaluators.objectives:evaluate"
SUPERNET_EVALUATOR = "evaluators.supernet:evaluate"
#: Built-in evaluators by short name: ``--evaluator supernet``.
BUILTIN_EVALUATORS = {"supernet": SUPERNET_EVALUATOR}
OBJECTIVE_NAMES = ("accuracy", "flops", "params", "latency")
SAMPLER_NAMES = ("tpe", "nsga2", "random")
SLOT_POLICY_NAMES = ("all", "spatial")
BACKEND_NAMES = ("optuna", "ray")


@dataclass(frozen=True)
class SearchConfig:
    """Every setting of one search, resolved (what ``search_config.json`` holds).

    Budgets are plain numbers (FLOPs and params as counts, latency in ms); ``None`` means
    unlimited. ``fidelities`` is ``"auto"`` (halving rungs down from ``proxy_epochs``),
    ``"off"`` (always the full ``proxy_epochs``) or increasing epoch counts ending at
    ``proxy_epochs``. ``device`` ``"auto"`` means CUDA when available, else CPU.
    """

    max_flops: int | None = None
    max_params: int | None = None
    max_latency_ms: float | None = None
    backbone: str = "resnet50"
    slots: str = "all"
    ops: str = "conv,scconv,oct,linear"
    resolution: int | None = None
    dataset: str = "cifar10"
    data_dir: str = "data"
    download: bool = True
    proxy_epochs: int = 2
    proxy_subset: int | None = 3500
    proxy_resolution: int | None = None
    proxy_score: str = "loss"
    batch_size: int = 64
    fidelities: str | tuple[int, ...] = "auto"
    objectives: tuple[str, ...] = OBJECTIVE_NAMES
    sampler: str = "tpe"
    trials: int = 50
    max_rejections: int = 200
    repair: bool = True
    timeout_s: float | None = None
    seed: int = 0
    device: str = "auto"
    storage: str = DEFAULT_STORAGE
    study: str | None = None
    out: str | None = None
    evaluator: str | None = None
    evaluator_options: Mapping[str, Any] = field(default_factory=dict)
    #: Epochs of fine-tuning for each Pareto member after a supernet search (None: none);
    #: not a setting that defines the study (a rerun with it fine-tunes the finished study).
    supernet_finetune: int | None = None
    #: Extra seeds that score the trials near the front again before export (None: none;
    #: :mod:`nas.rerank`); like ``supernet_finetune``, not a setting that defines the study.
    rerank: int | None = None
    # How the trials run (not part of what defines the study: either backend resumes it).
    backend: str = "optuna"
    ray_address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        d["fidelities"] = (
            self.fidelities if isinstance(self.fidelities, str) else list(self.fidelities)
        )
        d["evaluator_options"] = dict(self.evaluator_options)
        return d


def config_from_dict(d: Mapping[str, Any]) -> SearchConfig:
    """The :class:`SearchConfig` of a :meth:`SearchConfig.to_dict` dict (lists back to tuples)."""
    d = dict(d)
    d["objectives"] = tuple(d["objectives"])
    if not isinstance(d["fidelities"], str):
        d["fidelities"] = tuple(d["fidelities"])
    return SearchConfig(**d)


def positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` when it is an int (not a bool) ``>= minimum``, else ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def parse_objectives(value: Any) -> tuple[str, ...]:
    """``"accuracy,flops"`` (or a sequence) -> ``("accuracy", "flops")``, checked."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(x).strip().lower() for x in items)
    bad = [n for n in names if n not in OBJECTIVE_NAMES]
    shown = repr(value if isinstance(value, str) else ",".join(map(str, items)))
    if not names or bad:
        raise ValueError(
            f"objectives {shown} must be a comma-separated subset of {', '.join(OBJECTIVE_NAMES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"objectives {shown} name an objective twice")
    return names


def _option_value(text: str) -> Any:
    """``5`` -> 5, ``0.5`` -> 0.5, ``true``/``false``/``null`` -> JSON values, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool)) or value is None else text


def parse_evaluator_options(items: Any) -> dict[str, Any]:
    """``["max_steps_per_epoch=5", "augment=cifar"]`` (or a mapping) -> ``EvalConfig.extra``."""
    if isinstance(items, Mapping):
        return {str(k): v for k, v in items.items()}
    out = {}
    for item in items or ():
        key, eq, val = str(item).partition("=")
        if not eq or not key.strip():
            raise ValueError(f"evaluator option {item!r} must look like KEY=VALUE")
        out[key.strip()] = _option_value(val.strip())
    return out


def _check_backend(c: SearchConfig) -> None:
    if c.backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}, got {c.backend!r}")
    if c.backend != "ray":
        if c.ray_address is not None:
            raise ValueError(f"ray_address {c.ray_address!r} needs the ray backend (--backend ray)")
        return
    positive_int("workers", c.workers)
    for name in ("cpus_per_worker", "gpus_per_worker"):
        v = getattr(c, name)
        if v is None and name == "gpus_per_worker":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a number, got {v!r}")
        if v < 0 or (name == "cpus_per_worker" and v == 0):
            lo = "> 0" if name == "cpus_per_worker" else ">= 0"
            raise ValueError(f"{name} must be {lo}, got {v!r}")
    if c.ray_address is not None and (not isinstance(c.ray_address, str) or not c.ray_address):
        raise ValueError(f"ray_address must be a Ray address like 'auto', got {c.ray_address!r}")
    from nas.backends.ray_backend import ray_available

    missing = ray_available()
    if missing:
        raise ValueError(missing)


def _check_finetune(c: SearchConfig) -> None:
    """``supernet_finetune``: a positive int, and only with the supernet evaluator."""
    n = c.supernet_finetune
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"supernet_finetune must be a positive number of epochs, got {n!r}")
    spec = BUILTIN_EVALUATORS.get(c.evaluator or "", c.evaluator)
    if spec != SUPERNET_EVALUATOR:
        which = "the default proxy-training evaluator" if c.evaluator is None else c.evaluator
        raise ValueError(
            f"supernet_finetune={n} (--supernet-finetune) fine-tunes Pareto members taken out "
            f"of a supernet and needs --evaluator supernet, not {which}"
        )


def _check_rerank(c: SearchConfig, objectives: tuple[str, ...]) -> None:
    """``rerank``: a positive int, an accuracy objective, and not the supernet evaluator."""
    n = c.rerank
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"rerank must be a positive number of extra seeds, got {n!r}")
    if "accuracy" not in objectives:
        raise ValueError(
            f"rerank={n} (--rerank) scores the accuracy objective again, but the objectives "
            f"{','.join(objectives)} have none"
        )
    if BUILTIN_EVALUATORS.get(c.evaluator or "", c.evaluator) == SUPERNET_EVALUATOR:
        raise ValueError(
            f"rerank={n} (--rerank) would train a new supernet per seed; with --evaluator "
            "supernet use --supernet-finetune N"
        )


def check_config(c: SearchConfig) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Check every field that can be checked alone; return the objectives and the rungs.

    Raises ``ValueError`` with one sentence naming the first bad field.
    """
    if c.slots not in SLOT_POLICY_NAMES:
        raise ValueError(f"slots must be one of {', '.join(SLOT_POLICY_NAMES)}, got {c.slots!r}")
    if c.sampler not in SAMPLER_NAMES:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLER_NAMES)}, got {c.sampler!r}")
    positive_int("trials", c.trials)
    positive_int("max_rejections", c.max_rejections)
    positive_int("proxy_epochs", c.proxy_epochs)
    positive_int("batch_size", c.batch_size)
    positive_int("seed", c.seed, minimum=0)
    if c.proxy_subset is not None:
        positive_int("proxy_subset", c.proxy_subset)
    if c.proxy_resolution is not None:
        positive_int("proxy_resolution", c.proxy_resolution, minimum=8)
    if c.proxy_score not in PROXY_SCORES:
        raise ValueError(
            f"proxy_score must be one of {', '.join(PROXY_SCORES)}, got {c.proxy_score!r}"
        )
    if c.resolution is not None:
        positive_int("resolution", c.resolution, minimum=8)
    if c.timeout_s is not None and not (c.timeout_s > 0 and math.isfinite(c.timeout_s)):
        raise ValueError(f"timeout must be a positive number of seconds, got {c.timeout_s!r}")
    objectives = parse_objectives(c.objectives)
    rungs = parse_fidelities(c.fidelities, c.proxy_epochs)
    _check_finetune(c)
    _check_rerank(c, objectives)
    split_menu(c.ops)  # names, syntax and value ranges, before torch is imported
    _check_backend(c)
    describe_storage(c.storage)
    if c.study is not None and (not isinstance(c.study, str) or not c.study.strip()):
        raise ValueError(f"study must be a non-empty name, got {c.study!r}")
    return objectives, rungs
