import inspect
import json
import math
import random

import numpy as np
import pytest
import torch

from evaluators.config import proxy_score
from evaluators.cost import get_cost_model
from evaluators.metrics import accuracy_objective
from evaluators.objectives import (
    EvalConfig,
    Evaluator,
    Metrics,
    StateStore,
    StoredEvaluation,
    evaluate,
    validate_config,
)
from search_spaces.arch import Architecture, OpSpec
from search_spaces.space import SearchSpace

# Tiny proxies: 32 training images in batches of 16 (2 steps per epoch), 16 validation images;
# architectures at 16x16 unless a test says otherwise.
TINY = dict(proxy_subset=32, val_fraction=1 / 3, batch_size=16, latency_repeats=3)


def _cfg(**kw):
    return EvalConfig(**{**TINY, **kw})


def _arch(seed=0, backbone="cifar_resnet20", resolution=16, num_classes=10):
    space = SearchSpace(backbone, num_classes=num_classes, resolution=resolution)
    return space.sample(random.Random(seed))


# A dataset that cannot be read: any attempt to load data raises DatasetUnavailable, so an
# evaluation that returns proves it never touched the data (never trained).
def _no_data(tmp_path, **kw):
    return _cfg(dataset="cifar10", data_dir=str(tmp_path / "empty"), download=False, **kw)


# -- budgets: cheap metrics first, stop early -------------------------------------------------
def test_over_the_flops_and_params_budget_stops_before_building(tmp_path):
    arch = _arch()
    cost = get_cost_model("cifar_resnet20", 10, 16, "all").cost(arch)
    cfg = _no_data(tmp_path, max_flops=cost.flops / 2, max_params=cost.params - 1)
    m = Evaluator(cfg).evaluate(arch)
    assert (m.flops, m.params, m.inference_params) == (
        cost.flops,
        cost.params,
        cost.inference_params,
    )
    assert m.feasible is False
    assert m.violations["flops"] == pytest.approx(1.0)
    assert m.violations["params"] == pytest.approx(1 / (cost.params - 1))
    assert m.latency_ms is None and m.accuracy is None and m.fidelity == 0  # not built
    assert m.failure is None and m.extra["stopped_at"] == "cost"


def test_within_budget_has_no_violations(tmp_path):
    arch = _arch()
    cost = get_cost_model("cifar_resnet20", 10, 16, "all").cost(arch)
    ev = Evaluator(_no_data(tmp_path, max_flops=cost.flops, max_params=cost.params))
    m = ev.cost_metrics(arch)
    assert m.feasible and m.violations == {}


def test_over_the_latency_budget_is_measured_but_never_trained(tmp_path):
    m = Evaluator(_no_data(tmp_path, max_latency_ms=1e-6, latency_screen=None)).evaluate(_arch())
    assert m.latency_source == "measured" and m.latency_ms > 0 and m.latency_iqr_ms >= 0
    assert m.feasible is False
    assert m.violations == {"latency": pytest.approx(m.latency_ms / 1e-6 - 1)}
    assert m.accuracy is None and m.fidelity == 0 and m.extra["stopped_at"] == "latency"


def test_latency_screen_skips_a_candidate_predicted_over_and_measures_the_others(tmp_path):
    arch = _arch()
    table = {"latency_cache_dir": str(tmp_path / "cache")}
    over = Evaluator(
        _no_data(tmp_path, max_latency_ms=1e-6, latency_repeats=2, extra=table)
    ).evaluate(arch)
    # Stopped on the prediction alone: no measurement (no IQR), no data read, no training.
    assert over.extra["stopped_at"] == "latency screen" and over.feasible is False
    assert over.latency_source == "predicted" and over.latency_iqr_ms is None
    assert over.latency_ms == over.extra["latency_predicted_ms"] > 1e-6 * 1.25
    assert over.violations == {"latency": pytest.approx(over.latency_ms / 1e-6 - 1)}
    # A prediction inside budget x (1 + latency_screen) is measured, and the measurement counts.
    under = Evaluator(
        _cfg(max_latency_ms=1e6, latency_repeats=2, proxy_epochs=1, extra=table)
    ).evaluate(arch, 0)
    assert under.latency_source == "measured" and under.latency_iqr_ms is not None
    assert under.extra["latency_predicted_ms"] == pytest.approx(over.latency_ms)
    assert under.feasible and "stopped_at" not in under.extra


def test_the_dataset_is_only_read_when_training(tmp_path):
    from evaluators.data import DatasetUnavailable

    ev = Evaluator(_no_data(tmp_path, latency="off"))
    screen = ev.evaluate(_arch(), 0)  # nothing to measure at fidelity 0: no model, no data
    assert screen.fidelity == 0 and screen.latency_ms is None and screen.failure is None
    with pytest.raises(DatasetUnavailable):
        ev.evaluate(_arch(), 1)


