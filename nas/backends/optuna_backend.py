"""The Optuna search engine: a flat categorical space, cheap metrics first, fidelity ladder.

One :class:`OptunaSearch` drives one Optuna study with the ask-and-tell interface:

1. **Propose.** The space is flat: one ``CategoricalDistribution`` per slot whose choices are
   readable labels (``conv``, ``scconv(a=0.5,r=2,g=2)``, ``oct(a=0.25)``, ...), passed to
   ``study.ask`` as fixed distributions, so TPE and NSGA-II model every choice.
2. **Price.** FLOPs and parameters come from the analytic cost model in microseconds. A
   candidate over ``max_flops`` or ``max_params`` is *infeasible*: it is told COMPLETE with
   accuracy 0 and its real costs (latency ``inf``: it was never built), with its constraint
   values set, and is never built or trained.
3. **Reuse.** The same architecture (same ``arch_id``) is never evaluated twice in a study: a
   repeated proposal is told the values, constraints and metrics of the earlier trial
   (``duplicate_of`` names it). Earlier *failures* are reused too, except interruptions.
   With a FLOPs or params budget, a new study starts with ``warm_start`` random
   architectures repaired to fit it (enqueued trials), so every sampler begins with feasible
   examples; afterwards the sampler alone proposes.
4. **Evaluate on a fidelity ladder.** The evaluator is called with increasing proxy epochs
   (the *rungs*, e.g. 1 then 2); between rungs the successive-halving rule below may stop a
   candidate. The evaluator measures latency before it trains, so a candidate over
   ``max_latency_ms`` is infeasible without training.
5. **Record.** Objective values (``study.set_metric_names``), constraints, and user attributes
   with everything a dashboard user needs (architecture JSON and id, FLOPs, params, latency
   with spread, train time, proxy settings, fidelity reached, accuracy per rung, failure
   reason). A failed evaluation (non-finite loss, out of memory, exception) is FAIL with its
   reason in ``failure``; the search goes on.

Constraints
    Optuna 5 stores constraints set with ``Trial.set_constraint(key, value)`` as system
    attributes ``constraints:<key>``; optuna-dashboard 0.21 reads only the legacy list under
    the system attribute ``constraints``. Both are written (the same values, in the order of
    the study's ``constraint_names`` user attribute), so samplers, ``study.best_trials`` and
    the dashboard agree on feasibility. A constraint value is the relative overshoot
    ``value / budget - 1`` (> 0: broken); a budget that could not be checked because an
    earlier one already failed (latency of a model never built) is recorded as 0.

Early stopping (multi-objective studies cannot be pruned in Optuna)
    Successive halving on accuracy among candidates of similar cost. Rungs
    ``r_0 < r_1 < ... < r_K`` are proxy-epoch counts, ``r_K`` the full proxy budget. After a
    candidate ``c`` reaches rung ``r_k`` (k < K) with accuracy ``a_k(c)``, its *peers* are the
    other trials of the study, finished or running, that recorded an accuracy at ``r_k`` and
    cost at most ``(1 + cost_tolerance)`` times what ``c`` costs (default 5 %), where the cost
    is the study's first cost objective among FLOPs, params and latency (``cost_basis
    "primary"``, the default) or every cost objective at once (``"all"``: peers then dominate
    ``c`` in cost, which stops far fewer candidates in a four-objective study).
    With ``n`` peers of which ``b`` are strictly more accurate at ``r_k``, ``c`` is stopped
    when ``n >= min_peers`` and ``b + 1 > ceil((n + 1) / eta)``, i.e. when ``c`` is not in the
    top ``1/eta`` of itself plus its peers; otherwise it is trained on to ``r_{k+1}`` (the
    evaluator resumes from ``r_k``). With the defaults (``eta = 2``, ``min_peers = 2``) a
    candidate stops when more than half of the candidates that cost no more and were trained
    as long are more accurate. A stopped trial keeps the accuracy of the rung it reached
    (``fidelity`` says which; ``rung_accuracy`` lists every rung; the exported Pareto set
    shows ``fidelity`` for each member); accuracies are compared at equal training only, when
    deciding promotion. Repeated architectures (``duplicate_of``) are not peers, so one result
    is not counted twice.

Interrupted trials
    Every trial records its owner (host, process id, process start time) and a heartbeat that
    a background thread refreshes every ``heartbeat_s`` seconds. Before each proposal, running
    trials of the study whose owner process on this host is gone, or whose heartbeat is older
    than ``stale_after_s`` (other hosts), are marked FAIL with ``failure`` explaining the
    interruption. This works the same for SQLite, journal files and database URLs.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from evaluators.objectives import OBJECTIVE_DIRECTIONS, OBJECTIVES, Metrics
from search_spaces.arch import Architecture

__all__ = [
    "BUDGET_NAMES",
    "METRIC_NAMES",
    "SAMPLERS",
    "Budgets",
    "FidelityLadder",
    "OptunaSearch",
    "RunSummary",
    "StudyInfo",
    "TrialOutcome",
    "TrialRow",
    "describe_storage",
    "hypervolume",
    "list_studies",
    "load_rows",
    "open_storage",
    "study_exists",
]

SAMPLERS = ("tpe", "nsga2", "random")
#: Objective name -> metric name shown in the dashboard.
METRIC_NAMES = {
    "accuracy": "accuracy",
    "flops": "flops",
    "params": "params",
    "latency": "latency_ms",
}
BUDGET_NAMES = ("flops", "params", "latency")
_CONSTRAINTS_LEGACY_KEY = "constraints"  # what optuna-dashboard reads
_OWNER_KEY = "convnas:owner"
_HEARTBEAT_KEY = "convnas:heartbeat"
INTERRUPTED_PREFIX = "interrupted"

Evaluate = Callable[[Architecture, int], Metrics]


# -- small value types ----------------------------------------------------------------------
@dataclass(frozen=True)
class Budgets:
    """Upper limits; ``None`` means unlimited. FLOPs and params are counts, latency in ms."""

    max_flops: int | None = None
    max_params: int | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_flops", "max_params", "max_latency_ms"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not v > 0 or not math.isfinite(v)):
                raise ValueError(f"{name} must be a positive number or None, got {v!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """The budgets that are set, in the fixed order flops, params, latency."""
        limits = (self.max_flops, self.max_params, self.max_latency_ms)
        return tuple(n for n, v in zip(BUDGET_NAMES, limits) if v is not None)

    def limit(self, name: str) -> float | None:
        return {"flops": self.max_flops, "params": self.max_params, "latency": self.max_latency_ms}[
            name
        ]


@dataclass(frozen=True)
class FidelityLadder:
    """Proxy-epoch rungs and the successive-halving promotion rule (see the module docstring).

    ``rungs=(E,)`` (one rung) always trains to the full ``E`` epochs.
    """

    rungs: tuple[int, ...]
    eta: float = 2.0
    min_peers: int = 2
    cost_tolerance: float = 0.05
    cost_basis: str = "primary"

    def __post_init__(self) -> None:
        r = self.rungs
        if not r or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in r):
            raise ValueError(f"rungs must be positive integers, got {r!r}")
        if any(b <= a for a, b in zip(r, r[1:])):
            raise ValueError(f"rungs must be strictly increasing, got {r!r}")
        if not self.eta > 1:
            raise ValueError(f"eta must be greater than 1, got {self.eta!r}")
        if (
            isinstance(self.min_peers, bool)
            or not isinstance(self.min_peers, int)
            or (self.min_peers < 1)
        ):
            raise ValueError(f"min_peers must be a positive integer, got {self.min_peers!r}")
        if not 0 <= self.cost_tolerance < 1:
            raise ValueError(f"cost_tolerance must be in [0, 1), got {self.cost_tolerance!r}")
        if self.cost_basis not in ("primary", "all"):
            raise ValueError(f"cost_basis must be 'primary' or 'all', got {self.cost_basis!r}")

    @classmethod
    def halving(cls, full_epochs: int, eta: int = 2) -> FidelityLadder:
        """Rungs ``E, E//eta, E//eta², ... >= 1`` for ``E = full_epochs``, e.g. 4 -> (1, 2, 4)."""
        rungs, e = [], full_epochs
        while e >= 1:
            rungs.append(e)
            e //= eta
        return cls(tuple(sorted(set(rungs))), eta=float(eta))

    @property
    def full(self) -> int:
        return self.rungs[-1]

    def promote(self, accuracy: float, peer_accuracies: Sequence[float]) -> tuple[bool, str]:
        """Whether a candidate with ``accuracy`` goes on, given its peers' accuracies."""
        n = len(peer_accuracies)
        better = sum(a > accuracy for a in peer_accuracies)
        if n < self.min_peers:
            return True, f"{n} peer(s) of similar or lower cost (< {self.min_peers}): promoted"
        keep = math.ceil((n + 1) / self.eta)
        if better + 1 <= keep:
            return (
                True,
                f"rank {better + 1} of {n + 1} among peers of similar or lower cost: promoted",
            )
        return False, (
            f"{better} of {n} peers of similar or lower cost more accurate after the same "
            f"training: stopped (rank {better + 1} > {keep})"
        )


