"""``python -m nas.export --study NAME --storage URL``: the Pareto set of a stored study.

Writes the feasible Pareto-optimal trials of a study to ``<out>/pareto/`` (default
``runs/<study>/pareto/``), all at once — files are written to a temporary folder that then
replaces the old one, so a reader never sees half an export:

``pareto.json``
    ``{"format": "convnas.pareto/1", "study", "storage", "objectives", "directions",
    "budgets", "hypervolume", "reference_point", "n_trials", "n_complete", "n_evaluated",
    "n_rejected", "n_feasible", "members": [...]}`` (``n_complete`` = ``n_evaluated`` +
    ``n_rejected``: proposals rejected over a FLOPs/params budget are COMPLETE and infeasible
    but are not evaluated trials); each member has its trial number, metrics (accuracy,
    FLOPs, params, fused-inference params, latency and its spread, fidelity reached, train
    time), objective values, operator summary and the full canonical architecture.
``pareto.csv``
    one row per member with the same metrics and the architecture file name.
``<arch_id>.json``
    one architecture file per member (``convnas.arch/1``), loadable by ``nas.describe`` and
    ``nas.retrain``.
``pareto.png``
    accuracy against FLOPs of every feasible trial, latency as colour; members drawn solid,
    dominated trials faint.

The Pareto set is Optuna's (``study.best_trials``, which honours the constraints); a
repeated architecture appears once (its first trial). After ``--rerank K`` it is the front of
the re-ranked trials' mean scores instead (:mod:`nas.rerank`): members carry ``rerank_score``
(the mean over ``rerank_seeds`` seeds, the search's included) next to the search's ``score``,
and their accuracy objective value and the hypervolume use the mean. The hypervolume is
Optuna's too, on normalised objectives: accuracy as is (reference 0), FLOPs and params divided
by their budget (or, without one, by the most expensive architecture of the space), latency by
its budget (or by 1.1 x the slowest feasible trial), each with reference 1; it lies in [0, 1].

Imports :mod:`nas.storage`, :mod:`nas.naming`, :mod:`nas.paths`, :mod:`nas.records`,
:mod:`nas.fronts` and,
when called, :mod:`nas.backends` (to read the study); must not import :mod:`nas.search` or
:mod:`nas.runner`, which call it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nas.fronts import dominates, reranked_score
from nas.naming import study_folder
from nas.paths import check_writable_folder
from nas.records import FINETUNE_KEY, RERANK_KEY, is_scored_only
from nas.storage import DEFAULT_STORAGE, describe_storage, storage_file

__all__ = ["build_parser", "cli", "export_study", "main", "pareto_members"]

CSV_FIELDS = (
    "trial",
    "arch_id",
    "accuracy",
    "score",
    "flops",
    "params",
    "inference_params",
    "latency_ms",
    "latency_iqr_ms",
    "fidelity",
    "train_time_s",
    "supernet_accuracy",
    "finetuned_accuracy",
    "finetuned_score",
    "finetune_epochs",
    "rerank_score",
    "rerank_seeds",
    "ops",
    "file",
)
PARETO_FORMAT = "convnas.pareto/1"


def _reference(info: Mapping[str, Any], rows: Sequence[Any]) -> dict[str, float]:
    budgets = info.get("budgets") or {}
    space = (info.get("convnas") or {}).get("space") or {}
    ref: dict[str, float] = {"accuracy": 0.0}
    feasible = [r for r in rows if r.feasible]
    for name, attr in (("flops", "flops"), ("params", "params")):
        limit = budgets.get(name) or space.get(f"max_{name}")
        if limit is None:
            seen = [r.user_attrs.get(attr) for r in feasible if r.user_attrs.get(attr)]
            limit = 1.1 * max(seen) if seen else 1.0
        ref[name] = float(limit)
    lat_limit = budgets.get("latency")
    if lat_limit is None:
        seen = [r.user_attrs.get("latency_ms") for r in feasible if r.user_attrs.get("latency_ms")]
        lat_limit = 1.1 * max(seen) if seen else 1.0
    ref["latency"] = float(lat_limit)
    return ref


def pareto_members(
    rows: Sequence[Any], info: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], float | None]:
    """The feasible Pareto-optimal members (one per architecture) and the hypervolume.

    ``rows`` are :class:`nas.records.TrialRow`; ``info`` the study description from
    :func:`nas.backends.results.load_rows`.
    """
    from nas.backends.results import hypervolume

    objectives = list(info["objectives"])
    seen: set[str] = set()
    members = []
    for r in sorted((r for r in rows if r.pareto), key=lambda r: r.number):
        ua = r.user_attrs
        extra = ua.get("evaluator_extra")
        ft = ua.get(FINETUNE_KEY) if isinstance(ua.get(FINETUNE_KEY), dict) else {}
        arch_id = ua.get("arch_id")
        if arch_id is None or arch_id in seen:
            continue
        seen.add(arch_id)
        reranked = reranked_score(r, objectives)
        rr = ua.get(RERANK_KEY) if isinstance(ua.get(RERANK_KEY), dict) else {}
        values = dict(zip(objectives, r.values or []))
        if reranked is not None:
            values["accuracy"] = reranked
        members.append(
            {
                "trial": r.number,
                "arch_id": arch_id,
                "accuracy": ua.get("accuracy"),
                # the accuracy objective: exp(-val loss) or top-1 (--proxy-score)
                "score": _score(ua),
                "flops": ua.get("flops"),
                "params": ua.get("params"),
                "inference_params": ua.get("inference_params"),
                "latency_ms": ua.get("latency_ms"),
                "latency_iqr_ms": ua.get("latency_iqr_ms"),
                "latency_source": ua.get("latency_source"),
                "fidelity": ua.get("fidelity"),
                "rung_accuracy": ua.get("rung_accuracy"),
                "rung_score": ua.get("rung_score") or ua.get("rung_accuracy"),
                # The supernet evaluator's score (None: the member was trained on its own).
                "supernet_accuracy": ua.get("accuracy") if is_scored_only(extra) else None,
                # --supernet-finetune N (None: not fine-tuned; see nas.finetune)
                "finetune_epochs": ft.get("epochs"),
                "finetuned_accuracy": ft.get("accuracy"),
                "finetuned_score": ft.get("score", ft.get("accuracy")),
                "finetuned_val_loss": ft.get("val_loss"),
                "finetune_time_s": ft.get("train_time_s"),
                "finetune_failure": ft.get("failure"),
                # --rerank K (None: not re-ranked; see nas.rerank)
                "rerank_score": reranked,
                "rerank_seeds": (
                    1 + sum(s.get("score") is not None for s in rr.get("seeds", {}).values())
                    if reranked is not None
                    else None
                ),
                "train_time_s": ua.get("train_time_s"),
                "ops": ua.get("ops"),
                "values": values,
                "file": f"{arch_id}.json",
                "architecture": json.loads(ua["arch"]) if "arch" in ua else None,
            }
        )
    members.sort(key=lambda m: (m["flops"] or 0, -(m["score"] or 0)))
    _mark_dominated_after_finetune(members, objectives)
    hv = None
    if members:
        ref = _reference(info, rows)
        directions = [("maximize" if o == "accuracy" else "minimize") for o in objectives]
        points = [[_norm(o, m["values"][o], ref) for o in objectives] for m in members]
        reference = [0.0 if o == "accuracy" else 1.0 for o in objectives]
        hv = hypervolume(points, directions, reference)
    return members, hv


def _mark_dominated_after_finetune(
    members: Sequence[dict[str, Any]], objectives: Sequence[str]
) -> None:
    """``dominated_after_finetune``: another fine-tuned member is at least as good in every
    objective and better in one, the accuracy objective (``finetuned_score``) taken after
    fine-tuning (None: not fine-tuned).
    The Pareto set itself is not recomputed (see :mod:`nas.finetune`)."""

    def vector(m: Mapping[str, Any]) -> list[float]:  # larger is better
        return [
            float(m["finetuned_score"]) if o == "accuracy" else -float(m["values"][o])
            for o in objectives
        ]

    tuned = [m for m in members if m.get("finetuned_score") is not None]
    for m in members:
        m["dominated_after_finetune"] = None
    for a in tuned:
        va = vector(a)
        a["dominated_after_finetune"] = any(dominates(vector(b), va) for b in tuned if b is not a)


def _score(ua: Mapping[str, Any]) -> float | None:
    """A trial's accuracy objective: ``score`` (studies from before it: ``accuracy``)."""
    return ua["score"] if "score" in ua else ua.get("accuracy")


