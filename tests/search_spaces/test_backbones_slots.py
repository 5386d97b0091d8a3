import pytest
import torch
from torch import nn

from search_spaces.backbones import backbone_names, default_resolution, get_backbone
from search_spaces.slots import find_slots


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _closed_form_cifar_params(depth: int, classes: int) -> int:
    n = (depth - 2) // 6
    total = 3 * 16 * 9 + 2 * 16  # stem conv + BN
    for c_in, c in ((16, 16), (16, 32), (32, 64)):
        total += 9 * c_in * c + 9 * c * c + 4 * c  # first block: two 3x3 convs + two BNs
        if c_in != c:
            total += c_in * c + 2 * c  # 1x1 projection shortcut + BN
        total += (n - 1) * (18 * c * c + 4 * c)
    return total + 64 * classes + classes


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_resnet_parameter_counts_follow_closed_form(depth):
    assert _params(get_backbone(f"cifar_resnet{depth}", 10)) == _closed_form_cifar_params(depth, 10)


def test_cifar_resnet56_matches_scconv_paper_baseline():
    assert round(_params(get_backbone("cifar_resnet56", 10)) / 1e6, 2) == 0.86


def test_cifar_resnet_follows_torchvision_naming():
    names = dict(get_backbone("cifar_resnet20", 10).named_modules())
    for path in ("conv1", "layer1.0.conv1", "layer3.2.conv2", "layer2.0.downsample.0", "fc"):
        assert path in names
    assert isinstance(names["fc"], nn.Linear) and names["fc"].out_features == 10


def test_resnet50_cifar_has_cifar_stem():
    m = get_backbone("resnet50_cifar", 100)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, nn.Identity)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet51'.*cifar_resnet20.*resnet50"):
        get_backbone("resnet51", 10)


def test_num_classes_is_validated():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2, got 1"):
        get_backbone("resnet18", 1)


def test_backbone_names_cover_torchvision_and_cifar():
    names = backbone_names()
    for n in ("cifar_resnet56", "resnet50_cifar", "resnet50", "mobilenet_v2", "densenet121"):
        assert n in names
    assert default_resolution("cifar_resnet20") == 32 and default_resolution("resnet50") == 224


def test_resnet50_slots_all_and_spatial():
    m = get_backbone("resnet50", 1000)
    all_slots = find_slots(m, 224, "all")
    spatial = find_slots(m, 224, "spatial")
    # 53 convs: stem excluded -> 52; 16 bottlenecks have one 3x3 each
    assert len(all_slots) == 52 and len(spatial) == 16
    assert all(s.kernel_size == 3 for s in spatial)
    by_path = {s.path: s for s in all_slots}
    assert "conv1" not in by_path
    ds = by_path["layer2.0.downsample.0"]
    assert (ds.in_channels, ds.out_channels, ds.kernel_size, ds.stride) == (256, 512, 1, 2)
    assert ds.input_size == (56, 56) and ds.output_size == (28, 28)
    assert by_path["layer4.2.conv2"].input_size == (7, 7)


def test_spatial_3x3_share_of_resnet50_flops():
    # why "all" is the default: the 3x3 slots hold ~1.85 of ResNet-50's 4.1 GFLOPs
    from search_spaces.ops import OPS

    spatial = find_slots(get_backbone("resnet50", 1000), 224, "spatial")
    flops = sum(OPS["conv"].cost(s).flops for s in spatial)
    assert 1.8e9 < flops < 1.9e9


def test_grouped_and_depthwise_convs_are_recorded_with_groups():
    slots = find_slots(get_backbone("mobilenet_v2", 10), 64, "spatial")
    assert slots and all(s.kernel_size == 3 for s in slots)
    assert any(s.groups == s.in_channels == s.out_channels for s in slots)


def test_slot_policy_and_resolution_are_validated():
    m = get_backbone("cifar_resnet20", 10)
    with pytest.raises(ValueError, match="slot policy must be one of all, spatial, got 'some'"):
        find_slots(m, 32, "some")
    with pytest.raises(ValueError, match="resolution must be a positive number of pixels, got 0"):
        find_slots(m, 0, "all")
