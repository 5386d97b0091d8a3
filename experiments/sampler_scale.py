"""Benchmark: the samplers' own time per trial at 100, 1,000 and 3,000 trials.

With ``--evaluator supernet`` a candidate costs seconds, so a search of thousands of trials
is affordable and the time the sampler itself takes to propose a trial starts to matter.
This measures only that: the product's samplers (:func:`nas.backends.samplers.make_sampler`:
``tpe``, ``nsga2`` with a population of 20, ``random``, seeded) asked and told as the engine
does (one ``CategoricalDistribution`` per slot with the readable choice labels, fixed
distributions passed to ``study.ask``), over the real cifar_resnet20 space (20 slots, the
default 10-operator menu, 32x32), objectives accuracy (maximised) and FLOPs (minimised).

The score is a cheap deterministic stand-in computed outside the timed region: FLOPs from the
analytic cost model, accuracy a fixed random value per (slot, choice) summed over the slots
plus a FLOPs term (so the front is not trivial). No storage is timed either: the study lives
in memory. What is timed, with ``time.thread_time`` on one thread, is ``study.ask`` plus
``study.tell`` of each trial: the sampler's proposal and its bookkeeping.

The samplers are interleaved: each advances ``--chunk`` trials in turn, so machine load
drifts over all of them alike. Per checkpoint (100, 1,000, 3,000 trials) the report gives
the median and range of the per-trial time over the ``--window`` trials ending there, and
the total sampler time up to it. Writes ``experiments/results/sampler_scale.{md,json}``.

    python experiments/sampler_scale.py                       # 3 samplers to 3,000 trials
    python experiments/sampler_scale.py --trials 300 --checkpoints 100,300   # a quick look
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._machine import command_line, machine_description  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class StandIn:
    """A deterministic stand-in score over a space's choices (computed outside the timing)."""

    def __init__(self, choices: dict, cost_of_labels, seed: int = 0) -> None:  # noqa: ANN001
        rng = random.Random(seed)
        self.gain = {(p, c): rng.uniform(-0.01, 0.01) for p, cs in choices.items() for c in cs}
        self.cost_of_labels = cost_of_labels

    def __call__(self, labels: dict) -> tuple[float, float]:
        flops = float(self.cost_of_labels(labels).flops)
        acc = 0.6 + sum(self.gain[(p, c)] for p, c in labels.items()) + 0.05 * flops / 4e7
        return acc, flops


