"""The search engine end to end, with the deterministic surrogate evaluator (fast)."""

import io
import json
import math

import optuna
import pytest
from optuna.trial import TrialState

from nas.backends.optuna_backend import (
    Budgets,
    FidelityLadder,
    OptunaSearch,
    describe_storage,
    hypervolume,
)
from nas.halving import parse_fidelities as _parse_fidelities
from nas.naming import default_study_name as _default_study_name
from nas.search import run_search

SURROGATE = "evaluators.surrogate:evaluate"
SMALL = {"backbone": "cifar_resnet20", "resolution": 16, "dataset": "synthetic"}


def _search(tmp_path, **kw):
    args = {
        **SMALL,
        "evaluator": SURROGATE,
        "trials": 12,
        "storage": str(tmp_path / "s.db"),
        "out": str(tmp_path / "out"),
        "stream": io.StringIO(),
        **kw,
    }
    return run_search(**args)


def _load(tmp_path, study):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=study, storage=f"sqlite:///{tmp_path / 's.db'}")


def _dominates(a, b, directions):
    better = [x >= y if d == "maximize" else x <= y for x, y, d in zip(a, b, directions)]
    strict = [x > y if d == "maximize" else x < y for x, y, d in zip(a, b, directions)]
    return all(better) and any(strict)


def test_pareto_members_are_under_budget_and_not_dominated_by_any_feasible_trial(tmp_path):
    res = _search(tmp_path, budget="6MFLOPs", max_params="200k", trials=20, sampler="random")
    assert res.n_complete == 20
    study = _load(tmp_path, res.study)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    feasible = [t for t in trials if all(v <= 0 for v in t.constraints.values())]
    directions = ["maximize", "minimize", "minimize", "minimize"]
    assert res.pareto and len(feasible) >= len(res.pareto)
    by_number = {t.number: t for t in trials}
    for m in res.pareto:
        t = by_number[m["trial"]]
        assert m["flops"] <= 6_000_000 and m["params"] <= 200_000
        assert t.user_attrs["feasible"] is True
        assert not any(_dominates(o.values, t.values, directions) for o in feasible)
    # Every feasible trial not in the set is dominated by (or equal to) a member.
    members = [by_number[m["trial"]].values for m in res.pareto]
    ids = {m["arch_id"] for m in res.pareto}
    for t in feasible:
        if t.user_attrs["arch_id"] not in ids:
            assert any(_dominates(v, t.values, directions) or v == t.values for v in members)


def test_over_budget_candidates_are_recorded_infeasible_and_never_evaluated(tmp_path):
    from evaluators import surrogate

    surrogate.CALLS.clear()
    res = _search(tmp_path, budget="5MFLOPs", trials=15)
    study = _load(tmp_path, res.study)
    evaluated = {a for a, _ in surrogate.CALLS}
    over = [t for t in study.trials if t.user_attrs.get("flops", 0) > 5_000_000]
    assert over, "the budget should cut some proposals"
    assert res.n_complete == 15 and res.n_rejected == len(over)  # not counted in --trials
    for t in over:
        assert t.state == TrialState.COMPLETE and t.user_attrs["rejected"] is True
        assert t.user_attrs["arch_id"] not in evaluated
        assert t.user_attrs["feasible"] is False and t.user_attrs["fidelity"] == 0
        assert t.constraints["flops"] == pytest.approx(t.user_attrs["flops"] / 5e6 - 1)
        # The legacy list is what optuna-dashboard reads; it must say infeasible too.
        assert t.system_attrs["constraints"][0] > 0
        assert t.values[0] == 0.0 and math.isinf(t.values[3])  # accuracy 0, never built
    feasible = [t for t in study.trials if t.user_attrs.get("feasible")]
    assert all(t.system_attrs["constraints"] == [t.constraints["flops"]] for t in feasible)
    assert all(t.constraints["flops"] <= 0 for t in feasible)
    assert {t.number for t in study.best_trials} <= {t.number for t in feasible}


def test_trials_record_what_the_dashboard_shows(tmp_path):
    res = _search(tmp_path, budget="8MFLOPs", trials=6)
    study = _load(tmp_path, res.study)
    assert study.metric_names == ["accuracy", "flops", "params", "latency_ms"]
    assert study.user_attrs["constraint_names"] == ["flops"]
    assert study.user_attrs["convnas"]["backbone"] == "cifar_resnet20"
    from search_spaces.arch import Architecture

    t = next(t for t in study.trials if t.user_attrs.get("feasible"))
    ua = t.user_attrs
    arch = Architecture.from_json(ua["arch"])
    assert arch.arch_id == ua["arch_id"]
    assert {p: s.label for p, s in arch.ops.items()} == t.params  # one categorical per slot
    for key in (
        "flops",
        "params",
        "inference_params",
        "latency_ms",
        "latency_iqr_ms",
        "accuracy",
        "train_time_s",
        "fidelity",
        "proxy",
        "rung_accuracy",
        "status",
    ):
        assert key in ua, key
    assert ua["proxy"]["dataset"] == "synthetic" and ua["proxy"]["rungs"] == [1, 2]
    assert t.values == [ua["accuracy"], ua["flops"], ua["params"], ua["latency_ms"]]


