"""`nas.retrain --compile` on CPU with an SCConv architecture (slow: inductor needs minutes).

Imports torch, pytest and nas.retrain only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas.retrain import main

ARCH = {
    "format": "convnas.arch/1",
    "backbone": "cifar_resnet20",
    "num_classes": 10,
    "resolution": 16,
    "slots": "all",
    "ops": {"layer1.0.conv2": {"op": "scconv", "alpha": 0.5, "r": 2, "g": 2}},
}
TINY = ["--dataset", "synthetic", "--batch-size", "32", "--augment", "none", "--no-progress"]


@pytest.mark.slow
def test_compiled_training_of_an_scconv_network_matches_eager(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        arch = tmp_path / "arch.json"
        arch.write_text(json.dumps(ARCH))
        common = [str(arch), *TINY, "--subset", "96", "--epochs", "1", "--no-latency"]
        assert main([*common, "--out", str(tmp_path / "eager")]) == 0
        assert main([*common, "--compile", "--out", str(tmp_path / "compiled")]) == 0
    finally:
        torch.set_num_threads(before)

    def first_epoch(run: str) -> dict:
        return json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[0])

    eager, compiled = first_epoch("eager"), first_epoch("compiled")
    # The same steps on the same batches: the losses agree up to float rounding.
    assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-3)
    assert (tmp_path / "compiled" / "best.pt").is_file()
