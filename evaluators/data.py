"""Datasets for search and retraining: cifar10, cifar100, imagefolder:<path> and synthetic.

Every dataset yields ``(image, label)`` with ``image`` a ``Tensor[3, H, W]`` float32, normalised
by per-channel mean/std, and ``label`` an ``int``. The statistics are CIFAR-10's for ``cifar10``
and ``synthetic`` (the procedural images have a similar mid-grey mean and spread), CIFAR-100's for
``cifar100`` and ImageNet's for ``imagefolder`` (the usual choice for photographs of any size).

* ``cifar10`` / ``cifar100``: the python version of CIFAR, in torchvision's layout under
  ``data_dir`` (``cifar-10-batches-py/`` or ``cifar-100-python/``). When files are missing it is
  downloaded with torchvision's downloader (progress bar, MD5 check of the archive) unless
  downloading is off; a failed download raises :class:`DatasetUnavailable`. The batches are read
  here rather than by ``torchvision.datasets.CIFAR10`` (whose class attributes still define the
  URL, archive and file names): torchvision recomputes the MD5 of every extracted file each time
  a dataset is built and hands out one PIL image at a time, while reading the same pickles into
  one ``uint8`` tensor lets augmentation run on whole batches. The pickles are read with an
  unpickler that only accepts the numpy array types CIFAR's files contain, so a tampered data
  folder cannot run code; their structure (shapes, dtypes, label range) is checked instead.
* ``imagefolder:<path>``: ImageNet-style folders read by ``torchvision.datasets.ImageFolder``.
  ``<path>/train/<class>/*`` is the train split and ``<path>/test/<class>/*`` (or ``val/``) the
  test split; a folder without ``train/`` is itself the train split and has no test split.
  The test split uses the train split's class indices.
* ``synthetic`` (or ``synthetic:<classes>``): :class:`SyntheticImages`, a procedural, seeded
  classification task generated in memory; it needs no files and a small CNN learns it quickly.

Proxy data for the search come from :func:`proxy_split`: a validation split carved out of the
*training* split with a seeded, stratified permutation (the test split is never used for search),
an optional cap on the number of training images, and an optional proxy resolution.

Augmentation recipes (``augment=``): ``"cifar"`` is a random crop of the image padded by
``resolution // 8`` pixels (4 at 32) plus a horizontal flip; ``"imagenet"`` is a random resized
crop (scale 0.08-1, aspect 3/4-4/3) plus a horizontal flip; ``None`` is the deterministic
evaluation pipeline: resize so the shorter side is ``resolution / eval_crop`` and centre-crop
``resolution``. The evaluation crop follows the training pipeline (:func:`default_eval_crop`):
only the ``imagenet`` pipeline, whose random resized crops show the network zoomed-in objects,
is evaluated ImageNet-style with ``eval_crop`` 0.875 (256 -> 224); with the ``cifar`` pipeline
or none the whole image is evaluated at the training resolution (``eval_crop`` 1), exactly the
geometry training saw. An image folder of 32x32 photographs trained with ``cifar`` augmentation
is therefore validated on the unchanged images, not on a 16 % zoom of them.

Nothing here downloads at import time, and torchvision is imported only when needed.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import pickle
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = [
    "AUGMENTATIONS",
    "DATASET_FORMS",
    "DatasetSpec",
    "DatasetUnavailable",
    "InMemoryImages",
    "SyntheticImages",
    "default_eval_crop",
    "default_resolution",
    "load_split",
    "make_loader",
    "num_classes",
    "parse_dataset",
    "proxy_split",
]

#: The accepted forms of a dataset string, as shown in error messages.
DATASET_FORMS = ("cifar10", "cifar100", "imagefolder:<path>", "synthetic", "synthetic:<classes>")
#: Augmentation recipes accepted by ``augment=`` (``None``: no augmentation).
AUGMENTATIONS = ("cifar", "imagenet")
SPLITS = ("train", "test")

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

SYNTHETIC_DEFAULT_CLASSES = 10
#: Images per split of ``synthetic`` when ``synthetic_size`` is not given.
SYNTHETIC_DEFAULT_SIZE = {"train": 10_000, "test": 2_000}
# Train and test are drawn from the same distribution with different seeds.
_SYNTHETIC_SEEDS = {"train": 0, "test": 1}
# A download that stalls this long (no bytes, no connection) counts as failed.
_DOWNLOAD_STALL_S = 60.0

_WAYS_FORWARD = (
    "use --dataset imagefolder:<path> for images already on disk, "
    "or --dataset synthetic, which needs no files"
)


class DatasetUnavailable(RuntimeError):
    """A dataset's files are missing or unreadable and cannot be fetched.

    The message is one sentence that names ``--data-dir`` (where the files are looked for),
    ``imagefolder:<path>`` and ``synthetic`` as ways forward.
    """


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset string (see :func:`parse_dataset`).

    ``kind`` is ``"cifar10"``, ``"cifar100"``, ``"imagefolder"`` or ``"synthetic"``; ``path`` is
    the absolute root of an image folder (``imagefolder`` only); ``classes`` is the class count
    of ``synthetic`` (``None``: 10). ``str(spec)`` gives back a string that parses to ``spec``.
    """

    kind: str
    path: str | None = None
    classes: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("cifar10", "cifar100", "imagefolder", "synthetic"):
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
    """Parse ``cifar10``, ``cifar100``, ``imagefolder:<path>``, ``synthetic[:<classes>]``.

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
    if name in ("cifar10", "cifar100") and not sep:
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
        n = len(_class_folders(_train_root(root)))
        if n < 2:
            raise ValueError(
                f"dataset {spec!r}: {str(_train_root(root))!r} has {n} class folder(s); "
                "an image folder needs at least 2 (<path>/<class>/* or <path>/train/<class>/*)"
            )
        return DatasetSpec("imagefolder", path=str(root))
    raise ValueError(f"dataset {spec!r} is not one of {_forms()}")


def num_classes(spec: str | DatasetSpec) -> int:
    """The number of classes of a dataset (reads only the folder names of an image folder)."""
    spec = parse_dataset(spec)
    if spec.kind == "cifar10":
        return 10
    if spec.kind == "cifar100":
        return 100
    if spec.kind == "synthetic":
        return spec.classes or SYNTHETIC_DEFAULT_CLASSES
    return len(_class_folders(_train_root(Path(spec.path or ""))))


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


# --------------------------------------------------------------------------------------------
# In-memory images (CIFAR, synthetic) with batched transforms


class InMemoryImages(Dataset):
    #: Whether augmentation may mirror images; a dataset whose classes are not mirror-invariant
    #: turns it off.
    hflip = True

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
        augment: ``"cifar"``, ``"imagenet"`` or ``None`` (see the module docstring).
        eval_crop: share of the resized image kept by the evaluation centre crop, in (0, 1].
        seed: seed of the augmentation generator in the main process.

    Shapes:
        item:  (Tensor[3, resolution, resolution] float32, int)
    """

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
        _check_pipeline(resolution, augment, eval_crop)
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
        _check_pipeline(out.resolution, out.augment, out.eval_crop)
        out._gen, out._gen_owner = None, None
        return out

    def reseed(self, seed: int) -> None:
        """Restart this dataset's augmentation stream from ``seed`` (in place).

        A proxy trainer calls it before each candidate so that a candidate's augmentations do
        not depend on how many batches earlier candidates drew. It acts in the main process;
        ``DataLoader`` workers reseed from the loader's generator (see :func:`make_loader`).
        """
        _check_int("seed", seed)
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
            x = _random_resized_crop(x, r, self._generator(), flip=self.hflip)
        else:
            x = _resize_center_crop(x, r, 1.0 if self.augment == "cifar" else self.eval_crop)
            if self.augment == "cifar":
                x = _pad_crop_flip(x, max(1, r // 8), self._generator(), flip=self.hflip)
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


def _check_int(name: str, value: Any, low: int | None = None, *, none_ok: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        allowed = "an integer" if low is None else f"an integer >= {low}"
        allowed = f"None or {allowed}" if none_ok else allowed
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _check_pipeline(resolution: Any, augment: Any, eval_crop: Any) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 4:
        raise ValueError(f"resolution must be an integer >= 4, got {resolution!r}")
    if augment is not None and augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS} or None, got {augment!r}")
    if not isinstance(eval_crop, (int, float)) or not 0.0 < eval_crop <= 1.0:
        raise ValueError(f"eval_crop must be in (0, 1], got {eval_crop!r}")


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _resize_center_crop(x: torch.Tensor, r: int, crop: float) -> torch.Tensor:
    big = max(r, round(r / crop))
    x = _resize(x, big)
    top = (big - r) // 2
    return x[..., top : top + r, top : top + r]


def _pad_crop_flip(
    x: torch.Tensor, pad: int, gen: torch.Generator, *, flip: bool = True
) -> torch.Tensor:
    """Random ``r x r`` crop of the zero-padded (black) image, then a random horizontal flip."""
    b, _, r, _ = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    off = torch.randint(0, 2 * pad + 1, (2, b), generator=gen)
    ar = torch.arange(r)
    rows = (off[0, :, None] + ar)[:, :, None]  # [B, r, 1]
    cols = off[1, :, None] + ar  # [B, r]
    flipped = torch.rand(b, generator=gen) < (0.5 if flip else 0.0)  # same draws either way
    cols = torch.where(flipped[:, None], cols.flip(1), cols)[:, None, :]  # [B, 1, r]
    # Advanced indices separated by a slice put their broadcast dims first: [B, r, r, C].
    out = padded[torch.arange(b)[:, None, None], :, rows, cols]
    return out.permute(0, 3, 1, 2).contiguous()


def _random_resized_crop(
    x: torch.Tensor, r: int, gen: torch.Generator, *, flip: bool = True
) -> torch.Tensor:
    """Random resized crop (area 8-100 %, aspect 3/4-4/3) to ``r x r``, plus a random flip.

    Unlike torchvision, which retries out-of-range boxes and then falls back to a centre crop,
    a box side beyond the image is clipped to the image; the crop is bilinearly resampled.
    """
    b = x.shape[0]
    u = torch.rand(5, b, generator=gen)
    area = 0.08 + 0.92 * u[0]
    aspect = torch.exp(math.log(3 / 4) + math.log(16 / 9) * u[1])
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # box size as a share of the image side
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2 * u[2] - 1) * (1 - w)  # box centre in [-1, 1] coordinates, box inside the image
    cy = (2 * u[3] - 1) * (1 - h)
    sign = torch.where(u[4] < (0.5 if flip else 0.0), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, [b, 3, r, r], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --------------------------------------------------------------------------------------------
# Synthetic data


class SyntheticImages(InMemoryImages):
    """A procedural image-classification task with real, learnable structure.

    Class ``c`` is a sinusoidal grating with its own orientation and spatial frequency (classes
    are laid out on a grid of ``n_o`` orientations x ``n_f`` frequencies, ``n_f =
    round(sqrt(C / 2))``, frequencies 2 to ``min(8, resolution / 4)`` cycles per image) and a
    faint class colour tint. Every image draws its own nuisances: orientation jitter of ±0.35
    of the class spacing, frequency jitter of ±15 %, random phase, a Gaussian window at
    a random place and of random width, random contrast, background brightness and colour, a
    weaker distractor grating of random orientation and frequency, and Gaussian pixel noise of
    standard deviation ``noise``. Images are quantised to ``uint8`` like photographs.

    Labels cycle through the classes (``label = index % num_classes``), so every prefix is
    balanced. Image ``i`` depends only on ``(seed, i, num_classes, resolution, noise)``: images
    are generated in blocks (512 images at 32x32, about 2**19 pixels per block) whose random
    numbers come from a generator seeded by ``(seed, block)``, so a larger dataset extends a
    smaller one. The class layout does not depend on ``seed``: datasets with different seeds
    are independent draws of one task. Below 16x16 the frequencies merge (an 8-pixel image
    cannot show 8 cycles), so classes that differ only in frequency become hard to tell apart.

    Generation is vectorised (5,000 images at 32x32 take about 0.25 s of one CPU core) and
    the images are held in memory: ``num_samples * 3 * resolution**2`` bytes.

    Args:
        num_samples: number of images.
        num_classes: number of classes, >= 2.
        resolution: image size (square), >= 4; images are drawn at this size, not resampled.
        seed: seed of the per-image randomness.
        noise: standard deviation of the pixel noise (pixel values on the 0-1 scale).
        augment, eval_crop, aug_seed: the pipeline, as for :class:`InMemoryImages`.

    Shapes:
        item:  (Tensor[3, resolution, resolution] float32, int)
    """

    # A mirror image turns orientation theta into -theta, i.e. into another class: augmentation
    # never flips synthetic images.
    hflip = False

    def __init__(
        self,
        num_samples: int,
        num_classes: int = SYNTHETIC_DEFAULT_CLASSES,
        resolution: int = 32,
        seed: int = 0,
        noise: float = 0.08,
        *,
        augment: str | None = None,
        eval_crop: float = 1.0,
        aug_seed: int = 0,
    ) -> None:
        _check_int("num_samples", num_samples, 1)
        _check_int("num_classes", num_classes, 2)
        _check_int("resolution", resolution, 4)
        _check_int("seed", seed)
        if not isinstance(noise, (int, float)) or not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        noise = float(noise)
        images, labels = _synthetic_tensors(num_samples, num_classes, resolution, seed, noise)
        super().__init__(
            images,
            labels,
            classes=[f"class_{c}" for c in range(num_classes)],
            mean=CIFAR10_MEAN,
            std=CIFAR10_STD,
            resolution=resolution,
            augment=augment,
            eval_crop=eval_crop,
            seed=aug_seed,
        )
        self.num_classes = num_classes
        self.data_seed = seed
        self.noise = float(noise)


def _class_layout(num_classes: int, resolution: int) -> tuple[torch.Tensor, ...]:
    """Orientation (radians), frequency (cycles/image) and RGB tint of every class."""
    n_f = max(1, round(math.sqrt(num_classes / 2)))
    n_o = math.ceil(num_classes / n_f)
    c = torch.arange(num_classes)
    o, f = c % n_o, c // n_o
    theta = math.pi * o.double() / n_o
    f_lo, f_hi = 2.0, max(2.0, min(8.0, resolution / 4))
    freq = f_lo * (f_hi / f_lo) ** (f.double() / max(1, n_f - 1))
    # Tints go round the colour wheel in an order unrelated to the orientation grid.
    hue = 2 * math.pi * ((c.double() * 0.6180339887) % 1.0)
    tint = torch.stack([torch.cos(hue), torch.cos(hue - 2.094), torch.cos(hue + 2.094)], 1)
    return theta.float(), freq.float(), tint.float(), torch.tensor(math.pi / n_o)


def _synthetic_block(res: int) -> int:
    # About 2**19 pixels per block: few, large tensor ops (fast even on a busy machine) while
    # the block's temporaries stay near 50 MB at any resolution.
    return max(8, min(1024, 2**19 // (res * res)))


@functools.lru_cache(maxsize=4)
def _synthetic_tensors(
    n: int, num_classes: int, res: int, seed: int, noise: float
) -> tuple[torch.Tensor, torch.Tensor]:
    theta_c, freq_c, tint_c, spacing = _class_layout(num_classes, res)
    labels = torch.arange(n) % num_classes
    images = torch.empty(n, 3, res, res, dtype=torch.uint8)
    coord = (torch.arange(res, dtype=torch.float32) + 0.5) / res - 0.5  # image units, centred
    ys, xs = coord.view(1, res, 1), coord.view(1, 1, res)
    block = _synthetic_block(res)
    for b0 in range(0, n, block):
        # The block's generator depends only on (seed, block index): see the class docstring.
        g = torch.Generator().manual_seed((seed * 0x9E3779B97F4A7C15 + b0 // block) % 2**63)
        lab = torch.arange(b0, b0 + block) % num_classes
        u = torch.rand(block, 12, generator=g)
        z = torch.randn(block, 7, generator=g)
        theta = theta_c[lab] + (u[:, 0] - 0.5) * 0.7 * spacing
        freq = freq_c[lab] * torch.exp((u[:, 1] - 0.5) * 0.3)
        phase = 2 * math.pi * u[:, 2]
        cx, cy = (u[:, 3] - 0.5) * 0.5, (u[:, 4] - 0.5) * 0.5
        sigma = 0.12 + 0.23 * u[:, 5]
        contrast = 0.1 + 0.25 * u[:, 6]

        def grating(th: torch.Tensor, fr: torch.Tensor, ph: torch.Tensor) -> torch.Tensor:
            t, f, p = (v.view(-1, 1, 1) for v in (th, fr, ph))
            return torch.cos(2 * math.pi * f * (xs * torch.cos(t) + ys * torch.sin(t)) + p)

        window = torch.exp(
            -((xs - cx.view(-1, 1, 1)) ** 2 + (ys - cy.view(-1, 1, 1)) ** 2)
            / (2 * sigma.view(-1, 1, 1) ** 2)
        )
        signal = contrast.view(-1, 1, 1) * window * grating(theta, freq, phase)
        distractor = (0.6 * contrast * u[:, 7]).view(-1, 1, 1) * grating(
            math.pi * u[:, 8], 1.5 + 6.0 * u[:, 9], 2 * math.pi * u[:, 10]
        )
        luminance = (signal + distractor).unsqueeze(1)  # [B, 1, H, W]
        background = 0.35 + 0.3 * u[:, 11].view(-1, 1) + 0.05 * z[:, :3] + 0.03 * tint_c[lab]
        colour = 1.0 + 0.08 * tint_c[lab] + 0.1 * z[:, 3:6]  # the grating is tinted too
        x = background.view(-1, 3, 1, 1) + luminance * colour.view(-1, 3, 1, 1)
        x = x + noise * torch.randn(block, 3, res, res, generator=g)
        stop = min(n, b0 + block)
        images[b0:stop] = (x[: stop - b0].clamp_(0, 1) * 255).round_().to(torch.uint8)
    return images, labels


# --------------------------------------------------------------------------------------------
# CIFAR


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batches: plain containers and numpy arrays, nothing that runs code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _cifar_class(kind: str) -> Any:
    from torchvision.datasets import CIFAR10, CIFAR100

    return CIFAR10 if kind == "cifar10" else CIFAR100


def _cifar_files(kind: str) -> list[str]:
    cls = _cifar_class(kind)
    return [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


def _ensure_cifar(kind: str, data_dir: Path, download: bool) -> Path:
    """The folder holding ``kind``'s batches, downloading them first when missing and allowed."""
    cls = _cifar_class(kind)
    folder = data_dir / cls.base_folder
    missing = [f for f in _cifar_files(kind) if not (folder / f).is_file()]
    if not missing:
        return folder
    if not download:
        raise DatasetUnavailable(
            f"{kind} is not in --data-dir {str(data_dir)!r} (no {cls.base_folder}/{missing[0]}) "
            f"and downloading is off (--no-download); to go on, drop --no-download, point "
            f"--data-dir at a folder that holds {cls.base_folder}/, or {_WAYS_FORWARD}."
        )
    _download_cifar(kind, data_dir)
    missing = [f for f in _cifar_files(kind) if not (folder / f).is_file()]
    if missing:
        raise DatasetUnavailable(
            f"the {kind} download into --data-dir {str(data_dir)!r} did not produce "
            f"{cls.base_folder}/{missing[0]}; delete {str(folder)!r} and try again, or "
            f"{_WAYS_FORWARD}."
        )
    return folder


def _download_cifar(kind: str, data_dir: Path) -> None:
    """Download and extract ``kind`` with torchvision; on failure remove what this call created."""
    from torchvision.datasets.utils import download_and_extract_archive

    cls = _cifar_class(kind)
    archive, folder = data_dir / cls.filename, data_dir / cls.base_folder
    created = [p for p in (data_dir, archive, folder) if not p.exists()]
    old_timeout = socket.getdefaulttimeout()
    # urllib waits forever by default; a dead network should fail, not hang the search.
    socket.setdefaulttimeout(_DOWNLOAD_STALL_S)
    try:
        download_and_extract_archive(cls.url, str(data_dir), filename=cls.filename, md5=cls.tgz_md5)
    except Exception as exc:  # network, HTTP, checksum or archive errors: all end the same way
        for p in reversed(created):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
        reason = getattr(exc, "reason", None) or exc
        raise DatasetUnavailable(
            f"could not download {kind} from {cls.url} into --data-dir {str(data_dir)!r} "
            f"({reason}); to go on, put the extracted {cls.base_folder}/ folder into a directory "
            f"and pass it as --data-dir, or {_WAYS_FORWARD}."
        ) from exc
    finally:
        socket.setdefaulttimeout(old_timeout)


@functools.lru_cache(maxsize=4)
def _read_cifar(folder: str, kind: str, split: str) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """``(uint8 Tensor[N, 3, 32, 32], int64 Tensor[N], class names)`` of one CIFAR split."""
    import numpy as np

    cls = _cifar_class(kind)
    n_classes = 10 if kind == "cifar10" else 100
    label_key = "labels" if kind == "cifar10" else "fine_labels"
    files = [f for f, _ in (cls.train_list if split == "train" else cls.test_list)]
    current = files[0]
    try:
        datas, labels = [], []
        for current in files:
            entry = _load_pickle(Path(folder) / current)
            data = entry["data"]
            if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
                raise ValueError("'data' is not a 2-d uint8 array")
            if data.shape[1] != 3 * 32 * 32 or len(entry[label_key]) != data.shape[0]:
                raise ValueError(f"'data' of shape {data.shape}, {len(entry[label_key])} labels")
            batch_labels = [int(v) for v in entry[label_key]]
            if batch_labels and not 0 <= min(batch_labels) <= max(batch_labels) < n_classes:
                raise ValueError(f"labels outside 0..{n_classes - 1}")
            datas.append(data)
            labels.extend(batch_labels)
        current = cls.meta["filename"]
        names = tuple(str(s) for s in _load_pickle(Path(folder) / current)[cls.meta["key"]])
        if len(names) != n_classes:
            raise ValueError(f"{len(names)} class names, expected {n_classes}")
    except _UNREADABLE as exc:
        raise DatasetUnavailable(
            f"{kind} file {str(Path(folder) / current)!r} in --data-dir is not a readable CIFAR "
            f"file ({exc}); delete {folder!r} so it is downloaded again, or {_WAYS_FORWARD}."
        ) from exc
    # CIFAR rows are the R, G and B planes of a 32x32 image in turn: reshaping gives CHW.
    images = torch.from_numpy(np.concatenate(datas)).view(-1, 3, 32, 32)
    return images, torch.tensor(labels, dtype=torch.long), names


# What a truncated, garbled or tampered pickle raises.
_UNREADABLE = (
    OSError,
    EOFError,
    AttributeError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
    pickle.UnpicklingError,
)


def _load_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        entry = _CifarUnpickler(f, encoding="latin1").load()
    if not isinstance(entry, dict):
        raise TypeError(f"expected a dict, got {type(entry).__name__}")
    return entry


# --------------------------------------------------------------------------------------------
# Image folders


def _train_root(root: Path) -> Path:
    return root / "train" if (root / "train").is_dir() else root


def _test_root(root: Path) -> Path | None:
    if not (root / "train").is_dir():
        return None
    for name in ("test", "val"):
        if (root / name).is_dir():
            return root / name
    return None


def _class_folders(root: Path) -> list[str]:
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


def _folder_transform(resolution: int, augment: str | None, eval_crop: float) -> Any:
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


def _load_folder(
    spec: DatasetSpec, split: str, resolution: int, augment: str | None, eval_crop: float
) -> Dataset:
    root = Path(spec.path or "")
    if not root.is_dir():
        raise DatasetUnavailable(
            f"image folder {str(root)!r} no longer exists; point imagefolder:<path> at a folder "
            f"of class folders, or use --dataset synthetic, which needs no files."
        )
    train_root = _train_root(root)
    classes = _class_folders(train_root)
    if split == "train":
        split_root = train_root
    else:
        test_root = _test_root(root)
        if test_root is None:
            raise DatasetUnavailable(
                f"image folder {str(root)!r} has no train/ and test/ (or val/) subfolders, so it "
                f"is all training data and has no test split; arrange it as <path>/train/<class>/ "
                f"and <path>/test/<class>/ to get one."
            )
        extra = sorted(set(_class_folders(test_root)) - set(classes))
        if extra:
            raise DatasetUnavailable(
                f"image folder {str(test_root)!r} has class folder {extra[0]!r} that "
                f"{str(train_root)!r} lacks; the test split must use the train split's classes."
            )
        split_root = test_root
    ds = _image_folder_class()(
        str(split_root), classes, _folder_transform(resolution, augment, eval_crop)
    )
    if len(ds) == 0:
        raise DatasetUnavailable(
            f"image folder {str(split_root)!r} holds no images in its class folders; "
            f"use --dataset synthetic to run without data."
        )
    ds.resolution, ds.augment, ds.eval_crop = resolution, augment, eval_crop
    return ds


# --------------------------------------------------------------------------------------------
# Public entry points


def load_split(
    spec: str | DatasetSpec,
    split: str = "train",
    *,
    data_dir: str | os.PathLike = "data",
    resolution: int | None = None,
    augment: str | None = None,
    eval_crop: float | None = None,
    download: bool = True,
    synthetic_size: int | None = None,
    seed: int = 0,
) -> Dataset:
    """One split of a dataset, yielding ``(Tensor[3, r, r] float32 normalised, int label)``.

    Args:
        spec: dataset string or :class:`DatasetSpec`.
        split: ``"train"`` or ``"test"``.
        data_dir: where CIFAR is looked for and downloaded to (``--data-dir``).
        resolution: output size ``r``; ``None``: :func:`default_resolution`.
        augment: ``"cifar"``, ``"imagenet"`` or ``None`` (evaluation pipeline).
        eval_crop: share kept by the evaluation centre crop; ``None``: the crop that matches
            ``augment`` (:func:`default_eval_crop`: 0.875 for an image folder with the
            ``imagenet`` pipeline, else 1). An evaluation split (``augment=None``) of a model
            trained with ``imagenet`` augmentation must pass ``eval_crop`` explicitly.
        download: fetch CIFAR into ``data_dir`` when missing (``--no-download`` sets False).
        synthetic_size: images in a ``synthetic`` split; ``None``: 10,000 train / 2,000 test.
        seed: seed of the batched augmentation of in-memory data (CIFAR, synthetic); image
            folders augment with torch's RNG, which ``DataLoader`` seeds per worker.

    Raises:
        ValueError: a bad argument (named in the message).
        DatasetUnavailable: the data are missing and cannot be fetched.
    """
    spec = parse_dataset(spec)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    r = default_resolution(spec) if resolution is None else resolution
    _check_pipeline(r, augment, 1.0 if eval_crop is None else eval_crop)
    crop = default_eval_crop(spec, augment) if eval_crop is None else eval_crop
    if spec.kind == "synthetic":
        if synthetic_size is not None:
            _check_int("synthetic_size", synthetic_size, 1, none_ok=True)
        n = SYNTHETIC_DEFAULT_SIZE[split] if synthetic_size is None else synthetic_size
        return SyntheticImages(
            n,
            num_classes(spec),
            r,
            seed=_SYNTHETIC_SEEDS[split],
            augment=augment,
            eval_crop=crop,
            aug_seed=seed,
        )
    if spec.kind == "imagefolder":
        return _load_folder(spec, split, r, augment, crop)
    folder = _ensure_cifar(spec.kind, Path(data_dir).expanduser(), download)
    images, labels, names = _read_cifar(str(folder.absolute()), spec.kind, split)
    cifar10 = spec.kind == "cifar10"
    return InMemoryImages(
        images,
        labels,
        classes=names,
        mean=CIFAR10_MEAN if cifar10 else CIFAR100_MEAN,
        std=CIFAR10_STD if cifar10 else CIFAR100_STD,
        resolution=r,
        augment=augment,
        eval_crop=crop,
        seed=seed,
    )


def proxy_split(
    spec: str | DatasetSpec,
    *,
    data_dir: str | os.PathLike = "data",
    val_fraction: float = 0.1,
    subset: int | None = None,
    val_size: int | None = None,
    resolution: int | None = None,
    augment: str | None = None,
    seed: int = 0,
    download: bool = True,
    synthetic_size: int | None = None,
) -> tuple[Dataset, Dataset]:
    """Proxy ``(train, val)`` for the search, both carved out of the dataset's TRAIN split.

    The validation part is ``round(val_fraction * N)`` images of the train split, chosen by a
    permutation seeded with ``seed`` and stratified by class (each class gives its share, by
    largest remainder). It depends only on ``(seed, val_fraction, N)``, never on ``subset``, so
    proxy train and validation images never overlap whatever the subset. ``subset`` caps the
    training part (a stratified, seeded choice among the remaining images; capped at what is
    there); ``val_size`` caps the validation part and defaults, when ``subset`` is given, to the
    same proportion, ``round(subset * val_fraction / (1 - val_fraction))``. Smaller subsets of
    the same seed are nested in larger ones.

    The training part uses ``augment``; the validation part the evaluation pipeline. Both are
    ``torch.utils.data.Subset`` objects with sorted indices over the train split at
    ``resolution`` (``None``: the dataset's native resolution). The test split is never read.

    Raises:
        ValueError: a bad argument (named in the message).
        DatasetUnavailable: the data are missing and cannot be fetched.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if subset is not None:
        _check_int("subset", subset, 1, none_ok=True)
    if val_size is not None:
        _check_int("val_size", val_size, 1, none_ok=True)
    _check_int("seed", seed)
    base = load_split(
        spec,
        "train",
        data_dir=data_dir,
        resolution=resolution,
        augment=augment,
        download=download,
        synthetic_size=synthetic_size,
        seed=seed,
    )
    labels = _labels_of(base)
    n = labels.numel()
    n_val = round(val_fraction * n)
    if n_val < 1 or n_val >= n:
        raise ValueError(
            f"val_fraction={val_fraction} of {n} training images leaves {n_val} for validation "
            f"and {n - n_val} for training; both need at least 1"
        )
    gen = torch.Generator().manual_seed(seed % 2**63)
    order = torch.randperm(n, generator=gen)
    val_idx = _stratified_take(labels, order, n_val)
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[val_idx] = True
    rest = order[~is_val[order]]  # the remaining images, still in seeded random order
    train_idx = rest
    if subset is not None and subset < rest.numel():
        train_idx = _stratified_take(labels, rest, subset)
    if val_size is None and subset is not None:
        val_size = max(1, round(subset * val_fraction / (1 - val_fraction)))
    if val_size is not None and val_size < val_idx.numel():
        val_idx = _stratified_take(labels, val_idx, val_size)
    val_view = _eval_view(base)
    return (
        Subset(base, train_idx.sort().values.tolist()),
        Subset(val_view, val_idx.sort().values.tolist()),
    )


def _labels_of(ds: Dataset) -> torch.Tensor:
    if isinstance(ds, InMemoryImages):
        return ds.labels
    return torch.as_tensor(ds.targets, dtype=torch.long)  # type: ignore[attr-defined]


def _eval_view(ds: Dataset) -> Dataset:
    """``ds`` over the same images with the evaluation pipeline instead of augmentation."""
    from torchvision.datasets.vision import StandardTransform

    if isinstance(ds, InMemoryImages):
        return ds.view(augment=None)
    out = copy.copy(ds)
    out.augment = None  # type: ignore[attr-defined]
    out.transform = _folder_transform(ds.resolution, None, ds.eval_crop)  # type: ignore[attr-defined]
    out.transforms = StandardTransform(out.transform)  # type: ignore[attr-defined]
    return out


def _stratified_take(labels: torch.Tensor, order: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` indices of ``order`` with each class's share (largest remainder), in ``order``'s order.

    Within a class the first images in ``order`` are taken, so the choice is as random as
    ``order`` and a smaller ``k`` takes a subset of what a larger one takes.
    """
    lab = labels[order]
    n_classes = int(lab.max()) + 1 if lab.numel() else 0
    counts = torch.bincount(lab, minlength=n_classes)
    quota = counts.double() * k / max(1, order.numel())
    take = quota.floor().long()
    short = k - int(take.sum())
    if short > 0:
        # Largest remainders first; ties go to the lower class index (stable sort).
        frac = torch.where(take < counts, quota - take, torch.full_like(quota, -1.0))
        take[torch.sort(-frac, stable=True).indices[:short]] += 1
    # Rank of each image within its class, in `order`'s order.
    by_class = torch.sort(lab, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(lab)
    rank[by_class.indices] = torch.arange(lab.numel()) - starts[by_class.values]
    return order[rank < take[lab]]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _is_in_memory(ds: Dataset) -> bool:
    while isinstance(ds, Subset):
        ds = ds.dataset
    return bool(getattr(ds, "in_memory", False))


def make_loader(
    ds: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    device: str | torch.device = "cpu",
    num_workers: int | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over ``ds`` with a seeded order and sensible worker settings.

    ``seed`` seeds the loader's own generator (shuffling and the workers' seeds), never the
    global RNG. ``num_workers=None`` picks 0 for in-memory data (CIFAR, synthetic: their batched
    transforms cost less than feeding worker processes) and ``min(4, cpus - 1)`` otherwise.
    Memory is pinned only when ``device`` is CUDA; workers persist across epochs.
    """
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed)
    if num_workers is None:
        num_workers = 0 if _is_in_memory(ds) else min(4, max(0, _cpu_count() - 1))
    else:
        _check_int("num_workers", num_workers, 0, none_ok=True)
    generator = torch.Generator().manual_seed(seed % 2**63)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=num_workers > 0,
        generator=generator,
    )
