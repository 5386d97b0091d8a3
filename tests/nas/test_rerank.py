"""``--rerank K``: the trials near the front scored with K more seeds, the front recomputed.

The layer and front rules against hand-built rows; then a real tiny search (cifar_resnet20 at
16x16 on synthetic images, a few proxy steps) whose re-ranking scores are checked against the
evaluator run on its own with the same seed, and the refusals of bad values.
"""

import io
import json
import re
import statistics
from dataclasses import replace

import pytest

from nas.fronts import apply_rerank, near_front, reranked_score
from nas.records import RERANK_KEY, TrialRow
from nas.search import main as search_main
from nas.search import run_search

OBJ = ("accuracy", "flops")


def _row(number, acc, flops, arch=None, feasible=True, seeds=None):
    ua = {"arch_id": arch or f"a{number}"}
    if seeds is not None:
        ua[RERANK_KEY] = {"seeds": {str(s): {"score": v} for s, v in seeds.items()}}
    return TrialRow(number, "COMPLETE", [acc, flops], feasible, False, ua)


def test_near_front_is_the_first_two_layers_one_trial_per_architecture():
    rows = [
        _row(0, 0.50, 10),  # front
        _row(1, 0.60, 20),  # front
        _row(2, 0.55, 20),  # behind 1: layer 2
        _row(3, 0.45, 12),  # behind 0: layer 2
        _row(4, 0.40, 25),  # behind 2 and 3: layer 3
        _row(5, 0.70, 15, feasible=False),  # infeasible: never
        _row(6, 0.60, 20, arch="a1"),  # a repeat of trial 1's architecture
    ]
    assert [r.number for r in near_front(rows, OBJ)] == [0, 1, 2, 3]
    assert [r.number for r in near_front(rows, OBJ, layers=1)] == [0, 1]
    # FLOPs are minimised: a cheaper trial with the same score dominates
    assert [r.number for r in near_front([_row(0, 0.5, 10), _row(1, 0.5, 11)], OBJ, 1)] == [0]


def test_apply_rerank_keeps_the_front_of_the_mean_scores():
    rows = [
        _row(0, 0.50, 10, seeds={"1": 0.50}),  # mean 0.50
        _row(1, 0.60, 20, seeds={"1": 0.40}),  # mean 0.50 at more FLOPs: dominated by 0
        _row(2, 0.55, 20, seeds={"1": 0.65, "2": 0.60}),  # mean 0.60: now on the front
        _row(3, 0.90, 5),  # not re-ranked: not a member, however good its search score
    ]
    assert reranked_score(rows[2], OBJ) == pytest.approx(0.60)
    assert reranked_score(rows[3], OBJ) is None
    apply_rerank(rows, OBJ)
    assert [r.number for r in rows if r.pareto] == [0, 2]
    # no record at all: the flags are left as they were
    plain = [_row(0, 0.5, 10), _row(1, 0.6, 20)]
    plain[1].pareto = True
    apply_rerank(plain, OBJ)
    assert [r.pareto for r in plain] == [False, True]


TINY = dict(
    backbone="cifar_resnet20", resolution=16, dataset="synthetic", budget="7MFLOPs",
    proxy_epochs=1, proxy_subset=64, batch_size=16, seed=1, device="cpu",
    objectives="accuracy,flops", study="rr",
    evaluator_options={"max_steps_per_epoch": 2, "max_val_batches": 1, "synthetic_size": 128},
)  # fmt: skip


