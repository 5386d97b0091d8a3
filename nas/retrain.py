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
to extend). On CPU a run killed at any point and resumed ends with exactly the weights and
metrics of an uninterrupted run: besides the restored RNG states, every epoch's shuffling,
worker seeds and batched augmentation are seeded from ``(seed, epoch)``.

Devices: ``--device auto`` takes CUDA when present. On CUDA: autocast in bfloat16 where
supported, else float16 with a ``GradScaler`` (``--amp``), ``channels_last``, optional
``--compile``; validation and test run in float32, as the weights ship. Under ``torchrun``
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
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.recipes import Recipe, RecipeError, parse_field, recipe_fields, recipe_names

if TYPE_CHECKING:
    import torch
    from torch import nn

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

CHECKPOINT_FORMAT = "convnas.retrain-checkpoint/1"
CONFIG_FORMAT = "convnas.retrain-config/1"
RESULT_FORMAT = "convnas.retrain-result/1"
#: Keys of a metrics line that depend on the machine's speed, not on the computation.
TIMING_KEYS = ("time_s", "images_per_s")
#: Seed of the train/validation split: fixed, so runs of any --seed select on the same images.
SPLIT_SEED = 0
_CHECKPOINT_KEYS = (
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


class _UserError(Exception):
    """Bad input found after parsing: printed as one line, exit code 2."""


class _Diverged(Exception):
    """The loss became non-finite: exit code 1."""


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """Everything of a run that is not a recipe field (saved in config.json and checkpoints).

    ``dataset``, ``data_dir``, ``subset`` and ``seed`` define the data and must not change on
    resume; the device settings may (a run can move machines, at the cost of bit-exactness).
    """

    dataset: str
    data_dir: str = "data"
    download: bool = True
    subset: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    sync_bn: bool = False
    num_workers: int | None = None
    select: str = "best"
    latency: bool = True
    latency_batch: int = 1
    latency_repeats: int = 30


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
        help="cifar10, cifar100, imagefolder:<path> or synthetic[:<classes>] "
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
        help="continue from OUT/last.pt, or from CKPT",
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


# -- checkpoints ------------------------------------------------------------------------------


def _file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (mkstemp's is 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        os.chmod(tmp, _file_mode())
        # mmap: checks the archive and every record without copying the tensor data.
        torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _fsync_dir(path.parent)
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
    missing = [k for k in _CHECKPOINT_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {str(p)!r} lacks {missing[0]!r}; it is incomplete")
    if arch_id is not None and state["arch_id"] != arch_id:
        raise CheckpointError(
            f"checkpoint {str(p)!r} belongs to architecture {state['arch_id']}, not {arch_id}"
        )
    return state


def _rng_state() -> dict[str, Any]:
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


def _set_rng_state(state: dict[str, Any]) -> None:
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


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    # Distinct, fixed seeds per (seed, epoch, rank); the odd multipliers keep them apart.
    return (seed * 1_000_003 + epoch * 7_919 + rank * 104_729 + 17) % (2**63 - 1)


# -- small utilities --------------------------------------------------------------------------


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_json(path: Path, obj: Any) -> None:
    _atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f}{unit}"
    return str(int(n))


def _dist_env() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun's environment (0, 0, 1 without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, local, world


def _plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
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
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)


# -- the run ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (0 ok, 1 training failed, 2 bad input)."""
    args = build_parser().parse_args(argv)
    rank = _dist_env()[0]
    try:
        return _Run(args).execute()
    except _UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except _Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if rank == 0:
            print("interrupted; continue with --resume", file=sys.stderr)
        return 130


class _Run:
    """One invocation: validates everything, then trains, tests, reports and exports."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rank, self.local_rank, self.world = _dist_env()
        self.is_main = self.rank == 0

    def log(self, msg: str) -> None:
        if self.is_main:
            print(msg, flush=True)

    # -- validation (nothing is written before it is all done) --------------------------------
    def _prepare(self) -> None:
        import torch

        from evaluators import data as D
        from search_spaces.arch import ArchitectureError, load_architecture

        a = self.args
        try:
            self.arch = load_architecture(a.arch)
        except ArchitectureError as e:
            raise _UserError(str(e)) from None
        arch = self.arch
        self.out = a.out if a.out is not None else Path("runs") / "retrain" / arch.arch_id

        # Resume: the checkpoint is the source of truth for the recipe and the data.
        self.ckpt: dict[str, Any] | None = None
        if a.resume is not None:
            ckpt_path = Path(a.resume) if a.resume else self.out / "last.pt"
            if not a.resume and not ckpt_path.is_file():
                raise _UserError(
                    f"nothing to resume in {str(self.out)!r}: it has no last.pt "
                    f"(pass --out of the run, or a checkpoint after --resume)"
                )
            try:
                self.ckpt = load_checkpoint(ckpt_path, arch_id=arch.arch_id)
            except CheckpointError as e:
                raise _UserError(str(e)) from None
            self.ckpt_path = ckpt_path

        saved_run: dict[str, Any] = dict(self.ckpt["run"]) if self.ckpt else {}

        def pick(name: str, given: Any, default: Any) -> Any:
            if self.ckpt is None:
                return default if given is None else given
            if given is not None and given != saved_run.get(name):
                raise _UserError(
                    f"--{name.replace('_', '-')} {given} differs from the resumed run's "
                    f"{saved_run.get(name)!r}; the data of a run cannot change"
                )
            return saved_run.get(name, default)

        given_dataset = a.dataset
        if given_dataset is not None and self.ckpt is not None:
            try:  # compare canonical forms: imagefolder paths are stored absolute
                given_dataset = str(D.parse_dataset(given_dataset))
            except ValueError as e:
                raise _UserError(str(e)) from None
        dataset = pick("dataset", given_dataset, None)
        if dataset is None:
            raise _UserError(
                "--dataset is required (cifar10, cifar100, imagefolder:<path>, synthetic)"
            )
        try:
            spec = D.parse_dataset(dataset)
        except ValueError as e:
            raise _UserError(str(e)) from None
        classes = D.num_classes(spec)
        if classes != arch.num_classes:
            raise _UserError(
                f"dataset {dataset} has {classes} classes but the architecture was built for "
                f"{arch.num_classes} (num_classes in {str(a.arch)!r}); use a matching dataset "
                f"or an architecture with num_classes {classes}"
            )

        # Recipe: (saved | named) < config file < flags.
        from nas import recipes as R

        overrides = {f: getattr(a, f) for f in recipe_fields() if hasattr(a, f)}
        try:
            if self.ckpt is not None:
                if a.recipe is not None:
                    raise _UserError(
                        "--recipe cannot change when resuming; override single fields instead "
                        "(e.g. --epochs 300)"
                    )
                base = Recipe.from_dict(self.ckpt["recipe"])
                file_fields = R.load_config_file(a.config) if a.config else {}
                file_fields.pop("recipe", None)
                self.recipe = base.replace(**{**file_fields, **overrides})
            else:
                self.recipe = R.resolve_recipe(
                    None if a.recipe in (None, "auto") else a.recipe,
                    config_file=a.config,
                    overrides=overrides,
                    # auto: the CIFAR setting for small inputs, the ImageNet one otherwise
                    default="cifar" if arch.resolution < 128 else "imagenet",
                )
        except RecipeError as e:
            raise _UserError(str(e)) from None
        from search_spaces.ops import linearconv as LC

        changes: dict[str, Any] = {}
        if self.recipe.linearconv_lambda is None:
            changes["linearconv_lambda"] = LC.REG_LAMBDA_DEFAULT
        if self.recipe.linearconv_every is None:
            changes["linearconv_every"] = LC.REG_EVERY_DEFAULT
        self.recipe = self.recipe.replace(**changes)
        self.resolution = self.recipe.resolution or arch.resolution

        select = a.select or ("best" if self.recipe.val_fraction > 0 else "last")
        if select == "best" and self.recipe.val_fraction == 0:
            raise _UserError("--select best needs a validation split; val_fraction is 0")
        self.settings = RunSettings(
            dataset=str(spec),
            # The data may move between machines; only what defines them must not change.
            data_dir=a.data_dir or saved_run.get("data_dir") or "data",
            download=not a.no_download,
            subset=pick("subset", a.subset, None),
            seed=pick("seed", a.seed, 0),
            device=a.device,
            amp=a.amp,
            channels_last=a.channels_last,
            compile=a.compile,
            sync_bn=a.sync_bn,
            num_workers=a.num_workers,
            select=select,
            latency=not a.no_latency,
            latency_batch=a.latency_batch,
            latency_repeats=a.latency_repeats,
        )
        if (
            self.ckpt is None
            and self.out.exists()
            and any((self.out / f).exists() for f in ("last.pt", "config.json", "result.json"))
        ):
            raise _UserError(
                f"output folder {str(self.out)!r} already holds a run; pass --resume to continue "
                f"it or --out to start a new one"
            )
        if a.sync_bn and self.world > 1 and not torch.cuda.is_available():
            raise _UserError("--sync-bn needs CUDA (SyncBatchNorm has no CPU implementation)")
        if self.recipe.batch_size % self.world:
            raise _UserError(
                f"batch_size {self.recipe.batch_size} is not divisible by the {self.world} "
                f"processes of this torchrun; use a multiple of {self.world}"
            )
        self.per_rank_batch = self.recipe.batch_size // self.world

        # Device.
        from evaluators.runtime import resolve_amp_dtype, resolve_device

        dev = a.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        if dev == "cuda" and self.world > 1:
            dev = f"cuda:{self.local_rank}"
        try:
            self.device = resolve_device(dev)
        except ValueError as e:
            raise _UserError(str(e)) from None
        amp = {"auto": True, "off": False}.get(a.amp, a.amp)
        self.amp_dtype = resolve_amp_dtype(amp, self.device)
        self.channels_last = (
            self.device.type == "cuda" if a.channels_last is None else a.channels_last
        )
        self.spec = spec

    # -- data ---------------------------------------------------------------------------------
    def _load_data(self) -> None:
        import torch
        from torch.utils.data import Subset

        from evaluators import data as D

        s, r = self.settings, self.recipe
        augment = None if r.augment == "none" else r.augment
        common: dict[str, Any] = dict(
            data_dir=s.data_dir, resolution=self.resolution, download=s.download, seed=SPLIT_SEED
        )
        train: Any
        val: Any
        test: Any
        try:
            if r.val_fraction > 0:
                train, val = D.proxy_split(
                    self.spec,
                    val_fraction=r.val_fraction,
                    subset=s.subset,
                    augment=augment,
                    **common,
                )
            else:
                train = D.load_split(self.spec, "train", augment=augment, **common)
                keep = len(train) if s.subset is None else min(s.subset, len(train))
                # Always a Subset: _set_epoch reseeds the augmentation through its .dataset.
                train = Subset(train, _seeded_prefix(len(train), keep))
                val = None
            # Evaluate the way training saw the images (ImageNet-style 0.875 crop only after
            # the imagenet pipeline; the whole image after cifar augmentation or none).
            crop = D.default_eval_crop(self.spec, augment)
            test = D.load_split(self.spec, "test", augment=None, eval_crop=crop, **common)
        except D.DatasetUnavailable as e:
            raise _UserError(str(e)) from None
        except ValueError as e:
            raise _UserError(f"dataset {s.dataset}: {e}") from None
        if s.subset is not None and s.subset < len(test):
            test = Subset(test, _seeded_prefix(len(test), s.subset))
        n_train = len(train)
        if n_train // self.recipe.batch_size < 1:
            raise _UserError(
                f"batch_size {r.batch_size} is larger than the {n_train} training images; "
                f"lower --batch-size or raise --subset"
            )
        self.train_set, self.val_set, self.test_set = train, val, test

        # The train loader: a DistributedSampler (also with one process: its (seed, epoch)
        # shuffling is what makes a resumed epoch equal the uninterrupted one).
        from torch.utils.data import DataLoader, DistributedSampler

        base = train.dataset if isinstance(train, Subset) else train
        in_memory = bool(getattr(base, "in_memory", False))
        workers = s.num_workers
        if workers is None:
            workers = 0 if in_memory else min(8, max(0, (os.cpu_count() or 1) // self.world - 1))
        self.num_workers = workers
        self.train_sampler: DistributedSampler[int] = DistributedSampler(
            train,
            num_replicas=self.world,
            rank=self.rank,
            shuffle=True,
            seed=s.seed,
            drop_last=True,
        )
        pin = self.device.type == "cuda"
        self.train_loader = DataLoader(
            train,
            batch_size=self.per_rank_batch,
            sampler=self.train_sampler,
            drop_last=True,
            num_workers=workers,
            pin_memory=pin,
            # Fresh workers each epoch: their seeds come from this generator, reseeded per epoch.
            persistent_workers=False,
            generator=torch.Generator(),
        )
        self.steps_per_epoch = len(self.train_loader)

        def shard(ds: Any) -> Any:
            if ds is None:
                return None
            part = Subset(ds, list(range(self.rank, len(ds), self.world)))
            return DataLoader(
                part,
                batch_size=self.per_rank_batch,
                shuffle=False,
                num_workers=workers,
                pin_memory=pin,
            )

        self.val_loader = shard(val)
        self.test_loader = shard(test)

    def _set_epoch(self, epoch: int) -> None:
        """Seed everything that draws data randomness for ``epoch`` from ``(seed, epoch)``."""
        from torch.utils.data import Subset

        seed = self.settings.seed
        self.train_sampler.set_epoch(epoch)
        epoch_seed = _epoch_seed(seed, epoch, self.rank)
        self.train_loader.generator.manual_seed(epoch_seed)
        # Batched in-memory augmentation (CIFAR, synthetic) draws from the dataset's own
        # generator in the main process: a per-epoch view reseeds it.
        train = self.train_set
        holder, base = (train, train.dataset) if isinstance(train, Subset) else (None, train)
        view = getattr(base, "view", None)
        if callable(view) and holder is not None:
            holder.dataset = view(seed=epoch_seed)

    # -- model --------------------------------------------------------------------------------
    def _build(self) -> None:
        import torch
        from torch import nn

        from search_spaces.arch import build_model
        from search_spaces.ops.linearconv import LinearConv2d

        s, r = self.settings, self.recipe
        _seed_everything(s.seed)
        model = build_model(self.arch)
        if s.sync_bn and self.world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick kernels
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.raw_model = model
        self.has_linearconv = any(isinstance(m, LinearConv2d) for m in model.modules())
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer: torch.optim.Optimizer
        if r.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                params,
                lr=r.lr,
                momentum=r.momentum,
                weight_decay=r.weight_decay,
                nesterov=r.nesterov,
            )
        elif r.optimizer == "adam":
            self.optimizer = torch.optim.Adam(
                params, lr=r.lr, betas=(r.momentum, 0.999), weight_decay=r.weight_decay
            )
        else:
            self.optimizer = torch.optim.AdamW(
                params, lr=r.lr, betas=(r.momentum, 0.999), weight_decay=r.weight_decay
            )
        recipe = r
        # A plain function (not a bound method): LambdaLR then stores nothing of it.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda e: recipe.lr_factor(e)
        )
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

        train_model: Any = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            train_model = DDP(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if s.compile:
            train_model = torch.compile(train_model)
        self.train_model = train_model

    # -- orchestration ------------------------------------------------------------------------
    def execute(self) -> int:
        import torch

        self._prepare()
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

    def _barrier(self) -> None:
        import torch

        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()

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
        self.log(_result_line(result))
        if self.args.export:
            path = self.out / f"{result.get('weights', 'last')}.pt"
            try:
                state = load_checkpoint(path, arch_id=self.arch.arch_id)
            except CheckpointError as e:
                raise _UserError(str(e)) from None
            self._export(state["model"])
        return 0

    def _clean_model(self, state_dict: dict[str, Any]) -> nn.Module:
        """A freshly built CPU model holding ``state_dict``: no DDP, compile, SyncBN, NHWC."""
        from search_spaces.arch import build_model

        model = build_model(self.arch)
        model.load_state_dict(state_dict)
        return model.eval()

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
            _set_rng_state(rngs[self.rank])
        else:  # another world size: rank 0's state, other ranks reseeded apart
            _set_rng_state(rngs[0])
            if self.rank:
                torch.manual_seed(_epoch_seed(self.settings.seed, start, self.rank))
        self.history: list[dict[str, Any]] = [dict(h) for h in ck.get("history", [])][:start]
        self.best_metric = ck.get("best_metric")
        self.best_epoch = ck.get("best_epoch")
        self.log(f"resuming from {self.ckpt_path} after epoch {start}/{self.recipe.epochs}")
        return start

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
        _write_json(self.out / "config.json", self._config(start_epoch))
        # The checkpoint's history is the truth: lines a killed run wrote later are dropped.
        _atomic_write_text(
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
                    raise _Diverged(
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
                raise _Diverged(
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
            self.log(_epoch_line(record, r.epochs))
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

    def _all_reduce(self, t: torch.Tensor) -> None:
        import torch

        if self.world > 1:
            torch.distributed.all_reduce(t)

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

    def _checkpoint(self, epochs_done: int, improved: bool) -> None:
        """Gather every rank's RNG state; rank 0 writes best.pt (if improved), then last.pt."""
        import torch

        rng = _rng_state()
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

    def _plot(self) -> None:
        if self.history:
            _plot_curves(
                self.history,
                self.out / "curves.png",
                f"{self.arch.backbone} {self.arch.arch_id} on {self.settings.dataset}",
            )

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
                raise _UserError(str(e)) from None
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
        _write_json(self.out / "result.json", result)
        self._plot()
        self.log(_result_line(result))
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
            raise _Diverged(str(e)) from None
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


def _seeded_prefix(n: int, k: int) -> list[int]:
    """``k`` of ``range(n)`` chosen by a permutation with the fixed split seed, sorted."""
    import torch

    gen = torch.Generator().manual_seed(SPLIT_SEED)
    return sorted(torch.randperm(n, generator=gen)[:k].tolist())


def _epoch_line(h: dict[str, Any], epochs: int) -> str:
    val = ""
    if h.get("val_top1") is not None:
        val = f"  val loss {h['val_loss']:.4f} top-1 {100 * h['val_top1']:.2f}%"
    reg = "" if h.get("reg_loss") is None else f"  reg {h['reg_loss']:.3g}"
    return (
        f"epoch {h['epoch']:>{len(str(epochs))}}/{epochs}  lr {h['lr']:.4g}  "
        f"train loss {h['train_loss']:.4f} top-1 {100 * h['train_top1']:.2f}%{val}{reg}  "
        f"{h['images_per_s']:.0f} img/s  {h['time_s']:.1f} s"
    )


def _result_line(r: dict[str, Any]) -> str:
    lat = ""
    if r.get("latency_ms") is not None:
        lat = f"  latency {r['latency_ms']:.2f} ms (batch {r['latency_batch']}"
        lat += f", {r['latency_device']})"
    return (
        f"test top-1 {100 * r['test_top1']:.2f}% on {r['test_images']} images "
        f"({r['weights']} weights, epoch {r['weights_epoch']})  "
        f"FLOPs {_si(r['flops'])}  params {_si(r['params'])}{lat}"
    )


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
