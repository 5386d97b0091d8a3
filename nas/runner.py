"""Running a prepared search: the study opened, its trials run on a backend, the result exported.

:func:`execute` takes a :class:`~nas.plan.Plan`, builds the Optuna engine
(:mod:`nas.backends.engine`), joins Ray first when ``--backend ray`` (so an unreachable
cluster writes nothing), writes ``search_config.json``, runs the trials in this process or as
Ray Tune workers (:func:`run_on_ray`, which hands :func:`run_worker` to
:func:`nas.backends.ray_backend.run_workers`), fine-tunes the Pareto members with
``--supernet-finetune`` (:mod:`nas.finetune`), re-ranks the trials near the front with
``--rerank`` (:mod:`nas.rerank`), exports the Pareto set (:mod:`nas.export`) and prints the
summary (:mod:`nas.progress`). :func:`run_worker` is what one Ray worker runs.

Imports :mod:`nas.config`, :mod:`nas.plan`, :mod:`nas.progress`, :mod:`nas.storage` and, when
called, :mod:`nas.backends`, :mod:`nas.finetune`, :mod:`nas.rerank` and :mod:`nas.export`;
must not import :mod:`nas.search` (the command line and the API above it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from nas.budgets import Budgets
from nas.config import SearchConfig, config_from_dict
from nas.halving import FidelityLadder
from nas.plan import Plan, prepare
from nas.progress import Progress, print_end, print_start, ray_status_line
from nas.records import RunSummary
from nas.storage import describe_storage, storage_file

__all__ = [
    "InterruptedBeforeStudy",
    "SearchResult",
    "absolute_paths",
    "build_engine",
    "ctrl_c_held",
    "execute",
    "run_on_ray",
    "run_worker",
    "write_json",
]


class InterruptedBeforeStudy(KeyboardInterrupt):
    """Ctrl-C before the study was created: nothing of the search was written."""


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block has run, then raise ``KeyboardInterrupt``.

    Used around creating the study and writing ``search_config.json`` (milliseconds), so that
    an interrupt leaves either nothing or a whole, resumable study. A second Ctrl-C while the
    first is held interrupts at once (a storage that hangs must not trap the user). Outside
    the main thread, or when SIGINT has a handler other than Python's own, the block runs
    unguarded.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if held:
            raise KeyboardInterrupt
        held.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if held:
        raise KeyboardInterrupt


@dataclass
class SearchResult:
    """What :func:`run_search` returns."""

    study: str
    storage: str
    out_dir: Path
    resumed: bool
    n_complete: int  # evaluated trials (what ``trials`` counts)
    n_feasible: int
    n_failed: int
    stop_reason: str
    pareto: list[dict[str, Any]]
    export_dir: Path | None
    hypervolume: float | None
    dashboard_command: str
    config: dict[str, Any]
    n_rejected: int = 0  # proposals rejected over a FLOPs/params budget, in the study
    n_rejected_run: int = 0  # of those, during this run
    rejections_exhausted: bool = False  # stopped after max_rejections in a row


def execute(
    plan: Plan,
    *,
    stream: TextIO,
    export: bool,
    command: str | None = None,
    worker: bool = False,
) -> SearchResult:
    """Open (or resume) the study, run its trials on the chosen backend, export, summarise.

    ``worker=True`` (a Ray worker) leaves ``search_config.json`` alone.
    """
    c = plan.config
    try:
        engine = build_engine(plan)
        owns_ray = False
        if c.backend == "ray":  # before the study exists: an unreachable cluster writes nothing
            from nas.backends.ray_backend import connect

            owns_ray = connect(c.ray_address)
    except KeyboardInterrupt:
        raise InterruptedBeforeStudy from None
    with ctrl_c_held():  # the study, its attributes and search_config.json are written whole
        info = engine.open()
        plan.out_dir.mkdir(parents=True, exist_ok=True)
        if not worker:  # a Ray worker leaves the driver's record alone
            _write_search_config(plan, command)
    p = Progress(stream, c.trials, c.timeout_s)
    if plan.offline is not None:
        p.line(
            "offline: searching on the bundled 2,500-image CIFAR-10 sample (CIFAR-10 is not in "
            f"--data-dir {c.data_dir!r} and could not be downloaded); pass --data-dir DIR "
            "holding cifar-10-batches-py/ for the full set"
        )
    print_start(p, plan, info)
    try:
        if c.backend == "ray":
            summary = run_on_ray(plan, engine, p, owns_ray)
        else:
            summary = engine.run(
                c.trials,
                timeout_s=c.timeout_s,
                callback=lambda o, s: p.update(o, s, engine),
            )
    except KeyboardInterrupt:
        p.finish()
        raise
    p.finish()
    summary.n_rejected_run = max(0, summary.n_rejected - info.n_rejected)
    if c.supernet_finetune is not None and not worker:  # the Pareto members, before export
        from nas.finetune import finetune_members

        finetune_members(plan, engine, _info_of(engine, plan), p.line)
    if c.rerank is not None and not worker:  # the trials near the front, before export
        from nas.rerank import rerank_members

        rerank_members(plan, engine, _info_of(engine, plan), p.line)
    from nas.export import export_study, pareto_members

    members, hv = pareto_members(engine.rows(), _info_of(engine, plan))
    export_dir = None
    if export:
        export_dir = export_study(plan.storage, plan.study, plan.out_dir).parent
    dash = print_end(p, summary, members, hv, export_dir, c.objectives, plan.storage)
    return SearchResult(
        study=plan.study,
        storage=plan.storage,
        out_dir=plan.out_dir,
        resumed=info.resumed,
        n_complete=summary.n_complete,
        n_feasible=summary.n_feasible,
        n_failed=summary.n_failed,
        stop_reason=summary.stop_reason,
        pareto=members,
        export_dir=export_dir,
        hypervolume=hv,
        dashboard_command=dash,
        config=c.to_dict(),
        n_rejected=summary.n_rejected,
        n_rejected_run=summary.n_rejected_run,
        rejections_exhausted=summary.rejections_exhausted,
    )


def _write_search_config(plan: Plan, command: str | None) -> None:
    """``<out>/search_config.json``: the command, the settings and the space of the search."""
    c = plan.config
    write_json(
        plan.out_dir / "search_config.json",
        {
            "format": "convnas.search-config/1",
            "command": command or "nas.run_search(...) (Python API)",
            "study": plan.study,
            "storage": plan.storage,
            "out": str(plan.out_dir),
            "settings": plan.resolved,
            "config": c.to_dict(),
            "eval_config": plan.eval_config.to_dict(),
            # Why the bundled sample replaced the default CIFAR-10 (None: it did not).
            "offline": plan.offline,
            "space": {
                "slots": len(plan.space.slots),
                "size": str(plan.space.size),
                "min_flops": plan.cost_range.min_flops,
                "max_flops": plan.cost_range.max_flops,
                "min_params": plan.cost_range.min_params,
                "max_params": plan.cost_range.max_params,
            },
        },
    )


def build_engine(plan: Plan) -> Any:
    """The :class:`~nas.backends.engine.OptunaSearch` of ``plan`` (not opened yet)."""
    from nas.backends.engine import OptunaSearch

    c = plan.config
    ec = plan.eval_config

    def evaluate(arch: Any, epochs: int) -> Any:
        return plan.evaluate(arch, ec, fidelity=epochs)

    return OptunaSearch(
        choices=plan.space.choices,
        to_architecture=plan.space.to_architecture,
        cost_of_labels=plan.cost_model.cost_of_labels,
        evaluate=evaluate,
        objectives=c.objectives,
        budgets=Budgets(c.max_flops, c.max_params, c.max_latency_ms),
        ladder=FidelityLadder(plan.rungs, eta=2.0),
        sampler=c.sampler,
        seed=c.seed,
        storage=plan.storage,
        study_name=plan.study,
        settings=plan.resolved,
        proxy={
            "dataset": c.dataset,
            "epochs": c.proxy_epochs,
            "subset": c.proxy_subset,
            "resolution": c.proxy_resolution,
            "score": c.proxy_score,
            "batch_size": c.batch_size,
            "rungs": list(plan.rungs),
            "device": plan.device,
        },
        # A quarter of a short search, at most 10: the samplers must get their turn.
        warm_start=min(10, max(1, c.trials // 4)),
        max_rejections=c.max_rejections,
        cost_range=plan.cost_range,
        repair=c.repair,
    )


def absolute_paths(c: SearchConfig) -> SearchConfig:
    """The config with local paths made absolute (Ray runs workers in other directories)."""
    storage = c.storage
    path = storage_file(storage)
    if path is not None and not path.is_absolute():
        kind, _ = describe_storage(storage)
        storage = str(path.resolve()) if kind == "journal" else f"sqlite:///{path.resolve()}"
    return replace(
        c,
        storage=storage,
        data_dir=str(Path(c.data_dir).resolve()),
        out=None if c.out is None else str(Path(c.out).resolve()),
    )


def run_on_ray(plan: Plan, engine: Any, p: Progress, owns_ray: bool) -> Any:
    """Run the study's trials as Ray Tune workers (see :mod:`nas.backends.ray_backend`)."""
    from nas.backends.ray_backend import run_workers

    c = plan.config
    worker = absolute_paths(replace(c, study=plan.study, out=str(plan.out_dir)))
    worker = replace(worker, backend="optuna", ray_address=None)
    where = c.ray_address or "a local Ray instance"
    gpus = "auto" if c.gpus_per_worker is None else f"{c.gpus_per_worker:g}"
    p.line(
        f"Ray Tune: {c.workers} workers on {where} ({c.cpus_per_worker:g} CPU, {gpus} GPU "
        f"each); Tune's files in {plan.out_dir / 'ray'}"
    )
    summary = RunSummary(0, 0, 0, 0, "", 0.0)
    t0 = time.monotonic()
    last = [-1]

    def poll() -> None:
        engine.refresh_counts(summary)
        if summary.n_complete != last[0]:
            last[0] = summary.n_complete
            p.line(ray_status_line(summary, c.trials, time.monotonic() - t0))

    errors, reports, failed = run_workers(
        worker.to_dict(),
        entry=run_worker,
        n_workers=c.workers,
        address=c.ray_address,
        cpus_per_worker=c.cpus_per_worker,
        gpus_per_worker=c.gpus_per_worker,
        results_dir=plan.out_dir / "ray",
        name=plan.study,
        poll=poll,
        owns_ray=owns_ray,
    )
    for line in errors:
        p.line(f"Ray worker failed: {line}")
    if failed:  # the trials a lost worker was running will never finish
        n = engine.fail_orphans(failed)
        if n:
            p.line(f"Marked {n} trial{'s' if n != 1 else ''} of the failed workers as interrupted")
    poll()
    engine.refresh_counts(summary)
    summary.seconds = time.monotonic() - t0
    exhausted = [r for r in reports if r.get("rejections_exhausted")]
    if summary.n_complete >= c.trials:
        summary.stop_reason = f"reached {c.trials} evaluated trials"
    elif exhausted:
        summary.stop_reason = str(exhausted[0]["stop_reason"])
        summary.rejections_exhausted = True
    elif errors:
        summary.stop_reason = f"{len(errors)} of {c.workers} Ray workers failed"
    else:
        summary.stop_reason = "the Ray workers stopped (timeout or repeated failures)"
    return summary


