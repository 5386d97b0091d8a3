"""Interleaved measurement and the calibrated latency predictor.

The fit is checked against closed forms on synthetic data (timings never enter an
assertion); the measurement against what it must do: how often each model runs, in which
order, with which threads, and how rounds become medians.
"""

import json
import math
import random
import statistics

import pytest
import torch
from torch import nn

from evaluators.latency import Calibration, LatencyTable, measure_interleaved, measure_latency
from evaluators.latency.calibrate import (
    calibration_sample,
    family_features,
    fit_least_squares,
    loo_mape,
    make_features,
    prior_coefficients,
    select_calibration,
)
from search_spaces.slots import find_slots

FAMS = ["conv", "linearconv", "octconv", "scconv"]


# -- least squares --------------------------------------------------------------------------


def test_exact_coefficients_of_a_noiseless_linear_model():
    rng = random.Random(0)
    x = [[1.0, rng.uniform(0, 5), rng.uniform(0, 3)] for _ in range(12)]
    y = [2.0 + 3.0 * a - 0.5 * b for _, a, b in x]
    beta = fit_least_squares(x, y)
    assert beta == pytest.approx([2.0, 3.0, -0.5], abs=1e-9)
    # weights change nothing when the model is exact
    wbeta = fit_least_squares(x, y, weights=[1 / v**2 for v in y])
    assert wbeta == pytest.approx([2.0, 3.0, -0.5], abs=1e-9)


def test_weights_give_the_weighted_mean():
    # intercept only: β = Σ w y / Σ w = (1 + 2 + 2*4) / 4
    assert fit_least_squares([[1.0]] * 3, [1.0, 2.0, 4.0], weights=[1, 1, 2]) == pytest.approx(
        [2.75], abs=1e-12
    )


def test_ridge_pulls_toward_the_prior_by_the_closed_form():
    # intercept only, column RMS 1: β = (Σ y + ridge * prior) / (n + ridge) = (6 + 30) / 6
    beta = fit_least_squares([[1.0]] * 3, [1.0, 2.0, 3.0], ridge=3.0, prior=[10.0])
    assert beta == pytest.approx([6.0], abs=1e-12)
    # the ridge is scale-free: the same with a column of 2s (β halves, the prior is per β)
    beta2 = fit_least_squares([[2.0]] * 3, [1.0, 2.0, 3.0], ridge=3.0, prior=[5.0])
    assert beta2 == pytest.approx([3.0], abs=1e-12)


def test_a_rank_deficient_design_gets_the_minimum_norm_solution():
    x = [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]  # two equal columns
    beta = fit_least_squares(x, [2.0, 4.0, 6.0])
    assert beta == pytest.approx([1.0, 1.0], abs=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x": [[1.0]], "y": [1.0, 2.0]}, r"x must be an \(n, k\) table"),
        ({"x": [[float("nan")]], "y": [1.0]}, "finite"),
        ({"x": [[1.0]], "y": [1.0], "weights": [-1.0]}, "weights must be"),
        ({"x": [[1.0]], "y": [1.0], "ridge": -1.0}, "ridge must be a number >= 0"),
        ({"x": [[1.0]], "y": [1.0], "ridge": 1.0, "prior": [1.0, 2.0]}, "one value per column"),
    ],
)
def test_bad_fit_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_least_squares(**kwargs)


# -- features and Calibration ---------------------------------------------------------------


def test_family_features_sum_entries_and_count_non_conv_slots():
    slots = [("conv", 1.0), ("scconv", 2.0), ("scconv", 0.5), ("octconv", 3.0)]
    assert family_features(slots, FAMS) == {
        "1": 1.0,
        "ms:conv": 1.0,
        "ms:linearconv": 0.0,
        "ms:octconv": 3.0,
        "ms:scconv": 2.5,
    }
    f = family_features(slots, FAMS, counts=True)
    assert f == {
        "1": 1.0,
        "ms:conv": 1.0,
        "ms:linearconv": 0.0,
        "ms:octconv": 3.0,
        "ms:scconv": 2.5,
        "n:linearconv": 0.0,
        "n:octconv": 1.0,
        "n:scconv": 2.0,
    }
    with pytest.raises(ValueError, match="operator family 'winograd' is not one of"):
        family_features([("winograd", 1.0)], FAMS)


def _synthetic(n, rng, coef):
    feats, ys = [], []
    for _ in range(n):
        slots = [(rng.choice(FAMS), rng.uniform(0.1, 2.0)) for _ in range(10)]
        f = family_features(slots, FAMS, counts=True)
        feats.append(f)
        ys.append(math.fsum(coef[k] * v for k, v in f.items()))
    return feats, ys


def test_calibration_recovers_known_coefficients_and_reproduces_latencies():
    coef = {
        "1": 0.7,
        "ms:conv": 1.0,
        "ms:linearconv": 0.9,
        "ms:octconv": 1.1,
        "ms:scconv": 1.3,
        "n:linearconv": 0.02,
        "n:octconv": 0.05,
        "n:scconv": 0.1,
    }
    feats, ys = _synthetic(40, random.Random(1), coef)
    cal = Calibration.fit(feats, ys, base_ms=0.5, clock="thread", threads=1)
    assert cal.coef == pytest.approx(coef, abs=1e-8)
    assert [cal.predict(f) for f in feats] == pytest.approx(ys, rel=1e-9)
    assert cal.fit_mape < 1e-9 and cal.n_archs == 40
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal


