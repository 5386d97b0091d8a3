"""How repeatable is measured latency on this machine?

Runs ``measure_latency`` several times on a few backbones (all-``conv``, batch 1 unless set)
and reports, per backbone, the coefficient of variation of the median across runs (what a
search sees when it measures the same candidate twice) and the spread within one run. Writes
``experiments/results/latency_cv.md``.

    python experiments/latency_cv.py
    python experiments/latency_cv.py --runs 10 --cases cifar_resnet20:32,resnet18:224
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._machine import command_line, machine_description  # noqa: E402

DEFAULT_CASES = "cifar_resnet20:32,cifar_resnet56:32,resnet18:224,mobilenet_v2:224"


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


def _threads(text: str) -> list[int]:
    try:
        counts = [int(t) for t in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"threads must be positive integers like 2,1, got {text!r}"
        )
    return counts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cases",
        type=_cases,
        default=_cases(DEFAULT_CASES),
        help=f"backbone:resolution list (default {DEFAULT_CASES})",
    )
    p.add_argument("--runs", type=int, default=10, help="measurements per backbone")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=_threads,
        default=None,
        help="comma-separated torch intra-op thread counts to try on CPU, e.g. 2,1 "
        "(default: torch's own choice, one per core)",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latency_cv.md")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    default_threads = torch.get_num_threads()
    thread_counts = args.threads or [default_threads]

    from evaluators.latency import measure_latency
    from search_spaces.backbones import get_backbone

    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = []
    for threads, (backbone, res) in itertools.product(thread_counts, args.cases):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = get_backbone(backbone, 10)
        results = [
            measure_latency(
                model,
                res,
                batch_size=args.batch_size,
                device=args.device,
                warmup=args.warmup,
                repeats=args.repeats,
            )
            for _ in range(args.runs)
        ]
        medians = [r.median_ms for r in results]
        across = statistics.stdev(medians) / statistics.fmean(medians) if len(medians) > 1 else 0.0
        rows.append(
            {
                "case": f"{backbone} @{res}",
                "median": statistics.median(medians),
                "min": min(medians),
                "max": max(medians),
                "cv_across": across,
                "cv_within": statistics.median(r.cv for r in results),
                "iqr_rel": statistics.median(r.iqr_ms / r.median_ms for r in results),
                "threads": results[0].threads,
            }
        )
        r = rows[-1]
        print(
            f"{r['case']} ({threads} threads): median {r['median']:.3f} ms, "
            f"CV across runs {r['cv_across']:.2%}, "
            f"CV within a run {r['cv_within']:.2%}",
            flush=True,
        )
    elapsed = time.perf_counter() - started
    torch.set_num_threads(default_threads)  # the machine line reports torch's default
    load_after = os.getloadavg()

    first = results[0]
    lines = [
        "# Repeatability of measured latency",
        "",
        f"Machine: {machine_description()}",
        "",
        f"Command: `{command_line()}`",
        "",
        f"Device {args.device} ({first.device_name}), batch {args.batch_size}, "
        f"float32, {args.warmup} warm-up + {args.repeats} timed passes per measurement, "
        f"{args.runs} measurements per backbone (all-conv model, 10 classes, random init). "
        f"Load average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after: {'/'.join(f'{x:.2f}' for x in load_after)}; run time {elapsed:.0f} s.",
        "",
        "- *CV across runs*: standard deviation / mean of the per-measurement medians: how much "
        "two measurements of the same model differ.",
        "- *CV within a run*: median over measurements of (std / mean) of the single passes.",
        "- *IQR / median*: median over measurements of the relative interquartile range.",
        "",
        "| model | threads | median (ms) | min-max of medians (ms) | CV across runs "
        "| CV within a run | IQR / median |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['threads'] if r['threads'] is not None else '-'} "
            f"| {r['median']:.3f} | {r['min']:.3f}-{r['max']:.3f} | {r['cv_across']:.2%} "
            f"| {r['cv_within']:.2%} | {r['iqr_rel']:.2%} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
