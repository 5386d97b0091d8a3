"""Resolving a run before anything is written: architecture, resume, recipe, data, device.

:class:`RunSettings` is everything of a run that is not a recipe field. :class:`Setup` is the
part of :class:`nas.train.run.Run` that checks the command line against the architecture
file, the checkpoint being resumed (the source of truth for the recipe and the data), the
recipe (``(saved | named) < --config file < flags``), the dataset and the device; every
problem is a :class:`~nas.train.errors.UserError` raised before the output folder is touched.
Imports :mod:`nas.paths`, :mod:`nas.recipes`, :mod:`nas.train.checkpoint`,
:mod:`nas.train.errors` and, when called, ``evaluators`` and ``search_spaces``; must not
import the other ``nas.train`` modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.paths import check_writable_folder
from nas.recipes import Recipe, RecipeError, recipe_fields
from nas.train.checkpoint import CheckpointError, load_checkpoint
from nas.train.errors import UserError

__all__ = ["RunSettings", "Setup"]


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


class Setup:
    """Run stage: validation (nothing is written before it is all done).

    Reads ``args``, ``world``, ``local_rank``; sets ``arch``, ``out``, ``ckpt``, ``ckpt_path``,
    ``recipe``, ``resolution``, ``settings``, ``per_rank_batch``, ``device``, ``amp_dtype``,
    ``channels_last``, ``spec``.
    """

    def _prepare(self) -> None:
        from search_spaces.syntax import ArchitectureError, read_architecture_file

        a = self.args
        try:
            read_architecture_file(a.arch)  # a broken file is named before torch is imported
        except ArchitectureError as e:
            raise UserError(str(e)) from None
        import torch

        from evaluators import data as D
        from search_spaces.arch import load_architecture

        try:
            self.arch = load_architecture(a.arch)
        except ArchitectureError as e:
            raise UserError(str(e)) from None
        arch = self.arch
        self.out = a.out if a.out is not None else Path("runs") / "retrain" / arch.arch_id
        try:
            check_writable_folder(self.out, f"--out {str(self.out)!r}")
        except ValueError as e:
            raise UserError(str(e)) from None

        # Resume: the checkpoint is the source of truth for the recipe and the data.
        self.ckpt: dict[str, Any] | None = None
        #: Why a run with --resume starts from epoch 1 (None: it does not, or it resumes).
        self.restart_note: str | None = None
        if a.resume is not None:
            ckpt_path = Path(a.resume) if a.resume else self.out / "last.pt"
            if not a.resume and not ckpt_path.is_file():
                if not self.out.is_dir() or _holds_run(self.out):
                    raise UserError(
                        f"nothing to resume in {str(self.out)!r}: it has no last.pt "
                        f"(pass --out of the run, or a checkpoint after --resume)"
                    )
                # A run stopped before its first checkpoint: nothing to lose, start it again.
                self.restart_note = (
                    f"{str(self.out)!r} has no last.pt (its run stopped before the first "
                    f"epoch ended); starting from epoch 1"
                )
        if a.resume is not None and self.restart_note is None:
            try:
                self.ckpt = load_checkpoint(ckpt_path, arch_id=arch.arch_id)
            except CheckpointError as e:
                raise UserError(str(e)) from None
            self.ckpt_path = ckpt_path

        saved_run: dict[str, Any] = dict(self.ckpt["run"]) if self.ckpt else {}

        def pick(name: str, given: Any, default: Any) -> Any:
            if self.ckpt is None:
                return default if given is None else given
            if given is not None and given != saved_run.get(name):
                raise UserError(
                    f"--{name.replace('_', '-')} {given} differs from the resumed run's "
                    f"{saved_run.get(name)!r}; the data of a run cannot change"
                )
            return saved_run.get(name, default)

        given_dataset = a.dataset
        if given_dataset is not None and self.ckpt is not None:
            try:  # compare canonical forms: imagefolder paths are stored absolute
                given_dataset = str(D.parse_dataset(given_dataset))
            except ValueError as e:
                raise UserError(str(e)) from None
        dataset = pick("dataset", given_dataset, None)
        if dataset is None:
            raise UserError(
                "--dataset is required (cifar10, cifar10-sample, cifar100, imagefolder:<path>, "
                "synthetic)"
            )
        try:
            spec = D.parse_dataset(dataset)
        except ValueError as e:
            raise UserError(str(e)) from None
        classes = D.num_classes(spec)
        if classes != arch.num_classes:
            raise UserError(
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
                    raise UserError(
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
            raise UserError(str(e)) from None
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
            raise UserError("--select best needs a validation split; val_fraction is 0")
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
        if self.ckpt is None and self.restart_note is None and _holds_run(self.out):
            raise UserError(
                f"output folder {str(self.out)!r} already holds a run; pass --resume to continue "
                f"it or --out to start a new one"
            )
        if spec.kind == "imagefolder":  # every file, before the output folder is touched
            try:
                D.check_folder(
                    Path(spec.path or ""), min_per_class=2 if self.recipe.val_fraction > 0 else 1
                )
            except D.DatasetUnavailable as e:
                raise UserError(str(e)) from None
        if a.sync_bn and self.world > 1 and not torch.cuda.is_available():
            raise UserError("--sync-bn needs CUDA (SyncBatchNorm has no CPU implementation)")
        if self.recipe.batch_size % self.world:
            raise UserError(
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
            raise UserError(str(e)) from None
        amp = {"auto": True, "off": False}.get(a.amp, a.amp)
        self.amp_dtype = resolve_amp_dtype(amp, self.device)
        self.channels_last = (
            self.device.type == "cuda" if a.channels_last is None else a.channels_last
        )
        self.spec = spec


def _holds_run(out: Path) -> bool:
    """Whether ``out`` holds a run worth keeping: a checkpoint (``last.pt``) or a result.

    A folder whose run stopped before its first checkpoint (``config.json``, an empty
    ``metrics.jsonl``, maybe a ``best.pt`` written just before ``last.pt``) holds nothing
    that a new start would not write again, so it may be reused.
    """
    return (out / "last.pt").exists() or (out / "result.json").exists()