@dataclass
class TrialOutcome:
    """What happened to one trial of this run, for progress displays."""

    number: int
    status: str  # "feasible", "infeasible", "stopped", "duplicate", "failed"
    arch_id: str
    accuracy: float | None
    flops: int
    params: int
    latency_ms: float | None
    fidelity: int
    seconds: float
    message: str


@dataclass
class StudyInfo:
    """State of the study when a run starts."""

    name: str
    storage: str
    resumed: bool
    n_complete: int
    n_feasible: int
    n_failed: int
    n_interrupted_now: int


@dataclass
class RunSummary:
    """State of the study when a run ends, and why it ended."""

    n_complete: int
    n_feasible: int
    n_failed: int
    n_run: int
    stop_reason: str
    seconds: float
    outcomes: list[TrialOutcome] = field(default_factory=list)
    pareto_size: int = 0  # distinct feasible non-dominated architectures
    best_accuracy: float | None = None  # best accuracy among feasible trials


@dataclass
class TrialRow:
    """One trial as the exporter and summaries see it (no Optuna types)."""

    number: int
    state: str  # "COMPLETE", "FAIL", "RUNNING", ...
    values: list[float] | None
    feasible: bool
    pareto: bool
    user_attrs: dict[str, Any]
    completed_at: float | None = None  # POSIX time the trial finished

    def metric(self, name: str) -> Any:
        return self.user_attrs.get(name)


# -- storages ------------------------------------------------------------------------------
_JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def describe_storage(storage: str) -> tuple[str, str]:
    """``(kind, canonical)`` for a storage string, without touching it.

    ``kind`` is ``"journal"`` (a path ending in .log/.journal/.jsonl: Optuna's journal file)
    or ``"rdb"`` (a database URL such as ``sqlite:///runs/convnas.db`` or
    ``postgresql://user@host/db``; a bare path ending in .db/.sqlite/.sqlite3 means SQLite).
    Raises ``ValueError`` naming the value and the accepted forms.
    """
    if not isinstance(storage, str) or not storage.strip():
        raise ValueError(f"storage must be a non-empty string, got {storage!r}")
    s = storage.strip()
    if "://" in s:
        scheme = s.split("://", 1)[0]
        if not scheme or not all(c.isalnum() or c in "+_" for c in scheme):
            raise ValueError(f"storage {storage!r} is not a database URL like sqlite:///x.db")
        if scheme.startswith("sqlite") and not s.startswith("sqlite:///"):
            raise ValueError(f"storage {storage!r}: a SQLite URL looks like sqlite:///path/x.db")
        return "rdb", s
    if s.endswith(_JOURNAL_SUFFIXES):
        return "journal", s
    if s.endswith(_SQLITE_SUFFIXES):
        return "rdb", f"sqlite:///{s}"
    raise ValueError(
        f"storage {storage!r} is not a database URL (sqlite:///runs/convnas.db, "
        "postgresql://..., mysql://...), a journal file (*.log, *.journal) or a SQLite file (*.db)"
    )


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        rest = url[len("sqlite:///") :].split("?", 1)[0]
        return Path(rest) if rest and rest != ":memory:" else None
    return None


