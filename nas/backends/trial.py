"""One trial: price the proposal, reuse an earlier result, evaluate on the ladder, record.

For the architecture a trial proposes:

0. **Price** (:meth:`TrialRunner.reject_over_budget`, called first). FLOPs and parameters
   come from the analytic cost model in microseconds. A proposal over ``max_flops`` or
   ``max_params`` is *rejected*: it is told COMPLETE with accuracy objective 0 and its real costs
   (latency ``inf``: it was never built), with its constraint values set
   (:mod:`nas.backends.constraints`), so samplers learn the budget; it is marked ``rejected``
   and is not one of the evaluated trials that ``--trials`` counts.
1. **Reuse.** The same architecture (same ``arch_id``) is never evaluated twice in a study
   (:mod:`nas.backends.reuse`).
3. **Evaluate on a fidelity ladder.** The evaluator is called with increasing proxy epochs
   (the *rungs*, e.g. 1 then 2); between rungs the successive-halving rule of
   :mod:`nas.halving` may stop a candidate. The evaluator measures latency before it trains,
   so a candidate over ``max_latency_ms`` is infeasible without training.
4. **Record.** Objective values, constraints, and user attributes with everything a
   dashboard user needs (architecture JSON and id, FLOPs, params, latency with spread, train
   time, proxy settings, fidelity reached, validation top-1 (``accuracy``) and the accuracy
   objective's value (``score``: top-1 or ``exp(-val loss)``, see ``--proxy-score``), both
   per rung too (``rung_accuracy``, ``rung_score``), failure reason). A failed
   evaluation (non-finite loss, out of memory, exception) is FAIL with its reason in
   ``failure``; the search goes on.

Imports optuna, ``evaluators.metrics`` and ``search_spaces``, :mod:`nas.budgets`,
:mod:`nas.halving`, :mod:`nas.records` and the lower :mod:`nas.backends` modules; must not
import the engine (:mod:`nas.backends.engine`, which runs it) or anything above it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from evaluators.metrics import Metrics, accuracy_objective
from nas.backends.constraints import REJECTED_KEY, set_constraints
from nas.backends.reuse import find_earlier, reuse, wait_for_running
from nas.budgets import Budgets
from nas.halving import FidelityLadder, peer_accuracies
from nas.records import TrialOutcome, is_scored_only
from search_spaces.arch import Architecture

__all__ = ["Evaluate", "TrialRunner", "done_message", "fail_trial", "ops_summary"]

Evaluate = Callable[[Architecture, int], Metrics]


def fail_trial(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Tell ``trial`` FAIL with ``reason`` in its ``failure`` and ``status`` attributes."""
    trial.set_user_attr("failure", reason)
    trial.set_user_attr("status", f"failed: {reason}")
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def ops_summary(arch: Architecture) -> str:
    """``"12x conv, 4x oct(a=0.5)"``: how often each operator is chosen, most frequent first."""
    counts: dict[str, int] = {}
    for spec in arch.ops.values():
        counts[spec.label] = counts.get(spec.label, 0) + 1
    return ", ".join(
        f"{n}x {lbl}" for lbl, n in sorted(counts.items(), key=lambda t: (-t[1], t[0]))
    )


def done_message(m: Metrics) -> str:
    """What an evaluated trial's line says happened: ``trained 2 epochs``, or for a candidate
    scored on the supernet ``supernet score (BN recalibrated on 4 batches) 1.3 s``."""
    if is_scored_only(m.extra):
        sn = m.extra["supernet"]
        n = int(sn.get("bn_batches") or 0)
        bn = f"BN recalibrated on {n} batch{'' if n == 1 else 'es'}" if n else "no BN recalibration"
        return f"supernet score ({bn}) {float(sn.get('score_time_s') or 0.0):.1f} s"
    return f"trained {m.fidelity} epoch{'' if m.fidelity == 1 else 's'}"


