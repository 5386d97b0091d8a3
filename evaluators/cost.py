"""FLOPs and parameters: an exact analytic model, checked against fvcore.

FLOPs are multiply-accumulates for one image at the architecture's resolution, as fvcore's
``FlopCountAnalysis`` counts them on the model in eval mode. Because a slot's cost depends
only on that slot's own choice, ``total = fixed part + Σ slot costs``: the fixed part (stem,
norms, head, everything that is not a slot) is fvcore's count of the all-``conv`` backbone
minus the closed-form cost of its slot convolutions, computed once per (backbone, classes,
resolution, slot policy); each slot's cost comes from its operator's closed form
(``search_spaces.ops.<op>.cost``), memoised per slot shape and choice.

One exception to "a slot's cost depends only on its own choice": ``build_model`` keeps
OctConv pairs between consecutive OctConv slots (:mod:`search_spaces.octave_pass`), which
drops up-samplings and BatchNorm work that fvcore counts; that change depends on neighbouring
choices and is added by :func:`~search_spaces.octave_pass.octave_flops_delta` (zero for an
architecture without OctConv). Parameters are unaffected.

Imports torch, fvcore and ``search_spaces``; must not import other ``evaluators`` modules
or ``nas``.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn

from search_spaces.arch import Architecture, OpSpec
from search_spaces.backbones import get_backbone
from search_spaces.octave_pass import kept_saving, octave_blocks, octave_flops_delta
from search_spaces.ops import OPS, OpCost
from search_spaces.slots import Slot, slots_for

__all__ = ["CostModel", "CostRange", "count_params", "fvcore_flops", "get_cost_model"]


def fvcore_flops(model: nn.Module, resolution: int) -> int:
    """fvcore's count for ``model`` in eval mode on one ``resolution``² RGB image."""
    with warnings.catch_warnings():
        # fvcore's import scripts a loss with torch.jit, which torch now calls deprecated.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated")
        from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        analysis = FlopCountAnalysis(
            model, torch.zeros(1, 3, resolution, resolution, device=device)
        )
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return int(analysis.total())
    finally:
        model.train(was_training)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class CostRange:
    """The cheapest and the most expensive architecture of a space, per metric."""

    min_flops: int
    max_flops: int
    min_params: int
    max_params: int


