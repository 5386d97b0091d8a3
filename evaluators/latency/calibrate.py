"""Calibration of the latency table: a small linear model fitted to measured architectures.

The lookup table times every (slot shape, choice) alone; inside a network an operator costs a
different multiple of its lone timing (its input comes from the previous layer, not from a
tensor already in cache; an op made of several small kernels pays their call overheads
again), and the fixed part of the network is not exactly "measured all-conv − Σ conv
entries". :class:`Calibration` corrects both with a linear model on features of the table::

    latency ≈ b + Σ_f a_f · (Σ entries of the slots whose operator family is f)

fitted by weighted least squares on a few dozen architectures measured end to end (weights
1/y², so it minimises the squared *relative* error), with a ridge that pulls the
coefficients toward the uncalibrated table (a_f = 1, b = base): with little data the
calibrated model stays near the table. Per-family slot counts (``n:f``, a fixed cost per
slot) are available as features too (``counts=True``); on the measured spaces they did not
help held-out accuracy, so the table does not use them. :func:`calibration_sample` draws
the architectures to measure so that the operator mix and the FLOPs spread widely (each
architecture gets its own random weights over the menu's choices).

Pure Python and numpy on numbers; must not import torch, ``search_spaces``, other
``evaluators`` modules or ``nas``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "FEATURE_SETS",
    "Calibration",
    "calibration_sample",
    "family_features",
    "fit_least_squares",
    "loo_mape",
    "make_features",
    "prior_coefficients",
    "select_calibration",
]

INTERCEPT = "1"
#: ``total``: intercept + Σ of all entries (one scale, one offset: the table's ranking kept);
#: ``family``: intercept + Σ entries per operator family (a scale per family).
FEATURE_SETS = ("total", "family")


def family_features(
    entries: Sequence[tuple[str, float]], families: Sequence[str], *, counts: bool = False
) -> dict[str, float]:
    """Features of one architecture from its slots' ``(operator family, table entry ms)``.

    ``ms:f`` sums the entries of the slots of family ``f``; with ``counts``, ``n:f`` counts
    those slots for every family but ``conv`` (the counts of all families add up to the
    number of slots, a constant that the intercept already carries). ``families`` fixes the
    feature set (and its order); a family not in it is an error.
    """
    out: dict[str, float] = {INTERCEPT: 1.0}
    for f in families:
        out[f"ms:{f}"] = 0.0
    if counts:
        for f in families:
            if f != "conv":
                out[f"n:{f}"] = 0.0
    for fam, ms in entries:
        if fam not in families:
            raise ValueError(f"operator family {fam!r} is not one of {list(families)}")
        out[f"ms:{fam}"] += float(ms)
        if counts and fam != "conv":
            out[f"n:{fam}"] += 1.0
    return out


def make_features(
    entries: Sequence[tuple[str, float]], families: Sequence[str], kind: str
) -> dict[str, float]:
    """Features of one architecture for the feature set ``kind`` (:data:`FEATURE_SETS`)."""
    if kind == "family":
        return family_features(entries, families)
    if kind == "total":
        fam = family_features(entries, families)
        return {INTERCEPT: 1.0, "ms:all": math.fsum(v for k, v in fam.items() if k != INTERCEPT)}
    raise ValueError(f"feature set must be one of {', '.join(FEATURE_SETS)}, got {kind!r}")


def prior_coefficients(names: Sequence[str], base_ms: float) -> dict[str, float]:
    """The uncalibrated table as coefficients: intercept = base, ``ms:*`` = 1, counts = 0."""
    return {n: (base_ms if n == INTERCEPT else 1.0 if n.startswith("ms:") else 0.0) for n in names}


def fit_least_squares(
    x: Sequence[Sequence[float]],
    y: Sequence[float],
    *,
    weights: Sequence[float] | None = None,
    ridge: float = 0.0,
    prior: Sequence[float] | None = None,
) -> list[float]:
    """β minimising ``Σ w_i (x_i·β − y_i)² + ridge · Σ_j s_j² (β_j − prior_j)²``.

    ``s_j² = Σ_i w_i x_ij² / n`` (the weighted mean square of column ``j``), so ``ridge`` is
    unit-free: 1 weighs the prior about like one more observation per coefficient. Solved in
    closed form with ``numpy.linalg.lstsq`` on the stacked system, so a rank-deficient design
    (a column of zeros, two equal columns) still gives the minimum-norm solution rather than
    an error.
    ``ridge`` needs ``prior`` (default all zeros).
    """
    xm = np.asarray(x, dtype=float)
    ym = np.asarray(y, dtype=float)
    if xm.ndim != 2 or ym.ndim != 1 or xm.shape[0] != ym.shape[0] or xm.shape[0] == 0:
        raise ValueError(
            f"x must be an (n, k) table and y n values with n >= 1, got {xm.shape} and {ym.shape}"
        )
    if not (np.isfinite(xm).all() and np.isfinite(ym).all()):
        raise ValueError("x and y must be finite numbers")
    w = np.ones(len(ym)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != ym.shape or (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("weights must be one finite number >= 0 per row")
    if not (math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a number >= 0, got {ridge!r}")
    k = xm.shape[1]
    p = np.zeros(k) if prior is None else np.asarray(prior, dtype=float)
    if p.shape != (k,):
        raise ValueError(f"prior must hold one value per column ({k}), got {p.shape}")
    sw = np.sqrt(w)
    a, b = xm * sw[:, None], ym * sw
    if ridge > 0:
        scale = np.sqrt((w[:, None] * xm**2).sum(axis=0) / len(ym))
        scale[scale == 0] = 1.0
        d = np.diag(math.sqrt(ridge) * scale)
        a = np.vstack([a, d])
        b = np.concatenate([b, d @ p])
    beta, *_ = np.linalg.lstsq(a, b, rcond=None)
    return [float(v) for v in beta]


@dataclass(frozen=True)
class Calibration:
    """A fitted linear latency model over named features (:func:`family_features`).

    ``coef`` maps feature name to coefficient. ``n_archs`` architectures were measured with
    ``clock``/``threads``; ``fit_mape`` is the mean absolute relative error on them (in-sample)
    and ``measure_s`` the wall time their measurement took.
    """

    coef: dict[str, float]
    n_archs: int
    fit_mape: float
    clock: str = "wall"
    threads: int | None = None
    measure_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    kind: str = "family"

    @classmethod
    def fit(
        cls,
        features: Sequence[Mapping[str, float]],
        measured_ms: Sequence[float],
        *,
        base_ms: float = 0.0,
        ridge: float = 0.0,
        **kwargs: Any,
    ) -> Calibration:
        """Fit on one feature dict per architecture and its measured latency (ms)."""
        if len(features) != len(measured_ms) or not features:
            raise ValueError(
                f"need one measured latency per feature row and at least one row, got "
                f"{len(features)} rows and {len(measured_ms)} latencies"
            )
        if any(not (math.isfinite(v) and v > 0) for v in measured_ms):
            raise ValueError("measured latencies must be positive numbers of milliseconds")
        names = list(features[0])
        if any(list(f) != names for f in features):
            raise ValueError("every feature row must have the same names in the same order")
        x = [[f[n] for n in names] for f in features]
        prior = prior_coefficients(names, base_ms)
        beta = fit_least_squares(
            x,
            measured_ms,
            weights=[1.0 / v**2 for v in measured_ms],
            ridge=ridge,
            prior=[prior[n] for n in names],
        )
        coef = dict(zip(names, beta))
        cal = cls(coef=coef, n_archs=len(features), fit_mape=0.0, **kwargs)
        errs = [abs(cal.predict(f) - y) / y for f, y in zip(features, measured_ms)]
        return cls(coef=coef, n_archs=len(features), fit_mape=math.fsum(errs) / len(errs), **kwargs)

    def predict(self, features: Mapping[str, float]) -> float:
        """Σ coef · feature; a feature the fit never saw is an error (another menu)."""
        extra = [n for n in features if n not in self.coef and features[n] != 0]
        if extra:
            raise ValueError(
                f"feature {extra[0]!r} was not in the calibration (fitted on {list(self.coef)})"
            )
        return math.fsum(c * float(features.get(n, 0.0)) for n, c in self.coef.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "coef": dict(self.coef),
            "n_archs": self.n_archs,
            "fit_mape": self.fit_mape,
            "clock": self.clock,
            "threads": self.threads,
            "measure_s": self.measure_s,
            "info": dict(self.info),
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        return cls(
            coef={str(k): float(v) for k, v in d["coef"].items()},
            n_archs=int(d["n_archs"]),
            fit_mape=float(d["fit_mape"]),
            clock=str(d.get("clock", "wall")),
            threads=d.get("threads"),
            measure_s=float(d.get("measure_s", 0.0)),
            info=dict(d.get("info", {})),
            kind=str(d.get("kind", "family")),
        )

    def predict_entries(
        self, entries: Sequence[tuple[str, float]], families: Sequence[str]
    ) -> float:
        """Prediction from an architecture's ``(family, entry ms)`` per slot."""
        return self.predict(make_features(entries, families, self.kind))