class TrialRunner:
    """Evaluates the trials of one study (see the module docstring); built by the engine.

    Args:
        study: the open study.
        choices, to_architecture, cost_of_labels, evaluate, objectives, budgets, ladder,
            proxy: as for :class:`nas.backends.engine.OptunaSearch`.
        fail_interrupted: marks other workers' dead trials FAIL (called while waiting for a
            running trial of the same architecture).
    """

    def __init__(
        self,
        *,
        study: optuna.Study,
        choices: Mapping[str, Sequence[str]],
        to_architecture: Callable[[Mapping[str, str]], Architecture],
        cost_of_labels: Callable[[Mapping[str, str]], Any],
        evaluate: Evaluate,
        objectives: Sequence[str],
        budgets: Budgets,
        ladder: FidelityLadder,
        proxy: Mapping[str, Any],
        fail_interrupted: Callable[[], int],
    ) -> None:
        self.study = study
        self.choices = choices
        self._to_arch, self._cost, self._evaluate = to_architecture, cost_of_labels, evaluate
        self.objectives = tuple(objectives)
        self.budgets, self.ladder = budgets, ladder
        self.proxy = proxy
        self._fail_interrupted = fail_interrupted

    def _fail(self, trial: optuna.Trial, reason: str) -> None:
        fail_trial(self.study, trial, reason)

    def _values(self, accuracy: float, flops: int, params: int, latency: float | None) -> list:
        by_name = {
            "accuracy": float(accuracy),
            "flops": float(flops),
            "params": float(params),
            "latency": float("inf") if latency is None else float(latency),
        }
        return [by_name[o] for o in self.objectives]

    def over_budget(self, labels: Mapping[str, str]) -> tuple[Any, dict[str, float]]:
        """The cost of ``labels`` and the relative overshoot of each broken FLOPs/params budget."""
        cost = self._cost(labels)
        over = {}
        if self.budgets.max_flops is not None and cost.flops > self.budgets.max_flops:
            over["flops"] = cost.flops / self.budgets.max_flops - 1.0
        if self.budgets.max_params is not None and cost.params > self.budgets.max_params:
            over["params"] = cost.params / self.budgets.max_params - 1.0
        return cost, over

    def reject_over_budget(self, trial: optuna.Trial, t_start: float) -> TrialOutcome | None:
        """Tell ``trial`` rejected when its proposal breaks a FLOPs/params budget, else ``None``.

        A rejected trial is COMPLETE and infeasible (accuracy 0, its real FLOPs and params,
        latency ``inf``; constraints set the way :func:`set_constraints` does, legacy list
        included) and carries ``rejected``; it costs microseconds of pricing and a few storage
        writes, is never built, and does not count toward ``--trials``.
        """
        labels = {p: trial.params[p] for p in self.choices}
        cost, over = self.over_budget(labels)
        if not over:
            return None
        arch = self._to_arch(labels)
        msg = (
            "rejected, over budget: "
            + ", ".join(f"{n} {v:+.1%}" for n, v in over.items())
            + " (not built, not counted)"
        )
        attrs = {
            # The proposal itself, as on every trial: the dashboard shows what was rejected.
            "arch": json.dumps(arch.to_dict(), sort_keys=True, separators=(",", ":")),
            "arch_id": arch.arch_id,
            "flops": int(cost.flops),
            "params": int(cost.params),
            "inference_params": int(cost.inference_params),
            "fidelity": 0,
            "feasible": False,
            REJECTED_KEY: True,
            "violations": {k: round(float(v), 6) for k, v in over.items()},
            "status": msg,
        }
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        set_constraints(self.study, trial, self.budgets, over)
        self.study.tell(trial, self._values(0.0, cost.flops, cost.params, None))
        return TrialOutcome(
            trial.number,
            "rejected",
            arch.arch_id,
            None,
            int(cost.flops),
            int(cost.params),
            None,
            0,
            time.monotonic() - t_start,
            msg,
        )

    def evaluate(self, trial: optuna.Trial, t_start: float) -> TrialOutcome:
        """Reuse or evaluate ``trial``'s architecture on the ladder, and tell the study.

        Call :meth:`reject_over_budget` first: this does not check the FLOPs/params budgets.
        """
        study = self.study
        labels = {p: trial.params[p] for p in self.choices}
        arch = self._to_arch(labels)
        cost = self._cost(labels)
        arch_id = arch.arch_id
        base = {
            "arch_id": arch_id,
            "arch": json.dumps(arch.to_dict(), sort_keys=True, separators=(",", ":")),
            "ops": ops_summary(arch),
            "flops": int(cost.flops),
            "params": int(cost.params),
            "inference_params": int(cost.inference_params),
            "proxy": self.proxy,
        }
        for k, v in base.items():
            trial.set_user_attr(k, v)

        def outcome(
            status: str,
            acc: float | None,
            lat: float | None,
            fid: int,
            msg: str,
            trained: bool = True,
            score: float | None = None,
        ) -> TrialOutcome:
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
                trained,
                score,
            )

        # 1. the same architecture earlier in the study: reuse its result (when another
        # worker is evaluating it right now, wait for that result instead of training twice)
        earlier = find_earlier(study, arch_id, trial.number)
        if earlier is None:
            earlier = wait_for_running(study, arch_id, trial.number, self._fail_interrupted)
        if earlier is not None:
            return reuse(study, trial, earlier, self.budgets, self._fail, outcome)

        # 2. evaluate on the fidelity ladder
        rung_acc: dict[str, float] = {}  # the accuracy objective per rung (see rung_score)
        rung_top1: dict[str, float] = {}  # validation top-1 per rung
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
            value = accuracy_objective(metrics)
            if value is None or not math.isfinite(value):
                what = "accuracy" if metrics.score is None else "score"
                reason = f"the evaluator returned no {what} at {epochs} epochs"
                self._fail(trial, reason)
                return outcome("failed", None, metrics.latency_ms, epochs, reason)
            rung_acc[str(epochs)] = float(value)
            trial.set_user_attr("rung_score", dict(rung_acc))
            if metrics.accuracy is not None:
                rung_top1[str(epochs)] = float(metrics.accuracy)
                trial.set_user_attr("rung_accuracy", dict(rung_top1))
            if k == len(self.ladder.rungs) - 1:
                break
            peers = peer_accuracies(
                (
                    (t.number, t.user_attrs)
                    for t in study.get_trials(
                        deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)
                    )
                ),
                number=trial.number,
                epochs=epochs,
                cost=cost,
                latency=metrics.latency_ms,
                objectives=self.objectives,
                ladder=self.ladder,
            )
            go_on, decision = self.ladder.promote(float(value), peers)
            trial.set_user_attr(f"decision_at_{epochs}", decision)
            if not go_on:
                break
        assert metrics is not None and accuracy_objective(metrics) is not None
        if "latency" in self.objectives and metrics.latency_ms is None:
            reason = "the evaluator measured no latency, but latency is an objective"
            self._fail(trial, reason)
            return outcome("failed", None, None, metrics.fidelity, reason)
        self._record_metrics(trial, metrics, rung_acc, train_time)
        set_constraints(study, trial, self.budgets, {})
        stopped = metrics.fidelity < self.ladder.full
        status = "stopped" if stopped else "feasible"
        msg = (
            f"stopped at {metrics.fidelity}/{self.ladder.full} epochs: {decision}"
            if stopped
            else done_message(metrics)
        )
        trial.set_user_attr("feasible", True)
        trial.set_user_attr("status", msg)
        score = float(accuracy_objective(metrics))  # type: ignore[arg-type]
        study.tell(trial, self._values(score, cost.flops, cost.params, metrics.latency_ms))
        return outcome(
            status,
            metrics.accuracy,
            metrics.latency_ms,
            metrics.fidelity,
            msg,
            trained=not is_scored_only(metrics.extra),
            score=score,
        )

    def _record_metrics(
        self, trial: optuna.Trial, m: Metrics, rung_acc: Mapping[str, float], train_time: float
    ) -> None:
        trial.set_user_attr("accuracy", m.accuracy)
        trial.set_user_attr("score", accuracy_objective(m))
        trial.set_user_attr("fidelity", int(m.fidelity))
        trial.set_user_attr("train_time_s", round(train_time, 3))
        trial.set_user_attr("rung_score", dict(rung_acc))
        if m.zero_cost is not None:
            trial.set_user_attr("zero_cost", m.zero_cost)
        if m.extra:
            trial.set_user_attr("evaluator_extra", m.extra)

    def _infeasible(
        self,
        trial: optuna.Trial,
        violations: Mapping[str, float],
        metrics: Metrics,
        rung_acc: Mapping[str, float],
        msg: str,
        outcome: Callable[..., TrialOutcome],
    ) -> TrialOutcome:
        """Tell an evaluated trial infeasible (a latency budget broken when it was measured)."""
        lat = metrics.latency_ms
        self._record_metrics(trial, metrics, rung_acc, float(metrics.train_time_s))
        trial.set_user_attr("feasible", False)
        trial.set_user_attr("violations", {k: round(float(v), 6) for k, v in violations.items()})
        trial.set_user_attr("status", msg)
        set_constraints(self.study, trial, self.budgets, violations)
        cost_flops, cost_params = trial.user_attrs["flops"], trial.user_attrs["params"]
        # Accuracy 0: never trained; latency inf when never built. Samplers and
        # study.best_trials skip infeasible trials by their constraints anyway.
        self.study.tell(trial, self._values(0.0, cost_flops, cost_params, lat))
        return outcome("infeasible", None, lat, 0, msg)
