"""``python -m nas.search --budget 2GFLOPs``: the multi-objective architecture search.

Every replaceable convolution of the backbone (a *slot*) picks one operator from the menu; an
Optuna study trades proxy accuracy against FLOPs, parameters and measured latency. Budgets
(``--budget``, ``--max-params``, ``--max-latency``) make a candidate infeasible when broken;
an over-budget candidate is never built or trained. Results land in an Optuna storage
(default ``sqlite:///runs/convnas.db``) that optuna-dashboard opens, and the Pareto-optimal
feasible architectures are exported to ``<out>/pareto/``.

Running the same command again resumes its study (the default study name is derived from the
settings that define the search), with every completed trial kept and interrupted ones marked
failed. :func:`run_search` is the Python API; the command line is a thin layer over it.

Exit codes: 0 done, 1 the search could not run (e.g. every trial failed, or ``--max-rejections``
proposals in a row broke the budget: one line on stderr), 2 bad input (one line on stderr,
nothing written), 130 interrupted with Ctrl-C: before the study exists (while the space is built
and priced) nothing was written; the study is created whole or not at all, and once it exists
running the same command again resumes it.

This module is the command line and the API only; what it drives lives below it:
:mod:`nas.config` (the config and its checks), :mod:`nas.plan` (validation that needs the
space and the data), :mod:`nas.runner` (running the study on a backend), :mod:`nas.progress`
(what is printed). It is the top of ``nas``' search side: nothing imports it but the user.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TextIO

from nas.config import (
    BACKEND_NAMES,
    OBJECTIVE_NAMES,
    PROXY_SCORES,
    SAMPLER_NAMES,
    SLOT_POLICY_NAMES,
    SearchConfig,
    parse_evaluator_options,
    parse_objectives,
)
from nas.plan import prepare
from nas.runner import InterruptedBeforeStudy, SearchResult, execute, run_worker
from nas.storage import DEFAULT_STORAGE
from nas.units import (
    arg_count,
    arg_duration,
    arg_flops,
    arg_latency,
    parse_count,
    parse_duration,
    parse_flops,
    parse_latency,
)

__all__ = [
    "DEFAULT_STORAGE",
    "SearchConfig",
    "SearchResult",
    "build_parser",
    "cli",
    "main",
    "run_search",
    "run_worker",
]


# -- the API ---------------------------------------------------------------------------------
def _number(value: Any, parse: Callable[[str], Any], name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse(value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or (not math.isfinite(value))
    ):
        raise ValueError(
            f"{name} must be a positive number or a string like '2GFLOPs', got {value!r}"
        )
    return value


def run_search(
    *,
    budget: str | float | None = None,
    max_params: str | int | None = None,
    max_latency: str | float | None = None,
    backbone: str = "resnet50",
    slots: str = "all",
    ops: str = "conv,scconv,oct,linear",
    resolution: int | None = None,
    dataset: str | None = None,
    data_dir: str | os.PathLike = "data",
    download: bool = True,
    proxy_epochs: int = 2,
    proxy_subset: int | None = 3500,
    proxy_resolution: int | None = None,
    proxy_score: str = "loss",
    batch_size: int = 64,
    fidelities: str | Sequence[int] = "auto",
    objectives: str | Sequence[str] = OBJECTIVE_NAMES,
    sampler: str = "tpe",
    trials: int = 50,
    max_rejections: int = 200,
    repair: bool = True,
    timeout: str | float | None = None,
    seed: int = 0,
    device: str = "auto",
    storage: str = DEFAULT_STORAGE,
    study: str | None = None,
    out: str | os.PathLike | None = None,
    evaluator: str | None = None,
    evaluator_options: Mapping[str, Any] | Sequence[str] | None = None,
    supernet_finetune: int | None = None,
    rerank: int | None = None,
    export: bool = True,
    stream: TextIO | None = None,
    backend: str = "optuna",
    ray_address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float | None = None,
    gpus_per_worker: float | None = None,
) -> SearchResult:
    """Run (or resume) a search and export its Pareto set; the CLI is a thin layer over this.

    Budgets accept numbers or the command line's strings: ``budget="2GFLOPs"`` or ``2e9``,
    ``max_params="10M"``, ``max_latency="15ms"`` (a number is milliseconds); ``timeout``
    ``"30m"`` or seconds. ``evaluator`` is ``"package.module:function"`` called as
    ``function(arch, eval_config, fidelity=epochs) -> Metrics`` (default: the real
    proxy-training evaluator); ``evaluator_options`` go to ``EvalConfig.extra``.
    ``supernet_finetune`` (with ``evaluator="supernet"``): after the search, fine-tune each
    Pareto member for that many epochs from its supernet weights (:mod:`nas.finetune`).
    ``rerank``: after the search, score the trials near the front with that many more seeds
    and export the front of the mean scores (:mod:`nas.rerank`).
    ``trials`` counts evaluated candidates: a proposal over ``budget`` or ``max_params`` is
    recorded as infeasible but not counted; with ``repair`` it is evaluated next changed to
    fit; after ``max_rejections`` of them in a row the search stops
    (``SearchResult.rejections_exhausted``).
    Progress goes to ``stream`` (default: standard output; pass ``io.StringIO()`` to keep it).
    ``backend="ray"`` runs ``workers`` search workers as Ray Tune trials (``ray_address``
    ``None``: a local Ray instance; ``workers`` ``None``: 2), each with ``cpus_per_worker``
    CPUs (``None``: 1) and ``gpus_per_worker`` GPUs (``None``: 1 when the cluster has GPUs and
    ``device`` is not ``cpu``, else 0); see :mod:`nas.backends.ray_backend`. These four are
    refused without ``backend="ray"``, where they would do nothing. ``dataset`` ``None`` means
    CIFAR-10, or the bundled ``cifar10-sample`` when CIFAR-10 is neither in ``data_dir`` nor
    downloadable (and ``download`` is on); naming ``"cifar10"`` makes its absence an error.

    Raises ``ValueError`` (one sentence naming the bad argument) before anything is written.
    """
    ray_only = {"workers": workers, "cpus_per_worker": cpus_per_worker}
    _refuse_ray_only(backend, {**ray_only, "gpus_per_worker": gpus_per_worker}, flags=False)
    config = SearchConfig(
        max_flops=_number(budget, parse_flops, "budget"),
        max_params=_number(max_params, parse_count, "max_params"),
        max_latency_ms=_number(max_latency, parse_latency, "max_latency"),
        backbone=backbone,
        slots=slots,
        ops=ops,
        resolution=resolution,
        dataset="cifar10" if dataset is None else dataset,
        data_dir=str(data_dir),
        download=download,
        proxy_epochs=proxy_epochs,
        proxy_subset=proxy_subset,
        proxy_resolution=proxy_resolution,
        proxy_score=proxy_score,
        batch_size=batch_size,
        fidelities=fidelities if isinstance(fidelities, str) else tuple(fidelities),
        objectives=parse_objectives(objectives),
        sampler=sampler,
        trials=trials,
        max_rejections=max_rejections,
        repair=bool(repair),
        timeout_s=_number(timeout, parse_duration, "timeout"),
        seed=seed,
        device=device,
        storage=storage,
        study=study,
        out=None if out is None else str(out),
        evaluator=evaluator,
        evaluator_options=parse_evaluator_options(evaluator_options),
        supernet_finetune=supernet_finetune,
        rerank=rerank,
        backend=backend,
        ray_address=ray_address,
        workers=2 if workers is None else workers,
        cpus_per_worker=1.0 if cpus_per_worker is None else cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
    )
    if config.max_flops is not None:
        config = replace(config, max_flops=int(round(config.max_flops)))
    if config.max_params is not None:
        config = replace(config, max_params=int(round(config.max_params)))
    plan = prepare(config, sample_fallback=dataset is None)
    return execute(plan, stream=sys.stdout if stream is None else stream, export=export)


def _refuse_ray_only(backend: str, given: Mapping[str, Any], *, flags: bool) -> None:
    """``ValueError`` for a Ray-only setting given with another backend (it would do nothing)."""
    if backend == "ray":
        return
    for name, value in given.items():
        if value is not None:
            shown = f"--{name.replace('_', '-')} {value}" if flags else f"{name}={value!r}"
            needs = "--backend ray" if flags else "backend='ray'"
            raise ValueError(
                f"{shown} does nothing with the {backend} backend; add {needs} or leave it out"
            )


# -- command line ------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _int_arg(name: str, minimum: int = 1) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {text!r} is not an integer") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{name} {text!r} must be >= {minimum}")
        return v

    parse.__name__ = name
    return parse


def _subset_arg(text: str) -> int | None:
    if text.strip().lower() in ("all", "none", "full"):
        return None
    return _int_arg("proxy subset")(text)


def _choice_list(text: str) -> tuple[str, ...]:
    try:
        return parse_objectives(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _DefaultsFormatter(argparse.HelpFormatter):
    """Append ``(default: X)`` when there is a default worth showing and the help lacks one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or default == []
        ):
            return text
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        return f"{text} (default: {default})".strip()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m nas.search",
        description="Multi-objective architecture search over conv operators (Optuna). "
        "Running the same command again resumes the study.",
        formatter_class=_DefaultsFormatter,
    )
    g = p.add_argument_group("budgets (a broken budget makes a trial infeasible)")
    g.add_argument(
        "--budget",
        type=arg_flops,
        metavar="FLOPS",
        help="max FLOPs (multiply-adds at --resolution): 2GFLOPs, 500MFLOPs, 2e9, 2G",
    )
    g.add_argument("--max-params", type=arg_count, metavar="N", help="max parameters: 10M, 2.5M")
    g.add_argument(
        "--max-latency",
        type=arg_latency,
        metavar="TIME",
        help="max measured latency on --device: 15ms, 0.5s",
    )
    g = p.add_argument_group("search space")
    g.add_argument(
        "--backbone",
        default="resnet50",
        help="cifar_resnet20/32/44/56/110, resnet50_cifar or any torchvision model",
    )
    g.add_argument("--slots", default="all", choices=SLOT_POLICY_NAMES,
                   help="searchable convolutions: all, or spatial (k>1) only")  # fmt: skip
    g.add_argument(
        "--ops",
        default="conv,scconv,oct,linear",
        help="operator menu, e.g. 'conv,scconv(a=0.5,r=2,g=2),oct(a=0.25|0.5)'",
    )
    g.add_argument("--resolution", type=_int_arg("resolution", 8), default=None,
                   help="input size for costs (default: the backbone's, 224 or 32)")  # fmt: skip
    g = p.add_argument_group("proxy evaluation")
    g.add_argument(
        "--dataset",
        default=None,
        help="cifar10, cifar10-sample (2,500 images shipped in the package), cifar100, "
        "imagefolder:<path>, synthetic[:<classes>] (default: cifar10; when it is neither in "
        "--data-dir nor downloadable, the bundled cifar10-sample)",
    )
    g.add_argument("--data-dir", default="data", help="where datasets are found/downloaded")
    g.add_argument("--no-download", action="store_true", help="never download a dataset")
    g.add_argument(
        "--proxy-epochs",
        type=_int_arg("proxy epochs"),
        default=2,
        help="training epochs of a fully evaluated candidate",
    )
    g.add_argument("--proxy-subset", type=_subset_arg, default=3500, metavar="N|all",
                   help="training images used by the proxy (default: 3500)")  # fmt: skip
    g.add_argument("--proxy-score", choices=PROXY_SCORES, default="loss",
                   help="the accuracy objective: loss = exp(-validation loss), which ranked "
                   "networks like 30-epoch training best (README), or accuracy = validation "
                   "top-1 (default: loss)")  # fmt: skip
    g.add_argument(
        "--proxy-resolution",
        type=_int_arg("proxy resolution", 8),
        default=None,
        help="input size during proxy training (default: --resolution, e.g. 224 for resnet50: "
        "CIFAR images are upsampled; 32 costs 49x fewer FLOPs)",
    )
    g.add_argument(
        "--batch-size", type=_int_arg("batch size"), default=64, help="proxy training batch"
    )
    g.add_argument(
        "--fidelities",
        default="auto",
        metavar="auto|off|E1,E2,...",
        help="epoch rungs for early stopping (auto: halving down from proxy epochs)",
    )
    g.add_argument(
        "--evaluator",
        default=None,
        metavar="supernet|PKG.MODULE:FUNCTION",
        help="'supernet' (one weight-sharing network trained once, every candidate scored on "
        "it) or a custom evaluator called as f(arch, eval_config, fidelity=epochs) "
        "-> Metrics (default: proxy training of each candidate)",
    )
    g.add_argument(
        "--evaluator-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to the evaluator in EvalConfig.extra (repeatable)",
    )
    g.add_argument(
        "--supernet-finetune",
        type=_int_arg("supernet finetune epochs"),
        default=None,
        metavar="N",
        help="with --evaluator supernet: after the search, fine-tune each Pareto member N "
        "epochs from its supernet weights and record both scores (a rerun fine-tunes the "
        "members not fine-tuned yet)",
    )
    g.add_argument("--rerank", type=_int_arg("rerank seeds"), default=None, metavar="K",
                   help="after the search, score the trials of the front and the layer behind "
                   "it again with K more seeds and export the front of their mean scores "
                   "(README: 'Re-ranking the front'; a rerun adds only missing seeds)")  # fmt: skip
    g = p.add_argument_group("search")
    g.add_argument(
        "--objectives",
        type=_choice_list,
        default=OBJECTIVE_NAMES,
        metavar="LIST",
        help="comma-separated: accuracy,flops,params,latency",
    )
    g.add_argument(
        "--sampler",
        default="tpe",
        choices=SAMPLER_NAMES,
        help="Optuna sampler, seeded by --seed. tpe: models each slot's choices from the "
        "trials so far, the constraint included; a good default for a few dozen trials. "
        "nsga2: evolves a population of 20; cheaper per proposal, and as good or better from "
        "about 50 evaluated trials on in experiments/results/budget_search.md and "
        "search_efficiency.md. random: a baseline; under a tight budget it finds feasible "
        "architectures only through --repair",
    )
    g.add_argument(
        "--trials",
        type=_int_arg("trials"),
        default=50,
        help="evaluated trials the study should have (resuming counts earlier ones); a "
        "proposal over --budget/--max-params is recorded as infeasible but not counted, and "
        "another is proposed (see --repair)",
    )
    g.add_argument(
        "--max-rejections",
        type=_int_arg("max rejections"),
        default=200,
        metavar="N",
        help="stop (exit code 1) after N proposals in a row break --budget/--max-params",
    )
    g.add_argument(
        "--repair",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after a proposal over --budget/--max-params, evaluate it next, changed to fit "
        "(random slots made cheaper); --no-repair: let the sampler alone propose again "
        "(default: on)",
    )
    g.add_argument(
        "--timeout",
        type=arg_duration,
        default=None,
        metavar="TIME",
        help="stop starting new trials after this long: 3600, 30m, 2h",
    )
    g.add_argument("--seed", type=_int_arg("seed", 0), default=0,
                   help="seeds the sampler, the proxy split, weights and data order")  # fmt: skip
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g = p.add_argument_group("storage and output")
    g.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help="database URL, SQLite file (*.db) or journal file (*.log)",
    )
    g.add_argument(
        "--study",
        default=None,
        help="study name (default: derived from the settings, so reruns resume)",
    )
    g.add_argument("--out", default=None, help="output folder (default: runs/<study>/)")
    g = p.add_argument_group("backend (how trials run; either backend resumes the same study)")
    g.add_argument(
        "--backend",
        default="optuna",
        choices=BACKEND_NAMES,
        help="optuna: trials in this process; ray: --workers search workers placed by Ray Tune",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to join: auto, ray://host:10001 (default: start a local Ray)",
    )
    g.add_argument(
        "--workers",
        type=_int_arg("workers"),
        default=None,
        help="concurrent Ray workers (default: 2; needs --backend ray)",
    )
    g.add_argument(
        "--cpus-per-worker",
        type=_float_arg("cpus per worker", positive=True),
        default=None,
        help="CPUs Ray reserves for each worker (default: 1; needs --backend ray)",
    )
    g.add_argument(
        "--gpus-per-worker",
        type=_float_arg("gpus per worker", positive=False),
        default=None,
        help="GPUs per worker, fractions allowed (default: 1 if the cluster has GPUs, else 0; "
        "needs --backend ray)",
    )
    return p


