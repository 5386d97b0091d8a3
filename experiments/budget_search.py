"""Benchmark: what a tight FLOPs budget costs the search, per sampler, with and without repair.

The product's main use, ResNet-50 at 224x224 (52 slots, the default operator menu) under
``--budget 2GFLOPs`` (the space spans 1.07 to 4.11 GFLOPs; a uniformly random architecture is
2.5 to 3.7), searched with the cheap deterministic surrogate evaluator
(``experiments.surrogate:evaluate``) for ``--trials`` *evaluated* trials. Each search runs the
real engine (:func:`nas.runner.build_engine` on :func:`nas.plan.prepare`'s plan: what
``python -m nas.search`` runs) and records, per sampler (tpe, nsga2, random) and repair
setting (``--repair`` off/on), over several seeds:

* the share of proposals rejected (over budget, told to the study as infeasible, not counted);
* the share of evaluated (counted) trials that are feasible;
* the proposal overhead per evaluated trial: CPU time (``time.thread_time`` of the search
  thread) and wall time spent on rejected proposals, divided by the evaluated trials;
* the hypervolume of the feasible front after every ``--step`` evaluated trials (objectives
  scaled as in :mod:`experiments.search_efficiency`, reference point (0, 1, 1)).

Variants are interleaved (seed by seed), one thread. Writes
``experiments/results/budget_search.{md,json}`` (the JSON after every search).

    python experiments/budget_search.py                      # 3 samplers x 2 x 3 seeds x 50
    python experiments/budget_search.py --samplers tpe --seeds 1 --trials 10   # a quick look
    python experiments/budget_search.py --report experiments/results/budget_search.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._machine import command_line, machine_description  # noqa: E402
from experiments.search_efficiency import normalise  # noqa: E402

OBJECTIVES = ("accuracy", "flops", "params")


def one_search(
    sampler: str, seed: int, repair: bool, trials: int, budget: str, tmp: str, step: int
) -> dict:
    """Run one search; its counts, timings and hypervolume curve over evaluated trials."""
    from nas.backends.optuna_backend import hypervolume, load_rows
    from nas.config import SearchConfig
    from nas.plan import prepare
    from nas.runner import build_engine
    from nas.units import parse_flops

    name = f"{sampler}-{'repair' if repair else 'plain'}-{seed}"
    config = SearchConfig(
        max_flops=parse_flops(budget),
        backbone="resnet50",
        dataset="synthetic",
        evaluator="experiments.surrogate:evaluate",
        objectives=OBJECTIVES,
        sampler=sampler,
        seed=seed,
        trials=trials,
        repair=repair,
        storage=f"{tmp}/{name}.db",
        study=name,
        out=f"{tmp}/out-{name}",
    )
    plan = prepare(config)
    engine = build_engine(plan)
    engine.open()
    cost = {"rejected": [0.0, 0.0], "evaluated": [0.0, 0.0]}  # [cpu s, wall s]
    last = [time.thread_time(), time.perf_counter()]

    def on_trial(outcome, _summary) -> None:
        now = [time.thread_time(), time.perf_counter()]
        kind = "rejected" if outcome.status == "rejected" else "evaluated"
        cost[kind][0] += now[0] - last[0]
        cost[kind][1] += now[1] - last[1]
        last[:] = now

    t0 = time.perf_counter()
    summary = engine.run(trials, callback=on_trial)
    seconds = time.perf_counter() - t0

    rows, info = load_rows(plan.storage, plan.study)
    rows.sort(key=lambda r: r.number)
    space = info["convnas"]["space"]
    evaluated = [
        r for r in rows if r.state == "COMPLETE" and not r.user_attrs.get("rejected", False)
    ]
    n_feasible_eval = sum(r.feasible for r in evaluated)
    n_dup = sum("duplicate_of" in r.user_attrs for r in evaluated)
    ref = [0.0 if o == "accuracy" else 1.0 for o in OBJECTIVES]
    curve = []
    for k in range(step, trials + 1, step):
        pts = [
            [normalise(o, v, space, config.max_flops) for o, v in zip(OBJECTIVES, r.values)]
            for r in evaluated[:k]
            if r.feasible
        ]
        curve.append(hypervolume(pts, info["directions"], ref) if pts else 0.0)
    n_eval = len(evaluated)
    return {
        "sampler": sampler,
        "repair": repair,
        "seed": seed,
        "stop_reason": summary.stop_reason,
        "evaluated": n_eval,
        "rejected": summary.n_rejected,
        "feasible_evaluated": n_feasible_eval,
        "duplicates": n_dup,
        "share_rejected": summary.n_rejected / max(1, summary.n_rejected + n_eval),
        "share_feasible": n_feasible_eval / max(1, n_eval),
        "overhead_cpu_s": cost["rejected"][0] / max(1, n_eval),
        "overhead_wall_s": cost["rejected"][1] / max(1, n_eval),
        "evaluated_cpu_s": cost["evaluated"][0] / max(1, n_eval),
        "seconds": seconds,
        "hypervolume": curve,
    }


def _med_range(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}–" + (
        f"{format(max(values), fmt)})"
    )


def render(data: dict) -> list[str]:
    """The Markdown report of a results dict (what :func:`main` writes as JSON)."""
    runs, st = data["runs"], data["setting"]
    samplers = list(dict.fromkeys(r["sampler"] for r in runs))
    repairs = sorted({r["repair"] for r in runs})
    checkpoints = data["checkpoints"]
    lines = [
        f"# Search under a tight budget: ResNet-50 @224, --budget {st['budget']}",
        "",
        f"Machine: {data['machine']}",
        "",
        f"Command: `{data['command']}`",
        "",
        f"Date: {data['date']}",
        "",
        f"Setting: resnet50 at 224x224, all 52 slots, default operator menu, budget "
        f"{st['budget']} (the space spans 1.07 to 4.11 GFLOPs), objectives "
        "accuracy/FLOPs/params, evaluator `experiments.surrogate:evaluate`, "
        f"{st['trials']} evaluated trials per search (`--trials` counts evaluated candidates; "
        "a proposal over the budget is told to the study as infeasible and proposed again), "
        f"seeds {sorted({r['seed'] for r in runs})}, variants interleaved seed by seed, one "
        "thread, default `--max-rejections` 200. Median (range) over seeds. Overhead: time "
        "spent on rejected proposals (asking the sampler, pricing, storage writes, repair) "
        "divided by the evaluated trials, CPU (`time.thread_time`) and wall; the machine's "
        "two cores were shared with other jobs (CPU pressure ~99 %), so wall time is "
        "inflated several times.",
    ]
    if data.get("note"):
        lines += ["", data["note"]]
    lines += [
        "",
        "| sampler | repair | searches | rejected share of proposals | feasible share of "
        "evaluated | overhead CPU s / evaluated | overhead wall s / evaluated | reused "
        "(duplicates) | final HV | stopped |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for sampler in samplers:
        for repair in repairs:
            rs = [r for r in runs if r["sampler"] == sampler and r["repair"] == repair]
            if not rs:
                continue
            stops = sorted({"cap" if "in a row" in r["stop_reason"] else "done" for r in rs})
            lines.append(
                f"| {sampler} | {'on' if repair else 'off'} | {len(rs)} "
                f"| {_med_range([r['share_rejected'] for r in rs], '.0%')} "
                f"| {_med_range([r['share_feasible'] for r in rs], '.0%')} "
                f"| {_med_range([r['overhead_cpu_s'] for r in rs], '.3f')} "
                f"| {_med_range([r['overhead_wall_s'] for r in rs], '.3f')} "
                f"| {_med_range([float(r['duplicates']) for r in rs], '.0f')} "
                f"| {_med_range([r['hypervolume'][-1] for r in rs if r['hypervolume']], '.4f')} "
                f"| {', '.join(stops)} |"
            )
    variants = [(s, rp) for s in samplers for rp in repairs]
    variants = [v for v in variants if any((r["sampler"], r["repair"]) == v for r in runs)]
    lines += [
        "",
        "Hypervolume of the feasible front against evaluated trials (median (range) over "
        "seeds; a search stopped by the rejection cap keeps its last value):",
        "",
        "| evaluated | "
        + " | ".join(f"{s}{' +repair' if rp else ''}" for s, rp in variants)
        + " |",
        "|---:|" + "---:|" * len(variants),
    ]
    for i, k in enumerate(checkpoints):
        cells = []
        for sampler, repair in variants:
            rs = [r for r in runs if r["sampler"] == sampler and r["repair"] == repair]
            cells.append(_med_range([r["hypervolume"][i] for r in rs], ".4f"))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, +1, ...")
    p.add_argument("--step", type=int, default=10)
    p.add_argument("--budget", default="2GFLOPs")
    p.add_argument("--samplers", default="tpe,nsga2,random")
    p.add_argument("--repair", default="on,off", help="off, on or on,off")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--name", default="budget_search")
    p.add_argument("--report", type=Path, help="only write the Markdown of this results JSON")
    args = p.parse_args()
    if args.report is not None:
        data = json.loads(args.report.read_text())
        text = "\n".join(render(data))
        args.report.with_suffix(".md").write_text(text)
        print(text)
        return
    samplers = args.samplers.split(",")
    repairs = [r == "on" for r in args.repair.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": machine_description(),
        "command": command_line(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "setting": {
            "backbone": "resnet50",
            "resolution": 224,
            "slots": "all",
            "budget": args.budget,
            "objectives": list(OBJECTIVES),
            "evaluator": "experiments.surrogate:evaluate",
            "trials": args.trials,
            "seeds": args.seeds,
        },
        "checkpoints": list(range(args.step, args.trials + 1, args.step)),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        # interleaved: every variant once per seed
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for sampler in samplers:
                for repair in repairs:
                    r = one_search(sampler, seed, repair, args.trials, args.budget, tmp, args.step)
                    data["runs"].append(r)
                    # Written after every search, so a cut-short benchmark keeps what it ran.
                    (args.out / f"{args.name}.json").write_text(json.dumps(data, indent=2) + "\n")
                    print(
                        f"{sampler:6} repair={'on ' if repair else 'off'} seed {seed}: "
                        f"{r['evaluated']} evaluated ({r['duplicates']} reused), {r['rejected']} "
                        f"rejected, overhead {r['overhead_cpu_s']:.3f} s CPU "
                        f"{r['overhead_wall_s']:.3f} s wall per evaluated trial, final HV "
                        f"{r['hypervolume'][-1] if r['hypervolume'] else 0:.4f}, "
                        f"{r['seconds']:.0f} s; {r['stop_reason']}",
                        flush=True,
                    )
    text = "\n".join(render(data))
    (args.out / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
