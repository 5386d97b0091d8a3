"""Scoring a candidate on the trained supernet: set its path, recalibrate BatchNorm, validate.

``evaluate(arch, config, fidelity=None) -> Metrics`` is the search's entry point
(``--evaluator supernet``). It returns the record the proxy evaluator returns, so budgets,
storages, export and the dashboard work unchanged:

1. cost, latency and the zero-cost score come from the proxy evaluator at fidelity 0
   (:meth:`evaluators.objectives.Evaluator.evaluate`): over a budget, nothing else runs;
2. the supernet of this (backbone, resolution, slots, menu, dataset, training settings) is
   loaded from ``<supernet_dir>/<key>.pt`` or trained there first (:mod:`.train`, under a
   file lock: one worker trains, the others wait), once per process;
3. the candidate's path is set, BatchNorm statistics are recalibrated on ``bn_batches``
   training batches (:func:`recalibrate_bn`: shared BatchNorms hold the statistics of the
   mixture of paths, not of this one), and top-1 is measured on the validation split.

``Metrics.fidelity`` is the requested fidelity (the search runs one rung with this
evaluator); ``train_time_s`` is the time this score took; ``extra["supernet"]`` says which
file, how long its training took, and the supernet's size. Imports :mod:`evaluators.objectives`
(cost, latency, data loaders), :mod:`evaluators.supernet.model`, :mod:`.options` and
:mod:`.train`; must not import ``nas``.
"""

from __future__ import annotations

import collections
import hashlib
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from evaluators.config import EvalConfig, proxy_score
from evaluators.cost import get_cost_model
from evaluators.metrics import Metrics
from evaluators.objectives import Evaluator
from evaluators.runtime import resolve_amp_dtype
from evaluators.supernet.model import Supernet
from evaluators.supernet.options import SupernetOptions, parse_options
from evaluators.supernet.train import PathSampler, load_or_train, train_supernet
from search_spaces.space import DEFAULT_MENU_TEXT, SearchSpace

__all__ = [
    "SupernetEvaluator",
    "evaluate",
    "get_supernet_evaluator",
    "recalibrate_bn",
    "validate_top1",
]


def recalibrate_bn(model: nn.Module, batches: Iterable, n: int, device: torch.device) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them on ``n`` batches.

    Running mean and variance become the plain average over the batches of each batch's
    statistics (``momentum=None``), from train-mode forward passes without gradients; the
    momenta are restored afterwards and the model is left in eval mode. Returns the batches
    used.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    used = 0
    model.train()
    try:
        with torch.no_grad():
            for x, _ in batches:
                if used >= n:
                    break
                model(x.to(device, non_blocking=True))
                used += 1
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.eval()
    return used


def validate_top1(
    model: nn.Module, loader: Iterable, device: torch.device, max_batches: int | None
) -> tuple[float, float]:
    """``(top-1, mean cross-entropy)`` of ``model`` in eval mode over ``loader``."""
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    with torch.no_grad():
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x).float()
            loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(dim=1) == y).sum())
            total += int(y.shape[0])
    if total == 0:
        raise ValueError("the validation loader yielded no batches")
    return correct / total, loss_sum / total


