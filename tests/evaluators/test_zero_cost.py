import copy
import math
import random
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evaluators.zero_cost import (
    ZERO_COST_NAMES,
    grad_norm,
    naswot,
    synflow,
    zero_cost_score,
)
from search_spaces.arch import build_model
from search_spaces.backbones import get_backbone
from search_spaces.space import SearchSpace


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))


def _kernel_by_hand(codes: list[torch.Tensor]) -> torch.Tensor:
    """K[i][j] = number of units, over all ReLU calls, on which inputs i and j agree."""
    n = codes[0].shape[0]
    k = torch.zeros(n, n, dtype=torch.float64)
    for c in codes:
        for i in range(n):
            for j in range(n):
                k[i, j] += sum(int(a == b) for a, b in zip(c[i].tolist(), c[j].tolist()))
    return k


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_untouched(model, before, training):
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert model.training == training


# -- naswot -------------------------------------------------------------------------------


def test_naswot_equals_the_log_determinant_of_the_hand_built_kernel():
    model, x = _mlp(), torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h1 = torch.relu(model[0](x))
        h2 = torch.relu(model[2](h1))
    k = _kernel_by_hand([(h1 > 0).int(), (h2 > 0).int()])
    assert k[0, 0] == 7 + 6  # an input agrees with itself on every unit
    assert naswot(model, x) == pytest.approx(math.log(torch.det(k).item()), rel=1e-10)


class ReusedRelu(nn.Module):
    """One ReLU module called twice, as in torchvision's ResNet blocks."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 8)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.fc2(self.relu(self.fc1(x))))


def test_naswot_counts_every_call_of_a_reused_relu():
    model, x = ReusedRelu(), torch.randn(4, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        h1 = torch.relu(model.fc1(x))
        h2 = torch.relu(model.fc2(h1))
    k = _kernel_by_hand([(h1 > 0).int(), (h2 > 0).int()])
    assert torch.det(k) > 0
    assert naswot(model, x) == pytest.approx(math.log(torch.det(k).item()), rel=1e-10)


def test_naswot_uses_batch_statistics_on_a_cnn():
    torch.manual_seed(4)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
    bn.running_mean.fill_(5.0)  # would switch every unit off in eval mode
    model = nn.Sequential(conv, bn, nn.ReLU())
    model.eval()
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        h = conv(x)
        h = (h - h.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
            h.var((0, 2, 3), unbiased=False, keepdim=True) + bn.eps
        )
    k = _kernel_by_hand([(h.reshape(4, -1) > 0).int()])
    assert naswot(model, x) == pytest.approx(math.log(torch.det(k).item()), rel=1e-10)


def test_naswot_of_identical_inputs_is_minus_infinity():
    x = torch.randn(1, 5).repeat(3, 1)
    assert naswot(_mlp(), x) == -math.inf


def test_naswot_needs_relu_modules_and_two_inputs():
    with pytest.raises(ValueError, match="naswot needs nn.ReLU or nn.ReLU6 modules, but Linear"):
        naswot(nn.Linear(3, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="inputs must hold at least 2 samples, got 1"):
        naswot(_mlp(), torch.randn(1, 5))
    with pytest.raises(ValueError, match="inputs must be a floating tensor"):
        naswot(_mlp(), torch.ones(4, 5, dtype=torch.long))


# -- synflow ------------------------------------------------------------------------------


def _chain(widths, scales, *, bn=True):
    """Flatten, then Linear(no bias) with every weight -scale, BatchNorm and ReLU in between."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i, a in enumerate(scales):
        lin = nn.Linear(widths[i], widths[i + 1], bias=False)
        nn.init.constant_(lin.weight, -a)  # negative: synflow must take absolute values
        layers.append(lin)
        if i < len(scales) - 1:
            if bn:
                b = nn.BatchNorm1d(widths[i + 1])
                nn.init.constant_(b.weight, 3.0)
                b.running_mean.fill_(2.0)
                layers.append(b)
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _chain_log_synflow(widths, scales):
    # R = 1ᵀ W_L ... W_1 1 = d_L · Π a_l · Π_{l<L} d_l, and R is linear in each W_l, so
    # Σ_l W_l·∂R/∂W_l = L·R (Euler's theorem for degree-1 homogeneous functions)
    log_r = math.log(widths[-1]) + sum(map(math.log, scales)) + sum(map(math.log, widths[:-1]))
    return math.log(len(scales)) + log_r