class CostModel:
    """Exact FLOPs/params of any architecture of one (backbone, classes, resolution, policy)."""

    def __init__(self, backbone: str, num_classes: int, resolution: int, slots: str = "all"):
        self.key = (backbone, num_classes, resolution, slots)
        self.slots: tuple[Slot, ...] = slots_for(backbone, num_classes, resolution, slots)
        model = get_backbone(backbone, num_classes)
        total = OpCost(fvcore_flops(model, resolution), count_params(model), count_params(model))
        conv_part = OpCost(0, 0, 0)
        for s in self.slots:
            conv_part = conv_part + OPS["conv"].cost(s)
        self.fixed = OpCost(
            total.flops - conv_part.flops,
            total.params - conv_part.params,
            total.inference_params - conv_part.inference_params,
        )
        self._index = {s.path: i for i, s in enumerate(self.slots)}
        self._by_path = {s.path: s for s in self.slots}
        self.octave_blocks = octave_blocks(model)
        # the BN after each conv of a block the octave pass understands: affine or not
        self._bn_affine: dict[str, bool] = {}
        for b in self.octave_blocks:
            for conv, affine in zip((*b.convs, b.shortcut), b.affine):
                if conv is not None:
                    self._bn_affine[conv] = affine
        self._alpha_of_label: dict[str, float] = {}
        # per slot: choice label -> cost, filled on first use
        self._label_tables: list[dict[str, OpCost]] = [{} for _ in self.slots]

    def slot_cost(self, slot: Slot, spec: OpSpec) -> OpCost:
        """Cost of ``spec`` at ``slot`` (memoised by shape, so repeated blocks share entries)."""
        return _slot_cost(replace(slot, path=""), spec)

    def cost(self, arch: Architecture) -> OpCost:
        """Total cost of ``arch``; equals fvcore on ``build_model(arch)`` exactly."""
        if (arch.backbone, arch.num_classes, arch.resolution, arch.slots) != self.key:
            raise ValueError(
                f"architecture {arch.arch_id} is not of this cost model's space {self.key}"
            )
        flops, params, inf = self.fixed.flops, self.fixed.params, self.fixed.inference_params
        tables = self._label_tables
        for i, spec in enumerate(arch.ops.values()):
            label = spec.label  # cached on the spec; str hashes are cached too
            c = tables[i].get(label)
            if c is None:
                c = tables[i][label] = self.slot_cost(self.slots[i], spec)
            flops, params, inf = flops + c.flops, params + c.params, inf + c.inference_params
        return OpCost(flops + self.octave_flops(arch), params, inf)

    def octave_flops(self, arch: Architecture) -> int:
        """FLOPs change of the octave pass in ``build_model(arch)`` (0 without OctConv pairs)."""
        octs = ((p, spec.hparams["alpha"]) for p, spec in arch.ops.items() if spec.op == "octconv")
        return self._octave_delta({p: a for p, a in octs if a > 0})

    def _octave_delta(self, alphas: Mapping[str, float]) -> int:
        if not alphas or not self.octave_blocks:
            return 0
        return octave_flops_delta(self.octave_blocks, self._by_path, alphas)

    def _label_alpha(self, label: str) -> float:
        """OctConv's alpha for an ``oct(...)`` choice label, else 0."""
        a = self._alpha_of_label.get(label)
        if a is None:
            spec = OpSpec.parse_label(label)
            a = self._alpha_of_label[label] = spec.hparams["alpha"] if spec.op == "octconv" else 0.0
        return a

    def _label_cost(self, i: int, label: str) -> OpCost:
        table = self._label_tables[i]
        c = table.get(label)
        if c is None:
            c = table[label] = self.slot_cost(self.slots[i], OpSpec.parse_label(label))
        return c

    def cost_of_labels(self, labels: Mapping[str, str]) -> OpCost:
        """Fast path for a search: total cost from one choice label per slot path."""
        flops, params, inf = self.fixed.flops, self.fixed.params, self.fixed.inference_params
        alphas = {}
        for path, label in labels.items():
            c = self._label_cost(self._index[path], label)
            flops, params, inf = flops + c.flops, params + c.params, inf + c.inference_params
            if label.startswith("oct("):
                a = self._label_alpha(label)
                if a > 0:
                    alphas[path] = a
        return OpCost(flops + self._octave_delta(alphas), params, inf)

    def per_slot(self, arch: Architecture) -> list[tuple[Slot, OpSpec, OpCost]]:
        return [
            (s, spec, self.slot_cost(s, spec)) for s, spec in zip(self.slots, arch.ops.values())
        ]

    def range(self, choices: Mapping[str, tuple[str, ...]]) -> CostRange:
        """Achievable FLOPs/params range given each slot's allowed choice labels.

        ``min_flops`` is the FLOPs of a real architecture of the space, the cheaper of two: the
        cheapest choice in every slot, and the cheapest choice counting the largest saving
        kept octave pairs can make (:func:`kept_saving`). Without OctConv on the menu it is
        the exact minimum; with it, a cheaper mix of OctConv pairs is possible in principle
        (the savings depend on the neighbours' choices).
        """
        lo_f = hi_f = self.fixed.flops
        lo_p = hi_p = self.fixed.params
        plain: dict[str, str] = {}
        paired: dict[str, str] = {}
        for path, labels in choices.items():
            costs = [self._label_cost(self._index[path], lbl) for lbl in labels]
            lowest = [c.flops for c in costs]
            if path in self._bn_affine:
                affine, slot = self._bn_affine[path], self._by_path[path]
                if slot.stride in (1, 2):
                    for i, lbl in enumerate(labels):  # a saving only where OctConv is chosen
                        alpha = self._label_alpha(lbl)
                        if alpha > 0:
                            lowest[i] -= kept_saving(slot, alpha, affine)
            plain[path] = labels[min(range(len(labels)), key=lambda i: costs[i].flops)]
            paired[path] = labels[min(range(len(labels)), key=lambda i: lowest[i])]
            hi_f += max(c.flops for c in costs)
            lo_p += min(c.params for c in costs)
            hi_p += max(c.params for c in costs)
        if plain:
            lo_f = min(self.cost_of_labels(plain).flops, self.cost_of_labels(paired).flops)
        return CostRange(lo_f, hi_f, lo_p, hi_p)


@functools.lru_cache(maxsize=65536)
def _slot_cost(slot: Slot, spec: OpSpec) -> OpCost:
    return OPS[spec.op].cost(slot, **spec.hparams)


@functools.lru_cache(maxsize=16)
def get_cost_model(
    backbone: str, num_classes: int, resolution: int, slots: str = "all"
) -> CostModel:
    """A cached :class:`CostModel` (building one runs fvcore once on the backbone)."""
    return CostModel(backbone, num_classes, resolution, slots)
