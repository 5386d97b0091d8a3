import random

import pytest

from evaluators.cost import count_params, fvcore_flops, get_cost_model
from search_spaces.arch import Architecture, build_model
from search_spaces.space import SearchSpace

# (backbone, classes, resolution, slot policy): every family the issue names; the large
# ImageNet models at reduced resolution so the fvcore traces stay quick (the count is exact
# at any resolution, so this checks the same formulas).
FAST = [
    ("cifar_resnet20", 10, 32, "all"),
    ("cifar_resnet56", 100, 32, "spatial"),
    ("resnet18", 10, 64, "all"),
    ("mobilenet_v2", 10, 64, "all"),
]
SLOW = [
    ("cifar_resnet32", 10, 32, "all"),
    ("cifar_resnet44", 10, 32, "all"),
    ("cifar_resnet110", 10, 32, "all"),
    ("resnet50_cifar", 100, 32, "all"),
    ("resnet34", 10, 32, "all"),
    ("resnet50", 1000, 224, "spatial"),
    ("resnet101", 10, 32, "all"),
    ("resnext50_32x4d", 10, 32, "all"),
    ("wide_resnet50_2", 10, 32, "all"),
    ("densenet121", 10, 32, "all"),
    ("vgg11_bn", 10, 32, "all"),
]


def _check_random_archs(backbone, classes, resolution, policy, n):
    space = SearchSpace(backbone, num_classes=classes, resolution=resolution, slots=policy)
    cm = get_cost_model(backbone, classes, resolution, policy)
    rng = random.Random(hash((backbone, policy)) & 0xFFFF)
    for _ in range(n):
        arch = space.sample(rng)
        model = build_model(arch)
        c = cm.cost(arch)
        assert c.flops == fvcore_flops(model, resolution), arch
        assert c.params == count_params(model), arch


@pytest.mark.parametrize("case", FAST, ids=lambda c: f"{c[0]}-{c[2]}-{c[3]}")
def test_analytic_cost_equals_fvcore_on_random_architectures(case):
    _check_random_archs(*case, n=3)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW, ids=lambda c: f"{c[0]}-{c[2]}-{c[3]}")
def test_analytic_cost_equals_fvcore_on_every_backbone(case):
    _check_random_archs(*case, n=1)


def test_all_conv_resnet56_reproduces_scconv_paper_figures():
    arch = Architecture.uniform("cifar_resnet56", num_classes=10, resolution=32)
    c = get_cost_model("cifar_resnet56", 10, 32, "all").cost(arch)
    assert c.flops == 126_841_472  # the paper's 126.84 M
    assert round(c.params / 1e6, 2) == 0.86


def test_resnet50_fixed_part_and_range():
    cm = get_cost_model("resnet50", 1000, 224, "all")
    conv = Architecture.uniform("resnet50", num_classes=1000, resolution=224)
    assert cm.cost(conv).flops == 4_111_512_576  # fvcore's ResNet-50 in eval mode
    space = SearchSpace("resnet50", num_classes=1000, resolution=224)
    r = cm.range(space.choices)
    assert r.min_flops < 2e9 < r.max_flops  # --budget 2GFLOPs is reachable with "all"
    assert (
        r.max_flops
        == cm.cost(
            space.to_architecture(
                {
                    p: max(c, key=lambda lbl: cm.slot_cost(space.slots[i], space.spec(lbl)).flops)
                    for i, (p, c) in enumerate(space.choices.items())
                }
            )
        ).flops
    )
    spatial = SearchSpace("resnet50", num_classes=1000, resolution=224, slots="spatial")
    rs = get_cost_model("resnet50", 1000, 224, "spatial").range(spatial.choices)
    assert rs.min_flops > 2e9  # ... and with "spatial" it is not


def test_cost_of_labels_matches_cost():
    space = SearchSpace("cifar_resnet20")
    cm = get_cost_model("cifar_resnet20", 10, 32, "all")
    arch = space.sample(random.Random(3))
    assert cm.cost_of_labels(space.labels_of(arch)) == cm.cost(arch)


def test_cost_model_refuses_other_space():
    cm = get_cost_model("cifar_resnet20", 10, 32, "all")
    with pytest.raises(ValueError, match="is not of this cost model's space"):
        cm.cost(Architecture.uniform("cifar_resnet32"))