# -- fidelity levels --------------------------------------------------------------------------
def test_fidelity_levels_resume_and_match_straight_training():
    arch = _arch(1)
    cfg = _cfg(proxy_epochs=2, fidelities=(1, 2), zero_cost="naswot")
    store = StateStore(4)
    ev = Evaluator(cfg, state_store=store)
    screen = ev.evaluate(arch, 0)
    assert screen.fidelity == 0 and screen.accuracy is None and screen.train_time_s == 0.0
    assert screen.zero_cost is not None and screen.latency_source == "measured"
    one = ev.evaluate(arch, 1)
    assert one.fidelity == 1 and one.extra["proxy"]["resumed_from_epoch"] == 0
    assert one.extra["proxy"]["schedule_epochs"] == 2 and one.extra["proxy"]["steps"] == 2
    assert (one.latency_ms, one.zero_cost) == (screen.latency_ms, screen.zero_cost)  # reused
    two = ev.evaluate(arch, 2)
    assert two.fidelity == 2 and two.extra["proxy"]["resumed_from_epoch"] == 1
    assert two.extra["proxy"]["steps"] == 4
    assert two.train_time_s == pytest.approx(
        one.train_time_s + two.extra["proxy"]["train_time_this_call_s"]
    )
    assert store[arch.arch_id].state.epochs_done == 2
    # The same config evaluated straight to 2 epochs in a fresh evaluator: same numbers.
    straight = Evaluator(cfg).evaluate(arch, 2)
    assert straight.extra["proxy"]["resumed_from_epoch"] == 0
    assert straight.accuracy == two.accuracy
    assert straight.extra["proxy"]["val_loss"] == two.extra["proxy"]["val_loss"]
    # Asking again for a fidelity already reached costs nothing.
    again = ev.evaluate(arch, 2)
    assert again.extra["cached"] is True and again.accuracy == two.accuracy
    # Asking for less than is stored trains a fresh, shorter run and keeps the stored one.
    fresh_one = ev.evaluate(arch, 1)
    assert (
        fresh_one.accuracy == one.accuracy
        and fresh_one.extra["proxy"]["val_loss"] == (one.extra["proxy"]["val_loss"])
    )
    assert store[arch.arch_id].state.epochs_done == 2


def test_evaluation_is_deterministic_on_cpu():
    arch = _arch(2)
    a = Evaluator(_cfg(proxy_epochs=1, latency="off")).evaluate(arch)
    b = Evaluator(_cfg(proxy_epochs=1, latency="off")).evaluate(arch)
    assert a.accuracy is not None and 0.0 <= a.accuracy <= 1.0
    assert a.accuracy == b.accuracy
    assert a.extra["proxy"]["val_loss"] == b.extra["proxy"]["val_loss"]
    assert a.extra["proxy"]["train_images"] == 32 and a.extra["proxy"]["val_images"] == 16


def test_the_score_is_exp_minus_the_validation_loss_or_top1_of_the_same_run():
    arch = _arch(2)
    by_loss = Evaluator(_cfg(proxy_epochs=1, latency="off")).evaluate(arch)  # the default
    by_top1 = Evaluator(_cfg(proxy_epochs=1, latency="off", proxy_score="accuracy")).evaluate(arch)
    loss = by_loss.extra["proxy"]["val_loss"]
    assert loss > 0 and by_loss.extra["proxy"]["score"] == "loss"
    # one and the same training: only what the accuracy objective reads differs
    assert (by_loss.accuracy, loss) == (by_top1.accuracy, by_top1.extra["proxy"]["val_loss"])
    assert by_loss.score == pytest.approx(math.exp(-loss), rel=1e-12)
    assert by_top1.score == by_top1.accuracy and by_top1.extra["proxy"]["score"] == "accuracy"
    assert accuracy_objective(by_loss) == by_loss.score
    assert accuracy_objective(Metrics("x", 1, 1, 1, accuracy=0.25)) == 0.25  # custom evaluator


@pytest.mark.parametrize(
    ("kind", "accuracy", "loss", "expected"),
    [
        ("loss", 0.5, 0.0, 1.0),
        ("loss", 0.5, math.log(4), 0.25),
        ("accuracy", 0.5, 2.0, 0.5),
        ("loss", 0.5, None, None),
        ("loss", 0.5, float("nan"), None),
        ("accuracy", None, 2.0, None),
    ],
)
def test_proxy_score_closed_forms(kind, accuracy, loss, expected):
    got = proxy_score(kind, accuracy, loss)
    assert got == (None if expected is None else pytest.approx(expected, rel=1e-12))


