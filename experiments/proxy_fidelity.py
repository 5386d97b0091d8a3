"""Proxy rank fidelity on real images: does the search's accuracy signal rank architectures
the way full training does?

Architectures (cifar_resnet20 at 32x32, ``slots=all``, the search's default operator menu;
plus a few cifar_resnet56): one uniform network per operator setting (the papers' recipes),
SCConv on the first convolution of every block (the SCConv paper's ResNet-56 placement),
random architectures drawn from the feasible region of a typical budget (70 % of the all-conv
FLOPs, spread over that region by FLOPs quantiles), and Pareto members of the product's own
searches (``experiments/found_vs_papers.py``).

**Reference**: ``python -m nas.retrain`` with the ``cifar-cosine`` recipe for 30 epochs on the
whole training split (``--val-fraction 0``), test top-1 of the last epoch on the test split,
seeds 0 (all) and 1 (some), so the reference's own noise is known.

**Proxies**: short trainings with :func:`evaluators.proxy.train_proxy` on the proxy split of
:func:`evaluators.data.proxy_split` (the functions the search's evaluator calls): a fixed
validation part of 25 % of the training split (1,165 images of cifar10-mini), of which the
first ``default_val`` images (stratified; 222 for a 2,000-image subset, the search's rule
before this benchmark) stand for the small validation split. One training run is validated on
both, by accuracy and by loss, after every rung. Variants: images x epochs x resolution, each
with seeds 0 and 1 (the seed changes the initial weights and the order, never the split).
Zero-cost scores (naswot, synflow, grad_norm) on one batch of 64 training images, FLOPs and
params complete the candidates.

Every finished item is appended to a JSON-lines file and skipped on a rerun; several worker
processes can share the queue (an item is claimed by creating a file with O_EXCL). ``--analyse``
writes the Markdown and JSON results: Kendall tau and Spearman rho of every candidate against
the reference (mean over the reference seeds), with bootstrap 95 % intervals over
architectures, each proxy's seed-to-seed ceiling, and its compute time per architecture.

    python experiments/proxy_fidelity.py --work runs/proxy_fidelity --worker   # run the queue
    python experiments/proxy_fidelity.py --work runs/proxy_fidelity --analyse  # write results
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MINI = "/work/shared/data/cifar10-mini"
BUDGET_SHARE = 0.7
REF_EPOCHS = 30
VAL_FRACTION = 0.25  # the fixed, large validation part of the proxies (1,165 images)
BATCH = 64
HERE = Path(__file__).resolve().parent

#: Proxy variants: name -> (train images or None for all, epochs, resolution). Each run is
#: validated after every epoch in ``rungs`` (the schedule spans the last one).
VARIANTS: dict[str, dict[str, Any]] = {
    "s2000-e2-r32": {"subset": 2000, "epochs": 2, "resolution": 32},
    "s2000-e2-r16": {"subset": 2000, "epochs": 2, "resolution": 16},
    "sall-e2-r32": {"subset": None, "epochs": 2, "resolution": 32},
    # around the 16-px default: more images, more epochs
    "sall-e2-r16": {"subset": None, "epochs": 2, "resolution": 16},
    "s2000-e4-r16": {"subset": 2000, "epochs": 4, "resolution": 16},
    "s2000-e4-r32": {"subset": 2000, "epochs": 4, "resolution": 32},
    "sall-e4-r16": {"subset": None, "epochs": 4, "resolution": 16},
    "sall-e8-r16": {"subset": None, "epochs": 8, "resolution": 16},
}


#: Reference order (names): the first dozen cover every operator, the paper placement and
#: random networks across the feasible FLOPs range; the rest follow.
REF_ORDER = [
    "r20 all conv", "r20 all oct(a=0.5)", "r20 all linear(a=0.5,rank=full)",
    "r20 all scconv(a=0.25,r=2,g=2)", "r20 random 0", "r20 random 4", "r20 all oct(a=0.75)",
    "r20 scconv(a=0.5) first conv of each block (paper placement)", "r20 random 7",
    "r20 all linear(a=0.25,rank=4)", "r20 all oct(a=0.25)", "r20 random 2",
]
REF_SEED1 = {"r20 all conv", "r20 all oct(a=0.5)", "r20 all scconv(a=0.25,r=2,g=2)",
             "r20 random 4"}

# ------------------------------------------------------------------------------ architectures


def _r20_space() -> Any:
    from search_spaces.space import SearchSpace

    return SearchSpace("cifar_resnet20", num_classes=10, resolution=32, slots="all")


def architectures(work: Path) -> list[dict[str, Any]]:
    """The benchmark's architectures: ``[{"name", "group", "arch": Architecture}]``.

    Deterministic: uniform and paper placements, then 8 random feasible ones (seeded), then
    the Pareto members of found_vs_papers.py's cifar_resnet20 searches in ``work``.
    """
    from evaluators.cost import get_cost_model
    from search_spaces.arch import Architecture
    from search_spaces.space import SearchSpace

    space = _r20_space()
    out: list[dict[str, Any]] = []
    for label in space.menu:
        out.append({"name": f"r20 all {label.label}", "group": "uniform",
                    "arch": space.uniform(label.label)})
    first = {p: ("scconv(a=0.5,r=2,g=2)" if p.endswith(".conv1") else "conv")
             for p in space.choices}
    out.append({"name": "r20 scconv(a=0.5) first conv of each block (paper placement)",
                "group": "paper", "arch": space.to_architecture(first)})
    cm = get_cost_model("cifar_resnet20", 10, 32, "all")
    base = cm.cost(space.uniform("conv")).flops
    rng = random.Random(2026)

    def per_slot_flops(a: Any) -> int:
        # FLOPs as counted when the set was drawn (before the octave pass saved a little on
        # OctConv pairs): keeps the benchmark's random architectures the same ones
        return cm.cost(a).flops - cm.octave_flops(a)

    feasible = []
    while len(feasible) < 400:
        a = space.sample(rng)
        if per_slot_flops(a) <= BUDGET_SHARE * base:
            feasible.append(a)
    feasible.sort(key=per_slot_flops)
    for i in range(8):  # FLOPs quantiles 1/16, 3/16, ..., 15/16 of the feasible region
        a = feasible[int((2 * i + 1) / 16 * len(feasible))]
        out.append({"name": f"r20 random {i}", "group": "random", "arch": a})
    # Pareto members of the product's own searches (experiments/found_vs_papers.py), two
    # per budget: the architectures a search actually proposes for retraining.
    for share in (50, 70):
        path = work / f"fvp-cifar_resnet20-{share}" / "pareto" / "pareto.json"
        if path.is_file():
            members = json.loads(path.read_text())["members"]
            for i, m in enumerate(members[:: max(1, len(members) // 2)][:2]):
                a = Architecture.from_dict(m["architecture"])
                out.append({"name": f"r20 search @{share}% pareto {i}", "group": "pareto",
                            "arch": a})
    # Every other network found_vs_papers.py retrains (its searches' members, both rounds):
    # their 30-epoch runs are references here too, so the proxies run on them as well.
    from experiments.found_vs_papers import networks

    out += [{"name": n["name"], "group": "pareto", "arch": n["arch"]}
            for n in networks(work, ["cifar_resnet20"]) if n["group"] not in ("paper", "backbone")]
    s56 = SearchSpace("cifar_resnet56", num_classes=10, resolution=32, slots="all")
    paper56 = json.loads((HERE.parent / "examples" / "scconv_r56_cifar.json").read_text())
    paper56["slots"] = "all"  # the same network, written in the search's slot policy
    r56 = [
        ("r56 all conv", s56.uniform("conv")),
        ("r56 all oct(a=0.5)", s56.uniform("oct(a=0.5)")),
        ("r56 scconv(a=0.5) paper placement", Architecture.from_dict(paper56)),
    ]
    out += [{"name": n, "group": "r56", "arch": a} for n, a in r56]
    seen, unique = set(), []
    for item in out:
        if item["arch"].arch_id not in seen:
            seen.add(item["arch"].arch_id)
            unique.append(item)
    return unique


# ----------------------------------------------------------------------------- the work queue


def queue(archs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items in the order they are worth doing: references and cheap proxies first."""
    r20 = [a for a in archs if a["group"] != "r56"]
    r56 = [a for a in archs if a["group"] == "r56"]
    items: list[dict[str, Any]] = []
    for a in r20:
        items.append({"kind": "zero_cost", "arch": a})
    for v in ("s2000-e2-r32", "s2000-e2-r16"):
        for seed in (0, 1):
            items += [{"kind": "proxy", "variant": v, "seed": seed, "arch": a} for a in r20]
    # References in the order that spreads accuracy and cost fastest (a 2-core machine gets
    # through about a dozen in an afternoon); seed 1 for four of them.
    rank = {n: i for i, n in enumerate(REF_ORDER)}
    by_rank = sorted(r20, key=lambda a: rank.get(a["name"], len(rank)))
    refs = [{"kind": "reference", "seed": 0, "arch": a} for a in by_rank]
    seed1 = [a for a in by_rank if a["name"] in REF_SEED1]
    refs[10:10] = [{"kind": "reference", "seed": 1, "arch": a} for a in seed1]
    more = []
    for v in ("sall-e2-r32", "s2000-e4-r32", "sall-e4-r16", "sall-e8-r16"):
        for seed in (0, 1):
            more += [{"kind": "proxy", "variant": v, "seed": seed, "arch": a} for a in r20]
    at16 = [{"kind": "proxy", "variant": v, "seed": seed, "arch": a}
            for v in ("sall-e2-r16", "s2000-e4-r16") for seed in (0, 1) for a in r20]
    items += refs + at16 + more
    items += [{"kind": "reference", "seed": 0, "arch": a} for a in r56]
    items += [{"kind": "zero_cost", "arch": a} for a in r56]
    items += [{"kind": "proxy", "variant": v, "seed": s, "arch": a}
              for v in ("s2000-e2-r16", "s2000-e2-r32") for a in r56 for s in (0, 1)]
    return items


