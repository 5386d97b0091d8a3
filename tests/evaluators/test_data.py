import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from evaluators.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetSpec,
    DatasetUnavailable,
    InMemoryImages,
    SyntheticImages,
    default_eval_crop,
    default_resolution,
    load_split,
    make_loader,
    num_classes,
    parse_dataset,
    proxy_split,
)

MINI = Path("/work/shared/data/cifar10-mini")
needs_mini = pytest.mark.skipif(not MINI.is_dir(), reason="needs /work/shared/data/cifar10-mini")


@pytest.fixture
def one_thread():
    # Timing-sensitive tests run torch on one thread: on a busy 2-core machine two OpenMP
    # threads per op can be ten times slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _normalise(uint8_chw, mean, std):
    if isinstance(uint8_chw, np.ndarray):
        uint8_chw = torch.from_numpy(uint8_chw.copy())
    x = uint8_chw.float() / 255
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


# ---------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("cifar10", DatasetSpec("cifar10")),
        ("CIFAR100", DatasetSpec("cifar100")),
        (" synthetic ", DatasetSpec("synthetic")),
        ("synthetic:7", DatasetSpec("synthetic", classes=7)),
        ("synthetic:10", DatasetSpec("synthetic")),
    ],
)
def test_parse_dataset_accepts_the_documented_forms(text, spec):
    assert parse_dataset(text) == spec
    assert parse_dataset(str(spec)) == spec


@pytest.mark.parametrize(
    "text", ["cifar", "imagenet", "", "cifar10:x", "synthetic:1", "synthetic:abc", "imagefolder:"]
)
def test_parse_dataset_rejects_other_values_naming_the_allowed_forms(text):
    with pytest.raises(ValueError, match=r"(?s)dataset '.*'.*(cifar10|synthetic|imagefolder)"):
        parse_dataset(text)
    if text in ("cifar", "imagenet", ""):
        with pytest.raises(ValueError, match=r"cifar100.*imagefolder:<path>.*synthetic"):
            parse_dataset(text)


def test_parse_imagefolder_checks_the_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        parse_dataset(f"imagefolder:{tmp_path / 'nope'}")
    with pytest.raises(ValueError, match="has 0 class folder"):
        parse_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="has 1 class folder.*at least 2"):
        parse_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "other").mkdir()
    spec = parse_dataset(f"imagefolder:{tmp_path}")
    assert spec == DatasetSpec("imagefolder", path=str(tmp_path))
    assert parse_dataset(str(spec)) == spec
    assert num_classes(spec) == 2 and default_resolution(spec) == 224


def test_parse_imagefolder_path_is_made_absolute(tmp_path, monkeypatch):
    for c in ("a", "b"):
        (tmp_path / "train" / c).mkdir(parents=True)
    monkeypatch.chdir(tmp_path.parent)
    spec = parse_dataset(f"imagefolder:{tmp_path.name}")
    assert spec.path == str(tmp_path)


def test_num_classes_and_default_resolution():
    assert [num_classes(s) for s in ("cifar10", "cifar100", "synthetic", "synthetic:7")] == [
        10,
        100,
        10,
        7,
    ]
    assert [default_resolution(s) for s in ("cifar10", "cifar100", "synthetic")] == [32, 32, 32]


# -------------------------------------------------------------------------------- synthetic


def test_synthetic_items_shapes_labels_and_normalisation():
    ds = SyntheticImages(300, num_classes=7, resolution=20, seed=3)
    assert len(ds) == 300 and ds.classes == [f"class_{c}" for c in range(7)]
    assert ds.labels.tolist() == [i % 7 for i in range(300)]
    x, y = ds[45]
    assert x.shape == (3, 20, 20) and x.dtype == torch.float32 and y == 45 % 7
    torch.testing.assert_close(x, _normalise(ds.images[45], CIFAR10_MEAN, CIFAR10_STD))


