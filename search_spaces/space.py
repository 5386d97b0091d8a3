"""``SearchSpace``: slots × operator menu, flattened to one categorical choice per slot.

The space is static and flat — every slot is one categorical parameter whose choices are
readable labels such as ``conv``, ``scconv(a=0.5,r=2,g=2)``, ``oct(a=0.25)`` or
``linear(a=0.5,rank=full)`` — so NSGA-II and TPE model every choice (conditional parameters
would be sampled at random by NSGA-II). A menu entry that does not fit a slot (SCConv on a
1×1 slot, say) is simply not among that slot's choices.

Menus are written as a comma-separated list of entries, each an op label prefix optionally
with a grid of values separated by ``|``::

    conv,scconv(a=0.5,r=2,g=2),oct(a=0.25|0.5|0.75),linear(a=0.25|0.5,rank=full|4)

An entry without parentheses takes that op's default grid (:data:`DEFAULT_GRIDS`).

Imports :mod:`search_spaces.arch`, :mod:`search_spaces.ops`, :mod:`search_spaces.slots` and
:mod:`search_spaces.syntax` (the menu split as text); must not import ``evaluators`` or ``nas``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from typing import Any

from search_spaces.arch import Architecture, OpSpec
from search_spaces.ops import OPS
from search_spaces.slots import Slot, slots_for
from search_spaces.syntax import split_menu

__all__ = ["DEFAULT_GRIDS", "DEFAULT_MENU_TEXT", "SearchSpace", "parse_menu"]

#: Default values per op, from the papers' settings: SCConv alpha 1/2, r 2, g 2 (plus a
#: cheaper alpha 1/4); OctConv alpha 0.25/0.5/0.75 (the paper's ablation range); LinearConv
#: alpha 0.25/0.5 with full-rank and rank-4 coefficients.
DEFAULT_GRIDS: Mapping[str, Mapping[str, tuple[Any, ...]]] = {
    "conv": {},
    "scconv": {"alpha": (0.25, 0.5), "r": (2,), "g": (2,)},
    "octconv": {"alpha": (0.25, 0.5, 0.75)},
    "linearconv": {"alpha": (0.25, 0.5), "rank": (None, 4)},
}


def _grid_specs(op: str, grid: Mapping[str, Sequence[Any]]) -> list[OpSpec]:
    names = list(OPS[op].hparams)
    values = [grid[n] for n in names]
    return [OpSpec.make(op, **dict(zip(names, combo))) for combo in itertools.product(*values)]


def parse_menu(text: str) -> tuple[OpSpec, ...]:
    """Parse a menu string into distinct op specs, in the order given.

    Raises ``ValueError`` naming the bad entry and the allowed operators.
    """
    specs: list[OpSpec] = []
    for raw, op, given in split_menu(text):
        grid = {k: tuple(v) for k, v in DEFAULT_GRIDS[op].items()} | given
        try:
            entry_specs = _grid_specs(op, grid)
        except ValueError as e:  # an out-of-range value: say which menu entry it came from
            raise ValueError(f"operator menu entry {raw!r}: {e}") from None
        for spec in entry_specs:
            if spec not in specs:
                specs.append(spec)
    return tuple(specs)


DEFAULT_MENU_TEXT = "conv,scconv,oct,linear"


def _default_menu() -> tuple[OpSpec, ...]:
    return parse_menu(DEFAULT_MENU_TEXT)


class SearchSpace:
    """The slots of one backbone × an operator menu.

    Args:
        backbone: a name from :func:`search_spaces.backbones.backbone_names`.
        num_classes: classes of the head.
        resolution: the target input size (square).
        slots: the slot policy, ``all`` or ``spatial``.
        menu: op specs (or a menu string); default :data:`DEFAULT_MENU_TEXT`.
    """

    def __init__(
        self,
        backbone: str,
        *,
        num_classes: int = 10,
        resolution: int = 32,
        slots: str = "all",
        menu: Sequence[OpSpec] | str | None = None,
    ) -> None:
        if menu is None:
            menu = _default_menu()
        elif isinstance(menu, str):
            menu = parse_menu(menu)
        if not menu:
            raise ValueError("the operator menu must list at least one operator")
        self.backbone, self.num_classes, self.resolution = backbone, num_classes, resolution
        self.policy = slots
        self.menu: tuple[OpSpec, ...] = tuple(menu)
        self.slots: tuple[Slot, ...] = slots_for(backbone, num_classes, resolution, slots)
        if not self.slots:
            raise ValueError(f"backbone {backbone!r} has no slots under policy {slots!r}")
        self.choices: dict[str, tuple[str, ...]] = {}
        self._specs: dict[str, OpSpec] = {}
        for slot in self.slots:
            allowed = [s for s in self.menu if OPS[s.op].check_slot(slot, **s.hparams) is None]
            if not allowed:  # conv always fits; keep the slot searchable with its original op
                allowed = [OpSpec.make("conv")]
            self.choices[slot.path] = tuple(s.label for s in allowed)
            for s in allowed:
                self._specs[s.label] = s

    def __repr__(self) -> str:
        return (
            f"SearchSpace({self.backbone}@{self.resolution}, {len(self.slots)} slots "
            f"[{self.policy}], menu={[s.label for s in self.menu]})"
        )

    @property
    def size(self) -> int:
        """Number of distinct architectures."""
        n = 1
        for c in self.choices.values():
            n *= len(c)
        return n

    def spec(self, label: str) -> OpSpec:
        return self._specs[label]

    def to_architecture(self, labels: Mapping[str, str]) -> Architecture:
        """The architecture for one label per slot (as sampled by a search backend)."""
        ops = {}
        for path, options in self.choices.items():
            label = labels.get(path)
            if label not in options:
                raise ValueError(f"slot {path!r}: choice {label!r} is not one of {list(options)}")
            ops[path] = self._specs[label]
        return Architecture(self.backbone, self.num_classes, self.resolution, self.policy, ops)

    def labels_of(self, arch: Architecture) -> dict[str, str]:
        return {p: spec.label for p, spec in arch.ops.items()}

    def sample(self, rng: random.Random) -> Architecture:
        """A uniformly random architecture of the space, from the caller's RNG."""
        return self.to_architecture({p: rng.choice(c) for p, c in self.choices.items()})

    def uniform(self, label: str) -> Architecture:
        """Every slot takes ``label`` where allowed, else ``conv`` (or its first choice)."""
        return self.to_architecture(
            {
                p: label if label in c else ("conv" if "conv" in c else c[0])
                for p, c in self.choices.items()
            }
        )
