"""The rank statistics of the proxy-fidelity benchmark, against hand-computed values."""

import math

import pytest

from experiments.proxy_fidelity_analysis import bootstrap_ci, kendall_tau, spearman_rho


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
