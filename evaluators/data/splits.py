"""One split of a data set (:func:`load_split`) and the search's proxy split (:func:`proxy_split`).

Proxy data for the search come from :func:`proxy_split`: a validation split carved out of the
*training* split with a seeded, stratified permutation (the test split is never used for
search), an optional cap on the number of training images, and an optional proxy resolution.

Imports the other ``evaluators.data`` modules (it is the top of the package, below only its
``__init__``); must not import ``evaluators`` outside the package, nor ``nas``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from evaluators.data.base import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    SPLITS,
    SYNTHETIC_DEFAULT_SIZE,
    check_int,
    check_pipeline,
)
from evaluators.data.cifar import ensure_cifar, read_cifar
from evaluators.data.cifar_sample import read_sample
from evaluators.data.imagefolder import folder_transform, load_folder
from evaluators.data.in_memory import InMemoryImages
from evaluators.data.spec import (
    DatasetSpec,
    default_eval_crop,
    default_resolution,
    num_classes,
    parse_dataset,
)
from evaluators.data.synthetic import SyntheticImages

__all__ = ["load_split", "proxy_split"]

# Train and test are drawn from the same distribution with different seeds.
_SYNTHETIC_SEEDS = {"train": 0, "test": 1}


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
        data_dir: where CIFAR is looked for and downloaded to (``--data-dir``); not used by
            ``cifar10-sample``, which is read from the package.
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
    check_pipeline(r, augment, 1.0 if eval_crop is None else eval_crop)
    crop = default_eval_crop(spec, augment) if eval_crop is None else eval_crop
    if spec.kind == "synthetic":
        if synthetic_size is not None:
            check_int("synthetic_size", synthetic_size, 1, none_ok=True)
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
        return load_folder(Path(spec.path or ""), split, r, augment, crop)
    if spec.kind == "cifar10-sample":
        images, labels, names = read_sample(split)
    else:
        folder = ensure_cifar(spec.kind, Path(data_dir).expanduser(), download)
        images, labels, names = read_cifar(str(folder.absolute()), spec.kind, split)
    cifar10 = spec.kind in ("cifar10", "cifar10-sample")
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
    there); ``val_size`` caps the validation part (a stratified choice within it; default: the
    whole part). Neither depends on the other: a small training subset is still validated on
    the same, large validation part, so every candidate of a search is ranked on the same
    images with a binomial error that does not grow as the subset shrinks. Smaller subsets (and
    smaller ``val_size``) of the same seed are nested in larger ones.

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
        check_int("subset", subset, 1, none_ok=True)
    if val_size is not None:
        check_int("val_size", val_size, 1, none_ok=True)
    check_int("seed", seed)
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
    out.transform = folder_transform(ds.resolution, None, ds.eval_crop)  # type: ignore[attr-defined]
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
