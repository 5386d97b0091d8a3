"""What every operator module provides, and the cost record they return."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = ["OpCost", "OpInfo"]


@dataclass(frozen=True)
class OpCost:
    """Cost of one operator at one slot, for one image.

    ``flops`` are multiply-accumulates exactly as fvcore's ``FlopCountAnalysis`` counts the
    module in eval mode on ``Tensor[1, in_channels, H, W]``; ``params`` are learnable
    parameters; ``inference_params`` the parameters left after fusing for deployment (equal to
    ``params`` except for LinearConv).
    """

    flops: int
    params: int
    inference_params: int

    def __add__(self, other: OpCost) -> OpCost:
        return OpCost(
            self.flops + other.flops,
            self.params + other.params,
            self.inference_params + other.inference_params,
        )


@dataclass(frozen=True)
class OpInfo:
    """One row of the operator table.

    ``hparams`` maps each hyperparameter name to its type (``float`` or ``int``; ``None`` is
    allowed where the op documents it, e.g. ``rank=None`` for full rank).
    ``validate(**hp)`` raises ``ValueError`` naming a bad hyperparameter.
    ``check_slot(slot, **hp)`` returns ``None`` when the op fits the slot, else the reason.
    ``cost(slot, **hp)`` is the closed-form :class:`OpCost`.
    ``build(slot, **hp)`` returns the module that replaces the slot's ``nn.Conv2d``.
    """

    name: str
    label: str
    hparams: Mapping[str, Any]
    validate: Callable[..., None]
    check_slot: Callable[..., str | None]
    cost: Callable[..., OpCost]
    build: Callable[..., nn.Module]
