"""Analysis of ``experiments/proxy_fidelity.py``'s results: rank correlations with bootstrap
intervals, seed-to-seed ceilings, costs, and the Markdown/JSON result files.

Kept apart from the runner so the statistics can be imported and tested without torch.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "analyse", "bootstrap_ci", "choose_default", "kendall_tau", "noise_ceiling",
    "paired_difference", "spearman_rho",
]

#: The search's default proxy for the CIFAR ResNets (nas.search, evaluators.config) since
#: 2026-12-07, chosen by :func:`choose_default`: 2 epochs on all 3,495 training images left
#: after the validation split (``--proxy-subset`` 3500) at 16 px, scored by the validation loss
#: on the fixed 1,165-image split (``--proxy-score loss``).
DEFAULT_CANDIDATE = "sall-e2-r16 @ep2 loss_large"
#: The default before it (2,000 images, top-1), the proxy the cifar_resnet56 items ran.
OLD_DEFAULT = "s2000-e2-r16 @ep2 acc_large"
#: The issue's bar for a default: Kendall tau against the reference, and "beats FLOPs alone
#: and params alone" read as: ahead of each in at least this share of paired resamples.
TAU_TARGET, BEATS_SHARE = 0.6, 0.9


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either ranking handled), NaN when a ranking is constant."""
    n = len(x)
    if n != len(y):
        raise ValueError(f"x and y differ in length: {n} != {len(y)}")
    conc = disc = tx = ty = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif (dx > 0) == (dy > 0):
                conc += 1
            else:
                disc += 1
    denom = math.sqrt((conc + disc + tx) * (conc + disc + ty))
    return (conc - disc) / denom if denom else float("nan")


