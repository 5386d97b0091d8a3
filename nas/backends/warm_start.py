"""Warm start: random architectures repaired to fit the budgets, enqueued in a new study.

With a FLOPs or params budget, a new study starts with ``warm_start`` random architectures
repaired to fit it (enqueued trials), so every sampler begins with feasible examples;
afterwards the sampler alone proposes. Imports optuna and :mod:`nas.budgets`; must not import
the engine (which calls it).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna

from nas.budgets import Budgets

__all__ = ["enqueue_warm_start", "feasible_random"]


def feasible_random(
    choices: Mapping[str, Sequence[str]],
    cost_of_labels: Callable[[Mapping[str, str]], Any],
    budgets: Budgets,
    rng: random.Random,
) -> dict[str, str]:
    """A random architecture repaired to fit the FLOPs/params budgets (labels per slot).

    A target cost is drawn uniformly between the cheapest architecture and each budget;
    starting from a uniformly random architecture, random single-slot changes to a
    cheaper choice are made until the targets are met. The cost of a slot choice is
    exact (the cost model is additive over slots), so this takes microseconds.
    """
    paths = list(choices)
    base = {p: c[0] for p, c in choices.items()}
    base_cost = cost_of_labels(base)
    delta: dict[str, dict[str, tuple[int, int]]] = {}
    for p, options in choices.items():
        delta[p] = {}
        for label in options:
            c = cost_of_labels({**base, p: label})
            delta[p][label] = (c.flops - base_cost.flops, c.params - base_cost.params)
    limits = (budgets.max_flops, budgets.max_params)
    lows = (
        base_cost.flops + sum(min(d[0] for d in delta[p].values()) for p in paths),
        base_cost.params + sum(min(d[1] for d in delta[p].values()) for p in paths),
    )
    targets = [
        None if lim is None else rng.uniform(min(lo, lim), lim) for lim, lo in zip(limits, lows)
    ]
    labels = {p: rng.choice(choices[p]) for p in paths}
    for _ in range(20 * len(paths)):
        cost = cost_of_labels(labels)
        totals = (cost.flops, cost.params)
        over = [i for i, t in enumerate(targets) if t is not None and totals[i] > t]
        if not over:
            break
        i = over[0]
        moves = [
            (p, lbl)
            for p in paths
            for lbl in choices[p]
            if delta[p][lbl][i] < delta[p][labels[p]][i]
        ]
        if not moves:
            break
        p, lbl = rng.choice(moves)
        labels[p] = lbl
    return labels


def enqueue_warm_start(
    study: optuna.Study,
    n: int,
    *,
    seed: int,
    choices: Mapping[str, Sequence[str]],
    cost_of_labels: Callable[[Mapping[str, str]], Any],
    budgets: Budgets,
) -> None:
    """Enqueue ``n`` budget-fitting random architectures in a new study.

    Uniformly random architectures rarely meet a tight budget (ResNet-50's are 2.5 to 3.7
    GFLOPs at 224², its cheapest 1.07 G), so without these a sampler would see hardly
    any feasible trial in its random start-up phase. They are seeded by ``seed``;
    nothing is enqueued without a FLOPs or params budget.
    """
    if n <= 0 or (budgets.max_flops is None and budgets.max_params is None):
        return
    rng = random.Random(seed)
    for _ in range(n):
        study.enqueue_trial(
            feasible_random(choices, cost_of_labels, budgets, rng),
            user_attrs={"proposed_by": "warm start (random architecture fitted to budget)"},
            skip_if_exists=True,
        )
