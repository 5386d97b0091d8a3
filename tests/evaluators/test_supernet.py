"""The weight-sharing supernet evaluator: paths, sharing, BN recalibration, resume, lock, CLI.

Everything runs on cifar_resnet20 at 16x16 with the synthetic dataset and a few steps, so the
whole file takes seconds on one CPU thread.
"""

import io
import random
import threading
import time

import pytest
import torch

from evaluators.config import EvalConfig
from evaluators.cost import get_cost_model
from evaluators.objectives import Evaluator
from evaluators.supernet.model import ChoiceSlot, Supernet
from evaluators.supernet.score import recalibrate_bn
from evaluators.supernet.train import PathSampler, load_or_train, read_checkpoint, train_supernet
from nas.search import main as search_main
from nas.search import run_search
from search_spaces.arch import build_model
from search_spaces.ops import OPS
from search_spaces.ops.linearconv import split_filters
from search_spaces.space import SearchSpace

RES = 16


@pytest.fixture(scope="module")
def space():
    return SearchSpace("cifar_resnet20", resolution=RES)


def _net(space, seed=0):
    torch.manual_seed(seed)
    return Supernet(space)


def _loaders(batch_size=16):
    config = EvalConfig(
        dataset="synthetic", proxy_subset=64, batch_size=batch_size, extra={"synthetic_size": 100}
    )
    return Evaluator(config).loaders(RES, 10)


# -- the model ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_path_computes_exactly_what_build_model_computes_with_its_weights(space, mode):
    net = _net(space)
    rng = random.Random(3)
    archs = [space.uniform(s.label) for s in space.menu] + [space.sample(rng) for _ in range(4)]
    x = torch.randn(3, 3, RES, RES)
    for arch in archs:
        net.set_path(arch)
        ref = net.extract(arch)  # build_model(arch), weights copied in
        assert type(ref) is type(build_model(arch))
        net.train(mode == "train")
        ref.train(mode == "train")
        with torch.no_grad():
            assert torch.equal(net(x), ref(x)), arch


