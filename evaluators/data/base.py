"""What every dataset module shares: the error, the names, the statistics, the argument checks.

The bottom of :mod:`evaluators.data`: the accepted dataset strings and augmentation recipes,
the normalisation statistics, :class:`DatasetUnavailable` and the checks of integer and
pipeline arguments. Imports only the standard library; must not import any other
module of :mod:`evaluators.data` (they all import this one), nor ``evaluators`` or ``nas``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AUGMENTATIONS",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASET_FORMS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLITS",
    "SYNTHETIC_DEFAULT_CLASSES",
    "SYNTHETIC_DEFAULT_SIZE",
    "DatasetUnavailable",
    "check_int",
    "check_pipeline",
]

#: The accepted forms of a dataset string, as shown in error messages.
DATASET_FORMS = (
    "cifar10",
    "cifar100",
    "cifar10-sample",
    "imagefolder:<path>",
    "synthetic",
    "synthetic:<classes>",
)
#: Augmentation recipes accepted by ``augment=`` (``None``: no augmentation).
AUGMENTATIONS = ("cifar", "imagenet")
SPLITS = ("train", "test")

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

SYNTHETIC_DEFAULT_CLASSES = 10
#: Images per split of ``synthetic`` when ``synthetic_size`` is not given.
SYNTHETIC_DEFAULT_SIZE = {"train": 10_000, "test": 2_000}


class DatasetUnavailable(RuntimeError):
    """A dataset's files are missing or unreadable and cannot be fetched.

    The message is one sentence that names ``--data-dir`` (where the files are looked for),
    ``imagefolder:<path>`` and ``synthetic`` as ways forward.
    """


def check_int(name: str, value: Any, low: int | None = None, *, none_ok: bool = False) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is an int (not a bool) ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        allowed = "an integer" if low is None else f"an integer >= {low}"
        allowed = f"None or {allowed}" if none_ok else allowed
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def check_pipeline(resolution: Any, augment: Any, eval_crop: Any) -> None:
    """``ValueError`` naming the bad one of an image pipeline's three settings."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 4:
        raise ValueError(f"resolution must be an integer >= 4, got {resolution!r}")
    if augment is not None and augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS} or None, got {augment!r}")
    if not isinstance(eval_crop, (int, float)) or not 0.0 < eval_crop <= 1.0:
        raise ValueError(f"eval_crop must be in (0, 1], got {eval_crop!r}")
