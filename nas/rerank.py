"""``--rerank K``: the candidates near the front scored again with K more seeds before export.

A 2-epoch proxy separates networks whose true accuracies differ by a few points only as well
as its own seed noise allows: on the proxy-fidelity references the same architecture's score
moves between seeds by about as much as the gap between the best networks of a front, so a
search often keeps a lucky draw and drops a network that is better (README, "Found
architectures against the papers' networks"). After the trials, :func:`rerank_members` takes
the feasible trials of the first :data:`LAYERS` non-dominated layers of the study (one per
architecture, by the search's own objective values: the front and the networks only one step
behind it), evaluates each again with the search's evaluator and settings but seeds
``seed + 1 .. seed + K`` (weights, data order, augmentation and the validation split: what
``--seed`` seeds), and stores the scores with the study.

**The exported front is recomputed** whenever rows are read (:func:`nas.fronts.apply_rerank`):
among the re-ranked trials, the accuracy objective becomes the mean of the search's score and
the K new ones, the other objectives stay as they were, and the Pareto flags of the rows are
set from those values; trials not re-ranked are not members. So ``pareto.json`` and the
search's summary show the re-ranked front; the Optuna trials keep the values the sampler saw
(Optuna refuses to change a finished trial: the records are study user attributes,
:func:`nas.records.rerank_study_key`, shown on the rows as the ``rerank`` attribute).

**Resume.** Each seed's score is kept on its own; a rerun with the flag evaluates only the
seeds a candidate lacks (a larger K adds seeds; new trials of a resumed search add
candidates; the scores of seeds beyond a smaller K are kept and still count). Failed
evaluations are recorded and tried again by a rerun.

Imports :mod:`nas.fronts`, :mod:`nas.records` and, when called, :mod:`evaluators.metrics` and
:mod:`search_spaces.arch`; must not import :mod:`nas.backends`, :mod:`nas.runner` or
:mod:`nas.search` (which call it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from nas.fronts import LAYERS, near_front, reranked_score
from nas.records import RERANK_KEY

__all__ = ["rerank_members"]


def rerank_members(
    plan: Any, engine: Any, info: Mapping[str, Any], line: Callable[[str], None]
) -> int:
    """Score the near-front trials with the seeds they lack; returns the evaluations run.

    ``engine`` is the opened :class:`~nas.backends.engine.OptunaSearch` (its ``rows()`` and
    ``record_rerank()``), ``info`` the study description, ``line`` prints one line.
    """
    from evaluators.metrics import accuracy_objective
    from search_spaces.arch import Architecture

    k = int(plan.config.rerank)
    objectives = list(info["objectives"])
    base = plan.eval_config
    seeds = [base.seed + j for j in range(1, k + 1)]
    near = near_front(engine.rows(), objectives)
    todo = []
    for r in near:
        rec = r.user_attrs.get(RERANK_KEY) or {}
        have = {int(s) for s, v in (rec.get("seeds") or {}).items() if v.get("score") is not None}
        missing = [s for s in seeds if s not in have]
        if missing:
            todo.append((r, missing, rec))
    n_eval = sum(len(m) for _, m, _ in todo)
    line("")
    line(
        f"Re-ranking: the {len(near)} trial(s) of the first {LAYERS} "
        f"non-dominated layers, each with seed(s) {', '.join(map(str, seeds))} "
        f"({n_eval} evaluation(s) to run)"
    )
    for r, missing, rec in todo:
        arch = Architecture.from_json(r.user_attrs["arch"])
        record = {"seeds": dict(rec.get("seeds") or {})}
        for seed in missing:
            t0 = time.monotonic()
            m = plan.evaluate(arch, replace(base, seed=seed), fidelity=r.user_attrs.get("fidelity"))
            score = None if m.failure else accuracy_objective(m)
            record["seeds"][str(seed)] = {
                "score": score,
                "accuracy": None if m.failure else m.accuracy,
                "val_loss": None if m.failure else (m.extra.get("proxy") or {}).get("val_loss"),
                "failure": m.failure,
                "seconds": round(time.monotonic() - t0, 3),
            }
            engine.record_rerank(r.number, record)
        got = [v["score"] for v in record["seeds"].values() if v["score"] is not None]
        head = f"  trial {r.number:>4}  [{r.user_attrs['arch_id']}]"
        fails = [v["failure"] for v in record["seeds"].values() if v["failure"]]
        r.user_attrs[RERANK_KEY] = record
        mean = reranked_score(r, objectives)
        line(
            f"{head} score {r.values[objectives.index('accuracy')]:.4f} -> mean {mean:.4f} over "
            f"{len(got) + 1} seed(s)" + (f"; failed: {fails[0]} (a rerun tries again)"
                                         if fails else "")
        )
    return n_eval
