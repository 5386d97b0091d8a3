"""The proxy's optimisation recipe: optimizers, per-step LR schedules, LinearConv's regulariser.

Imports torch (and, when asked, :mod:`search_spaces.ops.linearconv` for the regulariser);
must not import other ``evaluators`` modules, nor ``nas``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "linearconv_reg_fn",
    "lr_factor",
    "make_optimizer",
    "make_scaler",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "linear", "step", "constant")

#: The paper's settings (Section 4: "added to the target loss once every 10 batches, with a
#: regularization strength of λ = 10^-2"); used when linearconv.py does not define its own.
_PAPER_REG_LAMBDA = 1e-2
_PAPER_REG_EVERY = 10


def lr_factor(schedule: str, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based) of ``total_steps``.

    ``cosine``: 0.5·(1 + cos(π·t/T)); ``linear``: 1 − t/T; ``step``: ×0.1 at 50 % and again at
    75 % of the steps; ``constant``: 1.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    t = min(max(step, 0), total_steps) / max(total_steps, 1)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "linear":
        return 1.0 - t
    if schedule == "step":
        return 0.1 ** ((t >= 0.5) + (t >= 0.75))
    return 1.0


def linearconv_reg_fn() -> tuple[Any, type | None, float, int]:
    """LinearConv's regulariser, module type and paper defaults (None when not installed)."""
    try:
        from search_spaces.ops import linearconv as lc
    except ImportError:
        return None, None, _PAPER_REG_LAMBDA, _PAPER_REG_EVERY
    return (
        getattr(lc, "linearconv_regularization", None),
        getattr(lc, "LinearConv2d", None),
        float(getattr(lc, "REG_LAMBDA_DEFAULT", _PAPER_REG_LAMBDA)),
        int(getattr(lc, "REG_EVERY_DEFAULT", _PAPER_REG_EVERY)),
    )


def make_optimizer(
    model: nn.Module,
    name: str,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov and momentum > 0,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def make_scaler(enabled: bool) -> Any:
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3