def test_failed_evaluations_are_fail_with_their_reason_and_the_search_goes_on(tmp_path):
    res = _search(
        tmp_path,
        trials=10,
        objectives="accuracy,flops",
        sampler="random",
        evaluator_options={"fail_fraction": 0.25, "raise_fraction": 0.25},
    )
    study = _load(tmp_path, res.study)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert res.n_complete == 10
    reasons = [t.user_attrs["failure"] for t in failed]
    crash = [r for r in reasons if r.startswith("RuntimeError: surrogate: simulated crash on ")]
    diverged = [r for r in reasons if r == "non-finite loss at epoch 1 step 3"]
    assert crash and diverged and len(crash) + len(diverged) == len(failed)
    for t in failed:
        assert t.values is None and t.user_attrs["status"].startswith("failed: ")


def test_the_same_architecture_is_evaluated_once_and_its_result_reused(tmp_path):
    from evaluators import surrogate
    from evaluators.cost import get_cost_model
    from search_spaces.space import SearchSpace

    space = SearchSpace("cifar_resnet20", num_classes=10, resolution=16, menu="conv,oct(a=0.5)")
    cm = get_cost_model("cifar_resnet20", 10, 16, "all")
    free = list(space.choices)[:2]  # two searchable slots: 4 architectures in all
    fixed = {p: "conv" for p in space.choices}
    from evaluators.objectives import EvalConfig

    cfg = EvalConfig(dataset="synthetic", proxy_epochs=1, latency="off")
    surrogate.CALLS.clear()
    engine = OptunaSearch(
        choices={p: space.choices[p] for p in free},
        to_architecture=lambda lb: space.to_architecture({**fixed, **lb}),
        cost_of_labels=lambda lb: cm.cost_of_labels({**fixed, **lb}),
        evaluate=lambda arch, epochs: surrogate.evaluate(arch, cfg, fidelity=epochs),
        objectives=("accuracy", "flops"),
        budgets=Budgets(),
        ladder=FidelityLadder((1,)),
        sampler="random",
        seed=3,
        storage=str(tmp_path / "d.db"),
        study_name="dups",
    )
    engine.open()
    engine.run(12)
    trials = engine.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 12
    assert len(surrogate.CALLS) == len({a for a, _ in surrogate.CALLS}) <= 4
    dups = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(dups) == 12 - len(surrogate.CALLS)
    by_number = {t.number: t for t in trials}
    for t in dups:
        orig = by_number[t.user_attrs["duplicate_of"]]
        assert "duplicate_of" not in orig.user_attrs
        assert orig.user_attrs["arch_id"] == t.user_attrs["arch_id"]
        assert t.values == orig.values


def test_successive_halving_stops_exactly_by_its_rule(tmp_path):
    res = _search(tmp_path, trials=25, proxy_epochs=2, objectives="accuracy,flops")
    study = _load(tmp_path, res.study)
    trials = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    stopped = [t for t in trials if t.user_attrs["fidelity"] == 1]
    full = [t for t in trials if t.user_attrs["fidelity"] == 2]
    assert stopped and full and len(stopped) + len(full) == 25

    def rule_stops(t):
        # Peers: earlier trials that reached rung 1 and cost at most 5 % more FLOPs.
        acc1 = t.user_attrs["rung_accuracy"]["1"]
        peers = [
            p.user_attrs["rung_accuracy"]["1"]
            for p in trials
            if p.number < t.number
            and "duplicate_of" not in p.user_attrs
            and p.user_attrs["flops"] <= 1.05 * t.user_attrs["flops"]
        ]
        better = sum(a > acc1 for a in peers)
        return len(peers) >= 2 and better + 1 > math.ceil((len(peers) + 1) / 2)

    for t in stopped:
        assert t.values[0] == t.user_attrs["rung_accuracy"]["1"]
        assert "stopped" in t.user_attrs["decision_at_1"]
        assert rule_stops(t)
    for t in full:
        assert set(t.user_attrs["rung_accuracy"]) == {"1", "2"}
        assert t.values[0] == t.user_attrs["rung_accuracy"]["2"]
        if "duplicate_of" not in t.user_attrs:
            assert not rule_stops(t)