@pytest.mark.slow
def test_a_reranked_search_scores_the_near_front_with_new_seeds_and_exports_their_front(
    tmp_path,
):
    from evaluators.objectives import evaluate
    from nas.backends.results import load_rows
    from nas.config import SearchConfig
    from nas.plan import prepare
    from search_spaces.arch import Architecture

    where = dict(storage=str(tmp_path / "s.db"), out=str(tmp_path / "out"))
    out = io.StringIO()
    res = run_search(trials=5, rerank=1, stream=out, **TINY, **where)
    text = out.getvalue()
    rows, info = load_rows(str(tmp_path / "s.db"), "rr")
    near = near_front(rows, OBJ)
    assert near
    assert (
        f"Re-ranking: the {len(near)} trial(s) of the first 2 non-dominated layers, each with "
        f"seed(s) 2 ({len(near)} evaluation(s) to run)" in text
    )
    # Each record is the evaluator's own score of that architecture with seed 2.
    cfg = SearchConfig(**{**{k: v for k, v in TINY.items() if k not in ("budget", "objectives")},
                          "max_flops": 7_000_000, "objectives": OBJ, **where})  # fmt: skip
    ec = replace(prepare(cfg).eval_config, seed=2)
    for r in near:
        rec = r.user_attrs[RERANK_KEY]["seeds"]
        assert list(rec) == ["2"] and rec["2"]["failure"] is None
        arch = Architecture.from_json(r.user_attrs["arch"])
        m = evaluate(arch, ec, r.user_attrs["fidelity"], state_store={})  # trained again
        assert rec["2"]["score"] == pytest.approx(m.score, rel=1e-9)
        assert rec["2"]["score"] != r.values[0]  # another seed, another score
        mean = statistics.fmean([r.values[0], rec["2"]["score"]])
        said = f"[{r.user_attrs['arch_id']}] score {r.values[0]:.4f} -> mean {mean:.4f} over 2"
        assert said in text
    # The exported front: the non-dominated trials by (mean score, FLOPs) among those re-ranked.
    doc = json.loads((tmp_path / "out" / "pareto" / "pareto.json").read_text())
    got = {m["trial"] for m in doc["members"]}
    pts = {r.number: (reranked_score(r, OBJ), r.values[1]) for r in near}
    want = {
        n for n, (a, f) in pts.items()
        if not any(b >= a and g <= f and (b, g) != (a, f) for b, g in pts.values())
    }  # fmt: skip
    assert got == want == {m["trial"] for m in res.pareto}
    for m in doc["members"]:
        assert m["rerank_seeds"] == 2
        assert m["values"]["accuracy"] == pytest.approx(pts[m["trial"]][0]) == m["rerank_score"]
        assert m["score"] == next(r.values[0] for r in near if r.number == m["trial"])
    head = next(ln for ln in text.splitlines() if ln.startswith("  trial  arch_id"))
    assert head.split()[:5] == ["trial", "arch_id", "accuracy", "score", "mean"]
    csv_head = (tmp_path / "out" / "pareto" / "pareto.csv").read_text().splitlines()[0]
    assert "rerank_score,rerank_seeds" in csv_head

    # A rerun with K = 2 adds seed 3 only; with the same K again, nothing.
    out2 = io.StringIO()
    run_search(trials=5, rerank=2, stream=out2, **TINY, **where)
    assert f"seed(s) 2, 3 ({len(near)} evaluation(s) to run)" in out2.getvalue()
    rows2, _ = load_rows(str(tmp_path / "s.db"), "rr")
    for r in near_front(rows2, OBJ):
        seeds = r.user_attrs[RERANK_KEY]["seeds"]
        assert sorted(seeds) == ["2", "3"]
        assert seeds["2"] == next(x for x in near if x.number == r.number).user_attrs[
            RERANK_KEY]["seeds"]["2"]  # fmt: skip
    out3 = io.StringIO()
    run_search(trials=5, rerank=2, stream=out3, **TINY, **where)
    assert re.search(r"seed\(s\) 2, 3 \(0 evaluation\(s\) to run\)", out3.getvalue())


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--rerank", "0"], "rerank seeds '0' must be >= 1"),
        (["--rerank", "one"], "rerank seeds 'one' is not an integer"),
        (["--rerank", "1", "--objectives", "flops,params"],
         "rerank=1 (--rerank) scores the accuracy objective again, but the objectives "
         "flops,params have none"),
        (["--rerank", "2", "--evaluator", "supernet"],
         "rerank=2 (--rerank) would train a new supernet per seed; with --evaluator supernet use "
         "--supernet-finetune N"),
    ],  # fmt: skip
    ids=["zero", "text", "no-accuracy", "supernet"],
)
def test_bad_rerank_is_one_sentence_exit_2_and_nothing_written(
    tmp_path, monkeypatch, capsys, small_search, extra, match
):
    monkeypatch.chdir(tmp_path)
    args = list(small_search)
    if "--evaluator" in extra:  # replace the surrogate
        i = args.index("--evaluator")
        del args[i : i + 2]
    try:
        code = search_main([*args, "--trials", "1", *extra])
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and match in err, err
    assert list(tmp_path.iterdir()) == []


def test_the_api_refuses_a_bad_rerank_before_writing(tmp_path):
    match = r"^rerank must be a positive number of extra seeds, got 0$"
    with pytest.raises(ValueError, match=match):
        run_search(dataset="synthetic", rerank=0, stream=io.StringIO(),
                   storage=str(tmp_path / "s.db"), out=str(tmp_path / "o"))  # fmt: skip
    assert list(tmp_path.iterdir()) == []
