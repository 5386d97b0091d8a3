"""experiments/op_speed.py on one tiny shape: rows, ratios to the convolution, the report."""

import json

import pytest

from experiments import op_speed


@pytest.mark.slow
def test_tiny_run_writes_json_and_a_before_after_report(tmp_path):
    args = ["--shapes", "16@6", "--rounds", "2", "--train-batch", "2", "--no-networks"]
    assert op_speed.main([*args, "--label", "before", "--out-dir", str(tmp_path)]) == 0
    assert op_speed.main([*args, "--label", "after", "--out-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "op_speed.md",
        "op_speed_after.json",
        "op_speed_before.json",
    ]
    result = json.loads((tmp_path / "op_speed_after.json").read_text())
    rows = {r["op"]: r for r in result["layers"]}
    # conv + the default menu's settings that fit 16 channels (rank 4 needs 4 < min(P, S):
    # linear(a=0.25,rank=4) leaves 4 primary filters, so it is not among them).
    assert len(rows) == 9 and "linear(a=0.25,rank=4)" not in rows
    conv = rows["conv"]
    assert conv["flops_ratio"] == 1.0 and conv["eval_b1"]["ratio"] == 1.0
    assert conv["saved_ratio"] == 1.0 and conv["fwd_maps"] == 1.0  # one output map, one input
    assert rows["oct(a=0.5)"]["flops_ratio"] == pytest.approx(0.4375 + 1 / 144, abs=1e-9)
    assert rows["scconv(a=0.5,r=2,g=2)"]["saved_ratio"] > 2
    md = (tmp_path / "op_speed.md").read_text()
    assert "## before" in md and "## after" in md and "## Before / after" in md
    assert "| 16@6 | oct(a=0.5) | 0.44 |" in md
    (tmp_path / "op_speed.md").unlink()
    assert op_speed.main(["--report-only", "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "op_speed.md").read_text() == md


def test_bad_shape_exits_2_and_writes_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        op_speed.main(["--shapes", "64x56", "--out-dir", str(tmp_path / "out")])
    assert e.value.code == 2
    assert "shape '64x56' must look like 64@56" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_report_only_without_results_exits_2_and_writes_nothing(tmp_path, capsys):
    assert op_speed.main(["--report-only", "--out-dir", str(tmp_path)]) == 2
    assert "no op_speed_before.json or op_speed_after.json" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
