"""``python -m nas.search --budget 2GFLOPs``: the multi-objective architecture search.

Every replaceable convolution of the backbone (a *slot*) picks one operator from the menu; an
Optuna study trades proxy accuracy against FLOPs, parameters and measured latency. Budgets
(``--budget``, ``--max-params``, ``--max-latency``) make a candidate infeasible when broken;
an over-budget candidate is never built or trained. Results land in an Optuna storage
(default ``sqlite:///runs/convnas.db``) that optuna-dashboard opens, and the Pareto-optimal
feasible architectures are exported to ``<out>/pareto/``.

Running the same command again resumes its study (the default study name is derived from the
settings that define the search), with every completed trial kept and interrupted ones marked
failed. :func:`run_search` is the Python API; the command line is a thin layer over it.

Exit codes: 0 done, 1 the search could not run (e.g. every trial failed), 2 bad input (one
line on stderr, nothing written), 130 interrupted with Ctrl-C (resume by running it again).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nas.units import (
    arg_count,
    arg_duration,
    arg_flops,
    arg_latency,
    format_count,
    format_duration,
    format_flops,
    format_ms,
    parse_count,
    parse_duration,
    parse_flops,
    parse_latency,
)

__all__ = [
    "DEFAULT_STORAGE",
    "SearchConfig",
    "SearchResult",
    "build_parser",
    "cli",
    "main",
    "run_search",
]

DEFAULT_STORAGE = "sqlite:///runs/convnas.db"
DEFAULT_EVALUATOR = "evaluators.objectives:evaluate"
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
    proxy_subset: int | None = 2000
    proxy_resolution: int | None = None
    batch_size: int = 64
    fidelities: str | tuple[int, ...] = "auto"
    objectives: tuple[str, ...] = OBJECTIVE_NAMES
    sampler: str = "tpe"
    trials: int = 50
    timeout_s: float | None = None
    seed: int = 0
    device: str = "auto"
    storage: str = DEFAULT_STORAGE
    study: str | None = None
    out: str | None = None
    evaluator: str | None = None
    evaluator_options: Mapping[str, Any] = field(default_factory=dict)
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


@dataclass
class SearchResult:
    """What :func:`run_search` returns."""

    study: str
    storage: str
    out_dir: Path
    resumed: bool
    n_complete: int
    n_feasible: int
    n_failed: int
    stop_reason: str
    pareto: list[dict[str, Any]]
    export_dir: Path | None
    hypervolume: float | None
    dashboard_command: str
    config: dict[str, Any]


# -- validation ------------------------------------------------------------------------------
def _positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _parse_fidelities(value: Any, proxy_epochs: int) -> tuple[int, ...]:
    """The rungs: ``auto`` -> halving rungs, ``off`` -> (proxy_epochs,), or explicit."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            rungs, e = [], proxy_epochs
            while e >= 1:
                rungs.append(e)
                e //= 2
            return tuple(sorted(set(rungs)))
        if text == "off":
            return (proxy_epochs,)
        try:
            value = tuple(int(x) for x in text.split(","))
        except ValueError:
            raise ValueError(
                f"fidelities {value!r} must be 'auto', 'off' or increasing epoch counts "
                f"like 1,{proxy_epochs}"
            ) from None
    rungs = tuple(value)
    if (
        not rungs
        or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rungs)
        or any(b <= a for a, b in zip(rungs, rungs[1:]))
    ):
        raise ValueError(f"fidelities {value!r} must be increasing positive epoch counts")
    if rungs[-1] != proxy_epochs:
        raise ValueError(
            f"fidelities {','.join(map(str, rungs))} must end at --proxy-epochs {proxy_epochs}"
        )
    return rungs


def _parse_objectives(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(x).strip().lower() for x in items)
    bad = [n for n in names if n not in OBJECTIVE_NAMES]
    if not names or bad:
        raise ValueError(
            f"objectives {value!r} must be a comma-separated subset of {', '.join(OBJECTIVE_NAMES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"objectives {value!r} name an objective twice")
    return names


def _option_value(text: str) -> Any:
    """``5`` -> 5, ``0.5`` -> 0.5, ``true``/``false``/``null`` -> JSON values, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool)) or value is None else text


def _parse_evaluator_options(items: Any) -> dict[str, Any]:
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


def _load_evaluator(spec: str) -> Callable[..., Any]:
    """Import ``package.module:function``; ``ValueError`` naming the spec when it fails."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"evaluator {spec!r} must look like package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        # ``python -m`` puts the working folder on sys.path, console scripts do not: look
        # there too, so a user's own module next to their data is found either way.
        cwd = os.getcwd()
        if cwd in sys.path:
            raise ValueError(f"evaluator {spec!r}: cannot import {module_name!r} ({e})") from None
        sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            sys.path.remove(cwd)
            raise ValueError(f"evaluator {spec!r}: cannot import {module_name!r} ({e})") from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"evaluator {spec!r}: {module_name} has no attribute {attr!r}")
    if not callable(obj):
        raise ValueError(f"evaluator {spec!r} is not callable")
    return obj


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    from evaluators.runtime import resolve_device

    resolve_device(device)  # raises ValueError naming the device
    return device


