"""The Ray Tune driver: search workers placed by Ray Tune, results in the Optuna storage.

``python -m nas.search --backend ray [--ray-address ADDR] [--workers N]`` runs the same search
as the default backend, but as ``N`` concurrent Ray Tune trials, each one a ConvNAS search
worker with its own share of the cluster (``--cpus-per-worker``, ``--gpus-per-worker``; Ray
sets ``CUDA_VISIBLE_DEVICES`` so a worker sees only its GPU). Every worker runs the Optuna
worker loop of :mod:`nas.backends.optuna_backend` against the study's storage: it asks the
study's sampler for an architecture, prices it, evaluates it and tells the result, until the
study holds ``--trials`` complete trials. So the study, its trials and the Pareto export are
the same whichever backend ran them, and optuna-dashboard shows them the same way.

Why a Tune trial is a worker, not one architecture: the search's own rules -- budgets checked
before anything is built, an architecture never evaluated twice in a study, successive halving
among peers of similar cost, interrupted trials marked failed -- live in the Optuna study that
all workers share. A Tune trial per architecture would need Tune's searcher to re-implement
them; one worker per Tune trial keeps one implementation, and Ray still decides where each
worker runs and what it may use.

Storage: every worker must reach the study. On one machine the default SQLite file (or a
journal file) works; on a cluster use a database URL every node can reach (PostgreSQL, MySQL)
or a journal file on a shared file system. Relative paths are made absolute before they are
sent to the workers, since Ray runs them in other directories.

Imports ray (inside its functions, so that importing it is cheap); must not import
:mod:`nas.search`, :mod:`nas.runner` or anything else that drives it: what a worker runs
arrives as an argument.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nas.backends.heartbeat import OWNER_TAG_ENV

__all__ = ["RayUnavailable", "connect", "ray_available", "run_workers"]


class RayUnavailable(ValueError):
    """Ray could not be started or reached; the message is one sentence for users."""


def ray_available() -> str | None:
    """``None`` when Ray Tune can be imported, else the one-line reason."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError as e:
        return f"the ray backend needs Ray Tune (pip install 'ray[tune]'): {e}"
    return None


def connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address`` (``None``: start a local instance).

    Returns whether this call started Ray (the caller then owns its shutdown). Called before
    the study is created, so a cluster that cannot be reached leaves nothing behind. Raises
    :class:`RayUnavailable` naming the address.
    """
    # Tune's console tables would interleave with ConvNAS's progress lines; its files keep
    # everything. Set before Tune is imported, which reads it.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    if ray.is_initialized():
        return False
    # Workers import the project and the user's evaluator module from the driver's path.
    path = os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p and Path(p).is_dir())
    env = {"PYTHONPATH": path, "RAY_CHDIR_TO_TRIAL_DIR": "0"}
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "runtime_env": {"env_vars": env},
    }
    if address is not None:
        kwargs["address"] = address
        _probe(address)
    try:
        ray.init(**kwargs)
    except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError by case
        text = str(e).strip().splitlines()
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise RayUnavailable(
            f"cannot start or reach {where} ({text[0] if text else type(e).__name__}); "
            "check --ray-address (auto, host:6379, ray://host:10001) or leave it out to run "
            "Ray locally"
        ) from None
    return True


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (``ray.init`` retries for minutes)."""
    import socket

    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return  # "auto" and the like: ray.init decides
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise RayUnavailable(
            f"cannot reach the Ray cluster at {address!r} ({e.strerror or e}); check "
            "--ray-address (auto, host:6379, ray://host:10001) or leave it out to run Ray "
            "locally"
        ) from None


def _worker(params: Mapping[str, Any], entry: Callable[[dict[str, Any]], Any], tag: str) -> None:
    """One Tune trial: ``entry(config)``, a ConvNAS search worker on the shared study.

    The worker's trials carry the owner tag ``<tag>/<worker index>`` (see
    :mod:`nas.backends.heartbeat`), so the driver can fail them if the worker is lost.
    """
    from ray import tune

    os.environ[OWNER_TAG_ENV] = f"{tag}/{params['worker']}"
    tune.report(entry(dict(params["config"])))