def test_the_all_conv_path_is_the_backbone_built_from_the_same_seed(space):
    from search_spaces.backbones import get_backbone

    torch.manual_seed(7)
    backbone = get_backbone("cifar_resnet20", 10).eval()
    net = _net(space, seed=7).eval()  # the backbone is built first, then the other choices
    net.set_path(space.uniform("conv"))
    x = torch.randn(2, 3, RES, RES)
    with torch.no_grad():
        assert torch.equal(net(x), backbone(x))


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75])
def test_an_oct_choice_is_the_octconv_whose_init_cut_the_slot_kernel(space, alpha):
    from search_spaces.ops.octconv import OctConv2d

    slot = next(s for s in space.slots if s.path == "layer2.0.conv2")  # 32 -> 32, 3x3
    torch.manual_seed(11)
    ref = OctConv2d(32, 32, 3, alpha=alpha)  # its reset_parameters draws one full kernel...
    torch.manual_seed(11)
    full = torch.empty(32, 32, 3, 3)
    torch.nn.init.kaiming_normal_(full, mode="fan_out", nonlinearity="relu")  # ...this one
    conv = torch.nn.Conv2d(32, 32, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(full)
    label = f"oct(a={alpha})"
    choice = ChoiceSlot(slot, conv, [space.spec("conv"), space.spec(label)])
    choice.set_active(label)
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        assert torch.equal(choice(x), ref(x))


def test_conv_oct_and_linear_choices_train_one_kernel_per_slot(space):
    net = _net(space)
    slot = net.choice_slot("layer2.0.conv2")
    kernel = slot.weight
    oct_state = slot.tensors("oct(a=0.5)")
    oh, ih = 16, 16  # 32 channels split in half
    assert torch.equal(oct_state["weight_hh"], kernel[:oh, :ih])
    assert torch.equal(oct_state["weight_ll"], kernel[oh:, ih:])
    assert slot.tensors("linear(a=0.25,rank=full)")["primary"].data_ptr() == kernel.data_ptr()
    x = torch.randn(2, 3, RES, RES)
    for label in ("oct(a=0.75)", "linear(a=0.5,rank=4)"):
        net.set_path({p: ("conv" if p != "layer2.0.conv2" else label) for p in net.slot_paths})
        net.zero_grad(set_to_none=True)
        net(x).sum().backward()
        assert kernel.grad is not None and kernel.grad.abs().sum() > 0, label
        scconv = slot.owned["c1"]  # scconv(a=0.25,...) owns its weights: untouched
        assert all(p.grad is None for p in scconv.parameters())


def test_the_parameter_count_is_the_backbone_plus_scconv_modules_plus_linear_coefficients(space):
    net = _net(space)
    expected = sum(p.numel() for p in build_model(space.uniform("conv")).parameters())
    for slot in space.slots:
        for label in space.choices[slot.path]:
            spec = space.spec(label)
            if spec.op == "scconv":
                expected += OPS["scconv"].cost(slot, **spec.hparams).params
            elif spec.op == "linearconv":
                p, s = split_filters(slot.out_channels, spec.hparams["alpha"])
                r = spec.hparams["rank"]
                expected += p * s if r is None else r * (p + s)
    assert net.parameter_count() == expected == 387_102
    unshared = expected
    for slot in space.slots:  # every conv/oct/linear choice would hold its own kernel
        kernel = slot.out_channels * slot.in_channels * slot.kernel_size**2
        unshared -= kernel  # the backbone's one, counted above
        for label in space.choices[slot.path]:
            spec = space.spec(label)
            if spec.op in ("conv", "octconv"):
                unshared += kernel
            elif spec.op == "linearconv":  # its primary filters: P of the out_channels
                p = split_filters(slot.out_channels, spec.hparams["alpha"])[0]
                unshared += kernel // slot.out_channels * p
    assert net.unshared_parameter_count() == unshared
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats = sum(2 * bn.num_features * 4 + 8 for bn in bns)  # mean, var; a long counter
    assert net.memory_bytes() == 4 * expected + stats


def test_a_choice_outside_the_menu_is_refused_with_the_slot_and_its_choices():
    net = Supernet(SearchSpace("cifar_resnet20", resolution=RES, menu="conv,oct(a=0.5)"))
    path = dict.fromkeys(net.slot_paths, "conv")
    path["layer1.0.conv1"] = "oct(a=0.25)"
    with pytest.raises(ValueError, match=r"slot 'layer1.0.conv1': choice 'oct\(a=0.25\)' is not"):
        net.set_path(path)


# -- BN recalibration ---------------------------------------------------------------------
def test_bn_recalibration_sets_running_stats_to_the_mean_of_the_batch_statistics(space):
    net = _net(space)
    net.set_path(space.sample(random.Random(0)))
    bn = net.net.bn1
    bn.running_mean.fill_(5.0)
    batches = [(torch.randn(8, 3, RES, RES), torch.zeros(8, dtype=torch.long)) for _ in range(3)]
    used = recalibrate_bn(net, batches, 2, torch.device("cpu"))
    assert used == 2 and not net.training and bn.momentum == 0.1
    with torch.no_grad():
        feats = [net.net.conv1(x) for x, _ in batches[:2]]  # the stem: what bn1 sees
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-6)
    assert int(bn.num_batches_tracked) == 2


# -- training -------------------------------------------------------------------------------
def test_budget_sampling_draws_only_paths_within_the_budget(space):
    cm = get_cost_model("cifar_resnet20", 10, RES, "all")
    sampler = PathSampler(space.choices, cost_of_labels=cm.cost_of_labels, max_flops=5e6)
    rng = random.Random(0)
    flops = [cm.cost_of_labels(sampler(rng)).flops for _ in range(30)]
    assert max(flops) <= 5e6 and sampler.rejected > 0
    tight = PathSampler(space.choices, cost_of_labels=cm.cost_of_labels, max_flops=2e6, max_tries=3)
    labels = tight(rng)  # 1.90 MFLOPs is the cheapest path: rejection alone rarely gets there
    assert cm.cost_of_labels(labels).flops <= 2e6 and tight.repaired == 1


