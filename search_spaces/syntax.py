"""Architecture files and operator menus read as text: every check that needs no model.

Importing torch takes seconds; a typo in ``--ops`` or a broken architecture file should not
wait for it. This module reads an architecture file (the path, the JSON, the top-level keys)
and splits an operator menu (names, parameter names, numbers and their ranges) with the
standard library only. :mod:`search_spaces.arch` and :mod:`search_spaces.space` build on it and
add what needs the operators and the backbones (slots, per-slot limits); the command lines call
it first, so such mistakes are reported in well under a second.

:data:`OP_SIGNATURES`, :data:`PARAM_RANGES` and :data:`SLOT_POLICY_NAMES` repeat the operator
table's names, labels, parameters and their ranges (:data:`search_spaces.ops.OPS` and each
operator's ``validate``) and the slot policies; tests keep them equal.

Imports only the standard library; must not import torch, torchvision or any other
``search_spaces`` module (they import torch), nor ``evaluators`` or ``nas``.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ARCH_FORMAT",
    "ARCH_KEYS",
    "OP_SIGNATURES",
    "PARAM_RANGES",
    "SLOT_POLICY_NAMES",
    "ArchitectureError",
    "check_header",
    "loads_json",
    "parse_number",
    "read_architecture_file",
    "split_menu",
]

ARCH_FORMAT = "convnas.arch/1"
ARCH_KEYS = ("backbone", "default", "format", "num_classes", "ops", "resolution", "slots")
SLOT_POLICY_NAMES = ("all", "spatial")
#: op name -> (label prefix, {hyperparameter: type}), in the operator table's order.
OP_SIGNATURES: Mapping[str, tuple[str, Mapping[str, type]]] = {
    "conv": ("conv", {}),
    "scconv": ("scconv", {"alpha": float, "r": int, "g": int}),
    "octconv": ("oct", {"alpha": float}),
    "linearconv": ("linear", {"alpha": float, "rank": int}),
}


def _number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _in_0_1_open(v: Any) -> bool:
    return _number(v) and 0 < v < 1


def _in_0_1_half_open(v: Any) -> bool:
    return _number(v) and 0 <= v < 1


def _integer_at_least_1(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _full_or_integer(v: Any) -> bool:
    return v is None or _integer_at_least_1(v)


#: (op name, hyperparameter) -> (what the value must be, test of a parsed value): the ranges
#: the operators' own ``validate`` functions enforce, checked here on menu text without torch.
PARAM_RANGES: Mapping[tuple[str, str], tuple[str, Callable[[Any], bool]]] = {
    ("scconv", "alpha"): ("a number in the open interval (0, 1)", _in_0_1_open),
    ("scconv", "r"): ("an integer >= 1 (the squeeze ratio)", _integer_at_least_1),
    ("scconv", "g"): ("an integer >= 1 (groups of the group-wise conv)", _integer_at_least_1),
    ("octconv", "alpha"): (
        "a number in [0, 1) (the share of low-frequency channels)",
        _in_0_1_half_open,
    ),
    ("linearconv", "alpha"): ("a number in the open interval (0, 1)", _in_0_1_open),
    ("linearconv", "rank"): ("'full' or an integer >= 1", _full_or_integer),
}


class ArchitectureError(ValueError):
    """A bad architecture file or spec; the message is one sentence naming the problem."""


def loads_json(text: str) -> Any:
    """``json.loads``; ``ValueError`` of one line for bad JSON and for absurdly deep nesting."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON: {e.msg} at line {e.lineno}") from None
    except RecursionError:
        raise ValueError(
            "not a usable JSON document: its objects or lists are nested too deeply"
        ) from None


def _not_a_file(p: Path) -> str | None:
    """Why ``p`` cannot be read as a file (it is missing, a folder, a device ...), or None."""
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return None


def read_text_file(path: str | os.PathLike, what: str) -> str:
    """The text of a regular file; ``ValueError`` naming ``what`` and the path otherwise."""
    p = Path(path)
    problem = _not_a_file(p)
    if problem:
        raise ValueError(f"{what} {str(p)!r} {problem}")
    try:
        return p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {what} {str(p)!r}: {e}") from None


