"""Datasets for search and retraining: cifar10, cifar10-sample, cifar100, imagefolder, synthetic.

Every dataset yields ``(image, label)`` with ``image`` a ``Tensor[3, H, W]`` float32, normalised
by per-channel mean/std, and ``label`` an ``int``. The statistics are CIFAR-10's for ``cifar10``,
``cifar10-sample`` and ``synthetic`` (the procedural images have a similar mid-grey mean and
spread), CIFAR-100's for ``cifar100`` and ImageNet's for ``imagefolder`` (the usual choice for
photographs of any size).

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
* ``cifar10-sample``: 2,500 genuine CIFAR-10 images shipped inside the package (2,000 train,
  200 per class; 500 test, 50 per class; origin and licence in ``cifar10_sample.md``), read
  into memory like CIFAR; it needs no download and no ``data_dir``.
* ``imagefolder:<path>``: ImageNet-style folders read by ``torchvision.datasets.ImageFolder``.
  ``<path>/train/<class>/*`` is the train split and ``<path>/test/<class>/*`` (or ``val/``) the
  test split; a folder without ``train/`` is itself the train split and has no test split.
  The test split uses the train split's class indices. :func:`check_folder` checks such a
  folder before use (empty or too small class folders, files that are not images).
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

The package, one concept per module (each imports only the ones above it in this list):

* :mod:`~evaluators.data.base`: the error, the accepted names, the statistics, argument checks
* :mod:`~evaluators.data.augment`: batched resize, crops and flips on ``Tensor[B, 3, H, W]``
* :mod:`~evaluators.data.in_memory`: :class:`InMemoryImages`, batch-transformed ``uint8`` images
* :mod:`~evaluators.data.synthetic`: :class:`SyntheticImages`, the procedural gratings
* :mod:`~evaluators.data.cifar`: CIFAR download and the safe batch reader
* :mod:`~evaluators.data.cifar_sample`: the bundled 2,500-image CIFAR-10 sample
* :mod:`~evaluators.data.imagefolder`: class folders read by torchvision's ``ImageFolder``
* :mod:`~evaluators.data.spec`: dataset strings (:func:`parse_dataset`) and their properties
* :mod:`~evaluators.data.splits`: :func:`load_split` and the search's :func:`proxy_split`
* :mod:`~evaluators.data.loaders`: :func:`make_loader`

This ``__init__`` only re-exports the public names; it must not define anything. Nothing in
the package imports ``nas`` or ``evaluators`` modules outside it.
"""

from evaluators.data.base import (
    AUGMENTATIONS,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DATASET_FORMS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SPLITS,
    SYNTHETIC_DEFAULT_CLASSES,
    SYNTHETIC_DEFAULT_SIZE,
    DatasetUnavailable,
)
from evaluators.data.cifar import cifar_unavailable
from evaluators.data.imagefolder import check_folder
from evaluators.data.in_memory import InMemoryImages
from evaluators.data.loaders import make_loader
from evaluators.data.spec import (
    DatasetSpec,
    default_eval_crop,
    default_resolution,
    num_classes,
    parse_dataset,
)
from evaluators.data.splits import load_split, proxy_split
from evaluators.data.synthetic import SyntheticImages

__all__ = [
    "AUGMENTATIONS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DATASET_FORMS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLITS",
    "SYNTHETIC_DEFAULT_CLASSES",
    "SYNTHETIC_DEFAULT_SIZE",
    "DatasetSpec",
    "DatasetUnavailable",
    "InMemoryImages",
    "SyntheticImages",
    "check_folder",
    "cifar_unavailable",
    "default_eval_crop",
    "default_resolution",
    "load_split",
    "make_loader",
    "num_classes",
    "parse_dataset",
    "proxy_split",
]
