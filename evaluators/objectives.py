"""The multi-objective evaluator: one entry point from an ``Architecture`` to a metrics record.

``evaluate(arch, config, fidelity=None) -> Metrics`` (and the :class:`Evaluator` behind it)
scores one candidate in order of cost, stopping as soon as a budget is broken:

1. FLOPs and params from the analytic cost model (microseconds; :mod:`evaluators.cost`).
   Over ``max_flops``/``max_params``: infeasible, returned without building the model.
2. Latency: predicted from the per-slot lookup table (``latency="predict"``, no model built),
   or measured on the built model (``"measure"``), or skipped (``"off"``). Over
   ``max_latency_ms``: infeasible, no training. With ``"measure"`` and a latency budget the
   prediction screens first: a candidate predicted more than ``latency_screen`` (25 %) over
   the budget is infeasible without being built; the others are measured.
3. The zero-cost score named by ``config.zero_cost`` (optional) on one fixed batch.
4. Proxy training (:func:`evaluators.proxy.train_proxy`) to ``fidelity`` epochs (default
   ``config.proxy_epochs``; 0 stops after step 3), on a validation split carved out of the
   training set, then validation top-1 (``accuracy``) and loss; ``score``, the accuracy
   objective, is ``exp(-loss)`` or top-1 as ``config.proxy_score`` says.

Fidelity levels: a search can ask for ``fidelity=0`` (cheap metrics and zero-cost screen),
then 1 epoch, then the full proxy epochs. Each training run keeps its state in a *state store*
(in memory, in the worker process; an LRU of ``max_states`` architectures by default), and a
later call on the same architecture continues from the epoch it reached instead of starting
over. The learning-rate schedule always spans the highest fidelity of the config
(``max(proxy_epochs, *fidelities)``), so stopping at 1 epoch and resuming to 2 gives the same
weights as training 2 epochs straight. A result at the requested fidelity that is already in
the store is returned without work; asking for fewer epochs than stored trains a fresh run.

Data loaders, the cost model and latency tables are built once per :class:`Evaluator` (that
is, once per worker process and config), never per candidate. Nothing heavy (torch) is
imported with this module, so a command can read :class:`EvalConfig` before it parses its
arguments.

Defaults chosen here where the issue is silent: ``violations`` are relative (``flops /
max_flops - 1``, so 0.25 means 25 % over); accuracy is a fraction in [0, 1]; ``train_time_s``
is the training time spent on this architecture so far, over all fidelity levels;
augmentation for the proxy is none for ``synthetic`` and the CIFAR recipe (pad-crop + flip)
otherwise (``config.extra["augment"]`` overrides); the model is built from ``config.seed`` so
equal architectures start from equal weights; latency is measured in float32 at the
architecture's resolution (not the proxy resolution) on ``config.device``.

:class:`EvalConfig` lives in :mod:`evaluators.config`, :class:`Metrics` and the objective
names in :mod:`evaluators.metrics`, the state store in :mod:`evaluators.state_store`; they
are re-exported here. This module is the top of ``evaluators``: it may import any of them
(the heavy ones inside functions), and must not import ``nas``.
"""

from __future__ import annotations

import collections
import json
import math
import time
from collections.abc import MutableMapping
from typing import Any

from evaluators.config import LATENCY_MODES, EvalConfig, proxy_score, validate_config
from evaluators.metrics import OBJECTIVE_DIRECTIONS, OBJECTIVES, Metrics
from evaluators.state_store import StateStore, StoredEvaluation

__all__ = [
    "EvalConfig",
    "Evaluator",
    "LATENCY_MODES",
    "Metrics",
    "OBJECTIVES",
    "OBJECTIVE_DIRECTIONS",
    "StateStore",
    "StoredEvaluation",
    "evaluate",
    "get_evaluator",
    "validate_config",
]

# -- the evaluator ------------------------------------------------------------------------
_THREADS_CONFIGURED = False