def _flops_tag(n: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "-" for c in text).strip("-")[:40]


# -- the prepared search -------------------------------------------------------------------
@dataclass
class _Plan:
    """A fully validated search, ready to run (nothing has been written yet)."""

    config: SearchConfig
    resolved: dict[str, Any]  # the settings that define the study (hashed into its name)
    space: Any
    cost_model: Any
    rungs: tuple[int, ...]
    evaluate: Callable[..., Any]
    eval_config: Any
    study: str
    out_dir: Path
    storage: str
    device: str
    cost_range: Any


def _study_settings(
    config: SearchConfig,
    space: Any,
    rungs: tuple[int, ...],
    device: str,
    num_classes: int,
    resolution: int,
    evaluator: str,
    cost_range: Any,
) -> dict[str, Any]:
    """The settings that define a study: changing any of them means a different search."""
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


def _default_study_name(settings: Mapping[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True).encode()
    digest = hashlib.sha256(blob).hexdigest()[:6]
    budgets = []
    if settings["max_flops"] is not None:
        budgets.append(_flops_tag(settings["max_flops"]) + "FLOPs")
    if settings["max_params"] is not None:
        budgets.append(_flops_tag(settings["max_params"]) + "params")
    if settings["max_latency_ms"] is not None:
        budgets.append(f"{settings['max_latency_ms']:g}ms")
    parts = [
        settings["backbone"],
        str(settings["resolution"]),
        settings["slots"],
        _slug(settings["dataset"].split(":")[0]),
        *(budgets or ["nobudget"]),
        digest,
    ]
    return "-".join(parts)


def _check_backend(c: SearchConfig) -> None:
    if c.backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}, got {c.backend!r}")
    if c.backend != "ray":
        if c.ray_address is not None:
            raise ValueError(f"ray_address {c.ray_address!r} needs the ray backend (--backend ray)")
        return
    _positive_int("workers", c.workers)
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


