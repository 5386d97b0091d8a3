"""Found architectures against the papers' hand-designed networks, on real images.

1. ``--search``: ConvNAS searches ``cifar_resnet20`` (and, with ``--backbones``, more) on the
   CIFAR-10 photographs of cifar10-mini with the product's defaults under two FLOPs budgets
   (50 % and 70 % of the all-conv network), objectives accuracy and FLOPs.
   ``--rerank K``: round 3's studies (``fvp3-*``), copied to ``<work>/rerank.db``, finished
   with ``nas.search --rerank K`` into ``fvp3r-*``: what the product's re-ranking keeps.
2. ``--worker``: every Pareto member of every search, the all-conv backbone and the papers'
   uniform networks (SCConv(1/2, 2, 2) on the first conv of every block — the paper's R56
   placement — and on every 3x3 conv; OctConv at alpha .25/.5/.75; LinearConv at alpha .25/.5,
   full rank and rank 4) are retrained with one recipe and 2 seeds: ``nas.retrain``, 30 epochs
   of ``cifar-cosine`` on the whole training split, test top-1 of the last epoch. The runs are
   the proxy-fidelity benchmark's reference runs (same recipe, same folders, same results
   file), so a network trained for one benchmark counts for the other.
3. ``--latency``: batch-1 latency of every compared network in one interleaved run on this
   machine (1 thread; CPU time and wall time; median over rounds of per-round medians).
4. ``--analyse``: table (accuracy +- sd over seeds, FLOPs, params, latency), the plot of
   accuracy against FLOPs and against latency with seed error bars, and a per-paper-network
   comparison (is there a found network at least as accurate at no more FLOPs / latency?).

    python experiments/found_vs_papers.py --work /work/pf --search
    python experiments/found_vs_papers.py --work /work/pf --rerank 2
    python experiments/found_vs_papers.py --work /work/pf --worker
    python experiments/found_vs_papers.py --work /work/pf --latency --analyse
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
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
BUDGETS = (0.5, 0.7)
TRIALS = 24
SEEDS = (0, 1)
MAX_MEMBERS = 3  # per search: a 30-epoch retraining takes ~30 min on this machine


def _space(backbone: str) -> Any:
    from search_spaces.space import SearchSpace

    return SearchSpace(backbone, num_classes=10, resolution=32, slots="all")


def _base_flops(backbone: str) -> int:
    from evaluators.cost import get_cost_model

    return get_cost_model(backbone, 10, 32, "all").cost(_space(backbone).uniform("conv")).flops


#: Search rounds: (folder prefix, group label prefix). Round 1 (2026-12-05) searched with the
#: defaults of the time (32 px proxy, no warm start); round 2 ("found", the round the verdict
#: was first drawn on) with 16 px proxies and the uniform networks of the menu enqueued first
#: (the fix round 1's verdict asked for); round 3 (2026-12-07) with the defaults since then:
#: 3,500 proxy images scored by the validation loss (issue 10's measurement); "round 3
#: re-ranked" is round 3's studies finished with ``--rerank`` (``--rerank K`` below: the
#: studies copied to ``<work>/rerank.db``, the trials near the front scored with K more seeds).
#: "round 4" (2026-12-07, later): the defaults plus the warm start that also enqueues the
#: SCConv papers' networks (conv where a slot cannot take SCConv), and ``--rerank 2``.
ROUNDS = (("fvp2", "found"), ("fvp3", "round 3"), ("fvp3r", "round 3 re-ranked"),
          ("fvp4", "round 4"), ("fvp", "round 1"))
#: Flags that make today's nas.search repeat a round's proxy (round 1 cannot be repeated:
#: its warm start is gone).
ROUND_FLAGS = {"fvp2": ["--proxy-subset", "2000", "--proxy-score", "accuracy"], "fvp3": [],
               "fvp4": ["--rerank", "2"]}
#: Rounds whose members are retrained first and whose fronts mark a paper network as kept.
CURRENT = ("found", "round 3", "round 4")  # "round 3 re-ranked" starts with "round 3"


def search_name(backbone: str, share: float, prefix: str = ROUNDS[0][0]) -> str:
    return f"{prefix}-{backbone}-{round(100 * share)}"


def run_searches(work: Path, backbones: list[str]) -> None:
    """The searches of the rounds that today's nas.search can repeat (ROUND_FLAGS)."""
    for prefix in ROUND_FLAGS:
        for backbone in backbones:
            for share in BUDGETS:
                _search(work, backbone, share, prefix)