def storage_file(storage: str) -> Path | None:
    """The local file behind a storage string (SQLite or journal), else None."""
    kind, url = describe_storage(storage)
    return Path(url) if kind == "journal" else _sqlite_path(url)


def open_storage(storage: str, *, create: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``storage`` (see :func:`describe_storage`).

    With ``create`` the parent folder of a local file is created; without it a missing local
    file raises ``ValueError`` (used by read-only commands such as export).
    """
    kind, url = describe_storage(storage)
    path = storage_file(storage)
    if path is not None:
        if not create and not path.is_file():
            raise ValueError(f"storage {storage!r}: file {str(path)!r} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(url)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several workers (and the heartbeat thread) write to one file: wait for the lock.
        engine_kwargs["connect_args"] = {"timeout": 60}
    try:
        rdb = _open_rdb(url, engine_kwargs)
    except Exception as e:  # noqa: BLE001 - driver errors differ per database; one line for users
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot open storage {storage!r}: {first}") from None
    if url.startswith("sqlite"):
        _tune_sqlite(rdb.engine)
    return rdb


def _open_rdb(url: str, engine_kwargs: dict[str, Any], attempts: int = 8) -> Any:
    """``RDBStorage(url)``, retried while another process is setting up the same database.

    Optuna creates the tables and then inserts the schema version rows (``version_info``,
    ``alembic_version``) after checking that they are missing. Two processes that open a new
    database at the same moment -- workers started together, or a reader polling a study that
    is being created -- can both see them missing; the slower one then fails with "table ...
    already exists" (SQLite, MySQL; PostgreSQL says it with a ``ProgrammingError`` or a unique
    violation on its catalog), an ``IntegrityError`` on the version rows, or "database is
    locked". The database is fine: the other process set it up, so opening it again succeeds.
    """
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, OperationalError, ProgrammingError) as e:
            transient = isinstance(e, IntegrityError) or any(
                m in str(e).lower() for m in ("locked", "already exists")
            )
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _tune_sqlite(engine: Any) -> None:
    """Write-ahead logging with ``synchronous=NORMAL`` on every connection.

    A trial writes a few dozen attributes, each its own transaction; with SQLite's default
    rollback journal every commit waits for an fsync (~15 ms each here). In WAL mode with
    NORMAL sync a commit survives a killed process (what resuming relies on); only a power
    loss can drop the last commits. WAL needs a local file system, as SQLite locking does.
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened while creating tables reconnect with the pragmas


def list_studies(storage: str) -> list[str]:
    """Names of the studies in an existing storage (empty when the file does not exist)."""
    path = storage_file(storage)
    if path is not None and not path.is_file():
        return []
    st = open_storage(storage, create=False)
    return [s.study_name for s in st.get_all_studies()]


def study_exists(storage: str, name: str) -> bool:
    return name in list_studies(storage)


def study_settings(storage: str, name: str) -> dict[str, Any] | None:
    """The ``convnas`` settings recorded in an existing study (None if it has none)."""
    path = storage_file(storage)
    if path is not None and not path.is_file():
        return None
    st = open_storage(storage, create=False)
    try:
        sid = st.get_study_id_from_name(name)
    except KeyError:
        return None
    return st.get_study_user_attrs(sid).get("convnas")


# -- helpers ----------------------------------------------------------------------------------
def _process_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell reused pids apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    if start is not None:
        now = _process_start(pid)
        return now is None or now == start
    return True


def _ops_summary(arch: Architecture) -> str:
    counts: dict[str, int] = {}
    for spec in arch.ops.values():
        counts[spec.label] = counts.get(spec.label, 0) + 1
    return ", ".join(
        f"{n}x {lbl}" for lbl, n in sorted(counts.items(), key=lambda t: (-t[1], t[0]))
    )


def _constraint_values(trial: FrozenTrial) -> dict[str, float]:
    return dict(trial.constraints)


