"""The octave pass: same model as the per-slot form, fewer conversions, cost model still exact."""

import contextlib
import copy
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evaluators.cost import fvcore_flops, get_cost_model
from search_spaces.arch import Architecture, OpSpec, build_model
from search_spaces.octave_pass import (
    OctaveBlock,
    keep_octaves,
    octave_batch_norm,
    octave_blocks,
    plan_blocks,
)
from search_spaces.ops import _resample
from search_spaces.ops.octconv import OctConv2d, merge_octaves
from search_spaces.space import SearchSpace

OCT_MENU = "conv,oct(a=0.25),oct(a=0.5),oct(a=0.75),linear(a=0.5,rank=full)"


def _arch(backbone, label, res, classes=10, policy="all"):
    spec = OpSpec.parse_label(label)
    return Architecture.uniform(backbone, spec, num_classes=classes, resolution=res, slots=policy)


def _pair(n, c_high, c_low, h, w=None, dtype=torch.float64):
    w = h if w is None else w
    return (
        torch.randn(n, c_high, h, w, dtype=dtype),
        torch.randn(n, c_low, -(-h // 2), -(-w // 2), dtype=dtype),
    )


# --- the building blocks ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [(8, 8), (7, 7), (6, 5), (2, 2), (1, 1)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_octconv_on_a_pair_equals_octconv_on_the_merged_tensor(size, stride, k):
    torch.manual_seed(0)
    op = OctConv2d(8, 12, k, stride=stride, alpha=0.5, bias=True).double()
    nn.init.normal_(op.bias)
    x = _pair(2, 4, 4, *size)
    expected = op(merge_octaves(*x))
    torch.testing.assert_close(op.octaves(x, keep=False), expected, rtol=1e-12, atol=1e-12)
    high, low = op.octaves(x, keep=True)
    assert high.shape[1] == 6 and low.shape[1] == 6
    assert low.shape[-2:] == (-(-high.shape[-2] // 2), -(-high.shape[-1] // 2))
    torch.testing.assert_close(merge_octaves(high, low), expected, rtol=1e-12, atol=1e-12)
    # a normal input kept as a pair: the same split as forward
    x_full = torch.randn(2, 8, *size, dtype=torch.float64)
    kept = merge_octaves(*op.octaves(x_full, keep=True))
    torch.testing.assert_close(kept, op(x_full), rtol=1e-12, atol=1e-12)


def test_octconv_refuses_a_pair_it_cannot_take():
    op = OctConv2d(8, 8, 3, alpha=0.5)
    with pytest.raises(ValueError, match=r"octave pair of 6\+2 channels does not match .* 4\+4"):
        op.octaves(_pair(1, 6, 2, 4, dtype=torch.float32), keep=False)
    with pytest.raises(ValueError, match="takes no octave pair"):
        OctConv2d(8, 8, 3, stride=3, alpha=0.5).octaves(
            _pair(1, 4, 4, 6, dtype=torch.float32), keep=True
        )
    with pytest.raises(ValueError, match="alpha=0 has no low-frequency output"):
        OctConv2d(8, 8, 3, alpha=0.0).octaves(torch.randn(1, 8, 4, 4), keep=True)


@pytest.mark.parametrize("size", [(8, 8), (7, 7), (5, 6), (1, 1)])
@pytest.mark.parametrize("n", [2, 5])
def test_batch_norm_per_octave_equals_batch_norm_on_the_merged_map(size, n):
    torch.manual_seed(1)
    ref = nn.BatchNorm2d(10).double()
    nn.init.normal_(ref.weight)
    nn.init.normal_(ref.bias)
    ours = copy.deepcopy(ref)
    x = _pair(n, 6, 4, *size)
    for step in range(3):  # train: batch statistics and three running-statistics updates
        xr = tuple(t.clone().requires_grad_() for t in x)
        xo = tuple(t.clone().requires_grad_() for t in x)
        expected = ref(merge_octaves(*xr))
        got = merge_octaves(*octave_batch_norm(ours, xo))
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
        g = torch.randn_like(expected)
        expected.backward(g)
        got.backward(g)
        for a, b in zip(xr, xo):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-9)
        x = tuple(t * (step + 2) + 1 for t in x)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=1e-12, atol=0)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-9, atol=1e-9)
    ref.eval()
    ours.eval()
    torch.testing.assert_close(
        merge_octaves(*octave_batch_norm(ours, x)), ref(merge_octaves(*x)), rtol=1e-12, atol=1e-12
    )


def test_batch_norm_with_cumulative_momentum_and_without_running_stats():
    torch.manual_seed(2)
    for kwargs in ({"momentum": None}, {"track_running_stats": False}, {"affine": False}):
        ref = nn.BatchNorm2d(6, **kwargs).double()
        ours = copy.deepcopy(ref)
        for _ in range(2):
            x = _pair(3, 3, 3, 6)
            torch.testing.assert_close(
                merge_octaves(*octave_batch_norm(ours, x)),
                ref(merge_octaves(*x)),
                rtol=1e-10,
                atol=1e-10,
            )
        for a, b in zip(ref.buffers(), ours.buffers()):
            torch.testing.assert_close(b, a, rtol=1e-12, atol=0)


# --- whole networks --------------------------------------------------------------------------


def _compare(arch, batch, seed=0):
    """Per-slot model vs the pass, float64: outputs, gradients and state, eval and train."""
    torch.manual_seed(seed)
    per_slot = build_model(arch, keep_octaves=False).double()
    kept = keep_octaves(copy.deepcopy(per_slot))
    x = torch.randn(batch, 3, arch.resolution, arch.resolution, dtype=torch.float64)
    for mode in ("eval", "train", "eval"):  # eval after train: the running statistics agree
        per_slot.train(mode == "train")
        kept.train(mode == "train")
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = per_slot(xa), kept(xb)
        torch.testing.assert_close(yb, ya, rtol=1e-9, atol=1e-9)
        ya.square().sum().backward()
        yb.square().sum().backward()
        torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-8, atol=1e-9)
        for (name, pa), pb in zip(per_slot.named_parameters(), kept.parameters()):
            torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-8, atol=1e-9, msg=name)
        per_slot.zero_grad()
        kept.zero_grad()
    for (name, a), b in zip(per_slot.state_dict().items(), kept.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12, msg=name)
    return per_slot, kept