class Evaluator:
    """Scores architectures under one :class:`EvalConfig`; caches what candidates share.

    The proxy data loaders (per resolution), the fixed zero-cost batch, latency tables and
    cost models are built on first use and reused for every later candidate. Use one
    Evaluator per worker process; it is not thread-safe.

    Args:
        config: the evaluation settings (validated here: ``ValueError`` names a bad field).
        state_store: where training states are kept for resuming across fidelity levels
            (default: a :class:`StateStore` of ``config.extra.get("max_states", 16)``).
    """

    def __init__(
        self, config: EvalConfig, *, state_store: MutableMapping[str, Any] | None = None
    ) -> None:
        validate_config(config)
        from evaluators.runtime import configure_cpu_threads, resolve_device

        self.config = config
        self.device = resolve_device(config.device)
        self.state_store: MutableMapping[str, Any] = (
            state_store
            if state_store is not None
            else StateStore(config.extra.get("max_states", 16))
        )
        self.horizon = max((config.proxy_epochs, *config.fidelities))
        self._data: dict[int, tuple[Any, Any, int, int]] = {}
        self._zc_batches: dict[int, tuple[Any, Any]] = {}
        self._latency_tables: dict[tuple, Any] = {}
        global _THREADS_CONFIGURED
        if self.device.type == "cpu" and (
            not _THREADS_CONFIGURED or config.extra.get("cpu_threads") is not None
        ):
            configure_cpu_threads(config.extra.get("cpu_threads"))
            _THREADS_CONFIGURED = True

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Evaluator({c.dataset}, proxy {c.proxy_epochs} epoch(s) on {c.proxy_subset} images, "
            f"device={self.device}, latency={c.latency}, zero_cost={c.zero_cost})"
        )

    # -- cached resources -----------------------------------------------------------------
    def proxy_resolution(self, arch: Any) -> int:
        return self.config.proxy_resolution or arch.resolution

    def loaders(self, resolution: int, num_classes: int) -> tuple[Any, Any]:
        """``(train_loader, val_loader)`` of the proxy split at ``resolution`` (built once)."""
        from evaluators import data

        c = self.config
        spec = data.parse_dataset(c.dataset)
        n_classes = data.num_classes(spec)
        if n_classes != num_classes:
            raise ValueError(
                f"the architecture has {num_classes} classes but dataset {c.dataset!r} has "
                f"{n_classes}; build the search space with num_classes={n_classes}"
            )
        if resolution not in self._data:
            augment = c.extra.get("augment", None if spec.kind == "synthetic" else "cifar")
            synthetic_size = c.extra.get("synthetic_size")
            if synthetic_size is None and spec.kind == "synthetic" and c.proxy_subset:
                # Generate just enough images for the subset and its validation share.
                synthetic_size = math.ceil(c.proxy_subset / (1 - c.val_fraction)) + 1
            train_ds, val_ds = data.proxy_split(
                spec,
                data_dir=c.data_dir,
                val_fraction=c.val_fraction,
                subset=c.proxy_subset,
                val_size=c.val_size,
                resolution=resolution,
                augment=augment,
                seed=c.seed,
                download=c.download,
                synthetic_size=synthetic_size,
            )
            n_train, n_val = len(train_ds), len(val_ds)  # type: ignore[arg-type]
            train = data.make_loader(
                train_ds,
                batch_size=c.batch_size,
                shuffle=True,
                seed=c.seed,
                device=self.device,
                num_workers=c.num_workers,
                drop_last=n_train >= c.batch_size,
            )
            val = data.make_loader(
                val_ds,
                batch_size=2 * c.batch_size,
                shuffle=False,
                seed=c.seed,
                device=self.device,
                num_workers=c.num_workers,
            )
            self._data[resolution] = (train, val, n_train, n_val)
        train, val, _, _ = self._data[resolution]
        return train, val

    def _zero_cost_batch(self, resolution: int, num_classes: int) -> tuple[Any, Any]:
        # A fixed batch: the first images of the validation part (evaluation pipeline, no
        # augmentation), so every candidate is scored on exactly the same inputs.
        if resolution not in self._zc_batches:
            import torch

            _, val = self.loaders(resolution, num_classes)
            ds = val.dataset
            n = min(self.config.batch_size, len(ds))
            items = [ds[i] for i in range(n)]
            x = torch.stack([it[0] for it in items])
            y = torch.as_tensor([int(it[1]) for it in items])
            self._zc_batches[resolution] = (x, y)
        return self._zc_batches[resolution]

    def _latency_table(self, arch: Any) -> Any:
        from evaluators.latency import LatencyTable

        key = (arch.backbone, arch.num_classes, arch.resolution, arch.slots)
        if key not in self._latency_tables:
            c = self.config
            self._latency_tables[key] = LatencyTable.for_backbone(
                arch.backbone,
                num_classes=arch.num_classes,
                resolution=arch.resolution,
                slots=arch.slots,
                batch_size=c.latency_batch,
                device=self.device,
                repeats=c.latency_repeats,
                channels_last=self._channels_last,
                cache_dir=c.extra.get("latency_cache_dir"),
            )
            n_cal = c.extra.get("latency_calibrate")
            if n_cal is not None:
                from search_spaces.space import SearchSpace

                # the default menu's choices: the calibration's features are per operator
                # family, so it predicts any menu's architectures
                space = SearchSpace(
                    arch.backbone,
                    num_classes=arch.num_classes,
                    resolution=arch.resolution,
                    slots=arch.slots,
                )
                self._latency_tables[key].calibrate(space.choices, n=int(n_cal))
        return self._latency_tables[key]

    @property
    def _channels_last(self) -> bool:
        return self.config.channels_last and self.device.type == "cuda"

    # -- evaluation -----------------------------------------------------------------------
    def cost_metrics(self, arch: Any) -> Metrics:
        """Step 1 alone: FLOPs/params and the FLOPs/params budget check (microseconds)."""
        from evaluators.cost import get_cost_model

        c = self.config
        cost = get_cost_model(arch.backbone, arch.num_classes, arch.resolution, arch.slots).cost(
            arch
        )
        m = Metrics(arch.arch_id, cost.flops, cost.params, cost.inference_params)
        for name, value, budget in (
            ("flops", cost.flops, c.max_flops),
            ("params", cost.params, c.max_params),
        ):
            if budget is not None and value > budget:
                m.violations[name] = value / budget - 1.0
        m.feasible = not m.violations
        return m

    def evaluate(
        self,
        arch: Any,
        fidelity: int | None = None,
        *,
        state_store: MutableMapping[str, Any] | None = None,
    ) -> Metrics:
        """Score ``arch`` up to ``fidelity`` proxy epochs (default ``config.proxy_epochs``).

        ``fidelity=0`` stops after the cheap metrics, latency and zero-cost score. Returns a
        :class:`Metrics`; faults of the candidate (non-finite loss, out of memory, an exception
        inside an op) come back as ``Metrics.failure``. Raises ``ValueError`` for a bad
        ``fidelity`` or an architecture that does not fit the config (class count), and
        ``evaluators.data.DatasetUnavailable`` when the data cannot be read.
        """
        t_start = time.perf_counter()
        c = self.config
        target = c.proxy_epochs if fidelity is None else fidelity
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise ValueError(f"fidelity must be a non-negative integer or None, got {fidelity!r}")
        store = self.state_store if state_store is None else state_store
        horizon = max(self.horizon, target)

        m = self.cost_metrics(arch)
        if not m.feasible:
            m.extra["stopped_at"] = "cost"
            return _finish(m, t_start)

        key = arch.arch_id
        stored: StoredEvaluation | None = store.get(key)
        if stored is not None:
            sm = stored.metrics
            if not sm.feasible or sm.failure is not None or sm.fidelity == target:
                return _finish(_copy_metrics(sm, cached=True), t_start)
            if target == 0:
                return _finish(_cheap_part(sm), t_start)

        # Step 2a: predicted latency needs no model.
        if stored is not None and stored.metrics.latency_source is not None:
            _copy_latency(stored.metrics, m)
        elif c.latency == "predict":
            failure = self._predict_latency(arch, m)
            if failure:
                m.failure = failure
                return _finish(m, t_start)
        elif (
            c.latency == "measure" and c.max_latency_ms is not None and c.latency_screen is not None
        ):
            # Screening: a prediction clearly over the budget is enough to skip the candidate;
            # the ones kept are measured below (and their measurement is what counts).
            failure = self._predict_latency(arch, m)
            if failure:
                m.failure = failure
                return _finish(m, t_start)
            predicted = m.latency_ms
            m.extra["latency_predicted_ms"] = predicted
            if predicted is not None and predicted > c.max_latency_ms * (1 + c.latency_screen):
                m.extra["stopped_at"] = "latency screen"
                m.violations["latency"] = predicted / c.max_latency_ms - 1.0
                m.feasible = False
                store[key] = StoredEvaluation(_copy_metrics(m))
                return _finish(m, t_start)
            m.latency_ms, m.latency_source = None, None
        if not self._latency_ok(m):
            store[key] = StoredEvaluation(_copy_metrics(m))
            return _finish(m, t_start)

        needs_model = (
            target > 0
            or (c.latency == "measure" and m.latency_source is None)
            or (c.zero_cost is not None and (stored is None or stored.metrics.zero_cost is None))
        )
        if not needs_model:  # a fidelity-0 call with nothing left to measure
            store[key] = StoredEvaluation(_copy_metrics(m))
            return _finish(m, t_start)
        failure, model = self._build(arch)
        if failure:
            m.failure = failure
            return _finish(m, t_start)
        try:
            # Step 2b: measured latency.
            if c.latency == "measure" and m.latency_source is None:
                failure = self._measure_latency(arch, model, m)
                if failure:
                    m.failure = failure
                    return _finish(m, t_start)
                if not self._latency_ok(m):
                    store[key] = StoredEvaluation(_copy_metrics(m))
                    return _finish(m, t_start)
            # Step 3: zero-cost score.
            if c.zero_cost is not None:
                if stored is not None and stored.metrics.zero_cost is not None:
                    m.zero_cost = stored.metrics.zero_cost
                else:
                    failure = self._zero_cost(arch, model, m)
                    if failure:
                        m.failure = failure
                        return _finish(m, t_start)
            if target == 0:
                store[key] = StoredEvaluation(_copy_metrics(m))
                return _finish(m, t_start)
            # Step 4: proxy training, resumed where a cheaper level stopped.
            prior = stored.state if stored is not None else None
            if prior is not None and (prior.epochs_done > target or prior.total_epochs != horizon):
                prior = None  # cannot go back in time; train a fresh run (not stored)
            result, state = self._train(arch, model, target, horizon, prior)
        finally:
            del model
        m.accuracy = result.accuracy
        if result.failure is None:
            m.score = proxy_score(c.proxy_score, result.accuracy, result.val_loss)
        m.train_time_s = result.total_train_time_s
        m.fidelity = result.epochs_done
        m.failure = result.failure
        res = self.proxy_resolution(arch)
        _, _, n_train, n_val = self._data[res]
        m.extra["proxy"] = {
            "epochs": target,
            "schedule_epochs": horizon,
            "resumed_from_epoch": result.resumed_from_epoch,
            "train_images": n_train,
            "val_images": n_val,
            "resolution": res,
            "batch_size": c.batch_size,
            "steps": result.steps_done,
            "images_per_s": result.images_per_s,
            "train_loss": result.train_loss,
            "val_loss": result.val_loss,
            "score": c.proxy_score,
            "amp": result.amp_dtype,
            "device": str(self.device),
            "train_time_this_call_s": result.train_time_s,
            "val_time_s": result.val_time_s,
        }
        keep = stored is None or stored.state is None or stored.state.epochs_done <= target
        if state is not None and keep:
            store[key] = StoredEvaluation(_copy_metrics(m), state)
        elif keep and result.failure and not result.failure.startswith("out of memory"):
            # Deterministic faults repeat; out-of-memory may not (another process's memory).
            store[key] = StoredEvaluation(_copy_metrics(m))
        return _finish(m, t_start)

    # -- steps ----------------------------------------------------------------------------
    def _latency_ok(self, m: Metrics) -> bool:
        budget = self.config.max_latency_ms
        if budget is not None and m.latency_ms is not None and m.latency_ms > budget:
            m.violations["latency"] = m.latency_ms / budget - 1.0
            m.feasible = False
            m.extra["stopped_at"] = "latency"
            return False
        return True

    def _predict_latency(self, arch: Any, m: Metrics) -> str | None:
        from evaluators.runtime import describe_failure, release_cuda_memory

        try:
            table = self._latency_table(arch)
            m.latency_ms = float(table.predict_arch(arch))
        except Exception as e:  # noqa: BLE001 - a fault in an op is a result
            failure = describe_failure(e, "latency prediction")
        else:
            m.latency_source = "predicted"
            return None
        release_cuda_memory()  # outside the except block: the traceback is gone
        return failure

    def _measure_latency(self, arch: Any, model: Any, m: Metrics) -> str | None:
        from evaluators.latency import measure_latency
        from evaluators.runtime import describe_failure, release_cuda_memory

        c = self.config
        failure: str | None
        try:
            r = measure_latency(
                model,
                arch.resolution,
                batch_size=c.latency_batch,
                device=self.device,
                repeats=c.latency_repeats,
                channels_last=self._channels_last,
            )
        except Exception as e:  # noqa: BLE001
            failure = describe_failure(e, "latency measurement")
        else:
            failure = None
        if failure is not None:
            release_cuda_memory()
            return failure
        m.latency_ms, m.latency_iqr_ms, m.latency_source = r.median_ms, r.iqr_ms, "measured"
        m.extra["latency"] = {
            "p25_ms": r.p25_ms,
            "p75_ms": r.p75_ms,
            "cv": r.cv,
            "repeats": r.repeats,
            "batch_size": r.batch_size,
            "device_name": r.device_name,
            "threads": r.threads,
            "dtype": r.dtype,
        }
        return None

    def _build(self, arch: Any) -> tuple[str | None, Any]:
        import torch

        from evaluators.runtime import describe_failure, release_cuda_memory
        from search_spaces.arch import build_model

        try:
            # Seeded and forked: equal architectures start from equal weights, and the
            # caller's global RNG is left alone.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.config.seed)
                return None, build_model(arch)
        except Exception as e:  # noqa: BLE001
            failure = describe_failure(e, "model construction")
        release_cuda_memory()
        return failure, None

    def _zero_cost(self, arch: Any, model: Any, m: Metrics) -> str | None:
        import torch

        from evaluators.runtime import describe_failure, release_cuda_memory
        from evaluators.zero_cost import zero_cost_score

        name = self.config.zero_cost
        if name is None:
            return None
        failure: str | None
        x, y = self._zero_cost_batch(self.proxy_resolution(arch), arch.num_classes)
        dev = self.device
        try:
            with torch.random.fork_rng(devices=[dev.index] if dev.type == "cuda" else []):
                torch.manual_seed(self.config.seed)
                score = zero_cost_score(name, model, (x.to(dev), y.to(dev)))
        except Exception as e:  # noqa: BLE001
            failure = describe_failure(e, f"zero-cost score {name}")
        else:
            failure = None
        if failure is not None:
            release_cuda_memory()
            return failure
        if math.isfinite(score):
            m.zero_cost = float(score)
        else:  # JSON has no infinities; record why the score is missing
            m.extra["zero_cost_note"] = f"{name} score is {score}"
        return None

    def _train(self, arch: Any, model: Any, target: int, horizon: int, prior: Any) -> Any:
        from evaluators.proxy import train_proxy, train_settings

        c = self.config
        train, val = self.loaders(self.proxy_resolution(arch), arch.num_classes)
        kwargs: dict[str, Any] = dict(
            epochs=target, total_epochs=horizon, **train_settings(c, self.device)
        )
        if prior is not None:
            try:
                return train_proxy(model, train, val, state=prior, **kwargs)
            except ValueError:
                pass  # a state from other settings (a shared store): start over
        return train_proxy(model, train, val, **kwargs)


