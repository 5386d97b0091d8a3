"""Data time of a proxy trial on a small image folder, decoding the PNGs every time or once.

Issue 9: a small image folder (``imagefolder:`` under ``SMALL_FOLDER_BYTES``, e.g.
cifar10-mini's 4,660 training PNGs) is now decoded once per process and its images reused by
every epoch and trial (:mod:`evaluators.data.imagefolder`). This script measures, with one
thread and ``time.thread_time`` (loader workers off, so all the work is in this thread), with
the proxy's real loaders (:meth:`evaluators.objectives.Evaluator.loaders`: a 2,000-image
training subset, the train split's 25 % validation share, ``cifar`` augmentation, resolution
32):

* ``setup``: building the loaders in a new evaluator (what the first trial of a process pays;
  with the cache, ``cold`` decodes the folder, ``warm`` finds it decoded);
* ``epoch``: one pass over the training loader and one over the validation loader, i.e. the
  data work of one proxy epoch, without a model.

Variants ``disk`` (the cache off: ``SMALL_FOLDER_BYTES = 0``, decoding at every fetch as
before) and ``cache`` are interleaved round by round. Writes
``experiments/results/folder_cache.md`` and ``.json`` (machine, command, date, medians and
ranges, raw times).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from evaluators.data import imagefolder  # noqa: E402
from evaluators.objectives import EvalConfig, Evaluator  # noqa: E402
from experiments._machine import command_line, machine_description  # noqa: E402

LIMIT = imagefolder.SMALL_FOLDER_BYTES


def one(folder: Path, cached: bool, cold: bool) -> dict[str, float]:
    imagefolder.SMALL_FOLDER_BYTES = LIMIT if cached else 0
    if cold:
        imagefolder.clear_decoded()
    config = EvalConfig(
        dataset=f"imagefolder:{folder}",
        proxy_epochs=2,
        proxy_subset=2000,
        device="cpu",
        latency="off",
        num_workers=0,
        extra={"cpu_threads": 1},
    )
    ev = Evaluator(config)
    t = time.thread_time()
    train, val = ev.loaders(32, 10)
    setup = time.thread_time() - t
    base = train.dataset.dataset
    assert base.decoded_in_memory is cached
    kept = base.loader.args[0] if cached else {}
    pixel_bytes = sum(im.width * im.height * 3 for im in kept.values())
    t = time.thread_time()
    n = sum(len(y) for _, y in train) + sum(len(y) for _, y in val)
    epoch = time.thread_time() - t
    return {
        "setup_s": setup,
        "epoch_s": epoch,
        "images_per_epoch": n,
        "images_kept": len(kept),
        "pixel_bytes_kept": pixel_bytes,
    }


def _stats(xs: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(xs), "min_s": min(xs), "max_s": max(xs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", type=Path, default=Path("/work/shared/data/cifar10-mini"))
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    one(args.folder, cached=False, cold=True)  # imports, the cached file list: not measured
    variants = {"disk": [], "cache cold": [], "cache warm": []}
    for i in range(args.rounds):
        order = ["disk", "cache"] if i % 2 == 0 else ["cache", "disk"]
        for v in order:
            if v == "disk":
                variants["disk"].append(one(args.folder, cached=False, cold=True))
            else:
                variants["cache cold"].append(one(args.folder, cached=True, cold=True))
                variants["cache warm"].append(one(args.folder, cached=True, cold=False))
            print(f"round {i + 1} {v}: {variants[v if v == 'disk' else 'cache warm'][-1]}")
    rows = {
        v: {
            "setup": _stats([r["setup_s"] for r in runs]),
            "epoch": _stats([r["epoch_s"] for r in runs]),
            "images_per_epoch": runs[0]["images_per_epoch"],
            "images_kept": runs[0]["images_kept"],
            "pixel_bytes_kept": runs[0]["pixel_bytes_kept"],
        }
        for v, runs in variants.items()
    }
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = {
        "machine": machine_description(),
        "command": command_line(),
        "date": when,
        "folder": str(args.folder),
        "rounds": args.rounds,
        "small_folder_bytes": LIMIT,
        "results": rows,
        "raw": variants,
    }
    out = ROOT / "experiments" / "results"
    (out / "folder_cache.json").write_text(json.dumps(doc, indent=2) + "\n")

    def cell(s: dict[str, float]) -> str:
        return f"{s['median_s']:.2f} ({s['min_s']:.2f}-{s['max_s']:.2f})"

    disk, cold, warm = rows["disk"], rows["cache cold"], rows["cache warm"]
    trial_disk = 2 * disk["epoch"]["median_s"]
    trial_cache = 2 * warm["epoch"]["median_s"]
    lines = [
        "# Data time of a proxy trial on a small image folder: decoded every time or once",
        "",
        f"Machine: {doc['machine']}.",
        f"Command: `{doc['command']}`; {when}; {args.rounds} rounds, variants interleaved;",
        f"folder `{args.folder}` ({rows['disk']['images_per_epoch']:,} images per proxy epoch: "
        "the 2,000-image training subset in full batches of 64, and the validation share "
        "(25 %) of the train split).",
        "",
        "CPU time of this thread (`time.thread_time`, 1 thread, loader workers off), seconds: "
        "median (min-max).",
        "",
        "| variant | set-up (new evaluator's loaders) | one proxy epoch of data |",
        "| --- | --- | --- |",
        f"| disk: decode at every fetch (before) | {cell(disk['setup'])} | {cell(disk['epoch'])} |",
        f"| cache, first evaluator of the process (decodes the folder) | {cell(cold['setup'])} | "
        f"{cell(cold['epoch'])} |",
        f"| cache, later evaluator (folder already decoded) | {cell(warm['setup'])} | "
        f"{cell(warm['epoch'])} |",
        "",
        f"A trial of the default 2 proxy epochs spends {trial_disk:.2f} s on data before and "
        f"{trial_cache:.2f} s with the cache (medians, later trials of a process; the loaders "
        "are built once per evaluator). The first trial of a process pays the decoding once "
        "in its set-up instead.",
        "",
        f"Kept in memory: {cold['images_kept']:,} decoded images, "
        f"{cold['pixel_bytes_kept'] / 1e6:.1f} MB of pixels (plus PIL's small per-image "
        "objects). The rest of an epoch's data time is torchvision's per-image transform "
        "pipeline, unchanged. In a search the loaders run in `min(4, cpus - 1)` worker "
        "processes by default, forked after the folder is decoded, so they share the kept "
        "images; the work measured here is the same wherever it runs.",
    ]
    (out / "folder_cache.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
