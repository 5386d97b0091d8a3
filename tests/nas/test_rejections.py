"""``--trials`` counts evaluated candidates: proposals over a FLOPs/params budget are told to the
study as infeasible but not counted, and too many in a row stop the search."""

import io
import json
import re

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from nas.backends.optuna_backend import Budgets, FidelityLadder, OptunaSearch
from nas.search import main, run_search

SURROGATE = "evaluators.surrogate:evaluate"
SMALL = {"backbone": "cifar_resnet20", "resolution": 16, "dataset": "synthetic"}
CLI = ["--backbone", "cifar_resnet20", "--resolution", "16", "--dataset", "synthetic"]


def _space():
    from evaluators.cost import get_cost_model
    from search_spaces.space import SearchSpace

    space = SearchSpace("cifar_resnet20", num_classes=10, resolution=16)
    return space, get_cost_model("cifar_resnet20", 10, 16, "all")


def _engine(tmp_path, space, cm, *, budget, seed, **kw):
    from evaluators import surrogate
    from evaluators.objectives import EvalConfig

    cfg = EvalConfig(dataset="synthetic", proxy_epochs=1, latency="off")
    return OptunaSearch(
        choices=space.choices,
        to_architecture=space.to_architecture,
        cost_of_labels=cm.cost_of_labels,
        evaluate=lambda arch, epochs: surrogate.evaluate(arch, cfg, fidelity=epochs),
        objectives=("accuracy", "flops"),
        budgets=Budgets(max_flops=budget),
        ladder=FidelityLadder((1,)),
        sampler="random",
        seed=seed,
        storage=str(tmp_path / "r.db"),
        study_name="rej",
        cost_range=cm.range(space.choices),
        **kw,
    )


def test_rejected_count_matches_a_replay_of_the_random_sampler(tmp_path):
    from evaluators import surrogate

    space, cm = _space()
    budget, seed, n = 6_500_000, 4, 8
    surrogate.CALLS.clear()
    engine = _engine(tmp_path, space, cm, budget=budget, seed=seed, warm_start=0, repair=False)
    engine.open()
    summary = engine.run(n)

    # The random sampler ignores the history: the same seed on a bare study proposes the same
    # architectures, so the exact number of over-budget proposals before the n-th one that
    # fits can be computed without the engine.
    dists = {p: CategoricalDistribution(c) for p, c in space.choices.items()}
    ref = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed * 1_000_003))
    fits = over = 0
    while fits < n:
        t = ref.ask(dists)
        if cm.cost_of_labels(t.params).flops > budget:
            over += 1
        else:
            fits += 1
        ref.tell(t, 0.0)
    assert over > n // 2, "the budget should cut a large share of the proposals"

    assert summary.n_complete == n and summary.n_rejected == over == summary.n_rejected_run
    assert summary.stop_reason == f"reached {n} evaluated trials"
    trials = engine.study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials) and len(trials) == n + over
    rejected = [t for t in trials if t.user_attrs.get("rejected")]
    assert len(rejected) == over
    assert {t.number for t in rejected} == {
        t.number for t in trials if t.user_attrs["flops"] > budget
    }
    evaluated_ids = {a for a, _ in surrogate.CALLS}
    for t in rejected:
        # Told to the study as infeasible (samplers and the dashboard's legacy list agree),
        # never built or evaluated.
        assert t.constraints["flops"] == pytest.approx(t.user_attrs["flops"] / budget - 1)
        assert t.system_attrs["constraints"] == [t.constraints["flops"]]
        assert t.user_attrs["feasible"] is False and t.values[0] == 0.0
        assert t.user_attrs["arch_id"] not in evaluated_ids
        assert t.user_attrs["status"].startswith("rejected, over budget: flops +")


def test_too_many_rejections_in_a_row_stop_with_the_budget_and_the_range(tmp_path):
    space, cm = _space()
    # 2.0 MFLOPs in a space of 1.90 to 10.31 MFLOPs: a random proposal practically never fits.
    engine = _engine(
        tmp_path, space, cm, budget=2_000_000, seed=0, warm_start=1, max_rejections=25, repair=False
    )
    engine.open()
    summary = engine.run(5)
    assert summary.rejections_exhausted
    assert summary.n_complete == 1  # the warm start, repaired to fit
    assert summary.n_rejected == 25
    assert summary.stop_reason == (
        "25 proposals in a row broke the budget FLOPs <= 2.00 MFLOPs (this space spans "
        "1.90 MFLOPs to 10.31 MFLOPs): the random sampler finds too few architectures that "
        "fit; raise the budget, leave out --no-repair, or raise --max-rejections"
    )


