"""Latency predictors against carefully measured latency, on held-out architectures.

For each backbone:resolution case, with torch fixed to one intra-op thread and the thread's
CPU time as the clock (``time.thread_time``; two background experiments keep this machine's
cores busy, and wall time would count their turns):

1. fills a :class:`evaluators.latency.LatencyTable` (every (slot shape, choice) timed alone);
2. draws ``--calib`` calibration architectures over the whole space
   (:func:`evaluators.latency.calibrate.calibration_sample`: per-architecture random weights
   over the menu, so operator mixes and FLOPs spread widely) and ``--test`` held-out test
   architectures from the feasible region of a typical budget (FLOPs <= ``--budget`` x the
   all-conv model's), picked evenly over that FLOPs range from a pool of 4,000 draws (half
   spread mixes, half uniform), none shared with the calibration set;
3. measures all of them, plus the all-conv model and every one-operator model (diagnostics),
   together with :func:`evaluators.latency.measure_interleaved`: ``--rounds`` rounds, each
   visiting every model once in a shuffled order (one untimed pass, then ``--passes`` timed
   ones), latency = median of the per-round medians;
4. fits the calibration on the calibration architectures only and scores, on the test
   architectures: the table alone (base + sum of entries), the calibrated table, FLOPs alone
   (for MAE: a least-squares line through the calibration architectures' FLOPs), and the
   re-test ceiling (the medians of the even rounds against those of the odd rounds).

Writes ``experiments/results/latency_predictor.md`` and ``.json``.

    python experiments/latency_predictor.py
    python experiments/latency_predictor.py --cases cifar_resnet20:32 --rounds 10 --passes 5
"""

from __future__ import annotations

import argparse
import datetime
import json
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
from experiments.proxy_fidelity_analysis import bootstrap_ci, spearman_rho  # noqa: E402

DEFAULT_CASES = "cifar_resnet20:32,resnet18:224,resnet50:224"


def _case(text: str) -> tuple[str, int, int, int]:
    """``backbone:resolution[:rounds:passes]``."""
    parts = text.split(":")
    if len(parts) not in (2, 4) or not all(p.isdigit() and int(p) > 0 for p in parts[1:]):
        raise argparse.ArgumentTypeError(
            f"case {text!r} must look like resnet18:224 or resnet50:224:4:2 (rounds, passes)"
        )
    nums = [int(p) for p in parts[1:]] + [0, 0]
    return parts[0], nums[0], nums[1], nums[2]


def _cases(text: str) -> list[tuple[str, int, int, int]]:
    out = [_case(s.strip()) for s in text.split(",") if s.strip()]
    if not out:
        raise argparse.ArgumentTypeError("at least one backbone:resolution case is needed")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cases",
        type=_cases,
        default=_cases(DEFAULT_CASES),
        help=f"backbone:resolution[:rounds:passes] list (default {DEFAULT_CASES})",
    )
    p.add_argument("--calib", type=int, default=30, help="calibration architectures per case")
    p.add_argument("--test", type=int, default=30, help="held-out test architectures per case")
    p.add_argument("--budget", type=float, default=0.7, help="test FLOPs <= this x all-conv")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    p.add_argument("--passes", type=int, default=3, help="timed passes per model and round")
    p.add_argument("--entry-warmup", type=int, default=3)
    p.add_argument("--entry-repeats", type=int, default=15)
    p.add_argument("--ridge", type=float, default=1.0, help="pull toward the plain table")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="latency-table cache (default: a fresh temporary folder, so this run fills it)",
    )
    p.add_argument(
        "--rescore",
        type=Path,
        default=None,
        metavar="JSON",
        help="measure nothing: score a stored result file again and rewrite it (and its .md)",
    )
    p.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "latency_predictor.md"
    )
    return p


def _ops_mix(arch) -> str:
    mix: dict[str, int] = {}
    for spec in arch.ops.values():
        mix[spec.op] = mix.get(spec.op, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(mix.items()))


def pick_test(space, cost, n, budget_flops, exclude, rng):
    """``n`` feasible architectures evenly spread over the feasible FLOPs range of a pool."""
    from evaluators.latency.calibrate import calibration_sample

    pool = [space.to_architecture(p) for p in calibration_sample(space.choices, 2000, rng)]
    pool += [space.sample(rng) for _ in range(2000)]
    seen, feasible = set(exclude), []
    for a in pool:
        f = cost.cost(a).flops
        if f <= budget_flops and a.arch_id not in seen:
            seen.add(a.arch_id)
            feasible.append((f, a))
    if len(feasible) < n:
        raise SystemExit(f"only {len(feasible)} feasible architectures in the pool, need {n}")
    feasible.sort(key=lambda t: t[0])
    lo, hi = feasible[0][0], feasible[-1][0]
    chosen, used = [], set()
    for i in range(n):
        target = lo + (hi - lo) * i / (n - 1) if n > 1 else lo
        j = min(
            (k for k in range(len(feasible)) if k not in used),
            key=lambda k: abs(feasible[k][0] - target),
        )
        used.add(j)
        chosen.append(feasible[j][1])
    return chosen


