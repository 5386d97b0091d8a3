import json

import pytest
import torch

from search_spaces.arch import (
    ARCH_FORMAT,
    Architecture,
    ArchitectureError,
    OpSpec,
    build_model,
    load_architecture,
)
from search_spaces.ops.linearconv import LinearConv2d
from search_spaces.ops.octconv import OctConv2d
from search_spaces.ops.scconv import SCConv2d

ISSUE_EXAMPLE = {
    "format": ARCH_FORMAT,
    "backbone": "resnet50",
    "num_classes": 100,
    "resolution": 224,
    "slots": "spatial",
    "default": {"op": "scconv", "alpha": 0.5, "r": 2, "g": 2},
    "ops": {"layer4.*": {"op": "octconv", "alpha": 0.5}, "layer1.0.conv2": {"op": "conv"}},
}


def test_issue_example_expands_to_every_slot_with_most_specific_winning():
    arch = Architecture.from_dict(ISSUE_EXAMPLE)
    assert len(arch.ops) == 16
    assert arch.ops["layer1.0.conv2"] == OpSpec.make("conv")
    assert arch.ops["layer4.1.conv2"] == OpSpec.make("octconv", alpha=0.5)
    assert arch.ops["layer2.3.conv2"] == OpSpec.make("scconv", alpha=0.5, r=2, g=2)
    assert arch.to_dict()["ops"].keys() == arch.ops.keys()


def test_exact_path_beats_pattern_and_longer_pattern_beats_shorter():
    d = {
        **ISSUE_EXAMPLE,
        "ops": {
            "layer4.*": {"op": "octconv", "alpha": 0.5},
            "layer4.1.*": {"op": "octconv", "alpha": 0.25},
            "layer4.1.conv2": {"op": "conv"},
            "layer4.2.conv?": {"op": "conv"},
        },
    }
    arch = Architecture.from_dict(d)
    assert arch.ops["layer4.0.conv2"].hparams == {"alpha": 0.5}
    assert arch.ops["layer4.1.conv2"].op == "conv"
    assert arch.ops["layer4.2.conv2"].op == "conv"


def test_equally_specific_conflicting_patterns_are_an_error():
    d = {
        **ISSUE_EXAMPLE,
        "ops": {
            "layer4.*": {"op": "conv"},
            "*.1.conv2": {"op": "conv"},
            "layer*.1": {"op": "conv"},
        },
    }
    with pytest.raises(ArchitectureError, match="matches no slot"):
        Architecture.from_dict(d)
    d = {
        **ISSUE_EXAMPLE,
        "ops": {
            "layer4.?.conv2": {"op": "conv"},
            "layer?.1.conv2": {"op": "octconv", "alpha": 0.5},
        },
    }
    with pytest.raises(ArchitectureError, match="matched equally by"):
        Architecture.from_dict(d)


def test_equal_architectures_have_equal_ids_however_written():
    a = Architecture.from_dict(ISSUE_EXAMPLE)
    explicit = {**a.to_dict()}
    explicit["ops"] = dict(reversed(list(explicit["ops"].items())))
    for spec in explicit["ops"].values():
        if spec["op"] == "octconv":
            spec["alpha"] = 0.5  # float; an int below must hash alike for int params
        if spec["op"] == "scconv":
            spec["r"] = 2.0
    b = Architecture.from_dict(explicit)
    assert a == b and a.arch_id == b.arch_id and hash(a) == hash(b)
    c = Architecture.from_dict({**ISSUE_EXAMPLE, "default": {"op": "conv"}})
    assert c.arch_id != a.arch_id


def test_json_round_trip_and_save_load(tmp_path):
    a = Architecture.from_dict(ISSUE_EXAMPLE)
    path = a.save(tmp_path / "sub" / f"{a.arch_id}.json")
    assert json.loads(path.read_text())["format"] == ARCH_FORMAT
    assert load_architecture(path) == a
    assert list(tmp_path.glob("sub/.*tmp")) == []
    assert path.stat().st_mode & 0o044 == 0o044  # readable like any file the user writes


