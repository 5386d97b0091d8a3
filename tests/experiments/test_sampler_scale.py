"""experiments/sampler_scale.py: a tiny run writes its JSON and report; bad input exits 2."""

import json

import pytest

from experiments.sampler_scale import main


def test_tiny_run_times_every_sampler_at_every_checkpoint(tmp_path, capsys):
    out = tmp_path / "scale"
    args = ["--trials", "30", "--checkpoints", "10,30", "--window", "10", "--chunk", "10"]
    assert main([*args, "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert list(data["checkpoints"]) == ["tpe", "nsga2", "random"]
    for name, cps in data["checkpoints"].items():
        assert len(data["per_trial_ms"][name]) == 30
        assert list(cps) == ["10", "30"]
        assert 0 < cps["10"]["min_ms"] <= cps["10"]["median_ms"] <= cps["10"]["max_ms"]
        assert cps["30"]["total_s"] >= cps["10"]["total_s"] > 0
    report = out.with_suffix(".md").read_text()
    assert "| tpe | " in report and "ms per trial at 30" in report and "Machine: " in report


@pytest.mark.parametrize(
    "args, message",
    [
        (["--samplers", "tpe,cmaes"], "--samplers cmaes must name samplers of tpe, nsga2, random"),
        (["--checkpoints", "100,5000"], "--checkpoints 5000 must lie between --window 50"),
        (["--checkpoints", "a,b"], "--checkpoints must be comma-separated integers"),
        (["--trials", "0"], "--trials must be a positive integer, got 0"),
        (["--report", "nope.json"], "--report 'nope.json' is not a file"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main([*args, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
