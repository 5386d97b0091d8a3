"""Where a candidate runs: the device, mixed precision, CPU threads, and faults as one line.

:func:`resolve_device` and :func:`resolve_amp_dtype` turn the user's ``device``/``amp``
settings into torch objects (``ValueError`` naming a bad one); :func:`configure_cpu_threads`
picks torch's thread count; :func:`describe_failure` and :func:`release_cuda_memory` turn a
crashed forward/backward pass into a result the search records and goes on from. Imports only
torch; must not import other ``evaluators`` modules, nor ``nas``.
"""

from __future__ import annotations

import gc
import os

import torch

__all__ = [
    "AMP_CHOICES",
    "configure_cpu_threads",
    "describe_failure",
    "release_cuda_memory",
    "resolve_amp_dtype",
    "resolve_device",
]

AMP_CHOICES = (True, False, "bf16", "fp16", "off")

_OOM_ERRORS: tuple[type[BaseException], ...] = (
    getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),
)


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse ``cpu``/``cuda``/``cuda:N``; raise ``ValueError`` when CUDA is asked for but absent."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device is {device!r} but CUDA is not available; use 'cpu'")
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} does not exist; {torch.cuda.device_count()} GPU(s) visible"
            )
        dev = torch.device("cuda", index)
    return dev


def resolve_amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``: None on CPU or when AMP is off.

    ``True`` picks bfloat16 where the GPU supports it, else float16.
    """
    if amp not in AMP_CHOICES or isinstance(amp, int) and not isinstance(amp, bool):
        raise ValueError(f"amp must be one of True, False, 'bf16', 'fp16', 'off', got {amp!r}")
    if device.type != "cuda" or amp is False or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def configure_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count for CPU training and return it.

    With ``threads`` given, use it. Otherwise, when the user has not chosen one through
    ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``, use the CPUs this process may run on (its
    affinity mask, which respects container CPU sets) but never more than torch's default
    (one per physical core: hyper-threads slow convolutions down). Called once per process
    by the evaluator; the choice is global to the process, as torch's setting is.
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        torch.set_num_threads(threads)
        return threads
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return torch.get_num_threads()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    n = max(1, min(usable, torch.get_num_threads()))
    torch.set_num_threads(n)
    return n


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else "(no message)"


def describe_failure(exc: BaseException, phase: str) -> str:
    """One line for a fault: ``"out of memory in forward: ..."`` or ``"<Type> in <phase>: ..."``."""
    if isinstance(exc, _OOM_ERRORS) or "can't allocate memory" in str(exc):
        return f"out of memory in {phase}: {_first_line(exc)}"
    return f"{type(exc).__name__} in {phase}: {_first_line(exc)}"


def release_cuda_memory() -> None:
    """Collect garbage and return cached CUDA blocks to the driver (after a fault).

    Call it outside the ``except`` block: the exception's traceback keeps the failed pass's
    tensors alive until the block ends.
    """
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
