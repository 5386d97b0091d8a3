"""Benchmark: early stopping on the fidelity ladder against always training to full fidelity.

Two arms, everything else equal (TPE, the same seed, the surrogate evaluator, proxy 4 epochs):

* ``full``: ``--fidelities off`` — every feasible candidate trains 4 epochs;
* ``halving``: ``--fidelities auto`` — rungs 1, 2, 4 epochs with the successive-halving rule of
  ``nas.backends.optuna_backend`` (a candidate stops when more than half of the candidates
  that cost at most 5 % more FLOPs were more accurate after the same training).

Time is charged as a search on a GPU would spend it: the measured wall time of the search
itself (sampler, storage, cost model) plus the proxy training the surrogate stands in for,
``--epoch-seconds`` + ``--gflop-epoch-seconds`` x GFLOPs per epoch actually trained (a
promoted candidate resumes, so its epochs are charged once). Training is simulated rather than
slept so that the ratio of training to search overhead is the real one (minutes against a
fraction of a second) and the benchmark still runs in minutes. The halving arm runs more
trials so that both arms cover the same charged time; the fronts are compared at equal
charged time. A front is scored by re-scoring every feasible architecture an arm found by
then at the full 4 epochs (what retraining the found architectures gives; the surrogate is
deterministic) and taking the hypervolume (objectives scaled as in
``search_efficiency.normalise``). Writes ``experiments/results/fidelity_benchmark.{md,json,png}``.

    python experiments/fidelity_benchmark.py
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._machine import command_line, machine_description  # noqa: E402
from experiments.search_efficiency import normalise  # noqa: E402

ARMS = {"full": "off", "halving": "auto"}


def charged_times(rows, epoch_s: float, gflop_epoch_s: float) -> list[tuple[float, object]]:
    """(charged time at completion, row) for every finished trial, in completion order."""
    done = sorted((r for r in rows if r.completed_at is not None), key=lambda r: r.completed_at)
    if not done:
        return []
    t0 = min(r.completed_at for r in done)
    train = 0.0
    out = []
    for r in done:
        ua = r.user_attrs
        if r.state == "COMPLETE" and "duplicate_of" not in ua:
            epochs = int(ua.get("fidelity") or 0)
            train += epochs * (epoch_s + gflop_epoch_s * ua["flops"] / 1e9)
        out.append((r.completed_at - t0 + train, r))
    return out


def full_fidelity_hv(rows, epochs: int, objectives, directions, budget: float, space: dict):
    """Hypervolume of the feasible architectures in ``rows``, re-scored at ``epochs``."""
    from evaluators.objectives import EvalConfig
    from experiments.surrogate import evaluate
    from nas.backends.optuna_backend import hypervolume
    from search_spaces.arch import Architecture

    cfg = EvalConfig(dataset="synthetic", proxy_epochs=epochs)
    seen, pts = set(), []
    for r in rows:
        if not (r.state == "COMPLETE" and r.feasible) or r.user_attrs["arch_id"] in seen:
            continue
        seen.add(r.user_attrs["arch_id"])
        m = evaluate(Architecture.from_dict(json.loads(r.user_attrs["arch"])), cfg, fidelity=epochs)
        vals = {
            "accuracy": m.accuracy,
            "flops": m.flops,
            "params": m.params,
            "latency": m.latency_ms,
        }
        pts.append([normalise(o, vals[o], space, budget) for o in objectives])
    ref = [0.0 if o == "accuracy" else 1.0 for o in objectives]
    return hypervolume(pts, directions, ref) if pts else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=80, help="trials of the full arm")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--epoch-seconds", type=float, default=5.0)
    p.add_argument("--gflop-epoch-seconds", type=float, default=250.0)
    p.add_argument("--budget", default="25MFLOPs")
    p.add_argument("--backbone", default="cifar_resnet20")
    p.add_argument("--objectives", default="accuracy,flops,params,latency")
    p.add_argument("--sampler", default="tpe")
    p.add_argument("--points", type=int, default=10, help="time points compared")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args()

    from nas.backends.optuna_backend import load_rows
    from nas.search import run_search
    from nas.units import parse_flops

    budget = parse_flops(args.budget)
    runs: dict[str, list[dict]] = {a: [] for a in ARMS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            timelines = {}
            for arm, fidelities in ARMS.items():
                storage = f"{tmp}/{arm}-{seed}.db"
                t0 = time.time()
                trials = args.trials if arm == "full" else int(args.trials * 1.6)
                res = run_search(
                    budget=args.budget,
                    backbone=args.backbone,
                    dataset="synthetic",
                    objectives=args.objectives,
                    evaluator="experiments.surrogate:evaluate",
                    proxy_epochs=args.epochs,
                    fidelities=fidelities,
                    sampler=args.sampler,
                    seed=seed,
                    trials=trials,
                    storage=storage,
                    study=f"{arm}-{seed}",
                    out=f"{tmp}/out",
                    export=False,
                    stream=io.StringIO(),
                )
                rows, info = load_rows(storage, res.study)
                timelines[arm] = (
                    charged_times(rows, args.epoch_seconds, args.gflop_epoch_seconds),
                    info,
                    time.time() - t0,
                )
            horizon = min(tl[-1][0] for tl, _, _ in timelines.values())
            grid = [horizon * (i + 1) / args.points for i in range(args.points)]
            for arm, (tl, info, wall) in timelines.items():
                space = info["convnas"]["space"]
                curve = []
                for t in grid:
                    found = [r for tc, r in tl if tc <= t]
                    curve.append(
                        full_fidelity_hv(
                            found,
                            args.epochs,
                            info["objectives"],
                            info["directions"],
                            budget,
                            space,
                        )
                    )
                upto = [r for tc, r in tl if tc <= horizon]
                trained = [
                    r
                    for r in upto
                    if r.state == "COMPLETE" and r.feasible and "duplicate_of" not in r.user_attrs
                ]
                item = {
                    "seed": seed,
                    "horizon_h": horizon / 3600,
                    "trials": len(upto),
                    "trained": len(trained),
                    "stopped_early": sum(
                        int(r.user_attrs.get("fidelity") or 0) < args.epochs for r in trained
                    ),
                    "epochs_trained": sum(int(r.user_attrs.get("fidelity") or 0) for r in trained),
                    "hv": curve[-1],
                    "curve": curve,
                    "grid_h": [t / 3600 for t in grid],
                    "benchmark_wall_s": wall,
                }
                runs[arm].append(item)
                print(
                    f"{arm:8s} seed {seed}: within {horizon / 3600:.2f} h charged: "
                    f"{item['trials']} trials, {item['trained']} trained "
                    f"({item['stopped_early']} stopped early, {item['epochs_trained']} "
                    f"epochs), HV {item['hv']:.4f}  [{wall:.0f} s]",
                    flush=True,
                )

    def ms(key: str, arm: str, fmt: str) -> str:
        vals = [float(r[key]) for r in runs[arm]]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{statistics.mean(vals):{fmt}} ± {sd:{fmt}}"

    args.out.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": machine_description(),
        "command": command_line(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": runs,
    }
    (args.out / "fidelity_benchmark.json").write_text(json.dumps(data, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
    frac = [(i + 1) / args.points for i in range(args.points)]
    for arm in ARMS:
        curves = [r["curve"] for r in runs[arm]]
        m = [statistics.mean(c[i] for c in curves) for i in range(args.points)]
        sd = [
            statistics.stdev(c[i] for c in curves) if len(curves) > 1 else 0.0
            for i in range(args.points)
        ]
        label = "halving (rungs 1/2/4 epochs)" if arm == "halving" else "full (4 epochs)"
        ax.plot(frac, m, marker="o", ms=3, label=label)
        ax.fill_between(
            frac, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)], alpha=0.15
        )
    ax.set_xlabel("charged time (fraction of the full arm's total)")
    ax.set_ylabel("hypervolume of the front found\n(re-scored at full fidelity)")
    ax.set_title(
        f"Early stopping vs full fidelity at equal time ({args.seeds} seeds, "
        f"{args.backbone}, {args.budget})",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "fidelity_benchmark.png")

    wins = sum(h["hv"] > f["hv"] for h, f in zip(runs["halving"], runs["full"]))
    lines = [
        "# Fidelity ladder: early stopping against full-fidelity training",
        "",
        f"Machine: {machine_description()}",
        "",
        f"Command: `{command_line()}`",
        "",
        f"Setting: {args.backbone}, all slots, default operator menu, budget {args.budget}, "
        f"objectives {args.objectives}, sampler {args.sampler}, proxy {args.epochs} epochs, "
        "evaluator `experiments.surrogate:evaluate`. Charged time = measured search overhead + "
        f"{args.epoch_seconds:g} s + {args.gflop_epoch_seconds:g} s/GFLOP per epoch trained "
        f"(simulated). `full`: `--fidelities off`, {args.trials} trials; `halving`: "
        f"`--fidelities auto` (rungs 1, 2, {args.epochs}), {int(args.trials * 1.6)} trials; "
        "both compared up to the charged time the shorter run took. HV: hypervolume of every "
        "feasible architecture found, re-scored at the full proxy epochs. Mean ± sd over "
        f"{args.seeds} seeds.",
        "",
        "Totals up to the common charged time:",
        "",
        "| arm | charged time (h) | trials | trained | stopped early | epochs trained |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arm in ARMS:
        lines.append(
            f"| {arm} | {ms('horizon_h', arm, '.2f')} | {ms('trials', arm, '.1f')} | "
            f"{ms('trained', arm, '.1f')} | {ms('stopped_early', arm, '.1f')} | "
            f"{ms('epochs_trained', arm, '.1f')} |"
        )
    marks = [i for i in range(args.points) if (i + 1) * 10 // args.points in (1, 3, 5, 10)]
    lines += [
        "",
        "Hypervolume of the front found by a fraction of that time:",
        "",
        "| arm | " + " | ".join(f"{(i + 1) / args.points:.0%} of the time" for i in marks) + " |",
        "|---|" + "---:|" * len(marks),
    ]
    for arm in ARMS:
        cells = []
        for i in marks:
            vals = [r["curve"][i] for r in runs[arm]]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.4f} ± {sd:.4f}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    early = [i for i in marks if i < args.points - 1]
    early_wins = {
        i: sum(h["curve"][i] > f["curve"][i] for h, f in zip(runs["halving"], runs["full"]))
        for i in early
    }
    lines += [
        "",
        "Seeds where halving's front is better: "
        + ", ".join(f"{early_wins[i]}/{args.seeds} at {(i + 1) / args.points:.0%}" for i in early)
        + f", {wins}/{args.seeds} at 100 %.",
        "",
        "![hypervolume against charged time](fidelity_benchmark.png)",
        "",
    ]
    (args.out / "fidelity_benchmark.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
