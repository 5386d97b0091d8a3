"""How long a command takes to report a typo: a bad ``--ops`` entry and a broken architecture file.

``--cases`` picks some of :data:`CASES` and ``--output`` names the results, e.g.
``--cases "search --budget 2GFLOPs --ops conv,scconv(a=1.5)" --output quick_errors_ranges``.

Issue 9 (item 8): the menu used to be parsed after the backbone was built and the architecture
file after torch was imported, so such one-line errors took 6 to 40 s. This script times the
real commands of two checkouts (``--before`` and ``--after``, e.g. one unpacked with
``git archive``), interleaved round by round so that a change in machine load hits both alike,
each run a fresh ``python -m ...`` process with one thread in an empty folder. It records the
wall time from start to exit (what a user waits for; ``time.thread_time`` would miss the
import time, which is the point) and checks every run ends with exit code 2 and one line.

Writes ``experiments/results/quick_errors.md`` and ``.json``: median and range per command and
checkout, with the machine, the command line and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments._machine import command_line, machine_description  # noqa: E402

CASES = {
    "search --ops conv,foo": ["-m", "nas.search", "--ops", "conv,foo"],
    "retrain bad.json": ["-m", "nas.retrain", "bad.json", "--dataset", "synthetic"],
    "describe bad.json": ["-m", "nas.describe", "bad.json"],
    # A value out of range: once checked by the operators only, after torch was imported.
    "search --budget 2GFLOPs --ops conv,scconv(a=1.5)": [
        *("-m", "nas.search", "--budget", "2GFLOPs", "--ops", "conv,scconv(a=1.5)"),
    ],
}


def run_once(checkout: Path, argv: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bad.json").write_text('{"format": "convnas.arch/1", "backbone": \n')
        env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        r = subprocess.run(
            [sys.executable, *argv], cwd=tmp, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - t0
        if r.returncode != 2 or r.stderr.count("\n") != 1 or os.listdir(tmp) != ["bad.json"]:
            raise SystemExit(f"{checkout} {argv}: exit {r.returncode}, stderr {r.stderr!r}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="checkout before the change")
    p.add_argument("--after", type=Path, default=ROOT, help="checkout after (default: this)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--cases", nargs="+", choices=list(CASES), default=list(CASES), help="default: all"
    )
    p.add_argument(
        "--output",
        default="quick_errors",
        help="name of the .md and .json in experiments/results (default: quick_errors)",
    )
    args = p.parse_args()
    cases = {c: CASES[c] for c in args.cases}
    times: dict[str, dict[str, list[float]]] = {c: {"before": [], "after": []} for c in cases}
    for i in range(args.rounds):
        for case, argv in cases.items():
            for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
                s = run_once(getattr(args, name), argv)
                times[case][name].append(s)
                print(f"round {i + 1} {case:<48} {name:<6} {s:6.2f} s", flush=True)
    rows = []
    for case, by in times.items():
        row = {"case": case}
        for name, ts in by.items():
            row[name] = {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts)}
        rows.append(row)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    doc = {
        "machine": machine_description(),
        "command": command_line(),
        "date": when,
        "load_average_1min_at_end": load,
        "rounds": args.rounds,
        "results": rows,
        "raw_s": times,
    }
    out = ROOT / "experiments" / "results"
    (out / f"{args.output}.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# Time to report a typo (issue 9, item 8 and its follow-up: --ops value ranges)",
        "",
        f"Machine: {doc['machine']}; load average {load:.1f} at the end (other jobs running).",
        f"Command: `{doc['command']}`; {when}; {args.rounds} rounds, interleaved.",
        "",
        "Wall time from start to exit (exit code 2, one line), seconds: median (min-max).",
        "",
        "| command | before | after |",
        "| --- | --- | --- |",
    ]
    for row in rows:
        cells = [
            f"{row[n]['median_s']:.2f} ({row[n]['min_s']:.2f}-{row[n]['max_s']:.2f})"
            for n in ("before", "after")
        ]
        lines.append(f"| `{row['case']}` | {cells[0]} | {cells[1]} |")
    (out / f"{args.output}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
