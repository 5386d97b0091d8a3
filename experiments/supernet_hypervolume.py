"""Supernet against proxy search on one fixed wall clock, fronts re-scored by full training.

Issue 13's outcome measurement: does ``--evaluator supernet`` find a better front than the
default proxy evaluator when both get the same time?

1. ``--search``: two searches of ``cifar_resnet20`` on the CIFAR-10 photographs of cifar10-mini,
   started together (one thread each, so both see the same machine load), same seed, same
   budget (70 % of the all-conv FLOPs, found_vs_papers' larger budget), objectives accuracy and
   FLOPs, the product's defaults otherwise, and ``--timeout`` as the wall clock: the
   supernet's training counts against it (it happens inside the first trial). ``--trials`` is
   set far above what either reaches, so the clock is what stops them.
2. ``--worker``: every member of both exported fronts is retrained stand-alone with the
   reference recipe of the proxy-fidelity benchmark shortened to :data:`EPOCHS` epochs
   (``nas.retrain``, ``cifar-cosine``, test top-1 of the last epoch; 30 epochs for the 18
   members would take about 6 core-hours here), results appended to
   ``<work>/hv-results.jsonl``. Seed 0 of every member first, alternating between the fronts.
3. ``--analyse``: per search, trials evaluated, wall time, supernet training time; each
   member's search score, FLOPs and test top-1; the hypervolume of each front re-scored by
   that test top-1 (accuracy against FLOPs scaled from the space's cheapest network, 0, to the
   budget, 1; reference point accuracy 0 at the budget). Writes
   ``experiments/results/supernet_hypervolume.{md,json,png}``.

    python experiments/supernet_hypervolume.py --work /work/pf --search --minutes 30
    python experiments/supernet_hypervolume.py --work /work/pf --worker
    python experiments/supernet_hypervolume.py --work /work/pf --analyse
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._machine import command_line, machine_description  # noqa: E402
from experiments.proxy_fidelity import (  # noqa: E402
    MINI,
    append,
    claim,
    done_keys,
    run_reference,
)

HERE = Path(__file__).resolve().parent
BACKBONE = "cifar_resnet20"
SHARE = 0.7
EVALUATORS = ("proxy", "supernet")
SEEDS = (0, 1)
#: Epochs of the stand-alone re-scoring: the reference recipe shortened (30 epochs for the 18
#: members of both fronts would take about 6 core-hours here).
EPOCHS = 10


def _space() -> Any:
    from search_spaces.space import SearchSpace

    return SearchSpace(BACKBONE, num_classes=10, resolution=32, slots="all")


def _flops(arch: Any) -> int:
    from evaluators.cost import get_cost_model

    return get_cost_model(arch.backbone, arch.num_classes, arch.resolution, arch.slots).cost(
        arch).flops


def search_name(evaluator: str, minutes: int) -> str:
    return f"hv-{evaluator}-{minutes}m"


def run_searches(work: Path, minutes: int) -> None:
    """Both searches at once, each one thread; records their wall times in searches.json."""
    budget = f"{SHARE * _flops(_space().uniform('conv')) / 1e6:.3f}MFLOPs"
    procs = {}
    for ev in EVALUATORS:
        name = search_name(ev, minutes)
        out = work / name
        if (out / "pareto" / "pareto.json").is_file():
            print(f"{name}: done", flush=True)
            continue
        cmd = [sys.executable, "-m", "nas.search", "--backbone", BACKBONE,
               "--dataset", f"imagefolder:{MINI}", "--budget", budget, "--trials", "100000",
               "--timeout", f"{minutes}m", "--objectives", "accuracy,flops",
               "--storage", f"sqlite:///{work}/{name}.db", "--study", name,
               "--out", str(out), "--seed", "0", "--device", "cpu"]
        if ev == "supernet":
            cmd += ["--evaluator", "supernet"]
        print(" ".join(cmd), flush=True)
        log = open(work / f"{name}.log", "a")  # noqa: SIM115 - closed when the process ends
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                        env=dict(os.environ, OMP_NUM_THREADS="1")),
                       time.time(), log, cmd)
    rec_path = work / "hv-searches.json"
    recs = json.loads(rec_path.read_text()) if rec_path.is_file() else {}
    for name, (p, t0, log, cmd) in procs.items():
        rc = p.wait()
        log.close()
        recs[name] = {"wall_s": time.time() - t0, "rc": rc, "minutes": minutes,
                      "command": " ".join(cmd[1:]),
                      "started": dt.datetime.fromtimestamp(t0).isoformat(timespec="seconds")}
        rec_path.write_text(json.dumps(recs, indent=1))
        print(f"{name}: exit {rc} after {recs[name]['wall_s']:.0f} s", flush=True)


def fronts(work: Path, minutes: int) -> dict[str, list[dict[str, Any]]]:
    """``search -> [{"name", "group", "arch", "score", "flops", "trial"}]`` of its front."""
    from search_spaces.arch import Architecture

    out: dict[str, list[dict[str, Any]]] = {}
    for ev in EVALUATORS:
        name = search_name(ev, minutes)
        path = work / name / "pareto" / "pareto.json"
        if not path.is_file():
            continue
        doc = json.loads(path.read_text())
        members = []
        for i, m in enumerate(doc["members"]):
            arch = Architecture.from_dict(m["architecture"])
            members.append({"name": f"r20 {ev} search {minutes} min #{i}",
                            "group": f"hv {ev}", "arch": arch,
                            "score": m.get("score", m.get("accuracy")),
                            "flops": _flops(arch), "trial": m.get("trial"),
                            "ops": m.get("ops")})
        out[ev] = members
    return out


def work_items(fr: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Seed 0 of every member, alternating between the fronts, then seed 1 the same way."""
    items, seen = [], set()
    for seed in SEEDS:
        width = max((len(v) for v in fr.values()), default=0)
        for i in range(width):
            for ev in EVALUATORS:
                if i < len(fr.get(ev, [])):
                    n = fr[ev][i]
                    key = f"hv{EPOCHS}-{n['arch'].arch_id}-s{seed}"
                    if key not in seen:
                        seen.add(key)
                        items.append({"seed": seed, "arch": n, "key": key})
    return items


