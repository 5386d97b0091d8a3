"""Benchmark: hypervolume against number of trials for the tpe, nsga2 and random samplers.

Runs the real search engine (``nas.run_search``, i.e. ``python -m nas.search``) with the cheap
deterministic surrogate evaluator (``--evaluator experiments.surrogate:evaluate``) — by default
on CIFAR-ResNet-20 at 32x32, all slots, the default operator menu, ``--budget 25MFLOPs`` (the
space spans 7.6 to 41 MFLOPs), all four objectives — for several seeds per sampler, then
computes the hypervolume of the feasible Pareto front after every ``--step`` trials with a
fixed reference point, and writes ``experiments/results/search_efficiency.{md,json,png}``.

    python experiments/search_efficiency.py        # 3 samplers x 3 seeds x 100 trials
    python experiments/search_efficiency.py --backbone resnet50 --budget 2GFLOPs --trials 60

Hypervolume is Optuna's (``optuna._hypervolume.compute_hypervolume``, via
``nas.backends.optuna_backend.hypervolume``) on objectives scaled to the feasible region
(:func:`normalise`): accuracy as is (reference 0); FLOPs from the cheapest architecture (0) to
the budget (1); params from the smallest to the largest architecture; latency / 15 ms.
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

SAMPLERS = ("tpe", "nsga2", "random")
LATENCY_REF_MS = 15.0


def normalise(objective: str, value: float, space: dict, budget: float) -> float:
    """Objective value scaled so the feasible region spans [0, 1] (accuracy unchanged).

    FLOPs from the space's cheapest architecture (0) to the budget (1), params from the
    smallest to the largest architecture, latency in units of ``LATENCY_REF_MS``; the
    hypervolume reference point is then (accuracy 0, 1, 1, 1).
    """
    if objective == "accuracy":
        return value
    if objective == "flops":
        return (value - space["min_flops"]) / (budget - space["min_flops"])
    if objective == "params":
        return (value - space["min_params"]) / (space["max_params"] - space["min_params"])
    return value / LATENCY_REF_MS


def hv_curve(storage: str, study: str, checkpoints: list[int], budget: float) -> list[float]:
    """Hypervolume of the feasible front of the first k trials, for each k in checkpoints."""
    from nas.backends.optuna_backend import hypervolume, load_rows

    rows, info = load_rows(storage, study)
    rows.sort(key=lambda r: r.number)
    space = info["convnas"]["space"]
    objectives = info["objectives"]
    directions = info["directions"]
    ref = [0.0 if o == "accuracy" else 1.0 for o in objectives]
    out = []
    for k in checkpoints:
        pts = [
            [normalise(o, v, space, budget) for o, v in zip(objectives, r.values)]
            for r in rows[:k]
            if r.state == "COMPLETE" and r.feasible
        ]
        out.append(hypervolume(pts, directions, ref) if pts else 0.0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--step", type=int, default=10)
    p.add_argument("--budget", default="25MFLOPs")
    p.add_argument("--backbone", default="cifar_resnet20")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args()

    from nas.search import run_search
    from nas.units import parse_flops

    budget = parse_flops(args.budget)
    checkpoints = list(range(args.step, args.trials + 1, args.step))
    curves: dict[str, list[list[float]]] = {s: [] for s in SAMPLERS}
    seconds: dict[str, list[float]] = {s: [] for s in SAMPLERS}
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in SAMPLERS:
            for seed in range(args.seeds):
                storage = f"{tmp}/{sampler}-{seed}.db"
                t0 = time.perf_counter()
                res = run_search(
                    budget=args.budget,
                    backbone=args.backbone,
                    dataset="synthetic",
                    evaluator="experiments.surrogate:evaluate",
                    sampler=sampler,
                    seed=seed,
                    trials=args.trials,
                    storage=storage,
                    study=f"{sampler}-{seed}",
                    out=f"{tmp}/out-{sampler}-{seed}",
                    export=False,
                    stream=io.StringIO(),
                )
                seconds[sampler].append(time.perf_counter() - t0)
                curve = hv_curve(storage, res.study, checkpoints, budget)
                curves[sampler].append(curve)
                print(
                    f"{sampler} seed {seed}: {res.n_complete} trials, {res.n_feasible} "
                    f"feasible, final HV {curve[-1]:.4f}, {seconds[sampler][-1]:.0f} s",
                    flush=True,
                )

    def mean_sd(values: list[float]) -> tuple[float, float]:
        return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    args.out.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": machine_description(),
        "command": command_line(),
        "setting": {
            "backbone": args.backbone,
            "slots": "all",
            "budget": budget,
            "objectives": ["accuracy", "flops", "params", "latency"],
            "evaluator": "experiments.surrogate:evaluate",
            "trials": args.trials,
            "seeds": args.seeds,
        },
        "checkpoints": checkpoints,
        "hypervolume": curves,
        "seconds": seconds,
    }
    (args.out / "search_efficiency.json").write_text(json.dumps(data, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
    for sampler in SAMPLERS:
        stats = [mean_sd([c[i] for c in curves[sampler]]) for i in range(len(checkpoints))]
        m = [s[0] for s in stats]
        sd = [s[1] for s in stats]
        ax.plot(checkpoints, m, marker="o", ms=3, label=sampler)
        ax.fill_between(
            checkpoints, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)], alpha=0.15
        )
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume (normalised, feasible front)")
    ax.set_title(
        f"{args.backbone}, budget {args.budget}, surrogate evaluator, "
        f"{args.seeds} seeds (mean ± sd)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "search_efficiency.png")

    lines = [
        "# Search efficiency: hypervolume against trials",
        "",
        f"Machine: {machine_description()}",
        "",
        f"Command: `{command_line()}`",
        "",
        f"Setting: {args.backbone} at its default resolution, all slots, default operator "
        "menu, budget "
        f"{args.budget}, objectives accuracy/FLOPs/params/latency, evaluator "
        "`experiments.surrogate:evaluate` (deterministic surrogate: real FLOPs and params from "
        "the cost model, accuracy and latency from the operator mix), "
        f"{args.seeds} seeds per sampler, {args.trials} trials each. Hypervolume of the "
        "feasible Pareto front of the first k trials, objectives scaled to the feasible region "
        "(accuracy as is; FLOPs 0 at the cheapest architecture, 1 at the budget; params 0 at "
        f"the smallest, 1 at the largest; latency / {LATENCY_REF_MS:g} ms), reference point "
        "(0, 1, 1, 1). Mean ± sd over seeds.",
        "",
        "| trials | " + " | ".join(SAMPLERS) + " |",
        "|---:|" + "---:|" * len(SAMPLERS),
    ]
    for i, k in enumerate(checkpoints):
        cells = []
        for sampler in SAMPLERS:
            m, sd = mean_sd([c[i] for c in curves[sampler]])
            cells.append(f"{m:.4f} ± {sd:.4f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Wall time per search (s, mean over seeds): "
        + ", ".join(f"{s} {statistics.mean(seconds[s]):.0f}" for s in SAMPLERS),
        "",
        "![hypervolume against trials](search_efficiency.png)",
        "",
    ]
    (args.out / "search_efficiency.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
