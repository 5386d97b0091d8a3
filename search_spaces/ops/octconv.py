"""Octave convolution (OctConv, Chen et al., ICCV 2019) packaged as a drop-in for one Conv2d.

The paper factorises a feature map into a full-resolution high-frequency part and a
half-resolution low-frequency part that holds a share ``alpha`` of the channels, and updates
them along four paths (Eq. 4)::

    Y^H = conv(X^H; W^{H->H}) + upsample(conv(X^L; W^{L->H}), 2)
    Y^L = conv(X^L; W^{L->L}) + conv(pool(X^H, 2); W^{H->L})

with 2x2 average pooling and nearest up-sampling. In a network of OctConvs the two parts stay
separate from layer to layer; here every slot takes and returns a normal tensor, so one
:class:`OctConv2d` splits its input's channels, pools the low part, runs the four paths, and
up-samples the low output back before concatenating it after the high output. This is what
lets OctConv be chosen per slot alongside the other operators; ``build_model`` then removes
the conversions between neighbouring OctConvs again (:mod:`search_spaces.octave_pass`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from search_spaces.ops._base import OpCost, OpInfo
from search_spaces.ops._resample import add_upsampled, avg_pool2, merge
from search_spaces.slots import Slot

__all__ = [
    "INFO",
    "OctConv2d",
    "Octaves",
    "build",
    "check_slot",
    "cost",
    "merge_octaves",
    "split_channels",
    "validate",
]

#: A feature map kept as its two octaves: ``(Tensor[N, C_high, H, W],
#: Tensor[N, C_low, ceil(H / 2), ceil(W / 2)])``.
Octaves = tuple[Tensor, Tensor]

# Ties round up, but a decimal alpha is stored in binary slightly off its value: 0.29 * 50
# evaluates to 14.499999999999998, which without this slack would round down to 14, not 15.
_ROUNDING_SLACK = 1e-9


def validate(*, alpha: float) -> None:
    """Check the hyperparameter on its own: ``alpha`` must be a number in ``[0, 1)``."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise ValueError(f"octconv alpha must be a number in [0, 1), got {alpha!r}")
    if not 0.0 <= alpha < 1.0:  # also rejects NaN
        raise ValueError(
            f"octconv alpha must be in [0, 1) (the share of low-frequency channels), got {alpha!r}"
        )


def split_channels(channels: int, alpha: float) -> tuple[int, int]:
    """``(high, low)`` channel counts: ``low = alpha * channels`` rounded to nearest, ties up.

    E.g. ``split_channels(64, 0.125) == (56, 8)`` and ``split_channels(3, 0.5) == (1, 2)``.
    """
    low = math.floor(alpha * channels + 0.5 + _ROUNDING_SLACK)
    return channels - low, low


def merge_octaves(high: Tensor, low: Tensor) -> Tensor:
    """The normal tensor a pair stands for: ``low`` nearest-up-sampled to ``high``'s size, after it.

    Shapes:
        high: Tensor[N, C_high, H, W]
        low:  Tensor[N, C_low, ceil(H / 2), ceil(W / 2)]
        out:  Tensor[N, C_high + C_low, H, W]
    """
    return merge(high, low)


