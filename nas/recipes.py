"""Training recipes for full retraining: the papers' settings as small config objects.

========================= ===========================================================
recipe                    setting
========================= ===========================================================
``cifar``                 SCConv paper, CIFAR-10/100: SGD (momentum 0.9, weight decay
                          5e-4), lr 0.05 divided by 10 at epochs 100 and 150, batch 128,
                          200 epochs, random crop (4-pixel padding) + horizontal flip
``cifar-cosine``          ``cifar`` with cosine annealing of the lr to 0 over 200 epochs
``imagenet``              SCConv paper, ImageNet-1K: SGD (0.9, 1e-4), lr 0.1 divided by
                          10 every 30 epochs, 100 epochs, batch 256, random-resized-crop
                          224 + flip (evaluation: resize to 256/224 of the crop, centre crop)
``imagenet-cosine``       ``imagenet`` with cosine annealing over 100 epochs
========================= ===========================================================

Every field can be overridden from a JSON/TOML config file or the command line
(``python -m nas.retrain ... --lr 0.1 --schedule cosine``); the precedence is recipe < file <
command line. :func:`resolve_recipe` does all three and validates the result.

Choices the papers leave open, made here:

- ``batch_size`` is the *global* batch: under ``torchrun`` with W processes each process
  takes ``batch_size / W`` images, so a recipe means the same optimisation on 1 or 8 GPUs and
  the lr needs no rescaling.
- The lr schedule is stepped once per epoch (the papers state their schedules in epochs).
  ``warmup_epochs`` ramps the lr linearly over the first epochs (0 in every recipe).
- ``val_fraction`` of the training set is held out (fixed seed) to pick the best epoch; the
  test split is used once, at the end. The papers train on the full training set and report
  test accuracy; set ``val_fraction 0`` to do the same (the last epoch is then the final one).
- The LinearConv correlation loss is added as its paper does (``λ·Lc`` every
  ``linearconv_every`` batches, λ = 1e-2, every 10); ``None`` in a recipe means "the default
  of :mod:`search_spaces.ops.linearconv`", filled in when a run resolves its config.

Imports only the standard library; must not import torch, ``evaluators``, ``search_spaces``
or other ``nas`` modules (the retraining command line reads it before anything heavy).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "RECIPES",
    "Recipe",
    "RecipeError",
    "get_recipe",
    "load_config_file",
    "parse_field",
    "recipe_fields",
    "recipe_names",
    "resolve_recipe",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("multistep", "step", "cosine", "constant")
AUGMENTS = ("cifar", "imagenet", "none")


class RecipeError(ValueError):
    """A bad recipe name, field or value; the message is one sentence naming it."""


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """One training setting. Validated on construction; change it with :meth:`replace`.

    ``schedule``: ``multistep`` (lr × ``gamma`` at each epoch of ``milestones``), ``step``
    (lr × ``gamma`` every ``step_size`` epochs), ``cosine`` (to 0 at the last epoch) or
    ``constant``. ``augment``: ``cifar`` (random crop with 4-pixel padding + flip),
    ``imagenet`` (random-resized-crop + flip) or ``none``. ``resolution`` None means the
    architecture's own input size.
    """

    name: str = "custom"
    epochs: int = 200
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "multistep"
    milestones: tuple[int, ...] = (100, 150)
    step_size: int = 30
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    augment: str = "cifar"
    resolution: int | None = None
    val_fraction: float = 0.1
    linearconv_lambda: float | None = None
    linearconv_every: int | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _coerce(f.name, value))
        if self.warmup_epochs >= self.epochs:
            raise RecipeError(
                f"warmup_epochs must be smaller than epochs ({self.epochs}), "
                f"got {self.warmup_epochs}"
            )
        if self.schedule == "multistep" and list(self.milestones) != sorted(set(self.milestones)):
            raise RecipeError(
                f"milestones must be strictly increasing epochs, got {list(self.milestones)}"
            )
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise RecipeError("nesterov=true needs optimizer 'sgd' with momentum > 0")

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied (validated like the constructor)."""
        unknown = sorted(set(changes) - set(_FIELDS))
        if unknown:
            raise RecipeError(f"unknown recipe field {unknown[0]!r}; fields: {', '.join(_FIELDS)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Recipe:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise RecipeError(f"unknown recipe field {unknown[0]!r}; fields: {', '.join(_FIELDS)}")
        return cls(**dict(d))

    def lr_factor(self, epoch: int) -> float:
        """Multiplier of ``lr`` while training epoch ``epoch`` (0-based)."""
        if epoch < self.warmup_epochs:
            return (epoch + 1) / self.warmup_epochs
        if self.schedule == "multistep":
            return self.gamma ** sum(1 for m in self.milestones if m <= epoch)
        if self.schedule == "step":
            return self.gamma ** (epoch // self.step_size)
        if self.schedule == "cosine":
            span = self.epochs - self.warmup_epochs
            return 0.5 * (1.0 + math.cos(math.pi * (epoch - self.warmup_epochs) / span))
        return 1.0

    def lr_at(self, epoch: int) -> float:
        """The lr used for epoch ``epoch`` (0-based)."""
        return self.lr * self.lr_factor(epoch)


# -- field types and coercion ----------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_range(lo: int) -> Callable[[str, Any], int]:
    def check(name: str, v: Any) -> int:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not _is_int(v) or v < lo:
            raise RecipeError(f"{name} must be an integer >= {lo}, got {v!r}")
        return int(v)

    return check


def _float_range(lo: float, hi: float | None = None, *, hi_open: bool = False):
    def check(name: str, v: Any) -> float:
        ok = _is_number(v) and v >= lo
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
        if not ok:
            bound = "" if hi is None else (f" and < {hi}" if hi_open else f" and <= {hi}")
            raise RecipeError(f"{name} must be a number >= {lo}{bound}, got {v!r}")
        return float(v)

    return check


def _positive_float(name: str, v: Any) -> float:
    if not _is_number(v) or v <= 0:
        raise RecipeError(f"{name} must be a positive number, got {v!r}")
    return float(v)


def _choice(options: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(name: str, v: Any) -> str:
        if v not in options:
            raise RecipeError(f"{name} must be one of {', '.join(options)}, got {v!r}")
        return str(v)

    return check


def _name(name: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise RecipeError(f"{name} must be a non-empty string, got {v!r}")
    return v


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise RecipeError(f"{name} must be true or false, got {v!r}")
    return v


def _milestones(name: str, v: Any) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or not all(_is_int(m) and m >= 1 for m in v):
        raise RecipeError(f"{name} must be a list of epochs >= 1, got {v!r}")
    return tuple(int(m) for m in v)


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def wrapped(name: str, v: Any) -> Any:
        return None if v is None else check(name, v)

    return wrapped


# name -> (check, CLI parser kind, help). The CLI kind drives how text from the command line
# becomes a value (see parse_field).
_FIELDS: Mapping[str, tuple[Callable[[str, Any], Any], str, str]] = MappingProxyType(
    {
        "name": (_name, "str", "recipe name recorded in the config"),
        "epochs": (_int_range(1), "int", "number of training epochs"),
        "batch_size": (_int_range(1), "int", "global batch size (split across processes)"),
        "optimizer": (_choice(OPTIMIZERS), "str", f"one of {', '.join(OPTIMIZERS)}"),
        "lr": (_positive_float, "float", "peak learning rate"),
        "momentum": (_float_range(0.0, 1.0, hi_open=True), "float", "SGD momentum / Adam beta1"),
        "nesterov": (_bool, "bool", "Nesterov momentum (sgd)"),
        "weight_decay": (_float_range(0.0), "float", "L2 weight decay"),
        "schedule": (_choice(SCHEDULES), "str", f"lr schedule: {', '.join(SCHEDULES)}"),
        "milestones": (_milestones, "ints", "epochs where multistep multiplies lr by gamma"),
        "step_size": (_int_range(1), "int", "epochs between decays of the step schedule"),
        "gamma": (_float_range(0.0, 1.0), "float", "lr decay factor of step/multistep"),
        "warmup_epochs": (_int_range(0), "int", "epochs of linear lr warm-up"),
        "label_smoothing": (
            _float_range(0.0, 1.0, hi_open=True),
            "float",
            "label smoothing of the cross-entropy",
        ),
        "augment": (_choice(AUGMENTS), "str", f"train augmentation: {', '.join(AUGMENTS)}"),
        "resolution": (_optional(_int_range(1)), "int?", "train/eval input size (none: arch's)"),
        "val_fraction": (
            _float_range(0.0, 1.0, hi_open=True),
            "float",
            "share of the training set held out for validation (0: none)",
        ),
        "linearconv_lambda": (
            _optional(_float_range(0.0)),
            "float?",
            "LinearConv correlation-loss strength λ (none: the op's default)",
        ),
        "linearconv_every": (
            _optional(_int_range(1)),
            "int?",
            "add the LinearConv loss every N batches (none: the op's default)",
        ),
    }
)


def _coerce(name: str, value: Any) -> Any:
    return _FIELDS[name][0](name, value)


def recipe_fields() -> dict[str, tuple[str, str]]:
    """Every overridable field: name -> (CLI kind, help). ``name`` itself is not listed."""
    return {k: (kind, help_) for k, (_, kind, help_) in _FIELDS.items() if k != "name"}


def parse_field(name: str, text: str) -> Any:
    """Turn command-line text into a value for field ``name`` (validated).

    ``ints`` fields take comma-separated integers (``100,150``); ``bool`` fields take
    true/false/1/0/yes/no; optional fields take ``none``.
    """
    if name not in _FIELDS:
        raise RecipeError(f"unknown recipe field {name!r}; fields: {', '.join(_FIELDS)}")
    kind = _FIELDS[name][1]
    s = text.strip()
    value: Any
    if kind.endswith("?") and s.lower() in ("none", "null", "auto"):
        value = None
    elif kind.startswith("int") and kind != "ints":
        try:
            value = int(s)
        except ValueError:
            raise RecipeError(f"{name} must be an integer, got {text!r}") from None
    elif kind.startswith("float"):
        try:
            value = float(s)
        except ValueError:
            raise RecipeError(f"{name} must be a number, got {text!r}") from None
    elif kind == "ints":
        try:
            value = tuple(int(p) for p in s.split(",") if p.strip()) if s else ()
        except ValueError:
            raise RecipeError(
                f"{name} must be comma-separated integers like 100,150, got {text!r}"
            ) from None
    elif kind == "bool":
        low = s.lower()
        if low not in ("true", "false", "1", "0", "yes", "no"):
            raise RecipeError(f"{name} must be true or false, got {text!r}")
        value = low in ("true", "1", "yes")
    else:
        value = s
    return _coerce(name, value)


# -- the named recipes ------------------------------------------------------------------------

_CIFAR = Recipe(
    name="cifar",
    epochs=200,
    batch_size=128,
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="multistep",
    milestones=(100, 150),
    gamma=0.1,
    augment="cifar",
)
_IMAGENET = Recipe(
    name="imagenet",
    epochs=100,
    batch_size=256,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    schedule="step",
    step_size=30,
    milestones=(),
    gamma=0.1,
    augment="imagenet",
    resolution=224,
    val_fraction=0.01,
)

RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {
        "cifar": _CIFAR,
        "cifar-cosine": _CIFAR.replace(name="cifar-cosine", schedule="cosine", milestones=()),
        "imagenet": _IMAGENET,
        "imagenet-cosine": _IMAGENET.replace(name="imagenet-cosine", schedule="cosine"),
    }
)


def recipe_names() -> tuple[str, ...]:
    return tuple(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The named recipe; an unknown name raises :class:`RecipeError` listing the valid ones."""
    try:
        return RECIPES[name]
    except KeyError:
        raise RecipeError(f"unknown recipe {name!r}; valid recipes: {', '.join(RECIPES)}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Recipe fields from a JSON (``.json``) or TOML (``.toml``) file.

    The file is an object of recipe fields, optionally with ``"recipe": "<name>"`` to pick the
    base recipe. A resolved ``config.json`` written by ``nas.retrain`` is accepted too: its
    ``recipe`` object is used, so a finished run's settings can be reused as they are.
    """
    p = Path(path)
    if not p.exists():
        raise RecipeError(f"config file {str(p)!r} does not exist")
    if not p.is_file():
        kind = "a folder" if p.is_dir() else "a device or other special file"
        raise RecipeError(f"config file {str(p)!r} is {kind}, not a JSON or TOML file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"cannot read config file {str(p)!r}: {e}") from None
    if p.suffix.lower() == ".toml":
        try:
            import tomllib  # type: ignore[import-not-found, unused-ignore]
        except ModuleNotFoundError:  # Python 3.10
            raise RecipeError(f"config file {str(p)!r}: TOML needs Python >= 3.11") from None
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise RecipeError(f"config file {str(p)!r} is not valid TOML: {e}") from None
        except RecursionError:
            raise RecipeError(f"config file {str(p)!r}: its tables are nested too deeply") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RecipeError(
                f"config file {str(p)!r} is not valid JSON: {e.msg} at line {e.lineno}"
            ) from None
        except RecursionError:
            raise RecipeError(
                f"config file {str(p)!r}: its objects or lists are nested too deeply"
            ) from None
    if not isinstance(data, dict):
        raise RecipeError(f"config file {str(p)!r} must hold an object of recipe fields")
    if isinstance(data.get("recipe"), dict):  # a resolved config.json of an earlier run
        data = dict(data["recipe"])
    unknown = sorted(set(data) - set(_FIELDS) - {"recipe"})
    if unknown:
        raise RecipeError(
            f"config file {str(p)!r}: unknown recipe field {unknown[0]!r}; "
            f"fields: {', '.join(_FIELDS)}"
        )
    # Every value is checked here, also those a command-line flag will override.
    base = data.get("recipe")
    if base is not None and (not isinstance(base, str) or base not in RECIPES):
        raise RecipeError(
            f"config file {str(p)!r}: unknown recipe {base!r}; valid recipes: {', '.join(RECIPES)}"
        )
    for name, value in data.items():
        if name != "recipe":
            try:
                _coerce(name, value)
            except RecipeError as e:
                raise RecipeError(f"config file {str(p)!r}: {e}") from None
    return data


def resolve_recipe(
    name: str | None = None,
    *,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    default: str = "cifar",
) -> Recipe:
    """Recipe ``name`` (if None: the config file's ``recipe`` key, else ``default``), then the
    config file's fields, then ``overrides`` (already-typed values, e.g. from the command line)."""
    file_fields: dict[str, Any] = {}
    if config_file is not None:
        file_fields = load_config_file(config_file)
    base_name = name or file_fields.pop("recipe", None) or default
    file_fields.pop("recipe", None)
    if not isinstance(base_name, str):
        raise RecipeError(f"recipe must be a recipe name, got {base_name!r}")
    recipe = get_recipe(base_name)
    changes = {**file_fields, **dict(overrides or {})}
    if "milestones" in changes and isinstance(changes["milestones"], list):
        changes["milestones"] = tuple(changes["milestones"])
    try:
        return recipe.replace(**changes)
    except TypeError as e:  # dataclasses.replace on a bad key; replace() checks first
        raise RecipeError(str(e)) from None
