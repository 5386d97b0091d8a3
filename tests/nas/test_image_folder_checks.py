"""Image folders are checked before a study or a run folder exists: one line, exit 2, no files.

Real folders of PNGs with real damage (a truncated file, bytes that are no image, an empty
class folder, a class of one image), given to ``nas.search`` and ``nas.retrain`` as users do.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluators.data import DatasetUnavailable, check_folder, load_split
from nas.retrain import main as retrain
from nas.search import main as search

ROOT = Path(__file__).resolve().parents[2]
SEARCH = ["--backbone", "cifar_resnet20", "--resolution", "16", "--budget", "7MFLOPs",
          "--trials", "1"]  # fmt: skip
ARCH = {
    "format": "convnas.arch/1",
    "backbone": "cifar_resnet20",
    "num_classes": 2,
    "resolution": 16,
    "slots": "all",
    "ops": {},
}


def _folder(root: Path, per_class: int = 6, classes=("cat", "dog"), test: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", test)):
        for c in classes if n else ():
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")
    return root


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


DAMAGE = {
    "truncated png": (
        lambda r: _truncate(r / "train" / "dog" / "3.png"),
        r"image file '{}' is not a readable image \(OSError: Truncated File Read\)",
    ),
    "not an image": (
        lambda r: (r / "test" / "cat" / "notes.png").write_text("hello") and None,
        r"image file '{}' is not a readable image \(UnidentifiedImageError",
    ),
    "empty class folder": (
        lambda r: (r / "train" / "emu").mkdir() or None,
        r"class folder '{}' holds no image files \(\.jpg, \.jpeg, \.png, \.ppm, \.\.\.\)",
    ),
    "one image in a class": (
        lambda r: [p.unlink() for p in sorted((r / "train" / "cat").glob("*.png"))[1:]] and None,
        r"class folder '{}' holds only 1 image \(a validation split .* each class needs 2",
    ),
}
NAMED = {
    "truncated png": "train/dog/3.png",
    "not an image": "test/cat/notes.png",
    "empty class folder": "train/emu",
    "one image in a class": "train/cat",
}


def _damaged(tmp_path: Path, kind: str) -> tuple[Path, str]:
    root = _folder(tmp_path / "img")
    damage, pattern = DAMAGE[kind]
    damage(root)
    return root, pattern.format(str(root / NAMED[kind]).replace(".", r"\."))


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_check_folder_names_the_bad_file_or_folder(tmp_path, kind):
    root, pattern = _damaged(tmp_path, kind)
    with pytest.raises(DatasetUnavailable, match=pattern):
        check_folder(root, min_per_class=2)


def test_a_good_folder_passes_and_one_image_per_class_is_enough_without_validation(tmp_path):
    root = _folder(tmp_path / "img", per_class=1)
    assert check_folder(root, min_per_class=1) == 2 + 4
    with pytest.raises(DatasetUnavailable, match="holds only 1 image"):
        check_folder(root, min_per_class=2)


def _cwd_files(cwd: Path) -> list[str]:
    return sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_nas_search_refuses_a_damaged_folder_before_the_study_exists(
    tmp_path, kind, monkeypatch, capsys
):
    root, pattern = _damaged(tmp_path, kind)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert search([*SEARCH, "--dataset", f"imagefolder:{root}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m nas.search: error: ")
    assert re_search(pattern, err)
    assert _cwd_files(work) == []  # no runs/, no convnas.db


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_nas_retrain_refuses_a_damaged_folder_before_the_run_folder_exists(tmp_path, kind, capsys):
    root, pattern = _damaged(tmp_path, kind)
    arch = tmp_path / "arch.json"
    # The class count is checked first: an architecture for the folder's 3 classes (with the
    # empty one) gets as far as the folder check.
    arch.write_text(json.dumps(dict(ARCH, num_classes=3 if kind == "empty class folder" else 2)))
    out = tmp_path / "run"
    argv = [str(arch), "--dataset", f"imagefolder:{root}", "--epochs", "1", "--out", str(out)]
    assert retrain(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert re_search(pattern, err)
    assert not out.exists()


def test_the_real_commands_print_one_line_and_no_traceback(tmp_path):
    root, pattern = _damaged(tmp_path, "truncated png")
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for argv in (
        ["nas.search", *SEARCH, "--dataset", f"imagefolder:{root}"],
        ["nas.retrain", str(arch), "--dataset", f"imagefolder:{root}", "--epochs", "1"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", *argv], cwd=work, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
        assert re_search(pattern, proc.stderr)
        assert _cwd_files(work) == []


def test_an_image_that_fails_to_decode_later_is_named(tmp_path):
    # A truncated JPEG passes PIL's structural check (verify reads no JPEG data); decoding
    # it fails, and the error names the file instead of a bare DataLoader traceback.
    root = _folder(tmp_path / "img", test=0)
    buf = io.BytesIO()
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, "JPEG")
    bad = root / "train" / "cat" / "zz.jpg"
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 3 // 5])  # cut inside the pixel data
    check_folder(root, min_per_class=2)
    ds = load_split(f"imagefolder:{root}", "train", resolution=16)
    index = [i for i, (p, _) in enumerate(ds.samples) if p == str(bad)][0]
    with pytest.raises(OSError, match=f"image file '{bad}' cannot be decoded"):
        ds[index]


def test_checking_a_folder_costs_less_than_decoding_it(tmp_path):
    root = _folder(tmp_path / "img", per_class=300, test=0)
    files = sorted(root.rglob("*.png"))

    def decode_all():
        for f in files:
            with Image.open(f) as im:
                im.convert("RGB")

    check_folder(root, min_per_class=2)  # imports torchvision, caches the file list
    check, decode = [], []
    for _ in range(3):  # interleaved, CPU time of this thread: robust to a busy machine
        t = time.thread_time()
        check_folder(root, min_per_class=2)
        check.append(time.thread_time() - t)
        t = time.thread_time()
        decode_all()
        decode.append(time.thread_time() - t)
    assert np.median(check) < np.median(decode)


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None
