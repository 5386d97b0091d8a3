"""The weight-sharing supernet: a backbone whose every slot holds all of its menu's choices.

:class:`Supernet` is built from the same machinery as a single candidate: the backbone from
:func:`search_spaces.backbones.get_backbone`, the slots and their menus from a
:class:`~search_spaces.space.SearchSpace`, and each operator from the operator table
(:data:`search_spaces.ops.OPS`) - there is no second model definition. Each slot's convolution
is replaced by a :class:`ChoiceSlot`; :meth:`Supernet.set_path` picks one choice per slot and
the forward pass runs only those (single-path, Guo et al., ECCV 2020).

What is shared, per slot (everything outside the slots - stem, BatchNorms, head - is shared
by every path, as in any single-path supernet):

* ``conv``, every ``oct(a=...)`` and every ``linear(a=...,rank=...)`` choice use ONE kernel
  ``Tensor[out, in/groups, k, k]`` (+ bias), the slot's original convolution. ``conv`` runs it
  whole; ``oct(a)`` cuts it into its four octave blocks exactly as
  :meth:`OctConv2d.reset_parameters` cuts a fresh kernel (OctConv re-partitions the
  convolution, same parameter count); ``linear(a, rank)`` takes its first ``P`` output
  filters as its primary filters, and owns only its coefficient matrices (``P x S``, or
  ``P x r`` and ``r x S``).
* ``scconv(...)`` choices are NOT shared: each keeps its own SCConv module (its SRU/CRU
  convolutions have other shapes than the slot's kernel).

The shared choices run their own operator class (``OctConv2d``, ``LinearConv2d``) through
:func:`torch.func.functional_call` on a parameter-less template (built on the ``meta``
device, not registered as a submodule) with the shared tensors put in, so a path computes
exactly what the stand-alone operator computes; :meth:`Supernet.extract` copies a path's
weights into ``build_model(arch)``.

Imports torch and ``search_spaces``; must not import other ``evaluators`` modules or ``nas``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from search_spaces.arch import Architecture, OpSpec, build_model
from search_spaces.ops import OPS
from search_spaces.slots import Slot, get_module, set_module
from search_spaces.space import SearchSpace

__all__ = ["ChoiceSlot", "Supernet", "SHARED_OPS"]

#: Operators whose choices share the slot's kernel (the others own their weights).
SHARED_OPS = ("conv", "octconv", "linearconv")


class ChoiceSlot(nn.Module):
    """Every choice of one slot; :attr:`active` (a choice label) says which one runs.

    Args:
        slot: the slot's geometry.
        conv: the backbone's original ``nn.Conv2d`` of the slot; its weight (and bias)
            becomes the shared kernel.
        specs: the slot's choices (menu entries that fit it), in menu order.

    Shapes:
        x:   Tensor[N, in_channels, H, W]
        out: Tensor[N, out_channels, ceil(H / stride), ceil(W / stride)]
    """

    def __init__(self, slot: Slot, conv: nn.Conv2d, specs: Sequence[OpSpec]) -> None:
        super().__init__()
        if not specs:
            raise ValueError(f"slot {slot.path!r} has no choices")
        self.slot = slot
        self.specs: dict[str, OpSpec] = {s.label: s for s in specs}
        self.labels: tuple[str, ...] = tuple(self.specs)
        uses_kernel = any(s.op in SHARED_OPS for s in specs)
        self.weight: nn.Parameter | None = conv.weight if uses_kernel else None
        self.bias: nn.Parameter | None = conv.bias if uses_kernel else None
        self.owned = nn.ModuleDict()  # scconv choices: their own modules
        self.coeffs = nn.ParameterDict()  # linearconv choices: their own coefficients
        self._keys: dict[str, str] = {}
        # Templates are deliberately not submodules: they hold meta tensors only and must not
        # show up in parameters(), state_dict() or .to().
        self._templates: dict[str, nn.Module] = {}
        for i, spec in enumerate(specs):
            key = f"c{i}"
            self._keys[spec.label] = key
            if spec.op == "conv":
                continue
            if spec.op not in SHARED_OPS:
                self.owned[key] = OPS[spec.op].build(slot, **spec.hparams)
                continue
            with torch.device("meta"):
                self._templates[spec.label] = OPS[spec.op].build(slot, **spec.hparams)
            if spec.op == "linearconv":
                real = OPS[spec.op].build(slot, **spec.hparams)  # for its coefficients' init
                for name, p in real.named_parameters():
                    if name.startswith("coeff"):
                        self.coeffs[f"{key}_{name}"] = p
        self.active = self.labels[0]

    def set_active(self, label: str) -> None:
        if label not in self.specs:
            raise ValueError(
                f"slot {self.slot.path!r}: choice {label!r} is not in the supernet's menu for "
                f"this slot ({', '.join(self.labels)})"
            )
        self.active = label

    def tensors(self, label: str) -> dict[str, Tensor]:
        """The parameters of choice ``label`` under its operator's own names (shared views).

        For ``conv``: ``weight`` (and ``bias``); for ``oct``: ``weight_hh/hl/lh/ll``; for
        ``linear``: ``primary`` and its coefficients; for ``scconv``: its module's state.
        """
        spec = self.specs[label]
        key = self._keys[label]
        if spec.op not in SHARED_OPS:
            return dict(self.owned[key].state_dict(keep_vars=True))
        w, b = self.weight, self.bias
        assert w is not None  # a shared choice means the kernel exists
        out: dict[str, Tensor] = {}
        if spec.op == "conv":
            out["weight"] = w
        elif spec.op == "octconv":
            t: Any = self._templates[label]
            oh, ih = t.out_high, t.in_high // t.groups
            blocks = {
                "weight_hh": w[:oh, :ih],
                "weight_hl": w[oh:, :ih],
                "weight_lh": w[:oh, ih:],
                "weight_ll": w[oh:, ih:],
            }
            for name, _ in t.named_parameters():
                if name in blocks:
                    out[name] = blocks[name]
        else:  # linearconv
            t = self._templates[label]
            out["primary"] = w[: t.num_primary]
            for name, _ in t.named_parameters():
                if name.startswith("coeff"):
                    out[name] = self.coeffs[f"{key}_{name}"]
        if b is not None:
            out["bias"] = b
        return out

    def forward(self, x: Tensor) -> Tensor:
        label = self.active
        spec = self.specs[label]
        if spec.op == "conv":
            s = self.slot
            return F.conv2d(x, self.weight, self.bias, s.stride, s.padding, 1, s.groups)
        if spec.op not in SHARED_OPS:
            return self.owned[self._keys[label]](x)
        template = self._templates[label]
        if template.training != self.training:
            template.train(self.training)
        return torch.func.functional_call(template, self.tensors(label), (x,))

    def extra_repr(self) -> str:
        return f"{self.slot.describe()}, {len(self.labels)} choices, active={self.active}"


class Supernet(nn.Module):
    """The backbone of ``space`` with a :class:`ChoiceSlot` in every slot.

    Args:
        space: the search space (backbone, classes, slot policy, menu) it holds.

    Call :meth:`set_path` before a forward pass (the default path is each slot's first
    choice). Random init: the backbone's own initialisation for the shared kernels, each
    operator's for its own parameters; seed the global RNG before constructing for equal
    weights.

    Shapes:
        x:   Tensor[N, 3, H, W]
        out: Tensor[N, num_classes]
    """

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        from search_spaces.backbones import get_backbone

        self.space = space
        net = get_backbone(space.backbone, space.num_classes)
        self._slots: dict[str, ChoiceSlot] = {}
        for slot in space.slots:
            specs = [space.spec(label) for label in space.choices[slot.path]]
            choice = ChoiceSlot(slot, get_module(net, slot.path), specs)
            set_module(net, slot.path, choice)
            self._slots[slot.path] = choice
        self.net = net

    @property
    def slot_paths(self) -> tuple[str, ...]:
        return tuple(self._slots)

    def choice_slot(self, path: str) -> ChoiceSlot:
        return self._slots[path]

    def set_path(self, path: Architecture | Mapping[str, str]) -> None:
        """Activate one choice per slot: an :class:`Architecture` or ``{slot path: label}``."""
        labels = _labels(path)
        missing = [p for p in self._slots if p not in labels]
        if missing:
            raise ValueError(f"the path has no choice for slot {missing[0]!r}")
        extra = [p for p in labels if p not in self._slots]
        if extra:
            raise ValueError(f"{extra[0]!r} is not a slot of this supernet")
        for p, label in labels.items():
            self._slots[p].set_active(label)

    @property
    def path(self) -> dict[str, str]:
        """The active choice label of every slot."""
        return {p: s.active for p, s in self._slots.items()}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def path_state_dict(self, path: Architecture | Mapping[str, str]) -> dict[str, Tensor]:
        """The weights of one path under the key names of ``build_model(arch)``'s state dict."""
        labels = _labels(path)
        prefixes = tuple(p + "." for p in self._slots)
        out = {
            k: v
            for k, v in self.net.state_dict(keep_vars=True).items()
            if not k.startswith(prefixes)
        }
        for p, slot in self._slots.items():
            if labels[p] not in slot.specs:
                slot.set_active(labels[p])  # raises the ValueError naming the choice
            for name, t in slot.tensors(labels[p]).items():
                out[f"{p}.{name}"] = t
        return out

    def extract(self, arch: Architecture) -> nn.Module:
        """``build_model(arch)`` holding a copy of this supernet's weights for ``arch``'s path.

        The result is a plain stand-alone model (fine-tune it, export it); in the same mode
        and on the same inputs it computes what the supernet computes on that path.
        """
        model = build_model(arch)
        state = {k: v.detach().clone() for k, v in self.path_state_dict(arch).items()}
        model.load_state_dict(state, strict=True)
        first = next(self.parameters(), None)
        if first is not None:
            model.to(first.device)
        return model.train(self.training)

    def parameter_count(self) -> int:
        """Learnable parameters of the whole supernet (every choice of every slot)."""
        return sum(p.numel() for p in self.parameters())

    def unshared_parameter_count(self) -> int:
        """What :meth:`parameter_count` would be if every choice kept its own weights."""
        in_slots = sum(p.numel() for s in self._slots.values() for p in s.parameters(recurse=True))
        own = sum(
            OPS[spec.op].cost(s.slot, **spec.hparams).params
            for s in self._slots.values()
            for spec in s.specs.values()
        )
        return self.parameter_count() - in_slots + own

    def memory_bytes(self) -> int:
        """Bytes of the supernet's parameters and buffers (weights only, no optimizer state)."""
        tensors = [*self.parameters(), *self.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)


def _labels(path: Architecture | Mapping[str, str]) -> dict[str, str]:
    if isinstance(path, Architecture):
        return {p: spec.label for p, spec in path.ops.items()}
    return dict(path)
