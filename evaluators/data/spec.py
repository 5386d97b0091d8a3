"""Dataset strings: ``cifar10[-sample]``, ``cifar100``, ``imagefolder:<path>``, ``synthetic[:C]``.

:class:`DatasetSpec` is the parsed, canonical form; :func:`num_classes`,
:func:`default_resolution` and :func:`default_eval_crop` answer questions about a data set
without loading it. Imports :mod:`evaluators.data.base` and :mod:`evaluators.data.imagefolder`
(folder names only); must not import the readers of images or the split functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluators.data.base import AUGMENTATIONS, DATASET_FORMS, SYNTHETIC_DEFAULT_CLASSES
from evaluators.data.imagefolder import class_folders, train_root

__all__ = [
    "DatasetSpec",
    "default_eval_crop",
    "default_resolution",
    "num_classes",
    "parse_dataset",
]


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset string (see :func:`parse_dataset`).

    ``kind`` is ``"cifar10"``, ``"cifar10-sample"`` (the 2,500 CIFAR-10 images shipped in the
    package), ``"cifar100"``, ``"imagefolder"`` or ``"synthetic"``; ``path`` is
    the absolute root of an image folder (``imagefolder`` only); ``classes`` is the class count
    of ``synthetic`` (``None``: 10). ``str(spec)`` gives back a string that parses to ``spec``.
    """

    kind: str
    path: str | None = None
    classes: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("cifar10", "cifar10-sample", "cifar100", "imagefolder", "synthetic"):
            raise ValueError(f"dataset kind {self.kind!r} is not one of {_forms()}")
        if (self.kind == "imagefolder") != (self.path is not None):
            raise ValueError(f"dataset path must be given for imagefolder only, got {self.path!r}")
        if self.classes is not None and (self.kind != "synthetic" or self.classes < 2):
            raise ValueError(f"dataset classes={self.classes!r}: synthetic only, and >= 2")

    def __str__(self) -> str:
        if self.kind == "imagefolder":
            return f"imagefolder:{self.path}"
        if self.kind == "synthetic" and self.classes is not None:
            return f"synthetic:{self.classes}"
        return self.kind


def _forms() -> str:
    return ", ".join(f"'{f}'" for f in DATASET_FORMS)


def parse_dataset(spec: str | DatasetSpec) -> DatasetSpec:
    """Parse ``cifar10[-sample]``, ``cifar100``, ``imagefolder:<path>``, ``synthetic[:<classes>]``.

    An ``imagefolder`` path must be a directory holding class folders, either directly or
    under ``train/``; at least two are required. Raises ``ValueError`` naming the bad value
    and the allowed forms.
    """
    if isinstance(spec, DatasetSpec):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"dataset must be a string, one of {_forms()}; got {spec!r}")
    text = spec.strip()
    head, sep, rest = text.partition(":")
    name = head.lower()
    if name in ("cifar10", "cifar10-sample", "cifar100") and not sep:
        return DatasetSpec(name)
    if name == "synthetic":
        if not sep:
            return DatasetSpec("synthetic")
        try:
            classes = int(rest)
        except ValueError:
            classes = 0
        if classes < 2:
            raise ValueError(
                f"dataset {spec!r}: the class count after 'synthetic:' must be an integer >= 2"
            )
        # Canonical: the default class count has one spelling, so equal datasets compare equal.
        return DatasetSpec(
            "synthetic", classes=None if classes == SYNTHETIC_DEFAULT_CLASSES else classes
        )
    if name == "imagefolder" and sep:
        if not rest:
            raise ValueError(f"dataset {spec!r} needs a folder after 'imagefolder:'")
        root = Path(rest).expanduser().absolute()
        if not root.is_dir():
            raise ValueError(f"dataset {spec!r}: folder {str(root)!r} does not exist")
        n = len(class_folders(train_root(root)))
        if n < 2:
            raise ValueError(
                f"dataset {spec!r}: {str(train_root(root))!r} has {n} class folder(s); "
                "an image folder needs at least 2 (<path>/<class>/* or <path>/train/<class>/*)"
            )
        return DatasetSpec("imagefolder", path=str(root))
    raise ValueError(f"dataset {spec!r} is not one of {_forms()}")


def num_classes(spec: str | DatasetSpec) -> int:
    """The number of classes of a dataset (reads only the folder names of an image folder)."""
    spec = parse_dataset(spec)
    if spec.kind in ("cifar10", "cifar10-sample"):
        return 10
    if spec.kind == "cifar100":
        return 100
    if spec.kind == "synthetic":
        return spec.classes or SYNTHETIC_DEFAULT_CLASSES
    return len(class_folders(train_root(Path(spec.path or ""))))


def default_eval_crop(spec: str | DatasetSpec, train_augment: str | None) -> float:
    """The evaluation centre crop that matches a training pipeline.

    0.875 (resize the shorter side to ``resolution / 0.875``, keep the centre: 256 -> 224) for
    an image folder trained with the ``imagenet`` pipeline, whose random resized crops teach
    the network zoomed-in views; 1.0 (the whole image at the training resolution) for every
    other case: the ``cifar`` pipeline pads and crops at full scale, and without augmentation
    the training images are used whole.
    """
    if train_augment is not None and train_augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS} or None, got {train_augment!r}")
    kind = parse_dataset(spec).kind
    return 0.875 if kind == "imagefolder" and train_augment == "imagenet" else 1.0


def default_resolution(spec: str | DatasetSpec) -> int:
    """The native input size: 32 for CIFAR and synthetic, 224 for an image folder."""
    return 224 if parse_dataset(spec).kind == "imagefolder" else 32