def check_header(d: Any) -> None:
    """The top level of an architecture file: an object with the right format, keys and types."""
    if not isinstance(d, Mapping):
        raise ArchitectureError(f"an architecture must be a JSON object, got {type(d).__name__}")
    fmt = d.get("format")
    if fmt != ARCH_FORMAT:
        raise ArchitectureError(f"format must be {ARCH_FORMAT!r}, got {fmt!r}")
    unknown = sorted(set(d) - set(ARCH_KEYS))
    if unknown:
        raise ArchitectureError(f"unknown key {unknown[0]!r}; allowed: {', '.join(ARCH_KEYS)}")
    for key in ("backbone", "num_classes", "resolution"):
        if key not in d:
            raise ArchitectureError(f"missing key {key!r}")
    if not isinstance(d["backbone"], str):
        raise ArchitectureError(f"backbone must be a string, got {d['backbone']!r}")
    for name in ("num_classes", "resolution"):
        v = d[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ArchitectureError(f"{name} must be a positive integer, got {v!r}")
    policy = d.get("slots", "all")
    if policy not in SLOT_POLICY_NAMES:
        raise ArchitectureError(
            f"slots must be one of {', '.join(SLOT_POLICY_NAMES)}, got {policy!r}"
        )
    if not isinstance(d.get("ops", {}), Mapping):
        raise ArchitectureError("ops must be an object mapping slot paths or patterns to op specs")


def read_architecture_file(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object of an architecture file, its top level checked (no torch needed).

    Every problem is an :class:`ArchitectureError` naming the file: missing, a folder or a
    device, unreadable, not JSON, nested too deeply, or a bad top level.
    """
    try:
        text = read_text_file(path, "architecture file")
    except ValueError as e:
        raise ArchitectureError(str(e)) from None
    try:
        d = loads_json(text)
        check_header(d)
    except ValueError as e:
        raise ArchitectureError(f"{path}: {e}") from None
    return d


def parse_number(text: str, where: str) -> Any:
    """A hyperparameter value of a readable label: ``2`` -> 2, ``0.5`` -> 0.5, ``full`` -> None.

    Shared by operator labels and menus; ``where`` (the label) is named in the ``ValueError``
    for anything else.
    """
    if text in ("full", "null", "None"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"parameter value {text!r} in {where!r} is not a number") from None


def split_menu(text: str) -> list[tuple[str, str, dict[str, tuple[Any, ...]]]]:
    """``"conv,oct(a=0.25|0.5)"`` -> ``[(entry, op, {param: values}), ...]``, checked as text.

    Names, parameter names, numbers and their ranges (:data:`PARAM_RANGES`) are checked here;
    the operators check the same ranges again when the space is built
    (:func:`search_spaces.space.parse_menu`). Raises ``ValueError`` naming the bad entry, and
    for a value out of range the value as typed and what is allowed.
    """
    if not isinstance(text, str):
        raise ValueError(
            f"the operator menu must be one string like 'conv,oct', got a {type(text).__name__}"
        )
    by_label = {label: name for name, (label, _) in OP_SIGNATURES.items()}
    by_label |= {n: n for n in OP_SIGNATURES}
    entries, depth, cur = [], 0, ""
    for ch in text:  # split on commas outside parentheses
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            entries.append(cur)
            cur = ""
        else:
            cur += ch
    entries.append(cur)
    out = []
    for raw in (e.strip() for e in entries):
        if not raw:
            raise ValueError(f"empty entry in operator menu {text!r}")
        name, _, rest = raw.partition("(")
        op = by_label.get(name.strip())
        if op is None:
            allowed = ", ".join(label for label, _ in OP_SIGNATURES.values())
            raise ValueError(f"unknown operator {name.strip()!r} in menu; allowed: {allowed}")
        params = OP_SIGNATURES[op][1]
        grid: dict[str, tuple[Any, ...]] = {}
        if rest:
            if not rest.endswith(")"):
                raise ValueError(f"malformed menu entry {raw!r}: missing ')'")
            for item in filter(None, (s.strip() for s in rest[:-1].split(","))):
                k, eq, v = item.partition("=")
                key = {"a": "alpha"}.get(k.strip(), k.strip())
                if not eq or key not in params:
                    allowed = ", ".join(params) or "none"
                    raise ValueError(
                        f"bad parameter {item!r} for {name.strip()}; allowed: {allowed}"
                    )
                values = []
                for x in (x.strip() for x in v.split("|")):
                    value = parse_number(x, raw)
                    allowed, ok = PARAM_RANGES[op, key]
                    if not ok(value):
                        raise ValueError(
                            f"operator menu entry {raw!r}: {key} must be {allowed}, got {x}"
                        )
                    values.append(value)
                grid[key] = tuple(values)
        out.append((raw, op, grid))
    return out
