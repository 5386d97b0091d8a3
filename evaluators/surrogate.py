"""A cheap, deterministic surrogate evaluator for testing and benchmarking the search engine.

Plug it into a search with ``--evaluator evaluators.surrogate:evaluate``: it is installed with
the package, so the command works from any folder and on every Ray worker
(``experiments.surrogate`` is its old name, still importable in a checkout). It returns the same
:class:`~evaluators.objectives.Metrics` record as the real evaluator, with the *real* FLOPs and
parameter counts of the architecture (from the analytic cost model), but instead of training it
computes an accuracy from the operator mix:

* every (slot, choice) pair has a fixed effect on the final accuracy: saving FLOPs or
  parameters costs accuracy in proportion to the saving and the slot's share of the model,
  scaled by a per-slot sensitivity drawn from a hash of the slot path (so where to save
  matters and a sampler has something to learn); SCConv earns a small bonus;
* proxy training is a saturating learning curve: ``acc(e) = chance + (final - chance) *
  (1 - exp(-k e))`` plus hash-seeded noise that shrinks with ``e``; ``k`` differs per
  architecture, so rankings after one epoch agree with the final ranking only roughly — as
  with real proxy training;
* latency is 5 ms per GFLOP plus a per-operator overhead, with a 2 % spread.

Everything is a pure function of the architecture and the config (no global RNG), so the
same candidate always scores the same. ``EvalConfig.extra`` (``--evaluator-option KEY=VALUE``)
tunes it:

``seconds_per_epoch`` / ``seconds_per_gflop_epoch``
    really sleep this long per simulated epoch (wall time that grows with the candidate's
    cost), to benchmark time budgets and to test interrupting a search. Training resumes:
    going from 1 to 2 epochs for the same architecture in one process sleeps for 1 epoch.
``fail_label`` / ``fail_fraction``
    an architecture using this choice label in any slot (or a share ``fail_fraction`` of all
    architectures, picked by a hash of the id) fails the way a diverging training run does
    (``Metrics.failure`` set, no accuracy).
``raise_label`` / ``raise_fraction``
    likewise, but the evaluator raises ``RuntimeError`` (an evaluator crash).

Imports :mod:`evaluators.cost`, :mod:`evaluators.objectives` and :mod:`search_spaces.arch`;
must not import ``nas`` (nothing in ``evaluators`` does) or ``experiments``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from typing import Any

from evaluators.cost import get_cost_model
from evaluators.objectives import EvalConfig, Metrics
from search_spaces.arch import Architecture, OpSpec

__all__ = ["CALLS", "evaluate", "final_accuracy", "latency_ms"]

#: Every call of :func:`evaluate` in this process, as ``(arch_id, fidelity)`` (for tests).
CALLS: list[tuple[str, int]] = []
_trained_epochs: dict[tuple[str, str], int] = {}  # (config key, arch id) -> epochs "trained"


def _unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from the parts' text."""
    h = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


@functools.lru_cache(maxsize=64)
def _slot_table(backbone: str, num_classes: int, resolution: int, policy: str) -> Any:
    """Per slot: (path, FLOPs share, params share, sensitivity) of the all-``conv`` model."""
    cm = get_cost_model(backbone, num_classes, resolution, policy)
    conv = OpSpec.make("conv")
    costs = [cm.slot_cost(s, conv) for s in cm.slots]
    tf, tp = sum(c.flops for c in costs), sum(c.params for c in costs)
    return cm, [
        (s.path, c.flops / tf, c.params / tp, 0.5 + _unit("slot", backbone, s.path))
        for s, c in zip(cm.slots, costs)
    ]


def final_accuracy(arch: Architecture) -> float:
    """The accuracy the surrogate converges to with enough epochs (a fraction in [0, 1]).

    Saving FLOPs or parameters in a slot costs accuracy in proportion to that slot's share of
    the model and to a per-slot sensitivity (so where to save matters); SCConv adds a small
    bonus (the paper's self-calibration gain).
    """
    cm, table = _slot_table(arch.backbone, arch.num_classes, arch.resolution, arch.slots)
    conv = OpSpec.make("conv")
    acc = 0.93
    for (path, fshare, pshare, sens), slot in zip(table, cm.slots):
        spec = arch.ops[path]
        if spec.op == "conv":
            continue
        base, c = cm.slot_cost(slot, conv), cm.slot_cost(slot, spec)
        fsave = max(0.0, 1.0 - c.flops / base.flops)
        psave = max(0.0, 1.0 - c.params / base.params)
        acc -= sens * (0.25 * fshare * fsave**1.5 + 0.15 * pshare * psave**2)
        if spec.op == "scconv":
            acc += 0.03 * fshare
        acc += 0.002 * (_unit("pair", path, spec.label) - 0.5)
    acc += 0.006 * (_unit("arch", arch.arch_id) - 0.5)
    return min(max(acc, 0.0), 1.0)


