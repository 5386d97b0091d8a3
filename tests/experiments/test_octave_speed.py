"""experiments/octave_speed.py at a tiny size: rows per form, the report, bad input."""

import json

import pytest

from experiments import octave_speed


@pytest.mark.slow
def test_tiny_run_writes_rows_for_every_form_and_the_report(tmp_path):
    args = ["--resolution", "32", "--train-resolution", "32", "--train-batch", "2"]
    args += ["--rounds", "1", "--alphas", "0.5", "--out-dir", str(tmp_path)]
    assert octave_speed.main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["octave_speed.json", "octave_speed.md"]
    rows = {
        r["network"]: r for r in json.loads((tmp_path / "octave_speed.json").read_text())["rows"]
    }
    assert list(rows) == [
        "resnet50",
        "Oct-R50 a=0.5 per-slot",
        "Oct-R50 a=0.5 kept, F.*",
        "Oct-R50 a=0.5 kept",
    ]
    assert rows["resnet50"]["eval_b1"]["ratio"] == 1.0 and rows["resnet50"]["flops_ratio"] == 1.0
    # the pass drops up-sampling and BatchNorm work: fewer FLOPs than the per-slot form
    assert rows["Oct-R50 a=0.5 kept"]["flops_ratio"] < rows["Oct-R50 a=0.5 per-slot"]["flops_ratio"]
    assert rows["Oct-R50 a=0.5 kept, F.*"]["train"]["ratio"] > 0
    assert rows["Oct-R50 a=0.5 kept"]["saved_ratio"] < rows["Oct-R50 a=0.5 per-slot"]["saved_ratio"]
    md = (tmp_path / "octave_speed.md").read_text()
    assert "| Oct-R50 a=0.5 kept, F.* | 0.564 |" in md


@pytest.mark.parametrize(
    "args, message",
    [
        (["--alphas", "0.5,1.5"], "alpha '1.5' must be a number in (0, 1)"),
        (["--alphas", "half"], "alpha 'half' must be a number in (0, 1)"),
        (["--train-batch", "0"], "must be an integer >= 1, got '0'"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        octave_speed.main([*args, "--out-dir", str(tmp_path / "out")])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
