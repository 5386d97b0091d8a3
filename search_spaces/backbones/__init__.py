"""Backbones by name: every torchvision classification model plus CIFAR-style ResNets.

``get_backbone(name, num_classes)`` never downloads weights: models are built randomly
initialised for the requested number of classes.

Imports torch, torchvision and :mod:`~search_spaces.backbones.cifar_resnet`; must not import
the slots, operators or architectures (which use it), ``evaluators`` or ``nas``.
"""

from __future__ import annotations

import functools

from torch import nn

from search_spaces.backbones.cifar_resnet import CIFAR_DEPTHS, cifar_resnet, resnet50_cifar

__all__ = ["backbone_names", "default_resolution", "get_backbone"]

CIFAR_BACKBONES = {f"cifar_resnet{d}": d for d in CIFAR_DEPTHS}
_EXTRA = (*CIFAR_BACKBONES, "resnet50_cifar")


@functools.lru_cache(maxsize=1)
def _torchvision_names() -> tuple[str, ...]:
    import torchvision.models as tvm

    return tuple(sorted(tvm.list_models(module=tvm)))


def backbone_names() -> tuple[str, ...]:
    """Every accepted name: the CIFAR networks first, then torchvision's classification models."""
    return (*_EXTRA, *_torchvision_names())


def default_resolution(name: str) -> int:
    """The input size a backbone is designed for: 32 for the CIFAR networks, else 224."""
    return 32 if name in _EXTRA else 224


def get_backbone(name: str, num_classes: int = 1000) -> nn.Module:
    """Build ``name`` with random weights and a ``num_classes``-way head.

    Raises ``ValueError`` listing valid names for an unknown one.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if name in CIFAR_BACKBONES:
        return cifar_resnet(CIFAR_BACKBONES[name], num_classes)
    if name == "resnet50_cifar":
        return resnet50_cifar(num_classes)
    if name in _torchvision_names():
        import torchvision.models as tvm

        kwargs = {"weights": None, "num_classes": num_classes}
        if name.startswith(("inception", "googlenet")):
            kwargs["aux_logits"] = False
            kwargs["init_weights"] = True
        return tvm.get_model(name, **kwargs)
    shown = ", ".join(_EXTRA) + ", resnet18, resnet50, mobilenet_v2, ... (any torchvision model)"
    raise ValueError(f"unknown backbone {name!r}; valid backbones: {shown}")