def _ranks(v: Sequence[float]) -> list[float]:
    order = sorted(range(len(v)), key=lambda i: v[i])
    ranks = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the (average) ranks; NaN for a constant ranking."""
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else float("nan")


def bootstrap_ci(
    x: Sequence[float], y: Sequence[float], stat: Any, reps: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of ``stat(x, y)`` over architectures resampled with replacement."""
    rng = random.Random(seed)
    n, vals = len(x), []
    for _ in range(reps):
        idx = [rng.randrange(n) for _ in range(n)]
        v = stat([x[i] for i in idx], [y[i] for i in idx])
        if not math.isnan(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    vals.sort()
    return vals[int(0.025 * len(vals))], vals[min(len(vals) - 1, int(0.975 * len(vals)))]


def noise_ceiling(
    runs: dict[str, list[float]], reps: int = 4000, seed: int = 0
) -> dict[str, Any] | None:
    """The Kendall tau a perfect proxy could expect against this noisy reference.

    Model: an architecture's run = its true accuracy + independent Gaussian seed noise; the
    reference of an architecture is the mean of its ``k`` runs. The noise variance per run is
    estimated from the architectures with two seeds (``(a - b)^2 / 2`` averaged), the variance
    of the true accuracies from the spread of the reference means less their expected noise.
    The ceiling is the mean tau between simulated true accuracies and simulated references
    (each architecture with its own ``k``); for equal ``k`` it is ``2/pi * asin(rho)`` with
    ``rho`` the reference's correlation with the truth. ``ceiling_range`` redoes it at the
    5th and 95th percentile of the noise variance (chi-square with one degree of freedom per
    pair). ``None`` with fewer than two pairs or three architectures.
    """
    pairs = [v[:2] for v in runs.values() if len(v) >= 2]
    if len(pairs) < 2 or len(runs) < 3:
        return None
    noise_var = statistics.fmean((a - b) ** 2 / 2 for a, b in pairs)
    means = [statistics.fmean(v) for v in runs.values()]
    ks = [len(v) for v in runs.values()]
    expected_noise = statistics.fmean(noise_var / k for k in ks)
    true_var = max(statistics.variance(means) - expected_noise, 0.0)
    rng = random.Random(seed)

    def ceiling(nv: float) -> float:
        if nv == 0:
            return 1.0
        if true_var == 0:
            return 0.0
        taus = []
        for _ in range(reps):
            truth = [rng.gauss(0, math.sqrt(true_var)) for _ in ks]
            ref = [t + rng.gauss(0, math.sqrt(nv / k)) for t, k in zip(truth, ks)]
            taus.append(kendall_tau(truth, ref))
        return statistics.fmean(taus)

    df = len(pairs)
    chi = sorted(sum(rng.gauss(0, 1) ** 2 for _ in range(df)) / df for _ in range(20000))
    lo_var, hi_var = noise_var / chi[int(0.95 * len(chi))], noise_var / chi[int(0.05 * len(chi))]
    return {
        "pairs": df, "noise_sd": math.sqrt(noise_var), "true_sd": math.sqrt(true_var),
        "ceiling": ceiling(noise_var),
        # more noise, lower ceiling: the high noise bound gives the low ceiling
        "ceiling_range": [ceiling(hi_var), ceiling(lo_var)],
    }


def paired_difference(
    a: Sequence[float], b: Sequence[float], y: Sequence[float], stat: Any = kendall_tau,
    reps: int = 2000, seed: int = 0,
) -> dict[str, float]:
    """``stat(a, y) - stat(b, y)`` with a 95 % interval and the share of resamples above 0,
    the architectures resampled together for both scores (a paired bootstrap)."""
    n = len(y)
    if not len(a) == len(b) == n:
        raise ValueError(f"a, b and y differ in length: {len(a)}, {len(b)}, {n}")
    rng = random.Random(seed)
    diffs = []
    for _ in range(reps):
        idx = [rng.randrange(n) for _ in range(n)]
        ys = [y[i] for i in idx]
        d = stat([a[i] for i in idx], ys) - stat([b[i] for i in idx], ys)
        if not math.isnan(d):
            diffs.append(d)
    diffs.sort()
    if not diffs:
        nan = float("nan")
        return {"diff": nan, "lo": nan, "hi": nan, "p_above": nan}
    return {
        "diff": stat(a, y) - stat(b, y),
        "lo": diffs[int(0.025 * len(diffs))],
        "hi": diffs[min(len(diffs) - 1, int(0.975 * len(diffs)))],
        "p_above": sum(d > 0 for d in diffs) / len(diffs),
    }


def choose_default(
    scores: dict[str, dict[str, float]], cost_s: dict[str, float], ref: dict[str, float],
    baselines: Sequence[str] = ("params alone", "FLOPs alone"), reps: int = 2000,
) -> dict[str, Any]:
    """The issue's rule for the default proxy: the cheapest candidate whose Kendall tau against
    ``ref`` is at least :data:`TAU_TARGET` and which beats every baseline in at least
    :data:`BEATS_SHARE` of paired bootstrap resamples.

    ``scores``: candidate -> arch -> score (higher = predicted better; the baselines among
    them), ``cost_s``: candidate -> seconds per architecture. The comparison runs over the
    architectures of ``ref`` that every baseline scored; only candidates scored on all of them
    compete. Returns ``{"chosen": name or None, "checked": [...]}``,
    one entry per candidate: tau, cost and the paired difference to each baseline.
    """
    # the architectures every baseline scored (a reference added later without its zero-cost
    # record cannot tell whether a candidate beats the baselines)
    archs = sorted(a for a in ref if all(a in scores.get(b, {}) for b in baselines))
    y = [ref[a] for a in archs]
    checked = []
    for name, sc in scores.items():
        if name in baselines or any(a not in sc for a in archs):
            continue
        x = [sc[a] for a in archs]
        tau = kendall_tau(x, y)
        vs = {b: paired_difference(x, [scores[b][a] for a in archs], y, reps=reps)
              for b in baselines}
        ok = tau >= TAU_TARGET and all(d["p_above"] >= BEATS_SHARE for d in vs.values())
        checked.append({"candidate": name, "tau": tau, "cost_s": cost_s[name], "vs": vs,
                        "eligible": ok})
    checked.sort(key=lambda c: (c["cost_s"], -c["tau"]))
    chosen = next((c["candidate"] for c in checked if c["eligible"]), None)
    return {"chosen": chosen, "checked": checked}


# ----------------------------------------------------------------------------------- analysis


def _load(results: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()]


def _candidates(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """name -> {"scores": {arch_id: {seed: score}}, "cost": {arch_id: [seconds]}}.

    Higher score = predicted better. Losses enter negated.
    """
    cands: dict[str, dict[str, Any]] = defaultdict(lambda: {"scores": defaultdict(dict),
                                                            "cost": defaultdict(list)})
    for r in recs:
        a = r["arch_id"]
        if r["kind"] == "zero_cost":
            for name in ("naswot", "synflow", "grad_norm"):
                c = cands[f"zero-cost {name}"]
                c["scores"][a][0] = r[name]
                c["cost"][a].append(r[f"{name}_time_s"])
            cands["FLOPs alone"]["scores"][a][0] = r["flops"]
            cands["FLOPs alone"]["cost"][a].append(0.0)
            cands["params alone"]["scores"][a][0] = r["params"]
            cands["params alone"]["cost"][a].append(0.0)
        elif r["kind"] == "proxy":
            for rung in r["rungs"]:
                base = f"{r['variant']} @ep{rung['epoch']}"
                for metric, sign in (("acc_small", 1), ("loss_small", -1),
                                     ("acc_large", 1), ("loss_large", -1)):
                    c = cands[f"{base} {metric}"]
                    c["scores"][a][r["seed"]] = sign * rung[metric]
                    c["cost"][a].append(rung["train_time_s"] + rung["val_time_s"])
    return cands


def _reference(recs: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, list[float]]]:
    by_arch: dict[str, list[float]] = defaultdict(list)
    for r in recs:
        if r["kind"] == "reference":
            by_arch[r["arch_id"]].append(r["test_top1"])
    return {a: statistics.fmean(v) for a, v in by_arch.items()}, dict(by_arch)


def _row(name: str, cand: dict[str, Any], ref: dict[str, float], two_seeds: bool) -> Any:
    """Correlations of one candidate (seed 0, or the mean of seeds 0 and 1) with ``ref``."""
    scores = cand["scores"]
    if two_seeds:
        archs = sorted(a for a in ref if len(scores.get(a, {})) >= 2)
        x = [statistics.fmean([scores[a][0], scores[a][1]]) for a in archs]
        cost = [2 * statistics.fmean(cand["cost"][a]) for a in archs]
    else:
        archs = sorted(a for a in ref if 0 in scores.get(a, {}))
        x = [scores[a][0] for a in archs]
        cost = [statistics.fmean(cand["cost"][a]) for a in archs]
    if len(archs) < 5:
        return None
    y = [ref[a] for a in archs]
    both = sorted(a for a in archs if len(scores[a]) >= 2) if not two_seeds else []
    ceiling = (kendall_tau([scores[a][0] for a in both], [scores[a][1] for a in both])
               if len(both) >= 5 else float("nan"))
    return {
        "candidate": name + (" (mean of 2 seeds)" if two_seeds else ""),
        "n": len(archs),
        "tau": kendall_tau(x, y), "tau_ci": bootstrap_ci(x, y, kendall_tau),
        "rho": spearman_rho(x, y), "rho_ci": bootstrap_ci(x, y, spearman_rho),
        "seed_tau": ceiling,
        "cost_s": statistics.fmean(cost),
    }


def analyse(results: Path, work: Path, out_dir: Path, command: str, machine: str) -> Path:
    """Write ``proxy_fidelity.md`` and ``proxy_fidelity.json`` into ``out_dir``."""
    recs = _load(results)
    r20 = [r for r in recs if r.get("group") != "r56"]
    ref, ref_runs = _reference(r20)
    cands = _candidates(r20)
    rows = []
    for name, cand in sorted(cands.items()):
        for two in (False, True):
            if two and not any(1 in v for v in cand["scores"].values()):
                continue  # zero-cost, FLOPs and params: one value per architecture
            row = _row(name, cand, ref, two)
            if row is not None:
                rows.append(row)
    loss_vs_acc = []
    for v in sorted({r["variant"] for r in r20 if r["kind"] == "proxy"}):
        last = max(r["rungs"][-1]["epoch"] for r in r20 if r.get("variant") == v)
        acc = cands.get(f"{v} @ep{last} acc_large", {}).get("scores", {})
        loss = cands.get(f"{v} @ep{last} loss_large", {}).get("scores", {})
        ids = sorted(a for a in ref if 0 in acc.get(a, {}) and 0 in loss.get(a, {}))
        if len(ids) >= 5:
            d = paired_difference([loss[a][0] for a in ids], [acc[a][0] for a in ids],
                                  [ref[a] for a in ids])
            loss_vs_acc.append({"variant": f"{v} @ep{last}", "n": len(ids), **d})
    seed0 = {n: {a: v[0] for a, v in c["scores"].items() if 0 in v} for n, c in cands.items()}
    cost = {n: statistics.fmean(statistics.fmean(v) for v in c["cost"].values())
            for n, c in cands.items()}
    choice = choose_default(seed0, cost, ref)
    names = {r["arch_id"]: (r["name"], r["group"]) for r in recs}
    per_arch = []
    for a, runs in sorted(ref_runs.items(), key=lambda kv: -statistics.fmean(kv[1])):
        zc = cands["FLOPs alone"]["scores"].get(a, {})
        default = cands[DEFAULT_CANDIDATE]["scores"].get(a, {})
        per_arch.append({"arch_id": a, "name": names[a][0], "group": names[a][1],
                         "reference": runs, "flops": zc.get(0),
                         "params": cands["params alone"]["scores"].get(a, {}).get(0),
                         "default_proxy": [default.get(s) for s in (0, 1)]})
    two_seed = [v for v in ref_runs.values() if len(v) >= 2]
    ref_noise = {
        "archs_with_2_seeds": len(two_seed),
        "mean_abs_seed_diff": statistics.fmean(abs(v[0] - v[1]) for v in two_seed)
        if two_seed else None,
        "spread_sd_between_archs": statistics.pstdev(ref.values()) if len(ref) > 1 else None,
        "binomial_se_at_mean": math.sqrt(statistics.fmean(ref.values())
                                         * (1 - statistics.fmean(ref.values())) / 932)
        if ref else None,
        "ceiling": noise_ceiling(ref_runs),
    }
    stamp = dt.datetime.now().isoformat(timespec="minutes")
    payload = {"date": stamp, "machine": machine, "command": command, "n_reference_archs":
               len(ref), "reference_noise": ref_noise, "rows": rows, "per_arch": per_arch,
               "loss_vs_accuracy": loss_vs_acc, "default_choice": choice,
               "r56": _r56(recs, names)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "proxy_fidelity.json").write_text(json.dumps(payload, indent=1) + "\n")
    md = _markdown(payload)
    path = out_dir / "proxy_fidelity.md"
    path.write_text(md)
    return path


def _r56(recs: list[dict[str, Any]], names: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """cifar_resnet56 architectures: per architecture reference, proxies and costs, and the
    tau of the old default proxy (:data:`OLD_DEFAULT`, the one run on them) over the
    cifar_resnet20 and cifar_resnet56 references together (does a 2-epoch proxy compare
    networks of different depths?)."""
    ref, runs = _reference(recs)
    cands = _candidates(recs)
    ids = sorted({r["arch_id"] for r in recs if r.get("group") == "r56"})
    rows = []
    for a in ids:
        def score(name: str, s: int = 0, a: str = a) -> Any:
            return cands[name]["scores"].get(a, {}).get(s) if name in cands else None

        rows.append({"arch_id": a, "name": names[a][0], "reference": runs.get(a, []),
                     "flops": score("FLOPs alone"), "params": score("params alone"),
                     "synflow": score("zero-cost synflow"),
                     "default_proxy": [score(OLD_DEFAULT, s) for s in (0, 1)],
                     "proxy_r32": [score("s2000-e2-r32 @ep2 acc_large", s) for s in (0, 1)]})
    pooled = None
    scores = cands[OLD_DEFAULT]["scores"] if OLD_DEFAULT in cands else {}
    archs = sorted(a for a in ref if 0 in scores.get(a, {}))
    if any(a in ids for a in archs) and len(archs) >= 5:
        x, y = [scores[a][0] for a in archs], [ref[a] for a in archs]
        pooled = {"n": len(archs), "n_r56": sum(a in ids for a in archs),
                  "tau": kendall_tau(x, y), "tau_ci": bootstrap_ci(x, y, kendall_tau)}
    return {"archs": rows, "pooled_default_tau": pooled}


def _f(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def _markdown(p: dict[str, Any]) -> str:
    lines = [
        "# Proxy rank fidelity on real images (cifar10-mini)",
        "",
        f"Date {p['date']}; machine {p['machine']}; command `{p['command']}`.",
        "",
        f"Reference: {p['n_reference_archs']} cifar_resnet20 architectures trained 30 epochs "
        "(nas.retrain, cifar-cosine recipe, whole 4,660-image training split), test top-1 on "
        "the 932 test images; mean over the seeds run.",
        "",
    ]
    n = p["reference_noise"]

    def pts(v: Any) -> str:
        return _f(None if v is None else 100 * v, 1)

    lines += [
        f"Reference noise: {n['archs_with_2_seeds']} architectures with 2 seeds, mean |seed 0 − "
        f"seed 1| = {pts(n['mean_abs_seed_diff'])} points; binomial standard error of one test "
        f"accuracy {pts(n['binomial_se_at_mean'])} points; spread (sd) between architectures "
        f"{pts(n['spread_sd_between_archs'])} points.",
        "",
    ]
    c = n.get("ceiling")
    if c:
        lines += [
            f"Noise ceiling: seed noise of {pts(c['noise_sd'])} points per run (from "
            f"{c['pairs']} pairs) against a spread of about {pts(c['true_sd'])} points between "
            "the architectures' true accuracies: a proxy that knew every true accuracy would "
            f"reach Kendall τ ≈ {_f(c['ceiling'])} against this reference (noise variance at "
            f"its 90 % chi-square bounds: {_f(c['ceiling_range'][0])} to "
            f"{_f(c['ceiling_range'][1])}). A τ near this value is as good as this reference "
            "can show.",
            "",
        ]
    lines += [
        "| candidate | n | Kendall τ [95 % CI] | Spearman ρ [95 % CI] | seed-to-seed τ | "
        "seconds / arch |",
        "|---|---:|---|---|---:|---:|",
    ]
    for r in sorted(p["rows"], key=lambda r: -r["tau"] if not math.isnan(r["tau"]) else 9):
        lines.append(
            f"| {r['candidate']} | {r['n']} | {_f(r['tau'])} [{_f(r['tau_ci'][0])}, "
            f"{_f(r['tau_ci'][1])}] | {_f(r['rho'])} [{_f(r['rho_ci'][0])}, "
            f"{_f(r['rho_ci'][1])}] | {_f(r['seed_tau'])} | {_f(r['cost_s'], 1)} |"
        )
    if p.get("loss_vs_accuracy"):
        lines += ["", "## Validation loss against validation accuracy (the same runs, seed 0)",
                  "", "Kendall τ of the loss (negated) minus τ of the accuracy, both on the "
                  "1,165-image split at the end of the schedule; paired bootstrap over "
                  "architectures.", "",
                  "| proxy | n | τ(loss) − τ(accuracy) [95 % CI] | share of resamples > 0 |",
                  "|---|---:|---|---:|"]
        for d in p["loss_vs_accuracy"]:
            lines.append(f"| {d['variant']} | {d['n']} | {d['diff']:+.2f} [{d['lo']:+.2f}, "
                         f"{d['hi']:+.2f}] | {d['p_above']:.2f} |")
    ch = p.get("default_choice")
    if ch:
        lines += ["", "## Choosing the default", "",
                  f"Rule (issue 10): the cheapest candidate (seed 0, as a search runs it) with "
                  f"Kendall τ ≥ {TAU_TARGET} that beats params alone and FLOPs alone, read as: "
                  f"ahead of each in at least {BEATS_SHARE:.0%} of paired bootstrap resamples "
                  "over the architectures. Chosen: "
                  f"**{ch['chosen'] or 'none'}**. Candidates with τ ≥ {TAU_TARGET - 0.05:.2f}:",
                  "", "| candidate | τ | seconds / arch | τ − τ(params) [95 % CI], share > 0 | "
                  "τ − τ(FLOPs) [95 % CI], share > 0 | meets the rule |",
                  "|---|---:|---:|---|---|---|"]
        for c in ch["checked"]:
            if c["tau"] < TAU_TARGET - 0.05:
                continue
            cells = [f"{d['diff']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}], {d['p_above']:.2f}"
                     for d in (c["vs"]["params alone"], c["vs"]["FLOPs alone"])]
            lines.append(f"| {c['candidate']} | {_f(c['tau'])} | {_f(c['cost_s'], 1)} | "
                         f"{cells[0]} | {cells[1]} | {'yes' if c['eligible'] else 'no'} |")
    lossy = DEFAULT_CANDIDATE.endswith(("loss_large", "loss_small"))
    lines += ["", "## Per architecture", "",
              "| architecture | group | MFLOPs | params | reference test top-1 (seeds) | "
              f"default proxy: {DEFAULT_CANDIDATE}"
              + (", validation loss" if lossy else "") + " (seeds 0, 1) |",
              "|---|---|---:|---:|---|---|"]
    for a in p["per_arch"]:
        refs = ", ".join(f"{100 * v:.1f}" for v in a["reference"])
        dp = ", ".join("–" if v is None else (f"{-v:.3f}" if lossy else f"{100 * v:.1f}")
                       for v in a["default_proxy"])
        lines.append(f"| {a['name']} | {a['group']} | {_f(a['flops'] and a['flops'] / 1e6, 1)}"
                     f" | {_f(a['params'] and a['params'] / 1e3, 1)}k | {refs} | {dp} |")
    r56 = p.get("r56") or {}
    if r56.get("archs"):
        lines += ["", "## cifar_resnet56", "",
                  "| architecture | MFLOPs | params | reference test top-1 (seeds) | old default "
                  "proxy (2,000 images, 16 px, top-1; seeds 0, 1) | proxy at 32 px (seeds 0, 1) "
                  "| synflow |",
                  "|---|---:|---:|---|---|---|---:|"]

        def seeds(v: list[Any]) -> str:
            return ", ".join("–" if x is None else f"{100 * x:.1f}" for x in v) or "–"

        for a in r56["archs"]:
            syn = a["synflow"]
            lines.append(
                f"| {a['name']} | {_f(a['flops'] and a['flops'] / 1e6, 1)} | "
                f"{_f(a['params'] and a['params'] / 1e3, 1)}k | {seeds(a['reference'])} | "
                f"{seeds(a['default_proxy'])} | {seeds(a['proxy_r32'])} | "
                f"{'–' if syn is None else f'{syn:.3g}'} |")
        pooled = r56.get("pooled_default_tau")
        if pooled:
            lines += ["", f"Old default proxy over cifar_resnet20 and cifar_resnet56 together "
                      f"({pooled['n']} references, {pooled['n_r56']} of them cifar_resnet56): "
                      f"Kendall τ {_f(pooled['tau'])} [{_f(pooled['tau_ci'][0])}, "
                      f"{_f(pooled['tau_ci'][1])}]."]
    lines.append("")
    return "\n".join(lines)
