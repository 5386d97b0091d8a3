"""Measured latency: the median of repeated timed forward passes, and the device it ran on.

:func:`measure_latency` is the median of repeated timed forward passes after warm-up, in
milliseconds, with its spread (quartiles, IQR, coefficient of variation). On CPU each pass is
timed with ``time.perf_counter`` and the number of intra-op threads is recorded; on CUDA each
pass is bracketed by ``torch.cuda.Event`` records after a ``torch.cuda.synchronize()``, so one
sample is the latency of one request, launch overhead included.

Imports only torch; must not import :mod:`evaluators.latency.table` (which builds on it),
other ``evaluators`` modules, or ``nas``.
"""

from __future__ import annotations

import gc
import math
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "LatencyResult",
    "check_int",
    "device_name",
    "dtype_name",
    "input_size",
    "measure_latency",
    "parse_device",
]


@dataclass(frozen=True)
class LatencyResult:
    """Summary of repeated timed forward passes; all times in milliseconds per pass.

    ``p25_ms``/``p75_ms`` are the quartiles (linear interpolation, as ``numpy.percentile``),
    ``iqr_ms = p75_ms - p25_ms``, ``cv`` the sample standard deviation over the mean (0 for one
    repeat). ``threads`` is ``torch.get_num_threads()`` on CPU and ``None`` on CUDA.
    ``samples_ms`` holds every timed pass in the order measured.
    """

    median_ms: float
    iqr_ms: float
    p25_ms: float
    p75_ms: float
    mean_ms: float
    cv: float
    repeats: int
    batch_size: int
    device: str
    device_name: str
    threads: int | None
    dtype: str
    samples_ms: tuple[float, ...] = ()
    clock: str = "wall"

    def to_dict(self, *, samples: bool = False) -> dict[str, Any]:
        """JSON-ready dict; the raw samples only when ``samples`` is true (they are long)."""
        d = asdict(self)
        if samples:
            d["samples_ms"] = list(self.samples_ms)
        else:
            d.pop("samples_ms")
        return d

    @classmethod
    def from_samples(
        cls,
        samples_ms: Sequence[float],
        *,
        batch_size: int,
        device: str,
        device_name: str,
        threads: int | None,
        dtype: str,
        clock: str = "wall",
    ) -> LatencyResult:
        """Summarise raw per-pass times (milliseconds)."""
        if not samples_ms:
            raise ValueError("samples_ms must hold at least one timing, got none")
        xs = [float(x) for x in samples_ms]
        if len(xs) == 1:
            p25 = med = p75 = xs[0]
        else:
            # "inclusive" is numpy's default linear interpolation between order statistics
            p25, med, p75 = statistics.quantiles(xs, n=4, method="inclusive")
        mean = statistics.fmean(xs)
        cv = statistics.stdev(xs) / mean if len(xs) > 1 and mean > 0 else 0.0
        return cls(
            median_ms=med,
            iqr_ms=p75 - p25,
            p25_ms=p25,
            p75_ms=p75,
            mean_ms=mean,
            cv=cv,
            repeats=len(xs),
            batch_size=batch_size,
            device=device,
            device_name=device_name,
            threads=threads,
            dtype=dtype,
            samples_ms=tuple(xs),
            clock=clock,
        )


# -- device description ---------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_name(device: str | torch.device) -> str:
    """Human-readable model of ``device``: the CPU model string or the CUDA device name."""
    dev = parse_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        return _cpu_model()
    return dev.type


def parse_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(device)!r} does not exist; {torch.cuda.device_count()} CUDA "
                "device(s) are visible"
            )
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return dev


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# -- measurement ----------------------------------------------------------------------------


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def input_size(resolution: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(resolution, int) and not isinstance(resolution, bool):
        size = (resolution, resolution)
    elif (
        isinstance(resolution, Sequence)
        and len(resolution) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in resolution)
    ):
        size = (int(resolution[0]), int(resolution[1]))
    else:
        raise ValueError(f"resolution must be an int or an (H, W) pair of ints, got {resolution!r}")
    if min(size) < 1:
        raise ValueError(f"resolution must be positive, got {resolution!r}")
    return size