def test_synthetic_is_deterministic_per_seed_and_index():
    # At 64x64 images are drawn in blocks of 128: 200 and 300 images end in different blocks.
    small, big = SyntheticImages(200, resolution=64, seed=5), SyntheticImages(300, 10, 64, seed=5)
    assert torch.equal(small.images, big.images[:200])
    other = SyntheticImages(200, resolution=64, seed=6)
    assert not torch.equal(small.images[:10], other.images[:10])
    assert torch.equal(small.labels, other.labels)


def test_synthetic_train_and_test_splits_are_different_draws():
    train = load_split("synthetic", "train", synthetic_size=2000, resolution=8)
    test = load_split("synthetic", "test", synthetic_size=2000, resolution=8)
    assert torch.equal(train.labels, test.labels)
    assert not torch.equal(train.images, test.images)
    # Same distribution: per-channel pixel means agree closely.
    torch.testing.assert_close(
        train.images.float().mean((0, 2, 3)), test.images.float().mean((0, 2, 3)), atol=3.0, rtol=0
    )


def test_synthetic_default_sizes_and_native_resolution():
    train = load_split("synthetic:4", "train", resolution=6)
    test = load_split("synthetic:4", "test", resolution=6)
    assert (len(train), len(test)) == (10_000, 2_000)
    assert train.images.shape[1:] == (3, 6, 6)  # drawn at 6x6, not resampled
    assert int(train.labels.max()) == 3


def test_synthetic_generation_is_fast(one_thread):
    start = time.process_time()
    SyntheticImages(5000, seed=12345)
    # CPU time rather than wall time: robust on a busy machine (measured: 0.3 s).
    assert time.process_time() - start < 2.0


def test_synthetic_colour_alone_does_not_solve_the_task():
    train, test = SyntheticImages(2000, resolution=16), SyntheticImages(1000, 10, 16, seed=1)
    feats = [d.images.float().mean((2, 3)) for d in (train, test)]
    centroids = torch.stack([feats[0][train.labels == k].mean(0) for k in range(10)])
    acc = (torch.cdist(feats[1], centroids).argmin(1) == test.labels).float().mean().item()
    assert acc < 0.3  # the tint is a faint hint; orientation and frequency carry the class


@pytest.mark.slow
def test_tiny_cnn_learns_synthetic_well_above_chance(one_thread):
    torch.manual_seed(0)
    train = load_split("synthetic", "train", synthetic_size=4000)
    test = load_split("synthetic", "test", synthetic_size=1000)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    steps = 0
    while steps < 150:
        for x, y in make_loader(train, batch_size=64, shuffle=True, seed=steps):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if steps == 150:
                break
    net.eval()
    with torch.no_grad():
        correct = sum(
            (net(x).argmax(1) == y).sum().item()
            for x, y in make_loader(test, batch_size=500, shuffle=False)
        )
    assert correct / len(test) > 0.35  # chance is 0.10; measured 0.55


# ------------------------------------------------------------------------- batched pipeline


def test_cifar_augmentation_is_a_padded_crop_possibly_flipped():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=gen)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    kwargs = dict(classes=["a"], mean=mean, std=std, augment="cifar", seed=1)
    ds = InMemoryImages(images, torch.zeros(64, dtype=torch.long), **kwargs)
    out = torch.stack([x for x, _ in ds.__getitems__(list(range(64)))])
    pad = 1  # resolution 8 // 8
    seen = set()
    for i in range(64):
        padded = F.pad(_normalise(images[i], mean, std), (pad,) * 4, value=-2.0)  # 0 -> -2
        candidates = {
            (dy, dx, flip): c.flip(-1) if flip else c
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for flip in (False, True)
            for c in [padded[:, dy : dy + 8, dx : dx + 8]]
        }
        match = [k for k, c in candidates.items() if torch.allclose(c, out[i], atol=1e-6)]
        assert match, f"image {i} is not a padded crop of its source"
        seen.update(match)
    assert len(seen) > 10  # offsets and flips actually vary
    again = torch.stack([x for x, _ in ds.view(seed=1).__getitems__(list(range(64)))])
    assert torch.equal(again, out)  # same seed, same augmentation
    other = torch.stack([x for x, _ in ds.view(seed=2).__getitems__(list(range(64)))])
    assert not torch.equal(other, out)
    ds.reseed(1)  # restarts the stream that produced `out`
    assert torch.equal(torch.stack([x for x, _ in ds.__getitems__(list(range(64)))]), out)
    with pytest.raises(ValueError, match="seed must be an integer, got 'a'"):
        ds.reseed("a")


