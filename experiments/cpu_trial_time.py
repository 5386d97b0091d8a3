"""CPU time of one proxy-training step of the default search, and what a trial costs from it.

A trained trial of ``python -m nas.search --budget 2GFLOPs`` (ResNet-50 at 224x224) is too slow
on a shared CPU to be timed whole, so this times its dominant part: one optimizer step of
proxy training (forward, backward, SGD update; batch 64 of the bundled cifar10-sample at the
proxy resolution) of a budget-fitting random architecture (the search's warm start), on one
thread with ``time.thread_time`` (CPU time: robust to other processes on a shared machine).
Setups are interleaved, one step each per round, after one warm-up step. A trial trains 1 or 2
epochs of ceil(1800 / 64) = 29 steps; validation (200 images, forward only) costs about
another step, and model build, latency and zero-cost screen a few more, so
``29 x epochs x per-step`` is a lower bound of a trial's CPU time.

    python experiments/cpu_trial_time.py [--rounds 3]
    # writes experiments/results/cpu_trial_time.md and .json

Nothing in the packages imports this script.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluators.cost import get_cost_model  # noqa: E402
from evaluators.data import load_split  # noqa: E402
from experiments._machine import machine_description  # noqa: E402
from nas.backends.warm_start import feasible_random  # noqa: E402
from nas.budgets import Budgets  # noqa: E402
from search_spaces.arch import build_model  # noqa: E402
from search_spaces.space import SearchSpace  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
# (name, backbone, resolution, budget, proxy resolution)
SETUPS = [
    ("resnet50 @224, 2 GFLOPs, proxy at 224 (the default)", "resnet50", 224, 2e9, 224),
    ("resnet50 @224, 2 GFLOPs, --proxy-resolution 32", "resnet50", 224, 2e9, 32),
    ("cifar_resnet20 @32, 30 MFLOPs (CIFAR-sized)", "cifar_resnet20", 32, 30e6, 32),
]
STEPS_PER_EPOCH = math.ceil(1800 / 64)  # the sample's 2,000 training images less 10 % val


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = load_split("cifar10-sample", "train", augment="cifar")
    setups = []
    for name, backbone, res, budget, proxy_res in SETUPS:
        space = SearchSpace(backbone, num_classes=10, resolution=res)
        cost = get_cost_model(backbone, 10, res, "all")
        labels = feasible_random(
            space.choices, cost.cost_of_labels, Budgets(int(budget)), random.Random(0)
        )
        arch = space.to_architecture(labels)
        model = build_model(arch).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        view = data.view(resolution=proxy_res)
        setups.append((name, arch, model, opt, view, cost.cost_of_labels(labels).flops))

    def step(model, opt, view, k):
        x, y = zip(*view.__getitems__(list(range(64 * k, 64 * (k + 1)))))
        loss = torch.nn.functional.cross_entropy(model(torch.stack(x)), torch.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()

    times: dict[str, list[float]] = {s[0]: [] for s in setups}
    for r in range(args.rounds + 1):  # round 0 warms up
        for name, _, model, opt, view, _ in setups:
            t = time.thread_time()
            step(model, opt, view, r)
            if r:
                times[name].append(time.thread_time() - t)
            print(name, r, f"{time.thread_time() - t:.2f}s", flush=True)
    rows = []
    for name, arch, _, _, _, flops in setups:
        ts = times[name]
        med = statistics.median(ts)
        rows.append(
            {
                "setup": name,
                "arch_id": arch.arch_id,
                "flops": flops,
                "per_step_s": {"median": med, "min": min(ts), "max": max(ts), "all": ts},
                "trial_1_epoch_min_s": STEPS_PER_EPOCH * med,
                "trial_2_epochs_min_s": 2 * STEPS_PER_EPOCH * med,
            }
        )
    record = {
        "date": dt.date.today().isoformat(),
        "command": "python experiments/cpu_trial_time.py " + " ".join(sys.argv[1:]),
        "machine": machine_description(),
        "threads": 1,
        "torch": torch.__version__,
        "rows": rows,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "cpu_trial_time.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# CPU time of a proxy-training step of the default search",
        "",
        f"{record['date']}, `{record['command']}`, {record['machine']}, torch "
        f"{record['torch']}, 1 thread, CPU time (time.thread_time), batch 64 of cifar10-sample "
        f"with the cifar augmentation, a budget-fitting random architecture per setup, "
        f"{args.rounds} interleaved rounds after a warm-up. A trial trains 1 or 2 epochs of "
        f"{STEPS_PER_EPOCH} steps; the last columns are that many steps (a lower bound: "
        f"validation, latency and model build come on top).",
        "",
        "| setup | candidate FLOPs | CPU s per step, median (range) | 1-epoch trial | "
        "2-epoch trial |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["per_step_s"]
        lines.append(
            f"| {r['setup']} | {r['flops'] / 1e9:.2f} G | {s['median']:.2f} "
            f"({s['min']:.2f}-{s['max']:.2f}) | {r['trial_1_epoch_min_s'] / 60:.1f} min | "
            f"{r['trial_2_epochs_min_s'] / 60:.1f} min |"
        )
    (OUT / "cpu_trial_time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