def _float_arg(name: str, *, positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            bound = "> 0" if positive else ">= 0"
            raise argparse.ArgumentTypeError(f"{name} must be a number {bound}, got {text!r}")
        return value

    parse.__name__ = name
    return parse


def _config_from_args(args: argparse.Namespace) -> SearchConfig:
    return SearchConfig(
        max_flops=args.budget,
        max_params=args.max_params,
        max_latency_ms=args.max_latency,
        backbone=args.backbone,
        slots=args.slots,
        ops=args.ops,
        resolution=args.resolution,
        dataset="cifar10" if args.dataset is None else args.dataset,
        data_dir=args.data_dir,
        download=not args.no_download,
        proxy_epochs=args.proxy_epochs,
        proxy_subset=args.proxy_subset,
        proxy_resolution=args.proxy_resolution,
        proxy_score=args.proxy_score,
        batch_size=args.batch_size,
        fidelities=args.fidelities,
        objectives=tuple(args.objectives),
        sampler=args.sampler,
        trials=args.trials,
        max_rejections=args.max_rejections,
        repair=args.repair,
        timeout_s=args.timeout,
        seed=args.seed,
        device=args.device,
        storage=args.storage,
        study=args.study,
        out=args.out,
        evaluator=args.evaluator,
        evaluator_options=parse_evaluator_options(args.evaluator_option),
        supernet_finetune=args.supernet_finetune,
        rerank=args.rerank,
        backend=args.backend,
        ray_address=args.ray_address,
        workers=2 if args.workers is None else args.workers,
        cpus_per_worker=1.0 if args.cpus_per_worker is None else args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
    )


def _join_negative_values(words: Sequence[str]) -> list[str]:
    """``--budget -1G`` -> ``--budget=-1G`` so argparse reports the value, not a missing one."""
    out: list[str] = []
    for w in words:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"-\.?\d", w):
            out[-1] = f"{out[-1]}={w}"
        else:
            out.append(w)
    return out