def run_worker(config: Mapping[str, Any]) -> dict[str, Any]:
    """Run one search worker from a :meth:`SearchConfig.to_dict` dict (what a Ray worker does).

    The worker joins the study named in the config and runs trials until it holds the
    requested count; nothing is exported and progress is not printed. Returns its counts.
    """
    import io

    c = replace(config_from_dict(config), backend="optuna", ray_address=None)
    res = execute(prepare(c), stream=io.StringIO(), export=False, worker=True)
    return {
        "n_complete": res.n_complete,
        "n_feasible": res.n_feasible,
        "n_failed": res.n_failed,
        "n_rejected": res.n_rejected,
        "rejections_exhausted": res.rejections_exhausted,
        "stop_reason": res.stop_reason,
        "pid": os.getpid(),
    }


def _info_of(engine: Any, plan: Plan) -> dict[str, Any]:
    return {
        "study": plan.study,
        "storage": plan.storage,
        "objectives": list(engine.objectives),
        "directions": list(engine.directions),
        "budgets": {n: engine.budgets.limit(n) for n in engine.budgets.names},
        "convnas": plan.resolved,
    }


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically (a temporary file renamed over ``path``).

    The temporary file has a name of its own (``mkstemp``), so writers in several processes
    never write into one another's temporary file; the last rename wins, whole.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; the record is for colleagues too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
