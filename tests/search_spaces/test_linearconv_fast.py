"""LinearConv's train-mode "mix" form against the original combined-weight convolution."""

import pytest
import torch
import torch.nn.functional as F

from search_spaces.ops.linearconv import LinearConv2d, linearconv_regularization


def reference_forward(m: LinearConv2d, x):
    """The original train-mode computation: build [W_p; Aᵀ V_p], then one convolution."""
    v = m.primary.reshape(m.num_primary, -1)
    a = m.coeff if m.rank is None else m.coeff1 @ m.coeff2
    u = a.t() @ v if m.rank is None else m.coeff2.t() @ (m.coeff1.t() @ v)
    w = torch.cat([v, u]).reshape(m.out_channels, *m.primary.shape[1:])
    return F.conv2d(x, w, m.bias, m.stride, m.padding, 1, m.groups)


CASES = [
    # (in, out, k, stride, groups, bias, alpha, rank, batch, size, expected form)
    (64, 64, 3, 1, 1, False, 0.5, None, 2, 8, "mix"),
    (32, 64, 3, 2, 1, True, 0.25, None, 2, 9, "mix"),
    (96, 64, 3, 2, 1, True, 0.5, 4, 2, 7, "mix"),
    (256, 64, 1, 1, 1, False, 0.5, None, 2, 4, "mix"),
    (32, 32, 3, 1, 1, False, 0.5, None, 2, 16, "mix"),  # CIFAR's middle stage: mixing pays
    (16, 16, 3, 1, 1, False, 0.5, None, 4, 8, "combine"),  # narrow: the extra writes dominate
    (8, 32, 1, 2, 1, True, 0.5, None, 3, 10, "combine"),  # 1×1 expansion: mixing costs more
    (16, 16, 3, 1, 2, False, 0.5, None, 2, 8, "combine"),  # groups: filters see other inputs
]


def _close(a, b, what):
    """Equal up to float rounding: the largest difference within 1e-5 of the largest value
    (sums of products in another order; entries near zero get no relative slack)."""
    assert a.shape == b.shape, what
    err, scale = (a - b).abs().max().item(), b.abs().max().item()
    assert err <= 1e-5 * scale, (what, err, scale)


def _step(m, x, fn):
    x = x.clone().requires_grad_(True)
    m.zero_grad(set_to_none=True)
    out = fn(x)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    (out * g).sum().backward()
    grads = {"x": x.grad}
    grads.update({n: p.grad for n, p in m.named_parameters()})
    return out.detach(), grads


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_train_forward_and_gradients_equal_the_combined_weight_convolution(case):
    c1, c2, k, s, groups, bias, alpha, rank, n, size, form = case
    torch.manual_seed(c1 + c2 + k)
    m = LinearConv2d(c1, c2, k, stride=s, groups=groups, bias=bias, alpha=alpha, rank=rank)
    if bias:
        with torch.no_grad():
            m.bias.normal_()
    x = torch.randn(n, c1, size, size)
    assert m.training_form(tuple(x.shape)) == form
    out, grads = _step(m, x, m)
    ref, ref_grads = _step(m, x, lambda inp: reference_forward(m, inp))
    _close(out, ref, "output")
    assert grads.keys() == ref_grads.keys()
    assert all(g is not None for g in grads.values())
    for name in grads:
        _close(grads[name], ref_grads[name], name)


def test_mix_form_runs_no_convolution_with_all_output_filters():
    m = LinearConv2d(64, 64, 3, alpha=0.5)
    x = torch.randn(8, 64, 4, 4)
    widths, mixes = [], []
    real_conv, real_linear = F.conv2d, F.linear

    def spy_conv(inp, weight, *args, **kwargs):
        widths.append(weight.shape[0])
        return real_conv(inp, weight, *args, **kwargs)

    def spy_linear(inp, weight, *args, **kwargs):
        mixes.append((tuple(inp.shape), tuple(weight.shape), weight.is_contiguous()))
        return real_linear(inp, weight, *args, **kwargs)

    torch.nn.functional.conv2d, torch.nn.functional.linear = spy_conv, spy_linear
    try:
        m(x)
        m.eval()
        m(x)
    finally:
        torch.nn.functional.conv2d, torch.nn.functional.linear = real_conv, real_linear
    # Train: 32 primary filters, then the 32 secondary outputs mixed by one matrix product
    # over the channels-last view of the primary outputs, with the coefficients as stored
    # (their transpose is a view, never copied); eval: the one cached 64-filter convolution.
    assert widths == [32, 64]
    assert mixes == [((8, 4, 4, 32), (32, 32), False)]


def test_regulariser_is_unchanged_by_the_form():
    torch.manual_seed(0)
    model = torch.nn.Sequential(LinearConv2d(8, 16, 3), LinearConv2d(16, 16, 3, rank=4))
    v = model[0].primary.reshape(8, -1)
    v = v / v.norm(dim=1, keepdim=True)
    expected = (v @ v.t() - torch.eye(8)).abs().sum()
    v2 = model[1].primary.reshape(8, -1)
    v2 = v2 / v2.norm(dim=1, keepdim=True)
    expected = expected + (v2 @ v2.t() - torch.eye(8)).abs().sum()
    torch.testing.assert_close(linearconv_regularization(model), expected)