def test_resizing_and_imagenet_crops_keep_a_flat_image_flat():
    images = torch.full((6, 3, 32, 32), 128, dtype=torch.uint8)
    ds = InMemoryImages(
        images, torch.zeros(6, dtype=torch.long), classes=["a"], mean=(0.5,) * 3, std=(0.5,) * 3
    )
    expected = (128 / 255 - 0.5) / 0.5
    for view in (
        ds.view(resolution=16),
        ds.view(resolution=48, augment="imagenet"),
        ds.view(resolution=24, augment="cifar"),
        ds.view(eval_crop=0.5),
    ):
        x = torch.stack([x for x, _ in view.__getitems__(range(6))])
        assert x.shape[-1] == view.resolution
        if view.augment != "cifar":  # the cifar recipe pads with black
            torch.testing.assert_close(x, torch.full_like(x, expected), atol=1e-5, rtol=0)


def test_eval_crop_keeps_the_centre():
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    images[..., 2:6, 2:6] = 255  # a white centre square on black
    ds = InMemoryImages(
        images,
        torch.zeros(1, dtype=torch.long),
        classes=["a"],
        mean=(0,) * 3,
        std=(1,) * 3,
        resolution=4,
        eval_crop=0.5,
    )
    # resize 8 -> 8 (4 / 0.5) is a no-op, then the centre 4x4 crop is all white
    torch.testing.assert_close(ds[0][0], torch.ones(3, 4, 4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(split="val"), "split must be one of"),
        (dict(augment="autoaugment"), "augment must be one of"),
        (dict(resolution=2), "resolution must be an integer >= 4, got 2"),
        (dict(resolution=32.0), "resolution must be an integer"),
        (dict(eval_crop=0.0), r"eval_crop must be in \(0, 1\]"),
        (dict(synthetic_size=0), "synthetic_size must be None or an integer >= 1, got 0"),
    ],
)
def test_load_split_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_split("synthetic", **kwargs)


# ------------------------------------------------------------------------------------ CIFAR


