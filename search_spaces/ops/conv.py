"""The standard convolution: the slot's original ``nn.Conv2d``, unchanged."""

from __future__ import annotations

from torch import nn

from search_spaces.ops._base import OpCost, OpInfo
from search_spaces.slots import Slot

__all__ = ["INFO", "build", "check_slot", "cost"]


def validate() -> None:
    """``conv`` has no hyperparameters."""


def check_slot(slot: Slot) -> str | None:
    return None  # the original convolution fits every slot


def cost(slot: Slot) -> OpCost:
    """``H_out·W_out·k²·(C_in/groups)·C_out`` MACs; weights plus optional bias."""
    k, g = slot.kernel_size, slot.groups
    ho, wo = slot.output_size
    weights = slot.out_channels * (slot.in_channels // g) * k * k
    params = weights + (slot.out_channels if slot.bias else 0)
    return OpCost(flops=ho * wo * weights, params=params, inference_params=params)


def build(slot: Slot) -> nn.Module:
    return nn.Conv2d(
        slot.in_channels,
        slot.out_channels,
        slot.kernel_size,
        stride=slot.stride,
        padding=slot.padding,
        groups=slot.groups,
        bias=slot.bias,
    )


INFO = OpInfo(
    name="conv",
    label="conv",
    hparams={},
    validate=validate,
    check_slot=check_slot,
    cost=cost,
    build=build,
)