@pytest.mark.parametrize(
    "backbone, label, res, batch",
    [
        ("cifar_resnet20", "oct(a=0.5)", 32, 4),
        ("resnet18", "oct(a=0.25)", 48, 3),  # 12 -> 6 -> 3 -> 2: odd sizes in train mode
        ("resnet50", "oct(a=0.75)", 96, 4),  # 24 -> 12 -> 6 -> 3
    ],
)
def test_kept_octaves_give_the_per_slot_model_in_eval_and_train(backbone, label, res, batch):
    per_slot, kept = _compare(_arch(backbone, label, res), batch)
    assert list(kept.state_dict()) == list(per_slot.state_dict())
    assert any(isinstance(m, OctaveBlock) for m in kept.modules())


def test_mixed_architectures_keep_equal_outputs():
    space = SearchSpace("resnet18", num_classes=10, resolution=48, slots="all", menu=OCT_MENU)
    rng = random.Random(5)
    for seed in range(3):
        _compare(space.sample(rng), batch=3, seed=seed)


def test_resnet50_oct_plan_passes_pairs_from_the_first_projection_to_the_head():
    model = build_model(_arch("resnet50", "oct(a=0.5)", 64))
    blocks = [model.get_submodule(b.path) for b in octave_blocks(model)]
    assert len(blocks) == 16 and all(isinstance(b, OctaveBlock) for b in blocks)
    assert [b.plan.in_pair for b in blocks] == [False] + [True] * 15
    assert [b.plan.out_pair for b in blocks] == [True] * 15 + [False]
    assert all(b.plan.keep == (True, True, True) for b in blocks)
    assert sum(b.plan.merge_output for b in blocks) == 1  # before the head only
    assert not any(b.plan.merge_input for b in blocks)
    again = keep_octaves(copy.deepcopy(model))  # running the pass twice changes nothing
    assert [again.get_submodule(b.path).plan for b in octave_blocks(again)] == [
        b.plan for b in blocks
    ]


def test_cifar_resnet_identity_blocks_of_the_first_stage_merge_their_sum():
    # layer1 has identity shortcuts and takes the stem's tensor: its sum cannot stay a pair
    model = build_model(_arch("cifar_resnet20", "oct(a=0.5)", 32))
    plans = [model.get_submodule(b.path).plan for b in octave_blocks(model)]
    assert [p.keep for p in plans[:3]] == [(True, False)] * 3
    assert [p.in_pair for p in plans] == [False] * 4 + [True] * 5
    assert [p.out_pair for p in plans] == [False] * 3 + [True] * 5 + [False]


