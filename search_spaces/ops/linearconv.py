"""LinearConv (Kahatapitiya & Rodrigo, WACV 2021): secondary filters as linear combinations.

A :class:`LinearConv2d` learns a share ``alpha`` of a convolution's output filters directly (the
*primary* filters ``W_p``) and a matrix of coefficients ``A`` that combines them into the
remaining *secondary* filters, ``U_s = Aᵀ V_p`` (``V_p``: the primary filters flattened). The
input goes through one ordinary convolution with the concatenated weight ``[W_p; W_s]``; only
the weight is built differently (the paper's Algorithm 2). ``rank`` replaces ``A`` by the
product ``A1 A2`` of two thin matrices (the paper's Eq. 1).

The paper's correlation-based regularisation loss (Algorithm 1), which pushes the primary
filters towards orthogonality, is :meth:`LinearConv2d.regularization_loss` per layer and
:func:`linearconv_regularization` summed over a model; a trainer adds
``REG_LAMBDA_DEFAULT * linearconv_regularization(model)`` to its loss every
``REG_EVERY_DEFAULT`` batches, as in the paper.

Cost convention: ``params`` are the learnable parameters (primary filters + coefficients + bias,
what the paper's tables report); ``inference_params`` the weight count of the fused
``nn.Conv2d`` (:meth:`LinearConv2d.to_conv`); ``flops`` are those of that one convolution,
because costs are counted in eval mode, where the combined weight is a cached constant (the
paper's "same computational requirement at inference"). The per-step cost of building the
weight during training (``P·S·D`` MACs full rank, ``r·(P + S)·D`` rank-reduced, with
``D = C_in/groups·k²``) is not part of ``flops``.
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
from search_spaces.slots import Slot, set_module

__all__ = [
    "INFO",
    "MIX_ELEMENT_COST",
    "REG_EVERY_DEFAULT",
    "REG_LAMBDA_DEFAULT",
    "LinearConv2d",
    "build",
    "check_slot",
    "correlation_loss",
    "cost",
    "fuse_linearconv",
    "linearconv_regularization",
    "split_filters",
    "validate",
]

#: Regularisation strength λ: "with a regularization strength of λ = 10⁻²" (Sec. 4.2,
#: Experimental setup).
REG_LAMBDA_DEFAULT = 1e-2
#: MACs one extra written value of the train-mode "mix" form is worth when choosing the form
#: (:meth:`LinearConv2d.training_form`): measured on CPU (1 thread, batch 32, interleaved),
#: where a 16-channel 3×3 layer at 32² trains faster combined (1.03× a conv, mixed 1.21×) and
#: a 32-channel one at 16² mixed (0.90×, combined 1.05×); the rule picks both right from 61
#: to 90. No ResNet-50 layer at 224², batch 8, changes form between 80 and 128.
MIX_ELEMENT_COST = 80
#: Add λ·L_c to the loss once every this many batches: "The proposed regularization loss is
#: added to the target loss once every 10 batches" (Sec. 4.2, Experimental setup).
REG_EVERY_DEFAULT = 10


def _describe_rank(rank: int | None) -> str:
    return "full" if rank is None else str(rank)


def validate(*, alpha: float = 0.5, rank: int | None = None) -> None:
    """Check the hyperparameters on their own; raise ``ValueError`` naming the bad one.

    ``alpha`` must be a real number with ``0 < alpha < 1`` (the paper's ``α ∈ (0, 1)``;
    ``alpha = 1`` would leave no secondary filters, i.e. a plain convolution). ``rank`` is
    ``None`` (full-rank coefficients) or an integer ``>= 1``.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    if not (math.isfinite(alpha) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1) (exclusive), got {alpha!r}")
    if rank is None:
        return
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
        raise ValueError(f"rank must be None (full rank) or an integer >= 1, got {rank!r}")
    if rank < 1:
        raise ValueError(f"rank must be None (full rank) or an integer >= 1, got {rank!r}")


