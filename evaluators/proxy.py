"""Proxy training: train a candidate briefly and report its validation top-1.

:func:`train_proxy` runs a plain supervised loop (cross-entropy, SGD/Adam/AdamW, a per-step
learning-rate schedule) for a few epochs on a validation split and returns a
:class:`ProxyResult` plus a :class:`TrainState` from which a later call continues training to
more epochs. That is how the evaluator's fidelity levels work: a candidate that looked
promising after 1 epoch is trained on to 2 rather than from scratch.

Choices the issue leaves open, made here:

* The schedule is defined per optimizer step over ``total_epochs`` (the highest fidelity a
  search may ask for), so training 1 epoch and then resuming to 2 gives bit-for-bit the same
  weights on CPU as training 2 epochs straight.
* Every epoch reseeds the RNGs from ``(seed, epoch)`` — the global torch RNG (dropout,
  augmentation in the main process, worker seeds) and the loader's own generator (shuffling) —
  so epoch ``e`` depends only on the weights it starts from. All of it runs inside
  ``torch.random.fork_rng``: the caller's global RNG state is the same afterwards.
* LinearConv's correlation loss ``λ·Lc`` (Kahatapitiya & Rodrigo, WACV 2021) is added on the
  optimizer steps ``0, every, 2·every, ...`` counted over the whole run, with the paper's
  λ = 1e-2 and every = 10 batches by default. It is computed in float32 outside autocast.
* On CUDA: autocast in bfloat16 where the GPU supports it, else float16 with a
  ``GradScaler``; ``channels_last`` for the model and the inputs; ``cudnn.benchmark`` on for
  the duration of the call (restored afterwards). On CPU there is no autocast and the memory
  format is left as is (channels_last rarely pays on CPU for the small irregular ops of
  SCConv/OctConv); the thread count is whatever torch uses — see :func:`configure_cpu_threads`.
* Faults are results: a non-finite loss, running out of memory, or any exception inside the
  forward pass, the backward pass, the optimizer step or validation ends the call with
  ``ProxyResult.failure`` set to one line (``"non-finite loss at epoch 1 step 7"``,
  ``"out of memory in forward: CUDA out of memory. ..."``,
  ``"RuntimeError in forward: <first line of the message>"``) and no state; CUDA memory is
  released so the process can go on with the next candidate.
* Non-finite losses are detected without a device synchronisation per step: losses are kept on
  the device and inspected every ``check_every`` steps (every step on CPU, where it is free),
  so on a GPU up to ``check_every - 1`` further steps may run after the first bad one; the
  reported step is still the first bad one.
* Weight decay applies to every parameter (as torchvision's reference recipe does by default).
* Accuracy is a fraction in [0, 1] (top-1 over the whole validation loader, or its first
  ``max_val_batches`` batches).

The optimizers, schedules and LinearConv's regulariser live in :mod:`evaluators.optimizer`,
the device, AMP, thread and fault helpers in :mod:`evaluators.runtime` (both re-exported
here), the result and state records in :mod:`evaluators.proxy_result`. This module must not
import :mod:`evaluators.objectives` (which calls it), the data sets, or ``nas``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.data
from torch import Tensor, nn

from evaluators.optimizer import (
    OPTIMIZERS,
    SCHEDULES,
    linearconv_reg_fn,
    lr_factor,
    make_optimizer,
    make_scaler,
)
from evaluators.proxy_result import ProxyResult, TrainState
from evaluators.runtime import (
    AMP_CHOICES,
    configure_cpu_threads,
    describe_failure,
    release_cuda_memory,
    resolve_amp_dtype,
    resolve_device,
)

__all__ = [
    "AMP_CHOICES",
    "OPTIMIZERS",
    "SCHEDULES",
    "ProxyResult",
    "TrainState",
    "configure_cpu_threads",
    "describe_failure",
    "lr_factor",
    "release_cuda_memory",
    "reseed_loader",
    "resolve_amp_dtype",
    "resolve_device",
    "train_proxy",
    "train_settings",
]


def train_settings(config: Any, device: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`train_proxy` an ``EvalConfig`` fixes (optimiser,
    schedule, regulariser, seed, device, precision and the step/validation caps): one place
    for every caller that trains a candidate the way the proxy does."""
    c = config
    return dict(
        optimizer=c.optimizer,
        lr=c.lr,
        momentum=c.momentum,
        weight_decay=c.weight_decay,
        schedule=c.schedule,
        linearconv_reg=c.linearconv_reg,
        seed=c.seed,
        device=device,
        amp=c.amp,
        channels_last=c.channels_last,
        max_steps_per_epoch=c.extra.get("max_steps_per_epoch"),
        max_val_batches=c.extra.get("max_val_batches"),
    )


