"""What a proxy training produced (``ProxyResult``) and what continues it (``TrainState``).

Imports only torch (for the tensor type); must not import other ``evaluators`` modules, nor
``nas``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["ProxyResult", "TrainState"]


@dataclass
class ProxyResult:
    """What one :func:`train_proxy` call produced.

    ``accuracy`` is validation top-1 as a fraction in [0, 1] (None on failure).
    ``train_time_s`` is the wall time of this call's training steps (validation excluded) and
    ``total_train_time_s`` that of all calls that led to this state; ``epochs_done`` counts
    epochs trained so far in total, ``images_per_s`` this call's training throughput.
    ``failure`` is a one-line reason when the call failed, else None.
    """

    accuracy: float | None
    train_time_s: float
    epochs_done: int
    images_per_s: float | None
    failure: str | None = None
    total_train_time_s: float = 0.0
    val_time_s: float = 0.0
    train_loss: float | None = None
    val_loss: float | None = None
    steps_done: int = 0
    amp_dtype: str | None = None
    resumed_from_epoch: int = 0

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class TrainState:
    """Everything needed to continue a proxy training run, held as CPU copies.

    The state is independent of the model object: :func:`train_proxy` loads it into whatever
    freshly built model of the same architecture it is given. ``settings`` records the
    hyperparameters a resumed call must match (a different optimizer or schedule horizon would
    silently give a different run). It lives in memory; its size is :meth:`nbytes`.
    """

    model_state: dict[str, Tensor]
    optimizer_state: dict[str, Any]
    scaler_state: dict[str, Any] | None
    epochs_done: int
    steps_done: int
    total_epochs: int
    steps_per_epoch: int
    settings: dict[str, Any]
    total_train_time_s: float
    result: ProxyResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def nbytes(self) -> int:
        """Approximate memory held by the stored tensors."""
        n = sum(t.numel() * t.element_size() for t in self.model_state.values())
        for s in self.optimizer_state.get("state", {}).values():
            n += sum(v.numel() * v.element_size() for v in s.values() if isinstance(v, Tensor))
        return n
