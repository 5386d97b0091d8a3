"""``EvalConfig``: how candidates are scored, and :func:`validate_config`, which checks it.

Every field is JSON-serialisable (it is saved with a search). Nothing heavy (torch) is
imported with this module, so a command can read :class:`EvalConfig` before it parses its
arguments: :func:`validate_config` imports the modules whose names it checks against when it
is called. Imports :mod:`evaluators.data`, :mod:`evaluators.optimizer`,
:mod:`evaluators.runtime` and :mod:`evaluators.zero_cost` lazily; must not import
:mod:`evaluators.objectives` or :mod:`evaluators.proxy` (which build on it), nor ``nas``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "EXTRA_KEYS",
    "LATENCY_MODES",
    "NATIVE_RESOLUTION",
    "PROXY_SCORES",
    "EvalConfig",
    "default_proxy_resolution",
    "proxy_score",
    "validate_config",
]

#: Values of ``EvalConfig.latency``.
LATENCY_MODES = ("measure", "predict", "off")
#: Values of ``EvalConfig.proxy_score``: what the accuracy objective's value is after proxy
#: training. ``"loss"``: ``exp(-validation cross-entropy)``, the geometric mean of the
#: probability the network gives each validation image's true class (in (0, 1], ranks like the
#: loss); ``"accuracy"``: validation top-1. See :func:`proxy_score`.
PROXY_SCORES = ("loss", "accuracy")
#: Keys of ``EvalConfig.extra`` the evaluator reads (others are kept, unused).
EXTRA_KEYS = {
    "augment": "proxy augmentation: 'cifar', 'imagenet' or None",
    "max_steps_per_epoch": "cap on optimizer steps per proxy epoch (positive int)",
    "max_val_batches": "cap on validation batches (positive int)",
    "synthetic_size": "images generated for the synthetic dataset's train split",
    "cpu_threads": "torch intra-op threads on CPU (positive int)",
    "latency_cache_dir": "folder of the latency lookup-table cache",
    "latency_calibrate": "architectures measured to calibrate the latency predictor "
    "(int >= 2; default none: the plain lookup table)",
    "max_states": "architectures whose training state is kept for resuming (LRU)",
}


#: Datasets whose images all have one size: CIFAR's 32x32.
NATIVE_RESOLUTION = {"cifar10": 32, "cifar10-sample": 32, "cifar100": 32}


def default_proxy_resolution(
    backbone: str, resolution: int, *, dataset_kind: str | None = None, device: str = "cpu"
) -> int | None:
    """The proxy's training resolution when none is given; ``None``: the architecture's own.

    - 16 for the CIFAR ResNets (``cifar_resnet20`` ... ``cifar_resnet110``) at 32x32: on real
      CIFAR-10 photographs, 2 proxy epochs at 16 px ranked cifar_resnet20 architectures like
      30-epoch training at least as well as at 32 px (Kendall tau 0.55 against 0.38 on 18
      architectures, 0.66 against 0.58 on the first 10) for a quarter of the compute (19 s
      against 74 s per candidate on one CPU thread): experiments/results/proxy_fidelity.md.
    - On a CPU, the dataset's own image size when it is smaller than the architecture's
      (CIFAR's 32x32 pictures for ResNet-50 at 224): upsampling adds pixels but no
      information, and at 224 one proxy trial of a 2-GFLOPs candidate costs 24 to 48 CPU
      minutes (experiments/results/cpu_trial_time.md), 49 times what 32 px costs. Whether
      this ranks ResNet-50 candidates like 224 px has not been measured (no GPU here); on a
      GPU the architecture's resolution stays the default.
    - Otherwise ``None``: nothing else has been measured.
    """
    name = backbone.removeprefix("cifar_resnet")
    if name != backbone and name.isdigit() and resolution == 32:
        return 16
    native = NATIVE_RESOLUTION.get(dataset_kind or "")
    if native is not None and resolution > native and device == "cpu":
        return native
    return None


def proxy_score(kind: str, accuracy: float | None, val_loss: float | None) -> float | None:
    """The accuracy objective's value from a validation pass: top-1 (``kind="accuracy"``) or
    ``exp(-val_loss)`` (``"loss"``); ``None`` when the needed number is missing or not finite.

    Why the loss is the default: on real photographs (cifar10-mini, 20 cifar_resnet20
    architectures against 30-epoch trainings) the validation loss after 2 proxy epochs on
    3,495 images ranked the architectures at Kendall tau 0.75, top-1 of the same runs at 0.57
    (paired bootstrap: the loss better in 99.5 % of resamples);
    experiments/results/proxy_fidelity.md.
    The loss counts how confident the network is on every image, where top-1 only counts the
    images that crossed the decision boundary after two epochs.
    """
    if kind not in PROXY_SCORES:
        raise ValueError(f"proxy score must be one of {', '.join(PROXY_SCORES)}, got {kind!r}")
    value = accuracy if kind == "accuracy" else val_loss
    if value is None or not math.isfinite(value):
        return None
    return float(value) if kind == "accuracy" else math.exp(-float(value))


@dataclass(frozen=True)
class EvalConfig:
    """How candidates are scored. Every field is JSON-serialisable (it is saved with a search)."""

    dataset: str = "synthetic"
    data_dir: str = "data"
    download: bool = True
    proxy_epochs: int = 2
    proxy_subset: int | None = 3500
    proxy_resolution: int | None = None
    proxy_score: str = "loss"
    val_fraction: float = 0.25
    val_size: int | None = 2000
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    linearconv_reg: bool = True
    seed: int = 0
    device: str = "cpu"
    amp: bool = True
    channels_last: bool = True
    num_workers: int | None = None
    latency: str = "measure"  # "measure", "predict" or "off"
    latency_batch: int = 1
    latency_repeats: int = 30
    # With latency "measure" and a max_latency_ms: screen with the lookup-table prediction
    # first and skip (infeasible, nothing built) a candidate predicted over the budget by more
    # than this share; None measures every candidate. See experiments/results/latency_predictor.md
    # for the predictor's error.
    latency_screen: float | None = 0.25
    zero_cost: str | None = None
    max_flops: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    fidelities: tuple[int, ...] = ()  # proxy epochs per fidelity level, e.g. (1, 2)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fidelities"] = list(self.fidelities)
        return d


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_config(config: EvalConfig) -> None:
    """Raise ``ValueError`` naming the first bad field of ``config`` and what is allowed.

    Checks types and ranges, the dataset string, the device (CUDA must be present when asked
    for) and combinations (a latency budget needs latency). Reads no data.
    """
    from evaluators.data import parse_dataset
    from evaluators.optimizer import OPTIMIZERS, SCHEDULES
    from evaluators.runtime import resolve_device
    from evaluators.zero_cost import ZERO_COST_NAMES

    c = config
    if not isinstance(c, EvalConfig):
        raise ValueError(f"config must be an EvalConfig, got {type(c).__name__}")
    parse_dataset(c.dataset)

    def positive_int(name: str, none_ok: bool = False, low: int = 1) -> None:
        v = getattr(c, name)
        if v is None and none_ok:
            return
        if not _is_int(v) or v < low:
            rule = f"an integer >= {low}" + (" or None" if none_ok else "")
            raise ValueError(f"{name} must be {rule}, got {v!r}")

    positive_int("proxy_epochs")
    positive_int("proxy_subset", none_ok=True, low=2)
    positive_int("proxy_resolution", none_ok=True, low=4)
    positive_int("batch_size")
    positive_int("latency_batch")
    positive_int("latency_repeats")
    positive_int("num_workers", none_ok=True, low=0)
    if not _is_int(c.seed) or c.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {c.seed!r}")
    if not _is_num(c.val_fraction) or not 0 < c.val_fraction < 1:
        raise ValueError(f"val_fraction must be a number in (0, 1), got {c.val_fraction!r}")
    positive_int("val_size", none_ok=True)
    if c.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {c.optimizer!r}")
    if c.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {c.schedule!r}")
    if not _is_num(c.lr) or c.lr <= 0:
        raise ValueError(f"lr must be a number > 0, got {c.lr!r}")
    for name in ("momentum", "weight_decay"):
        v = getattr(c, name)
        if not _is_num(v) or v < 0:
            raise ValueError(f"{name} must be a number >= 0, got {v!r}")
    for name in ("download", "linearconv_reg", "amp", "channels_last"):
        if not isinstance(getattr(c, name), bool):
            raise ValueError(f"{name} must be True or False, got {getattr(c, name)!r}")
    resolve_device(c.device)
    if c.proxy_score not in PROXY_SCORES:
        raise ValueError(
            f"proxy_score must be one of {', '.join(PROXY_SCORES)}, got {c.proxy_score!r}"
        )
    if c.latency not in LATENCY_MODES:
        raise ValueError(f"latency must be one of {', '.join(LATENCY_MODES)}, got {c.latency!r}")
    if c.zero_cost is not None and c.zero_cost not in ZERO_COST_NAMES:
        raise ValueError(
            f"zero_cost must be None or one of {', '.join(ZERO_COST_NAMES)}, got {c.zero_cost!r}"
        )
    for name in ("max_flops", "max_params", "max_latency_ms"):
        v = getattr(c, name)
        if v is not None and (not _is_num(v) or v <= 0):
            raise ValueError(f"{name} must be a number > 0 or None, got {v!r}")
    if c.latency_screen is not None and (not _is_num(c.latency_screen) or c.latency_screen < 0):
        raise ValueError(f"latency_screen must be a number >= 0 or None, got {c.latency_screen!r}")
    if c.max_latency_ms is not None and c.latency == "off":
        raise ValueError("max_latency_ms needs latency 'measure' or 'predict', got latency 'off'")
    fids = tuple(c.fidelities)
    if any(not _is_int(f) or f < 1 for f in fids) or list(fids) != sorted(set(fids)):
        raise ValueError(
            f"fidelities must be strictly increasing positive epoch counts, got {list(fids)!r}"
        )
    if not isinstance(c.extra, dict):
        raise ValueError(f"extra must be a dict, got {type(c.extra).__name__}")
    for name in (
        "max_steps_per_epoch",
        "max_val_batches",
        "synthetic_size",
        "cpu_threads",
        "max_states",
    ):
        v = c.extra.get(name)
        if v is not None and (not _is_int(v) or v < 1):
            raise ValueError(f"extra[{name!r}] must be a positive integer, got {v!r}")
    cal = c.extra.get("latency_calibrate")
    if cal is not None and (not _is_int(cal) or cal < 2):
        raise ValueError(f"extra['latency_calibrate'] must be an integer >= 2, got {cal!r}")
    aug = c.extra.get("augment")
    if aug is not None and aug not in ("cifar", "imagenet"):
        raise ValueError(f"extra['augment'] must be 'cifar', 'imagenet' or None, got {aug!r}")
