"""Benchmark: the analytic cost model must price a candidate in <= 50 µs.

Times ``CostModel.cost_of_labels`` (what the search calls for every proposal) and
``CostModel.cost`` on prebuilt architectures, on random architectures of the default space,
and writes ``experiments/results/cost_benchmark.md``.

    python experiments/cost_benchmark.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluators.cost import get_cost_model  # noqa: E402
from experiments._machine import command_line, machine_description  # noqa: E402
from search_spaces.space import SearchSpace  # noqa: E402

CASES = [
    ("resnet50", 1000, 224, "all"),
    ("resnet50", 1000, 224, "spatial"),
    ("cifar_resnet56", 10, 32, "all"),
    ("mobilenet_v2", 1000, 224, "all"),
]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--archs", type=int, default=2000)
    p.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "cost_benchmark.md"
    )
    args = p.parse_args()
    rows = []
    for backbone, classes, res, policy in CASES:
        t0 = time.perf_counter()
        cm = get_cost_model(backbone, classes, res, policy)
        space = SearchSpace(backbone, num_classes=classes, resolution=res, slots=policy)
        setup = time.perf_counter() - t0
        rng = random.Random(0)
        archs = [space.sample(rng) for _ in range(args.archs)]
        labels = [space.labels_of(a) for a in archs]
        cm.range(space.choices)  # warm the per-slot tables, as a search does before it starts
        per = {}
        for name, fn, items in (
            ("cost_of_labels", cm.cost_of_labels, labels),
            ("cost(arch)", cm.cost, archs),
        ):
            reps = []
            for _ in range(5):
                t = time.perf_counter()
                for x in items:
                    fn(x)
                reps.append((time.perf_counter() - t) / len(items) * 1e6)
            per[name] = statistics.median(reps)
        rows.append(
            (
                f"{backbone} @{res} ({policy})",
                len(space.slots),
                setup,
                per["cost_of_labels"],
                per["cost(arch)"],
            )
        )
        print(rows[-1], flush=True)
    lines = [
        "# Cost model speed",
        "",
        f"Machine: {machine_description()}",
        "",
        f"Command: `{command_line()}`",
        "",
        f"Median over 5 passes of {args.archs} random architectures of the default menu.",
        "Setup = building the backbone, one fvcore trace for the fixed part, slot discovery.",
        "Target: <= 50 µs per candidate.",
        "",
        "| space | slots | setup (s) | cost_of_labels (µs) | cost(arch) (µs) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {n} | {s} | {su:.2f} | {a:.1f} | {b:.1f} |" for n, s, su, a, b in rows]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