def item_key(item: dict[str, Any]) -> str:
    parts = [item["kind"], item["arch"]["arch"].arch_id]
    if "variant" in item:
        parts.append(item["variant"])
    if "seed" in item:
        parts.append(f"s{item['seed']}")
    return "-".join(parts)


def done_keys(results: Path) -> set[str]:
    if not results.is_file():
        return set()
    return {json.loads(line)["key"] for line in results.read_text().splitlines() if line.strip()}


def append(results: Path, record: dict[str, Any]) -> None:
    results.parent.mkdir(parents=True, exist_ok=True)
    with open(results, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def claim(work: Path, key: str):
    """Hold ``key`` (a claim file with our pid); None if another live process holds it."""
    d = work / "claims"
    d.mkdir(parents=True, exist_ok=True)
    path = d / key
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text() or "0")
                os.kill(pid, 0)
                yield None
                return
            except (ValueError, ProcessLookupError):
                path.unlink(missing_ok=True)  # its worker died: take it over
                continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
        return
    yield None


# -------------------------------------------------------------------------------- the items


def run_reference(item: dict[str, Any], work: Path, epochs: int = REF_EPOCHS,
                  folder: str = "ref") -> dict[str, Any]:
    """``epochs`` (30) of nas.retrain on the whole training split, into
    ``<work>/<folder>/<arch_id>-s<seed>``; test top-1 of the last epoch."""
    arch = item["arch"]["arch"]
    out = work / folder / f"{arch.arch_id}-s{item['seed']}"
    arch_file = work / "archs" / f"{arch.arch_id}.json"
    arch_file.parent.mkdir(parents=True, exist_ok=True)
    if not arch_file.is_file():
        arch.save(arch_file)
    cmd = [
        sys.executable, "-m", "nas.retrain", str(arch_file), "--dataset", f"imagefolder:{MINI}",
        "--recipe", "cifar-cosine", "--epochs", str(epochs), "--val-fraction", "0",
        "--select", "last", "--seed", str(item["seed"]), "--out", str(out), "--no-progress",
        "--no-latency", "--num-workers", "0",
    ]
    if (out / "last.pt").is_file():
        # the recipe is saved in the checkpoint; nas.retrain refuses --recipe with --resume
        i = cmd.index("--recipe")
        del cmd[i:i + 2]
        cmd.append("--resume")
    elif out.exists():
        shutil.rmtree(out)  # started but never checkpointed: start again
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nas.retrain failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    res = json.loads((out / "result.json").read_text())
    return {"test_top1": res["test_top1"], "test_top5": res.get("test_top5"),
            "train_time_s": res.get("train_time_s"), "wall_s": time.time() - t0,
            "epochs": epochs}


