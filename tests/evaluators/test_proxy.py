import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from evaluators.proxy import (
    ProxyResult,
    configure_cpu_threads,
    describe_failure,
    lr_factor,
    resolve_amp_dtype,
    resolve_device,
    train_proxy,
)
from search_spaces.arch import Architecture, build_model
from search_spaces.ops.linearconv import REG_EVERY_DEFAULT, REG_LAMBDA_DEFAULT, LinearConv2d

gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _data(n_train=48, n_val=32, res=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_val, 3, res, res, generator=g)
    y = torch.randint(0, classes, (n_train + n_val,), generator=g)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def _loaders(batch=16, shuffle=True, **kw):
    (xt, yt), (xv, yv) = _data(**kw)
    train = DataLoader(TensorDataset(xt, yt), batch_size=batch, shuffle=shuffle, drop_last=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=32)
    return train, val


class SmallNet(nn.Module):
    """conv -> BN -> ReLU -> (LinearConv) -> dropout -> pool -> fc; optional fault hooks."""

    def __init__(self, classes=4, linear=False, dropout=0.0):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.mid = LinearConv2d(8, 8, 3, alpha=0.5) if linear else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = self.mid(F.relu(self.bn(self.conv(x))))
        return self.fc(self.drop(x.mean((2, 3))))


def _net(seed=1, **kw):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SmallNet(**kw)