def _batch(rng, n, label_key, n_classes, name):
    entry = {
        "batch_label": name,
        label_key: [int(v) for v in rng.integers(0, n_classes, n)],
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }
    if label_key == "fine_labels":
        entry["coarse_labels"] = [v // 5 for v in entry[label_key]]
    return entry


def _dump(path, obj):
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _write_cifar10(root, n=7):
    """CIFAR-10's python layout: five train batches, a test batch and batches.meta."""
    rng, folder = np.random.default_rng(0), root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = _batch(rng, n, "labels", 10, name)
        _dump(folder / name, batches[name])
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    _dump(
        folder / "batches.meta", {"num_cases_per_batch": n, "label_names": names, "num_vis": 3072}
    )
    return batches, names


def _write_cifar100(root, n_train=30, n_test=10):
    rng, folder = np.random.default_rng(1), root / "cifar-100-python"
    folder.mkdir(parents=True)
    batches = {"train": _batch(rng, n_train, "fine_labels", 100, "training batch 1 of 1")}
    batches["test"] = _batch(rng, n_test, "fine_labels", 100, "testing batch 1 of 1")
    for name, entry in batches.items():
        _dump(folder / name, entry)
    names = [f"fine_{i}" for i in range(100)]
    _dump(
        folder / "meta",
        {"fine_label_names": names, "coarse_label_names": list("abcdefghijklmnopqrst")},
    )
    return batches, names


def test_cifar10_reads_the_real_on_disk_format(tmp_path):
    batches, names = _write_cifar10(tmp_path)
    train = load_split("cifar10", "train", data_dir=tmp_path, download=False)
    test = load_split("cifar10", "test", data_dir=tmp_path, download=False)
    order = [f"data_batch_{i}" for i in range(1, 6)]
    assert len(train) == 35 and len(test) == 7 and train.classes == names
    assert train.targets == sum((batches[b]["labels"] for b in order), [])
    assert test.targets == batches["test_batch"]["labels"]
    # Rows are the R, G, B planes of a 32x32 image, in batch order.
    third = batches["data_batch_2"]["data"][3].reshape(3, 32, 32)
    x, y = train[7 + 3]
    assert y == batches["data_batch_2"]["labels"][3]
    torch.testing.assert_close(x, _normalise(third, CIFAR10_MEAN, CIFAR10_STD))
    assert torch.equal(
        test.images[6], torch.from_numpy(batches["test_batch"]["data"][6]).view(3, 32, 32)
    )


def test_cifar100_reads_fine_labels_and_names(tmp_path):
    batches, names = _write_cifar100(tmp_path)
    train = load_split("cifar100", "train", data_dir=str(tmp_path), download=False, resolution=16)
    test = load_split("cifar100", "test", data_dir=tmp_path, download=False)
    assert (len(train), len(test)) == (30, 10) and train.classes == names
    assert train.targets == batches["train"]["fine_labels"]
    assert train[0][0].shape == (3, 16, 16)
    torch.testing.assert_close(
        test[4][0],
        _normalise(batches["test"]["data"][4].reshape(3, 32, 32), CIFAR100_MEAN, CIFAR100_STD),
    )


def test_cifar_pickles_written_by_old_numpy_load(tmp_path):
    _, _ = _write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    entry = _batch(np.random.default_rng(9), 4, "labels", 10, "legacy")
    blob = pickle.dumps(entry, protocol=2)
    # The 2009 files name numpy.core.multiarray (numpy >= 2 writes numpy._core.multiarray).
    path.write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    test = load_split("cifar10", "test", data_dir=tmp_path, download=False)
    assert test.targets == entry["labels"]


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.remove, (self.target,))


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    _write_cifar10(tmp_path)
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("still here")
    evil = _batch(np.random.default_rng(0), 2, "labels", 10, "evil")
    evil["filenames"] = _Payload(str(sentinel))
    _dump(tmp_path / "cifar-10-batches-py" / "test_batch", evil)
    with pytest.raises(
        DatasetUnavailable,
        match=r"test_batch.*not a readable CIFAR file.*refusing to load (posix|nt|os)\.remove",
    ):
        load_split("cifar10", "test", data_dir=tmp_path, download=False)
    assert sentinel.exists()


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "not a readable CIFAR file"),
        (lambda p: _dump(p, {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}), "shape"),
        (
            lambda p: _dump(p, {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}),
            "labels outside",
        ),
        (lambda p: _dump(p, [1, 2, 3]), "expected a dict"),
    ],
)
def test_corrupt_cifar_files_raise_dataset_unavailable(tmp_path, corrupt, match):
    _write_cifar10(tmp_path)
    corrupt(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DatasetUnavailable, match=f"data_batch_3.*{match}"):
        load_split("cifar10", "train", data_dir=tmp_path, download=False)


def test_missing_cifar_without_download_names_the_ways_forward(tmp_path):
    _write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DatasetUnavailable) as info:
        load_split("cifar10", "test", data_dir=tmp_path, download=False)
    msg = str(info.value)
    for part in (
        "--data-dir",
        str(tmp_path),
        "data_batch_4",
        "--no-download",
        "imagefolder:",
        "synthetic",
    ):
        assert part in msg
    with pytest.raises(DatasetUnavailable, match="cifar100 is not in --data-dir"):
        proxy_split("cifar100", data_dir=tmp_path / "elsewhere", download=False)
    assert not (tmp_path / "elsewhere").exists()


