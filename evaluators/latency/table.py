"""The latency lookup table: per-slot entries that predict a candidate's latency by addition.

:class:`LatencyTable` follows the cost model's decomposition: a slot's latency depends only
on that slot's choice, so ``total = base + Σ slot entries``. Each (slot shape, operator
choice) is timed once, alone, on ``Tensor[batch, C_in, H, W]`` and kept in a JSON cache on
disk keyed by everything that changes the number (device model, torch version, dtype,
threads, batch size, memory format). ``base`` is the measured all-``conv`` model minus its
slots' ``conv`` entries, so the prediction of the all-``conv`` model equals its measurement.
The prediction is for screening; a search measures the candidates it keeps.

That sum is biased inside a network (see :mod:`evaluators.latency.calibrate`);
:meth:`LatencyTable.calibrate` measures a few dozen architectures end to end (interleaved,
:mod:`evaluators.latency.interleaved`) and fits a small linear model on the table's per-family
sums, kept in the same cache. Once calibrated, :meth:`LatencyTable.predict` uses that model;
:meth:`LatencyTable.predict_table` is always the plain sum.

Imports :mod:`evaluators.latency.measure`, ``.interleaved``, ``.calibrate`` and
``search_spaces``; must not import other ``evaluators`` modules, nor ``nas``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluators.latency.calibrate import (
    FEATURE_SETS,
    Calibration,
    calibration_sample,
    make_features,
    select_calibration,
)
from evaluators.latency.interleaved import measure_interleaved
from evaluators.latency.measure import (
    LatencyResult,
    check_int,
    device_name,
    dtype_name,
    input_size,
    measure_latency,
    parse_device,
)
from search_spaces.slots import Slot

__all__ = ["CACHE_FORMAT", "LatencyTable", "default_cache_dir"]

CACHE_FORMAT = "convnas.latency-table/1"


# -- lookup-table predictor -----------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/convnas/latency`` (``~/.cache/convnas/latency`` when unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "convnas" / "latency"


def _slot_key(slot: Slot) -> str:
    """Readable form of ``slot.shape_key``: everything but the path."""
    (ih, iw), (oh, ow) = slot.input_size, slot.output_size
    return (
        f"{slot.in_channels}->{slot.out_channels},k{slot.kernel_size},s{slot.stride},"
        f"p{slot.padding},g{slot.groups},b{int(slot.bias)},{ih}x{iw}->{oh}x{ow}"
    )


def _as_spec(choice: Any) -> Any:
    """An ``OpSpec`` from an ``OpSpec``, a label string or an ``(op, hparams)`` pair."""
    from search_spaces.arch import OpSpec

    if isinstance(choice, OpSpec):
        return choice
    if isinstance(choice, str):
        return OpSpec.parse_label(choice)
    if isinstance(choice, tuple) and len(choice) == 2 and isinstance(choice[0], str):
        hp = choice[1] if choice[1] is not None else {}
        if not isinstance(hp, Mapping):
            raise ValueError(f"hyperparameters of {choice[0]!r} must be a mapping, got {hp!r}")
        return OpSpec.make(choice[0], **hp)
    if hasattr(choice, "op") and hasattr(choice, "hparams"):
        return OpSpec.make(choice.op, **dict(choice.hparams))
    raise ValueError(
        "an operator choice must be an OpSpec, a label such as 'oct(a=0.5)' or an "
        f"(op_name, hparams) pair, got {choice!r}"
    )


class LatencyTable:
    """Per-slot latency lookup table: ``predict(choices) = base + Σ entry(slot, choice)``.

    Args:
        slots: the slots of the backbone (:func:`search_spaces.slots.find_slots`).
        base_model: the all-``conv`` model those slots were found in. When given, ``base`` is
            its measured latency minus the slots' ``conv`` entries, so the prediction of the
            all-``conv`` choice equals that measurement; without it ``base`` is 0 and a
            prediction is the sum of the slot entries only.
        resolution: input size of ``base_model`` (required with it).
        base_key: name under which the base measurement is cached (e.g. backbone, classes,
            resolution and slot policy); ``None`` re-measures the base in every new table.
        batch_size, device, dtype, channels_last, warmup, repeats: as :func:`measure_latency`;
            every entry and the base are timed with them.
        clock: ``"wall"`` or ``"thread"`` (CPU time of the thread; needs one intra-op thread),
            for the entries, the base and a calibration.
        cache_dir: folder of the JSON cache (default :func:`default_cache_dir`).
        use_cache: ``False`` keeps entries in memory only.

    Entries are measured lazily, once per (slot shape, choice), and written to the cache
    atomically (temporary file + ``os.replace``) after merging whatever other processes wrote
    meanwhile, so several search workers can share one file. Measuring moves nothing of the
    caller's: slot modules are built fresh; ``base_model`` is copied before it is timed.
    """

    def __init__(
        self,
        slots: Sequence[Slot],
        *,
        base_model: nn.Module | None = None,
        resolution: int | Sequence[int] | None = None,
        base_key: str | None = None,
        batch_size: int = 1,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        warmup: int = 10,
        repeats: int = 30,
        clock: str = "wall",
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
    ) -> None:
        self.slots: tuple[Slot, ...] = tuple(slots)
        if not all(isinstance(s, Slot) for s in self.slots):
            raise ValueError("slots must be a sequence of search_spaces.slots.Slot")
        self._by_path = {s.path: s for s in self.slots}
        if len(self._by_path) != len(self.slots):
            raise ValueError("slots must have distinct paths")
        if base_model is not None and resolution is None:
            raise ValueError("resolution is required with base_model (the input size it runs at)")
        self.resolution = input_size(resolution) if resolution is not None else None
        self.device = parse_device(device)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.warmup = check_int("warmup", warmup, 0)
        self.repeats = check_int("repeats", repeats, 1)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
        self.dtype = dtype
        self.channels_last = bool(channels_last)
        if clock not in ("wall", "thread"):
            raise ValueError(f"clock must be 'wall' or 'thread', got {clock!r}")
        if clock == "thread" and (self.device.type != "cpu" or torch.get_num_threads() != 1):
            raise ValueError(
                "clock 'thread' needs the CPU with one intra-op thread (torch.set_num_threads(1))"
            )
        self.clock = clock
        self.base_key = base_key
        #: (backbone, num_classes, resolution, slot policy) when built by :meth:`for_backbone`
        self.space_key: tuple[str, int, int, str] | None = None
        #: the fitted correction used by :meth:`predict`, or ``None`` (the plain sum)
        self.calibration: Calibration | None = None
        self._base_model = base_model
        self._base_model_ms: float | None = None
        #: number of timings this table ran (slot entries and the base model)
        self.measurements = 0
        threads = torch.get_num_threads() if self.device.type == "cpu" else None
        self.context: dict[str, Any] = {
            "device": self.device.type,
            "device_name": device_name(self.device),
            "torch": torch.__version__,
            "dtype": dtype_name(dtype),
            "threads": threads,
            "batch_size": self.batch_size,
            "channels_last": self.channels_last,
        }
        if clock != "wall":  # older caches (wall clock) keep their names
            self.context["clock"] = clock
        self.cache_path: Path | None = None
        if use_cache:
            folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            blob = json.dumps(self.context, sort_keys=True).encode()
            slug = re.sub(r"[^A-Za-z0-9]+", "-", self.context["device_name"]).strip("-")[:40]
            name = f"{slug or self.device.type}-{hashlib.sha256(blob).hexdigest()[:12]}.json"
            self.cache_path = folder / name
        self._entries: dict[str, dict[str, Any]] = {}
        self._bases: dict[str, dict[str, Any]] = {}
        self._calibrations: dict[str, dict[str, Any]] = {}
        self._dirty = False
        self._load()

    # -- construction from a named backbone -----------------------------------------------
    @classmethod
    def for_backbone(
        cls,
        backbone: str,
        *,
        num_classes: int = 10,
        resolution: int | None = None,
        slots: str = "all",
        **kwargs: Any,
    ) -> LatencyTable:
        """Table for a named backbone; the base is its all-``conv`` model, cached by name.

        ``resolution`` defaults to the backbone's own (32 for CIFAR networks, else 224).
        Other keyword arguments go to the constructor.
        """
        from search_spaces.backbones import default_resolution, get_backbone
        from search_spaces.slots import slots_for

        res = default_resolution(backbone) if resolution is None else resolution
        slot_list = slots_for(backbone, num_classes, res, slots)
        key = f"{backbone}|classes={num_classes}|res={res}|slots={slots}"
        table = cls(
            slot_list,
            base_model=get_backbone(backbone, num_classes),
            resolution=res,
            base_key=key,
            **kwargs,
        )
        table.space_key = (backbone, num_classes, res, slots)
        return table

    # -- cache ----------------------------------------------------------------------------
    def _read_file(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if self.cache_path is None or not self.cache_path.is_file():
            return {}, {}, {}
        try:
            data = json.loads(self.cache_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}, {}, {}  # an unreadable cache is re-measured, never fatal
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
            return {}, {}, {}
        if data.get("context") != self.context:
            return {}, {}, {}
        parts = (data.get("entries", {}), data.get("bases", {}), data.get("calibrations", {}))
        entries, bases, cals = (p if isinstance(p, dict) else {} for p in parts)
        return entries, bases, cals

    def _load(self) -> None:
        entries, bases, cals = self._read_file()
        self._entries.update(entries)
        self._bases.update(bases)
        self._calibrations.update(cals)

    def save(self) -> None:
        """Merge with the file on disk (first measurement wins) and write it atomically."""
        if self.cache_path is None or not self._dirty:
            return
        entries, bases, cals = self._read_file()
        # entries already on disk win: a key is measured once and then fixed for everyone
        self._entries.update(entries)
        self._bases.update(bases)
        self._calibrations.update(cals)
        data = {
            "format": CACHE_FORMAT,
            "context": self.context,
            "entries": dict(sorted(self._entries.items())),
            "bases": dict(sorted(self._bases.items())),
            "calibrations": dict(sorted(self._calibrations.items())),
        }
        folder = self.cache_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.cache_path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.write("\n")
            os.replace(tmp, self.cache_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._dirty = False

    def __len__(self) -> int:
        """Number of slot entries known (measured here or loaded from the cache)."""
        return len(self._entries)

    # -- entries --------------------------------------------------------------------------
    def _measure(self, module: nn.Module, size: tuple[int, int], in_channels: int) -> LatencyResult:
        self.measurements += 1
        return measure_latency(
            module,
            size,
            batch_size=self.batch_size,
            device=self.device,
            warmup=self.warmup,
            repeats=self.repeats,
            dtype=self.dtype,
            channels_last=self.channels_last,
            in_channels=in_channels,
            clock=self.clock,
        )

    def _slot(self, slot: Slot | str) -> Slot:
        if isinstance(slot, Slot):
            return slot
        try:
            return self._by_path[slot]
        except KeyError:
            shown = ", ".join(list(self._by_path)[:3])
            raise ValueError(
                f"{slot!r} is not a slot of this table (slots look like {shown})"
            ) from None

    def entry_ms(self, slot: Slot | str, choice: Any, *, save: bool = True) -> float:
        """Median latency (ms) of ``choice`` alone at ``slot``'s shape; measured on first use.

        ``choice`` is an ``OpSpec``, a label such as ``"oct(a=0.5)"`` or ``(op, hparams)``.
        """
        s = self._slot(slot)
        spec = _as_spec(choice)
        key = f"{_slot_key(s)}|{spec.label}"
        hit = self._entries.get(key)
        if hit is None:
            from search_spaces.ops import get_op

            info = get_op(spec.op)
            reason = info.check_slot(s, **spec.hparams)
            if reason is not None:
                raise ValueError(
                    f"{spec.label} cannot replace slot {s.path!r} ({s.describe()}): {reason}"
                )
            module = info.build(s, **spec.hparams)
            r = self._measure(module, s.input_size, s.in_channels)
            hit = {"median_ms": r.median_ms, "iqr_ms": r.iqr_ms, "repeats": r.repeats}
            self._entries[key] = hit
            self._dirty = True
            if save:
                self.save()
        return float(hit["median_ms"])

    @property
    def base_model_ms(self) -> float | None:
        """Measured latency (ms) of the all-``conv`` base model, or ``None`` without one."""
        if self._base_model is None:
            return None
        if self._base_model_ms is None:
            hit = self._bases.get(self.base_key) if self.base_key is not None else None
            if hit is None:
                size = self.resolution or (1, 1)  # __init__ requires a resolution with the model
                # a copy: measuring moves a model to the device and dtype in place
                r = self._measure(copy.deepcopy(self._base_model), size, 3)
                hit = {"median_ms": r.median_ms, "iqr_ms": r.iqr_ms, "repeats": r.repeats}
                if self.base_key is not None:
                    self._bases[self.base_key] = hit
                    self._dirty = True
                    self.save()
            self._base_model_ms = float(hit["median_ms"])
        return self._base_model_ms

    @property
    def base_ms(self) -> float:
        """Latency of everything that is not a slot: measured base model − Σ slot conv entries.

        Never negative. Each entry is timed alone, so it carries a call's fixed overhead; on a
        small model (a CIFAR network at 16 px, say) or a busy machine the conv entries can add
        up to more than the whole base model. The non-slot part is then taken as 0 rather
        than negative -- a negative base could predict a cheap candidate at 0 ms or less --
        and predictions are the plain sum of the entries, which overestimates a little.
        """
        full = self.base_model_ms
        if full is None:
            return 0.0
        convs = [self.entry_ms(s, ("conv", {}), save=False) for s in self.slots]
        self.save()
        return max(0.0, full - math.fsum(convs))

    def warm(self, choices: Mapping[str, Iterable[Any]]) -> int:
        """Measure every missing entry of ``choices`` (slot path -> iterable of choices).

        Pass ``SearchSpace.choices`` to fill the table before a search. Returns the number
        of new measurements.
        """
        before = self.measurements
        for path, options in choices.items():
            for choice in options:
                self.entry_ms(path, choice, save=False)
        self.base_model_ms  # noqa: B018 - measures the base when missing
        self.save()
        return self.measurements - before

    # -- prediction -----------------------------------------------------------------------
    def per_slot(self, choices: Mapping[str, Any]) -> dict[str, float]:
        """Entry (ms) of every slot for ``choices``; slots not in ``choices`` keep ``conv``."""
        unknown = [p for p in choices if p not in self._by_path]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a slot of this table")
        out = {
            s.path: self.entry_ms(s, choices.get(s.path, ("conv", {})), save=False)
            for s in self.slots
        }
        self.save()
        return out

    def predict_table(self, choices: Mapping[str, Any]) -> float:
        """The uncalibrated prediction (ms): ``base + Σ`` slot entries.

        ``choices`` maps slot paths to an ``OpSpec``, a label or an ``(op_name, hparams)``
        pair; a slot left out keeps its ``conv``. Missing entries are measured first.
        """
        slots_ms = self.per_slot(choices)  # validates the choices before the base is timed
        return self.base_ms + math.fsum(slots_ms.values())

    def predict(self, choices: Mapping[str, Any]) -> float:
        """Predicted latency (ms): the calibrated model when there is one, else
        :meth:`predict_table`. ``choices`` as :meth:`predict_table`."""
        if self.calibration is None:
            return self.predict_table(choices)
        return max(0.0, self.calibration.predict(self.features(choices)))

    def predict_arch(self, arch: Any) -> float:
        """:meth:`predict` for an ``Architecture`` (uses ``arch.ops``)."""
        return self.predict(dict(arch.ops))

    # -- calibration ----------------------------------------------------------------------
    def families(self) -> list[str]:
        """Operator families the features name: ``conv`` first, then the others by name."""
        from search_spaces.ops import OPS

        return ["conv", *sorted(op for op in OPS if op != "conv")]

    def slot_entries(self, choices: Mapping[str, Any]) -> list[tuple[str, float]]:
        """``(operator family, entry ms)`` of every slot for ``choices``."""
        slots_ms = self.per_slot(choices)
        fams = {s.path: _as_spec(choices.get(s.path, ("conv", {}))).op for s in self.slots}
        return [(fams[p], ms) for p, ms in slots_ms.items()]

    def features(self, choices: Mapping[str, Any]) -> dict[str, float]:
        """Calibration features of ``choices`` in the calibration's feature set (``family``
        without one; :func:`evaluators.latency.calibrate.make_features`)."""
        kind = self.calibration.kind if self.calibration is not None else "family"
        return make_features(self.slot_entries(choices), self.families(), kind)

    def calibration_key(self, n: int, seed: int) -> str:
        return f"{self.base_key}|n={n}|seed={seed}|families={','.join(self.families())}"

    def fit_calibration(
        self,
        choices: Sequence[Mapping[str, Any]],
        measured_ms: Sequence[float],
        *,
        ridge: float = 1.0,
        kind: str = "auto",
        key: str | None = None,
        **info: Any,
    ) -> Calibration:
        """Fit (and use from now on) the calibration on already measured architectures.

        ``choices`` holds one slot-path -> choice mapping per architecture, ``measured_ms``
        its measured latency. ``ridge`` pulls toward the plain table (1: about one observation's
        weight per coefficient). ``kind`` is a feature set of
        :data:`~evaluators.latency.calibrate.FEATURE_SETS`, or ``"auto"``: the one with the
        lowest leave-one-out error on these architectures. With ``key`` the fit is stored in
        the cache under that name.
        """
        if kind != "auto" and kind not in FEATURE_SETS:
            raise ValueError(
                f"kind must be 'auto' or one of {', '.join(FEATURE_SETS)}, got {kind!r}"
            )
        self.calibration = select_calibration(
            [self.slot_entries(c) for c in choices],
            list(measured_ms),
            self.families(),
            kinds=FEATURE_SETS if kind == "auto" else (kind,),
            base_ms=self.base_ms,
            ridge=ridge,
            clock=self.clock,
            threads=self.context["threads"],
            **info,
        )
        if key is not None:
            self._calibrations[key] = self.calibration.to_dict()
            self._dirty = True
            self.save()
        return self.calibration

    def calibrate(
        self,
        choices: Mapping[str, Sequence[str]],
        *,
        n: int = 30,
        seed: int = 0,
        rounds: int = 6,
        passes: int = 3,
        warmup: int = 2,
        ridge: float = 1.0,
    ) -> Calibration:
        """Calibrate on ``n`` architectures of the space ``choices`` (slot path -> labels).

        Reuses a calibration cached under the same key (space, ``n``, ``seed``, families).
        Otherwise draws ``n`` widely spread architectures
        (:func:`evaluators.latency.calibrate.calibration_sample` with ``seed``), builds them,
        measures them together in ``rounds`` interleaved rounds of ``passes`` passes
        (:func:`evaluators.latency.interleaved.measure_interleaved`, the table's clock and
        threads), fills their table entries and fits. Needs a table from :meth:`for_backbone`.
        """
        if self.space_key is None or self.device.type != "cpu":
            raise ValueError(
                "calibrate needs a CPU table made by LatencyTable.for_backbone (it builds "
                "the sampled architectures)"
            )
        check_int("n", n, 2)
        key = self.calibration_key(n, seed)
        hit = self._calibrations.get(key)
        if hit is not None:
            self.calibration = Calibration.from_dict(hit)
            return self.calibration
        from search_spaces.arch import build_model
        from search_spaces.space import SearchSpace

        backbone, classes, res, policy = self.space_key
        space = SearchSpace(backbone, num_classes=classes, resolution=res, slots=policy)
        picks = calibration_sample(choices, n, random.Random(seed))
        archs = [space.to_architecture(p) for p in picks]
        t0 = time.perf_counter()
        for a in archs:  # entries first: the timing of the table is not the calibration's
            self.per_slot(dict(a.ops))
        self.base_ms  # noqa: B018 - measures the base when missing
        results = measure_interleaved(
            [build_model(a) for a in archs],
            res,
            rounds=rounds,
            passes=passes,
            warmup=warmup,
            threads=None,
            clock=self.clock,
            batch_size=self.batch_size,
        )
        elapsed = time.perf_counter() - t0
        return self.fit_calibration(
            [dict(a.ops) for a in archs],
            [r.median_ms for r in results],
            ridge=ridge,
            key=key,
            measure_s=elapsed,
            info={"rounds": rounds, "passes": passes, "seed": seed},
        )