def _curve(arch: Architecture, epochs: int, chance: float) -> float:
    final = final_accuracy(arch)
    k = 0.6 + 0.8 * _unit("speed", arch.arch_id)  # per-architecture learning speed
    mean = chance + (final - chance) * (1.0 - math.exp(-k * epochs))
    noise = 0.02 * (_unit("noise", arch.arch_id, epochs) - 0.5) / epochs
    return min(max(mean + noise, 0.0), 1.0)


def latency_ms(arch: Architecture, flops: int) -> float:
    """Surrogate latency: 5 ms per GFLOP plus a small overhead per non-``conv`` slot."""
    overhead = {"conv": 0.0, "scconv": 0.04, "octconv": 0.03, "linearconv": 0.01}
    return 0.5 + 5.0 * flops / 1e9 + sum(overhead[s.op] for s in arch.ops.values())


def _float_option(config: EvalConfig, key: str) -> float:
    value = config.extra.get(key, 0.0)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"surrogate option {key} must be a number, got {value!r}") from None


def evaluate(arch: Architecture, config: EvalConfig, *, fidelity: int | None = None) -> Metrics:
    """Score ``arch`` like the real evaluator would, in microseconds (plus optional sleeps).

    ``fidelity`` is the number of proxy epochs to reach (default ``config.proxy_epochs``).
    Budgets in ``config`` are checked cheapest first: FLOPs and params before anything else,
    latency before "training"; a broken budget returns an infeasible record with
    ``fidelity=0`` and no accuracy.
    """
    epochs = config.proxy_epochs if fidelity is None else int(fidelity)
    CALLS.append((arch.arch_id, epochs))
    cost = get_cost_model(arch.backbone, arch.num_classes, arch.resolution, arch.slots).cost(arch)
    m = Metrics(
        arch_id=arch.arch_id,
        flops=cost.flops,
        params=cost.params,
        inference_params=cost.inference_params,
        extra={"evaluator": "surrogate"},
    )
    over = {}
    if config.max_flops is not None and cost.flops > config.max_flops:
        over["flops"] = cost.flops / config.max_flops - 1.0
    if config.max_params is not None and cost.params > config.max_params:
        over["params"] = cost.params / config.max_params - 1.0
    if over:
        m.feasible, m.violations = False, over
        return m
    if config.latency != "off":
        lat = latency_ms(arch, cost.flops)
        m.latency_ms, m.latency_iqr_ms, m.latency_source = lat, 0.02 * lat, "measured"
        if config.max_latency_ms is not None and lat > config.max_latency_ms:
            m.feasible, m.violations = False, {"latency": lat / config.max_latency_ms - 1.0}
            return m
    labels = {spec.label for spec in arch.ops.values()}
    if config.extra.get("raise_label") in labels or _unit("raise", arch.arch_id) < _float_option(
        config, "raise_fraction"
    ):
        raise RuntimeError(f"surrogate: simulated crash on {arch.arch_id}")
    per_epoch = (
        _float_option(config, "seconds_per_epoch")
        + _float_option(config, "seconds_per_gflop_epoch") * cost.flops / 1e9
    )
    key = (repr(sorted(config.to_dict().items())), arch.arch_id)
    done = _trained_epochs.get(key, 0)
    if epochs > done and per_epoch > 0:
        time.sleep(per_epoch * (epochs - done))
    _trained_epochs[key] = max(done, epochs)
    m.train_time_s = per_epoch * epochs
    m.fidelity = epochs
    if config.extra.get("fail_label") in labels or _unit("fail", arch.arch_id) < _float_option(
        config, "fail_fraction"
    ):
        m.failure, m.fidelity = "non-finite loss at epoch 1 step 3", 0
        return m
    m.accuracy = _curve(arch, epochs, chance=1.0 / arch.num_classes)
    return m
