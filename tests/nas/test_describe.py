import json
import subprocess
import sys
from pathlib import Path

import pytest

from nas.describe import main
from search_spaces.arch import ARCH_FORMAT

ROOT = Path(__file__).resolve().parents[2]
ARCH = {
    "format": ARCH_FORMAT,
    "backbone": "cifar_resnet20",
    "num_classes": 10,
    "resolution": 32,
    "slots": "all",
    "default": {"op": "octconv", "alpha": 0.5},
    "ops": {
        "layer1.*": {"op": "scconv", "alpha": 0.5, "r": 2, "g": 2},
        "layer3.*": {"op": "linearconv", "alpha": 0.5, "rank": None},
    },
}


@pytest.fixture()
def arch_file(tmp_path):
    p = tmp_path / "arch.json"
    p.write_text(json.dumps(ARCH))
    return p


def test_json_output_sums_to_total_and_verifies_against_fvcore(arch_file, capsys):
    assert main([str(arch_file), "--json", "--verify"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["slots"]) == 20
    # layer2 is OctConv throughout: build_model keeps its octave pairs, which fvcore counts
    assert out["octave_pass_flops"] < 0
    slot_sum = sum(s["flops"] for s in out["slots"])
    assert out["flops"] == out["fixed_flops"] + slot_sum + out["octave_pass_flops"]
    assert out["params"] == out["fixed_params"] + sum(s["params"] for s in out["slots"])
    assert out["fvcore_flops"] == out["flops"]
    # Fusing a LinearConv stores the full k x k x C1 x C2 weight (bias-free, like the conv it
    # replaces) instead of its primary filters and coefficients; no other op changes.
    fused = {s["slot"]: s["inference_params"] - s["params"] for s in out["slots"]}
    expected = {}
    for s in out["slots"]:
        c_in, rest = s["shape"].split("->")
        c_out, k = int(rest.split()[0]), int(rest.split()[1][1:])
        c_in = int(c_in)
        if s["op"] == "linear(a=0.5,rank=full)":
            primary = c_out // 2
            learned = primary * c_in * k * k + (c_out - primary) * primary
            expected[s["slot"]] = c_out * c_in * k * k - learned
        else:
            expected[s["slot"]] = 0
    assert fused == expected
    assert out["inference_params"] == out["params"] + sum(expected.values())
    ops = {s["slot"]: s["op"] for s in out["slots"]}
    assert ops["layer1.0.conv1"] == "scconv(a=0.5,r=2,g=2)"
    assert ops["layer2.0.downsample.0"] == "oct(a=0.5)"
    assert ops["layer3.2.conv2"] == "linear(a=0.5,rank=full)"


def test_table_output_names_every_slot(arch_file, capsys):
    assert main([str(arch_file)]) == 0
    out = capsys.readouterr().out
    assert out.count("layer") == 20 and "total" in out and "multiply-accumulates" in out


def test_bad_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**ARCH, "default": {"op": "octconv", "alpha": 2}}))
    r = subprocess.run(
        [sys.executable, "-m", "nas.describe", str(bad)], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and "alpha" in r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