def loo_mape(
    features: Sequence[Mapping[str, float]],
    measured_ms: Sequence[float],
    *,
    base_ms: float = 0.0,
    ridge: float = 0.0,
) -> float:
    """Leave-one-out mean absolute relative error of :meth:`Calibration.fit` on these rows."""
    errs = []
    for i, (f, y) in enumerate(zip(features, measured_ms)):
        rest = [g for j, g in enumerate(features) if j != i]
        ys = [v for j, v in enumerate(measured_ms) if j != i]
        cal = Calibration.fit(rest, ys, base_ms=base_ms, ridge=ridge)
        errs.append(abs(cal.predict(f) - y) / y)
    return math.fsum(errs) / len(errs)


def select_calibration(
    entries: Sequence[Sequence[tuple[str, float]]],
    measured_ms: Sequence[float],
    families: Sequence[str],
    *,
    kinds: Sequence[str] = FEATURE_SETS,
    base_ms: float = 0.0,
    ridge: float = 0.0,
    **kwargs: Any,
) -> Calibration:
    """Fit every feature set of ``kinds``; keep the one with the lowest leave-one-out error.

    Uses the calibration architectures only (``entries``: per architecture, its slots'
    ``(family, entry ms)``). Ties go to the earlier set of ``kinds`` (the simpler one by
    default). The leave-one-out errors are kept in ``info["loo_mape"]``.
    """
    if len(measured_ms) < 3 and len(kinds) > 1:
        raise ValueError("choosing a feature set needs at least 3 measured architectures")
    feats = {k: [make_features(e, families, k) for e in entries] for k in kinds}
    loo = (
        {k: loo_mape(feats[k], measured_ms, base_ms=base_ms, ridge=ridge) for k in kinds}
        if len(kinds) > 1
        else {}
    )
    best = min(kinds, key=lambda k: (loo.get(k, 0.0), list(kinds).index(k)))
    info = {**kwargs.pop("info", {}), "loo_mape": loo}
    return Calibration.fit(
        feats[best], measured_ms, base_ms=base_ms, ridge=ridge, kind=best, info=info, **kwargs
    )


def calibration_sample(
    choices: Mapping[str, Sequence[str]], n: int, rng: random.Random
) -> list[dict[str, str]]:
    """``n`` distinct label assignments (slot path -> choice label) with widely spread mixes.

    Each assignment draws its own weight for every label of the menu (exponential, i.e. a flat
    Dirichlet over the menu), and every slot picks among its allowed labels in proportion to
    them: some architectures are nearly all ``conv``, some nearly all of one operator, most a
    mix, so the fit sees each family over a wide range of counts and the FLOPs over the space's
    range. Gives fewer than ``n`` only when the space is smaller.
    """
    labels = sorted({lbl for opts in choices.values() for lbl in opts})
    out: list[dict[str, str]] = []
    seen: set[tuple[str, ...]] = set()
    for _ in range(50 * n):
        if len(out) >= n:
            break
        wts = {lbl: rng.expovariate(1.0) for lbl in labels}
        pick = {
            path: rng.choices(list(opts), weights=[wts[o] for o in opts])[0]
            for path, opts in choices.items()
        }
        key = tuple(pick.values())
        if key not in seen:
            seen.add(key)
            out.append(pick)
    return out
