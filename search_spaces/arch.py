"""``Architecture``: the serialisable spec of one candidate, and ``build_model``.

The file format (``convnas.arch/1``)::

    {"format": "convnas.arch/1", "backbone": "resnet50", "num_classes": 100,
     "resolution": 224, "slots": "spatial",
     "default": {"op": "scconv", "alpha": 0.5, "r": 2, "g": 2},
     "ops": {"layer4.*": {"op": "octconv", "alpha": 0.5}, "layer1.0.conv2": {"op": "conv"}}}

``default`` (optional, else ``conv``) applies to every slot; ``ops`` keys are slot paths or
fnmatch patterns. The most specific key wins: an exact path beats any pattern, and among
patterns the one with more literal (non-wildcard) characters wins; two equally specific
patterns that give one slot different ops are an error, and so is a key that matches no slot.

Loading expands a file to the canonical form, which lists every slot; the id is a hash of the
canonical JSON (sorted keys, canonical number types), so equal architectures have equal ids
however they were written.

Imports :mod:`search_spaces.ops`, :mod:`search_spaces.slots` (the backbones and
:mod:`search_spaces.octave_pass` when building) and :mod:`search_spaces.syntax` (the file
read without torch: format, JSON, top level); must not import :mod:`search_spaces.space`
(which builds on it), ``evaluators`` or ``nas``.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torch import nn

from search_spaces.ops import OPS, get_op
from search_spaces.slots import SLOT_POLICIES, Slot, set_module, slots_for
from search_spaces.syntax import (
    ARCH_FORMAT,
    ArchitectureError,
    check_header,
    loads_json,
    parse_number,
    read_architecture_file,
)

__all__ = [
    "ARCH_FORMAT",
    "Architecture",
    "ArchitectureError",
    "OpSpec",
    "build_model",
    "load_architecture",
    "parse_number",
]

_LABEL_NAMES = {"alpha": "a"}  # short names used in readable choice labels
_LABEL_KEYS = {v: k for k, v in _LABEL_NAMES.items()}


def _canonical_value(op: str, name: str, value: Any, kind: Any) -> Any:
    """Coerce a hyperparameter to its canonical type so ``1`` and ``1.0`` hash alike."""
    if value is None:
        if name == "rank":
            return None
        raise ValueError(f"{op} parameter {name!r} must not be null")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{op} parameter {name!r} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{op} parameter {name!r} must be finite, got {value!r}")
    if kind is float:
        return round(float(value), 6)
    if float(value) != int(value):
        raise ValueError(f"{op} parameter {name!r} must be an integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class OpSpec:
    """One operator choice: the op name and its hyperparameters, in canonical form.

    ``OpSpec.make("scconv", alpha=0.5, r=2, g=2)``; ``spec.label`` is the readable choice
    string ``scconv(a=0.5,r=2,g=2)``, which :meth:`parse_label` turns back into the spec.
    """

    op: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, op: str, **hparams: Any) -> OpSpec:
        info = get_op(op)
        unknown = sorted(set(hparams) - set(info.hparams))
        if unknown:
            allowed = ", ".join(info.hparams) or "none"
            raise ValueError(f"{op} has no parameter {unknown[0]!r} (allowed: {allowed})")
        missing = [k for k in info.hparams if k not in hparams]
        if missing:
            raise ValueError(f"{op} needs parameter {missing[0]!r}")
        canon = {k: _canonical_value(op, k, hparams[k], kind) for k, kind in info.hparams.items()}
        info.validate(**canon)
        return cls(op, tuple(sorted(canon.items())))

    @classmethod
    def from_dict(cls, d: Any) -> OpSpec:
        if not isinstance(d, Mapping) or "op" not in d:
            raise ValueError(f'an op spec must be an object like {{"op": "conv"}}, got {d!r}')
        rest = {k: v for k, v in d.items() if k != "op"}
        if not isinstance(d["op"], str):
            raise ValueError(f"op must be a string naming one of {', '.join(OPS)}, got {d['op']!r}")
        return cls.make(d["op"], **rest)

    @property
    def hparams(self) -> dict[str, Any]:
        return dict(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, **self.hparams}

    @functools.cached_property
    def label(self) -> str:  # cached: labels are dictionary keys in the search's hot path
        info = OPS[self.op]
        if not self.params:
            return info.label
        parts = []
        for k in info.hparams:  # the op's own order: alpha first
            v = self.hparams[k]
            parts.append(f"{_LABEL_NAMES.get(k, k)}={'full' if v is None else _fmt(v)}")
        return f"{info.label}({','.join(parts)})"

    @classmethod
    def parse_label(cls, label: str) -> OpSpec:
        """Inverse of :attr:`label`, e.g. ``oct(a=0.25)`` or ``linear(a=0.5,rank=full)``."""
        text = label.strip()
        name, _, rest = text.partition("(")
        by_label = {info.label: info.name for info in OPS.values()}
        op = by_label.get(name.strip(), name.strip())
        if op not in OPS:
            valid = ", ".join(by_label)
            raise ValueError(f"unknown operator {name.strip()!r} in {label!r}; valid: {valid}")
        hp: dict[str, Any] = {}
        if rest:
            if not rest.endswith(")"):
                raise ValueError(f"malformed operator choice {label!r}: missing ')'")
            for item in filter(None, (s.strip() for s in rest[:-1].split(","))):
                k, eq, v = item.partition("=")
                if not eq:
                    raise ValueError(f"malformed parameter {item!r} in {label!r}: expected k=v")
                hp[_LABEL_KEYS.get(k.strip(), k.strip())] = parse_number(v.strip(), label)
        return cls.make(op, **hp)


def _fmt(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)


@dataclass(frozen=True, eq=False)
class Architecture:
    """One candidate: a backbone and the operator chosen for every one of its slots.

    ``ops`` maps every slot path to its :class:`OpSpec`, in forward order. Construction
    validates everything (unknown slot, missing slot, op not allowed on a slot) and raises
    :class:`ArchitectureError`. Use :meth:`from_dict` for files with ``default`` and patterns.
    """

    backbone: str
    num_classes: int
    resolution: int
    slots: str
    ops: Mapping[str, OpSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("num_classes", "resolution"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, int)
                or v < (2 if name == "num_classes" else 1)
            ):
                raise ArchitectureError(f"{name} must be a positive integer, got {v!r}")
        if self.slots not in SLOT_POLICIES:
            raise ArchitectureError(
                f"slots must be one of {', '.join(SLOT_POLICIES)}, got {self.slots!r}"
            )
        try:
            slot_list = slots_for(self.backbone, self.num_classes, self.resolution, self.slots)
        except ValueError as e:
            raise ArchitectureError(str(e)) from None
        by_path = {s.path: s for s in slot_list}
        extra = [p for p in self.ops if p not in by_path]
        if extra:
            raise ArchitectureError(f"slot {extra[0]!r} is not a slot of {self.backbone}")
        ordered: dict[str, OpSpec] = {}
        for s in slot_list:
            spec = self.ops.get(s.path)
            if spec is None:
                raise ArchitectureError(f"slot {s.path!r} has no operator")
            if not isinstance(spec, OpSpec):
                raise ArchitectureError(f"slot {s.path!r}: expected an OpSpec, got {spec!r}")
            reason = OPS[spec.op].check_slot(s, **spec.hparams)
            if reason is not None:
                raise ArchitectureError(f"slot {s.path!r} ({s.describe()}): {spec.label}: {reason}")
            ordered[s.path] = spec
        object.__setattr__(self, "ops", MappingProxyType(ordered))
        object.__setattr__(self, "_slots", slot_list)

    # -- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Canonical form: every slot listed."""
        return {
            "format": ARCH_FORMAT,
            "backbone": self.backbone,
            "num_classes": self.num_classes,
            "resolution": self.resolution,
            "slots": self.slots,
            "ops": {p: spec.to_dict() for p, spec in self.ops.items()},
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent)

    @property
    def arch_id(self) -> str:
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Architecture) and self.arch_id == other.arch_id

    def __hash__(self) -> int:
        return hash(self.arch_id)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for spec in self.ops.values():
            counts[spec.label] = counts.get(spec.label, 0) + 1
        mix = ", ".join(f"{n}x {lbl}" for lbl, n in sorted(counts.items(), key=lambda t: -t[1]))
        return f"Architecture({self.backbone}@{self.resolution}, {self.arch_id}: {mix})"

    @property
    def slot_list(self) -> tuple[Slot, ...]:
        return self._slots  # type: ignore[attr-defined]

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def uniform(
        cls,
        backbone: str,
        spec: OpSpec | None = None,
        *,
        num_classes: int = 10,
        resolution: int = 32,
        slots: str = "all",
    ) -> Architecture:
        """Every slot gets ``spec`` (default ``conv``)."""
        spec = spec or OpSpec.make("conv")
        slot_list = slots_for(backbone, num_classes, resolution, slots)
        return cls(backbone, num_classes, resolution, slots, {s.path: spec for s in slot_list})

    @classmethod
    def from_dict(cls, d: Any) -> Architecture:
        """Expand a file's dict (``default`` + path/pattern ``ops``) to the canonical spec."""
        check_header(d)
        backbone, policy = d["backbone"], d.get("slots", "all")
        num_classes, resolution = d["num_classes"], d["resolution"]
        try:
            slot_list = slots_for(backbone, num_classes, resolution, policy)
        except ValueError as e:
            raise ArchitectureError(str(e)) from None

        def spec_of(raw: Any, where: str) -> OpSpec:
            try:
                return OpSpec.from_dict(raw)
            except ValueError as e:
                raise ArchitectureError(f"{where}: {e}") from None

        default = spec_of(d.get("default", {"op": "conv"}), "default")
        raw_ops = d.get("ops", {})
        paths = [s.path for s in slot_list]
        chosen: dict[str, tuple[tuple[int, int], OpSpec, str]] = {}
        for key, raw in raw_ops.items():
            spec = spec_of(raw, f"slot {key!r}")
            is_pattern = any(c in key for c in "*?[")
            matches = fnmatch.filter(paths, key) if is_pattern else [p for p in paths if p == key]
            if not matches:
                hint = "pattern" if is_pattern else "slot path"
                raise ArchitectureError(
                    f"{hint} {key!r} matches no slot of {backbone} (slots={policy}); "
                    f"slots look like {paths[0]!r}"
                )
            literal = sum(c not in "*?[]" for c in key)
            rank = (0 if is_pattern else 1, literal)
            for p in matches:
                prev = chosen.get(p)
                if prev is None or rank > prev[0]:
                    chosen[p] = (rank, spec, key)
                elif rank == prev[0] and spec != prev[1]:
                    raise ArchitectureError(
                        f"slot {p!r} is matched equally by {prev[2]!r} and {key!r} "
                        "with different ops"
                    )
        ops = {p: (chosen[p][1] if p in chosen else default) for p in paths}
        return cls(backbone, num_classes, resolution, policy, ops)

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        try:
            d = loads_json(text)
        except ValueError as e:
            raise ArchitectureError(str(e)) from None
        return cls.from_dict(d)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the canonical JSON atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.to_json() + "\n")
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; users expect their umask
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_architecture(path: str | os.PathLike) -> Architecture:
    """Read an architecture file; every problem is an :class:`ArchitectureError` naming it."""
    d = read_architecture_file(path)  # the file, the JSON and the top level, without torch
    try:
        return Architecture.from_dict(d)
    except ArchitectureError as e:
        raise ArchitectureError(f"{path}: {e}") from None


def build_model(arch: Architecture, *, keep_octaves: bool = True) -> nn.Module:
    """The backbone with every non-``conv`` slot replaced by its operator (random init).

    ``keep_octaves`` (default) runs :func:`search_spaces.octave_pass.keep_octaves`, so that
    consecutive OctConv slots pass their (high, low) pair instead of merging and splitting it:
    the same model (outputs, gradients and BatchNorm statistics equal up to float rounding,
    same ``state_dict`` keys) with fewer operations. ``False`` gives the per-slot form.
    """
    from search_spaces.backbones import get_backbone

    model = get_backbone(arch.backbone, arch.num_classes)
    for slot in arch.slot_list:
        spec = arch.ops[slot.path]
        if spec.op != "conv":  # keep the backbone's own module (and its init) for plain convs
            set_module(model, slot.path, OPS[spec.op].build(slot, **spec.hparams))
    if keep_octaves:
        from search_spaces.octave_pass import keep_octaves as keep_octaves_pass

        keep_octaves_pass(model)
    return model
