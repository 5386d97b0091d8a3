"""2x2 average pooling and nearest 2x up-sampling for OctConv, faster than ``F.*`` on CPU.

``F.avg_pool2d`` and ``F.interpolate(mode="nearest")`` are several times slower on CPU than
the memory traffic they need (``F.interpolate`` converts an NCHW map to channels-last and
back: three copies). For even sizes both are simple: pooling adds row pairs, then column
pairs; up-sampling repeats columns into a half-height map, then writes each row twice. The
results are the same numbers as ``F.*`` up to the order of the four-term sum in pooling (one
rounding step). Autograd goes through small functions that are each other's adjoint (the
gradient of pooling is a quarter of the up-sampled gradient, that of up-sampling the 2x2 sum
of the gradient). Adding an up-sampled map into a contiguous one, with or without autograd,
writes no full-size up-sampled copy: the column-doubled map is added to both rows of each
pair in place.

``F.*`` is used instead for odd sizes (ceil-mode pooling of a partial window, cropped
up-sampling), while tracing (fvcore counts ``upsample_nearest2d``; the ONNX exporter exports
``Resize`` and ``AveragePool``) and under ``torch.compile``/``torch.export``, which fuse these
themselves. So every FLOPs count and exported graph is unchanged.

Imports only torch; must not import other ConvNAS modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["add_upsampled", "avg_pool2", "merge", "use_fast"]


def use_fast(x: Tensor) -> bool:
    """Whether the fast forms may replace ``F.*`` for ``x`` (a map at the higher resolution)."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False  # (sizes are traced values then: no Python tests on them)
    return x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0


def _sum2x2(x: Tensor) -> Tensor:
    """Sum of each 2x2 window of an even-sized map: row pairs, then column pairs."""
    rows = x.unflatten(2, (x.shape[2] // 2, 2))
    half = rows[:, :, :, 0] + rows[:, :, :, 1]
    cols = half.unflatten(3, (half.shape[3] // 2, 2))
    return cols[..., 0] + cols[..., 1]


def _columns_doubled(low: Tensor) -> Tensor:
    """``Tensor[N, C, h, 2w]``: every column of ``low`` twice (one copy of half the output)."""
    n, c, h, w = low.shape
    return low.unsqueeze(-1).expand(n, c, h, w, 2).reshape(n, c, h, 2 * w)


def _write_upsampled(out: Tensor, low: Tensor) -> None:
    """``out = nearest_upsample(low)`` for ``out`` of exactly twice ``low``'s size."""
    n, c, h, w = out.shape
    out.view(n, c, h // 2, 2, w).copy_(_columns_doubled(low).unsqueeze(3))


def _add_broadcast(out: Tensor, low: Tensor) -> None:
    """``out += nearest_upsample(low)`` in place, ``out`` contiguous and exactly twice the size
    of ``low``: the column-doubled half-size map added to both rows of each pair, with no
    full-size up-sampled copy (on CPU 0.6x of copy-then-add; a 6-d broadcast of ``low`` over
    each 2x2 window, with no copy at all, was slower than either)."""
    n, c, h, w = out.shape
    out.view(n, c, h // 2, 2, w).add_(_columns_doubled(low).unsqueeze(3))


def _upsampled(low: Tensor) -> Tensor:
    n, c, h, w = low.shape
    out = low.new_empty(n, c, 2 * h, 2 * w)
    _write_upsampled(out, low)
    return out


class _Pool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return _sum2x2(x).mul_(0.25)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        # The quarter on the small map: the same numbers (x0.25 is exact), a quarter the work.
        return _upsampled(grad * 0.25)


class _Upsample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, low: Tensor) -> Tensor:  # type: ignore[override]
        return _upsampled(low)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return _sum2x2(grad)


class _AddUpsampled(torch.autograd.Function):
    """``high += nearest_upsample(low)`` in place (``high`` contiguous, twice ``low``'s size)."""

    @staticmethod
    def forward(ctx, high: Tensor, low: Tensor) -> Tensor:  # type: ignore[override]
        _add_broadcast(high, low)
        ctx.mark_dirty(high)
        return high

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return grad, _sum2x2(grad)


def _needs_grad(x: Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def avg_pool2(x: Tensor) -> Tensor:
    """``F.avg_pool2d(x, 2, 2, ceil_mode=True)``.

    Shapes:
        x:   Tensor[N, C, H, W]
        out: Tensor[N, C, ceil(H / 2), ceil(W / 2)]
    """
    if not use_fast(x):
        return F.avg_pool2d(x, 2, 2, ceil_mode=True)
    return _Pool.apply(x) if _needs_grad(x) else _sum2x2(x).mul_(0.25)


def _fits(high: Tensor, low: Tensor) -> bool:
    if not use_fast(high):
        return False
    return high.shape[-2:] == (2 * low.shape[-2], 2 * low.shape[-1])


def add_upsampled(high: Tensor, low: Tensor) -> Tensor:
    """``high + nearest_upsample(low)`` to ``high``'s size; may add in place into ``high``.

    Shapes:
        high: Tensor[N, C, H, W]
        low:  Tensor[N, C, ceil(H / 2), ceil(W / 2)]
    """
    if not _fits(high, low):
        return high + F.interpolate(low, size=(high.shape[-2], high.shape[-1]), mode="nearest")
    if not high.is_contiguous():
        return high.add_(_Upsample.apply(low)) if _needs_grad(low) else high + _upsampled(low)
    if _needs_grad(high) or _needs_grad(low):
        return _AddUpsampled.apply(high, low)
    _add_broadcast(high, low)
    return high


def merge(high: Tensor, low: Tensor) -> Tensor:
    """``cat([high, nearest_upsample(low)], dim=1)`` to ``high``'s size.

    Shapes:
        high: Tensor[N, C_high, H, W]
        low:  Tensor[N, C_low, ceil(H / 2), ceil(W / 2)]
        out:  Tensor[N, C_high + C_low, H, W]
    """
    n, c_high, h, w = high.shape
    if not _fits(high, low):
        return torch.cat([high, F.interpolate(low, size=(h, w), mode="nearest")], dim=1)
    if _needs_grad(high) or _needs_grad(low):
        return torch.cat([high, _Upsample.apply(low)], dim=1)
    out = high.new_empty(n, c_high + low.shape[1], h, w)
    out[:, :c_high] = high
    _write_upsampled(out[:, c_high:], low)
    return out
