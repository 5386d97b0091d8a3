"""SCConv: spatial and channel reconstruction convolution (Li et al., CVPR 2023).

An SRU (spatial reconstruction unit) followed by a CRU (channel reconstruction unit) replaces
one dense k×k convolution. Hyperparameters: ``alpha`` (split ratio of the CRU), ``r``
(squeeze ratio), ``g`` (groups of the k×k group-wise convolution); the paper's setting is
``alpha=1/2, r=2, g=2``.

Only k×k slots with k > 1 and ``groups == 1`` are accepted: the CRU's only spatial operator is
its k×k group-wise convolution, so a 1×1 slot has nothing for it to replace, and a grouped
slot's block structure has no counterpart in the paper.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from search_spaces.ops._base import OpCost, OpInfo
from search_spaces.slots import Slot

__all__ = [
    "CRU",
    "FUSED_MIN_ELEMENTS",
    "GATE_THRESHOLD",
    "GN_MAX_GROUPS",
    "INFO",
    "MERGED_UPPER_MAX_CHANNELS",
    "SCConv2d",
    "SRU",
    "build",
    "check_slot",
    "cost",
    "gn_groups",
    "split_channels",
    "validate",
]

#: The SRU's gate threshold on ``sigmoid(w_gamma * GN(X))`` (0.5 in the paper).
GATE_THRESHOLD = 0.5
#: The paper's GroupNorm group count; fewer where 16 does not divide the channels (see gn_groups).
GN_MAX_GROUPS = 16
#: Without autograd, inputs with fewer elements than this take the plain form (see _fused):
#: on CPU the fused form paid from about 64@56 at batch 1 and lost on CIFAR-sized maps.
FUSED_MIN_ELEMENTS = 1 << 17
#: The fused form runs the upper branch ``GWC(up) + PWC1(up)`` as one dense k×k convolution
#: (the group-wise kernel's blocks with the point-wise kernel added at the centre) when the
#: squeezed upper part has at most this many channels: a group-wise convolution over so few
#: channels per group is slow on CPU, and one dense convolution beat the pair despite its
#: ``9g / (9 + g)`` times the MACs (64@56 train: 0.35 vs 0.50 of the slot's conv); with 32
#: squeezed channels the pair was as fast or faster (experiments/results/op_speed.md).
MERGED_UPPER_MAX_CHANNELS = 16


def validate(*, alpha: float = 0.5, r: int = 2, g: int = 2) -> None:
    """Check the types and ranges of SCConv's hyperparameters; raise ``ValueError`` if bad.

    ``alpha`` is a number in the open interval (0, 1) (both CRU parts must be non-empty);
    ``r`` and ``g`` are integers >= 1.
    """
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, numbers.Real)
        or not math.isfinite(alpha)
        or not 0.0 < alpha < 1.0
    ):
        raise ValueError(f"alpha must be a number in the open interval (0, 1), got {alpha!r}")
    if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r < 1:
        raise ValueError(f"r (squeeze ratio) must be an integer >= 1, got {r!r}")
    if isinstance(g, bool) or not isinstance(g, numbers.Integral) or g < 1:
        raise ValueError(f"g (groups of the group-wise conv) must be an integer >= 1, got {g!r}")


def gn_groups(channels: int) -> int:
    """GroupNorm groups of the SRU: the largest divisor of ``channels`` not above 16 that
    leaves at least two channels per group.

    16 is the paper's setting. A group of one channel on a 1×1 map (late stages at small
    resolutions) would normalise a single value: GroupNorm rejects that for batch 1 and
    outputs the constant ``beta`` otherwise, so below 32 channels fewer groups are used.
    """
    limit = max(1, min(GN_MAX_GROUPS, channels // 2))
    return next(d for d in range(limit, 0, -1) if channels % d == 0)


def split_channels(
    in_channels: int, out_channels: int, *, alpha: float, r: int, g: int
) -> tuple[int, int, int, int] | str:
    """The CRU's channel split ``(upper, lower, upper_squeezed, lower_squeezed)``, or a reason.

    ``upper = floor(alpha * in_channels + 1/2)`` (nearest, halves up, so that e.g.
    ``0.29 * 100`` is 29, not 28), ``lower = in_channels - upper``; the squeezed counts are
    ``upper // r`` and ``lower // r``. A string is returned, naming the hyperparameter at fault,
    when a part or a squeezed part is empty, when ``g`` does not divide the squeezed upper
    channels or ``out_channels``, or when ``out_channels`` does not exceed the reused lower
    channels (the lower point-wise conv makes ``out_channels - lower_squeezed`` of them).
    """
    up = math.floor(alpha * in_channels + 0.5)
    low = in_channels - up
    if up < 1 or low < 1:
        part = "upper" if up < 1 else "lower"
        return f"alpha={alpha} leaves 0 channels in the {part} part of {in_channels} channels"
    up_sq, low_sq = up // r, low // r
    if up_sq < 1 or low_sq < 1:
        part, n = ("upper", up) if up_sq < 1 else ("lower", low)
        return f"r={r} squeezes the {n} {part} channels (alpha={alpha} of {in_channels}) to 0"
    if up_sq % g:
        return (
            f"g={g} does not divide the {up_sq} squeezed upper channels "
            f"(alpha={alpha}, r={r}, {in_channels} in)"
        )
    if out_channels % g:
        return f"g={g} does not divide out_channels={out_channels}"
    if out_channels <= low_sq:
        return (
            f"out_channels={out_channels} must exceed the {low_sq} reused lower channels "
            f"(alpha={alpha}, r={r}, {in_channels} in)"
        )
    return up, low, up_sq, low_sq


def _geometry_reason(kernel_size: int, groups: int) -> str | None:
    if kernel_size <= 1 or kernel_size % 2 == 0:
        return f"scconv needs a k x k slot with odd k > 1, got kernel_size={kernel_size}"
    if groups != 1:
        return f"groups > 1 not supported by scconv, got groups={groups}"
    return None


def check_slot(slot: Slot, *, alpha: float = 0.5, r: int = 2, g: int = 2) -> str | None:
    """``None`` if SCConv with these hyperparameters can replace ``slot``, else the reason."""
    reason = _geometry_reason(slot.kernel_size, slot.groups)
    if reason is not None:
        return reason
    split = split_channels(slot.in_channels, slot.out_channels, alpha=alpha, r=r, g=g)
    return split if isinstance(split, str) else None


def cost(slot: Slot, *, alpha: float = 0.5, r: int = 2, g: int = 2) -> OpCost:
    """Closed-form fvcore FLOPs and parameters of :class:`SCConv2d` at ``slot``.

    Everything after the stride pooling runs at ``P = ceil(H/s)·ceil(W/s)`` pixels. fvcore
    counts GroupNorm as 5 per element, each convolution as its MACs (bias not counted), the two
    global average pools of the fuse as their input sizes, and nothing for the average pooling,
    sigmoid, gating, softmax and element-wise sums.
    """
    c1, c2, k, s = slot.in_channels, slot.out_channels, slot.kernel_size, slot.stride
    reason = _geometry_reason(k, slot.groups)
    split = split_channels(c1, c2, alpha=alpha, r=r, g=g) if reason is None else reason
    if isinstance(split, str):
        raise ValueError(split)
    up, low, up_sq, low_sq = split
    h, w = slot.input_size
    pixels = (-(-h // s)) * (-(-w // s))
    weights = (
        up * up_sq  # upper squeeze
        + low * low_sq  # lower squeeze
        + c2 * (up_sq // g) * k * k  # group-wise k×k
        + c2 * up_sq  # upper point-wise
        + (c2 - low_sq) * low_sq  # lower point-wise
    )
    flops = pixels * (weights + 5 * c1 + 2 * c2)
    params = weights + 2 * c1 + (c2 if slot.bias else 0)
    return OpCost(flops=flops, params=params, inference_params=params)


def _kaiming(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _fused(x: Tensor) -> bool:
    """Whether a forward pass on ``x`` takes the fused autograd functions or the plain form.

    Plain (the paper's formulas as separate tensor operations, the same values) while a pass is
    traced, exported or compiled, and for a small input without autograd: there, per-operation
    overhead dominates and the plain form has fewer operations. Fused otherwise: it writes and
    keeps fewer full-size maps (see ``experiments/results/op_speed.md``).
    """
    # (A TorchScript-based ONNX export traces, so is_tracing covers it; all four are cheap.)
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return False
    return torch.is_grad_enabled() or x.numel() >= FUSED_MIN_ELEMENTS


def _cuts(total: int, *points: int) -> list[tuple[int, int]]:
    """Consecutive ``[a, b)`` ranges of ``0..total`` cut at every ``point mod total``."""
    edges = sorted({0, total, *(p % total for p in points)})
    return list(zip(edges[:-1], edges[1:]))


def _take(parts: tuple[Tensor, ...], a: int, b: int) -> Tensor:
    """Channels ``[a, b)`` of the concatenation of ``parts`` (a range inside one part)."""
    for t in parts:
        if a < t.shape[1]:
            return t[:, a:b]
        a, b = a - t.shape[1], b - t.shape[1]
    raise IndexError("channel range outside the parts")


class _GateSwap(torch.autograd.Function):
    """The SRU's gate and cross reconstruction, ``Y·m + roll(Y·(1 - m), C // 2)``, written
    straight into contiguous channel parts; keeps only the boolean mask for backward.

    Backward: channel ``c`` of the input gradient is the output gradient at ``c`` where the
    mask is set and at ``(c + C // 2) mod C`` where it is not - one select per range.
    """

    @staticmethod
    def forward(ctx: Any, y: Tensor, gate: Tensor, sizes: tuple[int, ...]) -> tuple[Tensor, ...]:
        n, c, h, w = y.shape
        half = c // 2
        outs = tuple(y.new_empty(n, k, h, w) for k in sizes)
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        for a, b in _cuts(c, half, *starts):
            dst, src = _take(outs, a, b), (a - half) % c
            torch.mul(y[:, a:b], gate[:, a:b], out=dst)
            dst.addcmul_(y[:, src : src + b - a], ~gate[:, src : src + b - a])
        ctx.save_for_backward(gate)
        ctx.sizes, ctx.half = sizes, half
        return outs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        (gate,) = ctx.saved_tensors
        c, half = gate.shape[1], ctx.half
        dy = grads[0].new_empty(gate.shape)
        starts = [sum(ctx.sizes[:i]) for i in range(len(ctx.sizes))]
        cuts = _cuts(c, c - half, *starts, *(s - half for s in starts))
        for a, b in cuts:
            src = (a + half) % c
            torch.where(
                gate[:, a:b],
                _take(grads, a, b),
                _take(grads, src, src + b - a),
                out=dy[:, a:b],
            )
        return dy, None, None


def _fuse_weights(y1: Tensor, p2: Tensor, low: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 8: ``beta = softmax(GAP(Y1), GAP([P2, low]))`` over the pair, per channel."""
    s2 = torch.cat([F.adaptive_avg_pool2d(p2, 1), F.adaptive_avg_pool2d(low, 1)], dim=1)
    beta = torch.softmax(torch.stack([F.adaptive_avg_pool2d(y1, 1), s2]), dim=0)
    return beta[0], beta[1]


class _Fuse(torch.autograd.Function):
    """The CRU's fuse (Eqs. 8-9) ``beta1·Y1 + beta2·[P2, low]``, pooling and softmax included,
    without building ``[P2, low]``; the backward folds the pooling's gradient into one write
    per map instead of expanding it into extra full-size maps.
    """

    @staticmethod
    def forward(ctx: Any, y1: Tensor, p2: Tensor, low: Tensor) -> Tensor:
        m = p2.shape[1]
        b1, b2 = _fuse_weights(y1, p2, low)
        out = torch.mul(y1, b1)
        out[:, :m].addcmul_(p2, b2[:, :m])
        out[:, m:].addcmul_(low, b2[:, m:])
        ctx.save_for_backward(y1, p2, low, b1, b2)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, ...]:
        y1, p2, low, b1, b2 = ctx.saved_tensors
        m = p2.shape[1]
        g_p2, g_low = grad[:, :m], grad[:, m:]

        def dot(a: Tensor, b: Tensor) -> Tensor:  # per sample and channel, over the pixels
            return (a * b).sum(dim=(2, 3), keepdim=True)

        d_b1 = dot(grad, y1)
        d_b2 = torch.cat([dot(g_p2, p2), dot(g_low, low)], dim=1)
        # Softmax of a pair: d s1 = b1·b2·(d b1 - d b2) = -d s2; the pooling spreads d s / HW.
        d_s1 = (b1 * b2 * (d_b1 - d_b2)).div_(y1.shape[2] * y1.shape[3])
        d_s2 = -d_s1
        return (
            torch.addcmul(d_s1, grad, b1),
            torch.addcmul(d_s2[:, :m], g_p2, b2[:, :m]),
            torch.addcmul(d_s2[:, m:], g_low, b2[:, m:]),
        )


class SRU(nn.Module):
    """Spatial reconstruction unit (the paper's Eqs. 1-4): separate, then cross-reconstruct.

    ``Y = GN(X)``; ``w = gamma / sum(gamma)`` (Eq. 2); the informative mask is
    ``sigmoid(w·Y) > 0.5`` and the non-informative mask its complement (hard, binary gates).
    The masks multiply the *normalised* map ``Y``: the paper writes ``X``, but through a hard
    gate GroupNorm's ``gamma``/``beta`` would then get no gradient at all and Eq. 2's learned
    importance could never be learned; gating ``Y`` lets them train through the value path.

    Cross reconstruction (Eq. 4) splits both masked maps in halves and adds the first half of
    one to the second half of the other; for even ``C`` that is exactly
    ``Y1 + roll(Y2, C // 2)`` along channels, which is the form used for every ``C`` (for odd
    ``C`` channel ``i`` receives the non-informative part of channel ``(i - C // 2) mod C``).

    GroupNorm uses the paper's 16 groups, or fewer where 16 does not divide ``C`` or would
    leave a single channel per group (see :func:`gn_groups`).

    Shapes:
        x:   Tensor[N, C, H, W]
        out: Tensor[N, C, H, W]
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.gn = nn.GroupNorm(gn_groups(channels), channels)

    def gate(self, y: Tensor, *, fused: bool = True) -> Tensor:
        """The informative mask: ``sigmoid(w·Y) > 0.5`` tested as ``w·Y > 0`` (no gradient).

        The two agree except where rounding makes ``sigmoid`` of a tiny positive product
        exactly 0.5 (``0 < w·Y < ~6e-8``), a set of measure zero for a normalised map. In the
        fused form, when every ``w`` has the same sign (e.g. all ``gamma > 0``, as
        initialised) the test is the sign of ``Y`` alone, without the product.
        """
        with torch.no_grad():
            gamma = self.gn.weight
            w = gamma / gamma.sum()
            if fused:
                if bool((w > 0).all()):
                    return y > 0
                if bool((w < 0).all()):
                    return y < 0
            return (y * w.view(1, -1, 1, 1)) > 0

    def parts(self, x: Tensor, sizes: tuple[int, ...]) -> tuple[Tensor, ...]:
        """The SRU's output cut along channels into contiguous tensors of ``sizes`` channels.

        Fused (see :func:`_fused`): the gate and the swap write the parts directly, and only
        the boolean mask is kept for backward; the CRU's upper and lower parts come out without
        a ``split`` of one map (whose halves a batched convolution would copy first).
        """
        if not _fused(x):
            return tuple(torch.split(self.plain(x), list(sizes), dim=1))
        return self._fused_parts(x, sizes)

    def _fused_parts(self, x: Tensor, sizes: tuple[int, ...]) -> tuple[Tensor, ...]:
        y = self.gn(x)
        return _GateSwap.apply(y, self.gate(y), sizes)

    def plain(self, x: Tensor) -> Tensor:
        """The SRU as separate tensor operations: mask, where, subtraction and ``roll``."""
        y = self.gn(x)
        informative = torch.where(self.gate(y, fused=False), y, 0.0)
        redundant = y - informative
        return informative + torch.roll(redundant, shifts=self.channels // 2, dims=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.parts(x, (self.channels,))[0]

    def extra_repr(self) -> str:
        return f"{self.channels}, threshold={GATE_THRESHOLD}"


class CRU(nn.Module):
    """Channel reconstruction unit (the paper's Eqs. 5-9): split, transform, fuse.

    Split ``C1`` channels into ``upper`` and ``lower`` (see :func:`split_channels`), squeeze
    each by ``r`` with a 1×1 conv. Upper: ``Y1 = GWC(up) + PWC1(up)`` with a k×k conv of ``g``
    groups and a 1×1 conv, both to ``C2``. Lower: ``Y2 = [PWC2(low), low]``, a 1×1 conv to
    ``C2 - lower_squeezed`` concatenated with the reused squeezed features (Eq. 6 / Eq. 11:
    the squeeze follows ``C1``, both branches end at ``C2``). Fuse: per output channel
    ``beta = softmax(GAP(Y1), GAP(Y2))`` over the pair (Eq. 8, ``beta1 + beta2 = 1``) and
    ``Y = beta1·Y1 + beta2·Y2`` (Eq. 9). No conv has a bias (the paper omits it).

    Shapes:
        x:   Tensor[N, C1, H, W]
        out: Tensor[N, C2, H, W]
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        alpha: float,
        r: int,
        g: int,
    ) -> None:
        super().__init__()
        split = split_channels(in_channels, out_channels, alpha=alpha, r=r, g=g)
        if isinstance(split, str):
            raise ValueError(split)
        self.upper, self.lower, up_sq, low_sq = split
        self.squeeze_up = _kaiming(nn.Conv2d(self.upper, up_sq, 1, bias=False))
        self.squeeze_low = _kaiming(nn.Conv2d(self.lower, low_sq, 1, bias=False))
        self.gwc = _kaiming(
            nn.Conv2d(
                up_sq, out_channels, kernel_size, padding=kernel_size // 2, groups=g, bias=False
            )
        )
        self.pwc1 = _kaiming(nn.Conv2d(up_sq, out_channels, 1, bias=False))
        self.pwc2 = _kaiming(nn.Conv2d(low_sq, out_channels - low_sq, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        up, low = torch.split(x, [self.upper, self.lower], dim=1)
        return self.forward_parts(up, low, fused=_fused(x))

    def forward_parts(self, up: Tensor, low: Tensor, *, fused: bool = True) -> Tensor:
        """The CRU on its input already split into the upper and lower channels.

        Fused: the upper sum in place, and one autograd function for the fuse that never
        concatenates the lower branch; plain: the paper's operations one by one.
        """
        up, low = self.squeeze_up(up), self.squeeze_low(low)
        if not fused:
            y1 = self.gwc(up) + self.pwc1(up)
            y2 = torch.cat([self.pwc2(low), low], dim=1)
            s = torch.stack([F.adaptive_avg_pool2d(y1, 1), F.adaptive_avg_pool2d(y2, 1)])
            beta = torch.softmax(s, dim=0)  # pairwise over (upper, lower), per channel
            return beta[0] * y1 + beta[1] * y2
        return _Fuse.apply(self.upper_branch(up), self.pwc2(low), low)

    @property
    def merges_upper(self) -> bool:
        """Whether the fused form runs ``GWC + PWC1`` as one convolution (see
        :data:`MERGED_UPPER_MAX_CHANNELS`)."""
        return self.gwc.in_channels <= MERGED_UPPER_MAX_CHANNELS

    def upper_weight(self) -> Tensor:
        """The dense k×k kernel ``W`` with ``conv(up, W) = GWC(up) + PWC1(up)``.

        ``W`` holds the group-wise kernel's ``g`` blocks on its block diagonal (zeros across
        groups) plus the point-wise kernel at the centre tap; it is built from the two
        parameters on every call, so their gradients are those of the separate convolutions.
        """
        wg, g = self.gwc.weight, self.gwc.groups
        per_group, k = wg.shape[1], wg.shape[2]
        rows = [  # group i's output filters see input channels [i·per_group, (i+1)·per_group)
            F.pad(part, (0, 0, 0, 0, i * per_group, (g - 1 - i) * per_group))
            for i, part in enumerate(wg.chunk(g, dim=0))
        ]
        return torch.cat(rows, dim=0) + F.pad(self.pwc1.weight, (k // 2,) * 4)

    def upper_branch(self, up: Tensor) -> Tensor:
        """``Y1 = GWC(up) + PWC1(up)`` on the squeezed upper part: one dense convolution when
        :attr:`merges_upper`, else the two convolutions summed in place (a convolution's
        backward does not need its output)."""
        if self.merges_upper:
            return F.conv2d(up, self.upper_weight(), None, 1, self.gwc.padding)
        return self.gwc(up).add_(self.pwc1(up))

    def extra_repr(self) -> str:
        return f"upper={self.upper}, lower={self.lower}"


class SCConv2d(nn.Module):
    """SCConv (Li et al., CVPR 2023) as a drop-in for one dense k×k ``nn.Conv2d``.

    ``[AvgPool2d] -> SRU -> CRU [+ bias]``. Choices the paper leaves open:

    * ``in_channels != out_channels`` (the paper's C1, C2, Eq. 11): the SRU and the CRU's
      split and squeeze work on C1; the upper k×k group-wise and 1×1 convs produce C2, the
      lower 1×1 conv produces ``C2 - lower_squeezed`` and the reused squeezed features fill
      the rest, so the pairwise fuse sees two C2-channel maps.
    * ``stride > 1``: ``AvgPool2d(stride, stride, ceil_mode=True)`` *before* the SCConv (the
      published study pools with AvgPool2d; its FLOPs are reproduced only with the pool
      first, which also runs all of SCConv at the output resolution). ``ceil_mode`` keeps the
      border of odd sizes, averaging only the pixels inside the map, so the output is
      ``ceil(H / stride)`` like the convolution it replaces.
    * Channel counts: ``upper = round(alpha·C1)`` (halves up), ``lower = C1 - upper``,
      squeezed counts ``upper // r`` and ``lower // r``; all must be >= 1, ``g`` must divide
      the squeezed upper channels and C2, and C2 must exceed the squeezed lower channels,
      else ``ValueError`` (``check_slot`` returns the same reason).
    * GroupNorm of the SRU: 16 groups (the paper's setting), or the largest divisor of C1
      below 16 that keeps two channels per group, so 1×1 maps still work (see
      :func:`gn_groups`). The hard gate multiplies ``GN(X)``, not ``X`` (see :class:`SRU`).
    * ``bias=True`` adds one learnable bias per output channel after the fuse, as the
      replaced convolution would; the inner convolutions never have biases.

    Normalisation is per sample (GroupNorm), so train and eval mode compute the same thing.

    Shapes:
        x:   Tensor[N, in_channels, H, W]
        out: Tensor[N, out_channels, ceil(H / stride), ceil(W / stride)]
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bias: bool = False,
        alpha: float = 0.5,
        r: int = 2,
        g: int = 2,
    ) -> None:
        super().__init__()
        validate(alpha=alpha, r=r, g=g)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name, value in (("kernel_size", kernel_size), ("stride", stride), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        reason = _geometry_reason(kernel_size, groups)
        if reason is not None:
            raise ValueError(reason)
        if padding is not None and padding != kernel_size // 2:
            raise ValueError(
                f"padding must be None or kernel_size // 2 = {kernel_size // 2}, got {padding!r}"
            )
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be True or False, got {bias!r}")
        split = split_channels(in_channels, out_channels, alpha=alpha, r=r, g=g)
        if isinstance(split, str):
            raise ValueError(split)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.alpha, self.r, self.g = alpha, r, g
        self.pool: nn.Module = (
            nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        )
        self.sru = SRU(in_channels)
        self.cru = CRU(in_channels, out_channels, kernel_size, alpha=alpha, r=r, g=g)
        if bias:
            self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(x)
        fused = _fused(x)
        if fused:
            up, low = self.sru._fused_parts(x, (self.cru.upper, self.cru.lower))
        else:
            up, low = torch.split(self.sru.plain(x), [self.cru.upper, self.cru.lower], dim=1)
        out = self.cru.forward_parts(up, low, fused=fused)
        if self.bias is not None:
            out = out.add_(self.bias.view(1, -1, 1, 1))  # neither form's last op keeps it
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, alpha={self.alpha}, r={self.r}, g={self.g}, "
            f"bias={self.bias is not None}"
        )


def build(slot: Slot, *, alpha: float = 0.5, r: int = 2, g: int = 2) -> SCConv2d:
    """The :class:`SCConv2d` that replaces ``slot``; ``ValueError`` if it does not fit."""
    return SCConv2d(
        slot.in_channels,
        slot.out_channels,
        slot.kernel_size,
        stride=slot.stride,
        padding=slot.padding,
        groups=slot.groups,
        bias=slot.bias,
        alpha=alpha,
        r=r,
        g=g,
    )


INFO = OpInfo(
    name="scconv",
    label="scconv",
    hparams={"alpha": float, "r": int, "g": int},
    validate=validate,
    check_slot=check_slot,
    cost=cost,
    build=build,
)
