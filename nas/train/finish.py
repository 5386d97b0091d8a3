"""The end of a run: test once on the selected weights, cost and latency, result.json, export.

The test split is used once, at the end, on the selected weights (``--select best``, the
default, or ``last``); FLOPs and params come from the cost model, latency is measured on the
fused float32 model as it ships, and ``--export`` writes ``export/`` (:mod:`nas.deploy`).
:class:`Finish` is the part of :class:`nas.train.run.Run` that does it. Imports
:mod:`nas.train.checkpoint`, :mod:`nas.train.errors`, :mod:`nas.train.files`,
:mod:`nas.train.outputs` and, when called, torch, ``evaluators`` and :mod:`nas.deploy`; must
not import the other ``nas.train`` modules.
"""

from __future__ import annotations

import warnings
from typing import Any

from nas.train.checkpoint import CheckpointError, load_checkpoint
from nas.train.errors import Diverged, UserError
from nas.train.files import write_json
from nas.train.outputs import RESULT_FORMAT, result_line

__all__ = ["Finish"]


class Finish:
    """Run stage: the test measurement, the result and the export.

    Reads ``settings``, ``recipe``, ``arch``, ``out``, ``raw_model``, ``test_loader``,
    ``history``, ``best_metric``, ``best_epoch``, ``resolution``, ``device``,
    ``channels_last``, ``world``, ``args``; calls ``_evaluate``, ``_clean_model``, ``_plot``.
    """

    # -- the end ------------------------------------------------------------------------------
    def _final(self) -> int:
        """Test once on the selected weights, measure cost and latency, write result.json."""
        import torch

        select = self.settings.select
        weights_epoch = self.recipe.epochs
        if select == "best":
            try:
                best = load_checkpoint(self.out / "best.pt", arch_id=self.arch.arch_id)
            except CheckpointError as e:
                raise UserError(str(e)) from None
            self.raw_model.load_state_dict(best["model"])
            weights_epoch = int(best["epoch"])
        test = self._evaluate(self.test_loader)
        if not self.is_main:
            return 0

        from evaluators.cost import get_cost_model

        a = self.arch
        with warnings.catch_warnings():
            # fvcore's import scripts a loss with torch.jit, which torch now calls deprecated.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated")
            cost = get_cost_model(a.backbone, a.num_classes, a.resolution, a.slots).cost(a)
        latency = None
        if self.settings.latency:
            from evaluators.latency import measure_latency
            from nas.deploy import fuse_model

            # What ships: LinearConv fused, float32, eval, plain modules.
            deployed = fuse_model(self._clean_model(self.raw_model.state_dict()))
            latency = measure_latency(
                deployed,
                self.resolution,
                batch_size=self.settings.latency_batch,
                device=self.device,
                repeats=self.settings.latency_repeats,
                channels_last=self.channels_last,
            )
        last = self.history[-1]
        result = {
            "format": RESULT_FORMAT,
            "arch_id": a.arch_id,
            "backbone": a.backbone,
            "num_classes": a.num_classes,
            "resolution": self.resolution,
            "dataset": self.settings.dataset,
            "recipe": self.recipe.name,
            "epochs": self.recipe.epochs,
            "weights": select,
            "weights_epoch": weights_epoch,
            "test_top1": test["top1"],
            "test_top5": test["top5"] if a.num_classes > 5 else None,
            "test_loss": test["loss"],
            "test_images": test["n"],
            "best_val_top1": self.best_metric,
            "best_epoch": self.best_epoch,
            "final_train_loss": last["train_loss"],
            "final_train_top1": last["train_top1"],
            "flops": cost.flops,  # at the architecture's own resolution
            "cost_resolution": a.resolution,
            "params": cost.params,
            "inference_params": cost.inference_params,
            "latency_ms": None if latency is None else latency.median_ms,
            "latency_iqr_ms": None if latency is None else latency.iqr_ms,
            "latency_batch": None if latency is None else latency.batch_size,
            "latency_device": None if latency is None else latency.device_name,
            "train_time_s": round(sum(h["time_s"] for h in self.history), 2),
            "seed": self.settings.seed,
            "world_size": self.world,
            "device": str(self.device),
            "torch": torch.__version__,
        }
        write_json(self.out / "result.json", result)
        self._plot()
        self.log(result_line(result))
        self.log(
            f"wrote {self.out}/: result.json, metrics.jsonl, curves.png, last.pt"
            f"{', best.pt' if self.best_epoch else ''}, config.json, arch.json"
        )
        if self.args.export:
            self._export(self.raw_model.state_dict())
        return 0

    def _export(self, state_dict: dict[str, Any]) -> None:
        from nas.deploy import ExportError, export_model

        a = self.args
        try:
            report = export_model(
                self._clean_model(state_dict),
                self.arch,
                self.out / "export",
                resolution=self.resolution,
                onnx=not a.no_onnx,
                opset=a.opset,
                exporter=a.onnx_exporter,
            )
        except ExportError as e:
            raise Diverged(str(e)) from None
        onnx_part = ""
        if report.onnx is not None:
            diff = report.onnx_max_abs_diff
            onnx_part = (
                f", {report.onnx} (opset {report.opset}, "
                f"{sum(report.onnx_operators.values())} nodes, "
                + ("not run" if diff is None else f"max |onnxruntime - torch| {diff:.2e}")
                + ")"
            )
        self.log(
            f"exported {self.out / 'export'}: {report.state_dict} + {report.arch} "
            f"({report.linearconv_fused} LinearConv fused, max |fused - trained| "
            f"{report.fused_max_abs_diff:.2e}){onnx_part}"
        )
        for note in report.notes:
            self.log(f"note: {note}")