#: Ctrl-C before the study exists (while the space is built and priced, the data checked).
_INTERRUPTED_EARLY = (
    "\ninterrupted before the first trial; no study and no output folder were created "
    "(run the command again to start the search)"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv))
    try:
        given = ("workers", "cpus_per_worker", "gpus_per_worker")
        _refuse_ray_only(args.backend, {k: getattr(args, k) for k in given}, flags=True)
        config = _config_from_args(args)
        plan = prepare(config, sample_fallback=args.dataset is None)
        from nas.backends.ray_backend import RayUnavailable
    except ValueError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # building the space, pricing it, checking the data
        print(_INTERRUPTED_EARLY, file=sys.stderr)
        return 130
    import shlex

    words = sys.argv[1:] if argv is None else list(argv)
    command = "python -m nas.search " + " ".join(shlex.quote(w) for w in words)
    try:
        result = execute(plan, stream=sys.stdout, export=True, command=command)
    except InterruptedBeforeStudy:
        print(_INTERRUPTED_EARLY, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; run the same command again to resume study '{plan.study}'",
            file=sys.stderr,
        )
        return 130
    except RayUnavailable as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    if result.rejections_exhausted:
        print(f"{parser.prog}: error: stopped: {result.stop_reason}", file=sys.stderr)
        return 1
    return 0 if result.n_complete > 0 else 1


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