# -- small helpers ------------------------------------------------------------------------
def _epoch_seed(seed: int, epoch: int) -> int:
    # A fixed odd multiplier keeps (seed, epoch) pairs apart for any realistic seed range.
    return (seed * 1_000_003 + epoch * 7_919 + 1) % (2**63 - 1)


def _reseed_loader(loader: Iterable, seed: int) -> None:
    """Make the loader's shuffling, worker seeds and in-process augmentation depend on ``seed``.

    The loader's generators are reseeded; so is the dataset's own augmentation generator
    (``evaluators.data`` datasets augment whole batches in the main process from a generator
    they own, which would otherwise carry its state from one candidate to the next). Persistent
    worker processes (image folders) are shut down: each keeps the global RNG that torchvision's
    random transforms draw from, seeded once when it started, so it would carry its state from
    one epoch and one candidate to the next (the same architecture scored differently after
    other candidates). The next epoch starts new workers, seeded from the reseeded generator.
    """
    it = getattr(loader, "_iterator", None)
    if getattr(loader, "persistent_workers", False) and it is not None:
        it._shutdown_workers()
        loader._iterator = None
    gens = {
        id(g): g
        for g in (
            getattr(loader, "generator", None),
            getattr(getattr(loader, "sampler", None), "generator", None),
        )
        if isinstance(g, torch.Generator)
    }
    for g in gens.values():
        g.manual_seed(seed)
    ds = getattr(loader, "dataset", None)
    while isinstance(ds, torch.utils.data.Subset):
        ds = ds.dataset
    reseed = getattr(ds, "reseed", None)
    if callable(reseed):
        reseed(seed)
    elif ds is not None and hasattr(ds, "_gen_owner") and hasattr(ds, "seed"):
        # evaluators.data.InMemoryImages (no public reseed method yet): its generator is rebuilt
        # from ``seed`` on the next batch when cleared (the same reset its view() performs).
        ds.seed = seed
        ds._gen, ds._gen_owner = None, None


def reseed_loader(loader: Iterable, seed: int) -> None:
    """Public name of the per-epoch reseeding (the supernet's trainer reuses it)."""
    _reseed_loader(loader, seed)


