"""``cifar10-sample``: 2,500 genuine CIFAR-10 images shipped inside the package.

``cifar10_sample.npz.xz`` next to this module holds 2,000 training images (200 per class) and
500 test images (50 per class) taken from cifar10-mini; ``cifar10_sample.md`` beside it notes
their origin and licence, and ``experiments/build_cifar10_sample.py`` rebuilds the file. The
sample needs no download, so the search falls back to it when CIFAR-10 cannot be had. It is
read once per process (about a second: xz decompression) and kept as ``uint8`` tensors.

Imports :mod:`evaluators.data.base` only (numpy when called); must not import the other
``evaluators.data`` modules.
"""

from __future__ import annotations

import functools
import io
import lzma
from pathlib import Path

import torch

from evaluators.data.base import DatasetUnavailable

__all__ = ["SAMPLE_FILE", "SAMPLE_SIZE", "read_sample"]

SAMPLE_FILE = Path(__file__).with_name("cifar10_sample.npz.xz")
#: Images per split.
SAMPLE_SIZE = {"train": 2000, "test": 500}


@functools.lru_cache(maxsize=1)
def _arrays() -> dict:
    import numpy as np

    try:
        blob = io.BytesIO(lzma.decompress(SAMPLE_FILE.read_bytes()))
        with np.load(blob, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        for split, n in SAMPLE_SIZE.items():
            if arrays[f"{split}_images"].shape != (n, 32, 32, 3):
                raise ValueError(f"{split}_images of shape {arrays[f'{split}_images'].shape}")
            if arrays[f"{split}_labels"].shape != (n,) or arrays[f"{split}_labels"].max() > 9:
                raise ValueError(f"bad {split}_labels")
    except (OSError, EOFError, KeyError, ValueError, lzma.LZMAError) as exc:
        raise DatasetUnavailable(
            f"the bundled CIFAR-10 sample {str(SAMPLE_FILE)!r} is missing or damaged ({exc}); "
            "reinstall convnas, or use --dataset synthetic, which needs no files."
        ) from exc
    return arrays


def read_sample(split: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """``(uint8 Tensor[N, 3, 32, 32], int64 Tensor[N], class names)`` of one split."""
    a = _arrays()
    images = torch.from_numpy(a[f"{split}_images"].transpose(0, 3, 1, 2).copy())
    labels = torch.from_numpy(a[f"{split}_labels"].astype("int64"))
    return images, labels, tuple(str(c) for c in a["classes"])