def _prepare(config: SearchConfig) -> _Plan:
    """Validate everything and build the space; raises ``ValueError`` with one sentence."""
    from evaluators.objectives import EvalConfig
    from nas.backends.optuna_backend import describe_storage, storage_file, study_settings

    c = config
    if c.slots not in SLOT_POLICY_NAMES:
        raise ValueError(f"slots must be one of {', '.join(SLOT_POLICY_NAMES)}, got {c.slots!r}")
    if c.sampler not in SAMPLER_NAMES:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLER_NAMES)}, got {c.sampler!r}")
    _positive_int("trials", c.trials)
    _positive_int("proxy_epochs", c.proxy_epochs)
    _positive_int("batch_size", c.batch_size)
    _positive_int("seed", c.seed, minimum=0)
    if c.proxy_subset is not None:
        _positive_int("proxy_subset", c.proxy_subset)
    if c.proxy_resolution is not None:
        _positive_int("proxy_resolution", c.proxy_resolution, minimum=8)
    if c.resolution is not None:
        _positive_int("resolution", c.resolution, minimum=8)
    if c.timeout_s is not None and not (c.timeout_s > 0 and math.isfinite(c.timeout_s)):
        raise ValueError(f"timeout must be a positive number of seconds, got {c.timeout_s!r}")
    objectives = _parse_objectives(c.objectives)
    rungs = _parse_fidelities(c.fidelities, c.proxy_epochs)
    _check_backend(c)
    describe_storage(c.storage)
    if c.study is not None and (not isinstance(c.study, str) or not c.study.strip()):
        raise ValueError(f"study must be a non-empty name, got {c.study!r}")
    evaluator_spec = c.evaluator or DEFAULT_EVALUATOR
    evaluate = _load_evaluator(evaluator_spec)

    from evaluators.data import num_classes as dataset_classes
    from evaluators.data import parse_dataset

    spec = parse_dataset(c.dataset)
    classes = dataset_classes(spec)
    device = _resolve_device(c.device)

    from search_spaces.backbones import backbone_names, default_resolution

    if c.backbone not in backbone_names():
        from search_spaces.backbones import get_backbone

        get_backbone(c.backbone, 10)  # raises the ValueError listing valid names
    resolution = c.resolution or default_resolution(c.backbone)

    from evaluators.cost import get_cost_model
    from search_spaces.space import SearchSpace

    space = SearchSpace(
        c.backbone, num_classes=classes, resolution=resolution, slots=c.slots, menu=c.ops
    )
    cost_model = get_cost_model(c.backbone, classes, resolution, c.slots)
    rng = cost_model.range(space.choices)
    where = f"{c.backbone} @{resolution}x{resolution}, slots={c.slots}, ops={c.ops}"
    if c.max_flops is not None and c.max_flops < rng.min_flops:
        raise ValueError(
            f"budget {format_flops(c.max_flops)} is below the cheapest architecture of this "
            f"space ({where}): achievable FLOPs are {format_flops(rng.min_flops)} to "
            f"{format_flops(rng.max_flops)}"
        )
    if c.max_params is not None and c.max_params < rng.min_params:
        raise ValueError(
            f"max-params {format_count(c.max_params)} is below the smallest architecture of this "
            f"space ({where}): achievable params are {format_count(rng.min_params)} to "
            f"{format_count(rng.max_params)}"
        )

    settings = _study_settings(
        _with(c, objectives=objectives),
        space,
        rungs,
        device,
        classes,
        resolution,
        evaluator_spec,
        rng,
    )
    study = c.study.strip() if c.study else _default_study_name(settings)
    out_dir = Path(c.out) if c.out else Path("runs") / _slug_study(study)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out {str(out_dir)!r} exists and is not a folder")
    sf = storage_file(c.storage)
    if sf is not None and sf.exists() and not sf.is_file():
        raise ValueError(f"storage {c.storage!r}: {str(sf)!r} is not a file")
    existing = study_settings(c.storage, study)
    if existing is not None and existing != settings:
        key = next(
            k for k in sorted(set(existing) | set(settings)) if existing.get(k) != settings.get(k)
        )
        raise ValueError(
            f"study {study!r} in {c.storage} was created with {key}={existing.get(key)!r}, this "
            f"command has {key}={settings.get(key)!r}; repeat its settings to resume it or "
            "pass another --study"
        )

    latency_mode = "measure" if ("latency" in objectives or c.max_latency_ms is not None) else "off"
    eval_config = EvalConfig(
        dataset=c.dataset,
        data_dir=c.data_dir,
        download=c.download,
        proxy_epochs=c.proxy_epochs,
        proxy_subset=c.proxy_subset,
        proxy_resolution=c.proxy_resolution,
        batch_size=c.batch_size,
        seed=c.seed,
        device=device,
        latency=latency_mode,
        max_flops=c.max_flops,
        max_params=c.max_params,
        max_latency_ms=c.max_latency_ms,
        fidelities=rungs,
        extra=dict(c.evaluator_options),
    )
    from evaluators.objectives import validate_config

    validate_config(eval_config)
    if c.evaluator is None:
        _check_dataset(eval_config)
    return _Plan(
        config=_with(c, objectives=objectives),
        resolved=settings,
        space=space,
        cost_model=cost_model,
        rungs=rungs,
        evaluate=evaluate,
        eval_config=eval_config,
        study=study,
        out_dir=out_dir,
        storage=c.storage,
        device=device,
        cost_range=rng,
    )


