import math
import re

import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from torch import nn

from search_spaces.backbones import get_backbone
from search_spaces.ops import conv as conv_op
from search_spaces.ops.octconv import (
    INFO,
    OctConv2d,
    build,
    check_slot,
    cost,
    split_channels,
    validate,
)
from search_spaces.slots import Slot, find_slots, set_module


def _slot(cin, cout, k=3, stride=1, groups=1, bias=False, size=(7, 7)):
    h, w = size
    return Slot(
        path="layer.conv",
        in_channels=cin,
        out_channels=cout,
        kernel_size=k,
        stride=stride,
        padding=k // 2,
        groups=groups,
        bias=bias,
        input_size=size,
        output_size=(math.ceil(h / stride), math.ceil(w / stride)),
    )


def _fvcore(module, shape):
    analysis = FlopCountAnalysis(module.eval(), torch.zeros(shape))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis


def _params(module):
    return sum(p.numel() for p in module.parameters())


# --- the paper's numbers -----------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.125, 0.25, 0.5, 0.75])
def test_conv_flops_follow_the_paper(alpha):
    op, x = OctConv2d(64, 64, 3, alpha=alpha), torch.randn(1, 64, 56, 56)
    conv = FlopCountAnalysis(op, x).by_operator()["conv"]
    assert conv == pytest.approx(
        (1 - 0.75 * alpha * (2 - alpha)) * 56 * 56 * 9 * 64 * 64, rel=1e-12
    )


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5])
def test_parameter_count_equals_the_replaced_convolution(alpha):
    # The paper's Fig. 2(b): the four blocks together are exactly the vanilla kernel.
    for cin, cout, k, g, bias in [
        (64, 32, 3, 1, True),
        (32, 64, 1, 1, False),
        (64, 64, 3, 4, True),
    ]:
        op = OctConv2d(cin, cout, k, groups=g, bias=bias, alpha=alpha)
        assert _params(op) == _params(nn.Conv2d(cin, cout, k, groups=g, bias=bias))


def test_odd_spatial_size_keeps_shape():  # layer4 of ResNet-50 at 224² is 7×7
    assert OctConv2d(32, 32, alpha=0.5)(torch.randn(2, 32, 7, 7)).shape == (2, 32, 7, 7)


# --- channel split -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channels, alpha, expected",
    [
        (64, 0.125, (56, 8)),
        (64, 0.5, (32, 32)),
        (16, 0.75, (4, 12)),
        (3, 0.5, (1, 2)),  # 1.5 rounds up
        (50, 0.29, (35, 15)),  # 0.29 * 50 is 14.499999999999998 in floats; still a tie, up
        (10, 0.3, (7, 3)),
        (6, 0.3, (4, 2)),  # 1.8 -> 2
        (8, 0.05, (8, 0)),  # 0.4 -> 0
        (8, 0.0, (8, 0)),
    ],
)
def test_split_channels_rounds_to_nearest_with_ties_up(channels, alpha, expected):
    assert split_channels(channels, alpha) == expected


def test_low_channels_are_the_last_ones():
    op = OctConv2d(6, 10, 3, alpha=0.25)
    assert (op.in_high, op.in_low, op.out_high, op.out_low) == (4, 2, 7, 3)
    assert op.weight_hh.shape == (7, 4, 3, 3) and op.weight_ll.shape == (3, 2, 3, 3)
    assert op.weight_hl.shape == (3, 4, 3, 3) and op.weight_lh.shape == (7, 2, 3, 3)


# --- cost() is exactly fvcore ------------------------------------------------------------------

