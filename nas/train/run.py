"""One retraining run: validated, then trained, tested, reported and exported.

:class:`Run` is assembled from one class per stage, each in the module named after it:
:class:`~nas.train.setup.Setup` (validation), :class:`~nas.train.data.Data` (splits and
loaders), :class:`~nas.train.model.Model` (network and optimisation),
:class:`~nas.train.distributed.Distributed` (collectives), :class:`~nas.train.loop.Loop`
(epochs), :class:`~nas.train.checkpoint.Checkpointing` (save and resume),
:class:`~nas.train.outputs.Outputs` (files at the start) and
:class:`~nas.train.finish.Finish` (test, result, export). Each stage's docstring says which
attributes of the run it reads and sets; this module holds the order they run in. It imports
the stages, and no stage may import it (:mod:`nas.retrain`, the command line, does); it must
not import :mod:`nas.retrain` or the search side of ``nas``.
"""

from __future__ import annotations

import argparse
import json

from nas.train.checkpoint import CheckpointError, Checkpointing, load_checkpoint
from nas.train.data import Data
from nas.train.distributed import Distributed, dist_env
from nas.train.errors import UserError
from nas.train.finish import Finish
from nas.train.loop import Loop
from nas.train.model import Model
from nas.train.outputs import Outputs, result_line
from nas.train.setup import Setup

__all__ = ["Run"]


class Run(Setup, Data, Model, Distributed, Loop, Checkpointing, Outputs, Finish):
    """One invocation: validates everything, then trains, tests, reports and exports."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rank, self.local_rank, self.world = dist_env()
        self.is_main = self.rank == 0

    def log(self, msg: str) -> None:
        if self.is_main:
            print(msg, flush=True)

    # -- validation (nothing is written before it is all done) --------------------------------
    # -- orchestration ------------------------------------------------------------------------
    def execute(self) -> int:
        self._prepare()  # imports torch only once the quick checks have passed
        import torch

        if self.restart_note is not None:
            self.log(self.restart_note)
        if self.ckpt is not None and self._already_complete():
            return self._finish_complete()
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group(backend=backend)
        try:
            # Rank 0 loads (and maybe downloads) first; the others wait and then read.
            if self.rank != 0:
                self._barrier()
            self._load_data()
            if self.rank == 0:
                self._barrier()
            self._build()
            start_epoch = self._restore() if self.ckpt is not None else 0
            self._write_start(start_epoch)
            self._train(start_epoch)
            code = self._final()
        finally:
            if self.world > 1 and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
        return code

    def _already_complete(self) -> bool:
        assert self.ckpt is not None
        return self.ckpt["epoch"] >= self.recipe.epochs and (self.out / "result.json").is_file()

    def _finish_complete(self) -> int:
        """A finished run given --resume: report it, and export if asked (rank 0 only)."""
        epochs = self.ckpt["epoch"] if self.ckpt is not None else self.recipe.epochs
        self.log(f"run in {self.out} is complete ({epochs} epochs); nothing to train")
        if not self.is_main:
            return 0
        result = json.loads((self.out / "result.json").read_text())
        self.log(result_line(result))
        if self.args.export:
            path = self.out / f"{result.get('weights', 'last')}.pt"
            try:
                state = load_checkpoint(path, arch_id=self.arch.arch_id)
            except CheckpointError as e:
                raise UserError(str(e)) from None
            self._export(state["model"])
        return 0
