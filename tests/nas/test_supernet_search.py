"""A search with ``--evaluator supernet``: what its lines say, and ``--supernet-finetune N``.

Real tiny searches: cifar_resnet20 at 16x16 on synthetic images, a supernet of 2 epochs of 3
steps, 2 validation batches; each run takes a few seconds on one CPU thread.
"""

import json
import math
import re

import pytest

from nas.search import main as search_main

SEARCH = [
    *("--backbone", "cifar_resnet20", "--resolution", "16", "--dataset", "synthetic"),
    *("--budget", "7MFLOPs", "--proxy-subset", "200", "--batch-size", "16", "--seed", "1"),
    *("--device", "cpu", "--evaluator", "supernet"),
    *("--evaluator-option", "supernet_epochs=2", "--evaluator-option", "max_steps_per_epoch=3"),
    *("--evaluator-option", "max_val_batches=2", "--evaluator-option", "synthetic_size=400"),
    *("--evaluator-option", "bn_batches=2", "--storage", "s.db", "--out", "out"),
]  # fmt: skip

TRIAL_LINE = re.compile(r"^trial +(\d+) (\w+) +acc ")


def _run(args, capsys):
    code = search_main([*SEARCH, *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


@pytest.mark.slow
def test_supernet_trial_lines_say_scored_with_bn_recalibration_not_trained(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    out = _run(["--trials", "3"], capsys)
    lines = [ln for ln in out.splitlines() if TRIAL_LINE.match(ln)]
    evaluated = [ln for ln in lines if TRIAL_LINE.match(ln).group(2) == "feasible"]
    assert len(evaluated) == 3, out
    for ln in evaluated:
        assert re.search(r"\] supernet score \(BN recalibrated on 2 batches\) \d+\.\d s$", ln), ln
        assert " ep " not in ln and "trained" not in ln, ln
    table = out[out.index("  trial  arch_id") :].splitlines()
    head = table[0].split()
    assert head[:8] == [
        "trial", "arch_id", "accuracy", "score", "FLOPs", "params", "latency", "epochs"
    ]  # fmt: skip
    members = [ln for ln in table[1:] if re.match(r"^ +\d+  [0-9a-f]{16} ", ln)]
    assert members and all(ln.split()[9] == "-" for ln in members), members  # no epochs
    doc = json.loads(next(tmp_path.glob("out/pareto/pareto.json")).read_text())
    assert len(doc["members"]) == len(members)
    for m in doc["members"]:
        assert m["supernet_accuracy"] == m["accuracy"]
        # scored by the supernet's validation loss, like the proxy (--proxy-score loss)
        assert m["score"] == m["values"]["accuracy"] != m["accuracy"]


def _finetune_lines(out):
    return [ln for ln in out.splitlines() if re.match(r"^  trial +\d+  \[[0-9a-f]{16}\] ", ln)]


@pytest.mark.slow
def test_supernet_finetune_records_both_scores_and_a_rerun_tunes_only_new_members(
    tmp_path, monkeypatch, capsys
):
    from nas.backends.optuna_backend import load_rows
    from nas.records import FINETUNE_KEY

    monkeypatch.chdir(tmp_path)
    out = _run(["--trials", "3", "--supernet-finetune", "1"], capsys)
    rows, _ = load_rows("s.db", next(iter(_studies())))
    doc = json.loads((tmp_path / "out" / "pareto" / "pareto.json").read_text())
    members = doc["members"]
    assert (
        members and f"Fine-tuning {len(members)} of {len(members)} Pareto member(s) 1 epoch" in out
    )
    lines = _finetune_lines(out)
    assert len(lines) == len(members), out
    by_number = {r.number: r for r in rows}
    for m, ln in zip(sorted(members, key=lambda m: m["trial"]), lines):
        ua = by_number[m["trial"]].user_attrs
        rec = ua[FINETUNE_KEY]
        assert rec["epochs"] == 1 and rec["failure"] is None and rec["train_time_s"] > 0
        assert 0.0 <= rec["accuracy"] <= 1.0
        # The trial keeps its supernet score; the fine-tuned model is another measurement.
        assert rec["supernet_accuracy"] == ua["accuracy"] == m["accuracy"] == m["supernet_accuracy"]
        assert rec["supernet_val_loss"] == ua["evaluator_extra"]["supernet"]["val_loss"]
        assert rec["val_loss"] != rec["supernet_val_loss"]
        assert m["finetuned_accuracy"] == rec["accuracy"] and m["finetune_epochs"] == 1
        assert m["finetuned_val_loss"] == rec["val_loss"]
        assert m["dominated_after_finetune"] in (True, False)
        assert f"[{m['arch_id']}] supernet score {m['accuracy']:.4f} -> {rec['accuracy']:.4f}" in ln
        # the accuracy objective (exp(-val loss)) before and after, as the search scored it
        assert m["score"] == pytest.approx(
            math.exp(-ua["evaluator_extra"]["supernet"]["val_loss"]), rel=1e-12
        )
        assert rec["score"] == pytest.approx(math.exp(-rec["val_loss"]), rel=1e-12)
        assert m["finetuned_score"] == rec["score"]
        assert f"(score {m['score']:.4f} -> {rec['score']:.4f})" in ln
    head = next(ln for ln in out.splitlines() if ln.startswith("  trial  arch_id"))
    assert head.split()[:5] == ["trial", "arch_id", "accuracy", "score", "fine-tuned"]
    csv_head = (tmp_path / "out" / "pareto" / "pareto.csv").read_text().splitlines()[0]
    assert "supernet_accuracy,finetuned_accuracy,finetuned_score,finetune_epochs" in csv_head

    # The finished study again, with the flag: every member is done, nothing is tuned.
    out2 = _run(["--trials", "3", "--supernet-finetune", "1"], capsys)
    n = len(members)
    assert f"Fine-tuning 0 of {n} Pareto member(s) 1 epoch each" in out2
    assert f"({n} already fine-tuned 1 epoch)" in out2 and not _finetune_lines(out2)

    # More trials: only members without a 1-epoch record are fine-tuned.
    out3 = _run(["--trials", "6", "--supernet-finetune", "1"], capsys)
    doc3 = json.loads((tmp_path / "out" / "pareto" / "pareto.json").read_text())
    old = {m["trial"] for m in members}
    new = [m for m in doc3["members"] if m["trial"] not in old]
    tuned_now = {int(ln.split()[1]) for ln in _finetune_lines(out3)}
    assert new and tuned_now == {m["trial"] for m in new}
    assert all(m["finetune_epochs"] == 1 for m in doc3["members"])
    rows3, _ = load_rows("s.db", next(iter(_studies())))
    for r in rows3:  # records of the first run are kept unchanged
        if r.number in old:
            assert r.user_attrs[FINETUNE_KEY] == by_number[r.number].user_attrs[FINETUNE_KEY]


def _studies():
    from nas.backends.optuna_storage import list_studies

    return list_studies("s.db")


BAD_FINETUNE = [
    (["--supernet-finetune", "0"], "supernet finetune epochs '0' must be >= 1"),
    (["--supernet-finetune", "two"], "supernet finetune epochs 'two' is not an integer"),
    (["--supernet-finetune", "-1"], "supernet finetune epochs '-1' must be >= 1"),
]


@pytest.mark.parametrize("args, match", BAD_FINETUNE, ids=[b[0][1] for b in BAD_FINETUNE])
def test_bad_supernet_finetune_values_are_one_line_exit_2_nothing_written(
    tmp_path, monkeypatch, capsys, args, match
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        search_main([*SEARCH, "--trials", "1", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert match in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("evaluator", [None, "surrogate"])
def test_supernet_finetune_without_the_supernet_evaluator_is_refused(
    tmp_path, monkeypatch, capsys, small_search, evaluator
):
    monkeypatch.chdir(tmp_path)
    args = small_search if evaluator == "surrogate" else small_search[:-2]  # no --evaluator
    code = search_main([*args, "--trials", "1", "--supernet-finetune", "2"])
    err = capsys.readouterr().err
    which = "evaluators.surrogate:evaluate" if evaluator else "the default proxy-training evaluator"
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert (
        "supernet_finetune=2 (--supernet-finetune) fine-tunes Pareto members taken out of a "
        f"supernet and needs --evaluator supernet, not {which}"
    ) in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", [0, True, 1.5, "2"])
def test_run_search_refuses_a_bad_supernet_finetune_before_writing(tmp_path, value):
    from nas.search import run_search

    message = f"supernet_finetune must be a positive number of epochs, got {value!r}"
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        run_search(
            backbone="cifar_resnet20", resolution=16, dataset="synthetic", evaluator="supernet",
            supernet_finetune=value, storage=str(tmp_path / "s.db"), out=str(tmp_path / "o"),
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_a_member_beaten_after_fine_tuning_is_marked_not_dropped():
    from nas.export import pareto_members
    from nas.records import FINETUNE_KEY, TrialRow

    def row(number, acc, flops, tuned):
        ua = {"arch_id": f"{number:016x}", "accuracy": acc, "flops": flops, "params": 10}
        ua["evaluator_extra"] = {"supernet": {"bn_batches": 4}}
        if tuned is not None:
            ua[FINETUNE_KEY] = {"epochs": 2, "accuracy": tuned, "failure": None}
        return TrialRow(number, "COMPLETE", [acc, flops], True, True, ua)

    # By supernet score all three are Pareto-optimal; after fine-tuning, the cheaper trial 1
    # is more accurate than trial 0, which it then dominates. Trial 2 was not fine-tuned.
    rows = [row(0, 0.50, 200.0, 0.55), row(1, 0.40, 100.0, 0.60), row(2, 0.30, 50.0, None)]
    info = {"objectives": ["accuracy", "flops"], "budgets": {}, "convnas": {}}
    members, hv = pareto_members(rows, info)
    by_trial = {m["trial"]: m for m in members}
    assert sorted(by_trial) == [0, 1, 2]  # the set is the search's, not recomputed
    assert by_trial[0]["dominated_after_finetune"] is True
    assert by_trial[1]["dominated_after_finetune"] is False
    assert by_trial[2]["dominated_after_finetune"] is None
    assert by_trial[2]["finetuned_accuracy"] is None and by_trial[0]["finetuned_accuracy"] == 0.55
    assert [m["supernet_accuracy"] for m in members] == [0.30, 0.40, 0.50]
