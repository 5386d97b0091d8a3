"""``python -m nas.retrain``: training, outputs, resume, checkpoints, bad input, torchrun."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from evaluators.cost import get_cost_model
from nas.retrain import (
    CHECKPOINT_FORMAT,
    TIMING_KEYS,
    CheckpointError,
    load_checkpoint,
    main,
    save_checkpoint,
)
from search_spaces.arch import load_architecture

REPO = Path(__file__).resolve().parents[2]

# A tiny Pareto-member-like architecture: every operator once, cifar_resnet20 at 16x16.
ARCH = {
    "format": "convnas.arch/1",
    "backbone": "cifar_resnet20",
    "num_classes": 10,
    "resolution": 16,
    "slots": "all",
    "ops": {
        "layer1.0.conv2": {"op": "scconv", "alpha": 0.5, "r": 2, "g": 2},
        "layer2.1.conv2": {"op": "linearconv", "alpha": 0.5, "rank": None},
        "layer3.0.conv1": {"op": "octconv", "alpha": 0.5},
    },
}
# Small and quick: 8 (or 4) steps per epoch. No augmentation: the synthetic classes are
# oriented gratings, which a horizontal flip would turn into one another.
TINY = ["--dataset", "synthetic", "--batch-size", "32", "--augment", "none", "--no-progress"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These models are tiny: one thread runs them as fast as two, and it does not collapse
    # when other processes share the cores (spinning OpenMP threads then slow torch 5-10x).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def arch_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arch") / "member.json"
    path.write_text(json.dumps(ARCH))
    return path


@pytest.fixture(scope="module")
def finished(arch_file, tmp_path_factory) -> Path:
    """One complete 6-epoch run with latency and export, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("run") / "run"
    # Cosine annealing: the settled last epochs make the outcome robust to BatchNorm noise.
    args = [str(arch_file), *TINY, "--subset", "256", "--epochs", "6", "--schedule", "cosine"]
    args += ["--out", str(out)]
    assert main([*args, "--latency-repeats", "3", "--export"]) == 0
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(torch.get_num_threads())}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _deterministic(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in lines]


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- a full run ------------------------------------------------------------------------------


def test_training_beats_chance(finished):
    result = json.loads((finished / "result.json").read_text())
    history = _lines(finished / "metrics.jsonl")
    assert result["test_top1"] > 0.2  # 10 classes: chance is 0.1
    assert history[-1]["train_top1"] > history[0]["train_top1"] + 0.2
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.5


def test_a_run_writes_every_output(finished, arch_file):
    arch = load_architecture(arch_file)
    assert {p.name for p in finished.iterdir()} == {
        "arch.json", "config.json", "metrics.jsonl", "curves.png", "last.pt", "best.pt",
        "result.json", "export",
    }  # fmt: skip
    assert load_architecture(finished / "arch.json") == arch
    assert (finished / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    config = json.loads((finished / "config.json").read_text())
    assert config["recipe"]["name"] == "cifar"  # auto: a 16-pixel architecture
    assert config["recipe"]["epochs"] == 6 and config["recipe"]["augment"] == "none"
    assert config["recipe"]["schedule"] == "cosine" and config["recipe"]["lr"] == 0.05
    assert config["recipe"]["linearconv_lambda"] == 1e-2  # the paper's, filled in
    assert config["recipe"]["linearconv_every"] == 10
    assert config["run"]["dataset"] == "synthetic" and config["run"]["seed"] == 0
    assert (config["train_images"], config["steps_per_epoch"]) == (256, 8)

    history = _lines(finished / "metrics.jsonl")
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    lrs = [0.05 * 0.5 * (1 + math.cos(math.pi * e / 6)) for e in range(6)]
    assert [h["lr"] for h in history] == pytest.approx(lrs, rel=1e-12)
    # λ·Lc is added on global steps 0, 10, 20, ...: 8 steps per epoch leave epoch 5 without one.
    with_reg = [h["epoch"] for h in history if h["reg_loss"] is not None]
    assert with_reg == [e for e in range(1, 7) if any(s % 10 == 0 for s in range(8 * e - 8, 8 * e))]
    assert with_reg == [1, 2, 3, 4, 6] and all(h["reg_loss"] > 0 for h in history if h["reg_loss"])
    best = max(history, key=lambda h: h["val_top1"])
    assert history[-1]["best_val_top1"] == best["val_top1"]

    result = json.loads((finished / "result.json").read_text())
    cost = get_cost_model("cifar_resnet20", 10, 16, "all").cost(arch)
    assert (result["flops"], result["params"]) == (cost.flops, cost.params)
    assert result["inference_params"] == cost.inference_params
    assert result["latency_ms"] > 0 and result["latency_batch"] == 1
    assert result["test_images"] == 256
    # The test split is measured on the best validation epoch's weights.
    assert result["weights"] == "best"
    assert result["weights_epoch"] == result["best_epoch"] == history.index(best) + 1
    assert load_checkpoint(finished / "best.pt")["epoch"] == result["best_epoch"]
    assert load_checkpoint(finished / "last.pt")["epoch"] == 6


def test_export_files_load_and_match(finished):
    from nas.deploy import load_fused_model
    from search_spaces.arch import build_model

    report = json.loads((finished / "export" / "export.json").read_text())
    assert report["linearconv_fused"] == 1
    assert report["fused_max_abs_diff"] < 1e-5
    assert report["onnx_max_abs_diff"] is not None and report["onnx_max_abs_diff"] < 1e-4
    fused = load_fused_model(
        finished / "export" / "arch.json", finished / "export" / "model_fused.pt"
    )
    trained = build_model(load_architecture(finished / "arch.json"))
    trained.load_state_dict(load_checkpoint(finished / "best.pt")["model"])
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), trained.eval()(x), rtol=1e-5, atol=1e-6)