def run(args: argparse.Namespace) -> dict:
    import optuna
    from optuna.distributions import CategoricalDistribution

    from evaluators.cost import get_cost_model
    from nas.backends.samplers import make_sampler
    from search_spaces.space import SearchSpace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace("cifar_resnet20")
    choices = {p: tuple(c) for p, c in space.choices.items()}
    cost_model = get_cost_model("cifar_resnet20", 10, space.resolution, "all")
    score = StandIn(choices, cost_model.cost_of_labels)
    distributions = {p: CategoricalDistribution(c) for p, c in choices.items()}
    studies = {
        name: optuna.create_study(
            directions=["maximize", "minimize"], sampler=make_sampler(name, args.seed)
        )
        for name in args.samplers
    }
    times: dict[str, list[float]] = {name: [] for name in args.samplers}
    t_start = time.perf_counter()
    done = 0
    while done < args.trials:
        n = min(args.chunk, args.trials - done)
        for name, study in studies.items():  # interleaved: a chunk each in turn
            for _ in range(n):
                t0 = time.thread_time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    trial = study.ask(distributions)
                t1 = time.thread_time()
                values = score({p: trial.params[p] for p in choices})
                t2 = time.thread_time()
                study.tell(trial, list(values))
                t3 = time.thread_time()
                times[name].append((t1 - t0) + (t3 - t2))
        done += n
        per = ", ".join(f"{k} {statistics.median(v[-n:]) * 1e3:.2f} ms" for k, v in times.items())
        print(f"{done} trials: {per} ({time.perf_counter() - t_start:.0f} s)", flush=True)
    result = {}
    for name in args.samplers:
        t = times[name]
        result[name] = {
            str(k): {
                "median_ms": statistics.median(t[k - args.window : k]) * 1e3,
                "min_ms": min(t[k - args.window : k]) * 1e3,
                "max_ms": max(t[k - args.window : k]) * 1e3,
                "total_s": sum(t[:k]),
            }
            for k in args.checkpoints
            if k <= len(t)
        }
    return {
        "machine": machine_description(),
        "command": command_line(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "setting": {
            "space": f"cifar_resnet20 @{space.resolution}, {len(choices)} slots, "
            f"{len(space.menu)} operators (default menu)",
            "objectives": ["accuracy", "flops"],
            "samplers": list(args.samplers),
            "seed": args.seed,
            "trials": args.trials,
            "chunk": args.chunk,
            "window": args.window,
        },
        "wall_s": time.perf_counter() - t_start,
        "per_trial_ms": {k: [round(x * 1e3, 4) for x in v] for k, v in times.items()},
        "checkpoints": result,
    }


def render(data: dict) -> list[str]:
    st = data["setting"]
    cps = sorted({int(k) for r in data["checkpoints"].values() for k in r})
    lines = [
        f"# The samplers' own time per trial, up to {st['trials']:,} trials",
        "",
        f"Machine: {data['machine']}",
        "",
        f"Command: `{data['command']}`",
        "",
        f"Date: {data['date']}",
        "",
        f"Setting: {st['space']}, objectives accuracy (max) and FLOPs (min), the product's "
        "samplers (`nas.backends.samplers.make_sampler`, seed "
        f"{st['seed']}) asked with the engine's fixed categorical distributions, a "
        "deterministic stand-in score (analytic FLOPs, a fixed random accuracy per choice) "
        "computed outside the timing, an in-memory study (no storage timed). Time per trial: "
        "`time.thread_time` of `study.ask` + `study.tell`, one thread; samplers interleaved "
        f"in chunks of {st['chunk']} trials. Median (range) over the {st['window']} trials "
        f"ending at each count; total: the sampler time of all trials up to it. Wall time of "
        f"the whole run: {data['wall_s']:.0f} s on the shared 2-core VM.",
        "",
        "| sampler | "
        + " | ".join(f"ms per trial at {k:,}" for k in cps)
        + " | "
        + " | ".join(f"total s to {k:,}" for k in cps)
        + " |",
        "|---|" + "---:|" * (2 * len(cps)),
    ]
    for name, r in data["checkpoints"].items():
        cells = [
            f"{r[str(k)]['median_ms']:.2f} ({r[str(k)]['min_ms']:.2f}–{r[str(k)]['max_ms']:.2f})"
            if str(k) in r
            else "-"
            for k in cps
        ]
        totals = [f"{r[str(k)]['total_s']:.1f}" if str(k) in r else "-" for k in cps]
        lines.append(f"| {name} | " + " | ".join(cells + totals) + " |")
    if data.get("note"):
        lines += ["", data["note"]]
    return lines


def _check(args: argparse.Namespace) -> str | None:
    """One sentence naming a bad argument (None: all good); parses the lists in place."""
    from nas.backends.samplers import SAMPLERS

    args.samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    bad = [s for s in args.samplers if s not in SAMPLERS]
    if not args.samplers or bad:
        return f"--samplers {','.join(bad) or repr('')} must name samplers of {', '.join(SAMPLERS)}"
    for name in ("trials", "chunk", "window"):
        if getattr(args, name) < 1:
            return f"--{name} must be a positive integer, got {getattr(args, name)}"
    try:
        args.checkpoints = [int(x) for x in args.checkpoints.split(",")]
    except ValueError:
        return f"--checkpoints must be comma-separated integers, got {args.checkpoints!r}"
    wrong = [k for k in args.checkpoints if not args.window <= k <= args.trials]
    if wrong:
        return (
            f"--checkpoints {wrong[0]} must lie between --window {args.window} and --trials "
            f"{args.trials}"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samplers", default="tpe,nsga2,random")
    p.add_argument("--trials", type=int, default=3000)
    p.add_argument("--checkpoints", default="100,1000,3000")
    p.add_argument("--chunk", type=int, default=50)
    p.add_argument("--window", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "sampler_scale"))
    p.add_argument("--report", default=None, help="re-render the Markdown of a JSON result")
    args = p.parse_args(argv)
    if args.report:
        if not Path(args.report).is_file():
            p.exit(2, f"sampler_scale: error: --report {args.report!r} is not a file\n")
        data = json.loads(Path(args.report).read_text())
    else:
        problem = _check(args)
        if problem:
            p.exit(2, f"sampler_scale: error: {problem}\n")
        data = run(args)
        Path(args.out + ".json").write_text(json.dumps(data, indent=1) + "\n")
    out = Path(args.report).with_suffix(".md") if args.report else Path(args.out + ".md")
    out.write_text("\n".join(render(data)) + "\n")
    print("\n".join(render(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