def mape(pred, meas):
    return statistics.fmean(abs(p - m) / m for p, m in zip(pred, meas))


def bias(pred, meas):
    return statistics.fmean((p - m) / m for p, m in zip(pred, meas))


def line_fit(xs, ys):
    """Least squares ``y = a x + b`` (weights 1/y^2, as the calibration)."""
    from evaluators.latency.calibrate import fit_least_squares

    a, b = fit_least_squares([[x, 1.0] for x in xs], ys, weights=[1 / y**2 for y in ys])
    return lambda x: a * x + b


def run_case(args, backbone, res, rounds, passes, cache_dir):
    import torch

    from evaluators.cost import get_cost_model
    from evaluators.latency import LatencyTable, measure_interleaved
    from evaluators.latency.calibrate import calibration_sample
    from search_spaces.arch import build_model
    from search_spaces.space import SearchSpace

    torch.manual_seed(args.seed)
    space = SearchSpace(backbone, num_classes=10, resolution=res)
    cost = get_cost_model(backbone, 10, res)
    t0 = time.perf_counter()
    table = LatencyTable.for_backbone(
        backbone,
        num_classes=10,
        resolution=res,
        cache_dir=cache_dir,
        clock="thread",
        warmup=args.entry_warmup,
        repeats=args.entry_repeats,
    )
    table.warm(space.choices)
    table_s = time.perf_counter() - t0

    rng = random.Random(args.seed)
    calib = [space.to_architecture(p) for p in calibration_sample(space.choices, args.calib, rng)]
    conv = space.uniform("conv")
    budget = args.budget * cost.cost(conv).flops
    test = pick_test(space, cost, args.test, budget, {a.arch_id for a in calib}, rng)
    labels = sorted({lbl for opts in space.choices.values() for lbl in opts})
    diag = [space.uniform(lbl) for lbl in labels]
    roles = ["calib"] * len(calib) + ["test"] * len(test) + ["uniform"] * len(diag)
    archs = calib + test + diag
    names = [""] * (len(calib) + len(test)) + labels
    models = [build_model(a) for a in archs]
    t0 = time.perf_counter()
    results = measure_interleaved(models, res, rounds=rounds, passes=passes, warmup=1)
    measure_s = time.perf_counter() - t0
    del models
    meas = [r.median_ms for r in results]
    n_cal = len(calib)
    cal_share = math.fsum(meas[:n_cal]) / math.fsum(meas)

    flops = [cost.cost(a).flops for a in archs]
    rows = []
    for a, role, name, r, f in zip(archs, roles, names, results, flops):
        ops = dict(a.ops)
        rows.append(
            {
                "arch_id": a.arch_id,
                "role": role,
                "uniform": name or None,
                "flops": f,
                "ops": _ops_mix(a),
                "measured_ms": r.median_ms,
                "wall_ms": r.other_ms,
                "halves_ms": list(r.halves_ms),
                "rounds_ms": list(r.rounds_ms),
                "slots": table.slot_entries(ops),
            }
        )
    summary = {
        "case": f"{backbone} @{res}",
        "slots": len(space.slots),
        "entries": distinct_entries(space),
        "rounds": rounds,
        "passes": passes,
        "table_s": table_s,
        "measure_s": measure_s,
        "models_measured": len(archs),
        "calib_measure_s_est": measure_s * cal_share,
        "budget_flops": budget,
        "conv_flops": cost.cost(conv).flops,
        "base_ms": table.base_ms,
        "families": table.families(),
    }
    return score_case(summary, rows, args.ridge), rows


def distinct_entries(space) -> int:
    """Table entries a space needs: distinct (slot shape, choice) pairs."""
    return len({(s.shape_key, c) for s in space.slots for c in space.choices[s.path]})


def _predictor_scores(pred, meas):
    return {
        "spearman": spearman_rho(pred, meas),
        "spearman_ci": bootstrap_ci(pred, meas, spearman_rho),
        "mape": mape(pred, meas),
        "bias": bias(pred, meas),
    }