def _norm(objective: str, value: float, ref: Mapping[str, float]) -> float:
    return value if objective == "accuracy" else value / ref[objective]


def _plot(
    path: Path, rows: Sequence[Any], members: Sequence[Mapping[str, Any]], info: Mapping[str, Any]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feas = [r for r in rows if r.feasible and _score(r.user_attrs) is not None]
    member_trials = {m["trial"] for m in members}
    use_latency = any(r.user_attrs.get("latency_ms") is not None for r in feas)
    colour_key, colour_label = (
        ("latency_ms", "latency (ms)") if use_latency else ("params", "parameters")
    )
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    if feas:
        cvals = [float(r.user_attrs.get(colour_key) or 0.0) for r in feas]
        vmin, vmax = min(cvals), max(cvals)
        if vmin == vmax:
            vmax = vmin + 1.0
        dom = [(r, c) for r, c in zip(feas, cvals) if r.number not in member_trials]
        top = [(r, c) for r, c in zip(feas, cvals) if r.number in member_trials]
        kw = {"cmap": "viridis", "vmin": vmin, "vmax": vmax}
        if dom:
            ax.scatter(
                [r.user_attrs["flops"] / 1e9 for r, _ in dom],
                [_score(r.user_attrs) for r, _ in dom],
                c=[c for _, c in dom],
                s=22,
                alpha=0.25,
                label="dominated",
                **kw,
            )
        sc = ax.scatter(
            [r.user_attrs["flops"] / 1e9 for r, _ in top],
            [_score(r.user_attrs) for r, _ in top],
            c=[c for _, c in top],
            s=70,
            edgecolors="black",
            linewidths=0.8,
            label="Pareto-optimal",
            **kw,
        )
        fig.colorbar(sc, ax=ax, label=colour_label)
    budget = (info.get("budgets") or {}).get("flops")
    if budget:
        ax.axvline(
            budget / 1e9,
            color="crimson",
            linestyle="--",
            linewidth=1,
            label=f"FLOPs budget {budget / 1e9:.3g} G",
        )
    n_inf = sum(1 for r in rows if r.state == "COMPLETE" and not r.feasible)
    ax.set_xlabel("FLOPs (G multiply-adds)")
    ax.set_ylabel(
        "proxy score exp(-validation loss)"
        if (info.get("convnas") or {}).get("proxy_score") == "loss"
        else "proxy accuracy"
    )
    ax.set_title(
        f"{info['study']}: {len(members)} Pareto-optimal of {len(feas)} feasible "
        f"({n_inf} infeasible not shown)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing feasible and no budget: no legend
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def export_study(storage: str, study: str, out_dir: str | os.PathLike) -> Path:
    """Write ``<out_dir>/pareto/`` for a stored study; return the path of ``pareto.json``.

    Raises ``ValueError`` when the storage or the study does not exist.
    """
    from nas.backends.results import load_rows
    from search_spaces.arch import Architecture

    rows, info = load_rows(storage, study)
    members, hv = pareto_members(rows, info)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = out / "pareto"
    tmp = Path(tempfile.mkdtemp(prefix=".pareto.tmp-", dir=out))
    try:
        # mkdtemp makes the folder 0700; the export is for the user's colleagues too.
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
        for m in members:
            if m["architecture"] is not None:
                Architecture.from_dict(m["architecture"]).save(tmp / m["file"])
        complete = [r for r in rows if r.state == "COMPLETE"]
        doc = {
            "format": PARETO_FORMAT,
            "study": study,
            "storage": storage,
            "objectives": info["objectives"],
            "directions": info["directions"],
            "budgets": info["budgets"],
            "hypervolume": hv,
            "reference_point": _reference(info, rows) if members else None,
            "n_trials": len(rows),
            "n_complete": len(complete),
            "n_evaluated": sum(not r.user_attrs.get("rejected", False) for r in complete),
            "n_rejected": sum(bool(r.user_attrs.get("rejected", False)) for r in complete),
            "n_feasible": sum(r.feasible for r in complete),
            "members": members,
        }
        (tmp / "pareto.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        with open(tmp / "pareto.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            for m in members:
                w.writerow(m)
        _plot(tmp / "pareto.png", rows, members, info)
        # Swap folders: the old export stays whole until the new one is complete.
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=".pareto.old-", dir=out))
            os.replace(final, old / "pareto")
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final / "pareto.json"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m nas.export",
        description="Export the feasible Pareto-optimal architectures of a stored study.",
    )
    p.add_argument(
        "--study", default=None, help="study name (default: the only study in the storage)"
    )
    p.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help=f"database URL, SQLite file or journal file (default {DEFAULT_STORAGE})",
    )
    p.add_argument("--out", default=None, help="output folder (default: runs/<study>/)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from nas.backends.optuna_storage import list_studies

    try:
        describe_storage(args.storage)
        path = storage_file(args.storage)
        if path is not None and not path.is_file():
            raise ValueError(f"storage {args.storage!r}: file {str(path)!r} does not exist")
        study = args.study
        if study is None:
            names = list_studies(args.storage)
            if len(names) != 1:
                shown = ", ".join(repr(n) for n in names) or "none"
                raise ValueError(
                    f"storage {args.storage!r} holds {len(names)} studies ({shown}); "
                    "pass --study NAME"
                )
            study = names[0]
        out = Path(args.out) if args.out else Path("runs") / study_folder(study)
        check_writable_folder(out, f"out {str(out)!r}")
        from nas.backends.results import load_rows

        load_rows(args.storage, study)  # raises for an unknown study, before writing
    except ValueError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    pareto_json = export_study(args.storage, study, out)
    doc = json.loads(pareto_json.read_text())
    hv = doc["hypervolume"]
    print(
        f"study {study!r}: {doc['n_evaluated']} evaluated trials, {doc['n_feasible']} feasible, "
        f"{doc['n_rejected']} proposals rejected over budget, "
        f"{len(doc['members'])} Pareto-optimal"
        + (f", hypervolume {hv:.4g}" if hv is not None else "")
    )
    print(
        f"wrote {pareto_json.parent}/ (pareto.json, pareto.csv, pareto.png, "
        f"{len(doc['members'])} architecture files)"
    )
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
