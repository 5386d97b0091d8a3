"""``make_loader``: a seeded ``DataLoader`` with worker and pinning settings that fit the data.

Imports :mod:`evaluators.data.base` only; must not import the readers or the split functions.
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from evaluators.data.base import check_int

__all__ = ["make_loader"]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _is_in_memory(ds: Dataset) -> bool:
    while isinstance(ds, Subset):
        ds = ds.dataset
    return bool(getattr(ds, "in_memory", False))


def make_loader(
    ds: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    device: str | torch.device = "cpu",
    num_workers: int | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over ``ds`` with a seeded order and sensible worker settings.

    ``seed`` seeds the loader's own generator (shuffling and the workers' seeds), never the
    global RNG. ``num_workers=None`` picks 0 for in-memory data (CIFAR, synthetic: their batched
    transforms cost less than feeding worker processes) and ``min(4, cpus - 1)`` otherwise.
    Memory is pinned only when ``device`` is CUDA; workers persist across epochs unless the
    proxy reseeds the loader (:func:`evaluators.proxy.reseed_loader` restarts them, so every
    epoch's random transforms start from the reseeded generator).
    """
    check_int("batch_size", batch_size, 1)
    check_int("seed", seed)
    if num_workers is None:
        num_workers = 0 if _is_in_memory(ds) else min(4, max(0, _cpu_count() - 1))
    else:
        check_int("num_workers", num_workers, 0, none_ok=True)
    generator = torch.Generator().manual_seed(seed % 2**63)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=num_workers > 0,
        generator=generator,
    )