def _slug_study(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


def _check_dataset(eval_config: Any) -> None:
    """Make sure the proxy data can be had (download it now if allowed), before any output."""
    from evaluators.data import DatasetUnavailable, parse_dataset

    spec = parse_dataset(eval_config.dataset)
    if spec.kind not in ("cifar10", "cifar100"):
        return
    from evaluators.data import load_split

    try:
        load_split(spec, "train", data_dir=eval_config.data_dir, download=eval_config.download)
    except DatasetUnavailable as e:
        raise ValueError(str(e)) from None


# -- progress ------------------------------------------------------------------------------
class _Progress:
    """One updating status line on a terminal; plain lines otherwise."""

    def __init__(self, stream: TextIO, target: int, timeout_s: float | None) -> None:
        self.stream, self.target, self.timeout_s = stream, target, timeout_s
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.t0 = time.monotonic()
        self.done_this_run = 0
        self.best: float | None = None
        self.pareto = 0
        self._status_len = 0

    def line(self, text: str) -> None:
        if self.tty and self._status_len:
            self.stream.write("\r" + " " * self._status_len + "\r")
            self._status_len = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def status(self, text: str) -> None:
        if not self.tty:
            return
        pad = max(0, self._status_len - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._status_len = len(text)

    def finish(self) -> None:
        if self.tty and self._status_len:
            self.stream.write("\n")
            self._status_len = 0

    def update(self, outcome: Any, summary: Any, engine: Any) -> None:
        self.done_this_run += 1
        elapsed = time.monotonic() - self.t0
        remaining = max(0, self.target - summary.n_complete)
        eta = elapsed / self.done_this_run * remaining if remaining else 0.0
        if self.timeout_s is not None:
            eta = min(eta, max(0.0, self.timeout_s - elapsed))
        self.best = summary.best_accuracy
        self.pareto = summary.pareto_size
        best = f"{self.best:.4f}" if self.best is not None else "-"
        counts = (
            f"{summary.n_complete}/{self.target} done, {summary.n_feasible} feasible, "
            f"Pareto {self.pareto}, best acc under budget {best}, ETA {format_duration(eta)}"
        )
        o = outcome
        acc = f"acc {o.accuracy:.4f}" if o.accuracy is not None else "acc -"
        detail = (
            f"trial {o.number:>3} {o.status:<10} {acc}  {format_flops(o.flops)}  "
            f"{format_count(o.params)} params  {format_ms(o.latency_ms)}  "
            f"{o.fidelity} ep  {o.seconds:.1f}s  [{o.arch_id}] {o.message}"
        )
        if self.tty:
            self.line(detail)
            self.status(counts)
        else:
            self.line(f"{detail}\n    {counts}")


def _dashboard_command(storage: str) -> str:
    from nas.backends.optuna_backend import describe_storage, storage_file

    kind, url = describe_storage(storage)
    path = storage_file(storage)
    if path is not None:
        target = str(path.resolve())
        return f"optuna-dashboard {target if kind == 'journal' else 'sqlite:///' + target}"
    return f"optuna-dashboard {url}"


def _summary_table(pareto: Sequence[Mapping[str, Any]], objectives: Sequence[str]) -> list[str]:
    head = (
        f"{'trial':>5}  {'arch_id':<16}  {'accuracy':>8}  {'FLOPs':>12}  {'params':>8}  "
        f"{'latency':>9}  {'epochs':>6}  ops"
    )
    lines = [head]
    for m in pareto:
        acc = f"{m['accuracy']:.4f}" if m.get("accuracy") is not None else "-"
        lines.append(
            f"{m['trial']:>5}  {m['arch_id']:<16}  {acc:>8}  {format_flops(m['flops']):>12}  "
            f"{format_count(m['params']):>8}  {format_ms(m.get('latency_ms')):>9}  "
            f"{m.get('fidelity', 0):>6}  {m.get('ops', '')}"
        )
    return lines


# -- the API ---------------------------------------------------------------------------------
def _number(value: Any, parse: Callable[[str], Any], name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse(value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or (not math.isfinite(value))
    ):
        raise ValueError(
            f"{name} must be a positive number or a string like '2GFLOPs', got {value!r}"
        )
    return value


def run_search(
    *,
    budget: str | float | None = None,
    max_params: str | int | None = None,
    max_latency: str | float | None = None,
    backbone: str = "resnet50",
    slots: str = "all",
    ops: str = "conv,scconv,oct,linear",
    resolution: int | None = None,
    dataset: str = "cifar10",
    data_dir: str | os.PathLike = "data",
    download: bool = True,
    proxy_epochs: int = 2,
    proxy_subset: int | None = 2000,
    proxy_resolution: int | None = None,
    batch_size: int = 64,
    fidelities: str | Sequence[int] = "auto",
    objectives: str | Sequence[str] = OBJECTIVE_NAMES,
    sampler: str = "tpe",
    trials: int = 50,
    timeout: str | float | None = None,
    seed: int = 0,
    device: str = "auto",
    storage: str = DEFAULT_STORAGE,
    study: str | None = None,
    out: str | os.PathLike | None = None,
    evaluator: str | None = None,
    evaluator_options: Mapping[str, Any] | Sequence[str] | None = None,
    export: bool = True,
    stream: TextIO | None = None,
    backend: str = "optuna",
    ray_address: str | None = None,
    workers: int = 2,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float | None = None,
) -> SearchResult:
    """Run (or resume) a search and export its Pareto set; the CLI is a thin layer over this.

    Budgets accept numbers or the command line's strings: ``budget="2GFLOPs"`` or ``2e9``,
    ``max_params="10M"``, ``max_latency="15ms"`` (a number is milliseconds); ``timeout``
    ``"30m"`` or seconds. ``evaluator`` is ``"package.module:function"`` called as
    ``function(arch, eval_config, fidelity=epochs) -> Metrics`` (default: the real
    proxy-training evaluator); ``evaluator_options`` go to ``EvalConfig.extra``.
    Progress goes to ``stream`` (default: standard output; pass ``io.StringIO()`` to keep it).
    ``backend="ray"`` runs ``workers`` search workers as Ray Tune trials (``ray_address``
    ``None``: a local Ray instance), each with ``cpus_per_worker`` CPUs and
    ``gpus_per_worker`` GPUs (``None``: 1 when the cluster has GPUs and ``device`` is not
    ``cpu``, else 0); see :mod:`nas.backends.ray_backend`.

    Raises ``ValueError`` (one sentence naming the bad argument) before anything is written.
    """
    config = SearchConfig(
        max_flops=_number(budget, parse_flops, "budget"),
        max_params=_number(max_params, parse_count, "max_params"),
        max_latency_ms=_number(max_latency, parse_latency, "max_latency"),
        backbone=backbone,
        slots=slots,
        ops=ops,
        resolution=resolution,
        dataset=dataset,
        data_dir=str(data_dir),
        download=download,
        proxy_epochs=proxy_epochs,
        proxy_subset=proxy_subset,
        proxy_resolution=proxy_resolution,
        batch_size=batch_size,
        fidelities=fidelities if isinstance(fidelities, str) else tuple(fidelities),
        objectives=_parse_objectives(objectives),
        sampler=sampler,
        trials=trials,
        timeout_s=_number(timeout, parse_duration, "timeout"),
        seed=seed,
        device=device,
        storage=storage,
        study=study,
        out=None if out is None else str(out),
        evaluator=evaluator,
        evaluator_options=_parse_evaluator_options(evaluator_options),
        backend=backend,
        ray_address=ray_address,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
    )
    if config.max_flops is not None:
        config = _with(config, max_flops=int(round(config.max_flops)))
    if config.max_params is not None:
        config = _with(config, max_params=int(round(config.max_params)))
    plan = _prepare(config)
    return _execute(plan, stream=sys.stdout if stream is None else stream, export=export)


def _with(c: SearchConfig, **kw: Any) -> SearchConfig:
    from dataclasses import replace

    return replace(c, **kw)


def _execute(
    plan: _Plan,
    *,
    stream: TextIO,
    export: bool,
    command: str | None = None,
    worker: bool = False,
) -> SearchResult:
    from nas.backends.optuna_backend import Budgets, FidelityLadder, OptunaSearch

    c = plan.config
    ec = plan.eval_config

    def evaluate(arch: Any, epochs: int) -> Any:
        return plan.evaluate(arch, ec, fidelity=epochs)

    engine = OptunaSearch(
        choices=plan.space.choices,
        to_architecture=plan.space.to_architecture,
        cost_of_labels=plan.cost_model.cost_of_labels,
        evaluate=evaluate,
        objectives=c.objectives,
        budgets=Budgets(c.max_flops, c.max_params, c.max_latency_ms),
        ladder=FidelityLadder(plan.rungs, eta=2.0),
        sampler=c.sampler,
        seed=c.seed,
        storage=plan.storage,
        study_name=plan.study,
        settings=plan.resolved,
        proxy={
            "dataset": c.dataset,
            "epochs": c.proxy_epochs,
            "subset": c.proxy_subset,
            "resolution": c.proxy_resolution,
            "batch_size": c.batch_size,
            "rungs": list(plan.rungs),
            "device": plan.device,
        },
        # A quarter of a short search, at most 10: the samplers must get their turn.
        warm_start=min(10, max(1, c.trials // 4)),
    )
    owns_ray = False
    if c.backend == "ray":  # before the study exists: an unreachable cluster writes nothing
        from nas.backends.ray_backend import connect

        owns_ray = connect(c.ray_address)
    info = engine.open()
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    if not worker:  # a Ray worker leaves the driver's record alone
        _write_json(
            plan.out_dir / "search_config.json",
            {
                "format": "convnas.search-config/1",
                "command": command or "nas.run_search(...) (Python API)",
                "study": plan.study,
                "storage": plan.storage,
                "out": str(plan.out_dir),
                "settings": plan.resolved,
                "config": c.to_dict(),
                "eval_config": ec.to_dict(),
                "space": {
                    "slots": len(plan.space.slots),
                    "size": str(plan.space.size),
                    "min_flops": plan.cost_range.min_flops,
                    "max_flops": plan.cost_range.max_flops,
                    "min_params": plan.cost_range.min_params,
                    "max_params": plan.cost_range.max_params,
                },
            },
        )
    p = _Progress(stream, c.trials, c.timeout_s)
    rng = plan.cost_range
    p.line(
        f"Search space: {c.backbone} @{plan.space.resolution}x{plan.space.resolution}, "
        f"{len(plan.space.slots)} slots ({c.slots}), {len(plan.space.menu)} operators "
        f"[{', '.join(s.label for s in plan.space.menu)}]; FLOPs {format_flops(rng.min_flops)} "
        f"to {format_flops(rng.max_flops)}, params {format_count(rng.min_params)} to "
        f"{format_count(rng.max_params)}"
    )
    budgets = [
        f"FLOPs <= {format_flops(c.max_flops)}" if c.max_flops else None,
        f"params <= {format_count(c.max_params)}" if c.max_params else None,
        f"latency <= {format_ms(c.max_latency_ms)}" if c.max_latency_ms else None,
    ]
    p.line(
        f"Objectives: {', '.join(c.objectives)}; budgets: "
        f"{', '.join(b for b in budgets if b) or 'none'}; sampler {c.sampler} (seed {c.seed}); "
        f"proxy {c.dataset}, {'/'.join(map(str, plan.rungs))} "
        f"epoch{'' if plan.rungs == (1,) else 's'}, device {plan.device}"
    )
    if info.resumed:
        extra = (
            f"; {info.n_interrupted_now} interrupted trial(s) marked failed"
            if info.n_interrupted_now
            else ""
        )
        p.line(
            f"Resuming study '{plan.study}' in {plan.storage}: {info.n_complete} trials already "
            f"complete ({info.n_feasible} feasible, {info.n_failed} failed){extra}; "
            f"running until {c.trials} are complete."
        )
    else:
        p.line(f"New study '{plan.study}' in {plan.storage}; running {c.trials} trials.")
    try:
        if c.backend == "ray":
            summary = _run_on_ray(plan, engine, p, owns_ray)
        else:
            summary = engine.run(
                c.trials,
                timeout_s=c.timeout_s,
                callback=lambda o, s: p.update(o, s, engine),
            )
    except KeyboardInterrupt:
        p.finish()
        raise
    p.finish()
    from nas.export import export_study, pareto_members

    members, hv = pareto_members(engine.rows(), _info_of(engine, plan))
    export_dir = None
    if export:
        export_dir = export_study(plan.storage, plan.study, plan.out_dir).parent
    p.line("")
    p.line(
        f"Search stopped: {summary.stop_reason} in {format_duration(summary.seconds)} "
        f"({summary.n_complete} complete, {summary.n_feasible} feasible, {summary.n_failed} "
        f"failed in the study)."
    )
    if members:
        hv_text = f"; hypervolume {hv:.4g}" if hv is not None else ""
        noun = "architecture" if len(members) == 1 else "architectures"
        p.line(f"Pareto set: {len(members)} feasible non-dominated {noun}{hv_text}")
        for row in _summary_table(members, c.objectives):
            p.line("  " + row)
    else:
        p.line("Pareto set: empty (no feasible trial completed yet).")
    if export_dir is not None:
        p.line(
            f"Exported to {export_dir}/ (pareto.json, pareto.csv, pareto.png and one "
            f"<arch_id>.json per member)"
        )
    dash = _dashboard_command(plan.storage)
    p.line(f"Dashboard: {dash}")
    return SearchResult(
        study=plan.study,
        storage=plan.storage,
        out_dir=plan.out_dir,
        resumed=info.resumed,
        n_complete=summary.n_complete,
        n_feasible=summary.n_feasible,
        n_failed=summary.n_failed,
        stop_reason=summary.stop_reason,
        pareto=members,
        export_dir=export_dir,
        hypervolume=hv,
        dashboard_command=dash,
        config=c.to_dict(),
    )


def _absolute_paths(c: SearchConfig) -> SearchConfig:
    """The config with local paths made absolute (Ray runs workers in other directories)."""
    from nas.backends.optuna_backend import describe_storage, storage_file

    storage = c.storage
    path = storage_file(storage)
    if path is not None and not path.is_absolute():
        kind, _ = describe_storage(storage)
        storage = str(path.resolve()) if kind == "journal" else f"sqlite:///{path.resolve()}"
    return _with(
        c,
        storage=storage,
        data_dir=str(Path(c.data_dir).resolve()),
        out=None if c.out is None else str(Path(c.out).resolve()),
    )


def _run_on_ray(plan: _Plan, engine: Any, p: _Progress, owns_ray: bool) -> Any:
    """Run the study's trials as Ray Tune workers (see :mod:`nas.backends.ray_backend`)."""
    from nas.backends.optuna_backend import RunSummary
    from nas.backends.ray_backend import run_workers

    c = plan.config
    worker = _absolute_paths(_with(c, study=plan.study, out=str(plan.out_dir)))
    worker = _with(worker, backend="optuna", ray_address=None)
    where = c.ray_address or "a local Ray instance"
    gpus = "auto" if c.gpus_per_worker is None else f"{c.gpus_per_worker:g}"
    p.line(
        f"Ray Tune: {c.workers} workers on {where} ({c.cpus_per_worker:g} CPU, {gpus} GPU "
        f"each); Tune's files in {plan.out_dir / 'ray'}"
    )
    summary = RunSummary(0, 0, 0, 0, "", 0.0)
    t0 = time.monotonic()
    last = [-1]

    def poll() -> None:
        engine.refresh_counts(summary)
        if summary.n_complete != last[0]:
            last[0] = summary.n_complete
            best = "-" if summary.best_accuracy is None else f"{summary.best_accuracy:.4f}"
            p.line(
                f"    {summary.n_complete}/{c.trials} done, {summary.n_feasible} feasible, "
                f"Pareto {summary.pareto_size}, best acc under budget {best}, "
                f"{summary.n_failed} failed ({format_duration(time.monotonic() - t0)})"
            )

    errors = run_workers(
        worker.to_dict(),
        n_workers=c.workers,
        address=c.ray_address,
        cpus_per_worker=c.cpus_per_worker,
        gpus_per_worker=c.gpus_per_worker,
        results_dir=plan.out_dir / "ray",
        name=plan.study,
        poll=poll,
        owns_ray=owns_ray,
    )
    poll()
    engine.refresh_counts(summary)
    summary.seconds = time.monotonic() - t0
    for line in errors:
        p.line(f"Ray worker failed: {line}")
    if summary.n_complete >= c.trials:
        summary.stop_reason = f"reached {c.trials} complete trials"
    elif errors:
        summary.stop_reason = f"{len(errors)} of {c.workers} Ray workers failed"
    else:
        summary.stop_reason = "the Ray workers stopped (timeout or repeated failures)"
    return summary


def run_worker(config: Mapping[str, Any]) -> dict[str, Any]:
    """Run one search worker from a :meth:`SearchConfig.to_dict` dict (what a Ray worker does).

    The worker joins the study named in the config and runs trials until it holds the
    requested count; nothing is exported and progress is not printed. Returns its counts.
    """
    import io

    d = dict(config)
    d["objectives"] = tuple(d["objectives"])
    if not isinstance(d["fidelities"], str):
        d["fidelities"] = tuple(d["fidelities"])
    c = _with(SearchConfig(**d), backend="optuna", ray_address=None)
    res = _execute(_prepare(c), stream=io.StringIO(), export=False, worker=True)
    return {
        "n_complete": res.n_complete,
        "n_feasible": res.n_feasible,
        "n_failed": res.n_failed,
        "stop_reason": res.stop_reason,
        "pid": os.getpid(),
    }


def _info_of(engine: Any, plan: _Plan) -> dict[str, Any]:
    return {
        "study": plan.study,
        "storage": plan.storage,
        "objectives": list(engine.objectives),
        "directions": list(engine.directions),
        "budgets": {n: engine.budgets.limit(n) for n in engine.budgets.names},
        "convnas": plan.resolved,
    }


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


# -- command line ------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _int_arg(name: str, minimum: int = 1) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {text!r} is not an integer") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{name} {text!r} must be >= {minimum}")
        return v

    parse.__name__ = name
    return parse


def _subset_arg(text: str) -> int | None:
    if text.strip().lower() in ("all", "none", "full"):
        return None
    return _int_arg("proxy subset")(text)


def _choice_list(text: str) -> tuple[str, ...]:
    try:
        return _parse_objectives(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _DefaultsFormatter(argparse.HelpFormatter):
    """Append ``(default: X)`` when there is a default worth showing and the help lacks one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or default == []
        ):
            return text
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        return f"{text} (default: {default})".strip()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m nas.search",
        description="Multi-objective architecture search over conv operators (Optuna). "
        "Running the same command again resumes the study.",
        formatter_class=_DefaultsFormatter,
    )
    g = p.add_argument_group("budgets (a broken budget makes a trial infeasible)")
    g.add_argument(
        "--budget",
        type=arg_flops,
        metavar="FLOPS",
        help="max FLOPs (multiply-adds at --resolution): 2GFLOPs, 500MFLOPs, 2e9, 2G",
    )
    g.add_argument("--max-params", type=arg_count, metavar="N", help="max parameters: 10M, 2.5M")
    g.add_argument(
        "--max-latency",
        type=arg_latency,
        metavar="TIME",
        help="max measured latency on --device: 15ms, 0.5s",
    )
    g = p.add_argument_group("search space")
    g.add_argument(
        "--backbone",
        default="resnet50",
        help="cifar_resnet20/32/44/56/110, resnet50_cifar or any torchvision model",
    )
    g.add_argument(
        "--slots",
        default="all",
        choices=SLOT_POLICY_NAMES,
        help="which convolutions are searchable: all, or spatial (k>1) only",
    )
    g.add_argument(
        "--ops",
        default="conv,scconv,oct,linear",
        help="operator menu, e.g. 'conv,scconv(a=0.5,r=2,g=2),oct(a=0.25|0.5)'",
    )
    g.add_argument(
        "--resolution",
        type=_int_arg("resolution", 8),
        default=None,
        help="target input size for costs (default: the backbone's, 224 or 32)",
    )
    g = p.add_argument_group("proxy evaluation")
    g.add_argument(
        "--dataset",
        default="cifar10",
        help="cifar10, cifar100, imagefolder:<path>, synthetic[:<classes>]",
    )
    g.add_argument("--data-dir", default="data", help="where datasets are found/downloaded")
    g.add_argument("--no-download", action="store_true", help="never download a dataset")
    g.add_argument(
        "--proxy-epochs",
        type=_int_arg("proxy epochs"),
        default=2,
        help="training epochs of a fully evaluated candidate",
    )
    g.add_argument(
        "--proxy-subset",
        type=_subset_arg,
        default=2000,
        metavar="N|all",
        help="training images used by the proxy",
    )
    g.add_argument(
        "--proxy-resolution",
        type=_int_arg("proxy resolution", 8),
        default=None,
        help="input size during proxy training (default: the dataset's)",
    )
    g.add_argument(
        "--batch-size", type=_int_arg("batch size"), default=64, help="proxy training batch"
    )
    g.add_argument(
        "--fidelities",
        default="auto",
        metavar="auto|off|E1,E2,...",
        help="epoch rungs for early stopping (auto: halving down from proxy epochs)",
    )
    g.add_argument(
        "--evaluator",
        default=None,
        metavar="PKG.MODULE:FUNCTION",
        help="custom evaluator called as f(arch, eval_config, fidelity=epochs) "
        "-> Metrics (default: proxy training)",
    )
    g.add_argument(
        "--evaluator-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to the evaluator in EvalConfig.extra (repeatable)",
    )
    g = p.add_argument_group("search")
    g.add_argument(
        "--objectives",
        type=_choice_list,
        default=OBJECTIVE_NAMES,
        metavar="LIST",
        help="comma-separated: accuracy,flops,params,latency",
    )
    g.add_argument(
        "--sampler", default="tpe", choices=SAMPLER_NAMES, help="Optuna sampler, seeded by --seed"
    )
    g.add_argument(
        "--trials",
        type=_int_arg("trials"),
        default=50,
        help="complete trials the study should have (resuming counts earlier ones)",
    )
    g.add_argument(
        "--timeout",
        type=arg_duration,
        default=None,
        metavar="TIME",
        help="stop starting new trials after this long: 3600, 30m, 2h",
    )
    g.add_argument(
        "--seed",
        type=_int_arg("seed", 0),
        default=0,
        help="seeds the sampler, the proxy split, weights and data order",
    )
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g = p.add_argument_group("storage and output")
    g.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help="database URL, SQLite file (*.db) or journal file (*.log)",
    )
    g.add_argument(
        "--study",
        default=None,
        help="study name (default: derived from the settings, so reruns resume)",
    )
    g.add_argument("--out", default=None, help="output folder (default: runs/<study>/)")
    g = p.add_argument_group("backend (how trials run; either backend resumes the same study)")
    g.add_argument(
        "--backend",
        default="optuna",
        choices=BACKEND_NAMES,
        help="optuna: trials in this process; ray: --workers search workers placed by Ray Tune",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to join: auto, ray://host:10001 (default: start a local Ray)",
    )
    g.add_argument("--workers", type=_int_arg("workers"), default=2, help="concurrent Ray workers")
    g.add_argument(
        "--cpus-per-worker",
        type=_float_arg("cpus per worker", positive=True),
        default=1.0,
        help="CPUs Ray reserves for each worker",
    )
    g.add_argument(
        "--gpus-per-worker",
        type=_float_arg("gpus per worker", positive=False),
        default=None,
        help="GPUs per worker, fractions allowed (default: 1 if the cluster has GPUs, else 0)",
    )
    return p


def _float_arg(name: str, *, positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            bound = "> 0" if positive else ">= 0"
            raise argparse.ArgumentTypeError(f"{name} must be a number {bound}, got {text!r}")
        return value

    parse.__name__ = name
    return parse


def _config_from_args(args: argparse.Namespace) -> SearchConfig:
    return SearchConfig(
        max_flops=args.budget,
        max_params=args.max_params,
        max_latency_ms=args.max_latency,
        backbone=args.backbone,
        slots=args.slots,
        ops=args.ops,
        resolution=args.resolution,
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=not args.no_download,
        proxy_epochs=args.proxy_epochs,
        proxy_subset=args.proxy_subset,
        proxy_resolution=args.proxy_resolution,
        batch_size=args.batch_size,
        fidelities=args.fidelities,
        objectives=tuple(args.objectives),
        sampler=args.sampler,
        trials=args.trials,
        timeout_s=args.timeout,
        seed=args.seed,
        device=args.device,
        storage=args.storage,
        study=args.study,
        out=args.out,
        evaluator=args.evaluator,
        evaluator_options=_parse_evaluator_options(args.evaluator_option),
        backend=args.backend,
        ray_address=args.ray_address,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
    )


def _join_negative_values(words: Sequence[str]) -> list[str]:
    """``--budget -1G`` -> ``--budget=-1G`` so argparse reports the value, not a missing one."""
    out: list[str] = []
    for w in words:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"-\.?\d", w):
            out[-1] = f"{out[-1]}={w}"
        else:
            out.append(w)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv))
    try:
        config = _config_from_args(args)
        plan = _prepare(config)
    except ValueError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    from nas.backends.ray_backend import RayUnavailable

    try:
        import shlex

        words = sys.argv[1:] if argv is None else list(argv)
        command = "python -m nas.search " + " ".join(shlex.quote(w) for w in words)
        result = _execute(plan, stream=sys.stdout, export=True, command=command)
    except RayUnavailable as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; run the same command again to resume study '{plan.study}'",
            file=sys.stderr,
        )
        return 130
    return 0 if result.n_complete > 0 else 1


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