def test_fidelity_ladder_rules():
    assert FidelityLadder.halving(4).rungs == (1, 2, 4)
    assert FidelityLadder.halving(5).rungs == (1, 2, 5)
    assert FidelityLadder.halving(1).rungs == (1,)
    assert _parse_fidelities("auto", 8) == (1, 2, 4, 8)
    assert _parse_fidelities("off", 3) == (3,)
    assert _parse_fidelities("1,3", 3) == (1, 3)
    with pytest.raises(ValueError, match="must end at --proxy-epochs 4"):
        _parse_fidelities("1,2", 4)
    with pytest.raises(ValueError, match="increasing"):
        _parse_fidelities("2,1", 1)
    lad = FidelityLadder((1, 2))
    assert lad.promote(0.5, [0.9])[0]  # too few peers to judge
    assert lad.promote(0.5, [0.9, 0.1])[0]  # rank 2 of 3 is in the top half (ceil 1.5 = 2)
    assert not lad.promote(0.5, [0.9, 0.8])[0]  # rank 3 of 3
    assert not lad.promote(0.5, [0.9, 0.8, 0.1])[0]  # rank 3 of 4 > 2
    assert lad.promote(0.5, [0.9, 0.5, 0.1])[0]  # ties do not count as better
    with pytest.raises(ValueError, match="strictly increasing"):
        FidelityLadder((2, 2))
    with pytest.raises(ValueError, match="eta"):
        FidelityLadder((1, 2), eta=1)


def test_rerunning_the_same_settings_resumes_and_keeps_completed_trials(tmp_path):
    first = _search(tmp_path, budget="7MFLOPs", trials=6)
    study = _load(tmp_path, first.study)
    before = {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    out = io.StringIO()
    second = _search(tmp_path, budget="7MFLOPs", trials=9, stream=out)
    assert second.study == first.study and second.resumed and not first.resumed
    assert f"Resuming study '{first.study}'" in out.getvalue()
    assert "6 trials already evaluated" in out.getvalue()
    study = _load(tmp_path, first.study)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert sum(not t.user_attrs.get("rejected") for t in done) == 9
    assert {n: v for n, v in ((t.number, t.values) for t in study.trials) if n in before} == before


def test_a_different_setting_under_the_same_study_name_is_refused(tmp_path):
    _search(tmp_path, budget="7MFLOPs", trials=2, study="mine")
    with pytest.raises(ValueError, match=r"created with max_flops=7000000.*max_flops=8000000"):
        _search(tmp_path, budget="8MFLOPs", trials=2, study="mine")


def test_budget_below_the_cheapest_architecture_is_refused_with_the_range(tmp_path):
    with pytest.raises(ValueError, match=r"achievable FLOPs are 1\.90 MFLOPs to 10\.31 MFLOPs"):
        _search(tmp_path, budget="1MFLOPs")
    with pytest.raises(ValueError, match=r"achievable params are 41\.36k to 272\.47k"):
        _search(tmp_path, max_params="40k")
    assert list(tmp_path.iterdir()) == []


def test_default_study_name_is_readable_and_changes_with_the_settings():
    base = {
        "backbone": "resnet50",
        "resolution": 224,
        "slots": "all",
        "dataset": "cifar10",
        "max_flops": 2e9,
        "max_params": None,
        "max_latency_ms": None,
        "proxy_epochs": 2,
    }
    name = _default_study_name(base)
    assert name.startswith("resnet50-224-all-cifar10-2GFLOPs-")
    assert _default_study_name({**base, "proxy_epochs": 3}) != name
    assert _default_study_name(dict(base)) == name


def test_journal_file_storage_works_like_sqlite(tmp_path):
    res = _search(tmp_path, budget="7MFLOPs", trials=5, storage=str(tmp_path / "j.log"))
    assert res.n_complete == 5
    assert (tmp_path / "j.log").stat().st_size > 0
    assert res.dashboard_command == f"optuna-dashboard {tmp_path / 'j.log'}"


def test_storage_strings():
    assert describe_storage("sqlite:///runs/convnas.db") == ("rdb", "sqlite:///runs/convnas.db")
    assert describe_storage("runs/x.db") == ("rdb", "sqlite:///runs/x.db")
    assert describe_storage("runs/x.log") == ("journal", "runs/x.log")
    assert describe_storage("postgresql://u@h/db")[0] == "rdb"
    with pytest.raises(ValueError, match="is not a database URL"):
        describe_storage("runs/x.txt")
    with pytest.raises(ValueError, match="sqlite:///path"):
        describe_storage("sqlite://x.db")


def test_hypervolume_matches_the_area_of_a_union_of_rectangles():
    # maximise accuracy, minimise flops; reference (0, 1)
    pts = [[0.5, 0.2], [0.8, 0.6], [0.4, 0.5]]  # the last is dominated by the first
    expected = 0.5 * 0.8 + (0.8 - 0.5) * 0.4
    assert hypervolume(pts, ["maximize", "minimize"], [0.0, 1.0]) == pytest.approx(expected)
    assert hypervolume([[0.5, 1.2]], ["maximize", "minimize"], [0.0, 1.0]) == 0.0


def test_export_and_config_are_written_next_to_the_results(tmp_path):
    res = _search(tmp_path, budget="7MFLOPs", trials=5)
    cfg = json.loads((tmp_path / "out" / "search_config.json").read_text())
    assert cfg["study"] == res.study and cfg["settings"]["max_flops"] == 7_000_000
    assert cfg["eval_config"]["fidelities"] == [1, 2]
    assert (tmp_path / "out" / "pareto" / "pareto.json").is_file()
