"""Validate the per-slot lookup-table latency predictor against measured end-to-end latency.

For each backbone, fills a :class:`evaluators.latency.LatencyTable` for the default operator
menu (every choice of every slot shape timed alone), then samples random architectures of the
default space and compares ``predict_arch`` with ``measure_latency`` of the built model:
Spearman rank correlation, Pearson correlation, mean absolute and mean signed percentage
error. Writes ``experiments/results/latency_predictor.md``.

    python experiments/latency_predictor.py
    python experiments/latency_predictor.py --archs 30 --cases cifar_resnet20:32,resnet18:224
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._machine import command_line, machine_description  # noqa: E402

DEFAULT_CASES = "cifar_resnet20:32,resnet18:224"


def _cases(text: str) -> list[tuple[str, int]]:
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, res = item.partition(":")
        if not res.isdigit() or int(res) < 1:
            raise argparse.ArgumentTypeError(f"case {item!r} must look like resnet18:224")
        out.append((name, int(res)))
    if not out:
        raise argparse.ArgumentTypeError("at least one backbone:resolution case is needed")
    return out


def _ranks(xs: list[float]) -> list[float]:
    """Ranks starting at 1, ties sharing their average rank."""
    order = sorted(range(len(xs)), key=xs.__getitem__)
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    syy = math.fsum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def spearman(xs: list[float], ys: list[float]) -> float:
    return pearson(_ranks(xs), _ranks(ys))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cases",
        type=_cases,
        default=_cases(DEFAULT_CASES),
        help=f"backbone:resolution list (default {DEFAULT_CASES})",
    )
    p.add_argument("--archs", type=int, default=30, help="random architectures per backbone")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads on CPU (default: torch's own choice, one per core)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="latency-table cache (default: a fresh temporary folder, so every "
        "entry is measured by this run)",
    )
    p.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "latency_predictor.md"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from evaluators.latency import LatencyTable, measure_latency
    from search_spaces.arch import build_model
    from search_spaces.space import SearchSpace

    tmp = None
    cache_dir = args.cache_dir
    if cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="convnas-latency-")
        cache_dir = Path(tmp.name)
    timing = {
        "warmup": args.warmup,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "device": args.device,
    }
    load_before = os.getloadavg()
    started = time.perf_counter()
    summaries, details = [], []
    for backbone, res in args.cases:
        torch.manual_seed(args.seed)
        space = SearchSpace(backbone, num_classes=10, resolution=res)
        t0 = time.perf_counter()
        table = LatencyTable.for_backbone(
            backbone, num_classes=10, resolution=res, cache_dir=cache_dir, **timing
        )
        table.warm(space.choices)
        table_s = time.perf_counter() - t0
        rng = random.Random(args.seed)
        pred, meas, rows = [], [], []
        for _ in range(args.archs):
            arch = space.sample(rng)
            p = table.predict_arch(arch)
            m = measure_latency(build_model(arch), res, **timing).median_ms
            pred.append(p)
            meas.append(m)
            mix: dict[str, int] = {}
            for spec in arch.ops.values():
                mix[spec.op] = mix.get(spec.op, 0) + 1
            rows.append((arch.arch_id, p, m, ", ".join(f"{k} {v}" for k, v in sorted(mix.items()))))
        conv = space.uniform("conv")
        conv_meas = measure_latency(build_model(conv), res, **timing).median_ms
        errs = [(p - m) / m for p, m in zip(pred, meas)]
        summaries.append(
            {
                "case": f"{backbone} @{res}",
                "slots": len(space.slots),
                "entries": len(table),
                "table_s": table_s,
                "spearman": spearman(pred, meas),
                "pearson": pearson(pred, meas),
                "mape": statistics.fmean(abs(e) for e in errs),
                "bias": statistics.fmean(errs),
                "meas_range": (min(meas), max(meas)),
                "base_ms": table.base_ms,
                "base_model_ms": table.base_model_ms,
                "conv_pred": table.predict_arch(conv),
                "conv_meas": conv_meas,
            }
        )
        details.append((f"{backbone} @{res}", rows))
        s = summaries[-1]
        print(
            f"{s['case']}: Spearman {s['spearman']:.3f}, MAPE {s['mape']:.1%}, "
            f"mean error {s['bias']:+.1%} ({len(pred)} archs)",
            flush=True,
        )
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()
    if tmp is not None:
        tmp.cleanup()

    lines = [
        "# Lookup-table latency predictor vs measured latency",
        "",
        f"Machine: {machine_description()}",
        "",
        f"Command: `{command_line()}`",
        "",
        f"Device {args.device}, batch {args.batch_size}, float32; every number (table entries, "
        f"the base model, each architecture) is the median of {args.repeats} timed passes after "
        f"{args.warmup} warm-up passes. {args.archs} architectures per backbone drawn uniformly "
        f"(`SearchSpace.sample`, seed {args.seed}) from the default space (menu "
        "`conv,scconv,oct,linear` with the default grids, slot policy `all`, 10 classes). "
        "Prediction = base + Σ per-slot entries, where each (slot shape, choice) entry is the op "
        "timed alone on a tensor of the slot's input shape, and base = measured all-conv model "
        "− Σ its conv entries. The table was filled from scratch by this run. Load average "
        f"(1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{'/'.join(f'{x:.2f}' for x in load_after)}; run time {elapsed:.0f} s.",
        "",
        "| space | slots | table entries | table fill (s) | Spearman | Pearson | mean abs % error "
        "| mean % error | measured range (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lo, hi = s["meas_range"]
        lines.append(
            f"| {s['case']} | {s['slots']} | {s['entries']} | {s['table_s']:.1f} "
            f"| {s['spearman']:.3f} | {s['pearson']:.3f} | {s['mape']:.1%} | {s['bias']:+.1%} "
            f"| {lo:.2f}-{hi:.2f} |"
        )
    lines += [
        "",
        "All-conv check (the prediction of the all-conv model is the base model's measurement by "
        "construction; a second, independent measurement shows the noise):",
        "",
        "| space | base (ms) | base model measured (ms) | predicted all-conv (ms) "
        "| re-measured all-conv (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['case']} | {s['base_ms']:.3f} | {s['base_model_ms']:.3f} "
            f"| {s['conv_pred']:.3f} | {s['conv_meas']:.3f} |"
        )
    for case, rows in details:
        lines += [
            "",
            f"## {case}",
            "",
            "| arch id | predicted (ms) | measured (ms) | error | ops (count of slots) |",
            "|---|---:|---:|---:|---|",
        ]
        for arch_id, p, m, mix in rows:
            lines.append(f"| {arch_id} | {p:.3f} | {m:.3f} | {(p - m) / m:+.1%} | {mix} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
