"""A new study begins with the uniform networks that fit the budget (the papers' recipes), then
random architectures fitted to it; the default proxy trains CIFAR ResNets at 16 px."""

import optuna
import pytest
from optuna.trial import TrialState

from nas.backends.optuna_backend import Budgets, FidelityLadder, OptunaSearch
from nas.config import SearchConfig
from nas.plan import prepare
from nas.search import main

SURROGATE = "evaluators.surrogate:evaluate"


def _space():
    from evaluators.cost import get_cost_model
    from search_spaces.space import SearchSpace

    space = SearchSpace("cifar_resnet20", num_classes=10, resolution=16)
    return space, get_cost_model("cifar_resnet20", 10, 16, "all")


def _engine(tmp_path, space, cm, budgets, warm_start):
    return OptunaSearch(
        choices=space.choices,
        to_architecture=space.to_architecture,
        cost_of_labels=cm.cost_of_labels,
        evaluate=lambda arch, epochs: None,  # never called: the tests only open the study
        objectives=("accuracy", "flops"),
        budgets=budgets,
        ladder=FidelityLadder((1,)),
        sampler="random",
        seed=0,
        storage=str(tmp_path / "w.db"),
        study_name="warm",
        warm_start=warm_start,
    )


def _uniform_costs(space, cm):
    """Each label of the menu with the FLOPs and params of its uniform network (built, then
    priced): first those every slot offers, in the menu's order, then the others, named
    ``"<label> where offered"`` (their network keeps conv in the slots that lack them)."""
    shared = [s.label for s in space.menu if all(s.label in c for c in space.choices.values())]
    assert 6 <= len(shared) < len(space.menu)  # the stem's 3 channels rule out rank 4 at a=.25
    others = [s.label for s in space.menu if s.label not in shared]
    costs = {label: cm.cost(space.uniform(label)) for label in shared}
    costs.update({f"{label} where offered": cm.cost(space.uniform(label)) for label in others})
    return costs


def _labels(name):
    return name.removesuffix(" where offered")


def _queued(tmp_path):
    study = optuna.load_study(study_name="warm", storage=f"sqlite:///{tmp_path / 'w.db'}")
    return [t for t in study.get_trials() if t.state == TrialState.WAITING]


def test_the_uniform_networks_under_the_budget_come_first_then_random_ones(tmp_path):
    space, cm = _space()
    costs = _uniform_costs(space, cm)
    budget = round(0.5 * costs["conv"].flops)
    fitting = [label for label, c in costs.items() if c.flops <= budget]
    assert 2 <= len(fitting) < len(costs) and "conv" not in fitting
    assert "scconv(a=0.25,r=2,g=2) where offered" in fitting  # the SCConv paper's networks
    info = _engine(tmp_path, space, cm, Budgets(max_flops=budget), 6).open()
    assert info.warm_uniform == tuple(fitting) and info.warm_random == 6 - len(fitting)
    queued = _queued(tmp_path)
    assert len(queued) == 6
    for t, name in zip(queued, fitting):
        label, fixed = _labels(name), t.system_attrs["fixed_params"]
        if name == label:
            assert set(fixed.values()) == {label}
            said = f"warm start (uniform network: {label} in every slot)"
            assert t.user_attrs["proposed_by"] == said
        else:  # the label wherever a slot offers it, conv in the others
            assert fixed == {p: label if label in c else "conv" for p, c in space.choices.items()}
            assert set(fixed.values()) == {label, "conv"}
            assert t.user_attrs["proposed_by"] == (
                f"warm start (uniform network: {label} in the slots that offer it)")
    for t in queued[len(fitting):]:
        assert t.user_attrs["proposed_by"] == "warm start (random architecture fitted to budget)"
        assert len(set(t.system_attrs["fixed_params"].values())) > 1
        assert cm.cost_of_labels(t.system_attrs["fixed_params"]).flops <= budget


def test_a_params_budget_and_a_small_warm_start_limit_the_uniform_networks(tmp_path):
    space, cm = _space()
    costs = _uniform_costs(space, cm)
    # Under the largest params but over the smallest: only the reduced-parameter networks.
    limit = max(c.params for c in costs.values()) - 1
    fitting = [label for label, c in costs.items() if c.params <= limit]
    assert "conv" not in fitting and len(fitting) >= 3
    info = _engine(tmp_path, space, cm, Budgets(max_params=limit), 2).open()
    assert info.warm_uniform == tuple(fitting[:2]) and info.warm_random == 0
    assert len(_queued(tmp_path)) == 2


