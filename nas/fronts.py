"""Pareto layers of stored trials, and the front after ``--rerank`` (:mod:`nas.rerank`).

Pure functions over :class:`nas.records.TrialRow`: :func:`near_front` (the first non-dominated
layers of a study, one trial per architecture), :func:`reranked_score` (a trial's mean score
over the search's seed and the re-ranking seeds) and :func:`apply_rerank` (the Pareto flags
from those means). The rows' reader (:mod:`nas.backends.results`) and the re-ranking step use
them. Imports the standard library and :mod:`nas.records` only; must not import any other
``nas`` module.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from nas.records import RERANK_KEY

__all__ = ["LAYERS", "apply_rerank", "dominates", "near_front", "reranked_score"]

#: Non-dominated layers re-ranked: the front and the layer right behind it.
LAYERS = 2


def _better_vector(values: Sequence[float], objectives: Sequence[str]) -> list[float]:
    """The objective values with every one turned into larger-is-better."""
    return [v if o == "accuracy" else -v for v, o in zip(values, objectives)]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether larger-is-better vector ``a`` is at least ``b`` everywhere and above it once."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def _layers(vectors: Mapping[int, list[float]], n: int) -> list[list[int]]:
    """The first ``n`` non-dominated layers of ``{key: larger-is-better vector}``."""
    left, out = dict(vectors), []
    while left and len(out) < n:
        layer = [
            k
            for k, v in left.items()
            if not any(dominates(w, v) for j, w in left.items() if j != k)
        ]
        out.append(sorted(layer))
        for k in layer:
            del left[k]
    return out


def _first_per_arch(rows: Sequence[Any]) -> list[Any]:
    """Feasible, finished rows with values, the first trial of each architecture."""
    seen: set[str] = set()
    out = []
    for r in sorted(rows, key=lambda r: r.number):
        arch_id = r.user_attrs.get("arch_id")
        ok = r.state == "COMPLETE" and r.feasible and r.values and arch_id is not None
        if ok and arch_id not in seen and all(math.isfinite(v) for v in r.values):
            seen.add(arch_id)
            out.append(r)
    return out


def near_front(rows: Sequence[Any], objectives: Sequence[str], layers: int = LAYERS) -> list[Any]:
    """The rows of the first ``layers`` non-dominated layers (search values), by number."""
    first = {r.number: r for r in _first_per_arch(rows)}
    vectors = {n: _better_vector(r.values, objectives) for n, r in first.items()}
    return [first[n] for layer in _layers(vectors, layers) for n in layer]


def reranked_score(row: Any, objectives: Sequence[str]) -> float | None:
    """The mean of the search's score and the re-ranking scores (None: not re-ranked)."""
    rec = row.user_attrs.get(RERANK_KEY)
    if not isinstance(rec, Mapping):
        return None
    scores = [
        s["score"]
        for s in rec.get("seeds", {}).values()
        if isinstance(s, Mapping) and s.get("score") is not None
    ]
    if not scores or not row.values:
        return None
    return statistics.fmean([row.values[list(objectives).index("accuracy")], *scores])


def apply_rerank(rows: Sequence[Any], objectives: Sequence[str]) -> None:
    """Set the rows' Pareto flags from the re-ranked scores when any row has them (in place).

    Among the feasible rows holding a re-ranking record, the accuracy objective is replaced by
    :func:`reranked_score`; the non-dominated ones (one per architecture) are the front. Rows
    are left alone when no row was re-ranked or the study has no accuracy objective.
    """
    if "accuracy" not in objectives:
        return
    i = list(objectives).index("accuracy")
    vectors = {}
    for r in _first_per_arch(rows):
        s = reranked_score(r, objectives)
        if s is not None:
            values = list(r.values)
            values[i] = s
            vectors[r.number] = _better_vector(values, objectives)
    if not vectors:
        return
    front = set(_layers(vectors, 1)[0])
    for r in rows:
        r.pareto = r.number in front