class SupernetEvaluator:
    """Scores architectures on one trained supernet per space; one per worker process.

    Args:
        config: the evaluation settings; ``config.extra`` holds the supernet options
            (:mod:`evaluators.supernet.options`).
        log: where progress lines go (default: standard error).
    """

    def __init__(self, config: EvalConfig, *, log: Any = None) -> None:
        self.options: SupernetOptions = parse_options(config.extra)
        self.base = Evaluator(config)
        self.config = config
        self.device = self.base.device
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._nets: dict[str, tuple[Supernet, dict[str, Any], str, Path]] = {}

    # -- the supernet of an architecture's space ---------------------------------------
    def space_of(self, arch: Any) -> SearchSpace:
        return SearchSpace(
            arch.backbone,
            num_classes=arch.num_classes,
            resolution=arch.resolution,
            slots=arch.slots,
            menu=self.options.menu or DEFAULT_MENU_TEXT,
        )

    def settings(self, space: SearchSpace) -> dict[str, Any]:
        """What defines one supernet file (hashed into its name)."""
        c, o = self.config, self.options
        budget = o.sampling == "budget"
        return {
            "backbone": space.backbone,
            "num_classes": space.num_classes,
            "resolution": space.resolution,
            "slots": space.policy,
            "menu": [s.label for s in space.menu],
            "dataset": c.dataset,
            "proxy_subset": c.proxy_subset,
            "proxy_resolution": c.proxy_resolution,
            "val_fraction": c.val_fraction,
            "val_size": c.val_size,
            "batch_size": c.batch_size,
            "seed": c.seed,
            "epochs": o.epochs,
            "optimizer": c.optimizer,
            "lr": o.lr if o.lr is not None else c.lr,
            "momentum": c.momentum,
            "weight_decay": c.weight_decay,
            "schedule": c.schedule,
            "max_steps_per_epoch": c.extra.get("max_steps_per_epoch"),
            "sampling": o.sampling,
            "max_flops": c.max_flops if budget else None,
            "max_params": c.max_params if budget else None,
        }

    def file_for(self, space: SearchSpace) -> Path:
        s = self.settings(space)
        digest = hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:10]
        dataset = "".join(ch if ch.isalnum() else "-" for ch in self.config.dataset)[:24]
        name = f"{s['backbone']}-{s['resolution']}-{s['slots']}-{dataset}-e{s['epochs']}-{digest}"
        return Path(self.options.directory).expanduser() / f"{name}.pt"

    def supernet(self, arch: Any) -> tuple[Supernet, dict[str, Any], str, Path]:
        """``(net, training record, status, file)`` for ``arch``'s space (built once)."""
        space = self.space_of(arch)
        file = self.file_for(space)
        key = str(file)
        if key not in self._nets:
            c, o = self.config, self.options
            settings = self.settings(space)
            train_loader, _ = self.base.loaders(self.base.proxy_resolution(arch), arch.num_classes)
            cost_model = get_cost_model(
                arch.backbone, arch.num_classes, arch.resolution, arch.slots
            )
            budget = o.sampling == "budget"
            sampler = PathSampler(
                space.choices,
                cost_of_labels=cost_model.cost_of_labels,
                max_flops=c.max_flops if budget else None,
                max_params=c.max_params if budget else None,
            )

            def build() -> Supernet:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(c.seed)
                    return Supernet(space)

            def train(net: Supernet, ckpt: Any) -> dict[str, Any]:
                self._log(
                    f"supernet: training {o.epochs} epoch(s) of {file.name}: "
                    f"{net.parameter_count():,} parameters ({net.unshared_parameter_count():,} "
                    f"without sharing), {net.memory_bytes() / 2**20:.1f} MiB of weights, "
                    f"{o.sampling} sampling"
                    + (f", resuming after epoch {ckpt['record']['epochs_done']}" if ckpt else "")
                )
                return train_supernet(
                    net,
                    train_loader,
                    sampler,
                    epochs=o.epochs,
                    settings=settings,
                    lr=settings["lr"],
                    momentum=c.momentum,
                    weight_decay=c.weight_decay,
                    optimizer=c.optimizer,
                    schedule=c.schedule,
                    seed=c.seed,
                    device=self.device,
                    amp_dtype=resolve_amp_dtype(c.amp, self.device),
                    max_steps_per_epoch=c.extra.get("max_steps_per_epoch"),
                    checkpoint=file,
                    resume=ckpt,
                    log=self._log,
                )

            net, record, status = load_or_train(file, build, train, settings)
            net.to(self.device)
            self._nets[key] = (net, record, status, file)
        return self._nets[key]

    # -- scoring ----------------------------------------------------------------------
    def evaluate(self, arch: Any, fidelity: int | None = None) -> Metrics:
        """Score ``arch``; see the module docstring."""
        t0 = time.perf_counter()
        c = self.config
        target = c.proxy_epochs if fidelity is None else fidelity
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise ValueError(f"fidelity must be a non-negative integer or None, got {fidelity!r}")
        m = self.base.evaluate(arch, 0)
        m.extra.pop("cached", None)
        if not m.feasible or m.failure is not None or target == 0:
            return m
        net, record, status, file = self.supernet(arch)
        net.set_path(arch)
        train_loader, val_loader = self.base.loaders(
            self.base.proxy_resolution(arch), arch.num_classes
        )
        t1 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)  # the same BN batches for every candidate
            used = recalibrate_bn(net, train_loader, self.options.bn_batches, self.device)
        acc, val_loss = validate_top1(net, val_loader, self.device, c.extra.get("max_val_batches"))
        m.accuracy, m.fidelity = acc, target
        m.score = proxy_score(c.proxy_score, acc, val_loss)
        m.train_time_s = time.perf_counter() - t1
        m.extra["supernet"] = {
            "file": str(file),
            "status": status,
            "parameters": net.parameter_count(),
            "parameters_unshared": net.unshared_parameter_count(),
            "weights_mib": round(net.memory_bytes() / 2**20, 2),
            "train_epochs": record["epochs_done"],
            "train_time_s": round(float(record["train_time_s"]), 3),
            "bn_batches": used,
            "val_loss": val_loss,
            "score_time_s": round(m.train_time_s, 4),
            "device": str(self.device),
        }
        m.extra["eval_time_s"] = time.perf_counter() - t0
        return m


_EVALUATORS: collections.OrderedDict[str, SupernetEvaluator] = collections.OrderedDict()


def get_supernet_evaluator(config: EvalConfig) -> SupernetEvaluator:
    """The process-wide :class:`SupernetEvaluator` for ``config`` (equal configs share one)."""
    key = json.dumps(config.to_dict(), sort_keys=True, default=str)
    ev = _EVALUATORS.get(key)
    if ev is None:
        ev = _EVALUATORS[key] = SupernetEvaluator(config)
        while len(_EVALUATORS) > 4:
            _EVALUATORS.popitem(last=False)
    _EVALUATORS.move_to_end(key)
    return ev


def evaluate(arch: Any, config: EvalConfig, fidelity: int | None = None) -> Metrics:
    """Score one architecture on the supernet: the ``--evaluator supernet`` entry point."""
    return get_supernet_evaluator(config).evaluate(arch, fidelity)
