"""Small image folders are decoded once per process and reused (issue 9): same tensors, fresh
after a file changes.

Real PNG folders on disk; the "from disk" reference is the same folder read with the cache
turned off (``SMALL_FOLDER_BYTES = 0``), i.e. decoded at every fetch as before.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluators.data import imagefolder, load_split, make_loader


def _folder(root: Path, per_class: int = 5, size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", 2)):
        for c in ("cat", "dog", "emu"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")
    return root


@pytest.fixture
def folder(tmp_path):
    imagefolder.clear_decoded()
    yield _folder(tmp_path / "img")
    imagefolder.clear_decoded()


def _items(ds, seed: int = 0) -> list[tuple[torch.Tensor, int]]:
    torch.manual_seed(seed)  # the torchvision augmentation draws from torch's RNG
    return [ds[i] for i in range(len(ds))]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) and i == j for (x, i), (y, j) in zip(a, b))


@pytest.mark.parametrize("augment", [None, "cifar", "imagenet"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_the_cache_gives_exactly_the_tensors_decoding_from_disk_gives(
    folder, monkeypatch, augment, split
):
    spec = f"imagefolder:{folder}"
    cached = load_split(spec, split, resolution=16, augment=augment)
    assert cached.decoded_in_memory
    monkeypatch.setattr(imagefolder, "SMALL_FOLDER_BYTES", 0)
    disk = load_split(spec, split, resolution=16, augment=augment)
    assert not disk.decoded_in_memory
    assert _same(_items(cached), _items(disk))
    assert _same(_items(cached), _items(cached))  # a fetch does not change the kept image


def test_a_folder_is_decoded_once_per_process_and_shared_by_later_loads(folder):
    first = load_split(f"imagefolder:{folder}", "train", resolution=16, augment="cifar")
    again = load_split(f"imagefolder:{folder}", "train", resolution=32)  # any pipeline
    kept = first.loader.args[0]
    assert again.loader.args[0] is kept  # the same decoded images, not decoded again
    assert sorted(kept) == sorted(p for p, _ in first.samples)
    assert len(kept) == 15


def test_a_changed_file_is_decoded_again(folder, monkeypatch):
    spec = f"imagefolder:{folder}"
    before = _items(load_split(spec, "train", resolution=12))
    path = folder / "train" / "dog" / "2.png"
    arr = np.full((12, 12, 3), 7, dtype=np.uint8)  # same size, other pixels
    Image.fromarray(arr).save(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    after_ds = load_split(spec, "train", resolution=12)
    after = _items(after_ds)
    index = [i for i, (p, _) in enumerate(after_ds.samples) if p == str(path)][0]
    assert not torch.equal(before[index][0], after[index][0])
    monkeypatch.setattr(imagefolder, "SMALL_FOLDER_BYTES", 0)
    assert _same(after, _items(load_split(spec, "train", resolution=12)))  # what disk says
    others = [i for i in range(len(after)) if i != index]
    assert all(torch.equal(before[i][0], after[i][0]) for i in others)


def test_a_removed_file_invalidates_the_kept_images(folder):
    spec = f"imagefolder:{folder}"
    kept = load_split(spec, "train", resolution=12).loader.args[0]
    (folder / "train" / "cat" / "4.png").unlink()
    imagefolder._scan_folder.cache_clear()  # the file list is cached too (scans are slow)
    ds = load_split(spec, "train", resolution=12)
    assert ds.loader.args[0] is not kept and len(ds.loader.args[0]) == 14


def test_workers_forked_by_the_loader_read_the_kept_images(folder):
    ds = load_split(f"imagefolder:{folder}", "train", resolution=16)
    batches = []
    for workers in (0, 1):
        loader = make_loader(ds, batch_size=4, shuffle=False, num_workers=workers)
        batches.append([(x, y) for x, y in loader])
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(*batches))


def test_a_folder_over_the_limit_is_read_from_disk(folder, monkeypatch):
    total = sum(p.stat().st_size for p in (folder / "train").rglob("*.png"))
    monkeypatch.setattr(imagefolder, "SMALL_FOLDER_BYTES", total - 1)
    assert not load_split(f"imagefolder:{folder}", "train", resolution=12).decoded_in_memory
    monkeypatch.setattr(imagefolder, "SMALL_FOLDER_BYTES", total)
    assert load_split(f"imagefolder:{folder}", "train", resolution=12).decoded_in_memory
