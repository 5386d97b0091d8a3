"""Training the supernet once: single-path sampling, per-epoch checkpoints, one trainer per file.

:func:`train_supernet` trains a :class:`~evaluators.supernet.model.Supernet` with one path
per batch, drawn uniformly per slot (Guo et al., ECCV 2020) - or, with a FLOPs/params
budget, drawn uniformly among the paths within it by rejection sampling (the paths trained
are the ones the search will score). Choices made here:

* The learning-rate schedule spans all ``epochs`` per optimizer step (as the proxy's does);
  every epoch reseeds the path sampler, the global torch RNG and the loader from
  ``(seed, epoch)``, so training stopped after epoch ``e`` and resumed from its checkpoint
  gives the same weights as training straight through.
* After every epoch the whole state (weights, optimizer, counters) is written atomically to
  the checkpoint file (a temporary file, then a rename); the last one is marked complete.
  Files hold tensors and plain values only and are read with ``weights_only=True``.
* A path that no rejection sample brings within the budget after ``max_tries`` draws is
  repaired: slots, in random order, take their cheapest choice until it fits.
* :func:`load_or_train` holds an exclusive ``fcntl`` lock on ``<file>.lock`` while it trains,
  so of several workers sharing a run folder the first trains and the others wait, then
  load the finished file.
* LinearConv's correlation loss is not added (it would act on the shared kernel of every
  path); the papers' training recipe applies to the stand-alone retraining.

Imports torch, :mod:`evaluators.optimizer`, :mod:`evaluators.proxy` (loader reseeding),
:mod:`evaluators.runtime` and :mod:`evaluators.supernet.model`; must not import
:mod:`evaluators.objectives` or ``nas``.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from evaluators.optimizer import lr_factor, make_optimizer, make_scaler
from evaluators.proxy import reseed_loader
from evaluators.supernet.model import Supernet

__all__ = ["CHECKPOINT_FORMAT", "PathSampler", "load_or_train", "read_checkpoint", "train_supernet"]

CHECKPOINT_FORMAT = "convnas.supernet/1"


class PathSampler:
    """Draws one choice label per slot, uniformly, optionally within FLOPs/params budgets.

    Args:
        choices: ``{slot path: choice labels}`` (a :class:`SearchSpace`'s ``choices``).
        cost_of_labels: the cost model's ``cost_of_labels`` (needed with a budget).
        max_flops, max_params: the budgets (None: unlimited).
        max_tries: rejection draws before a path is repaired.
    """

    def __init__(
        self,
        choices: Mapping[str, tuple[str, ...]],
        *,
        cost_of_labels: Callable[[Mapping[str, str]], Any] | None = None,
        max_flops: float | None = None,
        max_params: float | None = None,
        max_tries: int = 200,
    ) -> None:
        self.choices = dict(choices)
        self.cost_of_labels = cost_of_labels
        self.max_flops, self.max_params = max_flops, max_params
        self.max_tries = max_tries
        if (max_flops is not None or max_params is not None) and cost_of_labels is None:
            raise ValueError("a budgeted path sampler needs cost_of_labels")
        self.drawn = 0
        self.rejected = 0
        self.repaired = 0

    @property
    def budgeted(self) -> bool:
        return self.max_flops is not None or self.max_params is not None

    def fits(self, labels: Mapping[str, str]) -> bool:
        if not self.budgeted:
            return True
        assert self.cost_of_labels is not None
        c = self.cost_of_labels(labels)
        return (self.max_flops is None or c.flops <= self.max_flops) and (
            self.max_params is None or c.params <= self.max_params
        )

    def __call__(self, rng: random.Random) -> dict[str, str]:
        for _ in range(self.max_tries):
            self.drawn += 1
            labels = {p: rng.choice(c) for p, c in self.choices.items()}
            if self.fits(labels):
                return labels
            self.rejected += 1
        self.repaired += 1
        assert self.cost_of_labels is not None
        order = list(self.choices)
        rng.shuffle(order)
        for p in order:
            cheapest = min(
                self.choices[p],
                key=lambda lbl, p=p: self.cost_of_labels({**labels, p: lbl}).flops,  # type: ignore[misc]
            )
            labels[p] = cheapest
            if self.fits(labels):
                break
        return labels


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2**63 - 1)


def read_checkpoint(file: Path) -> dict[str, Any] | None:
    """The checkpoint in ``file`` (None when there is none)."""
    if not file.is_file():
        return None
    ckpt = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{file} is not a supernet checkpoint ({CHECKPOINT_FORMAT})")
    return ckpt


def _write_atomic(file: Path, obj: dict[str, Any]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def train_supernet(
    net: Supernet,
    loader: Iterable,
    sampler: PathSampler,
    *,
    epochs: int,
    settings: Mapping[str, Any],
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    optimizer: str = "sgd",
    schedule: str = "cosine",
    seed: int = 0,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    max_steps_per_epoch: int | None = None,
    checkpoint: Path | None = None,
    resume: Mapping[str, Any] | None = None,
    stop_after: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``net`` to ``epochs`` epochs; return the training record (also in the checkpoint).

    ``resume`` is a checkpoint of the same ``settings`` to continue from; ``stop_after``
    ends the call after that many epochs in total (as an interrupted run would). The record
    holds ``epochs_done``, ``steps_done``, ``train_time_s`` (over all calls), ``train_loss``
    (mean of the last epoch), ``paths`` (drawn, rejected, repaired) and ``complete``.
    """
    dev = torch.device(device)
    net.to(dev)
    try:
        n_batches = len(loader)  # type: ignore[arg-type]
    except TypeError:
        n_batches = max_steps_per_epoch or 0
    steps_per_epoch = (
        n_batches if max_steps_per_epoch is None else min(n_batches, max_steps_per_epoch)
    )
    if steps_per_epoch < 1:
        raise ValueError("the supernet's training loader yields no batches")
    opt = make_optimizer(
        net, optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=False
    )
    scaler = make_scaler(amp_dtype == torch.float16)
    record: dict[str, Any] = {
        "epochs": epochs,
        "epochs_done": 0,
        "steps_done": 0,
        "steps_per_epoch": steps_per_epoch,
        "train_time_s": 0.0,
        "train_loss": None,
        "paths": {"drawn": 0, "rejected": 0, "repaired": 0},
        "complete": False,
    }
    if resume is not None:
        if dict(resume["settings"]) != dict(settings):
            raise ValueError("cannot resume: the checkpoint was trained with other settings")
        net.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        record.update({k: resume["record"][k] for k in record if k in resume["record"]})
    total_steps = epochs * steps_per_epoch
    last = epochs if stop_after is None else min(epochs, stop_after)
    autocast = (
        torch.autocast(dev.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    step = record["steps_done"]
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        for epoch in range(record["epochs_done"], last):
            es = _epoch_seed(seed, epoch)
            torch.manual_seed(es)
            reseed_loader(loader, es)
            rng = random.Random(es)
            net.train()
            t0 = time.perf_counter()
            loss_sum, n = 0.0, 0
            d0, r0, p0 = sampler.drawn, sampler.rejected, sampler.repaired
            for i, (x, y) in enumerate(loader):
                if i >= steps_per_epoch:
                    break
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                net.set_path(sampler(rng))
                for group in opt.param_groups:
                    group["lr"] = lr * lr_factor(schedule, step, total_steps)
                opt.zero_grad(set_to_none=True)
                with autocast:
                    loss = F.cross_entropy(net(x), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise RuntimeError(
                        f"supernet training diverged: non-finite loss at epoch {epoch + 1} "
                        f"step {i + 1}; lower supernet_lr"
                    )
                loss_sum, n, step = loss_sum + value, n + 1, step + 1
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            record["train_time_s"] += time.perf_counter() - t0
            record["epochs_done"], record["steps_done"] = epoch + 1, step
            record["train_loss"] = loss_sum / max(n, 1)
            paths = record["paths"]
            paths["drawn"] += sampler.drawn - d0
            paths["rejected"] += sampler.rejected - r0
            paths["repaired"] += sampler.repaired - p0
            record["complete"] = epoch + 1 == epochs
            if checkpoint is not None:
                _write_atomic(
                    checkpoint,
                    {
                        "format": CHECKPOINT_FORMAT,
                        "settings": dict(settings),
                        "record": dict(record, paths=dict(paths)),
                        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                        "optimizer": _cpu(opt.state_dict()),
                    },
                )
            if log is not None:
                log(
                    f"supernet epoch {epoch + 1}/{epochs}: loss {record['train_loss']:.3f}, "
                    f"{record['train_time_s']:.1f} s"
                )
    return record


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    return obj


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # blocks while another worker trains
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def load_or_train(
    file: Path,
    build: Callable[[], Supernet],
    train: Callable[[Supernet, Mapping[str, Any] | None], dict[str, Any]],
    settings: Mapping[str, Any],
) -> tuple[Supernet, dict[str, Any], str]:
    """The trained supernet of ``file``: loaded, or trained now (or finished) under a lock.

    ``build()`` makes a fresh supernet; ``train(net, checkpoint_or_None)`` trains it to the
    end, writing ``file`` as it goes. Returns ``(net, record, status)`` with status
    ``"loaded"`` (another call trained it), ``"resumed"`` (an interrupted training finished
    here) or ``"trained"``.
    """
    with _exclusive(file.with_name(file.name + ".lock")):
        ckpt = read_checkpoint(file)
        if ckpt is not None and dict(ckpt["settings"]) != dict(settings):
            raise ValueError(
                f"{file} holds a supernet trained with other settings; remove it or use "
                "another supernet_dir"
            )
        net = build()
        if ckpt is not None and ckpt["record"].get("complete"):
            net.load_state_dict(ckpt["model"])
            return net, dict(ckpt["record"]), "loaded"
        record = train(net, ckpt)
        return net, record, "resumed" if ckpt is not None else "trained"
