"""Checkpoints: the format, the atomic verified save, the safe load, RNG states, save and restore.

Checkpoints hold only tensors and plain Python values (model, optimizer, scheduler and
grad-scaler state dicts; the torch, CUDA, numpy and Python RNG states of every rank; epoch,
best metric, the metrics history, the recipe and the data settings). They are written to a
temporary file in the same folder, flushed, re-read with ``weights_only=True`` and only then
renamed over the old file, so a crash never leaves a half-written checkpoint in place of a good
one; they are loaded with ``torch.load(weights_only=True)``, which never unpickles arbitrary
objects. ``--resume`` continues from ``last.pt`` (or a given file) with the run's own recipe
and data settings (flags given with ``--resume`` override recipe fields, e.g. ``--epochs 300``
to extend). On CPU a run killed at any point and resumed ends with exactly the weights and
metrics of an uninterrupted run: besides the restored RNG states, every epoch's shuffling,
worker seeds and batched augmentation are seeded from ``(seed, epoch)``.

:class:`Checkpointing` is the part of :class:`nas.train.run.Run` that writes ``best.pt`` and
``last.pt`` after every epoch and restores them on ``--resume``. Imports torch and numpy
(inside its functions) and :mod:`nas.train.files`; must not import the other ``nas.train``
modules.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nas.train.files import file_mode, fsync_dir

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_KEYS",
    "CheckpointError",
    "Checkpointing",
    "epoch_seed",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]

CHECKPOINT_FORMAT = "convnas.retrain-checkpoint/1"
CHECKPOINT_KEYS = (
    "format",
    "arch_id",
    "epoch",
    "model",
    "optimizer",
    "scheduler",
    "rng",
    "recipe",
    "run",
)


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, corrupted or from another run (one line)."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically and verified.

    The state goes to a temporary file in the same folder, is flushed to disk and read back
    with ``weights_only=True`` (so a state holding anything but tensors and plain values fails
    here, not at resume time), and only then renamed over ``path``. Any failure leaves the
    previous file untouched and removes the temporary one.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        # mmap: checks the archive and every record without copying the tensor data.
        torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def load_checkpoint(path: str | os.PathLike, *, arch_id: str | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises :class:`CheckpointError` with one line naming the file when it is missing,
    truncated, corrupted, holds objects other than tensors and plain values, is not a
    ``nas.retrain`` checkpoint, or (with ``arch_id``) belongs to another architecture.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        first = first.split(". ")[0].rstrip(".")[:160]  # the first sentence says what broke
        raise CheckpointError(
            f"checkpoint {str(p)!r} is truncated, corrupted or not a safe tensor file and was "
            f"not loaded ({type(e).__name__}: {first})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {str(p)!r} is not a nas.retrain checkpoint (format {CHECKPOINT_FORMAT})"
        )
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {str(p)!r} lacks {missing[0]!r}; it is incomplete")
    if arch_id is not None and state["arch_id"] != arch_id:
        raise CheckpointError(
            f"checkpoint {str(p)!r} belongs to architecture {state['arch_id']}, not {arch_id}"
        )
    return state


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain values (weights_only-loadable)."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    np_name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached"],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    # Distinct, fixed seeds per (seed, epoch, rank); the odd multipliers keep them apart.
    return (seed * 1_000_003 + epoch * 7_919 + rank * 104_729 + 17) % (2**63 - 1)


class Checkpointing:
    """Run stage: a checkpoint after every epoch, and resuming from one.

    Reads ``ckpt``, ``ckpt_path``, ``raw_model``, ``optimizer``, ``scheduler``, ``scaler``,
    ``recipe``, ``settings``, ``arch``, ``out``, ``history``, ``best_metric``, ``best_epoch``,
    ``world``, ``rank``, ``is_main``; :meth:`_restore` sets ``history``, ``best_metric`` and
    ``best_epoch``.
    """

    def _restore(self) -> int:
        """Load the checkpoint into model, optimizer, scheduler, scaler and RNGs."""
        import torch

        ck = self.ckpt
        assert ck is not None
        self.raw_model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        start = int(ck["epoch"])
        # The recipe may have been overridden on resume (e.g. more epochs): follow it from here.
        for group in self.optimizer.param_groups:
            group["lr"] = self.recipe.lr_at(start) if start < self.recipe.epochs else group["lr"]
        rngs = ck["rng"]
        if len(rngs) == self.world:
            set_rng_state(rngs[self.rank])
        else:  # another world size: rank 0's state, other ranks reseeded apart
            set_rng_state(rngs[0])
            if self.rank:
                torch.manual_seed(epoch_seed(self.settings.seed, start, self.rank))
        self.history: list[dict[str, Any]] = [dict(h) for h in ck.get("history", [])][:start]
        self.best_metric = ck.get("best_metric")
        self.best_epoch = ck.get("best_epoch")
        self.log(f"resuming from {self.ckpt_path} after epoch {start}/{self.recipe.epochs}")
        return start

    def _checkpoint(self, epochs_done: int, improved: bool) -> None:
        """Gather every rank's RNG state; rank 0 writes best.pt (if improved), then last.pt."""
        import torch

        rng = rng_state()
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            torch.distributed.all_gather_object(gathered, rng)
            rngs = gathered
        else:
            rngs = [rng]
        if self.is_main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "arch_id": self.arch.arch_id,
                "epoch": epochs_done,
                "model": self.raw_model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rngs,
                "best_metric": self.best_metric,
                "best_epoch": self.best_epoch,
                "history": self.history,
                "recipe": self.recipe.to_dict(),
                "run": asdict(self.settings),
                "world_size": self.world,
            }
            # best.pt first: a kill between the two writes then re-runs this epoch on resume
            # (last.pt is still the previous one), which rewrites best.pt identically.
            if improved:
                save_checkpoint(state, self.out / "best.pt")
            save_checkpoint(state, self.out / "last.pt")
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(self.history[-1]) + "\n")
        self._barrier()