def measure_latency(
    model: nn.Module,
    resolution: int | Sequence[int],
    *,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    warmup: int = 10,
    repeats: int = 30,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    min_time_s: float | None = None,
    in_channels: int = 3,
    max_repeats: int = 10_000,
    clock: str = "wall",
) -> LatencyResult:
    """Time forward passes of ``model`` on ``Tensor[batch_size, in_channels, H, W]``.

    ``resolution`` is ``H = W`` or an ``(H, W)`` pair. ``warmup`` untimed passes come first
    (oneDNN / cuDNN pick and cache their kernels on the first calls), then ``repeats`` timed
    ones; with ``min_time_s`` timing continues past ``repeats`` until the timed passes add up to
    at least that many seconds (at most ``max_repeats`` passes). Passes run under
    ``torch.inference_mode()`` with the model in eval mode and Python's garbage collector paused.

    Side effects: the model is moved **in place** to ``device`` and ``dtype`` (and to
    ``channels_last`` when asked), because copying a large model for every measurement would
    cost more memory than the caller expects; it is left there. Its train/eval mode is restored.
    The input is a fixed pseudo-random tensor (seed 0), so denormals do not slow the CPU path.

    ``clock="thread"`` times CPU passes with ``time.thread_time`` (CPU time of the calling
    thread, blind to other processes' turns on a busy machine) instead of wall time; it needs
    one intra-op thread (``torch.set_num_threads(1)``), else the other threads' work is lost.
    """
    dev = parse_device(device)
    h, w = input_size(resolution)
    check_int("batch_size", batch_size, 1)
    check_int("warmup", warmup, 0)
    check_int("repeats", repeats, 1)
    check_int("in_channels", in_channels, 1)
    check_int("max_repeats", max_repeats, repeats)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            f"dtype must be a floating torch dtype such as torch.float32, got {dtype!r}"
        )
    if min_time_s is not None and not (
        isinstance(min_time_s, (int, float)) and math.isfinite(min_time_s) and min_time_s > 0
    ):
        raise ValueError(
            f"min_time_s must be a positive number of seconds or None, got {min_time_s!r}"
        )

    if clock not in ("wall", "thread"):
        raise ValueError(f"clock must be 'wall' or 'thread', got {clock!r}")
    if clock == "thread" and (dev.type != "cpu" or torch.get_num_threads() != 1):
        raise ValueError(
            "clock 'thread' times CPU passes with one intra-op thread; got device "
            f"{dev.type} with {torch.get_num_threads()} thread(s)"
        )

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, in_channels, h, w, generator=gen).to(dev, dtype)
    x = x.contiguous(memory_format=fmt)
    model.to(device=dev, dtype=dtype)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    was_training = model.training
    gc_was_enabled = gc.isenabled()
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            gc.collect()
            gc.disable()  # a collection in the middle of a pass would be an outlier we caused
            if dev.type == "cuda":
                samples = _time_cuda(model, x, dev, repeats, min_time_s, max_repeats)
            else:
                timer = time.thread_time if clock == "thread" else time.perf_counter
                samples = _time_cpu(model, x, repeats, min_time_s, max_repeats, timer)
    finally:
        if gc_was_enabled:
            gc.enable()
        model.train(was_training)
    return LatencyResult.from_samples(
        samples,
        batch_size=batch_size,
        device=str(dev),
        device_name=device_name(dev),
        threads=torch.get_num_threads() if dev.type == "cpu" else None,
        dtype=dtype_name(dtype),
        clock=clock if dev.type == "cpu" else "cuda-events",
    )


def _enough(samples: list[float], repeats: int, min_time_s: float | None, max_repeats: int) -> bool:
    if len(samples) < repeats:
        return False
    if min_time_s is None or len(samples) >= max_repeats:
        return True
    return sum(samples) >= min_time_s * 1e3


def _time_cpu(
    model: nn.Module,
    x: torch.Tensor,
    repeats: int,
    min_time_s: float | None,
    max_repeats: int,
    timer: Any = time.perf_counter,
) -> list[float]:
    samples: list[float] = []
    while not _enough(samples, repeats, min_time_s, max_repeats):
        t0 = timer()
        model(x)
        samples.append((timer() - t0) * 1e3)
    return samples


def _time_cuda(
    model: nn.Module,
    x: torch.Tensor,
    dev: torch.device,
    repeats: int,
    min_time_s: float | None,
    max_repeats: int,
) -> list[float]:
    samples: list[float] = []
    with torch.cuda.device(dev):
        while not _enough(samples, repeats, min_time_s, max_repeats):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            # an empty queue before each pass: one sample is one request's latency, not the
            # throughput of passes overlapping in the stream
            torch.cuda.synchronize(dev)
            start.record()
            model(x)
            end.record()
            end.synchronize()
            samples.append(float(start.elapsed_time(end)))
    return samples