_DATA: dict[Any, Any] = {}


def _proxy_data(subset: int | None, resolution: int) -> tuple[Any, Any, list[int]]:
    """(train loader, large val loader, indices of the small default val part in it)."""
    from evaluators import data as D

    key = (subset, resolution)
    if key not in _DATA:
        spec = f"imagefolder:{MINI}"
        # val_size: keep the whole validation part whatever the subset (1,165 images).
        train, val = D.proxy_split(spec, val_fraction=VAL_FRACTION, subset=subset,
                                   val_size=10**9, resolution=resolution, augment="cifar",
                                   seed=0)
        # The search's old rule: validation = the subset's share of val_fraction 0.1.
        n_train = len(train)
        small = max(1, round(n_train * 0.1 / 0.9))
        _, val_small = D.proxy_split(spec, val_fraction=VAL_FRACTION, subset=subset,
                                     val_size=small, resolution=resolution, augment="cifar",
                                     seed=0)
        pos = {idx: i for i, idx in enumerate(val.indices)}
        small_pos = [pos[i] for i in val_small.indices]
        # Decode once: the images are tiny, and the loaders then cost nothing per epoch.
        train_loader = D.make_loader(train, batch_size=BATCH, shuffle=True, seed=0,
                                     num_workers=0, drop_last=True)
        val_loader = D.make_loader(val, batch_size=256, shuffle=False, num_workers=0)
        _DATA[key] = (train_loader, val_loader, small_pos)
    return _DATA[key]