def score_case(summary, rows, ridge):
    """Fit the predictors on the calibration rows and score them on the test rows.

    Uses only what a case stores (measurements and each architecture's slot entries), so a
    stored JSON can be scored again (``--rescore``) without measuring anything.
    """
    from evaluators.latency.calibrate import select_calibration

    fams, base = summary["families"], summary["base_ms"]
    cal_rows = [r for r in rows if r["role"] == "calib"]
    tst = [r for r in rows if r["role"] == "test"]
    y_cal = [r["measured_ms"] for r in cal_rows]
    t0 = time.perf_counter()
    cals = {
        kind: select_calibration(
            [r["slots"] for r in cal_rows],
            y_cal,
            fams,
            kinds=("total", "family") if kind == "auto" else (kind,),
            base_ms=base,
            ridge=ridge,
        )
        for kind in ("auto", "total", "family")
    }
    fit_s = time.perf_counter() - t0
    flops_line = line_fit([r["flops"] for r in cal_rows], y_cal)
    for r in rows:
        entries = [tuple(e) for e in r["slots"]]
        r["table_ms"] = base + math.fsum(ms for _, ms in entries)
        for kind, cal in cals.items():
            r[f"{kind}_ms"] = max(0.0, cal.predict_entries(entries, fams))
        r["flops_line_ms"] = flops_line(r["flops"])
    m = [r["measured_ms"] for r in tst]
    scores = {
        key: _predictor_scores([r[f"{key}_ms"] for r in tst], m)
        for key in ("table", "auto", "total", "family")
    }
    scores["flops"] = _predictor_scores([r["flops_line_ms"] for r in tst], m)
    h0 = [r["halves_ms"][0] for r in tst]
    h1 = [r["halves_ms"][1] for r in tst]
    half = spearman_rho(h0, h1)
    scores["retest"] = {
        "spearman": half,
        "spearman_ci": bootstrap_ci(h0, h1, spearman_rho),
        # Spearman-Brown: the reliability of the full measurement (two halves together)
        "spearman_full": 2 * half / (1 + half) if half > -1 else float("nan"),
        "mape": statistics.fmean(abs(a - b) / ((a + b) / 2) for a, b in zip(h0, h1)),
        "bias": 0.0,
    }
    wall = [r["wall_ms"] for r in tst]
    return {
        **summary,
        "ridge": ridge,
        "fit_s": fit_s,
        "test_flops_range": [min(r["flops"] for r in tst), max(r["flops"] for r in tst)],
        "test_ms_range": [min(m), max(m)],
        "chosen": cals["auto"].kind,
        "loo_mape": cals["auto"].info["loo_mape"],
        "coef": {k: c.coef for k, c in cals.items() if k != "auto"},
        "fit_mape": {k: c.fit_mape for k, c in cals.items()},
        "scores": scores,
        "thread_vs_wall_spearman": spearman_rho(m, wall),
        "wall_over_thread": statistics.median(w / t for w, t in zip(wall, m)),
    }


def _fmt_scores(s) -> str:
    lo, hi = s["spearman_ci"]
    return f"{s['spearman']:.3f} [{lo:.2f}, {hi:.2f}] | {s['mape']:.1%} | {s['bias']:+.1%}"


def _err(r, col) -> str:
    m = r["measured_ms"]
    return f"{(r[col] - m) / m:+.1%}"