def test_checkpoints_hold_only_tensors_and_plain_values(finished):
    ck = torch.load(finished / "last.pt", weights_only=True)  # raises on anything else
    assert ck["format"] == CHECKPOINT_FORMAT
    assert set(ck) >= {"model", "optimizer", "scheduler", "scaler", "rng", "epoch", "best_metric"}
    assert ck["scheduler"]["last_epoch"] == 6
    assert ck["optimizer"]["state"]  # SGD momentum buffers are saved
    assert isinstance(ck["rng"][0]["torch"], torch.Tensor)
    assert len(ck["rng"][0]["python"]["internal"]) == 625


def test_resuming_a_finished_run_only_reports_and_exports(finished, tmp_path, capsys, arch_file):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    shutil.rmtree(out / "export")
    before = _snapshot(out)
    assert main([str(arch_file), "--out", str(out), "--resume", "--export", "--no-onnx"]) == 0
    assert "is complete (6 epochs); nothing to train" in capsys.readouterr().out
    assert _snapshot(out) == before  # nothing trained or rewritten
    assert (out / "export" / "model_fused.pt").is_file()
    assert not (out / "export" / "model.onnx").exists()


# -- resume equals an uninterrupted run ------------------------------------------------------


def test_resume_continues_exactly_where_the_run_stopped(arch_file, tmp_path):
    # A 2-epoch run extended to 3 with --resume equals a 3-epoch run (the schedule does not
    # depend on the epoch count here: milestones 100 and 150 are never reached).
    common = [str(arch_file), *TINY, "--subset", "128", "--no-latency"]
    assert main([*common, "--epochs", "3", "--out", str(tmp_path / "straight")]) == 0
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "split")]) == 0
    assert main([str(arch_file), "--resume", "--epochs", "3", "--out", str(tmp_path / "split"),
                 "--no-latency", "--no-progress"]) == 0  # fmt: skip
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    assert _same_state(a["model"], b["model"])
    assert _deterministic(_lines(tmp_path / "straight" / "metrics.jsonl")) == _deterministic(
        _lines(tmp_path / "split" / "metrics.jsonl")
    )