# -- helpers ------------------------------------------------------------------------------
def _copy_metrics(m: Metrics, *, cached: bool = False) -> Metrics:
    out = Metrics.from_dict(json.loads(json.dumps(m.to_dict())))
    if cached:
        out.extra["cached"] = True
    return out


def _copy_latency(src: Metrics, dst: Metrics) -> None:
    dst.latency_ms, dst.latency_iqr_ms = src.latency_ms, src.latency_iqr_ms
    dst.latency_source = src.latency_source
    if "latency" in src.extra:
        dst.extra["latency"] = dict(src.extra["latency"])


def _cheap_part(m: Metrics) -> Metrics:
    """The fidelity-0 view of a stored result: everything but training."""
    out = _copy_metrics(m, cached=True)
    out.accuracy, out.train_time_s, out.fidelity = None, 0.0, 0
    out.extra.pop("proxy", None)
    return out


def _finish(m: Metrics, t_start: float) -> Metrics:
    m.extra["eval_time_s"] = time.perf_counter() - t_start
    return m


_EVALUATORS: collections.OrderedDict[str, Evaluator] = collections.OrderedDict()
_MAX_EVALUATORS = 8


def get_evaluator(config: EvalConfig) -> Evaluator:
    """The process-wide :class:`Evaluator` for ``config`` (equal configs share one)."""
    key = json.dumps(config.to_dict(), sort_keys=True, default=str)
    ev = _EVALUATORS.get(key)
    if ev is None:
        ev = _EVALUATORS[key] = Evaluator(config)
        while len(_EVALUATORS) > _MAX_EVALUATORS:
            _EVALUATORS.popitem(last=False)
    _EVALUATORS.move_to_end(key)
    return ev


def evaluate(
    arch: Any,
    config: EvalConfig,
    fidelity: int | None = None,
    *,
    state_store: MutableMapping[str, Any] | None = None,
) -> Metrics:
    """Score one architecture: the search's evaluator entry point.

    ``evaluate(arch, config, fidelity)`` is the signature every evaluator plugged in with
    ``--evaluator package.module:function`` has. It uses the cached :class:`Evaluator` of
    ``config`` (data loaders and cost model built once per process) and its in-memory state
    store unless ``state_store`` is given. See :meth:`Evaluator.evaluate`.
    """
    return get_evaluator(config).evaluate(arch, fidelity, state_store=state_store)
