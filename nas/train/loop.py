"""The training loop: epochs of autocast steps with LinearConv's regulariser, and evaluation.

On CUDA: autocast in bfloat16 where supported, else float16 with a ``GradScaler``;
validation and test run in float32, as the weights ship, and are summed across processes so
they count every image exactly once. A loss that becomes non-finite stops the run
(:class:`~nas.train.errors.Diverged`, exit code 1) and leaves the last good checkpoint in
place. :class:`Loop` is the part of :class:`nas.train.run.Run` that trains. Imports
:mod:`nas.train.errors`, :mod:`nas.train.outputs` and, when called, torch, tqdm and
``search_spaces``; must not import the other ``nas.train`` modules.
"""

from __future__ import annotations

import math
import time
from typing import Any

from nas.train.errors import Diverged
from nas.train.outputs import epoch_line

__all__ = ["Loop"]


class Loop:
    """Run stage: training epochs and evaluation passes.

    Reads what :class:`~nas.train.model.Model` and :class:`~nas.train.data.Data` set; appends
    to ``history`` and updates ``best_metric``/``best_epoch``; calls ``_set_epoch``,
    ``_all_reduce``, ``_checkpoint``, ``_plot`` and ``log`` of the other stages.
    """

    # -- training -----------------------------------------------------------------------------
    def _train(self, start_epoch: int) -> None:
        import torch
        import torch.nn.functional as F

        from search_spaces.ops.linearconv import linearconv_regularization

        r, dev = self.recipe, self.device
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        autocast_on = self.amp_dtype is not None
        reg_lambda = float(r.linearconv_lambda or 0.0)  # resolved in _prepare: never None
        reg_every = int(r.linearconv_every or 1)
        reg_on = self.has_linearconv and reg_lambda > 0
        last_plot = time.monotonic()
        for epoch in range(start_epoch, r.epochs):
            self._set_epoch(epoch)
            model = self.train_model
            model.train()
            lr = self.optimizer.param_groups[0]["lr"]
            sums = torch.zeros(3, dtype=torch.float64, device=dev)  # loss*n, correct, n
            reg_sum = torch.zeros((), dtype=torch.float64, device=dev)
            reg_count = 0
            t0 = time.perf_counter()
            bar = self._progress(epoch)
            check_every = 1 if dev.type == "cpu" else 25
            for i, (x, y) in enumerate(self.train_loader):
                step = epoch * self.steps_per_epoch + i
                x = x.to(dev, non_blocking=True).contiguous(memory_format=fmt)
                y = y.to(dev, non_blocking=True)
                with torch.autocast(dev.type, dtype=self.amp_dtype, enabled=autocast_on):
                    logits = model(x)
                    loss = F.cross_entropy(logits, y, label_smoothing=r.label_smoothing)
                total = loss.float()
                if reg_on and step % reg_every == 0:
                    # The paper adds λ·Lc once every N batches; float32, outside autocast.
                    reg = linearconv_regularization(self.raw_model)
                    total = total + reg_lambda * reg
                    reg_sum += reg.detach().double()
                    reg_count += 1
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(total).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                n = y.numel()
                with torch.no_grad():
                    sums[0] += loss.detach().double() * n
                    sums[1] += (logits.argmax(1) == y).sum()
                    sums[2] += n
                if (i + 1) % check_every == 0 and not math.isfinite(sums[0].item()):
                    raise Diverged(
                        f"the training loss became non-finite in epoch {epoch + 1} (step {i + 1}); "
                        f"the last good checkpoint is {self.out / 'last.pt'}; lower --lr"
                    )
                if bar is not None:
                    bar.update(1)
                    if (i + 1) % max(1, self.steps_per_epoch // 20) == 0 or i == 0:
                        seen = sums[2].item() * self.world
                        bar.set_postfix(
                            loss=f"{sums[0].item() / sums[2].item():.3f}",
                            acc=f"{100 * sums[1].item() / sums[2].item():.1f}%",
                            img_s=f"{seen / (time.perf_counter() - t0):.0f}",
                        )
            if bar is not None:
                bar.close()
            self.scheduler.step()
            train_time = time.perf_counter() - t0
            self._all_reduce(sums)
            if not math.isfinite(sums[0].item()):
                raise Diverged(
                    f"the training loss became non-finite in epoch {epoch + 1}; the last good "
                    f"checkpoint is {self.out / 'last.pt'}; lower --lr"
                )
            reg_mean = None
            if reg_count:
                self._all_reduce(reg_sum)
                reg_mean = reg_sum.item() / (reg_count * self.world)
            val = self._evaluate(self.val_loader) if self.val_loader is not None else None
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": sums[0].item() / sums[2].item(),
                "train_top1": sums[1].item() / sums[2].item(),
                "val_loss": None if val is None else val["loss"],
                "val_top1": None if val is None else val["top1"],
                "reg_loss": reg_mean,
            }
            improved = False
            if val is not None and (self.best_metric is None or val["top1"] > self.best_metric):
                improved = True
                self.best_metric, self.best_epoch = val["top1"], epoch + 1
            record["best_val_top1"] = self.best_metric
            record["time_s"] = round(time.perf_counter() - t0, 3)
            record["images_per_s"] = round(sums[2].item() / max(train_time, 1e-9), 1)
            self.history.append(record)
            self._checkpoint(epoch + 1, improved)
            self.log(epoch_line(record, r.epochs))
            if self.is_main and time.monotonic() - last_plot > 60:
                self._plot()
                last_plot = time.monotonic()

    def _progress(self, epoch: int) -> Any:
        if not self.is_main or self.args.no_progress:
            return None
        from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

        # disable=None: shown on a terminal, silent when stderr is a file or pipe.
        return tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{self.recipe.epochs}",
            unit="batch",
            leave=False,
            disable=None,
            dynamic_ncols=True,
        )

    def _evaluate(self, loader: Any) -> dict[str, float]:
        """Loss, top-1 and top-5 over the whole split (every process its shard, then summed).

        In float32 (no autocast): the numbers are those of the weights as they will ship.
        """
        import torch
        import torch.nn.functional as F

        model, dev = self.raw_model, self.device
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if self.world > 1:
            # Every rank's BatchNorm statistics moved with its own last batches; evaluate all
            # shards with rank 0's, which are the ones checkpointed.
            for buf in model.buffers():
                torch.distributed.broadcast(buf, 0)
        was_training = model.training
        model.eval()
        sums = torch.zeros(4, dtype=torch.float64, device=dev)  # loss*n, top1, top5, n
        k = min(5, self.arch.num_classes)
        try:
            with torch.no_grad():
                for x, y in loader:
                    x = x.to(dev, non_blocking=True).contiguous(memory_format=fmt)
                    y = y.to(dev, non_blocking=True)
                    logits = model(x).float()
                    sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
                    topk = logits.topk(k, dim=1).indices
                    sums[1] += (topk[:, 0] == y).sum()
                    sums[2] += (topk == y[:, None]).any(dim=1).sum()
                    sums[3] += y.numel()
        finally:
            model.train(was_training)
        self._all_reduce(sums)
        n = max(sums[3].item(), 1.0)
        return {
            "loss": sums[0].item() / n,
            "top1": sums[1].item() / n,
            "top5": sums[2].item() / n,
            "n": int(sums[3].item()),
        }