def _split_problem(in_channels: int, out_channels: int, groups: int, alpha: float) -> str | None:
    """Why this channel split cannot be built, or None. Shared by the constructor and check_slot."""
    if alpha == 0:
        return None  # a plain convolution: every geometry nn.Conv2d accepts is fine
    parts = {}
    for name, c in (("in_channels", in_channels), ("out_channels", out_channels)):
        high, low = split_channels(c, alpha)
        for part, n in (("low", low), ("high", high)):
            if n == 0:
                return f"alpha={alpha} leaves 0 {part}-frequency channels of {name}={c}"
        parts[name] = (high, low)
    if groups > 1 and any(n % groups for pair in parts.values() for n in pair):
        (hi, li), (ho, lo) = parts["in_channels"], parts["out_channels"]
        depthwise = " (depthwise OctConv is not supported)" if groups == in_channels else ""
        return (
            f"groups={groups} does not divide every part of the alpha={alpha} split "
            f"{hi}+{li} -> {ho}+{lo} channels{depthwise}"
        )
    return None


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class OctConv2d(nn.Module):
    """Octave convolution (Chen et al., ICCV 2019) as a drop-in for one ``nn.Conv2d``.

    A share ``alpha`` of the input and of the output channels (the last ones) is the
    low-frequency part, processed at half resolution; the four paths H->H, H->L, L->H and L->L
    of the paper's Eq. 4 exchange information between the parts. ``alpha=0`` is exactly
    ``nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups,
    bias=bias)``, stride included. The weights hold ``out_channels * in_channels / groups * k²``
    numbers like the convolution they replace, and ``alpha > 0`` costs about
    ``1 - 0.75 * alpha * (2 - alpha)`` of its multiply-adds (paper, Eq. 7).

    Choices the paper leaves open:

    * Channel split: ``low = alpha * C`` rounded to the nearest integer, ties up (see
      :func:`split_channels`), for input and output alike (``alpha_in == alpha_out``; the
      paper's first/last-layer variants with one side at 0 are not used). A split that leaves
      0 channels on either side for ``alpha > 0`` is refused rather than silently degraded.
    * Normal tensors in and out: the input's low channels are average-pooled (2x2, stride 2)
      on entry and the low output is nearest-up-sampled and concatenated after the high
      output on exit, so every slot stands alone. :meth:`OctConv2d.octaves` also takes and
      gives the ``(high, low)`` pair itself; :mod:`search_spaces.octave_pass` uses it to keep
      the pair between consecutive OctConv slots of a ResNet block, as the paper does.
    * Stride s > 1 (``alpha > 0``): like the paper's down-sampling OctConv, the input is first
      average-pooled with an s x s window and stride s (both parts, since pooling acts per
      channel), then all four paths run at stride 1; a strided H->H convolution would shift
      the high map against the up-sampled low one (paper, Appendix A). With ``alpha = 0``
      there is no second octave to misalign, so the slot's strided convolution is kept.
    * Odd sizes: pooling uses ``ceil_mode=True`` and averages only the pixels inside the map,
      so a 7x7 high map has a 4x4 low map (``ceil(H / 2)``; a 1x1 map stays 1x1). Nearest
      up-sampling to the high size equals doubling and cropping the extra last row/column:
      low pixel ``i`` covers high pixels ``2i`` and ``2i + 1``. The output is
      ``ceil(H / stride) x ceil(W / stride)``, as for the convolution.
    * Groups: all four convolutions are group convolutions (paper, Sec. 3.3), which needs
      ``groups`` to divide each of the four partial channel counts; otherwise the constructor
      raises and :func:`check_slot` gives the reason. Depthwise slots are therefore refused
      for ``alpha > 0`` (the paper's depthwise OctConv drops the exchange paths, which is a
      different operator).
    * Bias: one bias per output channel, added on the H->H and L->L paths (before
      up-sampling, which is the same thing for nearest up-sampling).
    * Initialisation: a full ``out x in/groups x k x k`` kernel drawn like torchvision's convs
      (Kaiming normal, fan-out, ReLU) and cut into the four blocks, so each block sees the
      statistics of the convolution it replaces.

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
    ) -> None:
        super().__init__()
        _check_int("in_channels", in_channels, 1)
        _check_int("out_channels", out_channels, 1)
        _check_int("kernel_size", kernel_size, 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        _check_int("stride", stride, 1)
        if padding is not None and padding != kernel_size // 2:
            raise ValueError(
                f"padding must be None or kernel_size // 2 = {kernel_size // 2} (every path is "
                f"'same'-padded so the octaves stay aligned), got {padding!r}"
            )
        _check_int("groups", groups, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups must divide in_channels={in_channels} and out_channels={out_channels}, "
                f"got {groups}"
            )
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be True or False, got {bias!r}")
        validate(alpha=alpha)
        problem = _split_problem(in_channels, out_channels, groups, alpha)
        if problem is not None:
            raise ValueError(problem)

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        self.groups = groups
        self.alpha = float(alpha)
        self.in_high, self.in_low = split_channels(in_channels, alpha)
        self.out_high, self.out_low = split_channels(out_channels, alpha)

        def weight(c_out: int, c_in: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(c_out, c_in // groups, kernel_size, kernel_size))

        # Both high parts are never empty; the three low-frequency blocks exist iff alpha > 0.
        self.weight_hh = weight(self.out_high, self.in_high)
        self.weight_hl = weight(self.out_low, self.in_high) if self.in_low else None
        self.weight_lh = weight(self.out_high, self.in_low) if self.in_low else None
        self.weight_ll = weight(self.out_low, self.in_low) if self.in_low else None
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan-out, ReLU) over the whole kernel, then cut into the blocks."""
        k = self.kernel_size
        full = torch.empty(self.out_channels, self.in_channels // self.groups, k, k)
        nn.init.kaiming_normal_(full, mode="fan_out", nonlinearity="relu")
        oh, ih = self.out_high, self.in_high // self.groups
        blocks = {
            "weight_hh": full[:oh, :ih],
            "weight_hl": full[oh:, :ih],
            "weight_lh": full[:oh, ih:],
            "weight_ll": full[oh:, ih:],
        }
        with torch.no_grad():
            for name, block in blocks.items():
                param = getattr(self, name)
                if param is not None:
                    param.copy_(block)
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """Run the four paths; see the class docstring for the shapes."""
        p, g = self.padding, self.groups
        w_hl, w_lh, w_ll = self.weight_hl, self.weight_lh, self.weight_ll
        if w_hl is None or w_lh is None or w_ll is None:  # alpha = 0: the slot's convolution
            return F.conv2d(x, self.weight_hh, self.bias, self.stride, p, 1, g)
        return merge_octaves(*self._paths(*self._split(x)))

    @property
    def accepts_octaves(self) -> bool:
        """Whether :meth:`octaves` takes an ``(high, low)`` pair: ``alpha > 0``, stride 1 or 2."""
        return self.in_low > 0 and self.stride in (1, 2)

    def octaves(self, x: Tensor | tuple[Tensor, Tensor], *, keep: bool) -> Tensor | Octaves:
        """The same operator on a normal tensor or on an ``(X^H, X^L)`` pair, as the paper runs it.

        A pair stands for the normal tensor ``merge_octaves(X^H, X^L)`` (``X^L`` nearest-up-sampled
        after ``X^H``); since 2x2 average pooling of a nearest-up-sampled map gives the map back,
        the input split of :meth:`forward` is then ``X^H`` and ``X^L`` themselves, and at stride 2
        ``pool(X^H)`` and ``pool(X^L)`` (:meth:`forward` pools the up-sampled low part twice).
        ``keep=True`` returns the output pair ``(Y^H, Y^L)`` instead of merging it, so that
        ``merge_octaves(*op.octaves(x, keep=True)) == op(merge_octaves(*x))`` up to rounding.
        Needs :attr:`accepts_octaves` for a pair input and ``alpha > 0`` for ``keep``.

        Shapes (``Hs = ceil(H / stride)``):
            x:   Tensor[N, in_channels, H, W] or
                 (Tensor[N, in_high, H, W], Tensor[N, in_low, ceil(H / 2), ceil(W / 2)])
            out: Tensor[N, out_channels, Hs, Ws] or
                 (Tensor[N, out_high, Hs, Ws], Tensor[N, out_low, ceil(Hs / 2), ceil(Ws / 2)])
        """
        if not isinstance(x, tuple):
            if not keep:
                return self(x)
            if self.in_low == 0:
                raise ValueError("an OctConv2d with alpha=0 has no low-frequency output to keep")
            return self._paths(*self._split(x))
        high, low = x
        if not self.accepts_octaves:
            raise ValueError(f"this OctConv2d ({self.extra_repr()}) takes no octave pair")
        if high.shape[1] != self.in_high or low.shape[1] != self.in_low:
            raise ValueError(
                f"octave pair of {high.shape[1]}+{low.shape[1]} channels does not match this "
                f"OctConv2d's input split {self.in_high}+{self.in_low}"
            )
        if self.stride == 2:
            high, low = avg_pool2(high), avg_pool2(low)
        y_high, y_low = self._paths(high, avg_pool2(high), low)
        return (y_high, y_low) if keep else merge_octaves(y_high, y_low)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``X^H``, ``pool(X^H)`` and ``X^L`` of a normal input (after the stride's pooling)."""
        if self.stride == 2:
            x = avg_pool2(x)
        elif self.stride > 2:
            x = F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True)
        # One pooling of the whole input gives both the low part X^L and pool(X^H) for H->L.
        pooled = avg_pool2(x)
        return x[:, : self.in_high], pooled[:, : self.in_high], pooled[:, self.in_high :]

    def _paths(self, x_high: Tensor, pooled_high: Tensor, x_low: Tensor) -> Octaves:
        """The paper's Eq. 4 at stride 1: ``(Y^H, Y^L)`` from ``X^H``, ``pool(X^H)`` and ``X^L``."""
        p, g = self.padding, self.groups
        w_hl, w_lh, w_ll = self.weight_hl, self.weight_lh, self.weight_ll
        if w_hl is None or w_lh is None or w_ll is None:
            raise ValueError("an OctConv2d with alpha=0 has only the H->H path")
        b_high = b_low = None
        if self.bias is not None:
            b_high, b_low = self.bias[: self.out_high], self.bias[self.out_high :]
        y_high = F.conv2d(x_high, self.weight_hh, b_high, 1, p, 1, g)
        y_low = F.conv2d(x_low, w_ll, b_low, 1, p, 1, g)
        y_low += F.conv2d(pooled_high, w_hl, None, 1, p, 1, g)
        low_to_high = F.conv2d(x_low, w_lh, None, 1, p, 1, g)
        # Nearest up-sampling straight to the high size = x2 then crop an odd size's extra row.
        return add_upsampled(y_high, low_to_high), y_low

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, alpha={self.alpha}"
        )
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is not None:
            s += ", bias=True"
        if self.alpha > 0:
            s += f", high/low in={self.in_high}/{self.in_low} out={self.out_high}/{self.out_low}"
        return s


