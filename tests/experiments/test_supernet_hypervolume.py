"""The re-scored hypervolume of the supernet-vs-proxy benchmark, against hand-computed areas."""

import pytest

from experiments.supernet_hypervolume import rescored_hypervolume, work_items


def test_rescored_hypervolume_is_the_staircase_area():
    # FLOPs 10..20 scale to 0..1. Points (0.6, 12) -> x 0.2 and (0.5, 11) -> x 0.1:
    # staircase: 0.5 * (0.2 - 0.1) ... area = 0.6 * (1 - 0.2) + 0.5 * (0.2 - 0.1) = 0.53.
    assert rescored_hypervolume([(0.6, 12), (0.5, 11)], 10, 20) == pytest.approx(0.53)
    # A dominated point adds nothing; a point over the budget adds nothing.
    assert rescored_hypervolume([(0.6, 12), (0.5, 13), (0.9, 21)], 10, 20) == pytest.approx(
        0.48
    )
    assert rescored_hypervolume([], 10, 20) == 0.0


def test_work_items_alternate_fronts_and_skip_repeats():
    class A:
        def __init__(self, i):
            self.arch_id = i

    fr = {
        "proxy": [{"arch": A("p0")}, {"arch": A("same")}, {"arch": A("p2")}],
        "supernet": [{"arch": A("same")}],
    }
    keys = [i["key"] for i in work_items(fr)]
    assert keys[:4] == ["hv10-p0-s0", "hv10-same-s0", "hv10-p2-s0", "hv10-p0-s1"]
    assert len(keys) == 6 and len(set(keys)) == 6