def rerank_searches(work: Path, backbones: list[str], k: int) -> None:
    """Round 3's studies, copied to ``<work>/rerank.db``, finished with ``--rerank k``."""
    import optuna

    storage = f"sqlite:///{work}/rerank.db"
    for backbone in backbones:
        for share in BUDGETS:
            study = search_name(backbone, share, "fvp3")
            have = {s.study_name for s in optuna.get_all_study_summaries(storage)}
            if study not in have:
                optuna.copy_study(from_study_name=study, to_study_name=study,
                                  from_storage=f"sqlite:///{work}/found_vs_papers.db",
                                  to_storage=storage)
            _search(work, backbone, share, "fvp3", out_prefix="fvp3r", storage=storage,
                    extra=("--rerank", str(k)))


def _search(work: Path, backbone: str, share: float, prefix: str, out_prefix: str | None = None,
            storage: str | None = None, extra: tuple[str, ...] = ()) -> None:
    name = search_name(backbone, share, prefix)
    out = work / search_name(backbone, share, out_prefix or prefix)
    if (out / "pareto" / "pareto.json").is_file():
        print(f"{out.name}: done", flush=True)
        return
    budget = f"{share * _base_flops(backbone) / 1e6:.3f}MFLOPs"
    cmd = [sys.executable, "-m", "nas.search", "--backbone", backbone,
           "--dataset", f"imagefolder:{MINI}", "--budget", budget,
           "--trials", str(TRIALS), "--objectives", "accuracy,flops",
           "--storage", storage or f"sqlite:///{work}/found_vs_papers.db", "--study", name,
           "--out", str(out), "--seed", "0", *ROUND_FLAGS[prefix], *extra]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def networks(work: Path, backbones: list[str]) -> list[dict[str, Any]]:
    """``[{"name", "group", "arch"}]``: paper networks, all-conv, and every Pareto member."""
    from search_spaces.arch import Architecture

    out = []
    for backbone in backbones:
        space = _space(backbone)
        short = backbone.replace("cifar_resnet", "r")
        out.append({"name": f"{short} all conv", "group": "backbone",
                    "arch": space.uniform("conv")})
        first = {p: ("scconv(a=0.5,r=2,g=2)" if p.endswith(".conv1") else "conv")
                 for p in space.choices}
        out.append({"name": f"{short} SCConv first conv of each block (paper)",
                    "group": "paper", "arch": space.to_architecture(first)})
        # scconv(a=0.25): the papers' recipe at the menu's other alpha (the warm start
        # enqueues it too, so the comparison counts it as a hand-designed network)
        for label in ("scconv(a=0.5,r=2,g=2)", "scconv(a=0.25,r=2,g=2)", "oct(a=0.25)",
                      "oct(a=0.5)", "oct(a=0.75)",
                      "linear(a=0.25,rank=full)", "linear(a=0.25,rank=4)",
                      "linear(a=0.5,rank=full)", "linear(a=0.5,rank=4)"):
            out.append({"name": f"{short} all {label} (paper)", "group": "paper",
                        "arch": space.uniform(label)})
        for prefix, label in ROUNDS:
            for share in BUDGETS:
                name = search_name(backbone, share, prefix)
                path = work / name / "pareto" / "pareto.json"
                if not path.is_file():
                    continue
                members = json.loads(path.read_text())["members"]
                # The MAX_MEMBERS best by the search's objective (what a user retrains first):
                # the mean score after --rerank, else the score (exp(-val loss) in round 3),
                # top-1 before it existed.
                members = sorted(members, key=lambda m: -(m.get("rerank_score")
                                                          or m.get("score")
                                                          or m.get("accuracy") or 0))
                for i, m in enumerate(members[:MAX_MEMBERS]):
                    pct = round(100 * share)
                    tag = label.replace(" ", "-")
                    out.append({"name": f"{short} {tag} @{pct}% #{i}",
                                "group": f"{label} {pct}%",
                                "arch": Architecture.from_dict(m["architecture"]),
                                "proxy_accuracy": m.get("accuracy")})
    return out


