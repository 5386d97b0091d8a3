"""Build the bundled CIFAR-10 sample (``--dataset cifar10-sample``) from cifar10-mini's PNGs.

The sample is 2,500 genuine CIFAR-10 images, balanced: the first 200 images of each class of
cifar10-mini's ``train/`` (2,000) and the first 50 of each class of its ``test/`` (500), in
file-name order (the order of the original batches). They are stored as one ``.npz``
(``uint8`` images ``[N, 32, 32, 3]``, ``uint8`` labels, the class names and each image's
source path) compressed with xz (a byte-delta filter of 3, one per RGB channel, then LZMA2),
which is the smallest of the simple encodings tried and decodes in about a second.

    python experiments/build_cifar10_sample.py [--mini /work/shared/data/cifar10-mini]

writes ``evaluators/data/cifar10_sample.npz.xz``; the same input gives the same bytes.
Nothing in the packages imports this script; it imports only numpy and Pillow.
"""

from __future__ import annotations

import argparse
import io
import lzma
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "evaluators" / "data" / "cifar10_sample.npz.xz"
PER_CLASS = {"train": 200, "test": 50}
FILTERS = [
    {"id": lzma.FILTER_DELTA, "dist": 3},
    {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME},
]


def select(mini: Path) -> dict[str, list[tuple[Path, int]]]:
    """Per split, ``(png path, class index)`` of the chosen images, class by class."""
    classes = sorted(p.name for p in (mini / "train").iterdir() if p.is_dir())
    chosen: dict[str, list[tuple[Path, int]]] = {}
    for split, k in PER_CLASS.items():
        chosen[split] = []
        for label, name in enumerate(classes):
            files = sorted((mini / split / name).glob("*.png"))
            if len(files) < k:
                raise SystemExit(f"{mini / split / name} has {len(files)} images, needs {k}")
            chosen[split] += [(f, label) for f in files[:k]]
    return chosen


def build(mini: Path) -> bytes:
    classes = sorted(p.name for p in (mini / "train").iterdir() if p.is_dir())
    arrays: dict[str, np.ndarray] = {"classes": np.array(classes)}
    for split, items in select(mini).items():
        images = []
        for path, _ in items:
            with Image.open(path) as im:
                if im.size != (32, 32) or im.mode != "RGB":
                    raise SystemExit(f"{path}: {im.mode} {im.size}, expected RGB 32x32")
                images.append(np.asarray(im, dtype=np.uint8))
        arrays[f"{split}_images"] = np.stack(images)
        arrays[f"{split}_labels"] = np.array([label for _, label in items], dtype=np.uint8)
        arrays[f"{split}_files"] = np.array([str(p.relative_to(mini)) for p, _ in items])
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # uncompressed: xz below does better than zip's deflate
    return lzma.compress(buf.getvalue(), format=lzma.FORMAT_XZ, filters=FILTERS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mini", type=Path, default=Path("/work/shared/data/cifar10-mini"))
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    blob = build(args.mini)
    args.out.write_bytes(blob)
    print(f"wrote {args.out} ({len(blob):,} bytes)")


if __name__ == "__main__":
    main()
