"""Latency: measured end-to-end, and predicted from a per-slot lookup table.

Measured latency (:func:`measure_latency`) is the median of repeated timed forward passes after
warm-up, in milliseconds, with its spread (quartiles, IQR, coefficient of variation). On CPU each
pass is timed with ``time.perf_counter`` and the number of intra-op threads is recorded; on CUDA
each pass is bracketed by ``torch.cuda.Event`` records after a ``torch.cuda.synchronize()``, so
one sample is the latency of one request, launch overhead included.

Predicted latency (:class:`LatencyTable`) follows the cost model's decomposition: a slot's
latency depends only on that slot's choice, so ``total = base + Σ slot entries``. Each (slot
shape, operator choice) is timed once, alone, on ``Tensor[batch, C_in, H, W]`` and kept in a
JSON cache on disk keyed by everything that changes the number (device model, torch version,
dtype, threads, batch size, memory format). ``base`` is the measured all-``conv`` model minus
its slots' ``conv`` entries, so the prediction of the all-``conv`` model equals its measurement.
The prediction is for screening; a search measures the candidates it keeps.

The package: :mod:`~evaluators.latency.measure` (timing a model, describing the device),
:mod:`~evaluators.latency.interleaved` (timing many models in interleaved rounds),
:mod:`~evaluators.latency.calibrate` (the linear correction of the table) and
:mod:`~evaluators.latency.table` (the per-slot lookup-table predictor, built on the others).
This ``__init__`` only re-exports their public names. Nothing here imports ``nas`` or
``evaluators`` modules outside the package.
"""

from __future__ import annotations

from evaluators.latency.calibrate import Calibration
from evaluators.latency.interleaved import InterleavedResult, measure_interleaved
from evaluators.latency.measure import LatencyResult, device_name, measure_latency
from evaluators.latency.table import CACHE_FORMAT, LatencyTable, default_cache_dir

__all__ = [
    "CACHE_FORMAT",
    "Calibration",
    "InterleavedResult",
    "LatencyResult",
    "LatencyTable",
    "default_cache_dir",
    "device_name",
    "measure_interleaved",
    "measure_latency",
]