def test_op_labels_round_trip():
    for spec in (
        OpSpec.make("conv"),
        OpSpec.make("scconv", alpha=0.5, r=2, g=2),
        OpSpec.make("octconv", alpha=0.25),
        OpSpec.make("linearconv", alpha=0.5, rank=None),
        OpSpec.make("linearconv", alpha=0.5, rank=4),
    ):
        assert OpSpec.parse_label(spec.label) == spec
    assert OpSpec.make("scconv", alpha=0.5, r=2, g=2).label == "scconv(a=0.5,r=2,g=2)"
    assert OpSpec.make("linearconv", alpha=0.5, rank=None).label == "linear(a=0.5,rank=full)"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"default": {"op": "deform"}},
            r"default: unknown operator 'deform'; valid operators: conv",
        ),
        (
            {"default": {"op": "scconv", "alpha": 0.5, "r": 2}},
            "default: scconv needs parameter 'g'",
        ),
        (
            {"ops": {"layer1.0.conv2": {"op": "octconv", "alpha": 1.5}}},
            r"slot 'layer1.0.conv2': .*alpha",
        ),
        (
            {"ops": {"layer1.0.conv2": {"op": "octconv", "alpha": "half"}}},
            r"slot 'layer1.0.conv2': octconv parameter 'alpha' must be a number, got 'half'",
        ),
        (
            {"ops": {"layer1.0.conv2": {"op": "octconv", "beta": 1}}},
            r"slot 'layer1.0.conv2': octconv has no parameter 'beta' \(allowed: alpha\)",
        ),
        ({"format": "convnas.arch/2"}, "format must be 'convnas.arch/1', got 'convnas.arch/2'"),
        ({"slots": "most"}, "slots must be one of all, spatial, got 'most'"),
        ({"backbone": "resnet51"}, "unknown backbone 'resnet51'"),
        ({"resolution": 0}, "resolution must be a positive integer, got 0"),
        ({"colour": "red"}, "unknown key 'colour'"),
    ],
)
def test_bad_files_get_one_line_errors(patch, message):
    with pytest.raises(ArchitectureError, match=message) as info:
        Architecture.from_dict({**ISSUE_EXAMPLE, **patch})
    assert "\n" not in str(info.value)


def test_op_not_allowed_on_slot_names_the_slot():
    d = {
        **ISSUE_EXAMPLE,
        "slots": "all",
        "default": {"op": "conv"},
        "ops": {"layer1.0.conv1": {"op": "scconv", "alpha": 0.5, "r": 2, "g": 2}},
    }
    with pytest.raises(ArchitectureError, match=r"slot 'layer1.0.conv1' \(64->64 k1 s1 @56x56\)"):
        Architecture.from_dict(d)


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ArchitectureError, match="not valid JSON"):
        load_architecture(bad)
    with pytest.raises(ArchitectureError, match="does not exist"):
        load_architecture(tmp_path / "missing.json")


def test_build_model_places_each_operator_and_keeps_shapes():
    d = {
        "format": ARCH_FORMAT,
        "backbone": "cifar_resnet20",
        "num_classes": 10,
        "resolution": 32,
        "slots": "all",
        "ops": {
            "layer1.*": {"op": "scconv", "alpha": 0.5, "r": 2, "g": 2},
            "layer2.*": {"op": "octconv", "alpha": 0.5},
            "layer3.*": {"op": "linearconv", "alpha": 0.5, "rank": None},
            "layer3.0.downsample.0": {"op": "conv"},
        },
    }
    arch = Architecture.from_dict(d)
    model = build_model(arch)
    assert isinstance(model.layer1[0].conv1, SCConv2d)
    assert isinstance(model.layer2[1].conv2, OctConv2d)
    assert isinstance(model.layer2[0].downsample[0], OctConv2d)
    assert isinstance(model.layer3[2].conv1, LinearConv2d)
    assert isinstance(model.layer3[0].downsample[0], torch.nn.Conv2d)
    for mode in (True, False):
        model.train(mode)
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_the_papers_example_files_give_the_published_numbers():
    # experiments/paper_numbers.py tabulates these; the files are what users check them with.
    from pathlib import Path

    from evaluators.cost import get_cost_model

    root = Path(__file__).resolve().parents[2] / "examples"

    def cost(name):
        arch = load_architecture(root / name)
        return get_cost_model(arch.backbone, arch.num_classes, arch.resolution, arch.slots).cost(
            arch
        )

    r56 = cost("scconv_r56_cifar.json")  # SCConv paper, Table 2: 79.55 MFLOPs
    assert r56.flops / 1e6 == pytest.approx(79.55, rel=1e-3)
    r50 = cost("scconv_r50_imagenet100.json")  # empirical study, Table IV: 14.70 M params
    assert r50.params / 1e6 == pytest.approx(14.70, rel=2e-3)
    oct50 = cost("oct_r50_a0.5.json")  # every slot at the closed form: below the paper's 2.383 G
    assert oct50.params == 25_557_032 and 1.9e9 < oct50.flops < 2.0e9