def _release_memory(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Drop gradients and cached CUDA blocks after a failure so the next candidate has room."""
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.grad = None
    release_cuda_memory()


def _cpu_copy(obj: Any) -> Any:
    """A detached CPU copy of a (nested) state dict."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu_copy(v) for v in obj]
    return obj


def _steps_per_epoch(loader: Any, max_steps: int | None) -> int:
    try:
        n = len(loader)
    except TypeError:
        if max_steps is None:
            raise ValueError(
                "train_loader has no len(); pass max_steps_per_epoch so the schedule is defined"
            ) from None
        return max_steps
    return n if max_steps is None else min(n, max_steps)


def _check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "a positive integer or None" if allow_none else "a positive integer"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _check_nonneg_float(name: str, value: Any, *, positive: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        rule = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {rule}, got {value!r}")


class _Abort(Exception):
    """Internal: ends the loop with a ready-made failure reason."""


@contextlib.contextmanager
def _cudnn_benchmark(enabled: bool) -> Iterator[None]:
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled or old
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


# -- the loop -----------------------------------------------------------------------------
def train_proxy(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    epochs: int,
    total_epochs: int | None = None,
    optimizer: str = "sgd",
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = False,
    schedule: str = "cosine",
    grad_clip: float | None = None,
    linearconv_reg: bool = True,
    reg_lambda: float | None = None,
    reg_every: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    amp: bool | str = True,
    channels_last: bool = True,
    max_steps_per_epoch: int | None = None,
    max_val_batches: int | None = None,
    check_every: int | None = None,
    state: TrainState | None = None,
) -> tuple[ProxyResult, TrainState | None]:
    """Train ``model`` until ``epochs`` epochs are done, then measure validation top-1.

    Args:
        model: the candidate (random init, or any init: a ``state`` overrides it).
        train_loader: yields ``(images, labels)`` batches; its shuffling is reseeded per
            epoch from ``seed`` (see the module docstring).
        val_loader: yields ``(images, labels)`` batches for top-1.
        epochs: the epoch count to reach; with a ``state`` training continues from
            ``state.epochs_done`` (equal counts just re-validate).
        total_epochs: the schedule's horizon (default ``epochs``; a state keeps its own).
            Set it to the highest fidelity a search may ask for, so that resumed runs follow
            the same schedule as straight ones.
        optimizer: ``sgd`` (with ``momentum``, ``nesterov``), ``adam`` or ``adamw``.
        lr, momentum, weight_decay: optimizer hyperparameters; ``lr`` is the peak rate.
        schedule: ``cosine``, ``linear``, ``step`` or ``constant``, per step (:func:`lr_factor`).
        grad_clip: clip the global gradient norm to this value (None: off).
        linearconv_reg: add LinearConv's correlation loss when the model has LinearConv layers.
        reg_lambda, reg_every: its strength and period in steps (default: the paper's 1e-2, 10).
        seed: all randomness of the run derives from it.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        amp: ``True`` (bf16 if supported, else fp16), ``"bf16"``, ``"fp16"``, ``False``/``"off"``;
            CUDA only.
        channels_last: NHWC model and inputs on CUDA.
        max_steps_per_epoch: cap on optimizer steps per epoch (tiny proxies, tests).
        max_val_batches: cap on validation batches.
        check_every: steps between non-finite-loss checks (default 1 on CPU, 25 on CUDA).
        state: a :class:`TrainState` from an earlier call on the same architecture.

    Returns:
        ``(result, state)``: the :class:`ProxyResult`, and the state to resume from later
        (None when the call failed). ``model`` holds the trained weights afterwards.

    Raises:
        ValueError: for bad arguments or a ``state`` trained with other settings.
    """
    dev = resolve_device(device)
    _check_positive_int("epochs", epochs)
    _check_positive_int("total_epochs", total_epochs, allow_none=True)
    _check_positive_int("max_steps_per_epoch", max_steps_per_epoch, allow_none=True)
    _check_positive_int("max_val_batches", max_val_batches, allow_none=True)
    _check_positive_int("check_every", check_every, allow_none=True)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    _check_nonneg_float("lr", lr, positive=True)
    _check_nonneg_float("momentum", momentum)
    _check_nonneg_float("weight_decay", weight_decay)
    if grad_clip is not None:
        _check_nonneg_float("grad_clip", grad_clip, positive=True)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    amp_dtype = resolve_amp_dtype(amp, dev)
    reg_fn, reg_type, default_lambda, default_every = linearconv_reg_fn()
    reg_lambda = default_lambda if reg_lambda is None else reg_lambda
    reg_every = default_every if reg_every is None else reg_every
    _check_nonneg_float("reg_lambda", reg_lambda)
    _check_positive_int("reg_every", reg_every)
    has_linearconv = reg_type is not None and any(isinstance(m, reg_type) for m in model.modules())
    use_reg = bool(linearconv_reg and has_linearconv and reg_fn is not None and reg_lambda > 0)

    steps_per_epoch = _steps_per_epoch(train_loader, max_steps_per_epoch)
    if steps_per_epoch < 1:
        raise ValueError("train_loader yields no batches; use a larger subset or batch size")
    if state is not None:
        if total_epochs is not None and total_epochs != state.total_epochs:
            raise ValueError(
                f"total_epochs={total_epochs} differs from the state's schedule horizon "
                f"{state.total_epochs}; a resumed run must keep its schedule"
            )
        total_epochs = state.total_epochs
    elif total_epochs is None:
        total_epochs = epochs
    if epochs > total_epochs:
        raise ValueError(f"epochs={epochs} exceeds the schedule's total_epochs={total_epochs}")
    settings = {
        "optimizer": optimizer,
        "lr": float(lr),
        "momentum": float(momentum),
        "weight_decay": float(weight_decay),
        "nesterov": bool(nesterov),
        "schedule": schedule,
        "grad_clip": grad_clip,
        "linearconv_reg": use_reg,
        "reg_lambda": float(reg_lambda),
        "reg_every": reg_every,
        "seed": seed,
        "total_epochs": total_epochs,
        "steps_per_epoch": steps_per_epoch,
        "amp_dtype": None if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
    }
    if state is not None:
        diff = [k for k in settings if state.settings.get(k) != settings[k]]
        if diff:
            k = diff[0]
            raise ValueError(
                f"cannot resume: the state was trained with {k}={state.settings.get(k)!r}, "
                f"this call asks for {k}={settings[k]!r}"
            )
        if epochs < state.epochs_done:
            raise ValueError(
                f"epochs={epochs} is below the {state.epochs_done} epochs the state already has"
            )
    if check_every is None:
        check_every = 1 if dev.type == "cpu" else 25
    use_cl = channels_last and dev.type == "cuda"

    fork_devices = [dev.index] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), _cudnn_benchmark(dev.type == "cuda"):
        return _run(
            model,
            train_loader,
            val_loader,
            dev=dev,
            epochs=epochs,
            total_epochs=total_epochs,
            steps_per_epoch=steps_per_epoch,
            settings=settings,
            amp_dtype=amp_dtype,
            use_cl=use_cl,
            use_reg=use_reg,
            reg_fn=reg_fn,
            max_val_batches=max_val_batches,
            check_every=check_every,
            state=state,
        )


def _run(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    dev: torch.device,
    epochs: int,
    total_epochs: int,
    steps_per_epoch: int,
    settings: dict[str, Any],
    amp_dtype: torch.dtype | None,
    use_cl: bool,
    use_reg: bool,
    reg_fn: Any,
    max_val_batches: int | None,
    check_every: int,
    state: TrainState | None,
) -> tuple[ProxyResult, TrainState | None]:
    memory_format = torch.channels_last if use_cl else torch.preserve_format
    seed = settings["seed"]
    phase = "setup"
    opt: torch.optim.Optimizer | None = None
    failure: str | None = None
    start_epoch = state.epochs_done if state is not None else 0
    step = state.steps_done if state is not None else 0
    prior_time = state.total_train_time_s if state is not None else 0.0
    train_time = 0.0
    t0: float | None = None  # start of the epoch in progress
    images = 0
    train_loss: float | None = None
    try:
        model.to(dev)
        if use_cl:
            model.to(memory_format=torch.channels_last)
        opt = make_optimizer(
            model,
            settings["optimizer"],
            lr=settings["lr"],
            momentum=settings["momentum"],
            weight_decay=settings["weight_decay"],
            nesterov=settings["nesterov"],
        )
        scaler = make_scaler(amp_dtype == torch.float16)
        if state is not None:
            model.load_state_dict(state.model_state)
            opt.load_state_dict(state.optimizer_state)
            if state.scaler_state is not None and scaler.is_enabled():
                scaler.load_state_dict(state.scaler_state)
        total_steps = total_epochs * steps_per_epoch
        autocast = (
            torch.autocast(dev.type, dtype=amp_dtype)
            if amp_dtype is not None
            else contextlib.nullcontext()
        )
        for epoch in range(start_epoch, epochs):
            phase = "data loading"
            # Per-epoch reseeding: epoch e's shuffling/dropout depend only on (seed, e).
            es = _epoch_seed(seed, epoch)
            torch.manual_seed(es)
            _reseed_loader(train_loader, es)
            model.train()
            window: list[Tensor] = []
            window_start = 0
            loss_sum: Tensor | None = None
            n_batches = 0
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            for i, (x, y) in enumerate(train_loader):
                if i >= steps_per_epoch:
                    break
                x = x.to(dev, non_blocking=True, memory_format=memory_format)
                y = y.to(dev, non_blocking=True)
                step_lr = settings["lr"] * lr_factor(settings["schedule"], step, total_steps)
                for group in opt.param_groups:
                    group["lr"] = step_lr
                opt.zero_grad(set_to_none=True)
                phase = "forward"
                with autocast:
                    out = model(x)
                    loss = F.cross_entropy(out, y)
                if use_reg and step % settings["reg_every"] == 0:
                    phase = "linearconv regularization"
                    with torch.autocast(dev.type, enabled=False):
                        loss = loss.float() + settings["reg_lambda"] * reg_fn(model)
                phase = "backward"
                scaler.scale(loss).backward()
                phase = "optimizer step"
                if settings["grad_clip"] is not None:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
                scaler.step(opt)
                scaler.update()
                window.append(loss.detach())
                step += 1
                n_batches += 1
                images += int(y.shape[0])
                if len(window) >= check_every:
                    loss_sum = _check_window(window, window_start, epoch, loss_sum)
                    window_start += len(window)
                    window = []
                phase = "data loading"  # what fails next, if anything, is fetching a batch
            if window:
                loss_sum = _check_window(window, window_start, epoch, loss_sum)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            train_time += time.perf_counter() - t0
            t0 = None
            if n_batches == 0:
                raise _Abort(f"train_loader yielded no batches in epoch {epoch + 1}")
            train_loss = float(loss_sum) / n_batches if loss_sum is not None else None
        phase = "validation"
        t1 = time.perf_counter()
        acc, val_loss = _validate(model, val_loader, dev, amp_dtype, memory_format, max_val_batches)
        val_time = time.perf_counter() - t1
    except _Abort as e:
        failure = str(e)
    except Exception as e:  # noqa: BLE001 - any fault inside an op is a result, not a crash
        failure = describe_failure(e, phase)
    if failure is not None:
        if t0 is not None:  # count the part of the epoch that ran
            train_time += time.perf_counter() - t0
        # Leave the except block first so the traceback (and the activations its frames
        # hold) is gone before memory is released.
        _release_memory(model, opt)
        result = ProxyResult(
            accuracy=None,
            train_time_s=train_time,
            epochs_done=start_epoch,
            images_per_s=None,
            failure=failure,
            total_train_time_s=prior_time + train_time,
            amp_dtype=settings["amp_dtype"],
            resumed_from_epoch=start_epoch,
            steps_done=step,
        )
        return result, None
    result = ProxyResult(
        accuracy=acc,
        train_time_s=train_time,
        epochs_done=epochs,
        images_per_s=images / train_time if train_time > 0 and images else None,
        total_train_time_s=prior_time + train_time,
        val_time_s=val_time,
        train_loss=train_loss
        if train_loss is not None
        else (state.result.train_loss if state is not None and state.result else None),
        val_loss=val_loss,
        steps_done=step,
        amp_dtype=settings["amp_dtype"],
        resumed_from_epoch=start_epoch,
    )
    new_state = TrainState(
        model_state=_cpu_copy(model.state_dict()),
        optimizer_state=_cpu_copy(opt.state_dict()) if opt is not None else {},
        scaler_state=_cpu_copy(scaler.state_dict()) if scaler.is_enabled() else None,
        epochs_done=epochs,
        steps_done=step,
        total_epochs=total_epochs,
        steps_per_epoch=steps_per_epoch,
        settings=dict(settings),
        total_train_time_s=prior_time + train_time,
        result=result,
    )
    return result, new_state


def _check_window(
    window: list[Tensor], window_start: int, epoch: int, loss_sum: Tensor | None
) -> Tensor:
    """Raise :class:`_Abort` at the first non-finite loss of ``window``; else add them up."""
    losses = torch.stack([w.float() for w in window])
    bad = ~torch.isfinite(losses)
    if bool(bad.any()):  # the one synchronisation per window
        first = int(bad.nonzero()[0, 0])
        raise _Abort(f"non-finite loss at epoch {epoch + 1} step {window_start + first + 1}")
    s = losses.sum()
    return s if loss_sum is None else loss_sum + s


def _validate(
    model: nn.Module,
    loader: Iterable,
    dev: torch.device,
    amp_dtype: torch.dtype | None,
    memory_format: torch.memory_format,
    max_batches: int | None,
) -> tuple[float, float]:
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    total = 0
    autocast = (
        torch.autocast(dev.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    with torch.no_grad(), autocast:
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x = x.to(dev, non_blocking=True, memory_format=memory_format)
            y = y.to(dev, non_blocking=True)
            out = model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double()
            correct += (out.argmax(dim=1) == y).sum()
            total += int(y.shape[0])
    if total == 0:
        raise _Abort("val_loader yielded no batches")
    val_loss = float(loss_sum) / total
    if not math.isfinite(val_loss):
        raise _Abort("non-finite validation loss")
    return int(correct) / total, val_loss
