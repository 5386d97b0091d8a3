"""Several processes under ``torchrun``: rank and world size, barriers, summing across ranks.

Under ``torchrun`` each process takes ``cuda:LOCAL_RANK`` (NCCL; gloo on CPU) and the global
batch is split across processes. :class:`Distributed` is the part of
:class:`nas.train.run.Run` that waits for and sums across the other processes (a no-op with
one). Imports torch inside its methods; must not import other ``nas.train`` modules.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["Distributed", "dist_env"]


def dist_env() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun's environment (0, 0, 1 without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, local, world


class Distributed:
    """Run stage: collective operations. Reads ``world``."""

    def _barrier(self) -> None:
        import torch

        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()

    def _all_reduce(self, t: torch.Tensor) -> None:
        import torch

        if self.world > 1:
            torch.distributed.all_reduce(t)
