"""In-memory images (CIFAR, synthetic): one ``uint8`` tensor, transformed a batch at a time.

Imports :mod:`evaluators.data.base` and :mod:`evaluators.data.augment`; must not import the
dataset readers (cifar, synthetic, imagefolder) or the split functions, which build on it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from evaluators.data.augment import pad_crop_flip, random_resized_crop, resize_center_crop
from evaluators.data.base import check_int, check_pipeline

__all__ = ["InMemoryImages"]


class InMemoryImages(Dataset):
    """Images held as one ``uint8`` tensor, transformed a whole batch at a time.

    ``DataLoader`` fetches a batch through :meth:`__getitems__`, so resizing, augmentation and
    normalisation run once per batch instead of once per image. Random augmentation draws from
    a generator owned by the dataset: seeded with ``seed`` in the main process and, in a
    ``DataLoader`` worker, with the worker's seed (derived from the loader's generator), so
    workers never repeat each other. The image tensor is shared, never modified; :meth:`view`
    makes a dataset over the same images with another pipeline.

    Args:
        images: ``Tensor[N, 3, H, W]`` of ``uint8``.
        labels: ``Tensor[N]`` of class indices.
        classes: class names, ``labels < len(classes)``.
        mean, std: per-channel normalisation (on the 0-1 scale).
        resolution: output size (square); ``None`` keeps ``H`` (images must then be square).
        augment: ``"cifar"``, ``"imagenet"`` or ``None`` (see :mod:`evaluators.data`).
        eval_crop: share of the resized image kept by the evaluation centre crop, in (0, 1].
        seed: seed of the augmentation generator in the main process.

    Shapes:
        item:  (Tensor[3, resolution, resolution] float32, int)
    """

    #: Whether augmentation may mirror images; a dataset whose classes are not mirror-invariant
    #: turns it off.
    hflip = True
    #: ``make_loader`` runs in-memory data in the main process by default (no workers).
    in_memory = True

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        classes: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        resolution: int | None = None,
        augment: str | None = None,
        eval_crop: float = 1.0,
        seed: int = 0,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape)
            raise ValueError(f"images must be uint8 Tensor[N, 3, H, W], got {images.dtype} {shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must be a Tensor[{len(images)}], got {tuple(labels.shape)}")
        if resolution is None:
            if images.shape[2] != images.shape[3]:
                raise ValueError("resolution must be given for non-square images")
            resolution = int(images.shape[2])
        check_pipeline(resolution, augment, eval_crop)
        self.images = images
        self.labels = labels.long()
        self.classes = list(classes)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.resolution = resolution
        self.augment = augment
        self.eval_crop = float(eval_crop)
        self.seed = int(seed)
        self._gen: torch.Generator | None = None
        self._gen_owner: tuple[int, int | None] | None = None

    def view(self, **changes: Any) -> InMemoryImages:
        """The same images with other ``resolution``/``augment``/``eval_crop``/``seed``."""
        unknown = set(changes) - {"resolution", "augment", "eval_crop", "seed"}
        if unknown:
            raise ValueError(f"view() takes resolution, augment, eval_crop, seed; got {unknown}")
        out = copy.copy(self)
        for k, v in changes.items():
            setattr(out, k, v)
        check_pipeline(out.resolution, out.augment, out.eval_crop)
        out._gen, out._gen_owner = None, None
        return out

    def reseed(self, seed: int) -> None:
        """Restart this dataset's augmentation stream from ``seed`` (in place).

        A proxy trainer calls it before each candidate so that a candidate's augmentations do
        not depend on how many batches earlier candidates drew. It acts in the main process;
        ``DataLoader`` workers reseed from the loader's generator (see :func:`make_loader`).
        """
        check_int("seed", seed)
        self.seed = seed
        self._gen, self._gen_owner = None, None

    @property
    def targets(self) -> list[int]:
        """Class index of every image (as ``torchvision`` datasets name it)."""
        return self.labels.tolist()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} images")
        batch = self.transform_batch(self.images[idx])
        return list(zip(batch.unbind(0), self.labels[idx].tolist()))

    def transform_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Resize, augment and normalise ``uint8 Tensor[B, 3, H, W]`` -> ``Tensor[B, 3, r, r]``."""
        x = images.float().div_(255.0)
        r = self.resolution
        if self.augment == "imagenet":
            x = random_resized_crop(x, r, self._generator(), flip=self.hflip)
        else:
            x = resize_center_crop(x, r, 1.0 if self.augment == "cifar" else self.eval_crop)
            if self.augment == "cifar":
                x = pad_crop_flip(x, max(1, r // 8), self._generator(), flip=self.hflip)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def _generator(self) -> torch.Generator:
        info = torch.utils.data.get_worker_info()
        owner = (os.getpid(), None if info is None else info.id)
        if self._gen is None or self._gen_owner != owner:
            # A forked worker inherits the parent's generator state; reseed it per worker.
            seed = self.seed if info is None else info.seed
            self._gen = torch.Generator().manual_seed(seed % 2**63)
            self._gen_owner = owner
        return self._gen

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_gen"], state["_gen_owner"] = None, None
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, classes={len(self.classes)}, "
            f"resolution={self.resolution}, augment={self.augment!r})"
        )