SETTINGS = {"what": "test"}


def _train(space, loader, file, **kw):
    net = _net(space)
    cm = get_cost_model("cifar_resnet20", 10, RES, "all")
    sampler = PathSampler(space.choices, cost_of_labels=cm.cost_of_labels, max_flops=7e6)
    record = train_supernet(
        net, loader, sampler, epochs=2, settings=SETTINGS, lr=0.05, seed=1,
        max_steps_per_epoch=3, checkpoint=file, **kw,
    )  # fmt: skip
    return net, record


def test_resumed_supernet_training_gives_the_weights_of_uninterrupted_training(space, tmp_path):
    loader, _ = _loaders()
    straight, rec = _train(space, loader, tmp_path / "a.pt")
    assert rec["epochs_done"] == 2 and rec["steps_done"] == 6 and rec["complete"]
    _, first = _train(space, loader, tmp_path / "b.pt", stop_after=1)
    ckpt = read_checkpoint(tmp_path / "b.pt")
    assert first["epochs_done"] == 1 and not ckpt["record"]["complete"]
    resumed, rec2 = _train(space, loader, tmp_path / "b.pt", resume=ckpt)
    assert rec2["epochs_done"] == 2 and rec2["steps_done"] == 6 and rec2["paths"]["drawn"] >= 6
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], _net(space).state_dict()[k]) for k in a)  # it trained


def test_the_second_worker_waits_for_the_first_and_loads_its_file(space, tmp_path):
    loader, _ = _loaders()
    file = tmp_path / "sn" / "net.pt"
    trained, results = [], {}

    def train(net, ckpt):
        trained.append(threading.current_thread().name)
        time.sleep(0.5)  # long enough for the other worker to arrive and wait
        cm = get_cost_model("cifar_resnet20", 10, RES, "all")
        sampler = PathSampler(space.choices, cost_of_labels=cm.cost_of_labels)
        return train_supernet(
            net, loader, sampler, epochs=1, settings=SETTINGS, lr=0.05,
            max_steps_per_epoch=2, checkpoint=file,
        )  # fmt: skip

    def worker(name):
        net, record, status = load_or_train(file, lambda: _net(space), train, SETTINGS)
        results[name] = (net, status, time.monotonic())

    threads = [threading.Thread(target=worker, args=(n,), name=n) for n in ("w1", "w2")]
    threads[0].start()
    time.sleep(0.1)
    threads[1].start()
    for t in threads:
        t.join(30)
    assert trained == ["w1"]
    assert results["w1"][1] == "trained" and results["w2"][1] == "loaded"
    assert results["w2"][2] >= results["w1"][2] - 0.05  # w2 could only finish after w1
    a, b = results["w1"][0].state_dict(), results["w2"][0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="holds a supernet trained with other settings"):
        load_or_train(file, lambda: _net(space), train, {"what": "else"})


# -- the command ------------------------------------------------------------------------------
BASE = [
    "--backbone", "cifar_resnet20", "--resolution", "16", "--dataset", "synthetic",
    "--evaluator", "supernet", "--trials", "1",
]  # fmt: skip
BAD = [
    ("bn_batches=0", "evaluator option bn_batches must be a positive integer, got 0"),
    (
        "supernet_epochs=two",
        "evaluator option supernet_epochs must be a positive integer, got 'two'",
    ),
    ("supernet_sampling=greedy", "supernet_sampling must be one of budget, uniform, got 'greedy'"),
    ("supernet_lr=-1", "evaluator option supernet_lr must be a number > 0, got -1"),
    ("supernet_epoch=3", "evaluator option 'supernet_epoch' is not read by the supernet evaluator"),
    (
        "supernet_menu=conv",
        "evaluator option 'supernet_menu' is not read by the supernet evaluator",
    ),
]


