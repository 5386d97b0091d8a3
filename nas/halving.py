"""The fidelity ladder: proxy-epoch rungs and the successive-halving rule that stops candidates.

Multi-objective studies cannot be pruned in Optuna, so early stopping is done here.

Successive halving on the accuracy objective (the trial's ``score``: validation top-1 or
``exp(-val loss)``, see ``--proxy-score``; "accuracy" below) among candidates of similar cost. Rungs
``r_0 < r_1 < ... < r_K`` are proxy-epoch counts, ``r_K`` the full proxy budget. After a
candidate ``c`` reaches rung ``r_k`` (k < K) with accuracy ``a_k(c)``, its *peers* are the
other trials of the study, finished or running, that recorded an accuracy at ``r_k`` and
cost at most ``(1 + cost_tolerance)`` times what ``c`` costs (default 5 %), where the cost
is the study's first cost objective among FLOPs, params and latency (``cost_basis
"primary"``, the default) or every cost objective at once (``"all"``: peers then dominate
``c`` in cost, which stops far fewer candidates in a four-objective study).
With ``n`` peers of which ``b`` are strictly more accurate at ``r_k``, ``c`` is stopped
when ``n >= min_peers`` and ``b + 1 > ceil((n + 1) / eta)``, i.e. when ``c`` is not in the
top ``1/eta`` of itself plus its peers; otherwise it is trained on to ``r_{k+1}`` (the
evaluator resumes from ``r_k``). With the defaults (``eta = 2``, ``min_peers = 2``) a
candidate stops when more than half of the candidates that cost no more and were trained
as long are more accurate. A stopped trial keeps the accuracy of the rung it reached
(``fidelity`` says which; ``rung_score`` lists every rung; the exported Pareto set
shows ``fidelity`` for each member); accuracies are compared at equal training only, when
deciding promotion. Repeated architectures (``duplicate_of``) are not peers, so one result
is not counted twice.

:func:`parse_fidelities` turns ``--fidelities`` (``auto``, ``off`` or ``E1,E2,...``) into
rungs; :class:`FidelityLadder` holds them with the rule; :func:`peer_accuracies` picks a
candidate's peers out of the study's trials. Imports only the standard library; must not
import optuna (the engine in :mod:`nas.backends.engine` hands it plain trial attributes) or
any other ``nas`` module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FidelityLadder", "parse_fidelities", "peer_accuracies"]


@dataclass(frozen=True)
class FidelityLadder:
    """Proxy-epoch rungs and the successive-halving promotion rule (see the module docstring).

    ``rungs=(E,)`` (one rung) always trains to the full ``E`` epochs.
    """

    rungs: tuple[int, ...]
    eta: float = 2.0
    min_peers: int = 2
    cost_tolerance: float = 0.05
    cost_basis: str = "primary"

    def __post_init__(self) -> None:
        r = self.rungs
        if not r or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in r):
            raise ValueError(f"rungs must be positive integers, got {r!r}")
        if any(b <= a for a, b in zip(r, r[1:])):
            raise ValueError(f"rungs must be strictly increasing, got {r!r}")
        if not self.eta > 1:
            raise ValueError(f"eta must be greater than 1, got {self.eta!r}")
        if (
            isinstance(self.min_peers, bool)
            or not isinstance(self.min_peers, int)
            or (self.min_peers < 1)
        ):
            raise ValueError(f"min_peers must be a positive integer, got {self.min_peers!r}")
        if not 0 <= self.cost_tolerance < 1:
            raise ValueError(f"cost_tolerance must be in [0, 1), got {self.cost_tolerance!r}")
        if self.cost_basis not in ("primary", "all"):
            raise ValueError(f"cost_basis must be 'primary' or 'all', got {self.cost_basis!r}")

    @classmethod
    def halving(cls, full_epochs: int, eta: int = 2) -> FidelityLadder:
        """Rungs ``E, E//eta, E//eta², ... >= 1`` for ``E = full_epochs``, e.g. 4 -> (1, 2, 4)."""
        rungs, e = [], full_epochs
        while e >= 1:
            rungs.append(e)
            e //= eta
        return cls(tuple(sorted(set(rungs))), eta=float(eta))

    @property
    def full(self) -> int:
        return self.rungs[-1]

    def promote(self, accuracy: float, peer_accuracies: Sequence[float]) -> tuple[bool, str]:
        """Whether a candidate with ``accuracy`` goes on, given its peers' accuracies."""
        n = len(peer_accuracies)
        better = sum(a > accuracy for a in peer_accuracies)
        if n < self.min_peers:
            return True, f"{n} peer(s) of similar or lower cost (< {self.min_peers}): promoted"
        keep = math.ceil((n + 1) / self.eta)
        if better + 1 <= keep:
            return (
                True,
                f"rank {better + 1} of {n + 1} among peers of similar or lower cost: promoted",
            )
        return False, (
            f"{better} of {n} peers of similar or lower cost more accurate after the same "
            f"training: stopped (rank {better + 1} > {keep})"
        )