def test_failed_download_raises_one_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    import torchvision.datasets

    # Port 9 (discard) on localhost refuses at once: the real downloader runs and fails offline.
    unreachable = "http://127.0.0.1:9/cifar-10-python.tar.gz"
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", unreachable)
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetUnavailable) as info:
        load_split("cifar10", "train", data_dir=data_dir, download=True)
    msg = str(info.value)
    assert msg.startswith("could not download cifar10 from http://127.0.0.1:9/")
    for part in ("--data-dir", str(data_dir), "imagefolder:<path>", "--dataset synthetic"):
        assert part in msg
    assert "\n" not in msg
    assert not data_dir.exists()  # created by the attempt, removed again

    data_dir.mkdir()
    (data_dir / "keep.txt").write_text("mine")
    with pytest.raises(DatasetUnavailable, match="could not download"):
        proxy_split("cifar10", data_dir=data_dir)
    assert [p.name for p in data_dir.iterdir()] == ["keep.txt"]


# ------------------------------------------------------------------------------ imagefolder


def _write_folder(root, layout, size=(10, 6)):
    """``layout``: {relative class folder: number of PNGs}; returns {path: uint8 HWC array}."""
    rng, written = np.random.default_rng(0), {}
    for rel, n in layout.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            path = root / rel / f"{i}.png"
            Image.fromarray(arr).save(path)
            written[path] = arr
    return written


@needs_mini
def test_imagefolder_on_real_cifar10_mini():
    spec = parse_dataset(f"imagefolder:{MINI}")
    assert num_classes(spec) == 10
    train = load_split(spec, "train", resolution=32, eval_crop=1.0)
    test = load_split(spec, "test", resolution=32)
    assert (len(train), len(test)) == (4660, 932)
    assert train.classes == sorted(p.name for p in (MINI / "train").iterdir())
    path, label = train.samples[1234]
    assert Path(path).parent.name == train.classes[label]
    reference = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
    x, y = train[1234]
    assert y == label
    torch.testing.assert_close(x, _normalise(reference, IMAGENET_MEAN, IMAGENET_STD))
    assert load_split(spec, "test")[0][0].shape == (3, 224, 224)  # default resolution


def test_imagefolder_test_split_uses_the_train_class_indices(tmp_path):
    _write_folder(
        tmp_path, {"train/ant": 2, "train/bee": 3, "train/cat": 1, "test/bee": 2, "test/cat": 1}
    )
    train = load_split(f"imagefolder:{tmp_path}", "train", resolution=8)
    test = load_split(f"imagefolder:{tmp_path}", "test", resolution=8)
    assert train.classes == test.classes == ["ant", "bee", "cat"]
    assert sorted(train.targets) == [0, 0, 1, 1, 1, 2]
    assert sorted(test.targets) == [1, 1, 2]
    assert test[0][0].shape == (3, 8, 8)


def test_imagefolder_val_folder_counts_as_test(tmp_path):
    _write_folder(tmp_path, {"train/a": 1, "train/b": 1, "val/a": 2})
    assert len(load_split(f"imagefolder:{tmp_path}", "test", resolution=8)) == 2


def test_imagefolder_without_train_folder_is_all_training_data(tmp_path):
    _write_folder(tmp_path, {"x": 3, "y": 2})
    spec = f"imagefolder:{tmp_path}"
    assert len(load_split(spec, "train", resolution=8)) == 5
    with pytest.raises(DatasetUnavailable, match="has no test split"):
        load_split(spec, "test")


def test_imagefolder_test_class_missing_from_train_is_refused(tmp_path):
    _write_folder(tmp_path, {"train/a": 1, "train/b": 1, "test/a": 1, "test/zebra": 1})
    with pytest.raises(DatasetUnavailable, match="'zebra'"):
        load_split(f"imagefolder:{tmp_path}", "test")


def test_imagefolder_with_no_images_is_refused(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "train" / c).mkdir(parents=True)
    with pytest.raises(DatasetUnavailable, match="holds no images"):
        load_split(f"imagefolder:{tmp_path}", "train")