@pytest.mark.parametrize("option, match", BAD, ids=[b[0] for b in BAD])
def test_bad_supernet_options_are_one_sentence_exit_2_nothing_written(
    tmp_path, monkeypatch, capsys, option, match
):
    monkeypatch.chdir(tmp_path)
    try:
        code = search_main([*BASE, "--evaluator-option", option])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert match in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_search_with_the_supernet_evaluator_trains_once_and_scores_every_trial(tmp_path):
    kw = dict(
        backbone="cifar_resnet20",
        resolution=RES,
        dataset="synthetic",
        budget="7MFLOPs",
        proxy_subset=200,
        batch_size=16,
        seed=1,
        device="cpu",
        evaluator="supernet",
        evaluator_options={
            "supernet_epochs": 2,
            "max_steps_per_epoch": 3,
            "max_val_batches": 2,
            "synthetic_size": 400,
            "bn_batches": 2,
        },
        storage=str(tmp_path / "s.db"),
        study="sn",
        out=str(tmp_path / "out"),
    )
    log = io.StringIO()
    res = run_search(trials=4, stream=log, **kw)
    assert res.n_complete == 4 and res.pareto
    files = sorted((tmp_path / "out" / "supernet").glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith("cifar_resnet20-16-all-synthetic-e2-")
    assert read_checkpoint(files[0])["record"]["complete"]
    from nas.backends.optuna_backend import load_rows

    rows, _ = load_rows(str(tmp_path / "s.db"), "sn")
    feasible = [r for r in rows if r.feasible]
    assert len(feasible) == 4
    statuses = [r.user_attrs["evaluator_extra"]["supernet"]["status"] for r in feasible]
    assert statuses == ["trained"] * 4  # one process: trained once, kept in memory
    for r in feasible:
        sn = r.user_attrs["evaluator_extra"]["supernet"]
        assert sn["file"] == str(files[0]) and sn["bn_batches"] == 2
        assert 0.0 <= r.user_attrs["accuracy"] <= 1.0 and r.user_attrs["flops"] <= 7e6
    # A second run of the same study (a new process would do the same) loads the file.
    from evaluators.supernet import score

    score._EVALUATORS.clear()
    res2 = run_search(trials=6, stream=io.StringIO(), **kw)
    assert res2.n_complete == 6
    rows, _ = load_rows(str(tmp_path / "s.db"), "sn")
    new = [r for r in rows if r.feasible and r.number not in {f.number for f in feasible}]
    assert new and {r.user_attrs["evaluator_extra"]["supernet"]["status"] for r in new} == {
        "loaded"
    }


# -- CUDA -------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_with_amp_and_scoring(tmp_path):
    from evaluators.supernet.score import SupernetEvaluator

    config = EvalConfig(
        dataset="synthetic",
        proxy_subset=64,
        batch_size=16,
        device="cuda",
        latency="off",
        extra={
            "synthetic_size": 100,
            "supernet_epochs": 1,
            "max_steps_per_epoch": 2,
            "supernet_dir": str(tmp_path),
        },
    )
    ev = SupernetEvaluator(config, log=lambda line: None)
    space = SearchSpace("cifar_resnet20", resolution=RES)
    arch = space.sample(random.Random(0))
    m = ev.evaluate(arch)
    assert m.failure is None and 0.0 <= m.accuracy <= 1.0
    assert m.extra["supernet"]["device"] == "cuda" and m.extra["supernet"]["status"] == "trained"
    net = ev.supernet(arch)[0]
    assert next(net.parameters()).is_cuda
    ref = net.extract(arch).eval()
    x = torch.randn(2, 3, RES, RES, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), ref(x))