COST_CASES = [
    # (slot, alpha)
    (_slot(64, 64, 3, size=(56, 56)), 0.5),
    (_slot(16, 16, 3, size=(32, 32)), 0.25),
    (_slot(16, 32, 3, stride=2, size=(32, 32)), 0.5),
    (_slot(32, 64, 1, stride=2, size=(16, 16)), 0.5),  # projection shortcut
    (_slot(64, 256, 1, size=(7, 7)), 0.125),
    (_slot(256, 64, 1, bias=True, size=(7, 7)), 0.75),
    (_slot(128, 128, 3, size=(7, 7)), 0.5),
    (_slot(64, 128, 3, stride=2, size=(7, 7)), 0.25),
    (_slot(24, 40, 5, stride=2, bias=True, size=(15, 15)), 0.25),
    (_slot(40, 40, 5, bias=True, size=(5, 5)), 0.5),
    (_slot(16, 16, 7, size=(9, 9)), 0.5),
    (_slot(32, 32, 3, groups=4, size=(14, 14)), 0.5),
    (_slot(64, 128, 3, stride=2, groups=8, bias=True, size=(7, 7)), 0.25),
    (_slot(12, 20, 3, bias=True, size=(3, 3)), 0.5),
    (_slot(8, 8, 3, stride=2, size=(1, 1)), 0.5),
    (_slot(8, 8, 3, size=(1, 1)), 0.75),
    (_slot(10, 6, 3, size=(6, 4)), 0.3),  # non-square map, 1.8 rounds to 2
    (_slot(3, 5, 3, size=(5, 5)), 0.5),
    (_slot(8, 8, 3, stride=3, size=(7, 7)), 0.5),
    (_slot(16, 32, 3, stride=2, bias=True, size=(7, 7)), 0.0),
    (_slot(32, 32, 3, groups=32, size=(7, 7)), 0.0),  # depthwise is fine as a plain conv
    (_slot(64, 64, 1, size=(5, 5)), 0.0),
]


@pytest.mark.parametrize(
    "slot, alpha", COST_CASES, ids=[f"{s.describe()} a={a}" for s, a in COST_CASES]
)
def test_cost_equals_fvcore_and_parameter_count(slot, alpha):
    assert check_slot(slot, alpha=alpha) is None
    op = build(slot, alpha=alpha)
    predicted = cost(slot, alpha=alpha)
    assert predicted.flops == _fvcore(op, (1, slot.in_channels, *slot.input_size)).total()
    assert predicted.params == predicted.inference_params == _params(op)
    out = op(torch.zeros(1, slot.in_channels, *slot.input_size))
    assert out.shape == (1, slot.out_channels, *slot.output_size)


def test_cost_at_alpha_zero_is_the_convolution_cost():
    for slot, _ in COST_CASES:
        assert cost(slot, alpha=0.0) == conv_op.cost(slot)


def test_cost_counts_the_upsampling_fvcore_reports():
    slot = _slot(16, 32, 3, stride=2, size=(7, 7))
    by_op = _fvcore(build(slot, alpha=0.5), (1, 16, 7, 7)).by_operator()
    assert by_op["upsample_nearest2d"] == 32 * 4 * 4  # C_out x the 4x4 output, pooling is free
    assert by_op["conv"] == cost(slot, alpha=0.5).flops - 32 * 4 * 4


# --- forward against a slow, written-out reference ---------------------------------------------


def _ref_avg_pool(x, s):
    """Average of the pixels inside each s x s window; windows are cut at the border."""
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, -(-h // s), -(-w // s))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = x[:, :, i * s : (i + 1) * s, j * s : (j + 1) * s].mean(dim=(2, 3))
    return out


def _ref_upsample(y, size):
    """Nearest x2: every low pixel becomes a 2x2 block; an odd size drops the last row/col."""
    return y.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)[:, :, : size[0], : size[1]]


