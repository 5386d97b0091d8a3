"""Deployment: LinearConv fusion, the fused state dict, and ONNX export checked by onnxruntime."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from evaluators.cost import count_params, get_cost_model
from nas.deploy import (
    ExportError,
    export_model,
    export_onnx,
    fuse_model,
    load_fused_model,
    max_output_diff,
    verify_onnx,
)
from search_spaces.arch import Architecture, OpSpec, build_model
from search_spaces.ops import OPS
from search_spaces.ops.linearconv import LinearConv2d

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

CHOICES = [
    "conv",
    "scconv(a=0.5,r=2,g=2)",
    "oct(a=0.5)",
    "linear(a=0.5,rank=full)",
    "linear(a=0.25,rank=2)",
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These models are tiny: one thread runs them as fast as two, and it does not collapse
    # when other processes share the cores (spinning OpenMP threads then slow torch 5-10x).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _mixed_arch(resolution: int) -> Architecture:
    """cifar_resnet20 with the choices assigned round-robin wherever they fit (conv otherwise)."""
    base = Architecture.uniform("cifar_resnet20", num_classes=10, resolution=resolution)
    specs = [OpSpec.parse_label(c) for c in CHOICES]
    ops = {}
    for i, slot in enumerate(base.slot_list):
        spec = specs[i % len(specs)]
        fits = OPS[spec.op].check_slot(slot, **spec.hparams) is None
        ops[slot.path] = spec if fits else specs[0]
    return Architecture("cifar_resnet20", 10, resolution, "all", ops)


def _trained_like(arch: Architecture) -> torch.nn.Module:
    """A model with non-trivial BatchNorm statistics (a few train-mode passes), in eval mode."""
    torch.manual_seed(0)
    model = build_model(arch)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, arch.resolution, arch.resolution) * 2 + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def mixed():
    arch = _mixed_arch(15)  # odd: 15 -> 8 -> 4 exercises OctConv's crop and SCConv's ceil pool
    return arch, _trained_like(arch)


def test_the_fixture_holds_every_operator(mixed):
    arch, _ = mixed
    assert {spec.op for spec in arch.ops.values()} == {"conv", "scconv", "octconv", "linearconv"}


def test_fusion_replaces_every_linearconv_and_keeps_the_outputs(mixed):
    arch, model = mixed
    n_linear = sum(isinstance(m, LinearConv2d) for m in model.modules())
    assert n_linear > 0
    fused = fuse_model(model)
    assert not any(isinstance(m, LinearConv2d) for m in fused.modules())
    # The trained model is left as it was.
    assert sum(isinstance(m, LinearConv2d) for m in model.modules()) == n_linear
    x = torch.randn(4, 3, 15, 15)
    with torch.no_grad():
        ref, out = model(x), fused(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # The fused model holds exactly the cost model's inference parameter count.
    cost = get_cost_model(arch.backbone, arch.num_classes, arch.resolution, arch.slots).cost(arch)
    assert count_params(fused) == cost.inference_params
    assert count_params(model) == cost.params


def test_max_output_diff_is_zero_for_a_copy_and_positive_for_another_init(mixed):
    arch, model = mixed
    assert max_output_diff(model, fuse_model(model), resolution=15, seeds=(0, 1)) < 1e-5
    torch.manual_seed(1)
    other = build_model(arch).eval()
    assert max_output_diff(model, other, resolution=15) > 1e-3


def test_export_model_writes_a_fused_state_dict_and_a_verified_onnx_file(tmp_path, mixed):
    arch, model = mixed
    report = export_model(model, arch, tmp_path / "export")
    files = {p.name for p in (tmp_path / "export").iterdir()}
    assert files == {"model_fused.pt", "arch.json", "model.onnx", "export.json"}
    assert report.linearconv_fused == sum(isinstance(m, LinearConv2d) for m in model.modules())
    assert report.fused_max_abs_diff < 1e-5
    assert report.onnx_max_abs_diff is not None and report.onnx_max_abs_diff < 1e-4
    # Only standard-domain ONNX operators, and the ones each conv variant lowers to.
    for op in ("Conv", "InstanceNormalization", "Greater", "Where", "Resize", "AveragePool"):
        assert report.onnx_operators.get(op, 0) > 0, op
    proto = onnx.load(str(tmp_path / "export" / "model.onnx"))
    assert {n.domain for n in proto.graph.node} <= {""}
    saved = json.loads((tmp_path / "export" / "export.json").read_text())
    assert saved["format"] == "convnas.export/1" and saved["arch_id"] == arch.arch_id

    # The state dict is plain tensors and rebuilds the deployed model exactly.
    state = torch.load(tmp_path / "export" / "model_fused.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    rebuilt = load_fused_model(
        tmp_path / "export" / "arch.json", tmp_path / "export" / "model_fused.pt"
    )
    x = torch.randn(2, 3, 15, 15)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=1e-5, atol=1e-6)

    # ONNX Runtime on fresh inputs, with a batch size other than the export's.
    session = ort.InferenceSession(
        str(tmp_path / "export" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    x = torch.randn(5, 3, 15, 15)
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert out.shape == (5, 10)
    assert abs(out - ref).max() < 1e-4


@pytest.mark.parametrize("choice", CHOICES)
def test_each_operator_exports_and_matches_onnxruntime(tmp_path, choice):
    spec = OpSpec.parse_label(choice)
    arch = Architecture.uniform(
        "cifar_resnet20", spec, num_classes=10, resolution=16, slots="spatial"
    )
    model = _trained_like(arch)
    fused = fuse_model(model)
    path = export_onnx(fused, tmp_path / "m.onnx", resolution=16)
    assert verify_onnx(path, fused, resolution=16, batch_sizes=(1, 4)) < 1e-4
    assert max_output_diff(model, fused, resolution=16) < 1e-5


def test_octconv_pairs_across_blocks_export_and_match_onnxruntime(tmp_path):
    # every slot OctConv: build_model keeps octave pairs from block to block
    arch = Architecture.uniform(
        "cifar_resnet20", OpSpec.parse_label("oct(a=0.5)"), num_classes=10, resolution=16
    )
    model = _trained_like(arch)
    assert type(model.layer3[1]).__name__ == "OctaveBlock" and model.layer3[1].plan.in_pair
    path = export_onnx(model, tmp_path / "m.onnx", resolution=16)
    assert verify_onnx(path, model, resolution=16, batch_sizes=(1, 4)) < 1e-4


def test_export_without_onnx_writes_only_the_state_dict(tmp_path, mixed):
    arch, model = mixed
    report = export_model(model, arch, tmp_path, onnx=False)
    assert report.onnx is None and report.onnx_max_abs_diff is None
    assert not (tmp_path / "model.onnx").exists()
    assert (tmp_path / "model_fused.pt").is_file()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"exporter": "tflite"}, r"exporter must be one of torchscript, dynamo, got 'tflite'"),
        ({"opset": 3}, r"opset must be an integer between 9 and 23, got 3"),
    ],
)
def test_export_onnx_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_onnx(torch.nn.Identity(), tmp_path / "m.onnx", resolution=8, **kwargs)
    assert not any(tmp_path.iterdir())


def test_a_failed_export_leaves_no_file(tmp_path):
    class Bad(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eig(x[0, 0])[0].real  # no ONNX symbolic for eig

    with pytest.raises(ExportError, match=r"ONNX export failed"):
        export_onnx(Bad(), tmp_path / "m.onnx", resolution=8)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_dynamo_exporter_matches_too(tmp_path, mixed):
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    _, model = mixed
    fused = fuse_model(model)
    path = export_onnx(fused, tmp_path / "m.onnx", resolution=15, exporter="dynamo")
    assert verify_onnx(path, fused, resolution=15) < 1e-4


def test_without_the_onnx_package_the_state_dict_is_still_exported(tmp_path, mixed, monkeypatch):
    arch, model = mixed
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if `pip install convnas[onnx]` was not run
    report = export_model(model, arch, tmp_path)
    assert report.onnx is None and not (tmp_path / "model.onnx").exists()
    assert report.notes == [
        "onnx is not installed, so model.onnx was not written (pip install 'convnas[onnx]')"
    ]
    assert (tmp_path / "model_fused.pt").is_file()


def test_without_onnxruntime_the_onnx_file_is_written_but_not_run(tmp_path, mixed, monkeypatch):
    arch, model = mixed
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    report = export_model(model, arch, tmp_path)
    assert report.onnx == "model.onnx" and (tmp_path / "model.onnx").is_file()
    assert report.onnx_max_abs_diff is None
    assert report.notes == [
        "onnxruntime is not installed: the ONNX file was not run (pip install onnxruntime)"
    ]