def test_with_a_strong_ridge_the_calibration_is_the_plain_table():
    feats, ys = _synthetic(
        5, random.Random(2), prior_coefficients(list(family_features([], FAMS, counts=True)), 0.0)
    )
    ys = [2 * y for y in ys]  # the data say "twice the table"; a huge ridge says "the table"
    cal = Calibration.fit(feats, ys, base_ms=0.25, ridge=1e9)
    prior = prior_coefficients(list(feats[0]), 0.25)
    assert cal.coef == pytest.approx(prior, abs=1e-4)


def test_the_total_feature_set_is_one_sum_of_all_entries():
    slots = [("conv", 1.0), ("scconv", 2.0), ("octconv", 0.5)]
    assert make_features(slots, FAMS, "total") == {"1": 1.0, "ms:all": 3.5}
    with pytest.raises(ValueError, match="feature set must be one of total, family, got 'x'"):
        make_features(slots, FAMS, "x")


def _entries(n, rng):
    return [[(rng.choice(FAMS), rng.uniform(0.1, 2.0)) for _ in range(10)] for _ in range(n)]


def test_leave_one_out_error_is_zero_for_an_exact_model_and_picks_the_feature_set():
    rng = random.Random(3)
    entries = _entries(20, rng)
    scale = {"conv": 1.0, "linearconv": 1.0, "octconv": 1.2, "scconv": 2.0}
    by_family = [0.4 + math.fsum(scale[f] * ms for f, ms in e) for e in entries]
    feats = [make_features(e, FAMS, "family") for e in entries]
    assert loo_mape(feats, by_family) < 1e-9
    cal = select_calibration(entries, by_family, FAMS)
    assert cal.kind == "family" and cal.info["loo_mape"]["total"] > 0.01
    assert cal.predict_entries(entries[0], FAMS) == pytest.approx(by_family[0], rel=1e-9)
    # one scale for all, plus noise: the 2-coefficient model leaves out less than the 5
    noisy = [(0.4 + 1.3 * math.fsum(ms for _, ms in e)) * rng.uniform(0.9, 1.1) for e in entries]
    cal = select_calibration(entries, noisy, FAMS)
    assert cal.kind == "total" and set(cal.coef) == {"1", "ms:all"}
    assert cal.info["loo_mape"]["total"] < cal.info["loo_mape"]["family"]
    assert Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal


