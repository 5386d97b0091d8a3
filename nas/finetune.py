"""``--supernet-finetune N``: the Pareto members of a supernet search fine-tuned before export.

After the trials of a search with ``--evaluator supernet``, :func:`finetune_members` takes
each feasible Pareto member of the study (one per architecture, as exported), extracts it
from the trained supernet with its shared weights, trains it ``N`` epochs on the proxy's
training split with the proxy's optimiser settings and measures it on the validation split
(:func:`evaluators.supernet.finetune`), and prints one line per member. Its record
(``epochs``, ``accuracy`` after fine-tuning, ``supernet_accuracy`` before, validation losses,
times, ``failure``) is stored with the study (:meth:`OptunaSearch.record_finetune`: Optuna
refuses to change a finished trial, so it is a study user attribute per trial number) and
appears as the trial's ``supernet_finetune`` attribute and in the export
(``finetuned_accuracy`` and friends, :mod:`nas.export`).

**The Pareto set is not recomputed from the fine-tuned accuracies.** Only the members are
fine-tuned, so a fine-tuned accuracy can be compared with other members' fine-tuned
accuracies but not with the supernet scores of the trials outside the set; the set, its
order and the hypervolume stay those of the search (supernet scores, what the sampler saw
and the dashboard shows). The export marks a member that another fine-tuned member
dominates once both are fine-tuned (``dominated_after_finetune``), so nothing is dropped
silently.

**Resume.** A member counts as done when it holds a record of the same ``N`` without a
failure; a rerun of a finished study with the flag fine-tunes only the others (new members,
failed ones, or all of them for another ``N``, replacing their records). An interrupted
fine-tuning keeps the records written so far. Fine-tuning always starts from the supernet's
weights, never from an earlier fine-tuning.

Imports :mod:`nas.export`, :mod:`nas.records` and, when called, :mod:`evaluators.supernet`
and :mod:`search_spaces.arch`; must not import :mod:`nas.runner` or :mod:`nas.search` (which
call it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from nas.export import pareto_members
from nas.records import FINETUNE_KEY

__all__ = ["finetune_members", "is_finetuned"]


def is_finetuned(record: Any, epochs: int) -> bool:
    """Whether a stored record is a successful fine-tuning of ``epochs`` epochs."""
    return (
        isinstance(record, Mapping)
        and record.get("epochs") == epochs
        and record.get("failure") is None
        and record.get("accuracy") is not None
    )


def finetune_members(
    plan: Any, engine: Any, info: Mapping[str, Any], line: Callable[[str], None]
) -> int:
    """Fine-tune the Pareto members not fine-tuned ``plan.config.supernet_finetune`` epochs yet.

    ``engine`` is the opened :class:`~nas.backends.engine.OptunaSearch`, ``info`` the study
    description :func:`nas.export.pareto_members` needs, ``line`` prints one line. Returns the
    number of members fine-tuned now.
    """
    epochs = int(plan.config.supernet_finetune)
    rows = {r.number: r for r in engine.rows()}
    members, _ = pareto_members(list(rows.values()), info)
    todo = [
        m
        for m in members
        if not is_finetuned(rows[m["trial"]].user_attrs.get(FINETUNE_KEY), epochs)
    ]
    noun = "epoch" if epochs == 1 else "epochs"
    done = len(members) - len(todo)
    line("")
    line(
        f"Fine-tuning {len(todo)} of {len(members)} Pareto member(s) {epochs} {noun} each from "
        "their supernet weights" + (f" ({done} already fine-tuned {epochs} {noun})" if done else "")
    )
    if not todo:
        return 0
    from evaluators.supernet import finetune
    from search_spaces.arch import Architecture

    for m in todo:
        ua = rows[m["trial"]].user_attrs
        scored = (ua.get("evaluator_extra") or {}).get("supernet") or {}
        t0 = time.monotonic()
        rec = finetune(Architecture.from_dict(m["architecture"]), plan.eval_config, epochs)
        record = {
            **rec,
            "supernet_accuracy": m["accuracy"],
            "supernet_val_loss": scored.get("val_loss"),
            "seconds": round(time.monotonic() - t0, 3),
        }
        engine.record_finetune(m["trial"], record)
        head = f"  trial {m['trial']:>4}  [{m['arch_id']}]"
        if rec["failure"] is not None:
            line(f"{head} fine-tuning failed: {rec['failure']} (a rerun tries again)")
            continue
        scores = (
            f" (score {m['score']:.4f} -> {rec['score']:.4f})"
            if rec.get("score") is not None
            and m.get("score") is not None
            and rec["score"] != rec["accuracy"]
            else ""
        )
        line(
            f"{head} supernet score {m['accuracy']:.4f} -> {rec['accuracy']:.4f} after "
            f"{epochs} {noun} of fine-tuning{scores} ({record['seconds']:.1f} s)"
        )
    return len(todo)