def test_an_unknown_proxy_score_is_refused():
    with pytest.raises(ValueError, match="proxy score must be one of loss, accuracy, got 'top5'"):
        proxy_score("top5", 0.5, 1.0)


def test_an_image_folder_candidate_scores_the_same_after_other_candidates(tmp_path):
    # Image folders are read by persistent DataLoader workers whose torchvision transforms draw
    # from the worker's global RNG: before the fix, an architecture evaluated after another
    # one saw other random crops than evaluated first (val loss 2.87 against 2.72 on
    # cifar10-mini), so a search's scores depended on the order of its trials.
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "train" / f"c{c}").mkdir(parents=True)
        for i in range(16):
            arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "train" / f"c{c}" / f"{i}.png")
    cfg = EvalConfig(dataset=f"imagefolder:{tmp_path}", proxy_subset=30, val_size=12,
                     batch_size=8, latency="off", proxy_epochs=1, num_workers=1,
                     latency_repeats=3)  # fmt: skip
    a, b = _arch(1, num_classes=3), _arch(2, num_classes=3)
    first = Evaluator(cfg)
    first.evaluate(a)
    after_a = first.evaluate(b)
    alone = Evaluator(cfg).evaluate(b)
    assert after_a.failure is None and alone.failure is None
    assert after_a.extra["proxy"]["val_loss"] == alone.extra["proxy"]["val_loss"]
    assert after_a.score == alone.score


def test_module_level_evaluate_has_the_plugin_signature_and_reuses_its_evaluator():
    params = list(inspect.signature(evaluate).parameters)
    assert params[:3] == ["arch", "config", "fidelity"]
    arch = _arch(3)
    cfg = _cfg(proxy_epochs=1, latency="off")
    m1 = evaluate(arch, cfg, 1)
    m2 = evaluate(arch, cfg, 1)  # the cached evaluator's store already has it
    assert m2.extra.get("cached") is True and m2.accuracy == m1.accuracy
    assert Metrics.from_dict(json.loads(json.dumps(m1.to_dict()))) == m1


def test_non_finite_loss_is_recorded_as_a_failure_not_raised():
    m = Evaluator(_cfg(proxy_epochs=1, latency="off", lr=1e30)).evaluate(_arch(4))
    assert m.failure is not None and m.failure.startswith("non-finite loss at epoch 1 step ")
    assert m.accuracy is None and m.feasible is True
    json.dumps(m.to_dict())  # still a JSON record


@pytest.mark.slow
def test_predicted_latency_needs_no_measurement_of_the_candidate(tmp_path):
    arch = Architecture.uniform("cifar_resnet20", OpSpec.make("conv"), resolution=16)
    cfg = _cfg(
        latency="predict",
        latency_repeats=2,
        proxy_epochs=1,
        extra={"latency_cache_dir": str(tmp_path)},
    )
    m = Evaluator(cfg).evaluate(arch, 0)
    assert m.latency_source == "predicted" and m.latency_ms > 0 and m.latency_iqr_ms is None
    assert list(tmp_path.glob("*.json"))  # the table was cached on disk


@pytest.mark.slow
def test_a_calibrated_prediction_measures_the_calibration_once_and_uses_it(tmp_path):
    arch = Architecture.uniform("cifar_resnet20", OpSpec.make("octconv", alpha=0.5), resolution=16)
    cfg = _cfg(
        latency="predict",
        latency_repeats=2,
        proxy_epochs=1,
        extra={"latency_cache_dir": str(tmp_path), "latency_calibrate": 4},
    )
    ev = Evaluator(cfg)
    m = ev.evaluate(arch, 0)
    table = next(iter(ev._latency_tables.values()))
    assert table.calibration is not None and table.calibration.n_archs == 4
    assert m.latency_source == "predicted"
    assert m.latency_ms == pytest.approx(
        max(0.0, table.calibration.predict(table.features(arch.ops)))
    )
    cached = json.loads(next(tmp_path.glob("*.json")).read_text())["calibrations"]
    assert list(cached) == [table.calibration_key(4, 0)]


def test_state_store_is_a_bounded_lru():
    s = StateStore(2)
    s["a"], s["b"] = (
        StoredEvaluation(Metrics("a", 1, 1, 1)),
        StoredEvaluation(Metrics("b", 1, 1, 1)),
    )
    s["a"]  # touch: b is now the oldest
    s["c"] = StoredEvaluation(Metrics("c", 1, 1, 1))
    assert list(s) == ["a", "c"]
    with pytest.raises(ValueError, match="max_entries must be a positive integer, got 0"):
        StateStore(0)


