"""A search with ``--evaluator supernet``: what its lines say, and ``--supernet-finetune N``.

Real tiny searches: cifar_resnet20 at 16x16 on synthetic images, a supernet of 2 epochs of 3
steps, 2 validation batches; each run takes a few seconds on one CPU thread.
"""

import json
import re

import pytest

from nas.search import main as search_main

SEARCH = [
    *("--backbone", "cifar_resnet20", "--resolution", "16", "--dataset", "synthetic"),
    *("--budget", "7MFLOPs", "--proxy-subset", "200", "--batch-size", "16", "--seed", "1"),
    *("--device", "cpu", "--evaluator", "supernet"),
    *("--evaluator-option", "supernet_epochs=2", "--evaluator-option", "max_steps_per_epoch=3"),
    *("--evaluator-option", "max_val_batches=2", "--evaluator-option", "synthetic_size=400"),
    *("--evaluator-option", "bn_batches=2", "--storage", "s.db", "--out", "out"),
]  # fmt: skip

TRIAL_LINE = re.compile(r"^trial +(\d+) (\w+) +acc ")


def _run(args, capsys):
    code = search_main([*SEARCH, *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


@pytest.mark.slow
def test_supernet_trial_lines_say_scored_with_bn_recalibration_not_trained(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    out = _run(["--trials", "3"], capsys)
    lines = [ln for ln in out.splitlines() if TRIAL_LINE.match(ln)]
    evaluated = [ln for ln in lines if TRIAL_LINE.match(ln).group(2) == "feasible"]
    assert len(evaluated) == 3, out
    for ln in evaluated:
        assert re.search(r"\] supernet score \(BN recalibrated on 2 batches\) \d+\.\d s$", ln), ln
        assert " ep " not in ln and "trained" not in ln, ln
    table = out[out.index("  trial  arch_id") :].splitlines()
    head = table[0].split()
    assert head[:7] == ["trial", "arch_id", "accuracy", "FLOPs", "params", "latency", "epochs"]
    members = [ln for ln in table[1:] if re.match(r"^ +\d+  [0-9a-f]{16} ", ln)]
    assert members and all(ln.split()[8] == "-" for ln in members), members  # no epochs
    doc = json.loads(next(tmp_path.glob("out/pareto/pareto.json")).read_text())
    assert len(doc["members"]) == len(members)
    for m in doc["members"]:
        assert m["supernet_accuracy"] == m["accuracy"]