@pytest.mark.slow
def test_a_killed_and_resumed_run_equals_an_uninterrupted_one(arch_file, tmp_path):
    args = [str(arch_file), *TINY, "--subset", "128", "--epochs", "5", "--no-latency"]
    # The same thread count as this process: CPU kernels then reduce in the same order.
    env = _env()
    killed = tmp_path / "killed"
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.retrain", *args, "--out", str(killed)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    metrics = killed / "metrics.jsonl"
    deadline = time.monotonic() + 120
    # Kill it with SIGKILL as soon as the checkpoint of epoch 2 is in place (its metrics line
    # is written right after), i.e. somewhere inside epoch 3.
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    done = load_checkpoint(killed / "last.pt")["epoch"]
    assert 2 <= done < 5
    assert not (killed / "result.json").exists()

    assert main([*args, "--out", str(killed), "--resume"]) == 0
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0

    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(killed / "last.pt")
    assert _same_state(a["model"], b["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    lines_a = _lines(tmp_path / "straight" / "metrics.jsonl")
    lines_b = _lines(killed / "metrics.jsonl")
    assert len(lines_b) == 5
    assert _deterministic(lines_a) == _deterministic(lines_b)
    ra = json.loads((tmp_path / "straight" / "result.json").read_text())
    rb = json.loads((killed / "result.json").read_text())
    assert (ra["test_top1"], ra["test_loss"]) == (rb["test_top1"], rb["test_loss"])


# -- checkpoints -----------------------------------------------------------------------------


def _good_state() -> dict:
    return {
        "format": CHECKPOINT_FORMAT, "arch_id": "0123456789abcdef", "epoch": 1,
        "model": {"w": torch.arange(6.0)}, "optimizer": {}, "scheduler": {}, "rng": [],
        "recipe": {}, "run": {},
    }  # fmt: skip


class _Opaque:
    """A picklable object that weights_only loading refuses."""


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"model": lambda x: x}, Exception),  # cannot be pickled at all
        ({"model": _Opaque()}, Exception),  # pickles, but is refused when read back
    ],
)
def test_a_failed_checkpoint_write_never_replaces_a_good_one(tmp_path, bad, error):
    path = tmp_path / "last.pt"
    save_checkpoint(_good_state(), path)
    good = path.read_bytes()
    with pytest.raises(error):
        save_checkpoint({**_good_state(), **bad}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.arange(6.0))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "pickle", "foreign"])