def test_calibration_input_is_checked():
    f = family_features([("conv", 1.0)], FAMS)
    with pytest.raises(ValueError, match="one measured latency per feature row"):
        Calibration.fit([f], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive numbers of milliseconds"):
        Calibration.fit([f], [0.0])
    cal = Calibration.fit([f, f], [1.0, 1.0])
    with pytest.raises(ValueError, match="feature 'ms:winograd' was not in the calibration"):
        cal.predict({**f, "ms:winograd": 1.0})


def test_calibration_sample_is_distinct_valid_and_spread():
    choices = {f"s{i}": ("conv", "oct(a=0.5)", "scconv(a=0.5,r=2,g=2)") for i in range(20)}
    picks = calibration_sample(choices, 40, random.Random(0))
    assert len(picks) == 40 and len({tuple(p.values()) for p in picks}) == 40
    assert all(set(p) == set(choices) and set(p.values()) <= set(choices["s0"]) for p in picks)
    conv_share = [sum(v == "conv" for v in p.values()) / 20 for p in picks]
    # per-architecture weights: far wider than the binomial spread of uniform sampling
    assert max(conv_share) >= 0.7 and min(conv_share) <= 0.1
    assert calibration_sample(choices, 40, random.Random(0)) == picks
    assert len(calibration_sample({"s": ("conv", "oct(a=0.5)")}, 5, random.Random(0))) == 2


# -- measure_interleaved --------------------------------------------------------------------


class Logged(nn.Module):
    def __init__(self, name, log):
        super().__init__()
        self.name, self.log = name, log
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        self.log.append((self.name, self.training, torch.get_num_threads()))
        return self.conv(x)


def test_interleaved_rounds_visit_every_model_once_per_round_in_shuffled_orders():
    log = []
    models = [Logged(i, log).train() for i in range(5)]
    threads = torch.get_num_threads()
    res = measure_interleaved(models, 4, rounds=4, passes=3, warmup=2)
    assert len(log) == 5 * 2 + 4 * 5 * (1 + 3)
    assert [n for n, _, _ in log[:10]] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    timed = [n for n, _, _ in log[10:]]
    blocks = [timed[i : i + 4] for i in range(0, len(timed), 4)]  # 1 untimed + 3 timed
    assert all(len(set(b)) == 1 for b in blocks)
    orders = [[b[0] for b in blocks[r * 5 : r * 5 + 5]] for r in range(4)]
    assert all(sorted(o) == list(range(5)) for o in orders)
    assert len({tuple(o) for o in orders}) > 1  # shuffled per round (seed 0)
    assert all(not training and t == 1 for _, training, t in log)  # eval mode, one thread
    assert all(m.training for m in models) and torch.get_num_threads() == threads
    for r in res:
        assert len(r.rounds_ms) == 4 and r.clock == "thread" and r.threads == 1
        assert r.median_ms == statistics.median(r.rounds_ms)
        assert r.halves_ms == (
            statistics.median(r.rounds_ms[0::2]),
            statistics.median(r.rounds_ms[1::2]),
        )


def test_interleaved_arguments_are_checked():
    m = [Logged(0, [])]
    with pytest.raises(ValueError, match="rounds must be an integer >= 2, got 1"):
        measure_interleaved(m, 4, rounds=1)
    with pytest.raises(ValueError, match="clock must be one of thread, wall"):
        measure_interleaved(m, 4, clock="tsc")
    with pytest.raises(ValueError, match="models must hold at least one model"):
        measure_interleaved([], 4)
    threads = torch.get_num_threads()
    if threads > 1:
        with pytest.raises(ValueError, match="clock 'thread' needs one intra-op thread"):
            measure_interleaved(m, 4, threads=None)
        assert torch.get_num_threads() == threads


def test_measure_latency_thread_clock_needs_one_thread():
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(ValueError, match="clock 'thread' times CPU passes with one"):
            measure_latency(Logged(0, []), 4, clock="thread")
        torch.set_num_threads(1)
        r = measure_latency(Logged(0, []), 4, clock="thread", warmup=0, repeats=2)
        assert r.clock == "thread" and r.repeats == 2
    finally:
        torch.set_num_threads(old)


# -- the table with a calibration -----------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.a = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)

    def forward(self, x):
        return self.down(torch.relu(self.a(torch.relu(self.stem(x)))))


def test_a_fitted_table_predicts_with_the_calibration_and_caches_it(tmp_path):
    model = Tiny()
    kw = {"base_model": model, "resolution": 8, "base_key": "tiny", "cache_dir": tmp_path}
    t = LatencyTable(find_slots(model, 8), warmup=0, repeats=2, **kw)
    archs = [
        {},
        {"a": "oct(a=0.5)"},
        {"down": "oct(a=0.5)"},
        {"a": "oct(a=0.5)", "down": "oct(a=0.5)"},
    ]
    plain = [t.predict(c) for c in archs]
    assert plain == [t.predict_table(c) for c in archs]
    # "measured" = 1.5 x the table's conv part + 2 x its octconv part + 0.3 ms: a model the
    # features (intercept, ms:conv, ms:octconv) span, fitted exactly without a ridge
    meas = []
    for c in archs:
        f = t.features(c)
        meas.append(0.3 + 1.5 * f["ms:conv"] + 2.0 * f["ms:octconv"])
    cal = t.fit_calibration(archs, meas, key="k", ridge=0.0, kind="family")
    assert cal.coef["ms:conv"] == pytest.approx(1.5) and cal.coef["1"] == pytest.approx(0.3)
    assert [t.predict(c) for c in archs] == pytest.approx(meas, rel=1e-6)
    assert [t.predict_table(c) for c in archs] == plain
    assert cal.fit_mape < 1e-6
    data = json.loads(t.cache_path.read_text())
    assert Calibration.from_dict(data["calibrations"]["k"]) == cal


@pytest.mark.slow
def test_calibrate_measures_a_backbone_once_and_then_reuses_the_cache(tmp_path):
    from search_spaces.space import SearchSpace

    space = SearchSpace("cifar_resnet20", num_classes=10, resolution=16, menu="conv,oct")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        kw = {"num_classes": 10, "resolution": 16, "cache_dir": tmp_path, "clock": "thread"}
        t = LatencyTable.for_backbone("cifar_resnet20", warmup=0, repeats=2, **kw)
        cal = t.calibrate(space.choices, n=6, rounds=2, passes=1, warmup=0)
        assert cal.n_archs == 6 and cal.clock == "thread" and cal.threads == 1
        assert cal.kind in ("total", "family") and set(cal.info["loo_mape"]) == {"total", "family"}
        assert set(cal.coef) == set(make_features([], t.families(), cal.kind))
        assert {k: cal.info[k] for k in ("rounds", "passes", "seed")} == {
            "rounds": 2,
            "passes": 1,
            "seed": 0,
        }
        assert cal.measure_s > 0
        t2 = LatencyTable.for_backbone("cifar_resnet20", warmup=0, repeats=2, **kw)
        assert t2.calibrate(space.choices, n=6, rounds=2, passes=1) == cal
        assert t2.measurements == 0
        arch = space.uniform("oct(a=0.5)")
        assert t2.predict_arch(arch) == pytest.approx(max(0.0, cal.predict(t2.features(arch.ops))))
    finally:
        torch.set_num_threads(old)
