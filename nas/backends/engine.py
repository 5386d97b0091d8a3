"""The Optuna search engine: one study driven with the ask-and-tell interface.

:class:`OptunaSearch` runs the loop: it creates or joins the study (atomically: of several
workers started at once, exactly one creates it), fails trials whose worker died
(:mod:`nas.backends.heartbeat`), seeds a new study with budget-fitting architectures
(:mod:`nas.backends.warm_start`), then asks the sampler for an architecture, prices it,
evaluates it (:mod:`nas.backends.trial`: reuse, fidelity ladder, record) and reports each
outcome, until the study holds the requested number of *evaluated* trials.

**What ``--trials`` counts.** A proposal that breaks a FLOPs or params budget is told to the
study as infeasible (so the samplers learn the budget and the dashboard shows it) and marked
``rejected``; it is not built and does not count: the loop asks again. Counts are read from
the storage, so a resumed run and several workers (processes or Ray workers on one study)
agree on them. With ``repair`` (the default) a rejected proposal is enqueued changed to fit
(:class:`~nas.backends.warm_start.BudgetRepair`), so it is followed by at most one more
proposal; without it, the sampler proposes again until one fits. After ``max_rejections``
rejected proposals in a row a worker stops, naming the budget and the range of the space (a
sampler that cannot find the feasible region should not spin forever).

The space is flat: one ``CategoricalDistribution`` per slot whose choices are readable labels
(``conv``, ``scconv(a=0.5,r=2,g=2)``, ``oct(a=0.25)``, ...), passed to ``study.ask`` as fixed
distributions, so TPE and NSGA-II model every choice. Objective values carry metric names
(``study.set_metric_names``); the study's user attributes hold the settings, objectives,
budgets and constraint names.

This is the top of :mod:`nas.backends`' Optuna side: it imports optuna, ``evaluators.metrics``,
``search_spaces``, :mod:`nas.budgets`, :mod:`nas.halving`, :mod:`nas.records`,
:mod:`nas.units` and the other
:mod:`nas.backends` modules; it must not import :mod:`nas.search` or anything else that
drives it.
"""

from __future__ import annotations

import os
import random
import socket
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from evaluators.metrics import OBJECTIVE_DIRECTIONS, OBJECTIVES
from nas.backends.constraints import is_feasible, is_rejected
from nas.backends.heartbeat import (
    HEARTBEAT_KEY,
    OWNER_KEY,
    Heartbeat,
    fail_interrupted,
    fail_orphans,
    owner_record,
    process_start,
)
from nas.backends.optuna_storage import open_storage
from nas.backends.results import metric_names, record_finetune, record_rerank, rows_of
from nas.backends.samplers import SAMPLERS, make_sampler
from nas.backends.trial import Evaluate, TrialRunner, fail_trial
from nas.backends.warm_start import BudgetRepair, enqueue_warm_start, feasible_random
from nas.budgets import Budgets
from nas.halving import FidelityLadder
from nas.records import RunSummary, StudyInfo, TrialOutcome, TrialRow
from nas.units import format_count, format_flops
from search_spaces.arch import Architecture

__all__ = ["OptunaSearch"]


