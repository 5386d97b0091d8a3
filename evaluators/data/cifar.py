"""CIFAR-10/100: finding, downloading and reading the python version of the batches.

The files are in torchvision's layout under ``data_dir`` (``cifar-10-batches-py/`` or
``cifar-100-python/``). When files are missing they are downloaded with torchvision's
downloader (progress bar, MD5 check of the archive) unless downloading is off; a failed
download raises :class:`~evaluators.data.base.DatasetUnavailable` and removes what it created.
The batches are read here rather than by ``torchvision.datasets.CIFAR10`` (whose class
attributes still define the URL, archive and file names): torchvision recomputes the MD5 of
every extracted file each time a dataset is built and hands out one PIL image at a time, while
reading the same pickles into one ``uint8`` tensor lets augmentation run on whole batches. The
pickles are read with an unpickler that only accepts the numpy array types CIFAR's files
contain, so a tampered data folder cannot run code; their structure (shapes, dtypes, label
range) is checked instead.

Imports :mod:`evaluators.data.base` only (torchvision and numpy when called); must not import
the other ``evaluators.data`` modules.
"""

from __future__ import annotations

import functools
import pickle
import shutil
import socket
from pathlib import Path
from typing import Any

import torch

from evaluators.data.base import DatasetUnavailable

__all__ = ["cifar_unavailable", "ensure_cifar", "read_cifar"]

# A download that stalls this long (no bytes, no connection) counts as failed.
_DOWNLOAD_STALL_S = 60.0

_WAYS_FORWARD = (
    "use --dataset imagefolder:<path> for images already on disk, "
    "or --dataset synthetic, which needs no files"
)


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


def ensure_cifar(kind: str, data_dir: Path, download: bool) -> Path:
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


def cifar_unavailable(kind: str, data_dir: Path, *, probe_s: float = 5.0) -> str | None:
    """Why ``kind`` can be neither read from ``data_dir`` nor downloaded; ``None`` when it can.

    Files already there: ``None`` at once. Otherwise the download server is probed first (name
    lookup and a TCP connection, at most ``probe_s`` seconds, so a network that drops packets
    is not waited on for a minute); when it answers, the download is made now, and its
    failure is the reason. Behind an HTTP proxy (``https_proxy``) the probe is skipped and the
    download itself decides. Writes nothing unless the download succeeds.
    """
    folder = data_dir / _cifar_class(kind).base_folder
    if all((folder / f).is_file() for f in _cifar_files(kind)):
        return None
    url = _cifar_class(kind).url
    reason = _probe(url, probe_s)
    if reason is not None:
        return f"cannot reach {url}: {reason}"
    try:
        ensure_cifar(kind, data_dir, download=True)
    except DatasetUnavailable as e:
        return str(e)
    return None


def _probe(url: str, timeout_s: float) -> str | None:
    """Why ``url``'s host takes no TCP connection within ``timeout_s``; ``None`` when it does."""
    import threading
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if urllib.request.getproxies().get(parts.scheme):
        return None  # the proxy, not this machine, reaches the server: the download will tell
    port = parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[str | None] = []

    def connect() -> None:
        # Name lookup cannot be given a timeout, hence the thread.
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(str(exc) or type(exc).__name__)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout_s)
    return outcome[0] if outcome else f"no answer from {parts.hostname} within {timeout_s:g} s"


def _download_cifar(kind: str, data_dir: Path) -> None:
    """Download and extract ``kind`` with torchvision; on failure or Ctrl-C remove what this
    call created (a half-downloaded archive, a half-extracted folder)."""
    from torchvision.datasets.utils import download_and_extract_archive

    cls = _cifar_class(kind)
    archive, folder = data_dir / cls.filename, data_dir / cls.base_folder
    created = [p for p in (data_dir, archive, folder) if not p.exists()]
    old_timeout = socket.getdefaulttimeout()
    # urllib waits forever by default; a dead network should fail, not hang the search.
    socket.setdefaulttimeout(_DOWNLOAD_STALL_S)
    try:
        download_and_extract_archive(cls.url, str(data_dir), filename=cls.filename, md5=cls.tgz_md5)
    except BaseException as exc:  # network, HTTP, checksum, archive errors, or Ctrl-C
        for p in reversed(created):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
        if not isinstance(exc, Exception):  # KeyboardInterrupt: gone without a half archive
            raise
        reason = getattr(exc, "reason", None) or exc
        raise DatasetUnavailable(
            f"could not download {kind} from {cls.url} into --data-dir {str(data_dir)!r} "
            f"({reason}); to go on, put the extracted {cls.base_folder}/ folder into a directory "
            f"and pass it as --data-dir, or {_WAYS_FORWARD}."
        ) from exc
    finally:
        socket.setdefaulttimeout(old_timeout)


@functools.lru_cache(maxsize=4)
def read_cifar(folder: str, kind: str, split: str) -> tuple[torch.Tensor, torch.Tensor, tuple]:
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
