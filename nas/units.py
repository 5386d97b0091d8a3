"""Parsers and formatters for the quantities users type: FLOPs, counts, latency, durations.

Every parser takes the text as typed and returns a plain number, raising ``ValueError`` with
one sentence naming the value and what is accepted. The ``arg_*`` wrappers turn that into
``argparse.ArgumentTypeError`` so a bad value ends the command with exit code 2.

=========== ==================================================== =====================
quantity    accepted                                             result
=========== ==================================================== =====================
FLOPs       ``2GFLOPs``, ``2 GFLOPs``, ``500MFLOPs``, ``2e9``,   int (multiply-adds)
            ``2G``, ``1.5 gflops``, ``750M``
count       ``10M``, ``10 M``, ``2.5M params``, ``500k``, ``1e7`` int
latency     ``15ms``, ``15 ms``, ``0.5s``, ``800us``, ``15``     float milliseconds
            (a bare number is milliseconds)
duration    ``90``, ``90s``, ``30m``, ``1.5h``, ``1h30m``, ``2d`` float seconds
            (a bare number is seconds)
=========== ==================================================== =====================

SI prefixes are decimal (``k`` = 1e3, ``M`` = 1e6, ``G`` = 1e9, ``T`` = 1e12), as in the
papers' FLOPs tables; ``k`` and ``K`` are both accepted.

Imports only the standard library; must not import any other ConvNAS module.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "arg_count",
    "arg_duration",
    "arg_flops",
    "arg_latency",
    "format_count",
    "format_duration",
    "format_flops",
    "format_ms",
    "parse_count",
    "parse_duration",
    "parse_flops",
    "parse_latency",
]

_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
# A number, optional spaces, an optional SI prefix, then an optional unit word.
_NUMBER = r"([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)"
_QUANTITY = re.compile(rf"^\s*{_NUMBER}\s*([kKMGT]?)\s*([A-Za-z]*)\s*$")
_FLOP_UNITS = {"", "flops", "flop"}
_COUNT_UNITS = {"", "params", "param", "parameters"}


def _split(text: str, what: str, example: str, units: set[str]) -> tuple[float, str]:
    """(number, prefix) of ``text``; the unit word must be one of ``units`` (lower case)."""
    if not isinstance(text, str):
        text = str(text)
    m = _QUANTITY.match(text)
    if m is None:
        raise ValueError(f"{what} {text!r} is not a number with an optional unit, e.g. {example}")
    value, prefix, unit = float(m.group(1)), m.group(2), m.group(3).lower()
    # "1.5gflops", "10m": a lower-case prefix glued to the unit still means giga/mega here
    # (nobody budgets milli-FLOPs), so read it as the SI prefix.
    if not prefix and unit[:1] in "kmgt" and unit[1:] in units and unit:
        prefix, unit = unit[0].upper() if unit[0] != "k" else "k", unit[1:]
    if unit not in units:
        shown = m.group(3)
        raise ValueError(f"{what} {text!r} has an unknown unit {shown!r}, e.g. write {example}")
    return value, prefix


def _positive(value: float, text: str, what: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} must be finite")
    if value <= 0:
        raise ValueError(f"{what} {text!r} must be greater than 0")


def parse_flops(text: str) -> int:
    """``"2GFLOPs"`` -> ``2_000_000_000``; also ``2 GFLOPs``, ``500MFLOPs``, ``2e9``, ``2G``."""
    what, example = "FLOPs budget", "2GFLOPs, 500MFLOPs, 2e9 or 2G"
    value, prefix = _split(text, what, example, _FLOP_UNITS)
    value *= _PREFIX[prefix]
    _positive(value, text, what)
    return int(round(value))


def parse_count(text: str, what: str = "parameter count") -> int:
    """``"10M"`` -> ``10_000_000``; also ``10 M``, ``2.5M params``, ``500k``, ``1e7``."""
    example = "10M, 2.5M, 500k or 1e7"
    value, prefix = _split(text, what, example, _COUNT_UNITS)
    value *= _PREFIX[prefix]
    _positive(value, text, what)
    return int(round(value))


_TIME_UNITS_MS = {"ms": 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3, "": 1.0}


def parse_latency(text: str) -> float:
    """``"15ms"`` -> ``15.0`` (milliseconds); also ``0.5s``, ``800us``; a bare number is ms."""
    what, example = "latency", "15ms, 0.5s or 800us"
    if not isinstance(text, str):
        text = str(text)
    m = re.match(rf"^\s*{_NUMBER}\s*(ms|s|us|µs|)\s*$", text)
    if m is None:
        raise ValueError(f"{what} {text!r} is not a time, e.g. {example}")
    value = float(m.group(1)) * _TIME_UNITS_MS[m.group(2)]
    _positive(value, text, what)
    return value


_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)\s*(d|h|m|s)")
_DURATION_SCALE = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str, what: str = "duration") -> float:
    """``"1h30m"`` -> ``5400.0`` seconds; also ``90``, ``90s``, ``30m``, ``1.5h``, ``2d``."""
    example = "3600, 90s, 30m, 1.5h or 1h30m"
    if not isinstance(text, str):
        text = str(text)
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        parts = _DURATION_PART.findall(s)
        rebuilt = "".join(f"{n}{u}" for n, u in parts)
        if not parts or rebuilt != re.sub(r"\s+", "", s):
            raise ValueError(f"{what} {text!r} is not a duration, e.g. {example}") from None
        value = sum(float(n) * _DURATION_SCALE[u] for n, u in parts)
    _positive(value, text, what)
    return value


T = TypeVar("T")


def _argparse_type(fn: Callable[[str], T], name: str) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            return fn(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name  # argparse names the type in its fallback message
    return parse


arg_flops = _argparse_type(parse_flops, "flops")
arg_count = _argparse_type(parse_count, "count")
arg_latency = _argparse_type(parse_latency, "latency")
arg_duration = _argparse_type(parse_duration, "duration")


def _si(value: float, digits: int) -> tuple[str, str]:
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f}", prefix
    return f"{value:.0f}", ""


def format_flops(value: float, digits: int = 2) -> str:
    """``2.1e9`` -> ``"2.10 GFLOPs"``."""
    num, prefix = _si(value, digits)
    return f"{num} {prefix}FLOPs"


def format_count(value: float, digits: int = 2) -> str:
    """``11_200_000`` -> ``"11.20M"``."""
    num, prefix = _si(value, digits)
    return f"{num}{prefix}"


def format_ms(value: float | None) -> str:
    """Milliseconds with three significant digits; ``None`` -> ``"-"``."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.3g} ms"


def format_duration(seconds: float | None) -> str:
    """``5400`` -> ``"1h30m"``, ``75`` -> ``"1m15s"``; ``None`` -> ``"?"``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{sec:02d}s"
    return f"{sec}s"