def _is_feasible(trial: FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def hypervolume(
    points: Sequence[Sequence[float]],
    directions: Sequence[str],
    reference: Sequence[float],
) -> float:
    """Hypervolume dominated by ``points`` up to ``reference`` (Optuna's WFG implementation).

    ``directions`` are ``"maximize"``/``"minimize"`` per objective; points that do not improve
    on the reference in every objective add nothing.
    """
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    ref = signs * np.asarray(reference, dtype=float)
    pts = [signs * np.asarray(p, dtype=float) for p in points]
    pts = [p for p in pts if np.all(p < ref)]
    if not pts:
        return 0.0
    return float(compute_hypervolume(np.stack(pts), ref))


def _directions(objectives: Sequence[str]) -> list[str]:
    return [OBJECTIVE_DIRECTIONS[o] for o in objectives]


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


class _Heartbeat:
    """Refreshes a trial's heartbeat system attribute from a daemon thread."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int, every_s: float):
        self._storage, self._trial_id, self._every = storage, trial_id, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="convnas-heartbeat")

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._storage.set_trial_system_attr(self._trial_id, _HEARTBEAT_KEY, time.time())
            except Exception:  # noqa: BLE001 - a missed beat must never kill the search
                pass


# -- the engine ----------------------------------------------------------------------------
class OptunaSearch:
    """One study: propose, price, reuse, evaluate on the fidelity ladder, record.

    Args:
        choices: slot path -> choice labels (``SearchSpace.choices``).
        to_architecture: labels -> :class:`Architecture` (``SearchSpace.to_architecture``).
        cost_of_labels: labels -> an object with ``flops``, ``params``, ``inference_params``
            (``CostModel.cost_of_labels``).
        evaluate: ``(arch, epochs) -> Metrics``; trains to ``epochs`` proxy epochs (resuming
            from a cheaper call on the same architecture when it can) and checks the latency
            budget before training.
        objectives: names from ``OBJECTIVES``, in the order of the study's values.
        budgets: :class:`Budgets`.
        ladder: :class:`FidelityLadder` (one rung: no early stopping).
        sampler: ``tpe``, ``nsga2`` or ``random``.
        seed: the sampler's seed; each run derives its own from it and the trial count, so a
            resumed run does not repeat the first run's proposals.
        storage: storage string (see :func:`describe_storage`).
        study_name: the study to create or resume.
        settings: JSON-able dict recorded as the study's ``convnas`` user attribute.
        proxy: JSON-able proxy settings recorded on every trial.
        warm_start: how many budget-fitting random architectures to enqueue when a new study
            has a FLOPs or params budget (see :meth:`feasible_random`).
        heartbeat_s, stale_after_s: see "Interrupted trials" in the module docstring.
    """

    def __init__(
        self,
        *,
        choices: Mapping[str, Sequence[str]],
        to_architecture: Callable[[Mapping[str, str]], Architecture],
        cost_of_labels: Callable[[Mapping[str, str]], Any],
        evaluate: Evaluate,
        objectives: Sequence[str],
        budgets: Budgets,
        ladder: FidelityLadder,
        sampler: str = "tpe",
        seed: int = 0,
        storage: str,
        study_name: str,
        settings: Mapping[str, Any] | None = None,
        proxy: Mapping[str, Any] | None = None,
        heartbeat_s: float = 20.0,
        stale_after_s: float = 300.0,
        warm_start: int = 10,
    ) -> None:
        if not objectives:
            raise ValueError("objectives must name at least one of " + ", ".join(OBJECTIVES))
        bad = [o for o in objectives if o not in OBJECTIVES]
        if bad:
            raise ValueError(f"objective {bad[0]!r} is not one of {', '.join(OBJECTIVES)}")
        if len(set(objectives)) != len(objectives):
            raise ValueError(f"objectives must not repeat, got {list(objectives)}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        self.choices = {p: tuple(c) for p, c in choices.items()}
        self.distributions = {p: CategoricalDistribution(c) for p, c in self.choices.items()}
        self._to_arch, self._cost, self._evaluate = to_architecture, cost_of_labels, evaluate
        self.objectives = tuple(objectives)
        self.directions = _directions(self.objectives)
        self.budgets, self.ladder = budgets, ladder
        self.sampler_name, self.seed = sampler, seed
        self.storage_string, self.study_name = storage, study_name
        self.settings = dict(settings or {})
        self.proxy = dict(proxy or {})
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.warm_start = warm_start
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._start = _process_start(self._pid)
        self.study: optuna.Study | None = None
        self._joined = False

    # -- study --------------------------------------------------------------------------
    def open(self) -> StudyInfo:
        """Create or load the study, fail interrupted trials, and report where it stands."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.storage_string)
        # Creating is atomic in the storage: of several workers started at once, exactly one
        # creates the study (and sets it up); the others get DuplicatedStudyError and join.
        existed = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                study = optuna.create_study(
                    storage=storage, study_name=self.study_name, directions=self.directions
                )
            except optuna.exceptions.DuplicatedStudyError:
                existed = True
                study = optuna.load_study(storage=storage, study_name=self.study_name)
        if existed:
            have = [d.name.lower() for d in study.directions]
            if have != self.directions or study.metric_names not in (
                None,
                [METRIC_NAMES[o] for o in self.objectives],
            ):
                raise ValueError(
                    f"study {self.study_name!r} optimises {study.metric_names or have}, not "
                    f"{[METRIC_NAMES[o] for o in self.objectives]}; pick another --study name"
                )
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([METRIC_NAMES[o] for o in self.objectives])
            study.set_user_attr("convnas", self.settings)
            study.set_user_attr("objectives", list(self.objectives))
            study.set_user_attr("constraint_names", list(self.budgets.names))
            study.set_user_attr("budgets", {n: self.budgets.limit(n) for n in self.budgets.names})
            self._enqueue_warm_start(study)
        self.study = study
        self._joined = existed
        n_interrupted = self.fail_interrupted()
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        return StudyInfo(
            name=self.study_name,
            storage=self.storage_string,
            resumed=existed,
            n_complete=len(complete),
            n_feasible=sum(_is_feasible(t) for t in complete),
            n_failed=sum(t.state == TrialState.FAIL for t in trials),
            n_interrupted_now=n_interrupted,
        )

    def feasible_random(self, rng: random.Random) -> dict[str, str]:
        """A random architecture repaired to fit the FLOPs/params budgets (labels per slot).

        A target cost is drawn uniformly between the cheapest architecture and each budget;
        starting from a uniformly random architecture, random single-slot changes to a
        cheaper choice are made until the targets are met. The cost of a slot choice is
        exact (the cost model is additive over slots), so this takes microseconds.
        """
        paths = list(self.choices)
        base = {p: c[0] for p, c in self.choices.items()}
        base_cost = self._cost(base)
        delta: dict[str, dict[str, tuple[int, int]]] = {}
        for p, options in self.choices.items():
            delta[p] = {}
            for label in options:
                c = self._cost({**base, p: label})
                delta[p][label] = (c.flops - base_cost.flops, c.params - base_cost.params)
        limits = (self.budgets.max_flops, self.budgets.max_params)
        lows = (
            base_cost.flops + sum(min(d[0] for d in delta[p].values()) for p in paths),
            base_cost.params + sum(min(d[1] for d in delta[p].values()) for p in paths),
        )
        targets = [
            None if lim is None else rng.uniform(min(lo, lim), lim) for lim, lo in zip(limits, lows)
        ]
        labels = {p: rng.choice(self.choices[p]) for p in paths}
        for _ in range(20 * len(paths)):
            cost = self._cost(labels)
            totals = (cost.flops, cost.params)
            over = [i for i, t in enumerate(targets) if t is not None and totals[i] > t]
            if not over:
                break
            i = over[0]
            moves = [
                (p, lbl)
                for p in paths
                for lbl in self.choices[p]
                if delta[p][lbl][i] < delta[p][labels[p]][i]
            ]
            if not moves:
                break
            p, lbl = rng.choice(moves)
            labels[p] = lbl
        return labels

    def _enqueue_warm_start(self, study: optuna.Study) -> None:
        """Enqueue ``warm_start`` budget-fitting random architectures in a new study.

        Uniformly random architectures rarely meet a tight budget (ResNet-50's are 2.5 to 3.7
        GFLOPs at 224², its cheapest 1.07 G), so without these a sampler would see hardly
        any feasible trial in its random start-up phase. They are seeded by ``seed``.
        """
        if self.warm_start <= 0 or (
            self.budgets.max_flops is None and self.budgets.max_params is None
        ):
            return
        rng = random.Random(self.seed)
        for _ in range(self.warm_start):
            study.enqueue_trial(
                self.feasible_random(rng),
                user_attrs={"proposed_by": "warm start (random architecture fitted to budget)"},
                skip_if_exists=True,
            )

    def fail_interrupted(self) -> int:
        """Mark running trials whose worker is gone as FAIL; return how many."""
        assert self.study is not None
        storage = self.study._storage
        now = time.time()
        n = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.system_attrs.get(_OWNER_KEY) or {}
            beat = t.system_attrs.get(_HEARTBEAT_KEY)
            if (
                owner.get("host") == self._host
                and owner.get("pid") == self._pid
                and (owner.get("start") == self._start)
            ):
                continue  # our own (cannot happen between trials, but be safe)
            reason = None
            if owner.get("host") == self._host and isinstance(owner.get("pid"), int):
                if not _pid_alive(owner["pid"], owner.get("start")):
                    reason = (
                        f"{INTERRUPTED_PREFIX}: worker process {owner['pid']} on {self._host} "
                        "stopped during the trial (killed or crashed)"
                    )
            elif isinstance(beat, (int, float)) and now - beat > self.stale_after_s:
                reason = (
                    f"{INTERRUPTED_PREFIX}: no heartbeat from worker "
                    f"{owner.get('host', '?')}:{owner.get('pid', '?')} for {now - beat:.0f} s"
                )
            elif beat is None and t.datetime_start is not None:
                age = now - t.datetime_start.timestamp()
                if age > self.stale_after_s and not owner:
                    reason = f"{INTERRUPTED_PREFIX}: running for {age:.0f} s without an owner"
            if reason is None:
                continue
            try:
                storage.set_trial_user_attr(t._trial_id, "failure", reason)
                storage.set_trial_user_attr(t._trial_id, "status", "failed: " + reason)
                if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                    n += 1
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another worker got there first
        return n

    # -- the loop -----------------------------------------------------------------------
    def run(
        self,
        n_trials: int,
        *,
        timeout_s: float | None = None,
        max_failures: int | None = None,
        callback: Callable[[TrialOutcome, RunSummary], None] | None = None,
    ) -> RunSummary:
        """Run trials until the study has ``n_trials`` COMPLETE trials (feasible or not).

        Stops early when ``timeout_s`` has passed (no new trial starts; the running one
        finishes) or after ``max_failures`` failed trials in a row (default 10: a setup where
        everything fails, such as unreadable data, should not spin forever; occasional
        failures never stop a search). ``callback(outcome, summary)`` is called after every
        trial.
        Ctrl-C marks the running trial FAIL ("interrupted by the user") and re-raises.
        """
        if self.study is None:
            self.open()
        assert self.study is not None
        study = self.study
        max_failures = 10 if max_failures is None else max_failures
        t0 = time.monotonic()
        summary = RunSummary(0, 0, 0, 0, "", 0.0)
        n_before = len(study.get_trials(deepcopy=False))
        # A fresh seed per run, derived from the seed and the history, so a resumed run does
        # not replay the first run's proposals (which would all be duplicates). A process
        # that joins an existing study also mixes in its process id: several workers started
        # with the same command at once must not propose the same sequence.
        salt = os.getpid() * 7919 if self._joined else 0
        study.sampler = make_sampler(self.sampler_name, self.seed * 1_000_003 + n_before + salt)
        failures = 0
        last_check = time.monotonic()
        self.refresh_counts(summary)
        while True:
            if summary.n_complete >= n_trials:
                summary.stop_reason = f"reached {n_trials} complete trials"
                break
            if timeout_s is not None and time.monotonic() - t0 >= timeout_s:
                summary.stop_reason = f"timeout after {time.monotonic() - t0:.0f} s"
                break
            if failures >= max_failures:
                summary.stop_reason = f"{failures} trials failed in a row"
                break
            if time.monotonic() - last_check > min(60.0, self.stale_after_s / 2):
                self.fail_interrupted()  # other workers' dead trials; ours were checked at open
                last_check = time.monotonic()
            outcome = self._one_trial()
            summary.n_run += 1
            failures = failures + 1 if outcome.status == "failed" else 0
            summary.outcomes.append(outcome)
            summary.seconds = time.monotonic() - t0
            self.refresh_counts(summary)
            if callback is not None:
                callback(outcome, summary)
        summary.seconds = time.monotonic() - t0
        return summary

    def refresh_counts(self, summary: RunSummary) -> None:
        """Counts, Pareto size and best feasible accuracy from one read of the study."""
        assert self.study is not None
        trials = self.study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        feasible = [t for t in complete if _is_feasible(t)]
        summary.n_complete = len(complete)
        summary.n_feasible = len(feasible)
        summary.n_failed = sum(t.state == TrialState.FAIL for t in trials)
        accs = [t.user_attrs.get("accuracy") for t in feasible]
        accs = [a for a in accs if a is not None]
        summary.best_accuracy = max(accs) if accs else None
        signs = [1.0 if d == "maximize" else -1.0 for d in self.directions]
        pts = {}
        for t in feasible:
            pts.setdefault(t.user_attrs.get("arch_id"), [s * v for s, v in zip(signs, t.values)])
        vals = list(pts.values())
        summary.pareto_size = sum(
            not any(all(o >= p for o, p in zip(other, point)) and other != point for other in vals)
            for point in vals
        )

    def _one_trial(self) -> TrialOutcome:
        assert self.study is not None
        study = self.study
        t_start = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = study.ask(self.distributions)
        storage, tid = study._storage, trial._trial_id
        generation_of = getattr(study.sampler, "get_trial_generation", None)
        if generation_of is not None:
            frozen = storage.get_trial(tid)
            if "fixed_params" in frozen.system_attrs:
                # NSGA-II gives enqueued (warm-start) trials no generation, which would leave
                # them out of its populations; its public get_trial_generation assigns one.
                generation_of(study, frozen)
        storage.set_trial_system_attr(
            tid, _OWNER_KEY, {"host": self._host, "pid": self._pid, "start": self._start}
        )
        storage.set_trial_system_attr(tid, _HEARTBEAT_KEY, time.time())
        try:
            with _Heartbeat(storage, tid, self.heartbeat_s):
                return self._evaluate_trial(trial, t_start)
        except KeyboardInterrupt:
            self._fail(trial, "interrupted by the user (Ctrl-C)")
            raise
        except Exception as e:  # noqa: BLE001 - an evaluator crash is a failed trial
            text = str(e).strip().splitlines()
            reason = f"{type(e).__name__}: {text[0] if text else '(no message)'}"
            self._fail(trial, reason)
            return TrialOutcome(
                trial.number,
                "failed",
                trial.user_attrs.get("arch_id", "?"),
                None,
                0,
                0,
                None,
                0,
                time.monotonic() - t_start,
                reason,
            )

    def _fail(self, trial: optuna.Trial, reason: str) -> None:
        assert self.study is not None
        trial.set_user_attr("failure", reason)
        trial.set_user_attr("status", f"failed: {reason}")
        self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)

    def _set_constraints(self, trial: optuna.Trial, violations: Mapping[str, float]) -> None:
        names = self.budgets.names
        if not names:
            return
        values = [
            float(violations.get(n, 0.0)) if violations.get(n, 0.0) > 0 else self._slack(trial, n)
            for n in names
        ]
        for n, v in zip(names, values):
            trial.set_constraint(n, v)
        # optuna-dashboard 0.21 reads only the legacy list: write it too.
        assert self.study is not None
        self.study._storage.set_trial_system_attr(trial._trial_id, _CONSTRAINTS_LEGACY_KEY, values)

    def _slack(self, trial: optuna.Trial, name: str) -> float:
        """``value / budget - 1`` (<= 0) for a satisfied budget; 0 when not measured."""
        key = {"flops": "flops", "params": "params", "latency": "latency_ms"}[name]
        value = trial.user_attrs.get(key)
        limit = self.budgets.limit(name)
        if value is None or limit is None:
            return 0.0
        return min(0.0, float(value) / float(limit) - 1.0)

    def _values(self, accuracy: float, flops: int, params: int, latency: float | None) -> list:
        by_name = {
            "accuracy": float(accuracy),
            "flops": float(flops),
            "params": float(params),
            "latency": float("inf") if latency is None else float(latency),
        }
        return [by_name[o] for o in self.objectives]

    def _find_earlier(self, arch_id: str, number: int) -> FrozenTrial | None:
        assert self.study is not None
        for t in self.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)
        ):
            if t.number == number or t.user_attrs.get("arch_id") != arch_id:
                continue
            if t.state == TrialState.FAIL and str(t.user_attrs.get("failure", "")).startswith(
                INTERRUPTED_PREFIX
            ):
                continue  # an interruption says nothing about the architecture
            if t.state == TrialState.FAIL and "interrupted by the user" in str(
                t.user_attrs.get("failure", "")
            ):
                continue
            return t
        return None

    def _wait_for_running(
        self, arch_id: str, number: int, poll_s: float = 0.5
    ) -> FrozenTrial | None:
        """Wait while an earlier RUNNING trial (another worker's) evaluates ``arch_id``.

        Only lower-numbered trials are waited for, so two workers never wait for each other.
        A worker that dies is noticed by :meth:`fail_interrupted` (its trial becomes FAIL as
        interrupted, which is not reused), and then this trial evaluates the architecture.
        """
        assert self.study is not None
        while True:
            running = [
                t
                for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if t.number < number and t.user_attrs.get("arch_id") == arch_id
            ]
            if not running:
                return self._find_earlier(arch_id, number)
            time.sleep(poll_s)
            self.fail_interrupted()

    def _evaluate_trial(self, trial: optuna.Trial, t_start: float) -> TrialOutcome:
        assert self.study is not None
        study = self.study
        labels = {p: trial.params[p] for p in self.choices}
        arch = self._to_arch(labels)
        cost = self._cost(labels)
        arch_id = arch.arch_id
        base = {
            "arch_id": arch_id,
            "arch": json.dumps(arch.to_dict(), sort_keys=True, separators=(",", ":")),
            "ops": _ops_summary(arch),
            "flops": int(cost.flops),
            "params": int(cost.params),
            "inference_params": int(cost.inference_params),
            "proxy": self.proxy,
        }
        for k, v in base.items():
            trial.set_user_attr(k, v)

        def outcome(status: str, acc: float | None, lat: float | None, fid: int, msg: str):
            return TrialOutcome(
                trial.number,
                status,
                arch_id,
                acc,
                int(cost.flops),
                int(cost.params),
                lat,
                fid,
                time.monotonic() - t_start,
                msg,
            )

        # 1. the same architecture earlier in the study: reuse its result (when another
        # worker is evaluating it right now, wait for that result instead of training twice)
        earlier = self._find_earlier(arch_id, trial.number)
        if earlier is None:
            earlier = self._wait_for_running(arch_id, trial.number)
        if earlier is not None:
            return self._reuse(trial, earlier, outcome)

        # 2. cheap metrics first: FLOPs and params from the cost model
        over = {}
        if self.budgets.max_flops is not None and cost.flops > self.budgets.max_flops:
            over["flops"] = cost.flops / self.budgets.max_flops - 1.0
        if self.budgets.max_params is not None and cost.params > self.budgets.max_params:
            over["params"] = cost.params / self.budgets.max_params - 1.0
        if over:
            msg = (
                "over budget: "
                + ", ".join(f"{n} {v:+.1%}" for n, v in over.items())
                + " (not built)"
            )
            return self._infeasible(trial, over, None, None, msg, outcome)

        # 3. evaluate on the fidelity ladder
        rung_acc: dict[str, float] = {}
        metrics: Metrics | None = None
        decision = ""
        train_time = 0.0
        for k, epochs in enumerate(self.ladder.rungs):
            metrics = self._evaluate(arch, epochs)
            if metrics.arch_id != arch_id:
                raise RuntimeError(
                    f"the evaluator returned arch_id {metrics.arch_id} for {arch_id}"
                )
            train_time = max(train_time, float(metrics.train_time_s or 0.0))
            if metrics.latency_ms is not None:
                trial.set_user_attr("latency_ms", float(metrics.latency_ms))
                trial.set_user_attr("latency_iqr_ms", metrics.latency_iqr_ms)
                trial.set_user_attr("latency_source", metrics.latency_source)
            if metrics.failure is not None:
                self._record_metrics(trial, metrics, rung_acc, train_time)
                self._fail(trial, metrics.failure)
                return outcome(
                    "failed", None, metrics.latency_ms, metrics.fidelity, metrics.failure
                )
            if not metrics.feasible:
                msg = (
                    "over budget: "
                    + ", ".join(f"{n} {v:+.1%}" for n, v in metrics.violations.items())
                    + " (not trained)"
                )
                return self._infeasible(trial, metrics.violations, metrics, rung_acc, msg, outcome)
            if metrics.accuracy is None or not math.isfinite(metrics.accuracy):
                reason = f"the evaluator returned no accuracy at {epochs} epochs"
                self._fail(trial, reason)
                return outcome("failed", None, metrics.latency_ms, epochs, reason)
            rung_acc[str(epochs)] = float(metrics.accuracy)
            trial.set_user_attr("rung_accuracy", dict(rung_acc))
            if k == len(self.ladder.rungs) - 1:
                break
            peers = self._peer_accuracies(trial.number, epochs, cost, metrics.latency_ms)
            go_on, decision = self.ladder.promote(float(metrics.accuracy), peers)
            trial.set_user_attr(f"decision_at_{epochs}", decision)
            if not go_on:
                break
        assert metrics is not None and metrics.accuracy is not None
        if "latency" in self.objectives and metrics.latency_ms is None:
            reason = "the evaluator measured no latency, but latency is an objective"
            self._fail(trial, reason)
            return outcome("failed", None, None, metrics.fidelity, reason)
        self._record_metrics(trial, metrics, rung_acc, train_time)
        self._set_constraints(trial, {})
        stopped = metrics.fidelity < self.ladder.full
        status = "stopped" if stopped else "feasible"
        msg = (
            f"stopped at {metrics.fidelity}/{self.ladder.full} epochs: {decision}"
            if stopped
            else f"trained {metrics.fidelity} epoch{'' if metrics.fidelity == 1 else 's'}"
        )
        trial.set_user_attr("feasible", True)
        trial.set_user_attr("status", msg)
        study.tell(
            trial, self._values(metrics.accuracy, cost.flops, cost.params, metrics.latency_ms)
        )
        return outcome(status, metrics.accuracy, metrics.latency_ms, metrics.fidelity, msg)

    def _record_metrics(
        self, trial: optuna.Trial, m: Metrics, rung_acc: Mapping[str, float], train_time: float
    ) -> None:
        trial.set_user_attr("accuracy", m.accuracy)
        trial.set_user_attr("fidelity", int(m.fidelity))
        trial.set_user_attr("train_time_s", round(train_time, 3))
        trial.set_user_attr("rung_accuracy", dict(rung_acc))
        if m.zero_cost is not None:
            trial.set_user_attr("zero_cost", m.zero_cost)
        if m.extra:
            trial.set_user_attr("evaluator_extra", m.extra)

    def _infeasible(
        self,
        trial: optuna.Trial,
        violations: Mapping[str, float],
        metrics: Metrics | None,
        rung_acc: Mapping[str, float] | None,
        msg: str,
        outcome: Callable[..., TrialOutcome],
    ) -> TrialOutcome:
        assert self.study is not None
        lat = metrics.latency_ms if metrics is not None else None
        if metrics is not None:
            self._record_metrics(trial, metrics, rung_acc or {}, float(metrics.train_time_s))
        else:
            trial.set_user_attr("fidelity", 0)
            trial.set_user_attr("train_time_s", 0.0)
        trial.set_user_attr("feasible", False)
        trial.set_user_attr("violations", {k: round(float(v), 6) for k, v in violations.items()})
        trial.set_user_attr("status", msg)
        self._set_constraints(trial, violations)
        cost_flops, cost_params = trial.user_attrs["flops"], trial.user_attrs["params"]
        # Accuracy 0: never trained; latency inf when never built. Samplers and
        # study.best_trials skip infeasible trials by their constraints anyway.
        self.study.tell(trial, self._values(0.0, cost_flops, cost_params, lat))
        return outcome("infeasible", None, lat, 0, msg)

    def _reuse(
        self, trial: optuna.Trial, earlier: FrozenTrial, outcome: Callable[..., TrialOutcome]
    ) -> TrialOutcome:
        assert self.study is not None
        root = earlier.user_attrs.get("duplicate_of", earlier.number)
        skip = {"duplicate_of", "status"}
        for k, v in earlier.user_attrs.items():
            if k not in skip and k not in trial.user_attrs:
                trial.set_user_attr(k, v)
        trial.set_user_attr("duplicate_of", root)
        trial.set_user_attr("train_time_s", 0.0)
        ua = earlier.user_attrs
        if earlier.state == TrialState.FAIL:
            reason = f"same architecture as trial {root}, which failed: {ua.get('failure')}"
            self._fail(trial, reason)
            return outcome("failed", None, None, 0, reason)
        names = self.budgets.names
        cons = _constraint_values(earlier)
        if names:
            values = [float(cons.get(n, 0.0)) for n in names]
            for n, v in zip(names, values):
                trial.set_constraint(n, v)
            self.study._storage.set_trial_system_attr(
                trial._trial_id, _CONSTRAINTS_LEGACY_KEY, values
            )
        msg = f"same architecture as trial {root}: result reused"
        trial.set_user_attr("status", msg)
        self.study.tell(trial, list(earlier.values))
        acc = ua.get("accuracy") if ua.get("feasible", True) else None
        return outcome("duplicate", acc, ua.get("latency_ms"), int(ua.get("fidelity", 0)), msg)

    def _peer_accuracies(
        self, number: int, epochs: int, cost: Any, latency: float | None
    ) -> list[float]:
        """Accuracies at ``epochs`` of the other trials that cost no more than this one."""
        assert self.study is not None
        tol = 1.0 + self.ladder.cost_tolerance
        mine = {"flops": cost.flops, "params": cost.params, "latency": latency}
        basis = [o for o in ("flops", "params", "latency") if o in self.objectives]
        if self.ladder.cost_basis == "primary":
            basis = basis[:1]
        key = str(epochs)
        out = []
        for t in self.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)
        ):
            ua = t.user_attrs
            if t.number == number or "duplicate_of" in ua:
                continue
            acc = (ua.get("rung_accuracy") or {}).get(key)
            if acc is None:
                continue
            theirs = {
                "flops": ua.get("flops"),
                "params": ua.get("params"),
                "latency": ua.get("latency_ms"),
            }
            if all(
                mine[o] is None or (theirs[o] is not None and theirs[o] <= mine[o] * tol)
                for o in basis
            ):
                out.append(float(acc))
        return out

    # -- results ------------------------------------------------------------------------
    def rows(self) -> list[TrialRow]:
        assert self.study is not None
        return _rows_of(self.study)