def test_split_mismatch_between_neighbours_merges():
    blocks = octave_blocks(build_model(_arch("cifar_resnet20", "conv", 32)))
    io = {p: ((8, 8), (8, 8)) for b in blocks for p in (*b.convs, b.shortcut) if p}
    io["layer2.0.conv2"] = ((8, 8), (24, 8))  # another alpha: the pair cannot go on
    plans = plan_blocks(blocks, io)
    assert plans[3].keep == (True, False) and not plans[3].keep_shortcut
    assert not plans[3].out_pair and not plans[4].in_pair


def test_models_without_octconv_or_of_other_types_are_left_alone():
    model = build_model(_arch("resnet18", "conv", 32))
    assert not any(isinstance(m, OctaveBlock) for m in model.modules())
    other = build_model(_arch("vgg11_bn", "oct(a=0.5)", 32))
    assert not any(isinstance(m, OctaveBlock) for m in other.modules())
    assert octave_blocks(other) == ()


def test_norms_replaced_after_the_pass_get_the_merged_tensor():
    # e.g. nn.SyncBatchNorm.convert_sync_batchnorm after build_model: every BN module must
    # then see the full tensor, as its own forward (cross-process statistics) expects
    class CountingBN(nn.BatchNorm2d):
        calls = 0

        def forward(self, x):
            CountingBN.calls += 1
            assert isinstance(x, torch.Tensor)
            return super().forward(x)

    arch = _arch("cifar_resnet20", "oct(a=0.5)", 32)
    torch.manual_seed(0)
    per_slot = build_model(arch, keep_octaves=False)
    kept = keep_octaves(copy.deepcopy(per_slot))
    norms = [n for n, m in kept.named_modules() if type(m) is nn.BatchNorm2d]
    for name in norms:
        old = kept.get_submodule(name)
        new = CountingBN(old.num_features)
        new.load_state_dict(old.state_dict())
        parent, _, attr = name.rpartition(".")
        setattr(kept.get_submodule(parent) if parent else kept, attr, new)
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(kept.train()(x), per_slot.train()(x), rtol=1e-4, atol=1e-4)
    assert CountingBN.calls == len(norms)


def test_checkpoints_load_either_way():
    arch = _arch("cifar_resnet20", "oct(a=0.25)", 32)
    torch.manual_seed(0)
    per_slot = build_model(arch, keep_octaves=False)
    kept = build_model(arch)
    kept.load_state_dict(per_slot.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(kept.eval()(x), per_slot.eval()(x), rtol=1e-5, atol=1e-5)
    per_slot.load_state_dict(kept.state_dict())


# --- cost ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backbone, classes, res, policy",
    [
        ("cifar_resnet20", 10, 32, "all"),
        ("resnet18", 10, 48, "all"),
        ("cifar_resnet56", 100, 32, "spatial"),
    ],
)
def test_cost_model_equals_fvcore_after_the_pass_on_random_octave_architectures(
    backbone, classes, res, policy
):
    space = SearchSpace(backbone, num_classes=classes, resolution=res, slots=policy, menu=OCT_MENU)
    cm = get_cost_model(backbone, classes, res, policy)
    rng = random.Random(11)
    for _ in range(4):
        arch = space.sample(rng)
        flops = fvcore_flops(build_model(arch), res)
        assert cm.cost(arch).flops == flops, arch
        assert cm.cost_of_labels({p: s.label for p, s in arch.ops.items()}).flops == flops
    assert (
        cm.range(space.choices).min_flops
        <= cm.cost(_arch(backbone, "oct(a=0.75)", res, classes, policy)).flops
    )


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75])
def test_resnet50_at_224_uniform_octconv_cost_equals_fvcore_and_drops(alpha):
    arch = _arch("resnet50", f"oct(a={alpha})", 224, classes=1000)
    cm = get_cost_model("resnet50", 1000, 224, "all")
    kept = fvcore_flops(build_model(arch), 224)
    per_slot = fvcore_flops(build_model(arch, keep_octaves=False), 224)
    assert cm.cost(arch).flops == kept < per_slot


# --- fast resampling ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(8, 8), (7, 7), (8, 6)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_fast_resampling_gives_the_numbers_of_f_interpolate_and_avg_pool(size, channels_last, grad):
    torch.manual_seed(3)
    op = OctConv2d(16, 16, 3, alpha=0.5).eval()
    x = torch.randn(2, 16, *size)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    pair = _pair(2, 8, 8, *size, dtype=torch.float32)
    with _resample_off():
        expected, expected_merge = op(x), merge_octaves(*pair)
    with torch.set_grad_enabled(grad):
        got, got_merge = op(x), merge_octaves(*pair)
        kept_high, _ = op.octaves(x, keep=True)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_merge, expected_merge, rtol=0, atol=0)  # copies only
    torch.testing.assert_close(kept_high, expected[:, :8], rtol=1e-5, atol=1e-6)


