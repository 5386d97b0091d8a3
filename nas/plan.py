"""The prepared search: everything validated and built, nothing written yet.

:func:`prepare` turns a :class:`~nas.config.SearchConfig` into a :class:`Plan`: it checks the
config (:func:`nas.config.check_config`), loads the evaluator, reads the dataset's class count,
resolves the device, builds the search space and its cost model, refuses budgets below the
cheapest architecture, picks the bundled CIFAR-10 sample when the default CIFAR-10 cannot be
had (:func:`offline_dataset`), names the study (:mod:`nas.naming`), refuses to resume a study
created with other settings, and makes sure the proxy data can be had. Every problem is a
``ValueError`` of one sentence, raised before a study, a folder or a file is created.

Imports :mod:`nas.config`, :mod:`nas.naming`, :mod:`nas.paths`, :mod:`nas.storage`,
:mod:`nas.units`, and, when called, ``evaluators``, ``search_spaces`` and
:mod:`nas.backends.optuna_storage` (to read a stored study's settings); must not import
:mod:`nas.runner` or :mod:`nas.search` (which use it).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nas.config import (
    BUILTIN_EVALUATORS,
    DEFAULT_EVALUATOR,
    SUPERNET_EVALUATOR,
    SearchConfig,
    check_config,
)
from nas.naming import default_study_name, defining_settings, study_folder
from nas.paths import check_writable_file, check_writable_folder
from nas.storage import storage_file
from nas.units import format_count, format_flops

__all__ = [
    "OFFLINE_SAMPLE",
    "Plan",
    "check_dataset",
    "load_evaluator",
    "offline_dataset",
    "prepare",
    "resolve_device",
]

#: The dataset a search falls back to when the default CIFAR-10 cannot be had.
OFFLINE_SAMPLE = "cifar10-sample"


@dataclass
class Plan:
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
    #: Why the default CIFAR-10 was replaced by the bundled sample (``None``: it was not);
    #: printed as one line before the first trial and kept in ``search_config.json``.
    offline: str | None = None


def load_evaluator(spec: str) -> Callable[..., Any]:
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


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; other names checked (``ValueError``)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    from evaluators.runtime import resolve_device as torch_device

    torch_device(device)  # raises ValueError naming the device
    return device


def prepare(config: SearchConfig, *, sample_fallback: bool = False) -> Plan:
    """Validate everything and build the space; raises ``ValueError`` with one sentence.

    ``sample_fallback``: the dataset is CIFAR-10 by default, not by the user's choice; when it
    can be neither read from ``data_dir`` nor downloaded, the search uses the bundled sample
    (:func:`offline_dataset`) instead of failing. It never applies with ``download=False``, a
    custom evaluator or another dataset.
    """
    c = config
    objectives, rungs = check_config(c)  # before torch is imported: quick errors stay quick
    evaluator_spec = BUILTIN_EVALUATORS.get(c.evaluator or "", c.evaluator) or DEFAULT_EVALUATOR
    builtin = evaluator_spec in (DEFAULT_EVALUATOR, SUPERNET_EVALUATOR)
    supernet = evaluator_spec == SUPERNET_EVALUATOR
    if builtin:
        from evaluators.config import EXTRA_KEYS  # no torch

        keys = set(EXTRA_KEYS)
        if supernet:
            from evaluators.supernet.options import OPTION_KEYS, parse_options  # no torch

            keys |= set(OPTION_KEYS) - {"supernet_menu"}  # the menu is --ops
        unknown = sorted(set(c.evaluator_options) - keys)
        if unknown:
            which = "supernet" if supernet else "built-in"
            raise ValueError(
                f"evaluator option {unknown[0]!r} is not read by the {which} evaluator; its "
                f"options are {', '.join(sorted(keys))} (a custom --evaluator gets any)"
            )
        if supernet:
            parse_options(c.evaluator_options)
            # One score per candidate: a supernet has no epochs to stop early at.
            rungs = (c.proxy_epochs,)
    from evaluators.objectives import EvalConfig
    from nas.backends.optuna_storage import study_settings

    evaluate = load_evaluator(evaluator_spec)

    from evaluators.data import num_classes as dataset_classes
    from evaluators.data import parse_dataset

    spec = parse_dataset(c.dataset)
    classes = dataset_classes(spec)
    device = resolve_device(c.device)

    from search_spaces.backbones import backbone_names, default_resolution

    if c.backbone not in backbone_names():
        from search_spaces.backbones import get_backbone

        get_backbone(c.backbone, 10)  # raises the ValueError listing valid names
    resolution = c.resolution or default_resolution(c.backbone)
    if c.proxy_resolution is None and evaluator_spec == DEFAULT_EVALUATOR:
        from evaluators.config import default_proxy_resolution

        # Resolved here, so the study's settings (and its default name) say which was used.
        c = replace(
            c,
            proxy_resolution=default_proxy_resolution(
                c.backbone, resolution, dataset_kind=spec.kind, device=device
            ),
        )

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

    offline = None
    if sample_fallback and builtin and c.download and spec.kind == "cifar10":
        offline = offline_dataset(c.data_dir)
        if offline is not None:
            c = replace(c, dataset=OFFLINE_SAMPLE)
    settings = defining_settings(
        replace(c, objectives=objectives),
        space,
        rungs,
        device,
        classes,
        resolution,
        evaluator_spec,
        rng,
        builtin=builtin,
    )
    study = c.study.strip() if c.study else default_study_name(settings)
    out_dir = Path(c.out) if c.out else Path("runs") / study_folder(study)
    check_writable_folder(out_dir, f"out {str(out_dir)!r}")
    sf = storage_file(c.storage)
    if sf is not None:
        check_writable_file(sf, f"storage {c.storage!r}")
    existing = study_settings(c.storage, study)
    if existing is not None and "proxy_score" not in existing:
        # made before --proxy-score: the built-in evaluators scored top-1
        existing = {**existing, "proxy_score": "accuracy" if builtin else None}
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
        proxy_score=c.proxy_score,
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
    if supernet:  # where its file lives, and which menu it holds
        extra = dict(c.evaluator_options)
        extra.setdefault("supernet_dir", os.path.abspath(out_dir / "supernet"))
        extra["supernet_menu"] = c.ops
        eval_config = replace(eval_config, extra=extra)
    from evaluators.objectives import validate_config

    validate_config(eval_config)
    if builtin:
        check_dataset(eval_config)
    return Plan(
        config=replace(c, objectives=objectives),
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
        offline=offline,
    )


def offline_dataset(data_dir: str) -> str | None:
    """Why CIFAR-10 can be neither read from ``data_dir`` nor downloaded; ``None`` when it can.

    A download, when the server answers a quick probe, happens here (see
    :func:`evaluators.data.cifar_unavailable`), before any study exists.
    """
    from evaluators.data import cifar_unavailable

    return cifar_unavailable("cifar10", Path(data_dir).expanduser())


def check_dataset(eval_config: Any) -> None:
    """Make sure the proxy data can be had (download it now if allowed), before any output."""
    from evaluators.data import DatasetUnavailable, parse_dataset

    spec = parse_dataset(eval_config.dataset)
    if spec.kind == "imagefolder":
        from evaluators.data import check_folder

        try:  # the proxy carves a validation split out of the training images
            check_folder(Path(spec.path or ""), min_per_class=2)
        except DatasetUnavailable as e:
            raise ValueError(str(e)) from None
        return
    if spec.kind not in ("cifar10", "cifar100", OFFLINE_SAMPLE):
        return
    from evaluators.data import load_split

    try:
        load_split(spec, "train", data_dir=eval_config.data_dir, download=eval_config.download)
    except DatasetUnavailable as e:
        raise ValueError(str(e)) from None