def test_synflow_of_a_linear_chain_equals_the_closed_form():
    widths, scales = [6, 5, 4, 3], [0.5, 0.25, 2.0]
    model = _chain(widths, scales)
    got = synflow(model, (1, 1), in_channels=6)
    assert got == pytest.approx(_chain_log_synflow(widths, scales), rel=1e-12)


def test_synflow_past_float64_range_is_still_exact():
    # powers of two, so float32 weights hold the scales exactly
    widths, scales = [8] * 41, [2.0**30] * 40  # R = 2**1323: inf in float64
    assert math.isinf(float(torch.tensor(2.0, dtype=torch.float64) ** 1323))
    got = synflow(_chain(widths, scales, bn=False), (1, 1), in_channels=8)
    assert got == pytest.approx(_chain_log_synflow(widths, scales), rel=1e-12)
    tiny = [2.0**-30] * 40  # R = 2**-1077: 0 in float64
    got = synflow(_chain(widths, tiny, bn=False), (1, 1), in_channels=8)
    assert got == pytest.approx(_chain_log_synflow(widths, tiny), rel=1e-12)


def test_synflow_includes_biases():
    fc1, fc2 = nn.Linear(2, 3), nn.Linear(3, 1)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 1.0], [-1.0, 3.0]]))
        fc1.bias.copy_(torch.tensor([1.0, -1.0, 2.0]))
        fc2.weight.copy_(torch.tensor([[2.0, -1.0, 0.5]]))
        fc2.bias.fill_(-4.0)
    model = nn.Sequential(nn.Flatten(), fc1, nn.ReLU(), fc2)
    w1, b1, w2, b2 = (p.detach().abs() for p in (fc1.weight, fc1.bias, fc2.weight[0], fc2.bias))
    z1 = w1.sum(1) + b1  # input all ones
    s = (w1 * w2[:, None]).sum() + (b1 * w2).sum() + (w2 * z1).sum() + b2.sum()
    assert synflow(model, (1, 1), in_channels=2) == pytest.approx(math.log(s.item()), rel=1e-12)


def test_synflow_ignores_batch_norm():
    torch.manual_seed(6)
    with_bn = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3)
    )
    with torch.no_grad():
        with_bn[1].weight.uniform_(0.1, 5)
        with_bn[1].running_var.uniform_(0.1, 5)
    without = nn.Sequential(with_bn[0], nn.ReLU(), with_bn[3])
    assert synflow(with_bn, 6) == pytest.approx(synflow(without, 6), rel=1e-12)


def test_synflow_is_finite_where_float32_overflows():
    model = get_backbone("cifar_resnet56", 10)
    x = torch.ones(1, 3, 8, 8)
    with torch.no_grad():
        net = copy.deepcopy(model).eval()
        for p in net.parameters():
            p.abs_()
        assert math.isinf(float(net(x).sum()))  # float32 overflows on ResNet-56
    score = synflow(model, 8)
    assert math.isfinite(score) and score > math.log(3.4e38)


def test_synflow_validates_arguments():
    with pytest.raises(ValueError, match="in_channels must be a positive integer, got 0"):
        synflow(_mlp(), 4, in_channels=0)
    with pytest.raises(ValueError, match=r"resolution must be a positive int or \(H, W\) pair"):
        synflow(_mlp(), 0)


# -- grad_norm ----------------------------------------------------------------------------