def test_imagefolder_eval_pipeline_resizes_then_centre_crops(tmp_path):
    written = _write_folder(tmp_path, {"a": 1, "b": 1}, size=(12, 8))  # 12 wide, 8 high
    ds = load_split(f"imagefolder:{tmp_path}", "train", resolution=4, eval_crop=0.5)
    path, _ = ds.samples[0]
    # Shorter side 8 -> 8 (= 4 / 0.5): no resampling, then the centre 4x4 of the 8x12 image.
    centre = written[Path(path)][2:6, 4:8].transpose(2, 0, 1)
    torch.testing.assert_close(ds[0][0], _normalise(centre, IMAGENET_MEAN, IMAGENET_STD))


def test_imagefolder_validation_of_cifar_training_is_the_unchanged_image(tmp_path):
    # 32x32 photographs trained with the cifar pipeline: validation must see exactly the images
    # (only normalised), not the ImageNet-style 37 -> 32 centre crop, a 16 % zoom.
    written = _write_folder(tmp_path, {"a": 6, "b": 6}, size=(32, 32))
    train, val = proxy_split(
        f"imagefolder:{tmp_path}", val_fraction=0.5, resolution=32, augment="cifar", seed=0
    )
    assert val.dataset.eval_crop == 1.0 and train.dataset.eval_crop == 1.0
    for i in range(len(val)):
        path, _ = val.dataset.samples[val.indices[i]]
        x, _ = val[i]
        reference = written[Path(path)].transpose(2, 0, 1)
        torch.testing.assert_close(x, _normalise(reference, IMAGENET_MEAN, IMAGENET_STD))
    # The test split of such a run, loaded for evaluation, is the whole image too.
    test = load_split(f"imagefolder:{tmp_path}", "train", resolution=32)
    path, _ = test.samples[0]
    ref = written[Path(path)].transpose(2, 0, 1)
    torch.testing.assert_close(test[0][0], _normalise(ref, IMAGENET_MEAN, IMAGENET_STD))


def test_imagefolder_imagenet_pipeline_keeps_the_0875_evaluation_crop(tmp_path):
    written = _write_folder(tmp_path, {"a": 2, "b": 2}, size=(16, 16))
    assert default_eval_crop(f"imagefolder:{tmp_path}", "imagenet") == 0.875
    assert default_eval_crop(f"imagefolder:{tmp_path}", "cifar") == 1.0
    assert default_eval_crop(f"imagefolder:{tmp_path}", None) == 1.0
    assert default_eval_crop("cifar10", "imagenet") == 1.0  # 32x32 datasets: always whole
    with pytest.raises(ValueError, match="augment must be one of"):
        default_eval_crop("cifar10", "autoaugment")
    _, val = proxy_split(
        f"imagefolder:{tmp_path}", val_fraction=0.5, resolution=14, augment="imagenet", seed=0
    )
    assert val.dataset.eval_crop == 0.875
    # Shorter side 16 = round(14 / 0.875): no resampling, then the centre 14x14.
    path, _ = val.dataset.samples[val.indices[0]]
    centre = written[Path(path)][1:15, 1:15].transpose(2, 0, 1)
    torch.testing.assert_close(val[0][0], _normalise(centre, IMAGENET_MEAN, IMAGENET_STD))


# ----------------------------------------------------------------------------------- proxy


def test_proxy_split_carves_a_stratified_validation_set_from_train():
    train, val = proxy_split(
        "synthetic", val_fraction=0.1, synthetic_size=1003, seed=4, resolution=8
    )
    assert train.dataset is not val.dataset and len(train.dataset) == 1003
    assert train.dataset.images is val.dataset.images  # the same TRAIN images, two pipelines
    t, v = set(train.indices), set(val.indices)
    assert len(v) == round(0.1 * 1003) and not t & v and t | v == set(range(1003))
    labels = train.dataset.labels
    counts = torch.bincount(labels[list(v)], minlength=10)
    share = torch.bincount(labels, minlength=10).double() * 0.1
    assert ((counts - share).abs() < 1).all()  # each class within one image of its share
    again = proxy_split("synthetic", synthetic_size=1003, resolution=8, seed=4)
    assert again[1].indices == val.indices and again[0].indices == train.indices
    assert (
        proxy_split("synthetic", synthetic_size=1003, resolution=8, seed=5)[1].indices
        != val.indices
    )