def _same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# -- schedule -------------------------------------------------------------------------------
def test_lr_factor_matches_the_closed_forms():
    assert lr_factor("cosine", 0, 100) == 1.0
    assert lr_factor("cosine", 50, 100) == pytest.approx(0.5)
    assert lr_factor("cosine", 25, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor("cosine", 100, 100) == pytest.approx(0.0)
    assert lr_factor("linear", 30, 120) == pytest.approx(0.75)
    assert [lr_factor("step", s, 8) for s in (0, 3, 4, 5, 6, 7)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    assert lr_factor("constant", 7, 8) == 1.0
    with pytest.raises(ValueError, match="schedule must be one of cosine, linear, step"):
        lr_factor("exp", 0, 1)


def test_schedule_spans_total_epochs_not_the_epochs_of_this_call():
    train, val = _loaders()  # 3 steps per epoch
    _, state = train_proxy(_net(), train, val, epochs=1, total_epochs=4, lr=0.1)
    # The last step (step 2 of 12) ran at 0.1 * cosine(2 / 12), not at the end of a 3-step schedule.
    lr_last = state.optimizer_state["param_groups"][0]["lr"]
    assert lr_last == pytest.approx(0.1 * lr_factor("cosine", 2, 12))
    assert state.steps_done == 3 and state.total_epochs == 4 and state.epochs_done == 1


# -- equivalence with a hand-written loop ------------------------------------------------------
@pytest.mark.parametrize("reg_every", [None, 1, 2])
def test_equals_a_hand_written_loop_with_the_linearconv_term(reg_every):
    """Constant LR, no shuffle, no dropout: train_proxy must be exactly this loop."""
    train, val = _loaders(shuffle=False)
    lam = 0.05
    ref = _net(linear=True)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    step = 0
    for _ in range(2):
        for x, y in train:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(ref(x), y)
            if reg_every is not None and step % reg_every == 0:
                loss = loss + lam * ref.mid.regularization_loss()
            loss.backward()
            opt.step()
            step += 1
    model = _net(linear=True)
    result, state = train_proxy(
        model,
        train,
        val,
        epochs=2,
        schedule="constant",
        lr=0.05,
        linearconv_reg=reg_every is not None,
        reg_lambda=lam,
        reg_every=reg_every,
    )
    assert result.failure is None and result.steps_done == 6
    for (k, a), b in zip(ref.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=k)
    ref.eval()
    with torch.no_grad():
        xs, ys = val.dataset.tensors
        acc = (ref(xs).argmax(1) == ys).float().mean().item()
    assert result.accuracy == pytest.approx(acc)


def test_linearconv_term_uses_the_papers_defaults():
    assert (REG_LAMBDA_DEFAULT, REG_EVERY_DEFAULT) == (1e-2, 10)
    train, val = _loaders()
    _, state = train_proxy(_net(linear=True), train, val, epochs=1)
    assert state.settings["linearconv_reg"] is True
    assert (state.settings["reg_lambda"], state.settings["reg_every"]) == (1e-2, 10)
    _, state = train_proxy(_net(), train, val, epochs=1)  # no LinearConv: no term
    assert state.settings["linearconv_reg"] is False


# -- determinism and resuming ---------------------------------------------------------------
def test_resuming_from_one_epoch_equals_two_epochs_straight():
    train, val = _loaders()
    straight, s2 = train_proxy(_net(linear=True, dropout=0.3), train, val, epochs=2, seed=5)
    first, s1 = train_proxy(
        _net(linear=True, dropout=0.3), train, val, epochs=1, total_epochs=2, seed=5
    )
    # A freshly built model with other weights: the state overrides them.
    resumed, s2b = train_proxy(
        _net(seed=99, linear=True, dropout=0.3), train, val, epochs=2, seed=5, state=s1
    )
    _same_weights(s2.model_state, s2b.model_state)
    assert resumed.accuracy == straight.accuracy and resumed.val_loss == straight.val_loss
    assert (resumed.resumed_from_epoch, resumed.epochs_done, resumed.steps_done) == (1, 2, 6)
    assert resumed.total_train_time_s == pytest.approx(s1.total_train_time_s + resumed.train_time_s)
    assert first.epochs_done == 1


def test_resume_with_the_evaluators_synthetic_data_and_augmentation():
    from evaluators.data import make_loader, proxy_split

    tr, va = proxy_split(
        "synthetic", subset=48, val_size=16, resolution=8, augment="cifar", synthetic_size=80
    )
    train = make_loader(tr, batch_size=16, shuffle=True, seed=0, drop_last=True)
    val = make_loader(va, batch_size=16, shuffle=False)
    _, straight = train_proxy(_net(classes=10), train, val, epochs=2, seed=1)
    _, half = train_proxy(_net(classes=10), train, val, epochs=1, total_epochs=2, seed=1)
    # Consume the loader (and the dataset's augmentation generator) as another candidate would.
    train_proxy(_net(seed=7, classes=10), train, val, epochs=1, seed=3)
    _, resumed = train_proxy(_net(classes=10), train, val, epochs=2, seed=1, state=half)
    _same_weights(straight.model_state, resumed.model_state)


def test_same_seed_same_run_and_the_callers_rng_is_untouched():
    train, val = _loaders()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, sa = train_proxy(_net(dropout=0.5), train, val, epochs=2, seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    b, sb = train_proxy(_net(dropout=0.5), train, val, epochs=2, seed=0)
    _same_weights(sa.model_state, sb.model_state)
    assert a.accuracy == b.accuracy
    _, sc = train_proxy(_net(dropout=0.5), train, val, epochs=2, seed=1)
    assert not torch.equal(sa.model_state["conv.weight"], sc.model_state["conv.weight"])


def test_asking_for_the_epochs_already_done_only_revalidates():
    train, val = _loaders()
    r1, s1 = train_proxy(_net(), train, val, epochs=1)
    model = _net(seed=42)
    r2, s2 = train_proxy(model, train, val, epochs=1, state=s1)
    assert r2.accuracy == r1.accuracy and r2.train_time_s == 0.0 and r2.steps_done == 3
    _same_weights(s1.model_state, {k: v for k, v in model.state_dict().items()})


def test_resume_rejects_other_settings_and_going_back():
    train, val = _loaders()
    _, s = train_proxy(_net(), train, val, epochs=2, total_epochs=3)
    with pytest.raises(ValueError, match=r"cannot resume: the state was trained with lr=0.05"):
        train_proxy(_net(), train, val, epochs=3, lr=0.1, state=s)
    with pytest.raises(ValueError, match="total_epochs=5 differs from the state's schedule"):
        train_proxy(_net(), train, val, epochs=3, total_epochs=5, state=s)
    with pytest.raises(ValueError, match="epochs=1 is below the 2 epochs the state already has"):
        train_proxy(_net(), train, val, epochs=1, state=s)


# -- faults are results -----------------------------------------------------------------------
class Faulty(nn.Module):
    """Wraps SmallNet; raises or emits NaN on chosen calls (a real module, injecting a fault)."""

    def __init__(self, *, kind, at_call=1, in_eval=False):
        super().__init__()
        self.net, self.kind, self.at_call, self.in_eval = _net(), kind, at_call, in_eval
        self.calls = 0

    def forward(self, x):
        if self.training or self.in_eval:
            self.calls += 1
            if self.calls >= self.at_call and (self.in_eval == (not self.training)):
                if self.kind == "nan":
                    return self.net(x) * float("nan")
                if self.kind == "oom":
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
                raise RuntimeError("boom: sizes do not match\nsecond line of the message")
        return self.net(x)


@pytest.mark.parametrize("check_every", [1, 4])
def test_non_finite_loss_is_a_failure_naming_the_first_bad_step(check_every):
    train, val = _loaders()  # 3 steps per epoch: call 5 is epoch 2, step 2
    result, state = train_proxy(
        Faulty(kind="nan", at_call=5), train, val, epochs=3, check_every=check_every
    )
    assert result.failure == "non-finite loss at epoch 2 step 2"
    assert state is None and result.accuracy is None and not result.ok
    assert result.epochs_done == 0


def test_exception_inside_an_op_is_a_one_line_failure_and_the_process_goes_on():
    train, val = _loaders()
    model = Faulty(kind="error", at_call=2)  # the first step runs and leaves gradients
    result, state = train_proxy(model, train, val, epochs=1)
    assert result.failure == "RuntimeError in forward: boom: sizes do not match"
    assert state is None
    assert all(p.grad is None for p in model.parameters())  # released
    ok, _ = train_proxy(_net(), train, val, epochs=1)  # the next candidate trains normally
    assert ok.failure is None and 0.0 <= ok.accuracy <= 1.0


def test_out_of_memory_is_a_failure():
    train, val = _loaders()
    result, state = train_proxy(Faulty(kind="oom"), train, val, epochs=1)
    assert result.failure == (
        "out of memory in forward: CUDA out of memory. Tried to allocate 20.00 GiB"
    )
    assert state is None


def test_failure_during_validation_and_backward_name_the_phase():
    train, val = _loaders()
    result, _ = train_proxy(Faulty(kind="error", in_eval=True), train, val, epochs=1)
    assert result.failure == "RuntimeError in validation: boom: sizes do not match"

    class BadGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            raise ValueError("gradient of an odd shape")

    class BadBackward(SmallNet):
        def forward(self, x):
            return BadGrad.apply(super().forward(x))

    result, _ = train_proxy(BadBackward(), train, val, epochs=1)
    assert result.failure == "ValueError in backward: gradient of an odd shape"


def test_describe_failure_recognises_cpu_out_of_memory():
    err = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
    )
    assert describe_failure(err, "forward").startswith("out of memory in forward: [enforce fail")


# -- argument checks --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"epochs": 3, "total_epochs": 2}, "epochs=3 exceeds the schedule's total_epochs=2"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam, adamw, got 'rmsprop'"),
        ({"lr": 0.0}, "lr must be a finite number > 0, got 0.0"),
        ({"lr": float("nan")}, "lr must be a finite number > 0"),
        ({"weight_decay": -1}, "weight_decay must be a finite number >= 0"),
        ({"device": "tpu"}, "device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
        ({"amp": "int8"}, "amp must be one of True, False, 'bf16', 'fp16', 'off'"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"reg_every": 0}, "reg_every must be a positive integer"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(kwargs, match):
    train, val = _loaders()
    kwargs = {"epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        train_proxy(_net(), train, val, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="device is 'cuda' but CUDA is not available; use 'cpu'"):
        resolve_device("cuda")


def test_amp_is_off_on_cpu():
    assert resolve_amp_dtype(True, torch.device("cpu")) is None
    assert resolve_amp_dtype("bf16", torch.device("cpu")) is None


def test_configure_cpu_threads_sets_and_validates():
    old = torch.get_num_threads()
    try:
        assert configure_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
            configure_cpu_threads(0)
    finally:
        torch.set_num_threads(old)


def test_a_real_candidate_with_every_operator_trains():
    arch = Architecture.from_dict(
        {
            "format": "convnas.arch/1",
            "backbone": "cifar_resnet20",
            "num_classes": 4,
            "resolution": 16,
            "ops": {
                "layer1.*": {"op": "scconv", "alpha": 0.5, "r": 2, "g": 2},
                "layer2.*": {"op": "octconv", "alpha": 0.5},
                "layer3.*": {"op": "linearconv", "alpha": 0.5, "rank": None},
            },
        }
    )
    train, val = _loaders(res=16)
    result, state = train_proxy(build_model(arch), train, val, epochs=1)
    assert isinstance(result, ProxyResult) and result.failure is None
    assert state.settings["linearconv_reg"] is True
    assert result.images_per_s > 0 and result.train_time_s > 0


# -- CUDA ---------------------------------------------------------------------------------------
@gpu
@needs_cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_amp_channels_last_resume(amp):
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("GPU without bfloat16")
    train, val = _loaders(res=16)
    bench = torch.backends.cudnn.benchmark
    straight, s2 = train_proxy(_net(linear=True), train, val, epochs=2, device="cuda", amp=amp)
    assert torch.backends.cudnn.benchmark == bench  # restored
    assert (
        straight.failure is None
        and straight.amp_dtype == {"bf16": "bfloat16", "fp16": "float16"}[amp]
    )
    assert (s2.scaler_state is not None) == (amp == "fp16")
    _, s1 = train_proxy(
        _net(linear=True), train, val, epochs=1, total_epochs=2, device="cuda", amp=amp
    )
    _, s2b = train_proxy(_net(linear=True), train, val, epochs=2, device="cuda", amp=amp, state=s1)
    # cuDNN autotuning may pick other kernels and low precision amplifies the difference:
    # close, not bitwise (bitwise equality is tested on CPU).
    for k in s2.model_state:
        torch.testing.assert_close(s2.model_state[k], s2b.model_state[k], rtol=5e-2, atol=5e-3)


@gpu
@needs_cuda
def test_cuda_out_of_memory_frees_memory_and_the_next_run_works():
    class Hog(SmallNet):
        def forward(self, x):
            self.hog = torch.empty(1 << 46, dtype=torch.uint8, device=x.device)  # 64 TiB
            return super().forward(x)

    train, val = _loaders(res=16)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    result, state = train_proxy(Hog(), train, val, epochs=1, device="cuda")
    assert result.failure.startswith("out of memory in forward: CUDA out of memory")
    assert state is None
    ok, _ = train_proxy(_net(), train, val, epochs=1, device="cuda")
    assert ok.failure is None
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - base < 64 * 2**20