# -- configuration errors ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"latency": "guess"}, "latency must be one of measure, predict, off, got 'guess'"),
        ({"proxy_score": "top1"}, "proxy_score must be one of loss, accuracy, got 'top1'"),
        ({"fidelities": (2, 1)}, r"fidelities must be strictly increasing .* got \[2, 1\]"),
        ({"proxy_epochs": 0}, "proxy_epochs must be an integer >= 1, got 0"),
        ({"zero_cost": "snip"}, "zero_cost must be None or one of naswot, synflow, grad_norm"),
        ({"max_flops": -5}, "max_flops must be a number > 0 or None, got -5"),
        ({"latency": "off", "max_latency_ms": 5.0}, "max_latency_ms needs latency 'measure'"),
        ({"optimizer": "lion"}, "optimizer must be one of sgd, adam, adamw, got 'lion'"),
        ({"dataset": "mnist"}, "dataset 'mnist' is not one of"),
        ({"val_fraction": 1.0}, r"val_fraction must be a number in \(0, 1\), got 1.0"),
        ({"extra": {"augment": "mixup"}}, "extra\\['augment'\\] must be 'cifar', 'imagenet'"),
        (
            {"extra": {"latency_calibrate": 1}},
            "extra\\['latency_calibrate'\\] must be an integer >= 2, got 1",
        ),
    ],
)
def test_bad_configs_raise_value_errors_naming_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        validate_config(_cfg(**kw))
    with pytest.raises(ValueError, match=match):
        Evaluator(_cfg(**kw))


def test_bad_fidelity_and_class_mismatch_are_value_errors():
    ev = Evaluator(_cfg(latency="off"))
    with pytest.raises(ValueError, match="fidelity must be a non-negative integer or None, got -1"):
        ev.evaluate(_arch(), -1)
    arch100 = _arch(num_classes=100)
    with pytest.raises(ValueError, match="the architecture has 100 classes but dataset"):
        ev.evaluate(arch100, 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_cuda_device_without_cuda_is_a_config_error():
    with pytest.raises(ValueError, match="device is 'cuda' but CUDA is not available"):
        validate_config(_cfg(device="cuda"))


# -- every backbone family --------------------------------------------------------------------
def _check_family(backbone, resolution):
    arch = _arch(5, backbone=backbone, resolution=resolution)
    cfg = _cfg(
        proxy_epochs=1,
        proxy_subset=16,
        batch_size=8,
        latency_repeats=2,
        zero_cost="grad_norm",
        extra={"max_val_batches": 1},
    )
    m = evaluate(arch, cfg)
    cost = get_cost_model(backbone, 10, resolution, "all").cost(arch)
    assert m.failure is None, m.failure
    assert (m.flops, m.params) == (cost.flops, cost.params)
    assert 0.0 <= m.accuracy <= 1.0 and m.fidelity == 1 and m.train_time_s > 0
    assert m.latency_ms > 0 and m.zero_cost is not None
    assert m.extra["proxy"]["resolution"] == resolution and m.extra["proxy"]["steps"] == 2


def test_evaluate_cifar_resnet20():
    _check_family("cifar_resnet20", 32)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backbone", "resolution"), [("resnet18", 32), ("mobilenet_v2", 32), ("resnet50_cifar", 32)]
)
def test_evaluate_other_backbone_families(backbone, resolution):
    _check_family(backbone, resolution)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_evaluate_on_cuda():
    arch = _arch(6)
    m = Evaluator(_cfg(device="cuda", proxy_epochs=1, zero_cost="synflow")).evaluate(arch)
    assert m.failure is None and m.extra["proxy"]["amp"] in ("bfloat16", "float16")
    assert m.extra["proxy"]["device"].startswith("cuda") and m.latency_ms > 0


@pytest.mark.parametrize(
    "n_images, expected_val, expected_train", [(4000, 1000, 3000), (10000, 2000, 3500)]
)
def test_default_validation_split_is_a_quarter_of_train_at_most_2000(
    n_images, expected_val, expected_train
):
    # The proxy's validation rule (issue 10): val_fraction 0.25 of the train split, capped at
    # val_size 2,000 images, whatever the training subset (3,500 images by default: all that
    # is left of a 4,000-image split).
    c = EvalConfig(extra={"synthetic_size": n_images})
    assert (c.val_fraction, c.val_size, c.proxy_subset) == (0.25, 2000, 3500)
    train, val = Evaluator(c).loaders(8, 10)
    assert len(val.dataset) == expected_val
    assert len(train.dataset) == expected_train


def test_val_size_is_validated():
    with pytest.raises(ValueError, match=r"val_size must be an integer >= 1 or None, got 0"):
        validate_config(EvalConfig(val_size=0))