def test_fast_resampling_gradients():
    x = torch.randn(2, 3, 6, 4, dtype=torch.float64, requires_grad=True)
    low = torch.randn(2, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_resample.avg_pool2, (x,))
    assert torch.autograd.gradcheck(lambda h, lo: merge_octaves(h, lo), (x, low))
    assert torch.autograd.gradcheck(lambda h, lo: _resample.add_upsampled(h * 1, lo), (x, low))
    with _resample_off():
        ref = torch.autograd.grad(F.avg_pool2d(x, 2, 2, ceil_mode=True).square().sum(), x)[0]
    torch.testing.assert_close(
        torch.autograd.grad(_resample.avg_pool2(x).square().sum(), x)[0], ref
    )


@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("grad", [False, True])
def test_add_upsampled_is_bit_exact_and_in_place_on_a_contiguous_map(contiguous, grad):
    torch.manual_seed(5)
    full = torch.randn(2, 12, 6, 8)
    cut = slice(None) if contiguous else slice(2, 8)  # a channel slice: strided
    low = torch.randn(2, full[:, cut].shape[1], 3, 4)
    expected = full[:, cut] + F.interpolate(low, size=(6, 8), mode="nearest")
    with torch.set_grad_enabled(grad):
        lo = low.clone().requires_grad_(grad)
        h = (full.clone().requires_grad_(grad) * 1)[:, cut]  # a computed map, as in a network
        assert h.is_contiguous() is contiguous
        ptr = h.data_ptr()
        out = _resample.add_upsampled(h, lo)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    if contiguous:
        assert out.data_ptr() == ptr  # added into the map itself: no up-sampled copy kept
    if grad:
        g_out = torch.randn_like(expected)
        (g_low,) = torch.autograd.grad(out, lo, g_out)
        with _resample_off():
            ref = F.avg_pool2d(g_out, 2) * 4  # the 2x2 sum of the gradient
        torch.testing.assert_close(g_low, ref, rtol=1e-6, atol=1e-6)


def test_pooling_gradient_is_a_quarter_of_the_upsampled_gradient_bit_for_bit():
    x = torch.randn(2, 3, 6, 8, requires_grad=True)
    g = torch.randn(2, 3, 3, 4)
    (got,) = torch.autograd.grad(_resample.avg_pool2(x), x, g)
    with _resample_off():
        (ref,) = torch.autograd.grad(F.avg_pool2d(x, 2, 2, ceil_mode=True), x, g)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_traced_models_keep_the_upsampling_fvcore_counts():
    op = OctConv2d(8, 8, 3, alpha=0.5).eval()
    graph = str(torch.jit.trace(op, torch.randn(1, 8, 8, 8)).inlined_graph)
    assert "aten::upsample_nearest2d" in graph and "aten::avg_pool2d" in graph


@contextlib.contextmanager
def _resample_off():
    saved = _resample.use_fast
    _resample.use_fast = lambda x: False
    try:
        yield
    finally:
        _resample.use_fast = saved


def test_the_lowest_flops_of_a_range_belong_to_a_real_architecture():
    # "achievable FLOPs are X to Y" (the budget check) must name a FLOPs count some
    # architecture has: with OctConv pairs the cheapest is all oct(a=0.75); with the default
    # menu the per-slot cheapest choices (no OctConv pair saves more than SCConv costs less).
    cm = get_cost_model("cifar_resnet20", 10, 16, "all")
    oct_space = SearchSpace("cifar_resnet20", num_classes=10, resolution=16, menu=OCT_MENU)
    assert (
        cm.range(oct_space.choices).min_flops
        == cm.cost(_arch("cifar_resnet20", "oct(a=0.75)", 16)).flops
    )
    space = SearchSpace("cifar_resnet20", num_classes=10, resolution=16)
    cheapest = {
        p: min(labels, key=lambda lbl, p=p: cm.cost_of_labels({p: lbl}).flops)
        for p, labels in space.choices.items()
    }
    r = cm.range(space.choices)
    assert r.min_flops == cm.cost_of_labels(cheapest).flops
    rng = random.Random(3)
    assert all(r.min_flops <= cm.cost(space.sample(rng)).flops for _ in range(200))
