"""What a run writes besides checkpoints: config.json, metrics.jsonl, curves.png, its lines.

Output (``--out``, default ``runs/retrain/<arch_id>/``; only rank 0 writes):

``arch.json``        the architecture
``config.json``      the resolved config: recipe, data, device, world size, versions
``metrics.jsonl``    one JSON object per epoch: ``epoch`` (1-based), ``lr``, ``train_loss``,
                     ``train_top1``, ``val_loss``, ``val_top1``, ``reg_loss``,
                     ``best_val_top1``, ``time_s``, ``images_per_s`` (accuracies are fractions)
``curves.png``       loss and top-1 per epoch
``last.pt``          checkpoint after every epoch; ``best.pt`` the best validation epoch
``result.json``      test top-1/top-5, params, FLOPs, measured latency, best epoch, times
``export/``          with ``--export``: see :mod:`nas.deploy`

:class:`Outputs` is the part of :class:`nas.train.run.Run` that writes the files of a run's
start (the checkpoints are :mod:`nas.train.checkpoint`'s, ``result.json`` and ``export/``
:mod:`nas.train.finish`'s). Imports :mod:`nas.train.files` and, when called, torch and
matplotlib; must not import the other ``nas.train`` modules.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nas.train.files import atomic_write_text, file_mode, write_json

__all__ = [
    "CONFIG_FORMAT",
    "RESULT_FORMAT",
    "TIMING_KEYS",
    "Outputs",
    "epoch_line",
    "plot_curves",
    "result_line",
    "si",
]

CONFIG_FORMAT = "convnas.retrain-config/1"
RESULT_FORMAT = "convnas.retrain-result/1"
#: Keys of a metrics line that depend on the machine's speed, not on the computation.
TIMING_KEYS = ("time_s", "images_per_s")


def si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f}{unit}"
    return str(int(n))


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss and top-1 per epoch, train and validation, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    marker = "o" if len(epochs) <= 30 else None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train", marker=marker)
    if any(h.get("val_loss") is not None for h in history):
        ax1.plot(epochs, [h.get("val_loss") for h in history], label="validation", marker=marker)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    ax2.plot(epochs, [100 * h["train_top1"] for h in history], label="train", marker=marker)
    if any(h.get("val_top1") is not None for h in history):
        val = [100 * (h.get("val_top1") or 0) for h in history]
        ax2.plot(epochs, val, label="validation", marker=marker)
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("top-1 (%)")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)


def epoch_line(h: dict[str, Any], epochs: int) -> str:
    val = ""
    if h.get("val_top1") is not None:
        val = f"  val loss {h['val_loss']:.4f} top-1 {100 * h['val_top1']:.2f}%"
    reg = "" if h.get("reg_loss") is None else f"  reg {h['reg_loss']:.3g}"
    return (
        f"epoch {h['epoch']:>{len(str(epochs))}}/{epochs}  lr {h['lr']:.4g}  "
        f"train loss {h['train_loss']:.4f} top-1 {100 * h['train_top1']:.2f}%{val}{reg}  "
        f"{h['images_per_s']:.0f} img/s  {h['time_s']:.1f} s"
    )


def result_line(r: dict[str, Any]) -> str:
    lat = ""
    if r.get("latency_ms") is not None:
        lat = f"  latency {r['latency_ms']:.2f} ms (batch {r['latency_batch']}"
        lat += f", {r['latency_device']})"
    return (
        f"test top-1 {100 * r['test_top1']:.2f}% on {r['test_images']} images "
        f"({r['weights']} weights, epoch {r['weights_epoch']})  "
        f"FLOPs {si(r['flops'])}  params {si(r['params'])}{lat}"
    )


class Outputs:
    """Run stage: the files written when a run starts, and the curves.

    Reads ``arch``, ``args``, ``recipe``, ``settings``, ``resolution``, ``device``,
    ``amp_dtype``, ``channels_last``, ``world``, ``per_rank_batch``, ``num_workers``, the
    data sets, ``steps_per_epoch``, ``out``, ``history``; sets ``history``, ``best_metric``
    and ``best_epoch`` for a new run.
    """

    def _config(self, start_epoch: int) -> dict[str, Any]:
        import torch

        return {
            "format": CONFIG_FORMAT,
            "arch_id": self.arch.arch_id,
            "arch_file": str(self.args.arch),
            "recipe": self.recipe.to_dict(),
            "run": asdict(self.settings),
            "resolution": self.resolution,
            "device": str(self.device),
            "amp": None if self.amp_dtype is None else str(self.amp_dtype).replace("torch.", ""),
            "channels_last": self.channels_last,
            "world_size": self.world,
            "per_process_batch": self.per_rank_batch,
            "num_workers": self.num_workers,
            "train_images": len(self.train_set),
            "val_images": 0 if self.val_set is None else len(self.val_set),
            "test_images": len(self.test_set),
            "steps_per_epoch": self.steps_per_epoch,
            "resumed_at_epoch": start_epoch or None,
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
        }

    def _write_start(self, start_epoch: int) -> None:
        if start_epoch == 0:
            self.history = []
            self.best_metric = None
            self.best_epoch = None
        if not self.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.glob(".*.tmp*"):  # left by a run killed while writing
            stale.unlink(missing_ok=True)
        self.arch.save(self.out / "arch.json")
        write_json(self.out / "config.json", self._config(start_epoch))
        # The checkpoint's history is the truth: lines a killed run wrote later are dropped.
        atomic_write_text(
            self.out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in self.history)
        )
        r = self.recipe
        self.log(
            f"retrain {self.arch.arch_id} ({self.arch.backbone} @ {self.resolution}px, "
            f"{self.arch.num_classes} classes) on {self.settings.dataset}: "
            f"{len(self.train_set)} train / "
            f"{0 if self.val_set is None else len(self.val_set)} val / "
            f"{len(self.test_set)} test images"
        )
        late = [m for m in r.milestones if m >= r.epochs] if r.schedule == "multistep" else []
        if late:
            self.log(
                f"note: milestones {','.join(map(str, late))} are not before epoch {r.epochs}; "
                f"the lr does not decay there (set --milestones to change)"
            )
        self.log(
            f"recipe {r.name}: {r.epochs} epochs, batch {r.batch_size}, {r.optimizer} "
            f"lr {r.lr:g} ({r.schedule}), wd {r.weight_decay:g}; device {self.device}"
            f"{'' if self.amp_dtype is None else ', ' + str(self.amp_dtype).replace('torch.', '')}"
            f"{', channels_last' if self.channels_last else ''}"
            f"{f', {self.world} processes' if self.world > 1 else ''}; out {self.out}"
        )

    def _plot(self) -> None:
        if self.history:
            plot_curves(
                self.history,
                self.out / "curves.png",
                f"{self.arch.backbone} {self.arch.arch_id} on {self.settings.dataset}",
            )
