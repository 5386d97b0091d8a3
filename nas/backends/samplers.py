"""The Optuna samplers a search may use, by name, seeded.

Imports optuna only; must not import other ``nas`` modules.
"""

from __future__ import annotations

import optuna

__all__ = ["SAMPLERS", "make_sampler"]

SAMPLERS = ("tpe", "nsga2", "random")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """A seeded sampler by name: ``tpe``, ``nsga2`` or ``random``."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        # A small population so that selection starts within a few dozen trials.
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