def test_the_command_line_stops_after_max_rejections_with_exit_1_and_one_line(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    args = [*CLI, "--evaluator", SURROGATE, "--sampler", "random", "--trials", "4", "--no-repair"]
    code = main([*args, "--budget", "2MFLOPs", "--max-params", "60k", "--max-rejections", "15"])
    assert code == 1
    cap = capsys.readouterr()
    assert cap.err.count("\n") == 1 and "Traceback" not in cap.err
    assert cap.err.startswith(
        "python -m nas.search: error: stopped: 15 proposals in a row broke the budget FLOPs "
        "<= 2.00 MFLOPs (this space spans 1.90 MFLOPs to 10.31 MFLOPs) and params <= 60.00k "
        "(this space spans 41.36k to 272.47k): the random sampler"
    )
    assert "Search stopped: 15 proposals in a row broke the budget" in cap.out
    assert "; 15 proposals rejected over budget, not counted)." in cap.out


@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_a_bad_max_rejections_is_one_line_exit_2_and_writes_nothing(
    tmp_path, monkeypatch, capsys, value
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main([*CLI, "--evaluator", SURROGATE, "--budget", "5MFLOPs", "--max-rejections", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "max rejections" in err and value in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"max_rejections must be an integer >= 1, got 0"):
        run_search(**SMALL, evaluator=SURROGATE, max_rejections=0, storage=str(tmp_path / "x.db"))
    assert list(tmp_path.iterdir()) == []


def test_resume_reads_the_counts_from_the_storage_and_goes_on_to_the_evaluated_count(tmp_path):
    kw = {
        **SMALL,
        "evaluator": SURROGATE,
        "budget": "6.5MFLOPs",
        "sampler": "random",
        "storage": str(tmp_path / "s.db"),
        "study": "res",
        "out": str(tmp_path / "out"),
    }
    first = run_search(**kw, trials=6, stream=io.StringIO())
    study = optuna.load_study(study_name="res", storage=f"sqlite:///{tmp_path / 's.db'}")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    rejected_1 = sum(bool(t.user_attrs.get("rejected")) for t in done)
    assert first.n_complete == 6 and first.n_rejected == rejected_1 > 0
    assert len(done) == 6 + rejected_1

    out = io.StringIO()
    second = run_search(**kw, trials=9, stream=out)
    text = out.getvalue()
    assert (
        f"Resuming study 'res' in {tmp_path / 's.db'}: 6 trials already evaluated "
        f"({first.n_feasible} feasible, 0 failed, {rejected_1} proposals rejected over budget); "
        "running until 9 are evaluated." in text
    )
    study = optuna.load_study(study_name="res", storage=f"sqlite:///{tmp_path / 's.db'}")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    rejected_2 = sum(bool(t.user_attrs.get("rejected")) for t in done)
    assert len(done) - rejected_2 == 9 == second.n_complete
    assert second.n_rejected == rejected_2 and second.n_rejected_run == rejected_2 - rejected_1
    doc = json.loads((tmp_path / "out" / "pareto" / "pareto.json").read_text())
    assert (doc["n_evaluated"], doc["n_rejected"], doc["n_complete"]) == (9, rejected_2, len(done))
    line = re.search(r"Search stopped: .*", text)[0]
    assert line.startswith("Search stopped: reached 9 evaluated trials in ")
    assert line.endswith(
        f"(9 evaluated, {second.n_feasible} feasible, 0 failed in the study; {rejected_2} "
        f"proposals rejected over budget, {rejected_2 - rejected_1} of them in this run, "
        "not counted)."
    )


def test_repair_evaluates_each_rejected_proposal_next_made_cheaper_slot_by_slot(tmp_path):
    from nas.backends.warm_start import BudgetRepair

    space, cm = _space()
    budget = 5_500_000  # about 3 % of random architectures fit
    engine = _engine(tmp_path, space, cm, budget=budget, seed=1, warm_start=0, repair=True)
    engine.open()
    summary = engine.run(10)
    assert summary.n_complete == 10
    trials = {t.number: t for t in engine.study.get_trials()}
    rejected = sorted(n for n, t in trials.items() if t.user_attrs.get("rejected"))
    # One worker: every rejected proposal is followed by its repaired version, which fits.
    assert rejected and summary.n_rejected == len(rejected) <= 10
    delta = BudgetRepair(space.choices, cm.cost_of_labels).delta
    for n in rejected:
        fixed = trials[n + 1]
        assert fixed.user_attrs["proposed_by"] == f"repair of rejected trial {n}"
        assert not fixed.user_attrs.get("rejected") and fixed.user_attrs["flops"] <= budget
        changed = [p for p in space.choices if fixed.params[p] != trials[n].params[p]]
        assert changed
        for p in changed:  # only changes to a choice with fewer FLOPs in that slot
            assert delta[p][fixed.params[p]][0] < delta[p][trials[n].params[p]][0]