def retrain(arch: Any, seed: int, work: Path) -> dict[str, Any]:
    """``nas.retrain``: EPOCHS of ``cifar-cosine`` on the whole training split, test top-1 of
    the last epoch, in ``<work>/ref<EPOCHS>/`` (resumes a checkpoint left by a killed run)."""
    return run_reference({"arch": {"arch": arch}, "seed": seed}, work, epochs=EPOCHS,
                         folder=f"ref{EPOCHS}")


def worker(work: Path, results: Path, minutes: int, seeds: int) -> None:
    import torch

    torch.set_num_threads(1)
    while True:
        done = done_keys(results)
        todo = [i for i in work_items(fronts(work, minutes))
                if i["key"] not in done and i["seed"] < seeds]
        if not todo:
            print("nothing left to do", flush=True)
            return
        ran = False
        for item in todo:
            with claim(work, item["key"]) as held:
                if held is None:
                    continue
                t0 = time.time()
                print(f"{dt.datetime.now():%H:%M:%S} start {item['key']} ({item['arch']['name']})",
                      flush=True)
                rec = retrain(item["arch"]["arch"], item["seed"], work)
                rec.update(key=item["key"], kind=f"hv{EPOCHS}",
                           arch_id=item["arch"]["arch"].arch_id, name=item["arch"]["name"],
                           group=item["arch"]["group"], seed=item["seed"], variant=None,
                           wall_s=time.time() - t0,
                           finished=dt.datetime.now().isoformat(timespec="seconds"))
                append(results, rec)
                print(f"  done in {time.time() - t0:.0f} s: {rec['test_top1']:.4f}", flush=True)
                ran = True
                break
        if not ran:
            time.sleep(30)