def _validate(model: Any, loader: Any) -> tuple[list[bool], list[float]]:
    import torch
    import torch.nn.functional as F

    model.eval()
    correct, losses = [], []
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            correct += (out.argmax(1) == y).tolist()
            losses += F.cross_entropy(out, y, reduction="none").tolist()
    return correct, losses


def _summary(correct: list[bool], losses: list[float], small: list[int]) -> dict[str, Any]:
    sc = [correct[i] for i in small]
    sl = [losses[i] for i in small]
    return {
        "acc_large": sum(correct) / len(correct), "loss_large": sum(losses) / len(losses),
        "acc_small": sum(sc) / len(sc), "loss_small": sum(sl) / len(sl),
        "n_large": len(correct), "n_small": len(sc),
        "correct_hex": _pack(correct),
    }


def _pack(bits: list[bool]) -> str:
    n = 0
    for b in reversed(bits):
        n = (n << 1) | int(b)
    return format(n, "x")


def run_proxy(item: dict[str, Any]) -> dict[str, Any]:
    import torch

    from evaluators.proxy import train_proxy
    from search_spaces.arch import Architecture, build_model

    v = VARIANTS[item["variant"]]
    arch: Architecture = item["arch"]["arch"]
    if v["resolution"] != arch.resolution:
        arch = Architecture(arch.backbone, arch.num_classes, v["resolution"], arch.slots,
                            arch.ops)
    train_loader, val_loader, small = _proxy_data(v["subset"], v["resolution"])
    torch.manual_seed(item["seed"])
    model = build_model(arch)
    rungs, state, t_train = [], None, 0.0
    epochs = [e for e in (1, 2, 4, 8) if e <= v["epochs"]]
    for e in epochs:
        res, state = train_proxy(
            model, train_loader, [next(iter(val_loader))], epochs=e, total_epochs=v["epochs"],
            seed=item["seed"], device="cpu", state=state, max_val_batches=1,
        )
        if not res.ok:
            raise RuntimeError(res.failure)
        t_train += res.train_time_s
        t0 = time.perf_counter()
        correct, losses = _validate(model, val_loader)
        rung = {"epoch": e, "train_time_s": t_train, "val_time_s": time.perf_counter() - t0,
                "train_loss": res.train_loss, **_summary(correct, losses, small)}
        rungs.append(rung)
    return {"rungs": rungs, "train_images": len(train_loader.dataset),
            "train_time_s": t_train, **{k: v2 for k, v2 in rungs[-1].items() if k != "epoch"}}


def run_zero_cost(item: dict[str, Any]) -> dict[str, Any]:
    import torch

    from evaluators.cost import get_cost_model
    from evaluators.zero_cost import ZERO_COST_NAMES, zero_cost_score
    from search_spaces.arch import build_model

    arch = item["arch"]["arch"]
    train_loader, _, _ = _proxy_data(2000, 32)
    batch = next(iter(train_loader))
    out: dict[str, Any] = {}
    cost = get_cost_model(arch.backbone, arch.num_classes, arch.resolution, arch.slots).cost(arch)
    out["flops"], out["params"] = cost.flops, cost.params
    for name in ZERO_COST_NAMES:
        torch.manual_seed(0)
        model = build_model(arch)
        t0 = time.perf_counter()
        out[name] = zero_cost_score(name, model, batch)
        out[f"{name}_time_s"] = time.perf_counter() - t0
    return out


