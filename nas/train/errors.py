"""The two ways a retraining run ends early: bad input (exit 2) and a diverged loss (exit 1).

Imports nothing; every other ``nas.train`` module may import it, and it must not import any
of them.
"""

from __future__ import annotations

__all__ = ["Diverged", "UserError"]


class UserError(Exception):
    """Bad input found after parsing: printed as one line, exit code 2."""


class Diverged(Exception):
    """The loss became non-finite: exit code 1."""
