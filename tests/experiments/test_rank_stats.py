"""The rank statistics of the proxy-fidelity benchmark, against hand-computed values."""

import math

import pytest

from experiments.proxy_fidelity_analysis import (
    bootstrap_ci,
    choose_default,
    kendall_tau,
    noise_ceiling,
    paired_difference,
    spearman_rho,
)


def test_kendall_tau_b_counts_pairs_and_ties():
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # One swapped pair of six: (5 - 1) / 6.
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    # A tie in x: pairs (0,1) tied in x, (0,2) and (1,2) concordant -> 2 / sqrt(3 * 2).
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="differ in length"):
        kendall_tau([1, 2], [1])


def test_spearman_rho_uses_average_ranks():
    # d = (0, 0, 1, -1): 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman_rho([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    # Ties get the average rank: x ranks (1.5, 1.5, 3) against (1, 2, 3).
    assert spearman_rho([5, 5, 9], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)


def test_bootstrap_interval_contains_the_estimate_and_is_seeded():
    x = list(range(20))
    y = [v + (3 if v % 4 == 0 else 0) for v in x]
    lo, hi = bootstrap_ci(x, y, kendall_tau, reps=300, seed=1)
    assert lo <= kendall_tau(x, y) <= hi <= 1.0
    assert (lo, hi) == bootstrap_ci(x, y, kendall_tau, reps=300, seed=1)


def test_noise_ceiling_is_one_without_seed_noise_and_none_without_pairs():
    runs = {"a": [0.60, 0.60], "b": [0.50, 0.50], "c": [0.70]}
    c = noise_ceiling(runs)
    assert c["pairs"] == 2 and c["noise_sd"] == 0.0 and c["ceiling"] == 1.0
    assert noise_ceiling({"a": [0.6, 0.5], "b": [0.5], "c": [0.7]}) is None  # one pair


def test_noise_ceiling_matches_the_gaussian_closed_form():
    # 40 architectures, two seeds each, every pair 0.02 apart: noise variance per run
    # 0.02^2 / 2 = 2e-4, so each reference mean (of 2) carries 1e-4.
    runs = {str(i): [0.5 + 0.01 * (i % 8) + 0.01, 0.5 + 0.01 * (i % 8) - 0.01]
            for i in range(40)}
    c = noise_ceiling(runs, reps=3000)
    assert c["noise_sd"] == pytest.approx(math.sqrt(2e-4))
    means = [0.5 + 0.01 * (i % 8) for i in range(40)]
    mu = sum(means) / 40
    true_var = sum((m - mu) ** 2 for m in means) / 39 - 1e-4
    assert c["true_sd"] == pytest.approx(math.sqrt(true_var))
    rho = math.sqrt(true_var / (true_var + 1e-4))
    assert c["ceiling"] == pytest.approx(2 / math.pi * math.asin(rho), abs=0.01)
    lo, hi = c["ceiling_range"]
    assert lo < c["ceiling"] < hi


def test_paired_difference_resamples_architectures_together():
    y = [1, 2, 3, 4, 5, 6]
    perfect, swapped = [1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5]
    d = paired_difference(perfect, swapped, y, reps=500)
    # tau(perfect) = 1; tau(swapped) = (15 - 2 * 3) / 15 = 0.6
    assert d["diff"] == pytest.approx(1 - 0.6)
    # perfect ranks every resample right, so no resample can favour swapped
    assert 0 <= d["lo"] <= d["diff"] <= d["hi"] <= 2 and d["p_above"] > 0.5
    same = paired_difference(perfect, perfect, y, reps=200)
    assert (same["diff"], same["lo"], same["hi"], same["p_above"]) == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1, 2], [1], [1, 2])


def test_choose_default_takes_the_cheapest_candidate_that_clearly_beats_both_baselines():
    n = 20
    ref = {f"a{i}": float(i) for i in range(n)}
    perfect = dict(ref)
    # params: right about the upper half only; FLOPs: backwards
    params = {a: (v if v >= n / 2 else 0.0) for a, v in ref.items()}
    flops = {a: -v for a, v in ref.items()}
    # cheap: tau 0.6 or more but no better than params on the upper half
    cheap = {a: (v if v >= n / 2 else (7 * v) % 10) for a, v in ref.items()}
    scores = {"params alone": params, "FLOPs alone": flops, "cheap": cheap,
              "perfect": perfect, "partial": {"a0": 1.0}}
    cost = {"params alone": 0.0, "FLOPs alone": 0.0, "cheap": 1.0, "perfect": 5.0,
            "partial": 0.1}
    out = choose_default(scores, cost, ref, reps=400)
    by = {c["candidate"]: c for c in out["checked"]}
    assert set(by) == {"cheap", "perfect"}  # baselines and partly scored ones do not compete
    assert by["perfect"]["tau"] == 1.0 and by["perfect"]["eligible"]
    assert by["cheap"]["tau"] >= 0.6 and not by["cheap"]["eligible"]
    assert by["cheap"]["vs"]["params alone"]["p_above"] < 0.9
    assert out["chosen"] == "perfect"
    # made cheaper than "cheap", the perfect proxy is still the one chosen; with no eligible
    # candidate nothing is
    assert choose_default(scores, {**cost, "perfect": 0.5}, ref, reps=400)["chosen"] == "perfect"
    del scores["perfect"]
    assert choose_default(scores, cost, ref, reps=400)["chosen"] is None
