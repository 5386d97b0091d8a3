"""Warm start and repair: the papers' uniform networks and architectures fitted to the budgets.

A new study starts with ``warm_start`` enqueued trials: first the *uniform* networks (one menu
choice in every slot: the papers' own recipes, all-conv, all-OctConv at one alpha, ...) that
fit the FLOPs/params budgets, then random architectures repaired to fit them, so every
sampler begins with feasible examples and the hand-designed baselines are always scored;
afterwards the sampler proposes. :class:`BudgetRepair` is also what the engine's ``repair``
option applies to a rejected proposal (the repaired one is enqueued next). Imports optuna
and :mod:`nas.budgets`; must not import the engine (which calls it).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna

from nas.budgets import Budgets

__all__ = ["BudgetRepair", "enqueue_warm_start", "feasible_random", "uniform_fitting"]


class BudgetRepair:
    """Cheaper single-slot changes that bring an architecture under the FLOPs/params budgets.

    The cost model is additive over slots, so the FLOPs and params each choice adds to a slot
    are computed once (one cost evaluation per slot and choice); a repair then takes
    microseconds per move.
    """

    def __init__(
        self,
        choices: Mapping[str, Sequence[str]],
        cost_of_labels: Callable[[Mapping[str, str]], Any],
    ) -> None:
        self.choices, self._cost = choices, cost_of_labels
        base = {p: c[0] for p, c in choices.items()}
        base_cost = cost_of_labels(base)
        self.delta: dict[str, dict[str, tuple[int, int]]] = {}
        for p, options in choices.items():
            self.delta[p] = {}
            for label in options:
                c = cost_of_labels({**base, p: label})
                self.delta[p][label] = (c.flops - base_cost.flops, c.params - base_cost.params)
        #: the cheapest achievable FLOPs and params
        self.lows = (
            base_cost.flops + sum(min(d[0] for d in self.delta[p].values()) for p in choices),
            base_cost.params + sum(min(d[1] for d in self.delta[p].values()) for p in choices),
        )

    def fit(
        self,
        labels: Mapping[str, str],
        targets: Sequence[float | None],
        rng: random.Random,
    ) -> dict[str, str]:
        """``labels`` changed, one random slot at a time, to a choice that costs less in the
        first broken target (FLOPs, params; ``None``: no target), until every target is met
        or no cheaper choice is left."""
        labels = dict(labels)
        paths = list(self.choices)
        for _ in range(20 * len(paths)):
            cost = self._cost(labels)
            totals = (cost.flops, cost.params)
            over = [i for i, t in enumerate(targets) if t is not None and totals[i] > t]
            if not over:
                break
            i = over[0]
            moves = [
                (p, lbl)
                for p in paths
                for lbl in self.choices[p]
                if self.delta[p][lbl][i] < self.delta[p][labels[p]][i]
            ]
            if not moves:
                break
            p, lbl = rng.choice(moves)
            labels[p] = lbl
        return labels


def feasible_random(
    choices: Mapping[str, Sequence[str]],
    cost_of_labels: Callable[[Mapping[str, str]], Any],
    budgets: Budgets,
    rng: random.Random,
    repair: BudgetRepair | None = None,
) -> dict[str, str]:
    """A random architecture repaired to fit the FLOPs/params budgets (labels per slot).

    A target cost is drawn uniformly between the cheapest architecture and each budget;
    starting from a uniformly random architecture, random single-slot changes to a
    cheaper choice are made until the targets are met (:class:`BudgetRepair`).
    """
    repair = repair or BudgetRepair(choices, cost_of_labels)
    limits = (budgets.max_flops, budgets.max_params)
    targets = [
        None if lim is None else rng.uniform(min(lo, lim), lim)
        for lim, lo in zip(limits, repair.lows)
    ]
    labels = {p: rng.choice(choices[p]) for p in choices}
    return repair.fit(labels, targets, rng)


def uniform_fitting(
    choices: Mapping[str, Sequence[str]],
    cost_of_labels: Callable[[Mapping[str, str]], Any],
    budgets: Budgets,
) -> list[tuple[str, dict[str, str]]]:
    """The uniform architectures that fit the FLOPs/params budgets, as ``(name, labels)``.

    First the labels every slot offers (one operator in every slot), in the menu's order;
    then the labels only some slots offer, each in the slots that offer it and the slot's
    ``conv`` (else its first choice) elsewhere: the papers' recipes where a slot cannot take
    the operator, e.g. SCConv, which replaces 3x3 convolutions and leaves a ResNet's 1x1
    downsampling convolutions as they are (the SCConv paper's networks). Each of those labels
    comes back as ``"<label> where offered"``.
    """
    if not choices:
        return []
    menu: list[str] = []
    for options in choices.values():
        menu += [lbl for lbl in options if lbl not in menu]
    full = [lbl for lbl in menu if all(lbl in options for options in choices.values())]
    partial = [lbl for lbl in menu if lbl not in full]
    out: list[tuple[str, dict[str, str]]] = []
    for label in [*full, *partial]:
        labels = {
            p: label if label in c else ("conv" if "conv" in c else c[0])
            for p, c in choices.items()
        }
        if len(set(labels.values())) > 1 and label not in full:
            if all(v != label for v in labels.values()):
                continue
            name = f"{label} where offered"
        else:
            name = label
        if any(labels == seen for _, seen in out):
            continue
        cost = cost_of_labels(labels)
        if (budgets.max_flops is None or cost.flops <= budgets.max_flops) and (
            budgets.max_params is None or cost.params <= budgets.max_params
        ):
            out.append((name, labels))
    return out


def enqueue_warm_start(
    study: optuna.Study,
    n: int,
    *,
    seed: int,
    choices: Mapping[str, Sequence[str]],
    cost_of_labels: Callable[[Mapping[str, str]], Any],
    budgets: Budgets,
) -> tuple[list[str], int]:
    """Enqueue ``n`` budget-fitting architectures in a new study; returns the labels of the
    uniform networks enqueued and the number of random ones.

    First the uniform networks that fit (:func:`uniform_fitting`, at most ``n``; those of
    operators some slots do not offer after those in every slot): a per-layer
    search should at least find the papers' own recipes, and on cifar10-mini a 24-trial
    search without them never proposed the all-OctConv networks that beat everything it
    found (experiments/results/found_vs_papers.md, round 1). Then random architectures:
    uniformly random ones rarely meet a tight budget (ResNet-50's are 2.5 to 3.7 GFLOPs at
    224², its cheapest 1.07 G), so without these a sampler would see hardly any feasible
    trial in its random start-up phase. They are seeded by ``seed``; nothing is enqueued
    without a FLOPs or params budget.
    """
    if n <= 0 or (budgets.max_flops is None and budgets.max_params is None):
        return [], 0
    uniform = uniform_fitting(choices, cost_of_labels, budgets)[:n]
    for name, labels in uniform:
        where = "the slots that offer it" if name.endswith(" where offered") else "every slot"
        label = name.removesuffix(" where offered")
        study.enqueue_trial(
            labels,
            user_attrs={"proposed_by": f"warm start (uniform network: {label} in {where})"},
            skip_if_exists=True,
        )
    rng = random.Random(seed)
    repair = BudgetRepair(choices, cost_of_labels)
    for _ in range(n - len(uniform)):
        study.enqueue_trial(
            feasible_random(choices, cost_of_labels, budgets, rng, repair),
            user_attrs={"proposed_by": "warm start (random architecture fitted to budget)"},
            skip_if_exists=True,
        )
    return [name for name, _ in uniform], n - len(uniform)