def _reference(op, x):
    """Eq. 4 of the paper with four separate convolutions (the split rule is tested above)."""
    in_high, k, g = op.in_high, op.kernel_size, op.groups
    if op.stride > 1:
        x = _ref_avg_pool(x, op.stride)
    size = x.shape[-2:]
    x_high, x_low = x[:, :in_high], _ref_avg_pool(x[:, in_high:], 2)

    def f(inp, weight):
        return F.conv2d(inp, weight, padding=k // 2, groups=g)

    y_hh = f(x_high, op.weight_hh)
    y_hl = f(_ref_avg_pool(x_high, 2), op.weight_hl)
    y_lh = f(x_low, op.weight_lh)
    y_ll = f(x_low, op.weight_ll)
    y_high = y_hh + _ref_upsample(y_lh, size)
    y_low = y_ll + y_hl
    out = torch.cat([y_high, _ref_upsample(y_low, size)], dim=1)
    if op.bias is not None:
        out = out + op.bias.view(1, -1, 1, 1)
    return out


REF_CASES = [
    # (cin, cout, k, stride, groups, bias, alpha, (H, W))
    (8, 8, 3, 1, 1, False, 0.5, (7, 7)),
    (8, 12, 3, 2, 1, True, 0.25, (7, 7)),
    (6, 10, 1, 1, 1, True, 0.5, (5, 5)),
    (16, 16, 5, 2, 2, False, 0.5, (9, 6)),
    (16, 24, 3, 2, 4, True, 0.5, (5, 5)),
    (4, 4, 3, 1, 1, False, 0.75, (1, 1)),
    (8, 8, 3, 2, 1, True, 0.5, (3, 3)),
    (8, 8, 3, 3, 1, False, 0.5, (7, 7)),
    (3, 5, 3, 1, 1, True, 0.5, (8, 8)),
]


@pytest.mark.parametrize("cin, cout, k, stride, groups, bias, alpha, size", REF_CASES)
def test_forward_matches_written_out_four_path_reference(
    cin, cout, k, stride, groups, bias, alpha, size
):
    torch.manual_seed(0)
    op = OctConv2d(cin, cout, k, stride=stride, groups=groups, bias=bias, alpha=alpha).double()
    if bias:
        nn.init.normal_(op.bias)  # zero-initialised otherwise, which would hide a misplaced bias
    x = torch.randn(2, cin, *size, dtype=torch.float64)
    with torch.no_grad():
        expected = _reference(op, x)
        torch.testing.assert_close(op(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "cin, cout, k, stride, groups, bias, size",
    [
        (8, 8, 3, 1, 1, False, (7, 7)),
        (8, 16, 3, 2, 1, True, (7, 7)),
        (16, 8, 1, 2, 1, True, (5, 5)),
        (8, 8, 5, 1, 2, False, (3, 3)),
        (8, 8, 3, 2, 8, True, (1, 1)),  # depthwise
    ],
)
def test_alpha_zero_is_exactly_conv2d(cin, cout, k, stride, groups, bias, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias)
    op = OctConv2d(cin, cout, k, stride=stride, groups=groups, bias=bias, alpha=0.0)
    assert op.weight_hl is None and op.weight_lh is None and op.weight_ll is None
    with torch.no_grad():
        op.weight_hh.copy_(conv.weight)
        if bias:
            op.bias.copy_(conv.bias)
    x = torch.randn(2, cin, *size)
    assert torch.equal(op(x), conv(x))


def test_gradcheck_through_input_weights_and_bias():
    torch.manual_seed(0)
    op = OctConv2d(4, 6, 3, stride=2, bias=True, alpha=0.5).double()
    names = [n for n, _ in op.named_parameters()]
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in op.parameters()]

    def fn(inp, *ps):
        return torch.func.functional_call(op, dict(zip(names, ps)), (inp,))

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_low_part_of_a_constant_input_stays_constant_across_odd_borders():
    # Pooling averages only real pixels, so a constant map pools to the same constant even in
    # the cut last window of a 7x7 map; a zero-padded average would darken that row/column.
    op = OctConv2d(4, 4, 1, alpha=0.5)
    with torch.no_grad():
        for w in (op.weight_hh, op.weight_hl, op.weight_lh, op.weight_ll):
            w.fill_(1.0)
        out = op(torch.ones(1, 4, 7, 7))
    assert torch.equal(out, torch.full((1, 4, 7, 7), 4.0))


def test_initialisation_follows_kaiming_fan_out_of_the_whole_kernel():
    torch.manual_seed(0)
    op = OctConv2d(256, 256, 3, bias=True, alpha=0.5)
    weights = torch.cat(
        [w.flatten() for w in (op.weight_hh, op.weight_hl, op.weight_lh, op.weight_ll)]
    )
    assert weights.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.01)
    assert torch.equal(op.bias, torch.zeros(256))