def _rows_of(study: optuna.Study) -> list[TrialRow]:
    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = {t.number for t in study.best_trials}
    rows = []
    for t in trials:
        complete = t.state == TrialState.COMPLETE
        rows.append(
            TrialRow(
                number=t.number,
                state=t.state.name,
                values=list(t.values) if t.values is not None else None,
                feasible=complete and _is_feasible(t),
                pareto=t.number in best and complete and _is_feasible(t),
                user_attrs=dict(t.user_attrs),
                completed_at=(
                    t.datetime_complete.timestamp() if t.datetime_complete is not None else None
                ),
            )
        )
    return rows


def load_rows(storage: str, study_name: str) -> tuple[list[TrialRow], dict[str, Any]]:
    """All trials of a stored study as :class:`TrialRow` and the study's description.

    The description holds ``objectives``, ``directions``, ``metric_names``, ``budgets``,
    ``constraint_names`` and the ``convnas`` settings. Raises ``ValueError`` when the storage
    or study does not exist (naming the studies it holds).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = list_studies(storage)
    if study_name not in names:
        shown = ", ".join(repr(n) for n in names) or "none"
        raise ValueError(f"study {study_name!r} is not in storage {storage!r} (studies: {shown})")
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage, create=False))
    ua = study.user_attrs
    objectives = ua.get("objectives") or [
        {v: k for k, v in METRIC_NAMES.items()}.get(m, m) for m in (study.metric_names or [])
    ]
    info = {
        "study": study_name,
        "storage": storage,
        "objectives": objectives,
        "directions": [d.name.lower() for d in study.directions],
        "metric_names": study.metric_names,
        "budgets": ua.get("budgets", {}),
        "constraint_names": ua.get("constraint_names", []),
        "convnas": ua.get("convnas", {}),
    }
    return _rows_of(study), info