def test_proxy_subsets_nest_and_never_touch_validation():
    full_train, full_val = proxy_split("synthetic", synthetic_size=2000, resolution=8, seed=1)
    small_train, small_val = proxy_split(
        "synthetic", synthetic_size=2000, resolution=8, seed=1, subset=100
    )
    big_train, _ = proxy_split("synthetic", synthetic_size=2000, resolution=8, seed=1, subset=400)
    assert len(small_train) == 100 and len(big_train) == 400
    assert small_val.indices == full_val.indices  # the whole validation part, whatever subset
    assert set(small_train.indices) <= set(big_train.indices) <= set(full_train.indices)
    assert not set(big_train.indices) & set(full_val.indices)
    counts = torch.bincount(full_train.dataset.labels[small_train.indices], minlength=10)
    assert counts.tolist() == [10] * 10  # stratified
    _, val50 = proxy_split(
        "synthetic", synthetic_size=2000, resolution=8, seed=1, subset=100, val_size=50
    )
    assert len(val50) == 50 and set(val50.indices) <= set(full_val.indices)
    capped, _ = proxy_split("synthetic", synthetic_size=2000, resolution=8, seed=1, subset=10**6)
    assert len(capped) == len(full_train)


@pytest.mark.parametrize("subset", [20, 300, None])
def test_validation_split_size_rule_does_not_depend_on_the_subset(subset):
    # The rule the search ranks by (issue 10): round(val_fraction * N) images held out of the
    # train split, the same images whatever the training subset; val_size takes a stratified,
    # nested part of them.
    train, val = proxy_split(
        "synthetic", synthetic_size=1200, resolution=8, seed=3, val_fraction=0.25, subset=subset
    )
    assert len(val) == 300
    assert len(train) == (900 if subset is None else subset)
    ref = proxy_split("synthetic", synthetic_size=1200, resolution=8, seed=3, val_fraction=0.25)
    assert val.indices == ref[1].indices
    _, capped = proxy_split(
        "synthetic", synthetic_size=1200, resolution=8, seed=3, val_fraction=0.25,
        subset=subset, val_size=100,
    )
    assert len(capped) == 100 and set(capped.indices) <= set(val.indices)
    labels = val.dataset.labels
    assert torch.bincount(labels[capped.indices], minlength=10).tolist() == [10] * 10


def test_proxy_split_augments_train_only_and_sets_resolution():
    train, val = proxy_split("synthetic", synthetic_size=300, augment="cifar", resolution=16)
    assert train.dataset.augment == "cifar" and val.dataset.augment is None
    assert train[0][0].shape == val[0][0].shape == (3, 16, 16)
    torch.testing.assert_close(val[3][0], val[3][0])
    first = torch.stack([train[i][0] for i in range(20)])
    second = torch.stack([train[i][0] for i in range(20)])
    assert not torch.equal(first, second)  # fresh random crops each time


def test_proxy_split_on_an_image_folder(tmp_path):
    _write_folder(tmp_path, {"train/a": 10, "train/b": 10, "test/a": 5, "test/b": 5})
    train, val = proxy_split(
        f"imagefolder:{tmp_path}", val_fraction=0.2, resolution=8, augment="cifar"
    )
    assert (len(train), len(val)) == (16, 4)
    assert len(train.dataset) == 20  # carved from train/, never test/
    assert sorted(val.dataset.targets[i] for i in val.indices) == [0, 0, 1, 1]
    torch.testing.assert_close(val[0][0], val[0][0])
    assert val.dataset.transform is not train.dataset.transform


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(val_fraction=0.0), r"val_fraction must be in \(0, 1\), got 0.0"),
        (dict(val_fraction=1.0), r"val_fraction must be in \(0, 1\)"),
        (dict(val_fraction="0.1"), "val_fraction must be a number"),
        (dict(subset=0), "subset must be None or an integer >= 1, got 0"),
        (dict(subset=True), "subset must be"),
        (dict(val_size=-3), "val_size must be None or an integer >= 1, got -3"),
        (dict(seed=1.5), "seed must be an integer, got 1.5"),
        (dict(val_fraction=0.001, synthetic_size=100), "leaves 0 for validation"),
    ],
)
def test_proxy_split_rejects_bad_arguments(kwargs, match):
    kwargs.setdefault("synthetic_size", 200)
    with pytest.raises(ValueError, match=match):
        proxy_split("synthetic", **kwargs)


