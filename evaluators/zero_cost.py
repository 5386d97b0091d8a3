"""Training-free (zero-cost) scores of an untrained network, for pre-screening candidates.

Three scores, each computed on one batch (or one all-ones input) in about a second on a CPU
for a CIFAR ResNet, and each higher-is-better:

``naswot`` (Mellor et al., "Neural Architecture Search without Training", ICML 2021)
    Every ReLU call turns each input of the batch into a binary code (which units are
    active). ``K[i, j]`` counts the units on which inputs ``i`` and ``j`` agree, summed over
    all ReLU calls; the score is ``log |det K|``. Networks that separate the inputs of a batch
    into distinct activation patterns score higher.
``synflow`` (Tanaka et al., NeurIPS 2020, as a NAS proxy in Abdelfattah et al., ICLR 2021)
    On a copy with every parameter replaced by its absolute value, batch norm removed and the
    input all ones, ``R = Σ model(1)`` and the score is ``log Σ_θ θ · ∂R/∂θ``. Computed in
    float64 and returned as a logarithm, because the sum grows exponentially with depth
    (about 1e24 for ResNet-20, 1e225 for ResNet-152 at 224²; float32 overflows at 3e38).
``grad_norm`` (Abdelfattah et al., ICLR 2021)
    Sum over weight tensors of the Euclidean norm of the cross-entropy gradient on one batch.

None of them touches the caller's model: each works on a deep copy (so batch-norm running
statistics, gradients and weights of the caller's model stay as they were).

Imports only torch; must not import other ``evaluators`` modules, ``search_spaces`` or
``nas``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ZERO_COST_NAMES", "grad_norm", "naswot", "synflow", "zero_cost_score"]

#: Names accepted by :func:`zero_cost_score`; every score is higher-is-better.
ZERO_COST_NAMES = ("naswot", "synflow", "grad_norm")

# Activations whose "unit is active" pattern NASWOT reads (positive output = active).
_CODE_ACTIVATIONS = (nn.ReLU, nn.ReLU6)
# A ±1 code matrix multiplied in float32 is exact while the integer sums stay below 2**24.
_FLOAT32_EXACT = 2**24


def _scoring_copy(model: nn.Module, device: torch.device, *, train: bool) -> nn.Module:
    """A deep copy on ``device`` with every parameter trainable and dropout switched off.

    Dropout is off so a score is a deterministic function of the architecture, weights and
    batch; batch norm follows ``train`` (batch statistics when True).
    """
    net = copy.deepcopy(model).to(device)
    net.train(train)
    for m in net.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    for p in net.parameters():
        p.requires_grad_(True)
    return net


def _check_batch(inputs: Any, name: str = "inputs", min_batch: int = 1) -> Tensor:
    if not isinstance(inputs, Tensor) or inputs.dim() < 2 or not inputs.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor [N, C, ...], got {_describe(inputs)}")
    if inputs.shape[0] < min_batch:
        raise ValueError(f"{name} must hold at least {min_batch} samples, got {inputs.shape[0]}")
    return inputs.detach()


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"Tensor{list(x.shape)} of {x.dtype}"
    return repr(x) if len(repr(x)) < 60 else type(x).__name__


def naswot(model: nn.Module, inputs: Tensor) -> float:
    """NASWOT score ``log |det K_H|`` of ``model`` on one batch (Mellor et al., 2021).

    ``K_H[i, j] = Σ_calls (number of units where the codes of i and j agree)``; codes are
    ``output > 0`` of every ``nn.ReLU`` / ``nn.ReLU6`` call, so a module applied twice in a
    block (torchvision's ResNet blocks reuse one ``relu``) contributes once per call.
    Functional ``F.relu`` calls are not seen. The network runs on a copy in train mode (batch
    statistics, as an untrained network is scored in the paper's code) with dropout off.

    Shapes:
        inputs: Tensor[N, C, H, W] (any shape the model takes, N >= 2)

    Returns ``-inf`` when ``K`` is singular (two inputs with identical codes everywhere).
    Raises ``ValueError`` when the model has no ReLU module.
    """
    x = _check_batch(inputs, min_batch=2)
    n = x.shape[0]
    net = _scoring_copy(model, x.device, train=True)
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)
    calls = 0

    def hook(module: nn.Module, args: Any, out: Tensor) -> None:
        nonlocal calls
        calls += 1
        codes = out.detach().reshape(n, -1) > 0
        units = codes.shape[1]
        dt = torch.float32 if units < _FLOAT32_EXACT else torch.float64
        s = codes.to(dt) * 2 - 1
        # with s = ±1 codes, s_i·s_j = agreements − disagreements = 2·agreements − units
        kernel.add_(((s @ s.T + units) / 2).to(torch.float64))

    handles = [
        m.register_forward_hook(hook) for m in net.modules() if isinstance(m, _CODE_ACTIVATIONS)
    ]
    if not handles:
        raise ValueError(
            f"naswot needs nn.ReLU or nn.ReLU6 modules, but {type(model).__name__} has none"
        )
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    if calls == 0:
        raise ValueError(
            f"naswot: no ReLU module of {type(model).__name__} ran in the forward pass"
        )
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if float(sign) > 0 else -math.inf


def _synflow_pass(
    net: nn.Module,
    biases: list[tuple[nn.Parameter, Tensor]],
    shape: tuple[int, ...],
    device: torch.device,
    k_in: int,
    k_out: int | None,
) -> tuple[float, float]:
    """One pass at input ``2**k_in`` (biases scaled alike), backward seed ``2**k_out``.

    Returns ``(Σ output, Σ θ·grad)``; the second is NaN for a forward-only pass.
    """
    scale_in = math.ldexp(1.0, k_in)
    with torch.no_grad():
        for p, orig in biases:
            p.copy_(orig * scale_in)
    for p in net.parameters():
        p.grad = None
    x = torch.full(shape, scale_in, dtype=torch.float64, device=device)
    if k_out is None:
        with torch.no_grad():
            return float(net(x).sum()), math.nan
    out = net(x).sum()
    (out * math.ldexp(1.0, k_out)).backward()
    with torch.no_grad():
        terms = [(p * p.grad).sum() for p in net.parameters() if p.grad is not None]
        total = float(torch.stack(terms).sum()) if terms else 0.0
    return float(out.detach()), total


def _normal(v: float) -> bool:
    return math.isfinite(v) and v > 0 and v >= 2.2250738585072014e-308


def synflow(
    model: nn.Module,
    resolution: int | Sequence[int],
    *,
    in_channels: int = 3,
    device: str | torch.device | None = None,
) -> float:
    """Natural log of the synflow score of ``model`` (Tanaka et al., 2020).

    On a float64 copy in eval mode with every ``BatchNorm`` replaced by ``nn.Identity`` (the
    ``bn=False`` variant of Abdelfattah et al.) and every parameter replaced by its absolute
    value, ``R = Σ model(ones[1, in_channels, H, W])`` and the score is
    ``log Σ_θ Σ(θ ⊙ ∂R/∂θ)`` over all parameters, biases included. Other norm layers stay.

    When float64 overflows or underflows (synflow beyond ~1e308, networks much deeper than
    ResNet-152), the pass is repeated with the input and all biases scaled by ``2**k`` and the
    backward seed by ``2**k'`` chosen to centre the magnitudes, and ``(k + k')·log 2`` is taken
    off again: exact for networks made of positively homogeneous pieces (conv, linear, ReLU,
    pooling, addition, concatenation), approximate for gates such as SCConv's sigmoid. Returns
    ``-inf`` when the score is exactly 0 and ``inf`` when even the rescaled pass overflows.
    ReLU6 networks (MobileNetV2) saturate on all-ones inputs, which gives them a low score.
    ``device`` defaults to the device of the model's first parameter.
    """
    h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (h, w)):
        raise ValueError(f"resolution must be a positive int or (H, W) pair, got {resolution!r}")
    if device is None:
        first = next(model.parameters(), None)
        dev = first.device if first is not None else torch.device("cpu")
    else:
        dev = torch.device(device)
    net = _scoring_copy(model, dev, train=False).double()
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    biases = [
        (p, p.detach().clone())
        for name, p in net.named_parameters()
        if name.rpartition(".")[2] == "bias"
    ]
    shape = (1, in_channels, h, w)

    r, s = _synflow_pass(net, biases, shape, dev, 0, 0)
    if _normal(r) and _normal(s):
        return math.log(s)
    # out of float64's range: probe how large R is with a tiny input (overflow) or a huge one
    # (underflow), then run again with forward and backward magnitudes centred around 1
    overflow = not (math.isfinite(r) and math.isfinite(s))
    k_probe = -1000 if overflow else 1000
    r_probe, _ = _synflow_pass(net, biases, shape, dev, k_probe, None)
    if not _normal(r_probe):
        return math.inf if overflow else -math.inf
    k = -round((math.log2(r_probe) - k_probe) / 2)
    r, s = _synflow_pass(net, biases, shape, dev, k, k)
    if s == 0.0:
        return -math.inf
    if not math.isfinite(s):
        return math.inf
    return math.log(s) - 2 * k * math.log(2.0)


def grad_norm(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> float:
    """Sum of the Euclidean norms of the loss gradients of every weight tensor.

    Weight tensors are the parameters with two or more dimensions (conv and linear weights,
    LinearConv's filters and coefficients); biases and norm-layer affine parameters are left
    out, as Abdelfattah et al. sum over the weights of conv and linear layers. The loss is
    ``loss_fn(model(inputs), targets)`` (default cross-entropy, mean over the batch) on a copy
    in train mode with dropout off. Norms are summed in float64.

    Shapes:
        inputs:  Tensor[N, C, H, W]
        targets: Tensor[N] of class indices (or whatever ``loss_fn`` takes)
    """
    x = _check_batch(inputs)
    if not isinstance(targets, Tensor) or targets.shape[0] != x.shape[0]:
        raise ValueError(
            f"targets must be a tensor with one entry per input ({x.shape[0]}), "
            f"got {_describe(targets)}"
        )
    net = _scoring_copy(model, x.device, train=True)
    loss = (loss_fn or F.cross_entropy)(net(x), targets.to(x.device))
    loss.backward()
    norms = [
        float(p.grad.detach().double().norm())
        for p in net.parameters()
        if p.grad is not None and p.dim() >= 2
    ]
    return math.fsum(norms)


def zero_cost_score(name: str, model: nn.Module, batch: Any) -> float:
    """Score ``model`` with the zero-cost proxy ``name`` (one of :data:`ZERO_COST_NAMES`).

    ``batch`` is ``(inputs, targets)`` as a data loader yields it (``targets`` is only used
    by ``grad_norm``; ``synflow`` uses only the shape of ``inputs``).
    """
    if name not in ZERO_COST_NAMES:
        raise ValueError(f"unknown zero-cost score {name!r}; valid: {', '.join(ZERO_COST_NAMES)}")
    if isinstance(batch, Tensor):
        inputs, targets = batch, None
    elif isinstance(batch, (tuple, list)) and len(batch) >= 1:
        inputs = batch[0]
        targets = batch[1] if len(batch) > 1 else None
    else:
        raise ValueError(
            f"batch must be (inputs, targets) or an inputs tensor, got {_describe(batch)}"
        )
    x = _check_batch(inputs)
    if name == "naswot":
        return naswot(model, x)
    if name == "synflow":
        return synflow(model, tuple(x.shape[2:]), in_channels=x.shape[1], device=x.device)
    if targets is None:
        raise ValueError("grad_norm needs targets: pass batch as (inputs, targets)")
    return grad_norm(model, x, targets)