def worker(work: Path, results: Path, kinds: set[str], stop_after: float | None,
           groups: set[str] | None = None, referenced_only: bool = False) -> None:
    import torch

    torch.set_num_threads(1)
    archs = [a for a in architectures(work) if groups is None or a["group"] in groups]
    started = time.time()
    failures: dict[str, int] = {}
    while True:
        done = done_keys(results)
        refs = {k.split("-")[1] for k in done if k.startswith("reference-")}
        todo = [i for i in queue(archs) if item_key(i) not in done and i["kind"] in kinds
                and failures.get(item_key(i), 0) < 2
                and (not referenced_only or i["arch"]["arch"].arch_id in refs)]
        if not todo:
            print("nothing left to do", flush=True)
            return
        progressed = False
        for item in todo:
            key = item_key(item)
            if key in done_keys(results):
                continue
            with claim(work, key) as held:
                if held is None:
                    continue
                t0 = time.time()
                print(f"{dt.datetime.now():%H:%M:%S} start {key} ({item['arch']['name']})",
                      flush=True)
                try:
                    if item["kind"] == "reference":
                        rec = run_reference(item, work)
                    elif item["kind"] == "proxy":
                        rec = run_proxy(item)
                    else:
                        rec = run_zero_cost(item)
                except Exception as e:  # noqa: BLE001 - recorded, retried once, then skipped
                    failures[key] = failures.get(key, 0) + 1
                    print(f"  failed: {type(e).__name__}: {e}", flush=True)
                    continue
                rec.update(key=key, kind=item["kind"], arch_id=item["arch"]["arch"].arch_id,
                           name=item["arch"]["name"], group=item["arch"]["group"],
                           seed=item.get("seed"), variant=item.get("variant"),
                           wall_s=rec.get("wall_s", time.time() - t0),
                           finished=dt.datetime.now().isoformat(timespec="seconds"))
                append(results, rec)
                print(f"  done in {time.time() - t0:.0f}s", flush=True)
                progressed = True
                break  # re-read the queue: earlier items may have been freed
        if stop_after is not None and time.time() - started > stop_after:
            return
        if not progressed:
            time.sleep(30)  # everything left is claimed by other workers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("runs/proxy_fidelity"))
    p.add_argument("--results", type=Path, default=None,
                   help="JSON-lines results (default WORK/results.jsonl)")
    p.add_argument("--worker", action="store_true", help="run queued items until none is left")
    p.add_argument("--kinds", default="reference,proxy,zero_cost")
    p.add_argument("--list", action="store_true", help="print the architectures and exit")
    p.add_argument("--analyse", action="store_true", help="write the Markdown and JSON results")
    p.add_argument("--stop-after", type=float, default=None, help="seconds, then exit")
    p.add_argument("--referenced-only", action="store_true",
                   help="only architectures with a finished reference run")
    p.add_argument("--groups", default=None,
                   help="only these architecture groups (comma-separated, e.g. r56)")
    a = p.parse_args(argv)
    results = a.results or a.work / "results.jsonl"
    if a.list:
        from evaluators.cost import get_cost_model

        for it in architectures(a.work):
            arch = it["arch"]
            c = get_cost_model(arch.backbone, 10, 32, arch.slots).cost(arch)
            print(f"{arch.arch_id}  {it['group']:8s} {c.flops / 1e6:7.2f} MFLOPs "
                  f"{c.params / 1e3:7.1f}k  {it['name']}")
        return 0
    if a.worker:
        groups = set(a.groups.split(",")) if a.groups else None
        worker(a.work, results, set(a.kinds.split(",")), a.stop_after, groups,
               a.referenced_only)
    if a.analyse:
        from experiments._machine import command_line, machine_description
        from experiments.proxy_fidelity_analysis import analyse

        analyse(results, a.work, HERE / "results", command_line(), machine_description())
    return 0


if __name__ == "__main__":
    sys.exit(main())
