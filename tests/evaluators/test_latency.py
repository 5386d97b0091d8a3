import json
import math
import statistics
import time

import pytest
import torch
from torch import nn

from evaluators.latency import (
    CACHE_FORMAT,
    LatencyResult,
    LatencyTable,
    device_name,
    measure_latency,
)
from search_spaces.arch import Architecture, OpSpec
from search_spaces.slots import find_slots

# Timings are never compared with each other here (the CI machine is shared and noisy); the
# tests check what the code does: how often the model runs, in which mode, on which input,
# how samples are summarised, and what is measured, cached and reused.


class Recorder(nn.Module):
    """Records every call: input shape, memory format, mode and inference mode."""

    def __init__(self, sleep_s: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.sleep_s = sleep_s
        self.calls: list[tuple] = []

    def forward(self, x):
        self.calls.append(
            (
                tuple(x.shape),
                x.is_contiguous(memory_format=torch.channels_last),
                self.training,
                torch.is_inference_mode_enabled(),
                x.dtype,
            )
        )
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return self.conv(x)


class Tiny(nn.Module):
    """stem, two slots with the same shape, one strided slot and a 1x1 projection."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.a = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.proj = nn.Conv2d(16, 16, 1, bias=False)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.b(torch.relu(self.a(x))))
        x = self.proj(torch.relu(self.down(x)))
        return self.head(x.mean((2, 3)))


RES = 8
FAST = {"warmup": 0, "repeats": 2}


def _table(tmp_path, **kw):
    model = Tiny()
    slots = find_slots(model, RES)
    args = {"base_model": model, "resolution": RES, "base_key": "tiny", "cache_dir": tmp_path}
    return LatencyTable(slots, **{**args, **FAST, **kw})


# -- measure_latency ----------------------------------------------------------------------


def test_measure_latency_summarises_its_samples():
    r = measure_latency(nn.Conv2d(3, 4, 3, padding=1), 8, warmup=1, repeats=9)
    xs = list(r.samples_ms)
    assert r.repeats == len(xs) == 9
    assert r.median_ms == pytest.approx(statistics.median(xs))
    assert r.p25_ms <= r.median_ms <= r.p75_ms
    assert r.iqr_ms == pytest.approx(r.p75_ms - r.p25_ms)
    assert r.mean_ms == pytest.approx(statistics.fmean(xs))
    assert r.cv == pytest.approx(statistics.stdev(xs) / statistics.fmean(xs))
    assert r.cv >= 0
    assert r.threads == torch.get_num_threads()
    assert (r.device, r.dtype, r.batch_size) == ("cpu", "float32", 1)
    assert r.device_name == device_name("cpu") != ""
    d = r.to_dict()
    assert "samples_ms" not in d and d["median_ms"] == r.median_ms
    assert json.loads(json.dumps(r.to_dict(samples=True)))["samples_ms"] == xs


def test_quartiles_follow_linear_interpolation():
    r = LatencyResult.from_samples(
        [4.0, 1.0, 3.0, 2.0, 10.0],
        batch_size=1,
        device="cpu",
        device_name="x",
        threads=1,
        dtype="float32",
    )
    # numpy.percentile([1, 2, 3, 4, 10], [25, 50, 75]) == [2, 3, 4]
    assert (r.p25_ms, r.median_ms, r.p75_ms, r.iqr_ms) == (2.0, 3.0, 4.0, 2.0)
    assert r.mean_ms == 4.0
    assert r.cv == pytest.approx(statistics.stdev([1, 2, 3, 4, 10]) / 4.0)
    one = LatencyResult.from_samples(
        [5.0], batch_size=1, device="cpu", device_name="x", threads=1, dtype="float32"
    )
    assert (one.median_ms, one.iqr_ms, one.cv) == (5.0, 0.0, 0.0)


def test_runs_warmup_plus_repeats_passes_in_eval_and_inference_mode():
    m = Recorder()
    m.train()
    r = measure_latency(m, (8, 6), batch_size=3, warmup=4, repeats=5)
    assert len(m.calls) == 4 + 5 and r.repeats == 5
    assert {c[0] for c in m.calls} == {(3, 3, 8, 6)}
    assert all(not training and inference for _, _, training, inference, _ in m.calls)
    assert m.training  # the caller's mode is restored


def test_channels_last_dtype_and_in_channels_reach_the_model():
    m = Recorder()
    m.conv = nn.Conv2d(5, 4, 3, padding=1)
    r = measure_latency(
        m, 6, in_channels=5, warmup=0, repeats=1, channels_last=True, dtype=torch.float64
    )
    assert m.calls == [((1, 5, 6, 6), True, False, True, torch.float64)]
    assert r.dtype == "float64" and m.conv.weight.dtype == torch.float64  # moved in place


def test_min_time_extends_the_repeats_until_enough_time_is_timed():
    m = Recorder(sleep_s=0.002)
    r = measure_latency(m, 4, warmup=0, repeats=2, min_time_s=0.03)
    assert sum(r.samples_ms) >= 30.0
    assert r.repeats >= 2 and len(m.calls) == r.repeats
    # ... and stops at max_repeats
    capped = measure_latency(
        Recorder(sleep_s=0.002), 4, warmup=0, repeats=2, min_time_s=60, max_repeats=3
    )
    assert capped.repeats == 3


def test_samples_are_milliseconds_of_one_pass():
    # sleep never returns early, so the lower bound cannot flake
    short = measure_latency(Recorder(sleep_s=0.002), 4, warmup=0, repeats=3)
    long = measure_latency(Recorder(sleep_s=0.006), 4, warmup=0, repeats=3)
    assert min(short.samples_ms) >= 2.0
    assert min(long.samples_ms) >= 6.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"repeats": 0}, "repeats must be an integer >= 1, got 0"),
        ({"warmup": -1}, "warmup must be an integer >= 0, got -1"),
        ({"device": "tpu"}, "device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
        ({"dtype": torch.int64}, "dtype must be a floating torch dtype"),
        ({"min_time_s": 0}, "min_time_s must be a positive number of seconds or None, got 0"),
        ({"resolution": "32"}, "resolution must be an int or an .H, W. pair of ints, got '32'"),
        ({"resolution": 0}, "resolution must be positive, got 0"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    kwargs = {"resolution": 8, **kwargs}
    res = kwargs.pop("resolution")
    with pytest.raises(ValueError, match=match):
        measure_latency(nn.Identity(), res, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="'cuda' was requested but CUDA is not available"):
        measure_latency(nn.Identity(), 8, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_timing_uses_events():
    m = Recorder()
    r = measure_latency(m, 16, device="cuda", warmup=2, repeats=5)
    assert r.device.startswith("cuda:") and r.threads is None
    assert r.device_name == torch.cuda.get_device_name(0)
    assert len(m.calls) == 7 and all(s > 0 for s in r.samples_ms)
    assert next(m.parameters()).is_cuda


# -- LatencyTable -------------------------------------------------------------------------


def test_table_measures_each_shape_once_and_predicts_the_base_model_for_all_conv(tmp_path):
    t = _table(tmp_path)
    assert [s.path for s in t.slots] == ["a", "b", "down", "proj"]
    assert t.measurements == 0  # lazy
    pred = t.predict({})
    # a and b share one shape: 3 conv entries + the base model
    assert t.measurements == 4 and len(t) == 3
    conv = {s.path: ("conv", {}) for s in t.slots}
    conv_sum = math.fsum(t.per_slot(conv).values())
    # the base model itself, unless its slots timed alone add up to more (base clamped at 0)
    assert pred == pytest.approx(max(t.base_model_ms, conv_sum), rel=1e-12)
    assert t.predict(conv) == pred
    assert t.base_ms == pytest.approx(pred - conv_sum, rel=1e-12)
    assert t.per_slot(conv)["a"] == t.per_slot(conv)["b"]


def test_base_is_never_negative_when_the_entries_outweigh_the_model(tmp_path):
    t = _table(tmp_path)
    conv_sum = math.fsum(t.per_slot({}).values())
    t._base_model_ms = 0.5 * conv_sum  # as timed on a busy machine: less than its parts
    assert t.base_ms == 0.0
    assert t.predict({}) == pytest.approx(conv_sum, rel=1e-12)
    cheap = {s.path: ("octconv", {"alpha": 0.5}) for s in t.slots}
    assert t.predict(cheap) == pytest.approx(math.fsum(t.per_slot(cheap).values()), rel=1e-12)
    assert t.predict(cheap) > 0
    t._base_model_ms = conv_sum + 0.25  # the usual case: the non-slot part is what is left
    assert t.base_ms == pytest.approx(0.25, rel=1e-9)
    assert t.predict({}) == pytest.approx(conv_sum + 0.25, rel=1e-12)


def test_cache_file_is_written_and_reused_by_a_new_table(tmp_path):
    t1 = _table(tmp_path)
    choices = {"a": ("octconv", {"alpha": 0.5}), "proj": "linear(a=0.5,rank=full)"}
    p1 = t1.predict(choices)
    assert t1.measurements == 1 + 3 + 2  # base, 3 conv shapes, 2 other choices
    files = list(tmp_path.glob("*.json"))
    assert files == [t1.cache_path]
    data = json.loads(files[0].read_text())
    assert data["format"] == CACHE_FORMAT
    assert data["context"]["threads"] == torch.get_num_threads()
    assert data["context"]["torch"] == torch.__version__
    assert data["context"]["device_name"] == device_name("cpu")
    assert len(data["entries"]) == 5 and list(data["bases"]) == ["tiny"]
    assert any(k.endswith("|oct(a=0.5)") and k.startswith("8->8,k3,s1") for k in data["entries"])
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind

    t2 = _table(tmp_path)
    assert t2.predict(choices) == p1
    assert t2.measurements == 0


def test_equal_choices_written_differently_share_one_entry(tmp_path):
    t = _table(tmp_path, use_cache=False)
    a = t.entry_ms("a", ("octconv", {"alpha": 0.5}))
    n = t.measurements
    assert t.entry_ms("b", OpSpec.make("octconv", alpha=0.5)) == a  # same shape as "a"
    assert t.entry_ms("a", "oct(a=0.5)") == a
    assert t.entry_ms("a", ("octconv", {"alpha": 1 / 2})) == a
    assert t.measurements == n
    assert t.cache_path is None and not list(tmp_path.iterdir())


def test_another_batch_size_is_another_cache(tmp_path):
    t1 = _table(tmp_path)
    t1.entry_ms("a", ("conv", {}))
    t2 = _table(tmp_path, batch_size=2)
    assert t2.cache_path != t1.cache_path
    t2.entry_ms("a", ("conv", {}))
    assert t2.measurements == 1 and len(list(tmp_path.glob("*.json"))) == 2


def test_two_tables_on_one_cache_merge_their_entries(tmp_path):
    t1, t2 = _table(tmp_path), _table(tmp_path)
    t1.entry_ms("a", ("conv", {}))
    t2.entry_ms("down", ("conv", {}))  # t2 loaded the file before t1 wrote it
    data = json.loads(t1.cache_path.read_text())
    assert len(data["entries"]) == 2


def test_unreadable_cache_is_measured_again(tmp_path):
    t1 = _table(tmp_path)
    t1.entry_ms("a", ("conv", {}))
    t1.cache_path.write_text("{not json")
    t2 = _table(tmp_path)
    t2.entry_ms("a", ("conv", {}))
    assert t2.measurements == 1
    assert len(json.loads(t2.cache_path.read_text())["entries"]) == 1


def test_table_without_base_model_sums_the_slots(tmp_path):
    model = Tiny()
    t = LatencyTable(find_slots(model, RES), cache_dir=tmp_path, **FAST)
    assert t.base_model_ms is None and t.base_ms == 0.0
    assert t.predict({}) == pytest.approx(math.fsum(t.per_slot({}).values()))


def test_warm_measures_every_choice_once(tmp_path):
    t = _table(tmp_path)
    choices = {"a": ("conv", "oct(a=0.5)"), "b": ("conv", "oct(a=0.5)"), "proj": ("conv",)}
    assert t.warm(choices) == 2 + 1 + 1  # two shapes of a/b, proj, and the base
    assert t.warm(choices) == 0


def test_predict_rejects_unknown_slots_and_choices_that_do_not_fit(tmp_path):
    t = _table(tmp_path, use_cache=False)
    with pytest.raises(ValueError, match="'nope' is not a slot of this table"):
        t.predict({"nope": ("conv", {})})
    with pytest.raises(ValueError, match=r"cannot replace slot 'proj' \(16->16 k1 s1 @4x4\)"):
        t.entry_ms("proj", ("scconv", {"alpha": 0.5, "r": 2, "g": 2}))
    with pytest.raises(ValueError, match="unknown operator"):
        t.entry_ms("a", ("winograd", {}))
    with pytest.raises(ValueError, match="an operator choice must be"):
        t.entry_ms("a", 3)
    assert t.measurements == 0


def test_table_arguments_are_validated(tmp_path):
    slots = find_slots(Tiny(), RES)
    with pytest.raises(ValueError, match="resolution is required with base_model"):
        LatencyTable(slots, base_model=Tiny(), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="repeats must be an integer >= 1, got 0"):
        LatencyTable(slots, repeats=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="slots must have distinct paths"):
        LatencyTable([slots[0], slots[0]], cache_dir=tmp_path)


def test_measuring_the_base_leaves_the_callers_model_alone(tmp_path):
    model = Tiny().train()
    t = LatencyTable(
        find_slots(model, RES),
        base_model=model,
        resolution=RES,
        cache_dir=tmp_path,
        dtype=torch.float64,
        **FAST,
    )
    t.base_model_ms  # noqa: B018
    assert model.training and model.stem.weight.dtype == torch.float32


@pytest.mark.slow
def test_predict_arch_of_a_backbone(tmp_path):
    t = LatencyTable.for_backbone(
        "cifar_resnet20", num_classes=10, resolution=16, cache_dir=tmp_path, **FAST
    )
    conv = Architecture.uniform("cifar_resnet20", num_classes=10, resolution=16)
    conv_sum = math.fsum(t.per_slot(dict(conv.ops)).values())
    assert t.predict_arch(conv) == pytest.approx(max(t.base_model_ms, conv_sum), rel=1e-12)
    assert t.base_key == "cifar_resnet20|classes=10|res=16|slots=all"
    oct_arch = Architecture.uniform(
        "cifar_resnet20", OpSpec.make("octconv", alpha=0.5), num_classes=10, resolution=16
    )
    per = t.per_slot(dict(oct_arch.ops))
    assert t.predict_arch(oct_arch) == pytest.approx(t.base_ms + sum(per.values()), rel=1e-12)