def rescored_hypervolume(points: list[tuple[float, float]], min_flops: float,
                         budget: float) -> float:
    """Hypervolume of ``(test top-1, FLOPs)`` points: top-1 maximised from 0, FLOPs minimised,
    scaled from ``min_flops`` (0) to ``budget`` (1); a point over the budget adds nothing."""
    from nas.backends.results import hypervolume

    scaled = [(a, (f - min_flops) / (budget - min_flops)) for a, f in points]
    return hypervolume(scaled, ("maximize", "minimize"), (0.0, 1.0))


def _supernet_training_s(log: Path) -> float | None:
    """Seconds of supernet training, from the search log's last ``supernet epoch`` line."""
    import re

    found = None
    if log.is_file():
        for line in log.read_text().splitlines():
            m = re.match(r"supernet epoch \d+/\d+: loss [\d.]+, ([\d.]+) s", line)
            if m:
                found = float(m.group(1))
    return found


def analyse(work: Path, results: Path, minutes: int, command: str) -> Path:
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nas.backends.results import load_rows

    acc: dict[str, list[float]] = {}
    names: dict[str, str] = {}
    for line in results.read_text().splitlines():
        r = json.loads(line)
        if r["kind"] == f"hv{EPOCHS}":
            acc.setdefault(r["arch_id"], []).append(r["test_top1"])
            names.setdefault(r["arch_id"], r.get("name", ""))
    searches = json.loads((work / "hv-searches.json").read_text())
    fr = fronts(work, minutes)
    doc: dict[str, Any] = {"machine": machine_description(), "command": command,
                           "date": dt.datetime.now().isoformat(timespec="minutes"),
                           "minutes": minutes, "searches": {}}
    budget = min_flops = None
    for ev in EVALUATORS:
        name = search_name(ev, minutes)
        rows, info = load_rows(f"sqlite:///{work}/{name}.db", name)
        sp = info["convnas"]["space"]
        min_flops = sp["min_flops"]
        budget = SHARE * _flops(_space().uniform("conv"))
        done = [r for r in rows if r.state == "COMPLETE" and r.values
                and not r.user_attrs.get("rejected")]  # evaluated (not priced out)
        times = [r.user_attrs.get("train_time_s") for r in done[1:]
                 if r.user_attrs.get("train_time_s") is not None]
        members = []
        for m in fr.get(ev, []):
            a = acc.get(m["arch"].arch_id, [])
            members.append({"name": m["name"], "arch_id": m["arch"].arch_id,
                            "ops": m["ops"],
                            "score": m["score"], "flops": m["flops"], "test_top1": a,
                            "reference_name": names.get(m["arch"].arch_id)})
        pts = [(statistics.mean(m["test_top1"]), m["flops"]) for m in members if m["test_top1"]]
        doc["searches"][ev] = {
            "study": name, **searches.get(name, {}),
            "evaluated": len(done), "feasible": sum(r.feasible for r in done),
            "median_candidate_s": statistics.median(times) if times else None,
            "supernet_training_s": _supernet_training_s(work / f"{name}.log"),
            "members": members,
            "missing": [m["arch_id"] for m in members if not m["test_top1"]],
            "hypervolume": rescored_hypervolume(pts, min_flops, budget),
        }
    doc["budget_flops"], doc["min_flops"] = budget, min_flops
    out_json = HERE / "results" / "supernet_hypervolume.json"
    out_json.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")

    # the plot: both re-scored fronts
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {"proxy": "tab:blue", "supernet": "tab:orange"}
    for ev, s in doc["searches"].items():
        pts = sorted((m["flops"] / 1e6, statistics.mean(m["test_top1"]),
                      statistics.stdev(m["test_top1"]) if len(m["test_top1"]) > 1 else 0.0)
                     for m in s["members"] if m["test_top1"])
        if pts:
            x, y, e = zip(*pts)
            ax.errorbar(x, y, yerr=e, fmt="o-" if ev == "proxy" else "s--", capsize=3,
                        color=colours[ev], zorder=3,
                        label=f"{ev} search front (HV {s['hypervolume']:.3f})")
    ax.axvline(budget / 1e6, color="0.4", lw=0.8, ls=":", label="budget")
    ax.set_xlabel("MFLOPs")
    ax.set_ylabel(f"test top-1 after {EPOCHS} epochs (cifar10-mini)")
    ax.set_title(f"cifar_resnet20, {minutes} min of search each, fronts re-scored by "
                 f"{EPOCHS}-epoch training", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = HERE / "results" / "supernet_hypervolume.png"
    fig.savefig(png, dpi=110)

    lines = [
        "# Supernet against proxy search on one wall clock (issue 13)", "",
        f"Machine: {doc['machine']}  ",
        f"Command: `{command}` (searches: `--search --minutes {minutes}`, retraining: "
        "`--worker`, then `--analyse`)  ",
        f"Date: searches started {searches.get(search_name('proxy', minutes), {}).get('started')}"
        f", analysed {doc['date']}", "",
        f"Both searches: `cifar_resnet20` on cifar10-mini, budget {budget / 1e6:.2f} MFLOPs (70 % "
        "of all-conv), objectives accuracy and FLOPs, seed 0, the product's defaults "
        "(warm start, TPE, 3,500 proxy images scored by validation loss; the supernet: 10 "
        f"epochs, budget sampling), `--timeout {minutes}m`, started together, one thread each. "
        "The supernet's training counts against its clock. Each front member is re-scored by "
        "stand-alone training: the proxy-fidelity benchmark's reference recipe shortened to "
        f"{EPOCHS} epochs (`nas.retrain`, `cifar-cosine`, all 4,660 training images at 32 px, "
        "test top-1 on the 932 test images; seed 0), one member of each front in turn.",
        "",
        "Hypervolume: test top-1 (maximised, reference 0) against FLOPs scaled from the space's "
        f"cheapest network ({min_flops / 1e6:.2f} MFLOPs, 0) to the budget (1), over the "
        "members re-scored so far (a lower bound while some are missing).", "",
        "| search | wall s | supernet training s | candidates evaluated | median s per candidate "
        "| front members | re-scored | hypervolume of the re-scored front |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ev, s in doc["searches"].items():
        lines.append(
            f"| {ev} | {s.get('wall_s', 0):,.0f} | "
            f"{s['supernet_training_s'] if s['supernet_training_s'] is not None else '-'} | "
            f"{s['evaluated']} | {s['median_candidate_s']:.1f} | {len(s['members'])} | "
            f"{len(s['members']) - len(s['missing'])} | {s['hypervolume']:.4f} |")
    lines += ["", "Front members:", "",
              "| search | member | architecture | search score | MFLOPs | test top-1 (seeds) |",
              "|---|---|---|---|---|---|"]
    for ev, s in doc["searches"].items():
        for m in s["members"]:
            t = m["test_top1"]
            top1 = (f"{100 * statistics.mean(t):.1f} %"
                    + (f" ± {100 * statistics.stdev(t):.1f}" if len(t) > 1 else "")
                    + f" ({len(t)})") if t else "not re-scored yet"
            lines.append(f"| {ev} | {m['name'].rsplit(' ', 1)[-1]} | `{m['arch_id']}` "
                         f"{m['ops']} | {m['score']:.4f} | "
                         f"{m['flops'] / 1e6:.2f} | {top1} |")
    lines += ["", f"![fronts]({png.name})", ""]
    md = HERE / "results" / "supernet_hypervolume.md"
    md.write_text("\n".join(lines))
    return md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--results", type=Path, default=None,
                   help="re-scoring results file (default: <work>/hv-results.jsonl)")
    p.add_argument("--minutes", type=int, default=30, help="wall clock of each search")
    p.add_argument("--seeds", type=int, default=1, help="seeds per member the worker trains")
    p.add_argument("--search", action="store_true")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--analyse", action="store_true")
    a = p.parse_args(argv)
    results = a.results or a.work / "hv-results.jsonl"
    if a.search:
        run_searches(a.work, a.minutes)
    if a.worker:
        worker(a.work, results, a.minutes, a.seeds)
    if a.analyse:
        print(analyse(a.work, results, a.minutes, command_line()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
