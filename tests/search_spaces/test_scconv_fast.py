"""SCConv's fused gate/swap and fuse against the original formulas, built here as references."""

import pytest
import torch
import torch.nn.functional as F

from search_spaces.ops.scconv import CRU, MERGED_UPPER_MAX_CHANNELS, SRU, SCConv2d


def reference_sru(sru: SRU, x):
    """The original SRU: sigmoid gate, where, subtraction and torch.roll."""
    y = sru.gn(x)
    gamma = sru.gn.weight
    w = (gamma / gamma.sum()).view(1, -1, 1, 1)
    gate = torch.sigmoid(y * w) > 0.5
    informative = torch.where(gate, y, 0.0)
    redundant = y - informative
    return informative + torch.roll(redundant, shifts=sru.channels // 2, dims=1)


def reference_scconv(m: SCConv2d, x):
    """The original SCConv forward: split halves, summed branch, concatenated lower branch."""
    x = reference_sru(m.sru, m.pool(x))
    cru = m.cru
    up, low = torch.split(x, [cru.upper, cru.lower], dim=1)
    up, low = cru.squeeze_up(up), cru.squeeze_low(low)
    y1 = cru.gwc(up) + cru.pwc1(up)
    y2 = torch.cat([cru.pwc2(low), low], dim=1)
    s = torch.stack([F.adaptive_avg_pool2d(y1, 1), F.adaptive_avg_pool2d(y2, 1)])
    beta = torch.softmax(s, dim=0)
    out = beta[0] * y1 + beta[1] * y2
    if m.bias is not None:
        out = out + m.bias.view(1, -1, 1, 1)
    return out


CASES = [
    # (in, out, k, stride, bias, alpha, r, g, batch, size)
    (16, 16, 3, 1, False, 0.5, 2, 2, 1, 8),
    (16, 16, 3, 1, False, 0.5, 2, 2, 3, 8),
    (32, 48, 3, 2, True, 0.25, 2, 2, 2, 9),
    (33, 20, 5, 1, False, 0.3, 2, 1, 2, 7),  # odd channels: the roll wraps unevenly
    (24, 12, 3, 2, True, 0.75, 3, 2, 4, 5),
    (128, 64, 3, 1, False, 0.5, 2, 2, 2, 5),  # 32 squeezed upper channels: GWC and PWC1 apart
]


def _randomised(case, gamma="mixed"):
    c1, c2, k, s, bias, alpha, r, g, n, size = case
    torch.manual_seed(sum(case[:4]) + n)
    m = SCConv2d(c1, c2, k, stride=s, bias=bias, alpha=alpha, r=r, g=g)
    with torch.no_grad():  # mixed: gamma of both signs (the general w*Y > 0 test)
        w = torch.randn(c1) + 0.3
        if gamma != "mixed":  # one sign for every channel: the test on the sign of Y alone
            w = w.abs() + 0.1 if gamma == "positive" else -(w.abs() + 0.1)
        m.sru.gn.weight.copy_(w)
        m.sru.gn.bias.copy_(0.5 * torch.randn(c1))
        if m.bias is not None:
            m.bias.copy_(torch.randn(c2))
    x = torch.randn(n, c1, size, size)
    return m, x


def _grads(m, x, fn):
    x = x.clone().requires_grad_(True)
    m.zero_grad(set_to_none=True)
    out = fn(m, x)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    out.backward(g)
    grads = {"x": x.grad.clone()}
    grads.update({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    return out.detach(), grads


@pytest.mark.parametrize("gamma", ["mixed", "positive", "negative"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_fast_scconv_equals_the_original_formulas_forward_and_gradients(case, gamma):
    m, x = _randomised(case, gamma)
    out, grads = _grads(m, x, lambda mod, inp: mod(inp))
    ref, ref_grads = _grads(m, x, reference_scconv)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert set(grads) == set(ref_grads)
    assert len(grads) == len(list(m.parameters())) + 1  # every parameter and the input
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-5, msg=name)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [16, 15])
def test_sru_alone_equals_the_original_and_both_branches_are_used(channels):
    torch.manual_seed(channels)
    sru = SRU(channels)
    with torch.no_grad():
        sru.gn.weight.copy_(torch.randn(channels))
    x = torch.randn(2, channels, 6, 6)
    gate = sru.gate(sru.gn(x))
    assert 0.2 < gate.float().mean().item() < 0.8
    torch.testing.assert_close(sru(x), reference_sru(sru, x), rtol=0, atol=0)


def test_traced_forward_uses_the_plain_form_with_the_same_outputs():
    m, x = _randomised(CASES[2])
    m.eval()
    traced = torch.jit.trace(m, x)
    graph = str(traced.graph)
    assert "roll" in graph and "PythonOp" not in graph
    torch.testing.assert_close(traced(x), reference_scconv(m, x), rtol=1e-5, atol=1e-6)


def _saved_bytes(fn):
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def test_a_training_step_keeps_less_for_backward_than_the_original():
    m, x = _randomised(CASES[1])
    x.requires_grad_(True)
    new = _saved_bytes(lambda: m(x))
    old = _saved_bytes(lambda: reference_scconv(m, x))
    map_bytes = x.nbytes
    # Original: about 6.8 input maps kept (GN input, masks, maps of both branches); now the
    # boolean mask replaces the float ones and the lower branch is not concatenated.
    assert new < old - map_bytes, (new / map_bytes, old / map_bytes)


@pytest.mark.parametrize(("size", "fused"), [(8, False), (96, True)])
def test_without_autograd_small_inputs_take_the_plain_form_large_ones_the_fused(
    size, fused, monkeypatch
):
    import search_spaces.ops.scconv as S

    calls = []
    real = S._GateSwap.apply
    monkeypatch.setattr(S._GateSwap, "apply", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(1)
    m = SCConv2d(16, 16, 3).eval()
    x = torch.randn(1, 16, size, size)
    assert (x.numel() >= S.FUSED_MIN_ELEMENTS) is fused
    with torch.no_grad():
        out = m(x)
    assert len(calls) == (1 if fused else 0)
    torch.testing.assert_close(out, reference_scconv(m, x), rtol=1e-5, atol=1e-6)
    m(x)  # with autograd every size is fused
    assert len(calls) == (2 if fused else 1)


@pytest.mark.parametrize(
    ("c2", "k", "g"), [(12, 3, 1), (16, 3, 2), (20, 5, 4), (16, 3, 8)], ids=str
)
def test_merged_upper_branch_is_one_convolution_equal_to_gwc_plus_pwc1(c2, k, g, monkeypatch):
    torch.manual_seed(c2 + k + g)
    cru = CRU(16, c2, k, alpha=0.5, r=1, g=g).double()  # 8 squeezed upper channels: merged
    assert cru.merges_upper
    up = torch.randn(2, 8, 7, 6, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, c2, 7, 6, dtype=torch.float64)
    leaves = [up, cru.gwc.weight, cru.pwc1.weight]
    ref = cru.gwc(up) + cru.pwc1(up)
    want = torch.autograd.grad(ref, leaves, grad)
    calls = []
    real = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda *a, **kw: calls.append(a[1].shape) or real(*a, **kw))
    out = cru.upper_branch(up)
    assert calls == [torch.Size([c2, 8, k, k])]  # one dense k×k convolution
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for got, exp in zip(torch.autograd.grad(out, leaves, grad), want):
        torch.testing.assert_close(got, exp, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("channels", "alpha", "squeezed", "merged"),
    [(64, 0.5, 16, True), (128, 0.25, 16, True), (128, 0.5, 32, False), (256, 0.25, 32, False)],
)
def test_upper_branch_merges_up_to_the_channel_limit(channels, alpha, squeezed, merged):
    cru = CRU(channels, channels, 3, alpha=alpha, r=2, g=2)
    assert cru.gwc.in_channels == squeezed
    assert cru.merges_upper is merged is (squeezed <= MERGED_UPPER_MAX_CHANNELS)
