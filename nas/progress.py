"""What a search prints: the updating status line, the start and end reports, the Pareto table.

:class:`Progress` writes one updating status line on a terminal and plain lines otherwise.
Imports :mod:`nas.units` and :mod:`nas.storage` only; must not import optuna, ``evaluators``
or the ``nas`` modules that print through it (the engine's outcomes and summaries arrive as
the plain records of :mod:`nas.records`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from nas.storage import dashboard_command
from nas.units import format_count, format_duration, format_flops, format_ms

__all__ = ["Progress", "print_end", "print_start", "ray_status_line", "summary_table"]


class Progress:
    """One updating status line on a terminal; plain lines otherwise."""

    def __init__(self, stream: TextIO, target: int, timeout_s: float | None) -> None:
        self.stream, self.target, self.timeout_s = stream, target, timeout_s
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.t0 = time.monotonic()
        self.done_this_run = 0
        self.best: float | None = None
        self.pareto = 0
        self._status_len = 0

    def line(self, text: str) -> None:
        if self.tty and self._status_len:
            self.stream.write("\r" + " " * self._status_len + "\r")
            self._status_len = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def status(self, text: str) -> None:
        if not self.tty:
            return
        pad = max(0, self._status_len - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._status_len = len(text)

    def finish(self) -> None:
        if self.tty and self._status_len:
            self.stream.write("\n")
            self._status_len = 0

    def update(self, outcome: Any, summary: Any, engine: Any) -> None:
        """After each trial: a line per evaluated trial; a rejected proposal (over a
        FLOPs/params budget, not counted) only moves the counts on a terminal."""
        rejected = outcome.status == "rejected"
        if not rejected:
            self.done_this_run += 1
        elapsed = time.monotonic() - self.t0
        remaining = max(0, self.target - summary.n_complete)
        eta = elapsed / max(1, self.done_this_run) * remaining if remaining else 0.0
        if self.timeout_s is not None:
            eta = min(eta, max(0.0, self.timeout_s - elapsed))
        self.best = summary.best_accuracy
        self.pareto = summary.pareto_size
        best = f"{self.best:.4f}" if self.best is not None else "-"
        counts = (
            f"{summary.n_complete}/{self.target} done, {summary.n_feasible} feasible, "
            f"Pareto {self.pareto}, best acc under budget {best}, "
            f"{_rejected(summary.n_rejected)}ETA {format_duration(eta)}"
        )
        if rejected:
            self.status(counts)
            return
        o = outcome
        acc = f"acc {o.accuracy:.4f}" if o.accuracy is not None else "acc -"
        if o.score is not None and o.score != o.accuracy:  # --proxy-score loss: exp(-val loss)
            acc += f"  score {o.score:.4f}"
        epochs = f"{o.fidelity} ep  " if o.trained else ""  # a supernet score: no epochs
        detail = (
            f"trial {o.number:>3} {o.status:<10} {acc}  {format_flops(o.flops)}  "
            f"{format_count(o.params)} params  {format_ms(o.latency_ms)}  "
            f"{epochs}{o.seconds:.1f}s  [{o.arch_id}] {o.message}"
        )
        if self.tty:
            self.line(detail)
            self.status(counts)
        else:
            self.line(f"{detail}\n    {counts}")


def _rejected(n: int) -> str:
    return f"{n} rejected over budget, " if n else ""


def summary_table(pareto: Sequence[Mapping[str, Any]], objectives: Sequence[str]) -> list[str]:
    """The Pareto members as a fixed-width table, one line each (with its header).

    ``epochs`` is the proxy epochs a member was trained, ``-`` for a supernet score (a member
    with ``supernet_accuracy``: not trained on its own). When a member was fine-tuned
    (``--supernet-finetune``), a ``fine-tuned`` column shows its accuracy afterwards. With
    ``--proxy-score loss`` a ``score`` column shows the accuracy objective, ``exp(-val loss)``,
    next to validation top-1; after ``--rerank`` a ``mean`` column shows the score averaged
    over the re-ranking seeds (what the front was chosen by).
    """
    tuned = any(m.get("finetune_epochs") is not None for m in pareto)
    reranked = any(m.get("rerank_score") is not None for m in pareto)
    scored = any(m.get("score") not in (None, m.get("accuracy")) for m in pareto)
    head = (
        f"{'trial':>5}  {'arch_id':<16}  {'accuracy':>8}  "
        + (f"{'score':>6}  " if scored else "")
        + (f"{'fine-tuned':>10}  " if tuned else "")
        + (f"{'mean':>6}  " if reranked else "")
        + f"{'FLOPs':>12}  {'params':>8}  {'latency':>9}  {'epochs':>6}  ops"
    )
    lines = [head]
    for m in pareto:
        acc = f"{m['accuracy']:.4f}" if m.get("accuracy") is not None else "-"
        epochs = "-" if m.get("supernet_accuracy") is not None else m.get("fidelity", 0)
        ft = m.get("finetuned_accuracy")
        ft_text = f"{ft:.4f}" if ft is not None else "-"
        score = f"{m['score']:.4f}" if m.get("score") is not None else "-"
        rr = m.get("rerank_score")
        mean = f"{rr:.4f}" if rr is not None else "-"
        lines.append(
            f"{m['trial']:>5}  {m['arch_id']:<16}  {acc:>8}  "
            + (f"{score:>6}  " if scored else "")
            + (f"{ft_text:>10}  " if tuned else "")
            + (f"{mean:>6}  " if reranked else "")
            + f"{format_flops(m['flops']):>12}  "
            f"{format_count(m['params']):>8}  {format_ms(m.get('latency_ms')):>9}  "
            f"{epochs:>6}  {m.get('ops', '')}"
        )
    return lines


def _score_phrase(proxy_score: str | None) -> str:
    """How the built-in evaluators score the accuracy objective (custom evaluators: nothing)."""
    if proxy_score == "loss":
        return ", scored by validation loss (score = exp(-loss))"
    if proxy_score == "accuracy":
        return ", scored by validation top-1"
    return ""


def print_start(p: Progress, plan: Any, info: Any) -> None:
    """The space, the objectives and budgets, and whether the study is new or resumed."""
    c = plan.config
    rng = plan.cost_range
    p.line(
        f"Search space: {c.backbone} @{plan.space.resolution}x{plan.space.resolution}, "
        f"{len(plan.space.slots)} slots ({c.slots}), {len(plan.space.menu)} operators "
        f"[{', '.join(s.label for s in plan.space.menu)}]; FLOPs {format_flops(rng.min_flops)} "
        f"to {format_flops(rng.max_flops)}, params {format_count(rng.min_params)} to "
        f"{format_count(rng.max_params)}"
    )
    budgets = [
        f"FLOPs <= {format_flops(c.max_flops)}" if c.max_flops else None,
        f"params <= {format_count(c.max_params)}" if c.max_params else None,
        f"latency <= {format_ms(c.max_latency_ms)}" if c.max_latency_ms else None,
    ]
    p.line(
        f"Objectives: {', '.join(c.objectives)}; budgets: "
        f"{', '.join(b for b in budgets if b) or 'none'}; sampler {c.sampler} (seed {c.seed}); "
        f"proxy {c.dataset}, {'/'.join(map(str, plan.rungs))} "
        f"epoch{'' if plan.rungs == (1,) else 's'}"
        f"{f' at {c.proxy_resolution} px' if c.proxy_resolution else ''}"
        f"{_score_phrase(plan.resolved.get('proxy_score'))}, device {plan.device}"
    )
    if info.resumed:
        extra = (
            f"; {info.n_interrupted_now} interrupted trial(s) marked failed"
            if info.n_interrupted_now
            else ""
        )
        rejected = f", {info.n_rejected} proposals rejected over budget" if info.n_rejected else ""
        p.line(
            f"Resuming study '{plan.study}' in {plan.storage}: {info.n_complete} trials already "
            f"evaluated ({info.n_feasible} feasible, {info.n_failed} failed{rejected}){extra}; "
            f"running until {c.trials} are evaluated."
        )
    else:
        p.line(f"New study '{plan.study}' in {plan.storage}; running {c.trials} evaluated trials.")
        if info.warm_uniform or info.warm_random:
            partial = any(u.endswith(" where offered") for u in info.warm_uniform)
            uniform = (
                f"the uniform network{'s' if len(info.warm_uniform) > 1 else ''} "
                f"{', '.join(info.warm_uniform)} (one operator in every slot"
                + (" that offers it, conv in the others" if partial else "")
                + ", the papers' recipe)"
                if info.warm_uniform
                else "no uniform network (none fits the budget)"
            )
            rand = (
                f" and {info.warm_random} random architecture"
                f"{'' if info.warm_random == 1 else 's'} fitted to the budget"
                if info.warm_random
                else ""
            )
            p.line(f"Warm start: {uniform}{rand}, then the {c.sampler} sampler proposes.")


def print_end(
    p: Progress,
    summary: Any,
    members: Sequence[Mapping[str, Any]],
    hv: float | None,
    export_dir: Path | None,
    objectives: Sequence[str],
    storage: str,
) -> str:
    """Why the search stopped, the Pareto set, where it was exported; returns the dashboard line."""
    p.line("")
    run = (
        f", {summary.n_rejected_run} of them in this run"
        if summary.n_rejected_run != summary.n_rejected
        else ""
    )
    p.line(
        f"Search stopped: {summary.stop_reason} in {format_duration(summary.seconds)} "
        f"({summary.n_complete} evaluated, {summary.n_feasible} feasible, {summary.n_failed} "
        f"failed in the study; {summary.n_rejected} proposals rejected over budget{run}, "
        "not counted)."
    )
    if members:
        hv_text = f"; hypervolume {hv:.4g}" if hv is not None else ""
        noun = "architecture" if len(members) == 1 else "architectures"
        p.line(f"Pareto set: {len(members)} feasible non-dominated {noun}{hv_text}")
        for row in summary_table(members, objectives):
            p.line("  " + row)
    else:
        p.line("Pareto set: empty (no feasible trial completed yet).")
    if export_dir is not None:
        p.line(
            f"Exported to {export_dir}/ (pareto.json, pareto.csv, pareto.png and one "
            f"<arch_id>.json per member)"
        )
    dash = dashboard_command(storage)
    p.line(f"Dashboard: {dash}")
    return dash


def ray_status_line(summary: Any, target: int, seconds: float) -> str:
    """The counts line printed while Ray workers run (whenever the complete count changes)."""
    best = "-" if summary.best_accuracy is None else f"{summary.best_accuracy:.4f}"
    return (
        f"    {summary.n_complete}/{target} done, {summary.n_feasible} feasible, "
        f"Pareto {summary.pareto_size}, best acc under budget {best}, "
        f"{_rejected(summary.n_rejected)}{summary.n_failed} failed ({format_duration(seconds)})"
    )