def write_report(out: Path, prm: dict, summaries, meta) -> None:
    lines = [
        "# Latency predictors vs carefully measured latency (held-out architectures)",
        "",
        f"Machine: {meta['machine']}",
        "",
        f"Command: `{meta['command']}`"
        + (
            f"; scored again from the stored measurements with `{meta['rescore_command']}` "
            f"({meta['rescore_date']})"
            if meta.get("rescore_command")
            else ""
        ),
        "",
        f"Date: {meta['date']}. Load average (1/5/15 min) before: {meta['load_before']}, "
        f"after: {meta['load_after']} (other experiments kept both cores busy throughout); "
        f"run time {meta['elapsed_s']:.0f} s.",
        "",
        "How it was measured: CPU, batch 1, float32, torch fixed to **1 intra-op thread**. "
        "Every latency is **CPU time of the thread** (`time.thread_time`; wall time was read "
        "too and is in the JSON). All models of a case (calibration, test, and the one-operator "
        "diagnostics) are measured together by `measure_interleaved`: one warm-up pass each, "
        "then R rounds; a round visits every model once in a freshly shuffled order, runs one "
        "untimed pass and P timed passes; latency = median of the per-round medians. Table "
        f"entries: {prm['entry_warmup']} warm-up + {prm['entry_repeats']} timed passes each, "
        "alone, same clock and thread. Re-test ceiling: Spearman between the medians of the "
        "even rounds and of the odd rounds (two independent half-measurements); the full "
        "measurement is more reliable than either half, so this is a conservative ceiling; "
        "the Spearman-Brown value 2r/(1+r) estimates the reliability of the full measurement.",
        "",
        f"Architectures: {prm['calib']} calibration architectures drawn over the whole space "
        f"(per-architecture random weights over the menu), {prm['test']} held-out test "
        f"architectures with FLOPs <= {prm['budget']:.0%} of the all-conv model, spread evenly "
        "over that FLOPs range, none shared with the calibration set. Default space (menu "
        "`conv,scconv,oct,linear`, slot policy `all`, 10 classes); seed "
        f"{prm['seed']}. Predictors: *table* = base + sum of entries timed alone (the old "
        "predictor, here with the same careful entries); *calibrated* = the new predictor: "
        "a linear model on the table's entries fitted on the calibration architectures only "
        f"(weights 1/y^2, ridge {prm['ridge']} toward the plain table), feature set chosen by "
        "leave-one-out error on the calibration architectures between *total* (intercept + "
        "all entries: one scale, one offset) and *family* (intercept + entries summed per "
        "operator family); both variants are shown too. *FLOPs* = a line through the "
        "calibration architectures' (FLOPs, latency), i.e. FLOPs alone for ranking.",
        "",
        "Spearman [95 % bootstrap interval over test architectures] | mean abs % error | mean "
        "% error, on the test architectures:",
        "",
        "| space | R x P | test (ms) | re-test ceiling (halves) | Spearman-Brown "
        "| table (old) | calibrated (new) | FLOPs alone |",
        "|---|---|---|---|---:|---|---|---|",
    ]
    for s in summaries:
        sc = s["scores"]
        lo, hi = s["test_ms_range"]
        lines.append(
            f"| {s['case']} | {s['rounds']} x {s['passes']} | {lo:.1f}-{hi:.1f} "
            f"| {_fmt_scores(sc['retest'])} | {sc['retest']['spearman_full']:.3f} "
            f"| {_fmt_scores(sc['table'])} | {_fmt_scores(sc['auto'])} "
            f"| {_fmt_scores(sc['flops'])} |"
        )
    lines += [
        "",
        "The two calibrated variants (the new predictor picks one per space by leave-one-out "
        "error on the calibration architectures):",
        "",
        "| space | chosen | leave-one-out MAE total / family | calibrated *total* "
        "| calibrated *family* |",
        "|---|---|---|---|---|",
    ]
    for s in summaries:
        sc, loo = s["scores"], s["loo_mape"]
        lines.append(
            f"| {s['case']} | {s['chosen']} | {loo['total']:.1%} / {loo['family']:.1%} "
            f"| {_fmt_scores(sc['total'])} | {_fmt_scores(sc['family'])} |"
        )
    lines += [
        "",
        "Cost of the predictor on this machine (what a search pays once; the table and the "
        "calibration are cached on disk): table fill (every entry of the space), measuring "
        "the calibration architectures (their share of the interleaved measurement's wall "
        "time, with the R x P above), and the fits (all variants, leave-one-out included).",
        "",
        "| space | slots | entries | table fill (s) | calibration measurement (s, est.) "
        "| fits (s) | all models measured (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['case']} | {s['slots']} | {s['entries']} | {s['table_s']:.0f} "
            f"| {s['calib_measure_s_est']:.0f} | {s['fit_s']:.2f} "
            f"| {s['measure_s']:.0f} ({s['models_measured']} models) |"
        )
    lines += [
        "",
        "Fitted coefficients (`ms:f`: multiplier of the summed alone-entries of family f, "
        "`ms:all` of all entries; `1`: the fixed part, ms; the plain table is ms:* = 1, "
        "1 = base):",
        "",
        "| space | base (ms) | variant | coefficients |",
        "|---|---:|---|---|",
    ]
    for s in summaries:
        for kind, coef in s["coef"].items():
            shown = ", ".join(f"{n} {v:.3f}" for n, v in coef.items())
            lines.append(f"| {s['case']} | {s['base_ms']:.3f} | {kind} | {shown} |")
    lines += [
        "",
        "One-operator models (every slot the same choice where allowed): the table's error "
        "per operator family, a direct view of its bias (none of these is in the calibration "
        "set).",
        "",
        "| space | model | measured (ms) | table (ms) | table error | calibrated error |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in summaries:
        for r in s["archs"]:
            if r["role"] == "uniform":
                lines.append(
                    f"| {s['case']} | all {r['uniform']} | {r['measured_ms']:.3f} "
                    f"| {r['table_ms']:.3f} | {_err(r, 'table_ms')} | {_err(r, 'auto_ms')} |"
                )
    lines += [
        "",
        "Thread clock against wall clock on the test architectures (same passes): median "
        "wall/thread ratio and their Spearman:",
        "",
    ]
    for s in summaries:
        lines.append(
            f"- {s['case']}: wall/thread {s['wall_over_thread']:.2f}, Spearman "
            f"{s['thread_vs_wall_spearman']:.3f}"
        )
    for s in summaries:
        lines += [
            "",
            f"## {s['case']}: test architectures",
            "",
            "| arch id | MFLOPs | measured (ms) | halves (ms) | table | calibrated | ops |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in sorted((r for r in s["archs"] if r["role"] == "test"), key=lambda r: r["flops"]):
            h0, h1 = r["halves_ms"]
            lines.append(
                f"| {r['arch_id']} | {r['flops'] / 1e6:.1f} | {r['measured_ms']:.3f} "
                f"| {h0:.3f} / {h1:.3f} | {_err(r, 'table_ms')} | {_err(r, 'auto_ms')} "
                f"| {r['ops']} |"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def _print(s, elapsed) -> None:
    sc = s["scores"]
    print(
        f"{s['case']}: re-test {sc['retest']['spearman']:.3f}, table "
        f"{sc['table']['spearman']:.3f} ({sc['table']['mape']:.1%}), calibrated "
        f"[{s['chosen']}] {sc['auto']['spearman']:.3f} ({sc['auto']['mape']:.1%}), FLOPs "
        f"{sc['flops']['spearman']:.3f} ({sc['flops']['mape']:.1%}); {elapsed:.0f} s",
        flush=True,
    )


PARAMS = ("calib", "test", "budget", "seed", "entry_warmup", "entry_repeats", "ridge")


def rescore(args) -> int:
    """Score a stored JSON again (new predictors, same measurements) and rewrite both files."""
    from search_spaces.ops import OPS
    from search_spaces.space import SearchSpace

    try:
        payload = json.loads(args.rescore.read_text())
        cases = payload["cases"]
    except (OSError, ValueError, KeyError) as e:
        print(f"--rescore {args.rescore}: not a result file of this script ({e})", file=sys.stderr)
        return 2
    fams = ["conv", *sorted(op for op in OPS if op != "conv")]
    summaries = []
    for case in cases:
        rows = case.pop("archs")
        case.setdefault("families", fams)
        backbone, _, res = case["case"].partition(" @")
        case["entries"] = distinct_entries(SearchSpace(backbone, resolution=int(res)))
        s = score_case(case, rows, args.ridge)
        s["archs"] = rows
        summaries.append(s)
        _print(s, 0)
    stored = payload.get("args", {})
    prm = {k: type(getattr(args, k))(stored.get(k, getattr(args, k))) for k in PARAMS}
    prm["ridge"] = args.ridge
    payload["rescore_command"] = command_line()
    payload["rescore_date"] = _now()
    payload["cases"] = summaries
    write_report(args.out, prm, summaries, payload)
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("calib", "test", "rounds", "passes", "entry_repeats"):
        if getattr(args, name) < 2:
            print(f"--{name.replace('_', '-')} must be at least 2", file=sys.stderr)
            return 2
    if not 0 < args.budget <= 1:
        print(f"--budget must be in (0, 1], got {args.budget}", file=sys.stderr)
        return 2
    if not (math.isfinite(args.ridge) and args.ridge >= 0):
        print(f"--ridge must be a number >= 0, got {args.ridge}", file=sys.stderr)
        return 2
    if args.rescore is not None:
        return rescore(args)
    import torch

    torch.set_num_threads(1)
    load_before = "/".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.perf_counter()
    summaries = []
    with tempfile.TemporaryDirectory(prefix="convnas-latency-") as tmp:
        cache_dir = args.cache_dir or tmp
        for backbone, res, rounds, passes in args.cases:
            s, rows = run_case(
                args, backbone, res, rounds or args.rounds, passes or args.passes, cache_dir
            )
            s["archs"] = rows
            summaries.append(s)
            _print(s, time.perf_counter() - started)
    meta = {
        "machine": machine_description(),
        "command": command_line(),
        "date": _now(),
        "load_before": load_before,
        "load_after": "/".join(f"{x:.2f}" for x in os.getloadavg()),
        "elapsed_s": time.perf_counter() - started,
    }
    prm = {k: getattr(args, k) for k in PARAMS}
    write_report(args.out, prm, summaries, meta)
    payload = {**meta, "args": {k: str(v) for k, v in vars(args).items()}, "cases": summaries}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