def test_a_budget_below_every_uniform_network_enqueues_random_ones_only(tmp_path):
    space, cm = _space()
    costs = _uniform_costs(space, cm)
    budget = min(c.flops for c in costs.values()) - 1
    info = _engine(tmp_path, space, cm, Budgets(max_flops=budget), 3).open()
    assert info.warm_uniform == () and info.warm_random == 3


@pytest.mark.parametrize("trials", [8, 24], ids=["warm-2", "warm-6"])
def test_the_search_prints_and_evaluates_the_uniform_networks_first(
    tmp_path, monkeypatch, capsys, small_search, trials
):
    monkeypatch.chdir(tmp_path)
    space, cm = _space()
    costs = _uniform_costs(space, cm)
    budget = 0.5 * costs["conv"].flops
    fitting = [label for label, c in costs.items() if c.flops <= budget]
    code = main([*small_search, "--budget", f"{budget / 1e6:.4f}MFLOPs", "--trials", str(trials),
                 "--sampler", "random", "--objectives", "accuracy,flops"])
    out = capsys.readouterr().out
    assert code == 0
    if trials == 8:  # a warm start of 2: the first two uniform networks that fit
        assert (f"Warm start: the uniform networks {fitting[0]}, {fitting[1]} (one operator in "
                "every slot, the papers' recipe), then the random sampler proposes.") in out
        fitting = fitting[:2]
    else:  # a warm start of 6: the SCConv networks too, with conv where SCConv cannot go
        assert (f"Warm start: the uniform networks {', '.join(fitting)} (one operator in every "
                "slot that offers it, conv in the others, the papers' recipe) and "
                f"{6 - len(fitting)} random architecture") in out
    study = optuna.load_study(study_name=None, storage="sqlite:///runs/convnas.db")
    first = sorted(study.get_trials(), key=lambda t: t.number)[: len(fitting)]
    # the SCConv networks are the papers': the 1x1 downsampling convolutions stay conv
    assert [t.params for t in first] == [
        {p: _labels(n) if _labels(n) in c else "conv" for p, c in space.choices.items()}
        for n in fitting
    ]
    assert all(t.state == TrialState.COMPLETE for t in first)


@pytest.mark.parametrize(
    ("backbone", "kw", "expected"),
    [
        ("cifar_resnet20", {}, 16),
        ("cifar_resnet56", {"dataset": "cifar10-sample"}, 16),
        ("cifar_resnet20", {"proxy_resolution": 32}, 32),  # an explicit value wins
        ("cifar_resnet20", {"resolution": 64}, None),  # only 32x32 was measured
        ("resnet18", {}, None),  # synthetic images are drawn at any size
        ("resnet18", {"dataset": "cifar10-sample"}, 32),  # on a CPU: not upsampled to 224
        ("resnet18", {"dataset": "cifar10-sample", "proxy_resolution": 224}, 224),
        ("cifar_resnet20", {"evaluator": "supernet"}, None),  # the supernet was measured at 32
    ],
)
def test_the_default_proxy_resolution(tmp_path, backbone, kw, expected):
    kw = {"dataset": "synthetic", **kw}
    config = SearchConfig(backbone=backbone, max_flops=10**12,
                          storage=f"sqlite:///{tmp_path / 'p.db'}", out=str(tmp_path / "o"),
                          **kw)
    plan = prepare(config)
    assert plan.config.proxy_resolution == expected
    assert plan.resolved["proxy_resolution"] == expected
    assert plan.eval_config.proxy_resolution == expected


def test_on_a_gpu_cifar_images_train_at_the_architectures_resolution():
    from evaluators.config import default_proxy_resolution

    assert default_proxy_resolution("resnet50", 224, dataset_kind="cifar10", device="cpu") == 32
    assert default_proxy_resolution("resnet50", 224, dataset_kind="cifar10", device="cuda") is None
    assert default_proxy_resolution("resnet50", 224, dataset_kind="imagefolder") is None
    assert default_proxy_resolution("resnet50", 32, dataset_kind="cifar100") is None