def check_slot(slot: Slot, *, alpha: float) -> str | None:
    """None if ``OctConv2d(alpha=alpha)`` can replace ``slot``, else a short reason."""
    validate(alpha=alpha)
    if slot.kernel_size % 2 == 0 or slot.padding != slot.kernel_size // 2:
        return f"octconv needs an odd kernel with padding k // 2, got {slot.describe()}"
    return _split_problem(slot.in_channels, slot.out_channels, slot.groups, alpha)


def cost(slot: Slot, *, alpha: float) -> OpCost:
    """Closed-form fvcore FLOPs (one image, eval) and parameter counts of :func:`build`.

    Each path counts ``H_out·W_out·k²·C_in/groups·C_out`` at its resolution: the high
    resolution ``Hs = ceil(H / stride)`` for H->H and ``ceil(Hs / 2)`` for the other three.
    fvcore also counts one flop per output element of each nearest up-sampling (together
    ``C_out·Hs·Ws``) and nothing for average pooling, slicing, addition or concatenation.
    Parameters are those of the convolution: ``C_out·C_in/groups·k²`` (+ ``C_out`` bias).
    """
    k2, g = slot.kernel_size**2, slot.groups
    params = slot.out_channels * (slot.in_channels // g) * k2 + (
        slot.out_channels if slot.bias else 0
    )
    h, w = slot.input_size
    hs, ws = -(-h // slot.stride), -(-w // slot.stride)
    if alpha == 0:
        flops = hs * ws * k2 * slot.out_channels * (slot.in_channels // g)
        return OpCost(flops=flops, params=params, inference_params=params)
    hl, wl = -(-hs // 2), -(-ws // 2)
    ih, il = split_channels(slot.in_channels, alpha)
    oh, ol = split_channels(slot.out_channels, alpha)
    conv = hs * ws * oh * ih + hl * wl * (ol * ih + oh * il + ol * il)
    upsample = slot.out_channels * hs * ws
    return OpCost(flops=conv * k2 // g + upsample, params=params, inference_params=params)


def build(slot: Slot, *, alpha: float) -> OctConv2d:
    """The :class:`OctConv2d` that replaces ``slot``'s convolution."""
    return OctConv2d(
        slot.in_channels,
        slot.out_channels,
        slot.kernel_size,
        stride=slot.stride,
        padding=slot.padding,
        groups=slot.groups,
        bias=slot.bias,
        alpha=alpha,
    )


INFO = OpInfo(
    name="octconv",
    label="oct",
    hparams={"alpha": float},
    validate=validate,
    check_slot=check_slot,
    cost=cost,
    build=build,
)
