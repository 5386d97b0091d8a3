"""The state store: per architecture, its latest metrics and the training state to resume.

Imports :mod:`evaluators.metrics` only; must not import :mod:`evaluators.objectives` (which
builds on it), torch, or ``nas``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from evaluators.metrics import Metrics

__all__ = ["StateStore", "StoredEvaluation"]


@dataclass
class StoredEvaluation:
    """What the store keeps per architecture: its latest metrics and its training state."""

    metrics: Metrics
    state: Any = None  # evaluators.proxy.TrainState, or None before any training


class StateStore(MutableMapping):
    """An in-memory LRU mapping ``arch_id -> StoredEvaluation`` holding at most ``max_entries``.

    It lives in the worker process that trains: states are CPU copies of the weights and the
    optimizer state (about 3x the parameter bytes with SGD momentum: 3 MB for ResNet-20,
    300 MB for ResNet-50), which is what bounds ``max_entries``.
    """

    def __init__(self, max_entries: int = 16) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be a positive integer, got {max_entries!r}")
        self.max_entries = max_entries
        self._items: collections.OrderedDict[str, StoredEvaluation] = collections.OrderedDict()

    def __getitem__(self, key: str) -> StoredEvaluation:
        item = self._items[key]
        self._items.move_to_end(key)
        return item

    def __setitem__(self, key: str, value: StoredEvaluation) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