def test_grad_norm_of_a_linear_classifier_equals_the_closed_form():
    torch.manual_seed(7)
    fc = nn.Linear(6, 4)
    x, y = torch.randn(5, 6), torch.tensor([0, 3, 1, 1, 2])
    model = nn.Sequential(nn.Flatten(), fc)
    with torch.no_grad():
        p = torch.softmax(fc(x), dim=1)
        g = (p - F.one_hot(y, 4)).T @ x / 5  # ∂ mean CE / ∂W; the bias is left out
    assert grad_norm(model, x, y) == pytest.approx(g.norm().item(), rel=1e-5)


def test_grad_norm_sums_the_norms_of_every_weight_tensor():
    torch.manual_seed(8)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)
    )
    x, y = torch.randn(6, 3, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    ref = copy.deepcopy(model).train()
    F.cross_entropy(ref(x), y).backward()
    expected = ref[0].weight.grad.norm() + ref[4].weight.grad.norm()
    assert grad_norm(model, x, y) == pytest.approx(expected.item(), rel=1e-5)
    mse = grad_norm(model, x, torch.zeros(6, 3), loss_fn=F.mse_loss)
    assert mse != pytest.approx(expected.item(), rel=1e-3)


def test_grad_norm_needs_one_target_per_input():
    with pytest.raises(
        ValueError, match=r"targets must be a tensor with one entry per input \(4\)"
    ):
        grad_norm(_mlp(), torch.randn(4, 5), torch.tensor([0, 1]))


# -- dispatcher and safety -----------------------------------------------------------------


def _small_resnet_batch():
    g = torch.Generator().manual_seed(9)
    return torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)


@pytest.mark.parametrize("name", ZERO_COST_NAMES)
def test_scores_leave_the_callers_model_untouched_and_are_finite(name):
    torch.manual_seed(10)
    model = get_backbone("cifar_resnet20", 10)
    model.train()
    model.fc = nn.Sequential(nn.Dropout(0.5), model.fc)
    before = _snapshot(model)
    score = zero_cost_score(name, model, _small_resnet_batch())
    assert math.isfinite(score)
    _assert_untouched(model, before, training=True)
    model.eval()
    assert zero_cost_score(name, model, _small_resnet_batch()) == pytest.approx(score, rel=1e-9)
    _assert_untouched(model, before, training=False)  # deterministic: dropout is off


def test_dispatcher_matches_the_functions():
    model = get_backbone("cifar_resnet20", 10)
    x, y = _small_resnet_batch()
    assert ZERO_COST_NAMES == ("naswot", "synflow", "grad_norm")
    assert zero_cost_score("naswot", model, (x, y)) == naswot(model, x)
    assert zero_cost_score("naswot", model, x) == naswot(model, x)
    assert zero_cost_score("synflow", model, (x, y)) == synflow(model, 16)
    assert zero_cost_score("grad_norm", model, [x, y]) == grad_norm(model, x, y)
    with pytest.raises(ValueError, match="unknown zero-cost score 'snip'; valid: naswot, synflow"):
        zero_cost_score("snip", model, (x, y))
    with pytest.raises(ValueError, match="grad_norm needs targets"):
        zero_cost_score("grad_norm", model, x)
    with pytest.raises(ValueError, match="batch must be"):
        zero_cost_score("naswot", model, {"x": x})


@pytest.mark.slow
def test_scores_of_random_architectures_take_seconds_on_cpu():
    space = SearchSpace("cifar_resnet20", num_classes=10, resolution=32)
    g = torch.Generator().manual_seed(11)
    batch = torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    rng = random.Random(0)
    for _ in range(1):
        model = build_model(space.sample(rng))
        before = _snapshot(model)
        for name in ZERO_COST_NAMES:
            t = time.perf_counter()
            score = zero_cost_score(name, model, batch)
            # generous: about a second on an idle 2-core CPU, the bound allows a busy one
            assert time.perf_counter() - t < 30, name
            assert math.isfinite(score), (name, score)
        _assert_untouched(model, before, training=True)