# ----------------------------------------------------------------------------------- loaders


def test_make_loader_defaults_and_seeded_order(tmp_path):
    ds = SyntheticImages(100, seed=0)
    loader = make_loader(ds, batch_size=32, shuffle=True, seed=7)
    assert loader.num_workers == 0 and not loader.pin_memory  # in memory, CPU
    labels = [y for _, y in loader]
    assert [len(y) for y in labels] == [32, 32, 32, 4]
    again = [y for _, y in make_loader(ds, batch_size=32, shuffle=True, seed=7)]
    other = [y for _, y in make_loader(ds, batch_size=32, shuffle=True, seed=8)]
    assert all(torch.equal(a, b) for a, b in zip(labels, again))
    assert not all(torch.equal(a, b) for a, b in zip(labels, other))
    assert len(make_loader(ds, batch_size=32, shuffle=False, drop_last=True)) == 3

    _write_folder(tmp_path, {"a": 1, "b": 1})
    folder = load_split(f"imagefolder:{tmp_path}", resolution=8)
    files = make_loader(folder, batch_size=2, shuffle=False, device="cuda")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert files.num_workers == min(4, max(0, cpus - 1))
    assert files.persistent_workers == (files.num_workers > 0)
    assert files.pin_memory  # pinned for a CUDA device (only the flag is checked here)
    assert make_loader(folder, batch_size=2, shuffle=False, num_workers=0).num_workers == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
        (dict(num_workers=-1), "num_workers must be None or an integer >= 0, got -1"),
        (dict(seed="x"), "seed must be an integer"),
    ],
)
def test_make_loader_rejects_bad_arguments(kwargs, match):
    kwargs.setdefault("batch_size", 8)
    with pytest.raises(ValueError, match=match):
        make_loader(SyntheticImages(10), shuffle=False, **kwargs)


def test_workers_draw_different_augmentations():
    images = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8).expand(64, -1, -1, -1)
    ds = InMemoryImages(
        images.contiguous(),
        torch.zeros(64, dtype=torch.long),
        classes=["a"],
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        augment="cifar",
    )
    loader = make_loader(ds, batch_size=16, shuffle=False, num_workers=2, seed=3)
    batches = [x for x, _ in loader]
    # Identical images, so any difference comes from the augmentation streams of the workers.
    assert not torch.equal(batches[0], batches[1])
    assert [torch.equal(a, b) for a, b in zip(batches, [x for x, _ in loader])] != [True] * 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loader_pins_memory_for_cuda():
    loader = make_loader(SyntheticImages(64), batch_size=16, shuffle=True, device="cuda")
    x, y = next(iter(loader))
    assert x.is_pinned() and y.is_pinned()
    assert x.to("cuda", non_blocking=True).shape == (16, 3, 32, 32)


def test_synthetic_augmentation_never_mirrors():
    # a mirror turns a grating of orientation theta into -theta, another class
    from evaluators.data import InMemoryImages, SyntheticImages
    from evaluators.data.augment import pad_crop_flip as _pad_crop_flip

    assert SyntheticImages.hflip is False and InMemoryImages.hflip is True
    ramp = torch.arange(16.0).expand(64, 3, 16, 16).contiguous()  # columns increase left to right
    gen = torch.Generator().manual_seed(0)
    out = _pad_crop_flip(ramp, 2, gen, flip=False)
    inner = out[:, 0, 8, 2:-2]  # away from the zero padding
    assert (inner.diff(dim=-1) > 0).all()
    mirrored = _pad_crop_flip(ramp, 2, torch.Generator().manual_seed(0), flip=True)
    assert (mirrored[:, 0, 8, 2:-2].diff(dim=-1) < 0).any()