def split_filters(out_channels: int, alpha: float) -> tuple[int, int]:
    """``(primary, secondary)`` filter counts: ``primary = round(alpha · out_channels)``.

    The paper picks ``alpha`` so that ``alpha · f`` is an integer; for other channel counts we
    round to the nearest integer, halves up (a tiny tolerance absorbs float noise such as
    ``0.7 · 10 = 7.000000000000001``).
    """
    primary = math.floor(alpha * out_channels + 0.5 + 1e-9)
    return primary, out_channels - primary


def _slot_problem(out_channels: int, alpha: float, rank: int | None) -> tuple[str, str] | None:
    """``(hyperparameter, reason)`` when ``alpha``/``rank`` cannot work for ``out_channels``."""
    p, s = split_filters(out_channels, alpha)
    if p < 1:
        return "alpha", f"alpha={alpha} leaves 0 primary filters of {out_channels} output filters"
    if s < 1:
        return "alpha", f"alpha={alpha} leaves 0 secondary filters of {out_channels} output filters"
    if rank is not None and rank >= min(p, s):
        # Eq. 1 asks r < min(αf, (1-α)f): at that size A1·A2 is no longer a reduction.
        return "rank", (
            f"rank={rank} must be below min({p} primary, {s} secondary) filters "
            f"of {out_channels} output filters"
        )
    return None


def check_slot(slot: Slot, *, alpha: float = 0.5, rank: int | None = None) -> str | None:
    """``None`` when LinearConv(alpha, rank) can replace ``slot``, else a short reason.

    Any kernel size and any ``groups`` fit; the output filters must split into at least one
    primary and one secondary filter, and a reduced ``rank`` must be below both counts.
    """
    problem = _slot_problem(slot.out_channels, alpha, rank)
    return None if problem is None else problem[1]


def cost(slot: Slot, *, alpha: float = 0.5, rank: int | None = None) -> OpCost:
    """Closed-form cost, equal to fvcore's count of the built module in eval mode.

    With ``P`` primary and ``S`` secondary filters and ``D = C_in/groups · k²`` weights per
    filter: ``params = P·D + P·S`` (full rank; the paper's ``αf·hwc + α(1-α)f²``) or
    ``P·D + r·(P + S)`` (rank ``r``), plus ``C_out`` for a bias; ``inference_params`` and
    ``flops`` are those of the fused convolution: ``C_out·D (+ C_out)`` and
    ``H_out·W_out·C_out·D`` MACs.
    """
    p, s = split_filters(slot.out_channels, alpha)
    d = (slot.in_channels // slot.groups) * slot.kernel_size * slot.kernel_size
    coefficients = p * s if rank is None else rank * (p + s)
    bias = slot.out_channels if slot.bias else 0
    ho, wo = slot.output_size
    return OpCost(
        flops=ho * wo * slot.out_channels * d,
        params=p * d + coefficients + bias,
        inference_params=slot.out_channels * d + bias,
    )


def build(slot: Slot, *, alpha: float = 0.5, rank: int | None = None) -> LinearConv2d:
    """A :class:`LinearConv2d` with the geometry of ``slot``."""
    return LinearConv2d(
        slot.in_channels,
        slot.out_channels,
        slot.kernel_size,
        stride=slot.stride,
        padding=slot.padding,
        groups=slot.groups,
        bias=slot.bias,
        alpha=alpha,
        rank=rank,
    )


def _combine(primary: Tensor, coeffs: tuple[Tensor, ...]) -> Tensor:
    """Algorithm 2, lines 1-4: ``[W_p; reshape(Aᵀ V_p)]`` (or ``A2ᵀ (A1ᵀ V_p)`` for a rank)."""
    p = primary.shape[0]
    v = primary.reshape(p, -1)
    if len(coeffs) == 1:
        u = coeffs[0].t() @ v
    else:  # the paper's order: two thin products, never the P×S matrix
        u = coeffs[1].t() @ (coeffs[0].t() @ v)
    w = torch.cat([v, u], dim=0)
    return w.reshape(w.shape[0], *primary.shape[1:])


class _CachedWeight(torch.autograd.Function):
    """Hands out the cached eval-mode weight while still routing gradients to its parameters.

    The forward pass does no work (so eval mode costs one convolution however it is run); the
    backward pass rebuilds the combination with autograd to get the vector-Jacobian product.
    """

    @staticmethod
    def forward(ctx: Any, box: tuple[Tensor], primary: Tensor, *coeffs: Tensor) -> Tensor:
        ctx.save_for_backward(primary, *coeffs)
        return box[0].detach()  # a fresh tensor object: autograd must not touch the cache

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(True) for t in saved]
            w = _combine(leaves[0], tuple(leaves[1:]))
            grads = torch.autograd.grad(w, leaves, grad)
        needs = ctx.needs_input_grad[1:]
        return (None, *(g if n else None for g, n in zip(grads, needs)))