@pytest.mark.parametrize("size", [7, 5, 3, 1])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_shapes_in_train_and_eval(size, stride, k, alpha):
    op = OctConv2d(8, 12, k, stride=stride, alpha=alpha, bias=True)
    x = torch.randn(2, 8, size, size, requires_grad=True)
    expected = (2, 12, math.ceil(size / stride), math.ceil(size / stride))
    out = op.train()(x)
    assert out.shape == expected
    out.square().sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    with torch.no_grad():
        assert op.eval()(x).shape == expected


def test_extra_repr_names_hyperparameters_and_split():
    text = repr(OctConv2d(16, 32, 3, stride=2, groups=2, bias=True, alpha=0.25))
    assert "16, 32, kernel_size=3, stride=2, alpha=0.25, groups=2, bias=True" in text
    assert "high/low in=12/4 out=24/8" in text


# --- validation and check_slot -----------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1.0, -0.1, 1.5, float("nan"), float("inf")])
def test_validate_rejects_alpha_out_of_range(alpha):
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\)"):
        validate(alpha=alpha)


@pytest.mark.parametrize("alpha", ["0.5", True, None])
def test_validate_rejects_alpha_of_wrong_type(alpha):
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\), got"):
        validate(alpha=alpha)


def test_validate_accepts_the_range_ends():
    validate(alpha=0.0)
    validate(alpha=0)
    validate(alpha=0.999)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((0, 8), {}, "in_channels must be an integer >= 1, got 0"),
        ((8.0, 8), {}, "in_channels must be an integer >= 1, got 8.0"),
        ((8, -1), {}, "out_channels must be an integer >= 1, got -1"),
        ((8, 8, 4), {}, "kernel_size must be odd, got 4"),
        ((8, 8, 0), {}, "kernel_size must be an integer >= 1, got 0"),
        ((8, 8), {"stride": 0}, "stride must be an integer >= 1, got 0"),
        ((8, 8), {"padding": 0}, "padding must be None or kernel_size // 2 = 1"),
        ((8, 8), {"groups": 3}, "groups must divide in_channels=8 and out_channels=8, got 3"),
        ((8, 8), {"bias": 1}, "bias must be True or False, got 1"),
        ((8, 8), {"alpha": 1.0}, r"alpha must be in \[0, 1\)"),
        ((8, 8), {"alpha": 0.05}, "alpha=0.05 leaves 0 low-frequency channels of in_channels=8"),
        ((16, 4), {"alpha": 0.1}, "alpha=0.1 leaves 0 low-frequency channels of out_channels=4"),
        ((2, 2), {"alpha": 0.875}, "alpha=0.875 leaves 0 high-frequency channels of in_channels=2"),
        (
            (12, 12),
            {"groups": 4, "alpha": 0.25},
            re.escape("groups=4 does not divide every part of the alpha=0.25 split 9+3 -> 9+3"),
        ),
    ],
)
def test_constructor_errors_name_the_argument(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        OctConv2d(*args, **kwargs)


@pytest.mark.parametrize(
    "slot, alpha, reason",
    [
        (_slot(32, 32, groups=32), 0.5, "(depthwise OctConv is not supported)"),
        (_slot(16, 16, groups=16), 0.25, "groups=16 does not divide every part"),
        (_slot(32, 64, groups=8), 0.125, "split 28+4 -> 56+8"),
        (_slot(8, 8), 0.05, "alpha=0.05 leaves 0 low-frequency channels of in_channels=8"),
        (_slot(64, 4, 1), 0.1, "alpha=0.1 leaves 0 low-frequency channels of out_channels=4"),
        (_slot(2, 2), 0.875, "alpha=0.875 leaves 0 high-frequency channels of in_channels=2"),
    ],
)
def test_check_slot_refuses_with_the_reason_the_constructor_raises(slot, alpha, reason):
    got = check_slot(slot, alpha=alpha)
    assert got is not None and reason in got
    with pytest.raises(ValueError, match=re.escape(got)):
        build(slot, alpha=alpha)


def test_alpha_zero_fits_every_slot():
    for slot in (_slot(32, 32, groups=32), _slot(8, 8), _slot(1, 1, 1), _slot(12, 12, groups=4)):
        assert check_slot(slot, alpha=0.0) is None


def test_check_slot_and_cost_validate_alpha():
    with pytest.raises(ValueError, match="alpha"):
        check_slot(_slot(8, 8), alpha=1.0)
    with pytest.raises(ValueError, match="alpha"):
        build(_slot(8, 8), alpha=-0.5)


def test_info_row():
    assert (INFO.name, INFO.label, dict(INFO.hparams)) == ("octconv", "oct", {"alpha": float})
    assert INFO.build is build and INFO.cost is cost and INFO.check_slot is check_slot
    assert INFO.validate is validate


# --- in a real backbone ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alpha",
    [0.5, pytest.param(0.25, marks=pytest.mark.slow), pytest.param(0.75, marks=pytest.mark.slow)],
)
def test_cifar_resnet20_cost_with_every_slot_replaced(alpha):
    model = get_backbone("cifar_resnet20", 10).eval()
    slots = find_slots(model, 32, "all")
    base = _fvcore(model, (1, 3, 32, 32)).total()
    base_params = _params(model)
    for slot in slots:
        assert check_slot(slot, alpha=alpha) is None
        set_module(model, slot.path, build(slot, alpha=alpha))
    oct_costs = [cost(s, alpha=alpha) for s in slots]
    conv_costs = [conv_op.cost(s) for s in slots]
    expected = base - sum(c.flops for c in conv_costs) + sum(c.flops for c in oct_costs)
    assert _fvcore(model, (1, 3, 32, 32)).total() == expected
    assert _params(model) == base_params  # OctConv keeps every parameter of the convolution
    assert model.train()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.slow