def test_damaged_checkpoints_raise_a_one_line_error(tmp_path, damage):
    path = tmp_path / "last.pt"
    save_checkpoint(_good_state(), path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(bytes(range(256)) * 40)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "pickle":
        torch.save({**_good_state(), "model": _Opaque()}, path)
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    expected = "is not a nas.retrain checkpoint" if damage == "foreign" else "truncated, corrupted"
    with pytest.raises(CheckpointError, match=expected) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_load_checkpoint_checks_the_architecture(tmp_path):
    save_checkpoint(_good_state(), tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"belongs to architecture 0123456789abcdef, not ff"):
        load_checkpoint(tmp_path / "c.pt", arch_id="ff")
    with pytest.raises(CheckpointError, match=r"does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_resume_from_a_damaged_checkpoint_exits_2_and_changes_nothing(
    finished, tmp_path, capsys, arch_file, damage
):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    last = out / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3] if damage == "truncate" else os.urandom(4096))
    before = _snapshot(out)
    assert main([str(arch_file), "--out", str(out), "--resume", "--epochs", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: checkpoint ") and "truncated, corrupted" in err
    assert "\n" not in err and "Traceback" not in err
    assert _snapshot(out) == before


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--recipe", "resnet"], r"unknown recipe 'resnet'; valid recipes: auto, cifar"),
        (["--epochs", "0"], r"argument --epochs: epochs must be an integer >= 1, got 0"),
        (["--epochs", "-2"], r"argument --epochs: epochs must be an integer >= 1, got -2"),
        (["--lr", "fast"], r"argument --lr: lr must be a number, got 'fast'"),
        (["--schedule", "poly"], r"schedule must be one of multistep, step, cosine, constant"),
        (["--device", "tpu"], r"argument --device: must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_flags_exit_2_with_one_line(arch_file, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main([str(arch_file), *TINY, "--out", str(out), *extra])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["missing.json", "--dataset", "synthetic"],
            r"architecture file '.*missing.json' does not",
        ),
        (["ARCH", "--dataset", "mnist"], r"dataset 'mnist' is not one of 'cifar10', 'cifar100'"),
        (["ARCH"], r"--dataset is required"),
        (["ARCH", "--dataset", "synthetic:100"], r"has 100 classes but the architecture was built"),
        (
            ["ARCH", "--dataset", "cifar100"],
            r"has 100 classes but the architecture was built for 10",
        ),
        (["ARCH", *TINY, "--subset", "16"], r"batch_size 32 is larger than the 16 training images"),
        (["ARCH", *TINY, "--resume"], r"nothing to resume in '.*out'"),
        (["ARCH", *TINY, "--resume", "nope.pt"], r"checkpoint 'nope.pt' does not exist"),
        (["ARCH", *TINY, "--config", "nope.json"], r"config file 'nope.json' does not exist"),
        (["ARCH", *TINY, "--val-fraction", "0", "--select", "best"], r"--select best needs a"),
        (["ARCH", *TINY, "--device", "cuda:7"], r"(CUDA is not available|does not exist)"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    arch_file, tmp_path, capsys, args, message
):
    out = tmp_path / "out"
    argv = [str(arch_file) if a == "ARCH" else a for a in args]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert re.search(message, err), err
    assert not out.exists()


def test_an_existing_run_is_never_overwritten(finished, arch_file, capsys):
    before = _snapshot(finished)
    assert main([str(arch_file), *TINY, "--out", str(finished)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert _snapshot(finished) == before


def test_resume_refuses_a_checkpoint_of_another_architecture(finished, tmp_path, capsys):
    other = dict(ARCH, ops={"layer1.0.conv1": {"op": "octconv", "alpha": 0.25}})
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    assert main([str(path), "--resume", str(finished / "last.pt"), "--out", str(tmp_path)]) == 2
    assert "belongs to architecture" in capsys.readouterr().err


def test_resume_refuses_to_change_the_data(finished, arch_file, capsys):
    assert main([str(arch_file), "--out", str(finished), "--resume", "--seed", "3"]) == 2
    assert "--seed 3 differs from the resumed run's 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["missing.json", "--dataset", "synthetic"],
        ["ARCH", "--dataset", "synthetic", "--epochs", "0"],
        ["ARCH", "--dataset", "synthetic", "--recipe", "fast"],
    ],
)
def test_the_command_exits_2_without_a_traceback(arch_file, tmp_path, argv):
    argv = [str(arch_file) if a == "ARCH" else a for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "nas.retrain", *argv, "--out", str(tmp_path / "o")],
        cwd=REPO, env=_env(), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "error" in proc.stderr
    assert not (tmp_path / "o").exists()


# -- multi-process and GPU -------------------------------------------------------------------


@pytest.mark.slow
def test_torchrun_with_two_processes_trains_and_only_rank_0_writes(arch_file, tmp_path):
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "nas.retrain", str(arch_file), *TINY, "--subset", "128", "--epochs", "2",
         "--latency-repeats", "2", "--out", str(out)],
        cwd=REPO, env=_env(), capture_output=True, text=True,
        timeout=170,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("epoch 1/2") == 1  # rank 1 prints nothing
    config = json.loads((out / "config.json").read_text())
    assert (config["world_size"], config["per_process_batch"]) == (2, 16)
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2
    assert result["test_images"] == 128  # the shards add up to the whole split, once each
    assert [h["epoch"] for h in _lines(out / "metrics.jsonl")] == [1, 2]
    assert len(load_checkpoint(out / "last.pt")["rng"]) == 2  # both ranks' RNG states
    assert not list(out.glob(".*"))  # no stray temporary files


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_uses_amp_and_channels_last(arch_file, tmp_path):
    out = tmp_path / "gpu"
    args = [str(arch_file), *TINY, "--subset", "256", "--epochs", "2", "--device", "cuda"]
    assert main([*args, "--out", str(out), "--latency-repeats", "5"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["device"].startswith("cuda") and config["channels_last"] is True
    assert config["amp"] in ("bfloat16", "float16")
    result = json.loads((out / "result.json").read_text())
    assert result["latency_ms"] > 0
    torch.load(out / "last.pt", weights_only=True)


@pytest.mark.parametrize(("augment", "crop"), [("cifar", 1.0), ("none", 1.0), ("imagenet", 0.875)])
def test_retrain_on_an_image_folder_evaluates_the_way_it_trained(tmp_path, augment, crop):
    # The test split of an image-folder run is cropped like the training pipeline: whole
    # images after cifar augmentation (or none), the ImageNet 0.875 centre crop after imagenet.
    from PIL import Image

    from nas.retrain import build_parser
    from nas.train.run import Run as _Run

    for split, n in (("train", 8), ("test", 2)):
        for c in ("a", "b"):
            (tmp_path / "img" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (10 * i, 80, 160)).save(
                    tmp_path / "img" / split / c / f"{i}.png"
                )
    arch = dict(ARCH, num_classes=2, resolution=32)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch))
    args = build_parser().parse_args(
        [str(path), "--dataset", f"imagefolder:{tmp_path / 'img'}", "--augment", augment,
         "--batch-size", "4", "--epochs", "1", "--out", str(tmp_path / "run")]
    )
    run = _Run(args)
    run._prepare()
    run._load_data()
    assert run.test_set.eval_crop == crop
    assert not (tmp_path / "run").exists()  # preparing writes nothing
