"""Careful latency of several models at once: fixed threads, warm-up, interleaved rounds.

:func:`measure_interleaved` times a list of models the way a benchmark that compares them must:
with a fixed number of intra-op threads (1 by default), after untimed warm-up passes, in
*rounds* that visit every model once each (in a fresh seeded order per round), so that a slow
stretch of a shared machine hits every model alike instead of whichever one was being timed
then. In a round each model runs one untimed pass (its weights back into the caches, as in a
server that keeps answering) and then ``passes`` timed ones; the round's value is their median
and the model's latency the median of its per-round medians.

Two clocks are read around every pass: ``time.thread_time`` (CPU time of the calling thread:
time the scheduler gives to other processes does not count, which makes it the steadier clock
on a busy machine; with one intra-op thread all of torch's CPU work runs in that thread) and
``time.perf_counter`` (wall time). ``clock`` picks the one reported as ``median_ms``; the
other is kept as ``other_ms``. The thread clock is only meaningful with one thread on CPU.

Each result also carries the medians of the even and of the odd rounds (``halves_ms``): two
independent measurements of the same model, whose rank correlation over a set of models is
the re-test ceiling that no latency predictor can beat on that machine.

Imports only torch and :mod:`evaluators.latency.measure`; must not import the table, other
``evaluators`` modules, or ``nas``.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from evaluators.latency.measure import check_int, input_size, parse_device

__all__ = ["CLOCKS", "InterleavedResult", "measure_interleaved"]

#: Values of ``clock``: CPU time of the thread, or wall time.
CLOCKS = ("thread", "wall")


@dataclass(frozen=True)
class InterleavedResult:
    """One model's interleaved timing; milliseconds per forward pass.

    ``median_ms``: median over rounds of the per-round medians, on ``clock``; ``other_ms`` the
    same on the other clock. ``halves_ms``: that median over the even and over the odd rounds.
    ``rounds_ms``: every per-round median in round order.
    """

    median_ms: float
    other_ms: float
    halves_ms: tuple[float, float]
    rounds_ms: tuple[float, ...]
    clock: str
    threads: int
    rounds: int
    passes: int


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def measure_interleaved(
    models: Sequence[nn.Module],
    resolution: int | Sequence[int],
    *,
    rounds: int = 6,
    passes: int = 3,
    warmup: int = 2,
    threads: int | None = 1,
    clock: str = "thread",
    batch_size: int = 1,
    in_channels: int = 3,
    seed: int = 0,
) -> list[InterleavedResult]:
    """Time every model of ``models`` in interleaved rounds on CPU; one result per model.

    ``warmup`` untimed passes per model come first; then ``rounds`` rounds (at least 2, so
    there are two halves), each visiting every model once in an order shuffled with ``seed``:
    one untimed pass, then ``passes`` timed passes. ``threads`` sets torch's intra-op threads
    for the duration (restored afterwards); ``None`` keeps the current setting. ``clock`` is
    ``"thread"`` (needs ``threads=1``) or ``"wall"``.

    Models are put in eval mode (their mode is restored) and run under
    ``torch.inference_mode()`` with the garbage collector paused, on one fixed input
    ``Tensor[batch_size, in_channels, H, W]`` (seed 0). Models stay on the CPU.
    """
    if not models:
        raise ValueError("models must hold at least one model, got none")
    h, w = input_size(resolution)
    check_int("rounds", rounds, 2)
    check_int("passes", passes, 1)
    check_int("warmup", warmup, 0)
    check_int("batch_size", batch_size, 1)
    check_int("in_channels", in_channels, 1)
    if threads is not None:
        check_int("threads", threads, 1)
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    for m in models:
        dev = next((p.device for p in m.parameters()), torch.device("cpu"))
        if parse_device(dev).type != "cpu":
            raise ValueError(f"measure_interleaved times CPU models only, got one on {dev}")

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    n_threads = torch.get_num_threads()
    if clock == "thread" and n_threads != 1:
        torch.set_num_threads(old_threads)
        raise ValueError(
            f"clock 'thread' needs one intra-op thread (threads=1), got {n_threads} threads: "
            "the other threads' work would not be counted"
        )
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, in_channels, h, w, generator=gen)
    modes = [m.training for m in models]
    gc_was_enabled = gc.isenabled()
    rng = random.Random(seed)
    n = len(models)
    thread_rounds: list[list[float]] = [[] for _ in range(n)]
    wall_rounds: list[list[float]] = [[] for _ in range(n)]
    try:
        for m in models:
            m.eval()
        with torch.inference_mode():
            for m in models:
                for _ in range(warmup):
                    m(x)
            gc.collect()
            gc.disable()  # a collection in the middle of a pass would be an outlier we caused
            order = list(range(n))
            for _ in range(rounds):
                rng.shuffle(order)
                for i in order:
                    m = models[i]
                    m(x)  # untimed: the previous model evicted this one's weights
                    ts, ws = [], []
                    for _ in range(passes):
                        t0, w0 = time.thread_time(), time.perf_counter()
                        m(x)
                        t1, w1 = time.thread_time(), time.perf_counter()
                        ts.append((t1 - t0) * 1e3)
                        ws.append((w1 - w0) * 1e3)
                    thread_rounds[i].append(_median(ts))
                    wall_rounds[i].append(_median(ws))
    finally:
        if gc_was_enabled:
            gc.enable()
        for m, mode in zip(models, modes):
            m.train(mode)
        torch.set_num_threads(old_threads)

    out = []
    for i in range(n):
        main, other = (
            (thread_rounds[i], wall_rounds[i])
            if clock == "thread"
            else (wall_rounds[i], thread_rounds[i])
        )
        out.append(
            InterleavedResult(
                median_ms=_median(main),
                other_ms=_median(other),
                halves_ms=(_median(main[0::2]), _median(main[1::2])),
                rounds_ms=tuple(main),
                clock=clock,
                threads=n_threads,
                rounds=rounds,
                passes=passes,
            )
        )
    return out
