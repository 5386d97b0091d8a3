"""``imagefolder:<path>``: ImageNet-style class folders, read by torchvision's ``ImageFolder``.

``<path>/train/<class>/*`` is the train split and ``<path>/test/<class>/*`` (or ``val/``) the
test split; a folder without ``train/`` is itself the train split and has no test split. The
test split uses the train split's class indices. Images are transformed one at a time by a
torchvision ``v2`` pipeline (normalised with ImageNet's statistics).

Imports :mod:`evaluators.data.base` only (torchvision when called); must not import the other
``evaluators.data`` modules.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from evaluators.data.base import IMAGENET_MEAN, IMAGENET_STD, DatasetUnavailable

__all__ = ["class_folders", "folder_transform", "load_folder", "test_root", "train_root"]


def train_root(root: Path) -> Path:
    """``root/train`` when it exists, else ``root`` (a folder of class folders)."""
    return root / "train" if (root / "train").is_dir() else root


def test_root(root: Path) -> Path | None:
    """``root/test`` (or ``root/val``) next to ``root/train``; None without a test split."""
    if not (root / "train").is_dir():
        return None
    for name in ("test", "val"):
        if (root / name).is_dir():
            return root / name
    return None


def class_folders(root: Path) -> list[str]:
    """The sorted class folder names under ``root`` (hidden folders skipped; [] if unreadable)."""
    try:
        return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


@functools.lru_cache(maxsize=4)
def _scan_folder(root: str, classes: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    # Listing a large folder (ImageNet: 1.3 M files) takes seconds; proxy data are rebuilt often.
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    class_to_idx = {c: i for i, c in enumerate(classes)}
    present = {c: i for c, i in class_to_idx.items() if (Path(root) / c).is_dir()}
    return tuple(make_dataset(root, present, extensions=IMG_EXTENSIONS, allow_empty=True))


def _image_folder_class() -> Any:
    from torchvision.datasets import ImageFolder

    class _FolderImages(ImageFolder):
        """``ImageFolder`` with a fixed class list (the train split's) and a cached file scan."""

        in_memory = False

        def __init__(self, root: str, classes: Sequence[str], transform: Any) -> None:
            self._fixed_classes = list(classes)
            super().__init__(root, transform=transform, allow_empty=True)

        def find_classes(self, directory: Any) -> tuple[list[str], dict[str, int]]:
            return self._fixed_classes, {c: i for i, c in enumerate(self._fixed_classes)}

        def make_dataset(self, directory: Any, class_to_idx: Any, *args: Any, **kw: Any) -> list:
            return list(_scan_folder(str(directory), tuple(self._fixed_classes)))

    return _FolderImages


def folder_transform(resolution: int, augment: str | None, eval_crop: float) -> Any:
    """The torchvision ``v2`` pipeline of one image: augmentation or evaluation crop, normalised."""
    from torchvision.transforms import v2

    if augment == "imagenet":
        steps = [v2.RandomResizedCrop(resolution, antialias=True), v2.RandomHorizontalFlip()]
    elif augment == "cifar":
        steps = [
            v2.Resize(resolution, antialias=True),
            v2.CenterCrop(resolution),
            v2.RandomCrop(resolution, padding=max(1, resolution // 8)),
            v2.RandomHorizontalFlip(),
        ]
    else:
        steps = [
            v2.Resize(max(resolution, round(resolution / eval_crop)), antialias=True),
            v2.CenterCrop(resolution),
        ]
    return v2.Compose(
        [
            *steps,
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            v2.ToPureTensor(),
        ]
    )


def load_folder(
    root: Path, split: str, resolution: int, augment: str | None, eval_crop: float
) -> Dataset:
    """The ``split`` of the image folder at ``root``; ``DatasetUnavailable`` when unusable."""
    if not root.is_dir():
        raise DatasetUnavailable(
            f"image folder {str(root)!r} no longer exists; point imagefolder:<path> at a folder "
            f"of class folders, or use --dataset synthetic, which needs no files."
        )
    train_dir = train_root(root)
    classes = class_folders(train_dir)
    if split == "train":
        split_root = train_dir
    else:
        test_dir = test_root(root)
        if test_dir is None:
            raise DatasetUnavailable(
                f"image folder {str(root)!r} has no train/ and test/ (or val/) subfolders, so it "
                f"is all training data and has no test split; arrange it as <path>/train/<class>/ "
                f"and <path>/test/<class>/ to get one."
            )
        extra = sorted(set(class_folders(test_dir)) - set(classes))
        if extra:
            raise DatasetUnavailable(
                f"image folder {str(test_dir)!r} has class folder {extra[0]!r} that "
                f"{str(train_dir)!r} lacks; the test split must use the train split's classes."
            )
        split_root = test_dir
    ds = _image_folder_class()(
        str(split_root), classes, folder_transform(resolution, augment, eval_crop)
    )
    if len(ds) == 0:
        raise DatasetUnavailable(
            f"image folder {str(split_root)!r} holds no images in its class folders; "
            f"use --dataset synthetic to run without data."
        )
    ds.resolution, ds.augment, ds.eval_crop = resolution, augment, eval_crop
    return ds