def run_workers(
    worker_config: Mapping[str, Any],
    *,
    entry: Callable[[dict[str, Any]], Any],
    n_workers: int,
    address: str | None,
    cpus_per_worker: float,
    gpus_per_worker: float | None,
    results_dir: Path,
    name: str,
    poll: Callable[[], None] | None = None,
    poll_s: float = 2.0,
    owns_ray: bool = True,
    tag: str | None = None,
) -> tuple[list[str], list[dict[str, Any]], dict[str, str]]:
    """Run ``n_workers`` search workers as Ray Tune trials and wait for them.

    ``worker_config`` is a :class:`nas.config.SearchConfig` as a dict and ``entry`` the
    function each worker calls with it (:func:`nas.runner.run_worker`: this module is handed
    the worker's entry point by its caller rather than importing it, so the search imports
    the backend and never the other way round; it reaches the workers through Ray's object
    store, :func:`ray.tune.with_parameters`). ``address`` ``None`` starts a local Ray
    instance for the run (and stops it after); otherwise it is passed to ``ray.init``
    (``auto``, ``ray://host:10001``, ...).
    ``gpus_per_worker`` ``None`` means 1 when the cluster has a GPU and the config's device is
    not ``cpu``, else 0. Tune's own
    files go to ``results_dir/name``. ``poll()`` is called every ``poll_s`` seconds while
    the workers run (the caller's progress display). Ray is joined with :func:`connect`
    unless it already runs; ``owns_ray`` says whether to shut it down afterwards (when
    :func:`connect` started it). Returns one line per worker that failed (empty when all
    finished), what each finished worker reported (``entry``'s return value: its counts
    and why it stopped), and the owner tag of each failed worker with its error line (give it
    to :func:`nas.backends.heartbeat.fail_orphans`). Worker ``i`` tags its trials
    ``<tag>/<i>``; ``tag`` defaults to one made of this process's host, pid and the time.
    """
    import ray
    from ray import tune

    started_here = connect(address) or owns_ray
    if tag is None:
        tag = f"ray:{socket.gethostname()}:{os.getpid()}:{time.time():.0f}"
    stop = threading.Event()

    def poller() -> None:
        while not stop.wait(poll_s):
            try:
                poll()  # type: ignore[misc]
            except Exception:  # noqa: BLE001 - a display must never kill the run
                pass

    thread = threading.Thread(target=poller, daemon=True) if poll is not None else None
    try:
        if gpus_per_worker is None:
            has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
            gpus_per_worker = 1.0 if has_gpu and worker_config.get("device") != "cpu" else 0.0
        trainable = tune.with_resources(
            tune.with_parameters(_worker, entry=entry, tag=tag),
            {"cpu": cpus_per_worker, "gpu": gpus_per_worker},
        )
        tuner = tune.Tuner(
            trainable,
            param_space={
                "config": dict(worker_config),
                "worker": tune.grid_search(list(range(n_workers))),
            },
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=n_workers),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(Path(results_dir).resolve()),
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        if thread is not None:
            thread.start()
        grid = tuner.fit()
        errors, reports, failed = [], [], {}
        for i in range(len(grid)):
            r = grid[i]
            w = (r.config or {}).get("worker", i)
            if r.error is not None:
                text = str(r.error).strip().splitlines()
                line = f"worker {w}: {text[-1] if text else type(r.error).__name__}"
                errors.append(line)
                failed[f"{tag}/{w}"] = f"its Ray worker failed ({line})"
            elif r.metrics:
                reports.append(dict(r.metrics))
        return errors, reports, failed
    finally:
        stop.set()
        if thread is not None and thread.is_alive():
            thread.join(timeout=poll_s + 1)
        if started_here:
            ray.shutdown()
