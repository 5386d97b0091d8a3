"""experiments/op_speed.py on one tiny shape: rows, ratios to the convolution, the report."""

import json

import pytest
import torch

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
    assert len(rows) == 12 and "linear(a=0.25,rank=4)" not in rows
    conv = rows["conv"]
    assert conv["flops_ratio"] == 1.0 and conv["eval_b1"]["ratio"] == 1.0
    assert conv["saved_ratio"] == 1.0 and conv["fwd_maps"] == 1.0  # one output map, one input
    # 16@6, 3×3: the four paths are 7/16 of the conv's MACs; fvcore adds the pooling of the
    # whole input (16 channels x 36 pixels = 1/144 of the conv) per slot, and of X^H only
    # (8 channels: 1/288) in the pair form, where no input is split or output merged.
    assert rows["oct(a=0.5)"]["flops_ratio"] == pytest.approx(0.4375 + 1 / 144, abs=1e-9)
    pair = rows["oct(a=0.5) pair"]
    assert pair["flops_ratio"] == pytest.approx(0.4375 + 1 / 288, abs=1e-9)
    assert pair["saved_ratio"] < rows["oct(a=0.5)"]["saved_ratio"]
    assert rows["scconv(a=0.5,r=2,g=2)"]["saved_ratio"] > 2
    assert result["threads"] == 1 and result["clock"] == "thread_time"
    md = (tmp_path / "op_speed.md").read_text()
    assert "## before" in md and "## after" in md and "## Before / after" in md
    assert "| 16@6 | oct(a=0.5) | 0.44 |" in md
    (tmp_path / "op_speed.md").unlink()
    assert op_speed.main(["--report-only", "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "op_speed.md").read_text() == md


@pytest.mark.slow
def test_two_threads_write_their_own_file_timed_on_the_wall_clock(tmp_path):
    args = ["--shapes", "16@4", "--rounds", "1", "--train-batch", "2", "--no-networks"]
    assert op_speed.main([*args, "--threads", "2", "--out-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["op_speed.md", "op_speed_after_t2.json"]
    result = json.loads((tmp_path / "op_speed_after_t2.json").read_text())
    assert result["threads"] == 2 and result["clock"] == "perf_counter"
    assert "## after_t2: 2 torch threads, perf_counter" in (tmp_path / "op_speed.md").read_text()


def test_cuda_without_a_gpu_exits_2_and_writes_nothing(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    args = ["--shapes", "16@4", "--no-networks", "--device", "cuda", "--out-dir", str(tmp_path)]
    assert op_speed.main(args) == 2
    assert "--device cuda: torch sees no CUDA device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_cuda_result_renders_after_the_cpu_runs_with_its_peak_column(tmp_path):
    args = ["--shapes", "16@4", "--rounds", "1", "--train-batch", "2", "--no-networks"]
    assert op_speed.main([*args, "--out-dir", str(tmp_path)]) == 0
    cpu = json.loads((tmp_path / "op_speed_after.json").read_text())
    # The file a --device cuda run writes, made from the CPU one (no GPU here): same rows plus
    # the peak-memory ratio; the report must list it after the CPU run, with a peak column.
    cuda = dict(cpu, device="cuda", clock="cuda_event")
    cuda["layers"] = [dict(r, peak_ratio=2.5 if r["op"] != "conv" else 1.0) for r in cpu["layers"]]
    (tmp_path / "op_speed_after_cuda.json").write_text(json.dumps(cuda))
    assert op_speed.main(["--report-only", "--out-dir", str(tmp_path)]) == 0
    md = (tmp_path / "op_speed.md").read_text()
    assert md.index("## after: 1 torch thread, thread_time") < md.index(
        "## after_cuda: CUDA, cuda_event"
    )
    cuda_part = md[md.index("## after_cuda") :]
    assert "| saved | maps fwd/bwd | peak |" in cuda_part
    assert "| 16@4 | conv | 1.00 |" in cuda_part and cuda_part.count(" 2.50 |") == 11
    assert "peak |" not in md[: md.index("## after_cuda")]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_times_with_events_and_reports_peak_memory(tmp_path):
    args = ["--shapes", "16@8", "--rounds", "2", "--train-batch", "4", "--no-networks"]
    assert op_speed.main([*args, "--device", "cuda", "--out-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "op_speed_after_cuda.json").read_text())
    assert result["device"] == "cuda" and result["clock"] == "cuda_event"
    rows = {r["op"]: r for r in result["layers"]}
    assert rows["conv"]["peak_ratio"] == 1.0 and rows["scconv(a=0.5,r=2,g=2)"]["peak_ratio"] > 1


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