def correlation_loss(primary: Tensor) -> Tensor:
    """Algorithm 1 for one layer: ``‖V̂ V̂ᵀ - I‖₁`` of the row-normalised flattened filters.

    ``primary`` is ``Tensor[P, ...]`` (one filter per row once flattened). The ℓ1 norm is the
    entry-wise sum of absolute values (the paper contrasts it with ℓ1 on the weights, i.e. it
    is the same norm applied to a different matrix); a filter of norm below 1e-12 is divided by
    1e-12 instead of its norm (``F.normalize``), so an all-zero filter gives no NaN.
    """
    v = F.normalize(primary.reshape(primary.shape[0], -1), dim=1, eps=1e-12)
    eye = torch.eye(v.shape[0], device=v.device, dtype=v.dtype)
    return (v @ v.t() - eye).abs().sum()


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class LinearConv2d(nn.Module):
    """LinearConv (Kahatapitiya & Rodrigo, WACV 2021) as a drop-in for one ``nn.Conv2d``.

    The first ``P = round(alpha · out_channels)`` output filters are learned directly
    (``primary``: ``Tensor[P, C_in/groups, k, k]``); the other ``S = out_channels - P`` are
    ``Aᵀ V_p`` with ``V_p = primary`` flattened to ``Tensor[P, C_in/groups·k²]`` and learned
    coefficients ``A = coeff`` (``Tensor[P, S]``), or ``A = coeff1 @ coeff2`` (``Tensor[P, r]``,
    ``Tensor[r, S]``) when ``rank = r`` is given. The input then goes through one convolution
    with ``[primary; secondary]``, so outputs have exactly the shape of the replaced conv.

    Train mode rebuilds the weight on every forward pass (the coefficients learn through it),
    or, where that costs fewer MACs, convolves with the primary filters only and mixes their
    outputs with the coefficients (see :meth:`training_form`).
    Eval mode builds it once and caches it: the cache is keyed on the parameters' storage and
    version counters, so an optimizer step, ``load_state_dict`` or ``.to()`` triggers a rebuild,
    and it is dropped on every ``train()``/``eval()`` call. Gradients still reach the parameters
    in eval mode (a custom autograd function replays the combination in the backward pass).
    Edits that bypass version counters (``param.data[...] = ...``) need :meth:`clear_cache`.
    :meth:`to_conv` returns the equivalent plain ``nn.Conv2d``; :func:`fuse_linearconv` swaps
    every LinearConv2d of a model for it.

    Choices the paper leaves open:

    * ``alpha · out_channels`` need not be an integer: ``P`` is rounded to nearest, halves up;
      at least one primary and one secondary filter must remain (``ValueError`` otherwise).
    * ``rank`` must satisfy the paper's ``r < min(P, S)`` (Eq. 1).
    * ``groups > 1`` works as in the paper's ResNeXt/MobileNetV2 runs: the filters, each of
      ``C_in/groups·k²`` weights, are combined regardless of group, and the first ``P`` output
      filters (hence the first groups) are the primary ones.
    * A bias, when asked for, is an ordinary learned vector of ``out_channels`` (not combined).
    * Initialisation: primary filters ``N(0, 2 / (out_channels·k²))`` (kaiming-normal,
      fan-out, as for the replaced conv); ``A ~ N(0, 1/P)``, or ``A1 ~ N(0, 1/r)`` and
      ``A2 ~ N(0, 1/P)``, so secondary filters start with the primary filters' variance;
      bias 0.
    * The regulariser's ℓ1 norm is entry-wise (see :func:`correlation_loss`) and covers the
      primary filters only, as in Algorithm 1.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, groups, bias: as for
            ``nn.Conv2d``; ``padding=None`` means ``kernel_size // 2``.
        alpha: share of primary filters, ``0 < alpha < 1`` (the paper recommends 0.5).
        rank: ``None`` for full-rank coefficients, else the inner size ``r`` of ``A1 A2``.

    Shapes:
        x:   Tensor[N, in_channels, H, W]
        out: Tensor[N, out_channels, H_out, W_out], ``H_out = (H + 2·padding - k) // stride + 1``
             (``ceil(H / stride)`` for odd ``k`` and the default padding)
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
        rank: int | None = None,
    ) -> None:
        super().__init__()
        validate(alpha=alpha, rank=rank)
        in_channels = _check_int("in_channels", in_channels, 1)
        out_channels = _check_int("out_channels", out_channels, 1)
        kernel_size = _check_int("kernel_size", kernel_size, 1)
        stride = _check_int("stride", stride, 1)
        padding = kernel_size // 2 if padding is None else _check_int("padding", padding, 0)
        groups = _check_int("groups", groups, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups must divide in_channels ({in_channels}) and out_channels "
                f"({out_channels}), got {groups}"
            )
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be True or False, got {bias!r}")
        problem = _slot_problem(out_channels, alpha, rank)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")

        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.groups, self.alpha, self.rank = groups, float(alpha), rank
        self.num_primary, self.num_secondary = split_filters(out_channels, alpha)
        p, s = self.num_primary, self.num_secondary

        self.primary = nn.Parameter(torch.empty(p, in_channels // groups, kernel_size, kernel_size))
        self.coeff: nn.Parameter | None = None
        self.coeff1: nn.Parameter | None = None
        self.coeff2: nn.Parameter | None = None
        if rank is None:
            self.coeff = nn.Parameter(torch.empty(p, s))
        else:
            self.coeff1 = nn.Parameter(torch.empty(p, rank))
            self.coeff2 = nn.Parameter(torch.empty(rank, s))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._cache: Tensor | None = None
        self._cache_key: tuple | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw the parameters with the initialisation described in the class docstring."""
        k = self.kernel_size
        p = self.num_primary
        with torch.no_grad():
            # kaiming_normal_(fan_out) of the full conv weight: fan_out = out_channels·k².
            self.primary.normal_(0.0, math.sqrt(2.0 / (self.out_channels * k * k)))
            if self.coeff is not None:
                self.coeff.normal_(0.0, math.sqrt(1.0 / p))
            else:
                assert self.coeff1 is not None and self.coeff2 is not None and self.rank
                self.coeff1.normal_(0.0, math.sqrt(1.0 / self.rank))
                self.coeff2.normal_(0.0, math.sqrt(1.0 / p))
            if self.bias is not None:
                self.bias.zero_()
        self.clear_cache()

    def _coeffs(self) -> tuple[Tensor, ...]:
        if self.coeff is not None:
            return (self.coeff,)
        assert self.coeff1 is not None and self.coeff2 is not None
        return (self.coeff1, self.coeff2)

    @property
    def coefficients(self) -> Tensor:
        """The coefficient matrix ``A``: ``Tensor[P, S]`` (``coeff1 @ coeff2`` for a rank)."""
        c = self._coeffs()
        return c[0] if len(c) == 1 else c[0] @ c[1]

    def _combine(self) -> Tensor:
        return _combine(self.primary, self._coeffs())

    def _key(self) -> tuple:
        return tuple(
            (t.data_ptr(), t._version, t.device, t.dtype) for t in (self.primary, *self._coeffs())
        )

    def clear_cache(self) -> None:
        """Drop the cached eval-mode weight (rebuilt on the next eval-mode forward pass)."""
        self._cache, self._cache_key = None, None

    def _cached_weight(self) -> Tensor:
        key = self._key()
        if self._cache is None or self._cache_key != key:
            # Built outside any trace in progress, so that a traced eval graph (fvcore,
            # TorchScript, ONNX export) holds the weight as a constant, not its construction.
            set_state = getattr(torch._C, "_set_tracing_state", None)  # private, so guarded
            state = torch._C._get_tracing_state() if torch.jit.is_tracing() else None
            if state is not None and set_state is not None:
                set_state(None)
            try:
                # inference_mode(False): a weight first built under inference_mode must stay
                # usable by a later forward pass that records autograd.
                with torch.inference_mode(False), torch.no_grad():
                    self._cache = self._combine()
            finally:
                if state is not None and set_state is not None:
                    set_state(state)
            self._cache_key = key
        return self._cache

    def combined_weight(self) -> Tensor:
        """The convolution weight ``Tensor[out_channels, in_channels/groups, k, k]``.

        Rebuilt with autograd in train mode; the cached constant in eval mode (see the class
        docstring), still differentiable with respect to the parameters when grad is enabled.
        """
        if self.training:
            return self._combine()
        w = self._cached_weight()
        coeffs = self._coeffs()
        wants_grad = torch.is_grad_enabled() and any(
            t.requires_grad for t in (self.primary, *coeffs)
        )
        # A trace (fvcore, TorchScript, ONNX export) records the weight as a constant: that is
        # the deployed layer, one convolution and nothing else.
        if not wants_grad or torch.jit.is_tracing():
            return w
        return _CachedWeight.apply((w,), self.primary, *coeffs)

    def training_form(self, input_shape: tuple[int, ...]) -> str:
        """How a train-mode forward pass on ``input_shape`` computes: ``"combine"`` or ``"mix"``.

        ``"combine"`` builds ``[W_p; Aᵀ V_p]`` (``coef·D`` MACs, ``coef`` = ``P·S`` or
        ``r·(P + S)``) and runs one convolution of ``C_out·D·M`` (``M`` output pixels of the
        batch); its backward repeats the combination twice. ``"mix"`` runs the primary filters
        only (``P·D·M``) and forms the secondary outputs as ``Aᵀ Y_p``, a 1×1 convolution of
        the primary outputs (``coef·M``) - the same numbers up to rounding, because a
        convolution is linear in its weight - but writes ``S + C_out`` more values per output
        pixel (the mixed outputs and the concatenation), each counted as
        :data:`MIX_ELEMENT_COST` MACs. Chosen when that total is smaller (wide layers on small
        maps, where the combination costs more than the convolution itself); only for
        ``groups == 1``, where every filter sees the same input channels. Eval mode always
        uses the cached combined weight (one convolution, as deployed).
        """
        if self.groups != 1:
            return "combine"
        n, _, h, w = input_shape
        k, s, pad = self.kernel_size, self.stride, self.padding
        m = n * ((h + 2 * pad - k) // s + 1) * ((w + 2 * pad - k) // s + 1)
        d = self.in_channels * k * k
        p, sec = self.num_primary, self.num_secondary
        coef = p * sec if self.rank is None else self.rank * (p + sec)
        combine = coef * d + self.out_channels * d * m
        mix = p * d * m + coef * m + MIX_ELEMENT_COST * (sec + self.out_channels) * m
        return "mix" if mix < combine else "combine"

    def _forward_mixed(self, x: Tensor) -> Tensor:
        y_p = F.conv2d(x, self.primary, None, self.stride, self.padding)
        coeffs = self._coeffs()
        # Aᵀ Y_p, or A2ᵀ (A1ᵀ Y_p) for a rank: 1×1 convolutions, computed as matrix products
        # over a channels-last view. ``F.linear(y, c.t())`` is ``y @ c`` and hands BLAS the
        # coefficients as stored; a 1×1 ``conv2d`` with ``c.t()`` as its weight first copied
        # the transposed matrix (and zero-filled its gradient), which at 1024×1024 took several
        # times the product itself (experiments/results/op_speed.md).
        y_s = y_p.movedim(1, -1)
        for c in coeffs:
            y_s = F.linear(y_s, c.t())
        out = torch.cat([y_p, y_s.movedim(-1, 1)], dim=1)
        if self.bias is not None:
            out = out.add_(self.bias.view(1, -1, 1, 1))  # cat's backward keeps no output
        return out

    def forward(self, x: Tensor) -> Tensor:
        if (
            self.training
            and not torch.jit.is_tracing()
            and self.training_form(tuple(x.shape)) == "mix"
        ):
            return self._forward_mixed(x)
        return F.conv2d(
            x, self.combined_weight(), self.bias, self.stride, self.padding, 1, self.groups
        )

    def regularization_loss(self) -> Tensor:
        """The paper's correlation loss ``L_c`` (Algorithm 1) of this layer's primary filters.

        A scalar tensor with autograd; a trainer adds ``λ · L_c`` to its loss (see
        :func:`linearconv_regularization`).
        """
        return correlation_loss(self.primary)

    def to_conv(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the combined weight: identical outputs, no coefficients.

        The conv is on the same device and dtype, in the same train/eval mode; its parameters
        are copies (later training of either module does not affect the other).
        """
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            groups=self.groups,
            bias=self.bias is not None,
            device=self.primary.device,
            dtype=self.primary.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(self._combine())
            if self.bias is not None and conv.bias is not None:
                conv.bias.copy_(self.bias)
        return conv.train(self.training)

    def train(self, mode: bool = True) -> LinearConv2d:
        self.clear_cache()
        return super().train(mode)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> LinearConv2d:
        self.clear_cache()  # the cache would otherwise pin memory on the old device
        return super()._apply(fn, *args, **kwargs)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return (
            f"{s}, alpha={self.alpha}, rank={_describe_rank(self.rank)}, "
            f"primary={self.num_primary}, secondary={self.num_secondary}"
        )


def linearconv_regularization(model: nn.Module) -> Tensor:
    """Sum of :meth:`LinearConv2d.regularization_loss` over every LinearConv2d in ``model``.

    A scalar tensor; ``0`` (on the model's device, without grad) when there is none. The
    paper adds ``REG_LAMBDA_DEFAULT`` times this to the task loss every ``REG_EVERY_DEFAULT``
    batches.
    """
    total: Tensor | None = None
    for m in model.modules():
        if isinstance(m, LinearConv2d):
            loss = m.regularization_loss()
            total = loss if total is None else total + loss
    if total is not None:
        return total
    param = next(model.parameters(), None)
    if param is None:
        return torch.zeros(())
    return torch.zeros((), device=param.device, dtype=param.dtype)


def fuse_linearconv(model: nn.Module) -> nn.Module:
    """Replace every LinearConv2d in ``model`` by :meth:`LinearConv2d.to_conv`, in place.

    Returns ``model`` itself (or the new conv if ``model`` is a LinearConv2d). The fused model
    gives the same outputs and has only plain convolutions, ready for export.
    """
    if isinstance(model, LinearConv2d):
        return model.to_conv()
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, LinearConv2d)]
    for name, m in targets:
        set_module(model, name, m.to_conv())
    return model


INFO = OpInfo(
    name="linearconv",
    label="linear",
    hparams={"alpha": float, "rank": int},
    validate=validate,
    check_slot=check_slot,
    cost=cost,
    build=build,
)
