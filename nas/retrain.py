"""``python -m nas.retrain ARCH.json --dataset DATASET``: train one architecture in full.

After a search, pick a Pareto member and train it for real::

    python -m nas.retrain runs/<study>/pareto/<arch_id>.json --dataset cifar100 --epochs 200
    torchrun --nproc_per_node 4 -m nas.retrain ARCH.json --dataset imagefolder:/data/imagenet
    python -m nas.retrain ARCH.json --dataset cifar100 --resume          # continue a run
    python -m nas.retrain ARCH.json --dataset cifar100 --resume --export # ship a finished run

Training follows a recipe (:mod:`nas.recipes`: ``cifar``, ``cifar-cosine``, ``imagenet``,
``imagenet-cosine``; default ``cifar`` for architectures below 128 pixels, else ``imagenet``),
every field of which has its own flag (``--lr``, ``--schedule``, ``--milestones`` ...) and can
come from ``--config FILE`` (JSON or TOML). The splits are explicit: a validation split is
carved out of the training set (``val_fraction``, stratified, seed 0 whatever ``--seed`` is, so
runs of different seeds select on the same images) and picks the best epoch; the test split is
used once, at the end, on the selected weights (``--select best``, the default, or ``last``).

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

Checkpoints hold only tensors and plain Python values (model, optimizer, scheduler and
grad-scaler state dicts; the torch, CUDA, numpy and Python RNG states of every rank; epoch,
best metric, the metrics history, the recipe and the data settings). They are written to a
temporary file in the same folder, flushed, re-read with ``weights_only=True`` and only then
renamed over the old file, so a crash never leaves a half-written checkpoint in place of a good
one; they are loaded with ``torch.load(weights_only=True)``, which never unpickles arbitrary
objects. ``--resume`` continues from ``last.pt`` (or a given file) with the run's own recipe
and data settings (flags given with ``--resume`` override recipe fields, e.g. ``--epochs 300``
to extend). A run stopped before its first checkpoint left nothing to lose: ``--resume``
starts it again from epoch 1 (saying so), and so does the same command without ``--resume``.
On CPU a run killed at any point and resumed ends with exactly the weights and metrics of an
uninterrupted run: besides the restored RNG states, every epoch's shuffling, worker seeds and
batched augmentation are seeded from ``(seed, epoch)``.

Devices: ``--device auto`` takes CUDA when present. On CUDA: autocast in bfloat16 where
supported, else float16 with a ``GradScaler`` (``--amp``), ``channels_last``, optional
``--compile`` (also on CPU, where it pays for SCConv networks: see
``experiments/results/compile_speed.md``); validation and test run eagerly in float32, as the
weights ship. Under ``torchrun``
each process takes ``cuda:LOCAL_RANK`` (NCCL; gloo on CPU), the global ``batch_size`` is split
across processes, the model is wrapped in ``DistributedDataParallel`` (``--sync-bn`` converts
BatchNorm to SyncBatchNorm), training data go through a ``DistributedSampler``, and
validation/test are sharded without padding, evaluated with rank 0's BatchNorm statistics and
summed across processes, so they count every image exactly once. Resuming under ``torchrun`` reads
the checkpoint on every rank (one machine, or a shared file system).

Errors in the input (missing file, bad recipe or field, epochs <= 0, unknown dataset, a class
count that does not match the architecture, a corrupted checkpoint) are one line on stderr and
exit code 2, before anything is written. A loss that becomes non-finite stops the run with
exit code 1 and leaves the last good checkpoint in place.

This module is the command line (``build_parser()`` + ``main(argv)``); the run itself is
:mod:`nas.train` (one module per concept: setup, data, model, loop, checkpoint, outputs,
finish, distributed). It imports :mod:`nas.recipes` and :mod:`nas.train`; nothing in ``nas``
imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas.recipes import RecipeError, parse_field, recipe_fields, recipe_names
from nas.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from nas.train.distributed import dist_env
from nas.train.errors import Diverged, UserError
from nas.train.outputs import TIMING_KEYS
from nas.train.run import Run
from nas.train.setup import RunSettings

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "RunSettings",
    "TIMING_KEYS",
    "build_parser",
    "cli",
    "load_checkpoint",
    "main",
    "save_checkpoint",
]


# -- argparse types (raise ArgumentTypeError -> exit 2) --------------------------------------


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {v}")
        return v

    return parse


def _field_parser(name: str):
    def parse(text: str) -> Any:
        try:
            return parse_field(name, text)
        except RecipeError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name  # argparse names the type in "invalid <name> value" messages
    return parse


def _recipe_name(text: str) -> str:
    if text != "auto" and text not in recipe_names():
        raise argparse.ArgumentTypeError(
            f"unknown recipe {text!r}; valid recipes: auto, {', '.join(recipe_names())}"
        )
    return text


def _device(text: str) -> str:
    t = text.strip().lower()
    if t in ("auto", "cpu", "cuda") or (t.startswith("cuda:") and t[5:].isdigit()):
        return t
    raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")


class _OneLineParser(argparse.ArgumentParser):
    """Errors are one line (``prog: error: ...``) and exit 2, without the usage block."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser; every recipe field has a flag of the same name."""
    p = _OneLineParser(
        prog="python -m nas.retrain",
        description="Train one architecture in full, measure it on the test split, export it.",
        epilog=(
            "examples:\n"
            "  python -m nas.retrain ARCH.json --dataset cifar100 --epochs 200\n"
            "  python -m nas.retrain ARCH.json --dataset imagefolder:/data/imagenet "
            "--recipe imagenet\n"
            "  torchrun --nproc_per_node 4 -m nas.retrain ARCH.json --dataset cifar100\n"
            "  python -m nas.retrain ARCH.json --resume --export\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("arch", type=Path, help="architecture JSON file (e.g. a Pareto member)")

    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        default=None,
        help="cifar10, cifar10-sample, cifar100, imagefolder:<path> or synthetic[:<classes>] "
        "(required, except with --resume)",
    )
    g.add_argument("--data-dir", default=None, help="where CIFAR is kept/downloaded (data)")
    g.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading missing data"
    )
    g.add_argument(
        "--subset",
        type=_int_at_least(1),
        default=None,
        help="smoke tests: at most N training images (validation in proportion) and N test images",
    )

    g = p.add_argument_group("recipe (precedence: recipe < --config file < flags)")
    g.add_argument(
        "--recipe",
        type=_recipe_name,
        default=None,
        help=f"auto (default), {', '.join(recipe_names())}",
    )
    g.add_argument("--config", type=Path, default=None, help="JSON/TOML file of recipe fields")
    for name, (kind, help_) in recipe_fields().items():
        metavar = {"ints": "E1,E2", "bool": "BOOL"}.get(kind, kind.rstrip("?").upper())
        g.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=_field_parser(name),
            default=argparse.SUPPRESS,
            metavar=metavar,
            help=help_,
        )

    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, default=None, help="output folder (runs/retrain/<arch_id>)")
    g.add_argument("--seed", type=_int_at_least(0), default=None, help="random seed (0)")
    g.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument(
        "--amp",
        choices=("auto", "bf16", "fp16", "off"),
        default="auto",
        help="CUDA autocast: auto = bf16 where supported, else fp16 (CPU: off)",
    )
    g.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC memory format (default: on CUDA only)",
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the training model")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun")
    g.add_argument(
        "--num-workers", type=_int_at_least(0), default=None, help="data-loader worker processes"
    )
    g.add_argument(
        "--select",
        choices=("best", "last"),
        default=None,
        help="weights measured on the test split and exported (best validation epoch)",
    )
    g.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="CKPT",
        help="continue from OUT/last.pt, or from CKPT (a run that stopped before its first "
        "checkpoint starts again from epoch 1)",
    )
    g.add_argument("--no-progress", action="store_true", help="no per-epoch progress bar")

    g = p.add_argument_group("latency and export")
    g.add_argument(
        "--latency-batch", type=_int_at_least(1), default=1, help="batch size of the latency (1)"
    )
    g.add_argument("--latency-repeats", type=_int_at_least(1), default=30, help="timed passes (30)")
    g.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    g.add_argument(
        "--export", action="store_true", help="write OUT/export/: fused state dict + ONNX"
    )
    g.add_argument("--no-onnx", action="store_true", help="with --export: skip ONNX")
    g.add_argument("--opset", type=_int_at_least(9), default=17, help="ONNX opset (17)")
    g.add_argument(
        "--onnx-exporter",
        choices=("torchscript", "dynamo"),
        default="torchscript",
        help="torch.onnx exporter (dynamo needs onnxscript)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (0 ok, 1 training failed, 2 bad input)."""
    args = build_parser().parse_args(argv)
    rank = dist_env()[0]
    try:
        return Run(args).execute()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if rank == 0:
            print("interrupted; continue with --resume", file=sys.stderr)
        return 130


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
