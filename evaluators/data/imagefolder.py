"""``imagefolder:<path>``: ImageNet-style class folders, read by torchvision's ``ImageFolder``.

``<path>/train/<class>/*`` is the train split and ``<path>/test/<class>/*`` (or ``val/``) the
test split; a folder without ``train/`` is itself the train split and has no test split. The
test split uses the train split's class indices. Images are transformed one at a time by a
torchvision ``v2`` pipeline (normalised with ImageNet's statistics). A small split (files up
to :data:`SMALL_FOLDER_BYTES`, e.g. CIFAR-sized) is decoded once per process and its images
kept in memory, keyed on the folder and every file's modification time and size, so later
epochs and trials transform the same decoded images instead of decoding PNGs again.
:func:`check_folder` checks a folder before a search or a run uses it: no empty class folder,
enough images per class, every file an image (PIL's ``verify``: the file is read, its
structure and PNG checksums checked, its pixels not decoded, about a third of the cost of
decoding); an image that still fails to decode later is named in the error.

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

__all__ = [
    "DECODED_LIMIT_BYTES",
    "SMALL_FOLDER_BYTES",
    "check_folder",
    "class_folders",
    "clear_decoded",
    "folder_transform",
    "load_folder",
    "test_root",
    "train_root",
]

#: A split whose image files total at most this many bytes is decoded once per process and
#: kept in memory, so proxy epochs and later trials do not decode its files again
#: (cifar10-mini's 4,660 training PNGs are 10.5 MB; CIFAR-10's 50,000 at that average would
#: be 113 MB and are not kept).
SMALL_FOLDER_BYTES = 64 * 2**20
#: ... unless the decoded pixels exceed this (highly compressed JPEGs): then nothing is kept.
DECODED_LIMIT_BYTES = 512 * 2**20
#: split folder -> (the (path, mtime_ns, size) of every image, path -> decoded RGB image)
_DECODED: dict[str, tuple[tuple[tuple[str, int, int], ...], dict[str, Any]]] = {}
_DECODED_FOLDERS = 4  # kept at most (a train and a test split, of two folders)


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


def check_folder(root: Path, *, min_per_class: int = 1) -> int:
    """Check the image folder at ``root`` before it is used; return its number of images.

    Every class folder of the train split must hold at least ``min_per_class`` images (2 when
    a validation split is carved out of it: one to train on, one to validate), every class
    folder of the test split at least one, and every image file must open as an image. Raises
    :class:`DatasetUnavailable` naming the first bad folder or file. Reads every file once
    without decoding its pixels.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS

    train_dir, test_dir = train_root(root), test_root(root)
    classes = class_folders(train_dir)
    if test_dir is not None:
        extra = sorted(set(class_folders(test_dir)) - set(classes))
        if extra:
            raise DatasetUnavailable(
                f"image folder {str(test_dir)!r} has class folder {extra[0]!r} that "
                f"{str(train_dir)!r} lacks; the test split must use the train split's classes."
            )
    total = 0
    for split_dir, need in ((train_dir, min_per_class), (test_dir, 1)):
        if split_dir is None:
            continue
        samples = _scan_folder(str(split_dir), tuple(classes))
        counts = [0] * len(classes)
        for _, label in samples:
            counts[label] += 1
        for name, n in zip(classes, counts):
            if n >= need or (split_dir is test_dir and not (split_dir / name).is_dir()):
                continue
            what = "no image files" if n == 0 else f"only {n} image{'s' if n > 1 else ''}"
            why = (
                f" (a validation split is carved out of the training images: each class needs "
                f"{need}, one to train on and one to validate)"
                if n and split_dir is train_dir
                else f" ({', '.join(IMG_EXTENSIONS[:4])}, ...); add images or remove the folder"
            )
            raise DatasetUnavailable(f"class folder {str(split_dir / name)!r} holds {what}{why}.")
        for path, _ in samples:
            _check_image(path)
        total += len(samples)
    return total


def _check_image(path: str) -> None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # PIL raises many types for damaged files
        raise DatasetUnavailable(
            f"image file {path!r} is not a readable image ({type(exc).__name__}: {exc}); "
            "delete or replace it."
        ) from None


def _load_rgb(path: str) -> Any:
    """torchvision's loader, with the file named when it cannot be decoded."""
    from PIL import Image

    try:
        with open(path, "rb") as f, Image.open(f) as im:
            return im.convert("RGB")
    except Exception as exc:
        raise OSError(
            f"image file {path!r} cannot be decoded ({type(exc).__name__}: {exc})"
        ) from None


def clear_decoded() -> None:
    """Forget the decoded images of every folder (the next :func:`load_folder` decodes again)."""
    _DECODED.clear()


def _decoded(root: str, samples: Sequence[tuple[str, int]]) -> dict[str, Any] | None:
    """The decoded RGB images of a small split, decoded on the first call in this process.

    ``None`` for a split over :data:`SMALL_FOLDER_BYTES` (or whose pixels exceed
    :data:`DECODED_LIMIT_BYTES`). The images are reused while every file keeps its
    modification time and size; a changed, added or removed file means decoding again. A file
    that fails to decode is left out: it is read from disk when fetched, and the error there
    names it.
    """
    try:
        stats = [(path, os.stat(path)) for path, _ in samples]
    except OSError:
        return None
    if sum(st.st_size for _, st in stats) > SMALL_FOLDER_BYTES:
        return None
    signature = tuple((path, st.st_mtime_ns, st.st_size) for path, st in stats)
    hit = _DECODED.pop(root, None)
    if hit is None or hit[0] != signature:
        images: dict[str, Any] = {}
        pixels = 0
        for path, _ in stats:
            try:
                im = _load_rgb(path)
            except OSError:
                continue
            pixels += im.width * im.height * 3
            if pixels > DECODED_LIMIT_BYTES:
                return None
            images[path] = im
        hit = (signature, images)
    _DECODED[root] = hit  # most recently used last
    while len(_DECODED) > _DECODED_FOLDERS:
        del _DECODED[next(iter(_DECODED))]
    return hit[1]


def _from_memory_or_disk(images: dict[str, Any], path: str) -> Any:
    im = images.get(path)
    return _load_rgb(path) if im is None else im.copy()  # transforms get an image of their own


def _image_folder_class() -> Any:
    from torchvision.datasets import ImageFolder

    class _FolderImages(ImageFolder):
        """``ImageFolder`` with a fixed class list (the train split's) and a cached file scan."""

        in_memory = False

        def __init__(self, root: str, classes: Sequence[str], transform: Any) -> None:
            self._fixed_classes = list(classes)
            super().__init__(root, transform=transform, loader=_load_rgb, allow_empty=True)

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
    images = _decoded(str(split_root), ds.samples)
    if images is not None:  # a small folder: decoded once per process, not once per epoch
        ds.loader = functools.partial(_from_memory_or_disk, images)
    ds.decoded_in_memory = images is not None
    ds.resolution, ds.augment, ds.eval_crop = resolution, augment, eval_crop
    return ds
