"""Finding the replaceable convolutions (*slots*) of a backbone.

A slot is one ``nn.Conv2d`` inside the network body that an operator from
:mod:`search_spaces.ops` may replace. Discovery runs one forward pass with hooks at the target
resolution to record each convolution's input size, so the cost model and the operators know
the exact feature-map shape every slot sees.

Policies:

``all`` (default)
    every square, undilated, ``padding == kernel_size // 2`` convolution of the body — k×k and
    1×1, projection shortcuts included — but not the stem (the first convolution that sees the
    image). This is the default because the 3×3 convolutions of ResNet-50 at 224² hold only
    about 1.85 of its 4.1 GFLOPs: with ``spatial`` no architecture gets under a typical
    ``--budget 2GFLOPs``, with ``all`` the cheapest is around 1 GFLOPs.
``spatial``
    only the k×k convolutions with k > 1 (what the SCConv paper replaces).

Convolutions that are not square, dilated, or padded other than ``k // 2`` are never slots:
none of the operators reproduces their geometry. They stay in the fixed part of the model.

Imports torch (the backbones when asked for one by name); must not import the operators,
:mod:`search_spaces.arch` or :mod:`search_spaces.space` (which build on it), ``evaluators``
or ``nas``.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["SLOT_POLICIES", "Slot", "find_slots", "get_module", "set_module"]

SLOT_POLICIES = ("all", "spatial")


@dataclass(frozen=True)
class Slot:
    """One replaceable convolution: its module path and its geometry at the target resolution.

    ``input_size`` is ``(H, W)`` of the feature map entering the convolution and
    ``output_size`` that of the map it produces.
    """

    path: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    groups: int
    bias: bool
    input_size: tuple[int, int]
    output_size: tuple[int, int]

    @property
    def shape_key(self) -> tuple:
        """Everything but the path: slots with equal keys cost the same for the same op."""
        d = asdict(self)
        d.pop("path")
        return tuple(d.values())

    def describe(self) -> str:
        """Short shape string, e.g. ``64->64 k3 s1 @56x56``."""
        g = f" g{self.groups}" if self.groups > 1 else ""
        h, w = self.input_size
        return (
            f"{self.in_channels}->{self.out_channels} k{self.kernel_size} "
            f"s{self.stride}{g} @{h}x{w}"
        )


def get_module(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, module)


def _is_candidate(conv: nn.Conv2d) -> bool:
    k = conv.kernel_size
    return (
        type(conv) is nn.Conv2d
        and k[0] == k[1]
        and conv.stride[0] == conv.stride[1]
        and conv.dilation == (1, 1)
        and isinstance(conv.padding, tuple)
        and conv.padding == (k[0] // 2, k[1] // 2)
        and k[0] % 2 == 1
        and conv.padding_mode == "zeros"
    )


def find_slots(model: nn.Module, resolution: int, policy: str = "all") -> list[Slot]:
    """List the slots of ``model`` for square inputs of ``resolution`` pixels, in forward order.

    The stem is the first convolution that runs in the forward pass; it is never a slot.
    """
    if policy not in SLOT_POLICIES:
        raise ValueError(f"slot policy must be one of {', '.join(SLOT_POLICIES)}, got {policy!r}")
    if resolution < 1:
        raise ValueError(f"resolution must be a positive number of pixels, got {resolution}")
    seen: list[tuple[str, nn.Conv2d, tuple[int, int], tuple[int, int]]] = []
    names = {m: n for n, m in model.named_modules()}
    hooks = []

    def hook(mod, inp, out):
        seen.append((names[mod], mod, tuple(inp[0].shape[-2:]), tuple(out.shape[-2:])))

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, resolution, resolution))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    slots: list[Slot] = []
    done: set[str] = set()
    for i, (path, conv, in_hw, out_hw) in enumerate(seen):
        if i == 0 or path in done:  # the stem; a module reused twice is recorded once
            continue
        done.add(path)
        if not _is_candidate(conv):
            continue
        k = conv.kernel_size[0]
        if policy == "spatial" and k == 1:
            continue
        slots.append(
            Slot(
                path=path,
                in_channels=conv.in_channels,
                out_channels=conv.out_channels,
                kernel_size=k,
                stride=conv.stride[0],
                padding=conv.padding[0],
                groups=conv.groups,
                bias=conv.bias is not None,
                input_size=(int(in_hw[0]), int(in_hw[1])),
                output_size=(int(out_hw[0]), int(out_hw[1])),
            )
        )
    return slots


@functools.lru_cache(maxsize=32)
def _cached_slots(
    backbone: str, num_classes: int, resolution: int, policy: str
) -> tuple[Slot, ...]:
    from search_spaces.backbones import get_backbone

    return tuple(find_slots(get_backbone(backbone, num_classes), resolution, policy))


def slots_for(backbone: str, num_classes: int, resolution: int, policy: str) -> tuple[Slot, ...]:
    """Slots of a named backbone, cached per (backbone, classes, resolution, policy)."""
    return _cached_slots(backbone, num_classes, resolution, policy)