def test_resnet50_at_224_cost_with_every_slot_replaced():
    # Bottlenecks with 1x1 slots, stride-2 3x3 and shortcut slots, and 7x7 maps in layer4.
    model = get_backbone("resnet50", 1000).eval()
    slots = find_slots(model, 224, "all")
    base = _fvcore(model, (1, 3, 224, 224)).total()
    for slot in slots:
        assert check_slot(slot, alpha=0.5) is None
        set_module(model, slot.path, build(slot, alpha=0.5))
    delta = sum(cost(s, alpha=0.5).flops - conv_op.cost(s).flops for s in slots)
    assert _fvcore(model, (1, 3, 224, 224)).total() == base + delta
    assert delta < 0


# --- CUDA --------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("size, stride", [(7, 1), (7, 2), (5, 2), (1, 1)])
def test_cuda_matches_cpu(size, stride):
    torch.manual_seed(0)
    op = OctConv2d(16, 24, 3, stride=stride, groups=4, bias=True, alpha=0.5).double()
    nn.init.normal_(op.bias)
    x = torch.randn(2, 16, size, size, dtype=torch.float64)
    with torch.no_grad():
        expected = op(x)
        got = op.cuda()(x.cuda()).cpu()
    assert got.shape == (2, 24, math.ceil(size / stride), math.ceil(size / stride))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
