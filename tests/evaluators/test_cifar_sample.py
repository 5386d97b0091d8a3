"""The bundled CIFAR-10 sample (``--dataset cifar10-sample``): the shipped file and its loader."""

import io
import lzma
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluators.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DATASET_FORMS,
    DatasetSpec,
    InMemoryImages,
    default_resolution,
    load_split,
    num_classes,
    parse_dataset,
    proxy_split,
)
from evaluators.data.cifar_sample import SAMPLE_FILE

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# cifar10-mini sits in the shared folder next to the repository (or at its usual place here).
MINI = next(
    (
        p
        for p in (ROOT.parent / "shared/data/cifar10-mini", Path("/work/shared/data/cifar10-mini"))
        if p.is_dir()
    ),
    None,
)
needs_mini = pytest.mark.skipif(MINI is None, reason="needs ../shared/data/cifar10-mini")


@pytest.fixture(scope="module")
def shipped():
    """The arrays of the shipped file, read directly (not through the loader under test)."""
    raw = lzma.decompress(SAMPLE_FILE.read_bytes())
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_the_shipped_file_is_small_and_noted():
    assert SAMPLE_FILE.parent == ROOT / "evaluators" / "data"
    assert SAMPLE_FILE.stat().st_size <= 6_000_000
    note = (SAMPLE_FILE.parent / "cifar10_sample.md").read_text()
    assert "Krizhevsky" in note and "Licence" in note
    assert f"{SAMPLE_FILE.stat().st_size:,} bytes" in note  # the note states the real size


@pytest.mark.parametrize(("split", "per_class"), [("train", 200), ("test", 50)])
def test_the_shipped_sample_is_balanced_and_labelled_by_its_source_folder(
    shipped, split, per_class
):
    images, labels = shipped[f"{split}_images"], shipped[f"{split}_labels"]
    files = [str(f) for f in shipped[f"{split}_files"]]
    assert list(shipped["classes"]) == CLASSES
    assert images.dtype == np.uint8 and images.shape == (10 * per_class, 32, 32, 3)
    assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10
    assert len(set(files)) == len(files)
    for f, y in zip(files, labels):
        top, cls, name = f.split("/")
        assert (top, cls) == (split, CLASSES[y]) and name.endswith(".png")
    # Deterministic choice: within a class, file-name order (the order of CIFAR's batches).
    for c in range(10):
        names = [f for f, y in zip(files, labels) if y == c]
        assert names == sorted(names)
    assert len({im.tobytes() for im in images}) == len(images)  # no image twice


def test_load_split_gives_the_shipped_pixels_normalised_with_cifar10_statistics(shipped):
    ds = load_split("cifar10-sample", "test")
    assert isinstance(ds, InMemoryImages) and len(ds) == 500 and ds.classes == CLASSES
    assert (ds.mean, ds.std) == (CIFAR10_MEAN, CIFAR10_STD)
    x, y = ds[123]
    raw = torch.from_numpy(shipped["test_images"][123].transpose(2, 0, 1).copy()).float() / 255
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    want = (raw - mean) / std
    assert torch.allclose(x, want, atol=1e-6)
    assert y == int(shipped["test_labels"][123])
    train = load_split("cifar10-sample", "train", augment="cifar", data_dir="/nonexistent")
    assert len(train) == 2000 and torch.bincount(train.labels).tolist() == [200] * 10


def test_the_sample_parses_as_a_dataset_of_ten_classes_at_32():
    assert "cifar10-sample" in DATASET_FORMS
    spec = parse_dataset(" CIFAR10-Sample ")
    assert spec == DatasetSpec("cifar10-sample") and str(spec) == "cifar10-sample"
    assert num_classes(spec) == 10 and default_resolution(spec) == 32
    with pytest.raises(ValueError, match=r"'cifar10-sample:3' is not one of .*'cifar10-sample'"):
        parse_dataset("cifar10-sample:3")


def test_the_proxy_split_of_the_sample_is_stratified_and_disjoint():
    train, val = proxy_split("cifar10-sample", subset=1000, seed=3)
    assert (len(train), len(val)) == (1000, 200)  # val: 10 % of 2,000, whatever the subset
    assert not set(train.indices) & set(val.indices)
    labels = train.dataset.labels
    assert torch.bincount(labels[train.indices], minlength=10).tolist() == [100] * 10
    assert torch.bincount(labels[val.indices], minlength=10).tolist() == [20] * 10


@needs_mini
@pytest.mark.parametrize("split", ["train", "test"])
def test_the_shipped_pixels_are_cifar10_minis_and_the_first_of_each_class(shipped, split):
    files = [str(f) for f in shipped[f"{split}_files"]]
    per_class = len(files) // 10
    for c, name in enumerate(CLASSES):
        first = sorted(p.name for p in (MINI / split / name).glob("*.png"))[:per_class]
        assert files[c * per_class : (c + 1) * per_class] == [f"{split}/{name}/{f}" for f in first]
    for i in range(0, len(files), 37):  # every 37th image, all classes
        with Image.open(MINI / files[i]) as im:
            assert np.array_equal(np.asarray(im.convert("RGB")), shipped[f"{split}_images"][i])


@pytest.mark.slow
def test_a_built_wheel_ships_the_sample(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "runs", "build", "*.egg-info", "__pycache__"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "out"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "out").glob("convnas-*.whl")
    with zipfile.ZipFile(wheel) as z:
        info = {i.filename: i.file_size for i in z.infolist()}
    assert info["evaluators/data/cifar10_sample.npz.xz"] == SAMPLE_FILE.stat().st_size
    assert "evaluators/data/cifar10_sample.md" in info
