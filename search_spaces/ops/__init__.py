"""The operator table: one module per operator, looked up by name.

======== ================== =============================================================
name     label prefix       hyperparameters
======== ================== =============================================================
conv     ``conv``           none — the original convolution
scconv   ``scconv``         ``alpha`` (split ratio), ``r`` (squeeze ratio), ``g`` (groups)
octconv  ``oct``            ``alpha`` (share of low-frequency channels)
linearconv ``linear``       ``alpha`` (share of primary filters), ``rank`` (None = full)
======== ================== =============================================================
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from torch import nn

from search_spaces.ops import conv, linearconv, octconv, scconv
from search_spaces.ops._base import OpCost, OpInfo
from search_spaces.slots import Slot

__all__ = ["OPS", "OpCost", "OpInfo", "get_op", "op_names"]

OPS = MappingProxyType({m.INFO.name: m.INFO for m in (conv, scconv, octconv, linearconv)})


def op_names() -> tuple[str, ...]:
    return tuple(OPS)


def get_op(name: str) -> OpInfo:
    """The table row for ``name``; an unknown name raises ``ValueError`` listing valid ones."""
    try:
        return OPS[name]
    except KeyError:
        raise ValueError(f"unknown operator {name!r}; valid operators: {', '.join(OPS)}") from None


def build_op(name: str, slot: Slot, hparams: dict[str, Any]) -> nn.Module:
    return get_op(name).build(slot, **hparams)
