import copy
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from torch import nn
from torch.func import functional_call

from search_spaces.arch import Architecture, OpSpec, build_model
from search_spaces.ops import OPS, get_op
from search_spaces.ops.linearconv import (
    REG_EVERY_DEFAULT,
    REG_LAMBDA_DEFAULT,
    LinearConv2d,
    build,
    check_slot,
    correlation_loss,
    cost,
    fuse_linearconv,
    linearconv_regularization,
    split_filters,
    validate,
)
from search_spaces.slots import Slot

logging.getLogger("fvcore").setLevel(logging.ERROR)


def make_slot(cin, cout, k, stride=1, hw=(8, 8), groups=1, bias=False):
    out = tuple((s + 2 * (k // 2) - k) // stride + 1 for s in hw)
    return Slot("x", cin, cout, k, stride, k // 2, groups, bias, tuple(hw), out)


def fvcore_count(module, x):
    module.eval()
    analysis = FlopCountAnalysis(module, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return int(analysis.total()), dict(analysis.by_operator())


def n_params(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# (cin, cout, k, stride, (H, W), groups, bias, alpha, rank)
COST_CASES = [
    (16, 16, 3, 1, (7, 7), 1, False, 0.5, None),
    (16, 32, 3, 2, (7, 7), 1, True, 0.25, 2),
    (32, 16, 1, 1, (5, 5), 1, False, 0.5, None),
    (8, 24, 1, 2, (9, 9), 1, True, 0.75, 3),
    (12, 20, 5, 1, (5, 5), 1, False, 0.3, None),
    (16, 16, 7, 2, (3, 3), 1, False, 0.5, 4),
    (16, 32, 3, 1, (7, 7), 4, False, 0.5, None),
    (16, 16, 3, 2, (7, 7), 16, False, 0.25, None),
    (8, 8, 3, 1, (1, 1), 1, True, 0.5, None),
    (24, 40, 3, 2, (7, 5), 2, True, 0.4, 7),
    (64, 64, 3, 1, (8, 8), 1, False, 0.5, 10),
    (3, 10, 3, 2, (11, 11), 1, False, 0.7, None),
]


@pytest.mark.parametrize("case", COST_CASES, ids=lambda c: "-".join(map(str, c)))
def test_cost_equals_fvcore_in_eval_mode(case):
    cin, cout, k, stride, hw, groups, bias, alpha, rank = case
    slot = make_slot(cin, cout, k, stride, hw, groups, bias)
    assert check_slot(slot, alpha=alpha, rank=rank) is None
    module = build(slot, alpha=alpha, rank=rank)
    c = cost(slot, alpha=alpha, rank=rank)
    flops, by_op = fvcore_count(module, torch.zeros(1, cin, *hw))
    assert c.flops == flops
    assert set(by_op) == {"conv"}  # eval mode: the weight combination is not re-run
    assert c.params == n_params(module)
    assert c.inference_params == n_params(module.to_conv())
    conv_slot_cost = get_op("conv").cost(slot)
    assert (c.flops, c.inference_params) == (conv_slot_cost.flops, conv_slot_cost.params)


@pytest.mark.parametrize("rank", [None, 3])
def test_train_mode_adds_the_weight_combination_matmuls(rank):
    slot = make_slot(8, 16, 3, 2, (7, 7))
    module = build(slot, alpha=0.5, rank=rank).train()
    analysis = FlopCountAnalysis(module, torch.zeros(1, 8, 7, 7))
    p, s, d = 8, 8, 8 * 9
    extra = p * s * d if rank is None else rank * p * d + s * rank * d
    assert analysis.by_operator()["matmul"] == extra
    assert analysis.total() == cost(slot, alpha=0.5, rank=rank).flops + extra


@pytest.mark.parametrize("alpha", [0.125, 0.25, 0.5, 0.75, 0.875])
@pytest.mark.parametrize(("cin", "f", "k"), [(16, 16, 3), (64, 64, 1), (32, 64, 3), (64, 128, 5)])
def test_params_follow_the_paper_formula(alpha, cin, f, k):
    # p_LC = α·f·h·w·c + α(1-α)·f² (Sec. 3.3); these α·f are integers, so it is exact.
    slot = make_slot(cin, f, k)
    expected = alpha * f * k * k * cin + alpha * (1 - alpha) * f * f
    module = build(slot, alpha=alpha, rank=None)
    assert n_params(module) == cost(slot, alpha=alpha, rank=None).params == expected
    assert cost(slot, alpha=alpha, rank=None).inference_params == f * cin * k * k


def test_rank_reduced_params_and_coefficient_shapes():
    m = LinearConv2d(32, 64, 3, alpha=0.25, rank=5)
    assert (m.num_primary, m.num_secondary) == (16, 48)
    assert m.coeff is None
    assert m.coeff1.shape == (16, 5) and m.coeff2.shape == (5, 48)
    assert m.primary.shape == (16, 32, 3, 3)
    torch.testing.assert_close(m.coefficients, m.coeff1 @ m.coeff2)
    assert n_params(m) == 16 * 32 * 9 + 5 * (16 + 48)
    full = LinearConv2d(32, 64, 3, alpha=0.25)
    assert full.coeff.shape == (16, 48) and full.coeff1 is None and full.coeff2 is None
    assert set(full.state_dict()) == {"primary", "coeff"}  # the eval cache is not state
    assert set(LinearConv2d(4, 4, alpha=0.5, rank=1, bias=True).state_dict()) == {
        "primary",
        "coeff1",
        "coeff2",
        "bias",
    }


def reference_weight(m):
    """The combined weight by hand: W_s[j] = Σ_i A[i, j] · W_p[i], A = A1·A2 by loops."""
    p, s = m.num_primary, m.num_secondary
    if m.rank is None:
        a = m.coeff.detach()
    else:
        a1, a2 = m.coeff1.detach(), m.coeff2.detach()
        a = torch.zeros(p, s, dtype=a1.dtype)
        for i in range(p):
            for j in range(s):
                for t in range(m.rank):
                    a[i, j] += a1[i, t] * a2[t, j]
    primary = m.primary.detach()
    secondary = []
    for j in range(s):
        w = torch.zeros_like(primary[0])
        for i in range(p):
            w = w + a[i, j] * primary[i]
        secondary.append(w)
    return torch.cat([primary, torch.stack(secondary)])


@pytest.mark.parametrize(
    ("cin", "cout", "k", "groups", "alpha", "rank"),
    [
        (6, 8, 3, 1, 0.5, None),
        (6, 10, 1, 1, 0.3, 2),
        (8, 12, 3, 4, 0.25, None),
        (4, 9, 5, 1, 0.6, 3),
    ],
)
def test_combined_weight_equals_hand_reference_in_both_modes(cin, cout, k, groups, alpha, rank):
    torch.manual_seed(0)
    m = LinearConv2d(cin, cout, k, groups=groups, alpha=alpha, rank=rank, bias=True).double()
    with torch.no_grad():
        m.bias.normal_()
    ref = reference_weight(m)
    assert ref.shape == (cout, cin // groups, k, k)
    x = torch.randn(2, cin, 9, 7, dtype=torch.float64)
    expected = F.conv2d(x, ref, m.bias.detach(), 1, k // 2, 1, groups)
    for mode in (True, False):
        m.train(mode)
        torch.testing.assert_close(m.combined_weight().detach(), ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m(x).detach(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("cin", "cout", "k", "stride", "hw", "groups", "bias", "rank"),
    [
        (16, 16, 3, 1, (7, 7), 1, False, None),
        (16, 32, 3, 2, (7, 7), 1, True, 3),
        (8, 16, 1, 2, (5, 5), 1, False, None),
        (16, 16, 3, 2, (5, 3), 16, True, None),
        (12, 24, 5, 1, (3, 3), 3, False, 2),
        (8, 8, 7, 1, (1, 1), 1, True, None),
    ],
)
def test_to_conv_gives_identical_outputs_and_shapes(cin, cout, k, stride, hw, groups, bias, rank):
    torch.manual_seed(1)
    m = LinearConv2d(cin, cout, k, stride=stride, groups=groups, bias=bias, alpha=0.5, rank=rank)
    if bias:
        with torch.no_grad():
            m.bias.normal_()
    m.eval()
    conv = m.to_conv()
    assert type(conv) is nn.Conv2d and not conv.training
    assert (conv.stride, conv.padding, conv.groups) == ((stride, stride), (k // 2, k // 2), groups)
    assert sum(p.numel() for p in conv.parameters()) == m.out_channels * (cin // groups) * k * k + (
        cout if bias else 0
    )
    x = torch.randn(2, cin, *hw)
    with torch.no_grad():
        out, ref = m(x), conv(x)
    assert out.shape == (2, cout, math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(m.train()(x), out, rtol=1e-6, atol=1e-6)  # same in train mode


def test_to_conv_is_an_independent_copy():
    m = LinearConv2d(4, 8, alpha=0.5)
    conv = m.to_conv()
    with torch.no_grad():
        m.primary.add_(1.0)
    assert not torch.allclose(conv.weight, m.combined_weight())


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = LinearConv2d(8, 16, 3, stride=2, alpha=0.25, rank=2)
        self.bn = nn.BatchNorm2d(16)
        self.branches = nn.ModuleList(
            [LinearConv2d(16, 16, 1, alpha=0.5, bias=True), nn.Identity()]
        )

    def forward(self, x):
        y = self.bn(self.conv(x)).relu()
        return sum(b(y) for b in self.branches)


def test_fuse_linearconv_replaces_every_layer_in_place():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Block(), LinearConv2d(16, 4, 3)).eval()
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        before = model(x)
    fused = fuse_linearconv(model)
    assert fused is model
    assert not any(isinstance(m, LinearConv2d) for m in model.modules())
    assert type(model[1].branches[0]) is nn.Conv2d and type(model[2]) is nn.Conv2d
    assert model[1].branches[0].bias is not None
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)
    assert linearconv_regularization(model).item() == 0.0
    assert type(fuse_linearconv(LinearConv2d(4, 8, alpha=0.5))) is nn.Conv2d


@pytest.mark.slow
def test_fuse_linearconv_on_a_searched_backbone():
    torch.manual_seed(2)
    spec = OpSpec.make("linearconv", alpha=0.5, rank=None)
    arch = Architecture.uniform("cifar_resnet20", spec, resolution=32)
    model = build_model(arch).eval()
    assert sum(isinstance(m, LinearConv2d) for m in model.modules()) == len(arch.ops) > 0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        fuse_linearconv(model)
        assert not any(isinstance(m, LinearConv2d) for m in model.modules())
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def algorithm_1_reference(primaries):
    """Algorithm 1 as printed, with loops: Σ_l ‖V̂_l V̂_lᵀ - I‖₁ over the layers' primaries."""
    total = 0.0
    for w in primaries:
        rows = [r.tolist() for r in w.detach().reshape(w.shape[0], -1)]
        rows = [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in rows]
        for i in range(len(rows)):
            for j in range(len(rows)):
                dot = sum(a * b for a, b in zip(rows[i], rows[j]))
                total += abs(dot - (1.0 if i == j else 0.0))
    return total


def test_regularization_loss_follows_algorithm_1():
    torch.manual_seed(3)
    layers = [
        LinearConv2d(6, 8, 3, alpha=0.5),
        LinearConv2d(8, 12, 1, alpha=0.25, rank=2, bias=True),
        LinearConv2d(8, 16, 3, groups=4, alpha=0.5, rank=None),
    ]
    model = nn.Sequential(layers[0], nn.ReLU(), nn.Sequential(layers[1], nn.BatchNorm2d(12)))
    for layer in layers:
        loss = layer.regularization_loss()
        assert loss.dim() == 0
        assert loss.item() == pytest.approx(algorithm_1_reference([layer.primary]), rel=1e-5)
    total = linearconv_regularization(model)
    assert total.item() == pytest.approx(
        algorithm_1_reference(layer.primary for layer in layers[:2]), rel=1e-5
    )
    total.backward()  # only the primary filters are regularised
    assert layers[0].primary.grad is not None and layers[0].coeff.grad is None
    assert layers[1].coeff1.grad is None and layers[1].bias.grad is None


def test_regularization_loss_is_zero_for_orthogonal_and_maximal_for_parallel_filters():
    m = LinearConv2d(4, 8, 3, alpha=0.5)  # 4 primary filters of 36 weights
    q, _ = torch.linalg.qr(torch.randn(36, 4))
    with torch.no_grad():
        m.primary.copy_(3.0 * q.t().reshape(4, 4, 3, 3))  # scale does not matter
    assert m.regularization_loss().item() == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        m.primary.copy_(
            torch.randn(1, 4, 3, 3).expand(4, -1, -1, -1)
            * torch.arange(1.0, 5.0)[:, None, None, None]
        )
    assert m.regularization_loss().item() == pytest.approx(4 * 3, rel=1e-5)  # every |cos| = 1


def test_regularization_of_a_model_without_linearconv_is_a_zero_scalar():
    model = nn.Sequential(nn.Conv2d(3, 4, 3).double())
    loss = linearconv_regularization(model)
    assert loss.shape == () and loss.item() == 0.0 and loss.dtype == torch.float64
    assert linearconv_regularization(nn.ReLU()).item() == 0.0


def test_paper_regularization_defaults():
    assert REG_LAMBDA_DEFAULT == 1e-2
    assert REG_EVERY_DEFAULT == 10


def _param_names(m):
    return [n for n, _ in m.named_parameters()]


@pytest.mark.parametrize("rank", [None, 1])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_tiny_double(rank, training):
    torch.manual_seed(4)
    # 2 primary and 2 secondary filters: rank 1 is the only reduced rank
    m = LinearConv2d(2, 4, 3, stride=2, alpha=0.5, rank=rank, bias=True).double().train(training)
    names = _param_names(m)
    params = tuple(p.detach().clone().requires_grad_(True) for p in m.parameters())
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        # gradcheck perturbs inputs through .data, which bypasses the version counters the
        # eval cache is keyed on: drop it so the finite differences see each perturbation.
        m.clear_cache()
        return functional_call(m, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradcheck(correlation_loss, (params[0],))


def test_eval_mode_gradients_equal_train_mode_gradients():
    torch.manual_seed(5)
    m = LinearConv2d(4, 8, 3, alpha=0.25, rank=1, bias=True)
    x = torch.randn(2, 4, 5, 5)
    grads = {}
    for mode in (True, False):
        m.zero_grad()
        m.train(mode)(x).square().sum().backward()
        grads[mode] = {n: p.grad.clone() for n, p in m.named_parameters()}
    for n in grads[True]:
        torch.testing.assert_close(grads[False][n], grads[True][n], rtol=1e-5, atol=1e-6)


class CountCombine:
    """Wraps the real weight construction of one module and counts its calls."""

    def __init__(self, module):
        self.real, self.calls = module._combine, 0

    def __call__(self):
        self.calls += 1
        return self.real()


def test_eval_mode_builds_the_weight_once_and_rebuilds_when_parameters_change():
    torch.manual_seed(6)
    m = LinearConv2d(4, 8, 3, alpha=0.5)
    spy = CountCombine(m)
    m._combine = spy
    x = torch.randn(1, 4, 5, 5)
    m.train()
    for _ in range(3):
        m(x)
    assert spy.calls == 3  # train mode: every pass (the coefficients learn through it)

    m.eval()
    with torch.no_grad():
        first = m(x)
        for _ in range(3):
            torch.testing.assert_close(m(x), first)
    m(x).sum().backward()  # eval with autograd still uses the cache ...
    assert spy.calls == 4
    assert m.primary.grad is not None and m.coeff.grad is not None  # ... and trains through it
    with torch.inference_mode():
        m(x)
    assert spy.calls == 4

    with torch.no_grad():  # an SGD step, in place as torch.optim does it: versions change
        for p in m.parameters():
            p.sub_(0.1 * p.grad)
    with torch.no_grad():
        after = m(x)
        m(x)
    assert spy.calls == 5
    assert not torch.allclose(after, first)

    state = copy.deepcopy(LinearConv2d(4, 8, 3, alpha=0.5).state_dict())
    m.load_state_dict(state)
    with torch.no_grad():
        loaded = m(x)
    assert spy.calls == 6
    fresh = LinearConv2d(4, 8, 3, alpha=0.5)
    fresh.load_state_dict(state)
    torch.testing.assert_close(loaded, fresh.eval()(x))

    m.train().eval()  # a mode switch drops the cache
    with torch.no_grad():
        m(x)
    assert spy.calls == 7
    m.double()
    with torch.no_grad():
        assert m(x.double()).dtype == torch.float64
    assert spy.calls == 8


def test_cache_built_under_inference_mode_serves_a_later_backward():
    m = LinearConv2d(4, 8, 3, alpha=0.5).eval()
    x = torch.randn(1, 4, 5, 5)
    with torch.inference_mode():
        m(x)
    m(x).sum().backward()
    assert m.primary.grad is not None


def test_deepcopy_of_an_eval_module_does_not_share_the_cache():
    m = LinearConv2d(4, 8, 3, alpha=0.5).eval()
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        out = m(x)
        twin = copy.deepcopy(m)
        twin.primary.mul_(2.0)
        torch.testing.assert_close(m(x), out)
        torch.testing.assert_close(twin(x), twin.to_conv()(x))


@pytest.mark.parametrize("hw", [7, 5, 3, 1])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_output_shape_matches_the_replaced_conv(hw, stride, k):
    m = LinearConv2d(6, 10, k, stride=stride, alpha=0.5, rank=2)
    conv = nn.Conv2d(6, 10, k, stride=stride, padding=k // 2)
    x = torch.randn(2, 6, hw, hw)
    expected = conv(x).shape
    assert expected[-1] == math.ceil(hw / stride)
    assert m.train()(x).shape == m.eval()(x).shape == expected


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        ({"alpha": 0.0}, r"alpha must be in \(0, 1\) \(exclusive\), got 0.0"),
        ({"alpha": 1.0}, r"alpha must be in \(0, 1\) \(exclusive\), got 1.0"),
        ({"alpha": -0.25}, r"alpha must be in \(0, 1\) \(exclusive\), got -0.25"),
        ({"alpha": float("nan")}, r"alpha must be in \(0, 1\) \(exclusive\), got nan"),
        ({"alpha": "half"}, r"alpha must be a number in \(0, 1\), got 'half'"),
        ({"alpha": True}, r"alpha must be a number in \(0, 1\), got True"),
        ({"rank": 0}, r"rank must be None \(full rank\) or an integer >= 1, got 0"),
        ({"rank": -2}, r"rank must be None \(full rank\) or an integer >= 1, got -2"),
        ({"rank": 2.5}, r"rank must be None \(full rank\) or an integer >= 1, got 2.5"),
        ({"rank": "4"}, r"rank must be None \(full rank\) or an integer >= 1, got '4'"),
        ({"rank": True}, r"rank must be None \(full rank\) or an integer >= 1, got True"),
    ],
)
def test_bad_hyperparameters_raise_naming_them(hp, message):
    hp = {"alpha": 0.5, "rank": None, **hp}
    with pytest.raises(ValueError, match=message):
        validate(**hp)
    with pytest.raises(ValueError, match=message):
        LinearConv2d(8, 16, 3, **hp)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            (8, 16),
            {"alpha": 0.25, "rank": 4},
            r"rank: rank=4 must be below min\(4 primary, 12 secondary\) filters of 16 output",
        ),
        ((8, 8), {"alpha": 0.05}, "alpha: alpha=0.05 leaves 0 primary filters of 8 output"),
        ((8, 8), {"alpha": 0.95}, "alpha: alpha=0.95 leaves 0 secondary filters of 8 output"),
        ((8, 1), {"alpha": 0.5}, "alpha: alpha=0.5 leaves 0 secondary filters of 1 output"),
        ((0, 8), {}, "in_channels must be an integer >= 1, got 0"),
        ((8, 8.0), {}, r"out_channels must be an integer >= 1, got 8.0"),
        ((8, 8, 0), {}, "kernel_size must be an integer >= 1, got 0"),
        ((8, 8), {"stride": 0}, "stride must be an integer >= 1, got 0"),
        ((8, 8), {"padding": -1}, "padding must be an integer >= 0, got -1"),
        (
            (8, 8),
            {"groups": 3},
            r"groups must divide in_channels \(8\) and out_channels \(8\), got 3",
        ),
        ((8, 8), {"bias": "yes"}, "bias must be True or False, got 'yes'"),
    ],
)
def test_bad_constructor_arguments_raise_naming_them(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        LinearConv2d(*args, **kwargs)


def test_hyperparameters_are_keyword_only():
    with pytest.raises(TypeError):
        LinearConv2d(8, 8, 3, 1)


def test_check_slot_reasons_and_split():
    slot16 = make_slot(16, 16, 3)
    assert check_slot(slot16, alpha=0.5, rank=None) is None
    assert check_slot(slot16, alpha=0.5, rank=7) is None
    assert check_slot(slot16, alpha=0.5, rank=8) == (
        "rank=8 must be below min(8 primary, 8 secondary) filters of 16 output filters"
    )
    assert check_slot(slot16, alpha=0.25, rank=4) == (
        "rank=4 must be below min(4 primary, 12 secondary) filters of 16 output filters"
    )
    assert check_slot(make_slot(4, 4, 1), alpha=0.1, rank=None) == (
        "alpha=0.1 leaves 0 primary filters of 4 output filters"
    )
    assert check_slot(make_slot(16, 16, 3, groups=16), alpha=0.5, rank=None) is None
    # round to nearest, halves up; float noise does not flip a whole number
    assert split_filters(10, 0.7) == (7, 3)
    assert split_filters(6, 0.25) == (2, 4)
    assert split_filters(10, 0.33) == (3, 7)
    assert split_filters(10, 0.35) == (4, 6)


def test_registered_in_the_operator_table():
    info = OPS["linearconv"]
    assert info.label == "linear" and set(info.hparams) == {"alpha", "rank"}
    spec = OpSpec.make("linearconv", alpha=0.5, rank=4)
    assert spec.label == "linear(a=0.5,rank=4)"
    m = info.build(make_slot(16, 32, 3, 2), **spec.hparams)
    assert isinstance(m, LinearConv2d) and (m.rank, m.stride) == (4, 2)
    assert "alpha=0.5, rank=4, primary=16, secondary=16" in repr(m)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_eval_cache_fusion_and_amp():
    torch.manual_seed(7)
    m = LinearConv2d(16, 32, 3, stride=2, alpha=0.5, rank=4, bias=True).cuda().eval()
    x = torch.randn(2, 16, 7, 7, device="cuda")
    with torch.no_grad():
        out = m(x)
        torch.testing.assert_close(out, m.to_conv()(x), rtol=1e-4, atol=1e-4)
        assert out.shape == (2, 32, 4, 4) and out.is_cuda
    assert m._cache.is_cuda
    m.train().to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.float16):
        y = m(x.to(memory_format=torch.channels_last))
        (y.float().square().mean() + linearconv_regularization(m)).backward()
    assert y.dtype == torch.float16 and torch.isfinite(m.coeff1.grad).all()