def _directions(objectives: Sequence[str]) -> list[str]:
    return [OBJECTIVE_DIRECTIONS[o] for o in objectives]


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
        storage: storage string (see :func:`nas.storage.describe_storage`).
        study_name: the study to create or resume.
        settings: JSON-able dict recorded as the study's ``convnas`` user attribute.
        proxy: JSON-able proxy settings recorded on every trial.
        warm_start: how many budget-fitting architectures to enqueue when a new study has a
            FLOPs or params budget: the uniform networks that fit first, then random ones
            (see :func:`~nas.backends.warm_start.enqueue_warm_start`).
        heartbeat_s, stale_after_s: see :mod:`nas.backends.heartbeat`.
        max_rejections: rejected proposals (over a FLOPs/params budget) in a row after which
            :meth:`run` stops.
        cost_range: the space's achievable FLOPs/params (``min_flops``, ``max_flops``,
            ``min_params``, ``max_params``: ``CostModel.range``), named when it stops so.
        repair: after a rejected proposal, enqueue it repaired to fit the budgets
            (:class:`BudgetRepair`: random single-slot changes to cheaper choices), so the
            next trial is the sampler's proposal made to fit rather than a fresh guess.
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
        max_rejections: int = 200,
        cost_range: Any = None,
        repair: bool = True,
    ) -> None:
        if not objectives:
            raise ValueError("objectives must name at least one of " + ", ".join(OBJECTIVES))
        bad = [o for o in objectives if o not in OBJECTIVES]
        if bad:
            raise ValueError(f"objective {bad[0]!r} is not one of {', '.join(OBJECTIVES)}")
        if len(set(objectives)) != len(objectives):
            raise ValueError(f"objectives must not repeat, got {list(objectives)}")
        if isinstance(max_rejections, bool) or not isinstance(max_rejections, int):
            raise ValueError(f"max_rejections must be an integer >= 1, got {max_rejections!r}")
        if max_rejections < 1:
            raise ValueError(f"max_rejections must be an integer >= 1, got {max_rejections!r}")
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
        self.max_rejections, self.cost_range = max_rejections, cost_range
        self.repair = bool(repair)
        self._repair: BudgetRepair | None = None
        self._repair_rng = random.Random(seed)
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._start = process_start(self._pid)
        self.study: optuna.Study | None = None
        self._joined = False
        self._trials: TrialRunner | None = None

    # -- study --------------------------------------------------------------------------
    def open(self) -> StudyInfo:
        """Create or load the study, fail interrupted trials, and report where it stands."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.storage_string)
        # Creating is atomic in the storage: of several workers started at once, exactly one
        # creates the study (and sets it up); the others get DuplicatedStudyError and join.
        existed = False
        warm_uniform: list[str] = []
        warm_random = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                study = optuna.create_study(
                    storage=storage, study_name=self.study_name, directions=self.directions
                )
            except optuna.exceptions.DuplicatedStudyError:
                existed = True
                study = optuna.load_study(storage=storage, study_name=self.study_name)
        names = metric_names(self.objectives, (self.settings or {}).get("proxy_score"))
        if existed:
            have = [d.name.lower() for d in study.directions]
            if have != self.directions or study.metric_names not in (None, names):
                raise ValueError(
                    f"study {self.study_name!r} optimises {study.metric_names or have}, not "
                    f"{names}; pick another --study name"
                )
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(names)
            study.set_user_attr("convnas", self.settings)
            study.set_user_attr("objectives", list(self.objectives))
            study.set_user_attr("constraint_names", list(self.budgets.names))
            study.set_user_attr("budgets", {n: self.budgets.limit(n) for n in self.budgets.names})
            warm_uniform, warm_random = enqueue_warm_start(
                study,
                self.warm_start,
                seed=self.seed,
                choices=self.choices,
                cost_of_labels=self._cost,
                budgets=self.budgets,
            )
        self.study = study
        self._joined = existed
        self._trials = TrialRunner(
            study=study,
            choices=self.choices,
            to_architecture=self._to_arch,
            cost_of_labels=self._cost,
            evaluate=self._evaluate,
            objectives=self.objectives,
            budgets=self.budgets,
            ladder=self.ladder,
            proxy=self.proxy,
            fail_interrupted=self.fail_interrupted,
        )
        n_interrupted = self.fail_interrupted()
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        evaluated = [t for t in complete if not is_rejected(t)]
        return StudyInfo(
            name=self.study_name,
            storage=self.storage_string,
            resumed=existed,
            n_complete=len(evaluated),
            n_feasible=sum(is_feasible(t) for t in evaluated),
            n_failed=sum(t.state == TrialState.FAIL for t in trials),
            n_interrupted_now=n_interrupted,
            n_rejected=len(complete) - len(evaluated),
            warm_uniform=tuple(warm_uniform),
            warm_random=warm_random,
        )

    def feasible_random(self, rng: random.Random) -> dict[str, str]:
        """A random architecture repaired to fit the FLOPs/params budgets (labels per slot).

        A target cost is drawn uniformly between the cheapest architecture and each budget;
        starting from a uniformly random architecture, random single-slot changes to a
        cheaper choice are made until the targets are met. The cost of a slot choice is
        exact (the cost model is additive over slots), so this takes microseconds.
        """
        return feasible_random(self.choices, self._cost, self.budgets, rng, self._repairer())

    def _repairer(self) -> BudgetRepair:
        if self._repair is None:
            self._repair = BudgetRepair(self.choices, self._cost)
        return self._repair

    def _enqueue_repaired(self, trial: optuna.Trial) -> None:
        """Enqueue ``trial``'s rejected proposal changed to fit the budgets (unless known)."""
        assert self.study is not None
        labels = self._repairer().fit(
            {p: trial.params[p] for p in self.choices},
            (self.budgets.max_flops, self.budgets.max_params),
            self._repair_rng,
        )
        self.study.enqueue_trial(
            labels,
            user_attrs={"proposed_by": f"repair of rejected trial {trial.number}"},
            skip_if_exists=True,
        )

    def fail_interrupted(self) -> int:
        """Mark running trials whose worker is gone as FAIL; return how many."""
        assert self.study is not None
        return fail_interrupted(
            self.study,
            host=self._host,
            pid=self._pid,
            start=self._start,
            stale_after_s=self.stale_after_s,
        )

    def fail_orphans(self, reasons: Mapping[str, str]) -> int:
        """Fail the running trials of workers known to be gone (see :mod:`.heartbeat`)."""
        assert self.study is not None
        return fail_orphans(self.study, reasons)

    # -- the loop -----------------------------------------------------------------------
    def run(
        self,
        n_trials: int,
        *,
        timeout_s: float | None = None,
        max_failures: int | None = None,
        callback: Callable[[TrialOutcome, RunSummary], None] | None = None,
    ) -> RunSummary:
        """Run trials until the study has ``n_trials`` evaluated COMPLETE trials.

        Evaluated: feasible or not, but not rejected on price (see the module docstring);
        rejected proposals are asked again. Stops early when ``timeout_s`` has passed (no new
        trial starts; the running one finishes), after ``max_failures`` failed trials in a row
        (default 10: a setup where everything fails, such as unreadable data, should not spin
        forever; occasional failures never stop a search), or after ``max_rejections``
        rejected proposals in a row (``summary.rejections_exhausted``).
        ``callback(outcome, summary)`` is called after every trial, rejected ones included
        (their counts are this process's own until the next evaluated trial re-reads the
        storage).
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
        run_seed = self.seed * 1_000_003 + n_before + salt
        study.sampler = make_sampler(self.sampler_name, run_seed)
        self._repair_rng = random.Random(run_seed)
        failures = rejections = 0
        last_check = last_refresh = time.monotonic()
        self.refresh_counts(summary)
        while True:
            if summary.n_complete >= n_trials:
                summary.stop_reason = f"reached {n_trials} evaluated trials"
                break
            if rejections >= self.max_rejections:
                summary.stop_reason = self.exhausted_reason(rejections)
                summary.rejections_exhausted = True
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
            summary.seconds = time.monotonic() - t0
            if outcome.status == "rejected":
                # Rejections are cheap and many: count them here, re-read the storage only
                # now and then (other workers' trials) and after every evaluated trial.
                rejections += 1
                summary.n_rejected += 1
                summary.n_rejected_run += 1
                if time.monotonic() - last_refresh > 5.0:
                    self.refresh_counts(summary)
                    last_refresh = time.monotonic()
            else:
                rejections = 0
                failures = failures + 1 if outcome.status == "failed" else 0
                summary.outcomes.append(outcome)
                self.refresh_counts(summary)
                last_refresh = time.monotonic()
            if callback is not None:
                callback(outcome, summary)
        summary.seconds = time.monotonic() - t0
        return summary

    def exhausted_reason(self, rejections: int) -> str:
        """Why a run stops after ``rejections`` rejected proposals in a row: budget and range."""
        b, r = self.budgets, self.cost_range
        parts = []
        for name, limit, fmt, lo, hi in (
            ("FLOPs", b.max_flops, format_flops, "min_flops", "max_flops"),
            ("params", b.max_params, format_count, "min_params", "max_params"),
        ):
            if limit is None:
                continue
            span = (
                f" (this space spans {fmt(getattr(r, lo))} to {fmt(getattr(r, hi))})"
                if r is not None
                else ""
            )
            parts.append(f"{name} <= {fmt(limit)}{span}")
        fixes = (
            "raise the budget or --max-rejections"
            if self.repair
            else ("raise the budget, leave out --no-repair, or raise --max-rejections")
        )
        return (
            f"{rejections} proposals in a row broke the budget {' and '.join(parts)}: the "
            f"{self.sampler_name} sampler finds too few architectures that fit; {fixes}"
        )

    def refresh_counts(self, summary: RunSummary) -> None:
        """Counts, Pareto size and best feasible accuracy from one read of the study."""
        assert self.study is not None
        trials = self.study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        complete = [t for t in done if not is_rejected(t)]
        feasible = [t for t in complete if is_feasible(t)]
        summary.n_rejected = len(done) - len(complete)
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
        assert self._trials is not None
        try:
            # Priced first: a rejected proposal needs no owner and no heartbeat (microseconds).
            rejected = self._trials.reject_over_budget(trial, t_start)
            if rejected is not None:
                if self.repair:
                    self._enqueue_repaired(trial)
                return rejected
            storage.set_trial_system_attr(
                tid, OWNER_KEY, owner_record(self._host, self._pid, self._start)
            )
            storage.set_trial_system_attr(tid, HEARTBEAT_KEY, time.time())
            with Heartbeat(storage, tid, self.heartbeat_s):
                return self._trials.evaluate(trial, t_start)
        except KeyboardInterrupt:
            fail_trial(study, trial, "interrupted by the user (Ctrl-C)")
            raise
        except Exception as e:  # noqa: BLE001 - an evaluator crash is a failed trial
            text = str(e).strip().splitlines()
            reason = f"{type(e).__name__}: {text[0] if text else '(no message)'}"
            fail_trial(study, trial, reason)
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

    # -- results ------------------------------------------------------------------------
    def rows(self) -> list[TrialRow]:
        assert self.study is not None
        return rows_of(self.study)

    def record_finetune(self, number: int, record: dict[str, Any]) -> None:
        """Store trial ``number``'s ``--supernet-finetune`` record (see :mod:`nas.finetune`)."""
        assert self.study is not None
        record_finetune(self.study, number, record)

    def record_rerank(self, number: int, record: dict[str, Any]) -> None:
        """Store trial ``number``'s ``--rerank`` record (see :mod:`nas.rerank`)."""
        assert self.study is not None
        record_rerank(self.study, number, record)