def work_items(nets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The queue, most telling first: the current searches' members and the paper networks
    they compete with (at most the largest budget's FLOPs), seed 0 then seed 1; then the
    other paper networks and all-conv; members of the round-1 searches last."""
    from evaluators.cost import get_cost_model

    def flops(n: dict[str, Any]) -> int:
        a = n["arch"]
        return get_cost_model(a.backbone, a.num_classes, a.resolution, a.slots).cost(a).flops

    def within(n: dict[str, Any]) -> bool:
        return flops(n) <= max(BUDGETS) * _base_flops(n["arch"].backbone)

    now = [n for n in nets if n["group"].startswith(CURRENT)]
    papers = [n for n in nets if n["group"] in ("paper", "backbone")]
    rivals = [n for n in papers if within(n)]
    others = [n for n in papers if not within(n)]
    old = [n for n in nets if n["group"].startswith("round 1")]
    return [{"kind": "reference", "seed": s, "arch": n}
            for group in (now + rivals, others, old) for s in SEEDS for n in group]


def worker(work: Path, results: Path, backbones: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    while True:
        nets = networks(work, backbones)  # again each time: a search may have finished
        done = done_keys(results)
        todo = [i for i in work_items(nets)
                if f"reference-{i['arch']['arch'].arch_id}-s{i['seed']}" not in done]
        if not todo:
            print("nothing left to do", flush=True)
            return
        ran = False
        for item in todo:
            key = f"reference-{item['arch']['arch'].arch_id}-s{item['seed']}"
            with claim(work, key) as held:
                if held is None:
                    continue
                t0 = time.time()
                print(f"{dt.datetime.now():%H:%M:%S} start {key} ({item['arch']['name']})",
                      flush=True)
                try:
                    rec = run_reference(item, work)
                except RuntimeError as e:  # recorded in the log; the item stays in the queue
                    print(f"  failed: {e}", flush=True)
                    time.sleep(5)
                    continue
                rec.update(key=key, kind="reference", arch_id=item["arch"]["arch"].arch_id,
                           name=item["arch"]["name"], group=item["arch"]["group"],
                           seed=item["seed"], variant=None, wall_s=time.time() - t0,
                           finished=dt.datetime.now().isoformat(timespec="seconds"))
                append(results, rec)
                ran = True
                break
        if not ran:
            time.sleep(30)


def measure_latency(nets: list[dict[str, Any]], rounds: int = 7, passes: int = 20) -> dict:
    """Batch-1 latency per network: interleaved rounds, 1 thread, CPU and wall time (ms)."""
    import random

    import torch

    from search_spaces.arch import build_model

    torch.set_num_threads(1)
    models = {}
    for n in nets:
        a = n["arch"]
        if a.arch_id not in models:
            torch.manual_seed(0)
            models[a.arch_id] = build_model(a).eval()
    x = torch.randn(1, 3, 32, 32)
    cpu: dict[str, list[float]] = {k: [] for k in models}
    wall: dict[str, list[float]] = {k: [] for k in models}
    rng = random.Random(0)
    with torch.inference_mode():
        for m in models.values():  # warm-up
            for _ in range(5):
                m(x)
        for _ in range(rounds):
            order = list(models)
            rng.shuffle(order)
            for k in order:
                c, w = [], []
                for _ in range(passes):
                    t_c, t_w = time.thread_time(), time.perf_counter()
                    models[k](x)
                    c.append(time.thread_time() - t_c)
                    w.append(time.perf_counter() - t_w)
                cpu[k].append(1e3 * statistics.median(c))
                wall[k].append(1e3 * statistics.median(w))
    return {k: {"cpu_ms": statistics.median(cpu[k]), "wall_ms": statistics.median(wall[k]),
                "cpu_ms_range": [min(cpu[k]), max(cpu[k])]} for k in models}


def evaluated(work: Path, backbones: list[str]) -> dict[str, list[dict[str, Any]]]:
    """``arch_id -> [{"search", "trial", "proxy_accuracy", "proxy_score"}]`` over the current
    rounds' searches: which networks a search evaluated, and what its proxy said (answers "was
    it proposed?"). ``proxy_score`` is the search's objective (top-1 before round 3)."""
    import optuna

    db = work / "found_vs_papers.db"
    if not db.is_file():
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out: dict[str, list[dict[str, Any]]] = {}
    storage = f"sqlite:///{db}"
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    searches = [search_name(b, s, p) for p in ROUND_FLAGS for b in backbones for s in BUDGETS]
    for name in (n for n in searches if n in names):
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
        ):
            arch_id = t.user_attrs.get("arch_id")
            if arch_id and t.values:
                out.setdefault(arch_id, []).append(
                    {"search": name, "trial": t.number,
                     "proxy_accuracy": t.user_attrs.get("accuracy"),
                     "proxy_score": t.values[0]})
    return out


def front_hypervolumes(work: Path, backbones: list[str],
                       acc: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Per search folder: its whole front re-scored by the references, and the hypervolume."""
    from evaluators.cost import get_cost_model
    from experiments.supernet_hypervolume import rescored_hypervolume

    out = []
    for backbone in backbones:
        space = _space(backbone)
        lo = get_cost_model(backbone, 10, 32, "all").range(space.choices).min_flops
        for prefix, label in ROUNDS:
            for share in BUDGETS:
                path = work / search_name(backbone, share, prefix) / "pareto" / "pareto.json"
                if not path.is_file():
                    continue
                members = [{"arch_id": m["arch_id"], "flops": m["flops"],
                            "acc": statistics.fmean(acc[m["arch_id"]])
                            if acc.get(m["arch_id"]) else None}
                           for m in json.loads(path.read_text())["members"]]
                pts = [(m["acc"], m["flops"]) for m in members if m["acc"] is not None]
                out.append({"search": f"{label} {round(100 * share)}%", "members": members,
                            "retrained": len(pts),
                            "hypervolume": rescored_hypervolume(
                                pts, lo, share * _base_flops(backbone))})
        # What the papers' recipes alone give under each budget: their uniform networks.
        papers = [n for n in networks(work, [backbone]) if n["group"] in ("paper", "backbone")]
        for share in BUDGETS:
            budget = share * _base_flops(backbone)
            members = []
            for n in papers:
                a = n["arch"]
                f = get_cost_model(a.backbone, a.num_classes, a.resolution, a.slots).cost(a).flops
                if f <= budget:
                    members.append({"arch_id": a.arch_id, "flops": f,
                                    "acc": statistics.fmean(acc[a.arch_id])
                                    if acc.get(a.arch_id) else None})
            pts = [(m["acc"], m["flops"]) for m in members if m["acc"] is not None]
            out.append({"search": f"papers' networks within {round(100 * share)}%",
                        "members": members, "retrained": len(pts),
                        "hypervolume": rescored_hypervolume(pts, lo, budget)})
    return out


def analyse(work: Path, results: Path, backbones: list[str], command: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from evaluators.cost import get_cost_model

    nets = networks(work, backbones)
    lat_path = work / "latency.json"
    lat = json.loads(lat_path.read_text()) if lat_path.is_file() else {}
    acc: dict[str, list[float]] = {}
    for line in results.read_text().splitlines():
        r = json.loads(line)
        if r["kind"] == "reference":
            acc.setdefault(r["arch_id"], []).append(r["test_top1"])
    # A found member can be a paper network itself (the warm start enqueues the uniform ones):
    # its row keeps the paper's name and lists the searches that kept it in found_as.
    found_as: dict[str, list[str]] = {}
    found_proxy: dict[str, float] = {}
    for n in nets:
        if n["group"].startswith(CURRENT):
            found_as.setdefault(n["arch"].arch_id, []).append(n["name"])
            if n.get("proxy_accuracy") is not None:
                found_proxy[n["arch"].arch_id] = n["proxy_accuracy"]
    rows, seen = [], set()
    for n in nets:
        a = n["arch"]
        if a.arch_id in seen:
            continue
        seen.add(a.arch_id)
        c = get_cost_model(a.backbone, a.num_classes, a.resolution, a.slots).cost(a)
        accs = acc.get(a.arch_id, [])
        rows.append({"name": n["name"], "group": n["group"], "arch_id": a.arch_id,
                     "flops": c.flops, "params": c.params, "acc": accs,
                     "acc_mean": statistics.fmean(accs) if accs else None,
                     "acc_sd": statistics.stdev(accs) if len(accs) > 1 else None,
                     "latency_cpu_ms": lat.get(a.arch_id, {}).get("cpu_ms"),
                     "proxy_accuracy": n.get("proxy_accuracy", found_proxy.get(a.arch_id)),
                     "found_as": found_as.get(a.arch_id, [])})
    seen_by = evaluated(work, backbones)
    for r in rows:
        r["evaluated_by"] = seen_by.get(r["arch_id"], [])
    comparisons = []
    found = [r for r in rows if r["found_as"] and r["acc_mean"] is not None]
    for p in rows:
        if p["group"] not in ("paper", "backbone") or p["acc_mean"] is None:
            continue
        better = [f for f in found if f is not p and f["acc_mean"] >= p["acc_mean"]]
        by_flops = [f["name"] for f in better if f["flops"] <= p["flops"]]
        by_lat = [f["name"] for f in better if p["latency_cpu_ms"] and f["latency_cpu_ms"]
                  and f["latency_cpu_ms"] <= p["latency_cpu_ms"]]
        comparisons.append({"paper": p["name"], "found_dominating_by_flops": by_flops,
                            "found_dominating_by_latency": by_lat,
                            "kept_by_search": p["found_as"],
                            "evaluated_by": p["evaluated_by"]})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    colours = {"backbone": "black", "paper": "tab:blue", "found 50%": "tab:red",
               "found 70%": "tab:orange", "round 3 50%": "tab:purple",
               "round 3 70%": "tab:pink", "round 3 re-ranked 50%": "tab:green",
               "round 3 re-ranked 70%": "tab:olive", "round 4 50%": "tab:cyan",
               "round 4 70%": "tab:brown", "round 1 50%": "lightcoral",
               "round 1 70%": "goldenrod"}
    for ax, key, label in ((axes[0], "flops", "MFLOPs"), (axes[1], "latency_cpu_ms",
                                                          "latency, batch 1, 1 thread (CPU ms)")):
        for group, colour in colours.items():
            pts = [r for r in rows if r["group"] == group and r["acc_mean"] is not None
                   and r[key] is not None]
            if not pts:
                continue
            xs = [r[key] / 1e6 if key == "flops" else r[key] for r in pts]
            ax.errorbar(xs, [100 * r["acc_mean"] for r in pts],
                        yerr=[100 * (r["acc_sd"] or 0) for r in pts],
                        fmt="D" if "re-ranked" in group else
                        {"round 1": "x", "round 3": "s"}.get(group[:7], "o"), color=colour,
                        label=group, capsize=3)
            kept = [(xv, r) for xv, r in zip(xs, pts) if r["found_as"] and r["group"] == group
                     and not group.startswith(CURRENT)]
            if kept:  # paper networks on a search's front: a red ring
                ax.scatter([xv for xv, _ in kept], [100 * r["acc_mean"] for _, r in kept],
                           s=160, facecolors="none", edgecolors="tab:red",
                           label="paper network kept by a search" if group == "paper" else None)
            if group == "paper":
                for xv, r in zip(xs, pts):
                    ax.annotate(r["name"].split(" ", 1)[1].replace(" (paper)", ""),
                                (xv, 100 * r["acc_mean"]), fontsize=6, alpha=0.7,
                                textcoords="offset points", xytext=(5, 3))
        ax.set_xlabel(label)
        ax.set_ylabel("test top-1 (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("cifar_resnet20 on cifar10-mini: found (ConvNAS) vs the papers' networks, "
                 "30-epoch retraining, mean ± sd over seeds")
    fig.tight_layout()
    out = HERE / "results"
    fig.savefig(out / "found_vs_papers.png", dpi=120)
    fronts = front_hypervolumes(work, backbones, acc)
    payload = {"date": dt.date.today().isoformat(), "machine": machine_description(),
               "command": command,
               "rows": rows, "comparisons": comparisons, "fronts": fronts}
    (out / "found_vs_papers.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = ["# Found architectures vs the papers' networks (cifar10-mini)", "",
             f"{payload['date']}; {payload['machine']}; `{command}`.", "",
             "Groups: *found* = the Pareto members (top 3 by the search's objective) of the "
             "searches of round 2 (`fvp2-*`: 2,000 images at 16 px scored by top-1, warm start "
             "with the uniform networks that fit); *round 3* = those of the searches with the "
             "defaults since 2026-12-07 (`fvp3-*`: 3,500 images, scored by exp(-validation "
             "loss)); *round 3 re-ranked* = round 3's studies finished with `--rerank 2` (the "
             "trials of the front and the layer behind it scored with 2 more seeds, the front "
             "chosen by the mean of 3); *round 1* = those of the first searches (`fvp-*`: 32 px "
             "proxy, random warm start only). A paper network marked *kept by* was on a round 2 "
             "or 3 search's front.", "",
             "| network | group | test top-1 (mean ± sd, seeds) | MFLOPs | params | "
             "latency (CPU ms) | proxy acc |", "|---|---|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: r["flops"]):
        a = "–" if r["acc_mean"] is None else (
            f"{100 * r['acc_mean']:.1f} ± {100 * (r['acc_sd'] or 0):.1f} ({len(r['acc'])})")
        lat_s = "–" if r["latency_cpu_ms"] is None else f"{r['latency_cpu_ms']:.2f}"
        px = "–" if r["proxy_accuracy"] is None else f"{100 * r['proxy_accuracy']:.1f}"
        group = r["group"] + (f" (kept by {', '.join(r['found_as'])})"
                              if r["found_as"] and not r["group"].startswith(CURRENT) else "")
        lines.append(f"| {r['name']} | {group} | {a} | {r['flops'] / 1e6:.2f} | "
                     f"{r['params'] / 1e3:.1f}k | {lat_s} | {px} |")
    lines += ["", "Each search's whole exported front re-scored by the 30-epoch test top-1 "
              "(mean over seeds): hypervolume of (top-1, FLOPs scaled from the space's cheapest "
              "network to the budget), reference point top-1 0 at the budget "
              "(`experiments/supernet_hypervolume.py`'s measure); members without a retraining "
              "are left out and counted.", "",
              "| search | members | retrained | hypervolume | members (test top-1 %) |",
              "|---|---:|---:|---:|---|"]
    for f in fronts:
        shown = ", ".join(f"{m['arch_id'][:8]} " + (f"{100 * m['acc']:.1f}" if m["acc"] else "–")
                          for m in f["members"])
        lines.append(f"| {f['search']} | {len(f['members'])} | {f['retrained']} | "
                     f"{f['hypervolume']:.4f} | {shown} |")
    lines += ["", "Paper networks and a found network at least as accurate (mean) at no more "
              "FLOPs / no more latency:", ""]
    for c in comparisons:
        kept = f" (on the front of {', '.join(c['kept_by_search'])})" if c["kept_by_search"] else ""
        lines.append(f"- {c['paper']}{kept}: FLOPs "
                     f"{', '.join(c['found_dominating_by_flops']) or 'none'}"
                     f"; latency {', '.join(c['found_dominating_by_latency']) or 'none'}")
    lines += ["", "Was each paper network evaluated by the searches of rounds 2 and 3, and "
              "what did their proxy say (validation top-1 after 2 epochs at 16 px; in round 3 "
              "also the score the search ranked by, exp(-validation loss))?", ""]

    def said_one(e: dict[str, Any]) -> str:
        acc = e.get("proxy_accuracy")
        text = f"{e['search']} trial {e['trial']}: proxy " + (
            "–" if acc is None else f"{100 * acc:.1f}")
        if e.get("proxy_score") is not None and e["proxy_score"] != acc:
            text += f", score {e['proxy_score']:.4f}"
        return text

    for c in comparisons:
        ev = c["evaluated_by"]
        said = "; ".join(said_one(e) for e in ev) or "not evaluated"
        lines.append(f"- {c['paper']}: {said}"
                     + (" (kept on the front)" if c["kept_by_search"] else
                        (" (dropped: another trial beat it on the proxy)" if ev else "")))
    (out / "found_vs_papers.md").write_text("\n".join(lines) + "\n")
    return out / "found_vs_papers.md"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("runs/proxy_fidelity"))
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--backbones", default="cifar_resnet20")
    p.add_argument("--search", action="store_true")
    p.add_argument("--rerank", type=int, default=None, metavar="K",
                   help="finish round 3's studies (copies) with nas.search --rerank K")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--latency", action="store_true")
    p.add_argument("--analyse", action="store_true")
    a = p.parse_args(argv)
    backbones = a.backbones.split(",")
    results = a.results or a.work / "results.jsonl"
    if a.search:
        run_searches(a.work, backbones)
    if a.rerank:
        rerank_searches(a.work, backbones, a.rerank)
    if a.worker:
        worker(a.work, results, backbones)
    if a.latency:
        lat = measure_latency(networks(a.work, backbones))
        (a.work / "latency.json").write_text(json.dumps(lat, indent=1))
    if a.analyse:
        print(analyse(a.work, results, backbones, command_line()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