def _auto_rungs(proxy_epochs: int) -> tuple[int, ...]:
    rungs, e = [], proxy_epochs
    while e >= 1:
        rungs.append(e)
        e //= 2
    return tuple(sorted(set(rungs)))


def _shown(value: Any) -> str:
    """A fidelities value as the user would type it: ``'2,1'``, not ``(2, 1)``."""
    if isinstance(value, (list, tuple)):
        return repr(",".join(map(str, value)))
    return repr(value)


def parse_fidelities(value: Any, proxy_epochs: int) -> tuple[int, ...]:
    """The rungs: ``auto`` -> halving rungs, ``off`` -> (proxy_epochs,), or explicit."""
    example = ",".join(map(str, _auto_rungs(proxy_epochs)))  # always a valid suggestion
    allowed = (
        f"'auto', 'off' or increasing epoch counts ending at --proxy-epochs {proxy_epochs}, "
        f"like {example}"
    )
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return _auto_rungs(proxy_epochs)
        if text == "off":
            return (proxy_epochs,)
        try:
            rungs = tuple(int(x) for x in text.split(","))
        except ValueError:
            raise ValueError(f"fidelities {_shown(value)} must be {allowed}") from None
    else:
        rungs = tuple(value)
    if (
        not rungs
        or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rungs)
        or any(b <= a for a, b in zip(rungs, rungs[1:]))
    ):
        raise ValueError(f"fidelities {_shown(value)} must be {allowed}")
    if rungs[-1] != proxy_epochs:
        raise ValueError(
            f"fidelities {_shown(value)} must end at --proxy-epochs {proxy_epochs}, like {example}"
        )
    return rungs


def peer_accuracies(
    trials: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    number: int,
    epochs: int,
    cost: Any,
    latency: float | None,
    objectives: Sequence[str],
    ladder: FidelityLadder,
) -> list[float]:
    """Accuracies at ``epochs`` of the other trials that cost no more than trial ``number``.

    ``trials`` are ``(number, user_attrs)`` of the study's finished and running trials;
    ``cost`` has ``flops`` and ``params``. Repeated architectures (``duplicate_of``) are
    skipped; the cost basis and tolerance are the ladder's.
    """
    tol = 1.0 + ladder.cost_tolerance
    mine = {"flops": cost.flops, "params": cost.params, "latency": latency}
    basis = [o for o in ("flops", "params", "latency") if o in objectives]
    if ladder.cost_basis == "primary":
        basis = basis[:1]
    key = str(epochs)
    out = []
    for other, ua in trials:
        if other == number or "duplicate_of" in ua:
            continue
        # the accuracy objective at the rung (studies from before --proxy-score: top-1)
        acc = (ua.get("rung_score") or ua.get("rung_accuracy") or {}).get(key)
        if acc is None:
            continue
        theirs = {
            "flops": ua.get("flops"),
            "params": ua.get("params"),
            "latency": ua.get("latency_ms"),
        }
        if all(
            mine[o] is None or (theirs[o] is not None and theirs[o] <= mine[o] * tol) for o in basis
        ):
            out.append(float(acc))
    return out
