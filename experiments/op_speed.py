"""Are the operators as fast as their FLOPs promise? Latency, memory and FLOPs vs ``nn.Conv2d``.

Per operator and menu setting (the default menu's grid) at ResNet-50's four stage shapes
(64@56, 128@28, 256@14, 512@7) and CIFAR shapes (16@32, 32@16, 64@8), a 3x3 stride-1 slot
with C in and C out: eval forward at batch 1 and a train step (forward + backward) at batch 32.
Then whole networks: torchvision ResNet-50 against SCConv-R50, Oct-R50 (alpha .5, every slot)
and LinearConv-R50 (alpha .5, full rank and rank 4) at 224² (eval batch 1, train step batch
8; ``--quick``: 64², batch 8), and cifar_resnet56 likewise (train batch 32; quick: 8).

Every number is a ratio to the plain convolution (network) measured in the same run:

* latency: ``time.thread_time`` (CPU time of this thread) with ``torch.set_num_threads(1)``,
  or wall time (``time.perf_counter``) with ``--threads 2`` and more, whose worker threads a
  thread clock would miss; every round times each variant once, all variants interleaved in
  a rotated order, and the ratio is taken within the round; medians and min-max ranges over rounds.
* saved: bytes of the tensors autograd keeps for the backward pass (unique storages, through
  ``torch.autograd.graph.saved_tensors_hooks``, parameters excluded, the input included) -
  the part of a training step's peak memory that grows with the operator.
* maps written: bytes of every tensor the forward (train mode) and the backward create
  (views excluded, counted with a dispatch mode), in units of the slot's input map.
* FLOPs: the analytic cost model (equal to fvcore; eval mode, one image).

Next to every OctConv setting, an ``oct(...) pair`` row times the same layer as the octave pass
runs it between two OctConv slots: an ``(X^H, X^L)`` pair in, the ``(Y^H, Y^L)`` pair out, no
split of the input or merge of the output (its FLOPs are fvcore's count of that form).

    python experiments/op_speed.py --quick --label before
    python experiments/op_speed.py --quick --label after     # md gets a before/after table
    python experiments/op_speed.py --label after --threads 2

Writes ``experiments/results/op_speed_<label>.json`` (``op_speed_<label>_t<N>.json`` with
``--threads N`` above 1) and rewrites
``experiments/results/op_speed.md`` from every ``op_speed_*.json`` present.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._machine import command_line, machine_description  # noqa: E402

RESULTS = Path(__file__).parent / "results"
R50_SHAPES = ((64, 56), (128, 28), (256, 14), (512, 7))
CIFAR_SHAPES = ((16, 32), (32, 16), (64, 8))
QUICK_SHAPES = ((64, 56), (512, 7), (16, 32))
LABELS = ("before", "after")


def _shapes(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        c, _, h = item.partition("@")
        if not (c.isdigit() and h.isdigit() and int(c) >= 1 and int(h) >= 1):
            raise argparse.ArgumentTypeError(f"shape {item!r} must look like 64@56 (channels@size)")
        out.append((int(c), int(h)))
    if not out:
        raise argparse.ArgumentTypeError("at least one channels@size shape is needed")
    return tuple(out)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 layer shapes, 5 rounds, R50 @64")
    p.add_argument("--label", choices=LABELS, default="after", help="result file suffix")
    p.add_argument("--shapes", type=_shapes, default=None, help="layer shapes, e.g. 64@56,16@32")
    p.add_argument("--rounds", type=_positive, default=None, help="interleaved rounds")
    p.add_argument("--train-batch", type=_positive, default=32)
    p.add_argument(
        "--threads", type=_positive, default=1, help="torch threads (above 1: wall time)"
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: CUDA-event timing and peak allocated memory (result file *_cuda.json)",
    )
    p.add_argument("--no-networks", action="store_true", help="layers only")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument(
        "--report-only", action="store_true", help="rewrite op_speed.md from the JSON files"
    )
    return p


# -- measuring ------------------------------------------------------------------------------


def _dispatch_counter():
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode  # private; experiment only
    from torch.utils._pytree import tree_flatten

    class Written(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.bytes = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not func.is_view:
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor):
                        self.bytes += t.numel() * t.element_size()
            return out

    return Written


def _tensors(x) -> tuple:
    """A layer's input or output as a tuple: an octave pair stays one, a tensor becomes one."""
    return x if isinstance(x, tuple) else (x,)


def memory_profile(module, x) -> dict[str, int]:
    """Saved-for-backward bytes and bytes written by forward and backward of a train step."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            saved[st.data_ptr()] = st.nbytes()
        return t

    written = _dispatch_counter()
    module.train()
    module.zero_grad(set_to_none=True)  # no accumulation into earlier gradients
    fwd, bwd = written(), written()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), fwd:
        out = module(x)
    grad = tuple(torch.ones_like(t) for t in _tensors(out))
    with bwd:
        torch.autograd.backward(_tensors(out), grad)
    module.zero_grad(set_to_none=True)
    for t in _tensors(x):
        t.grad = None
    return {"saved": sum(saved.values()), "fwd_written": fwd.bytes, "bwd_written": bwd.bytes}


#: The clock of every latency: the measuring thread's CPU time with one torch thread, wall
#: time with more, CUDA events on a GPU (set by main from --threads and --device); and the
#: device every module and input is put on.
CLOCK = {"name": "thread_time", "fn": time.thread_time, "device": "cpu"}


def _set_clock(threads: int, device: str = "cpu") -> None:
    if device == "cuda":
        CLOCK.update({"name": "cuda_event", "fn": None, "device": "cuda"})
    elif threads == 1:
        CLOCK.update({"name": "thread_time", "fn": time.thread_time, "device": "cpu"})
    else:
        CLOCK.update({"name": "perf_counter", "fn": time.perf_counter, "device": "cpu"})


def _timed(fn, reps: int) -> float:
    """Seconds per call of ``fn`` on :data:`CLOCK` (CUDA: events around the calls)."""
    if CLOCK["name"] == "cuda_event":
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / reps
    clock = CLOCK["fn"]
    t0 = clock()
    for _ in range(reps):
        fn()
    return (clock() - t0) / reps


def _on_device(t):
    """``t`` (a tensor or a tuple of them) on :data:`CLOCK`'s device, keeping requires_grad."""
    if isinstance(t, tuple):
        return tuple(_on_device(x) for x in t)
    return t.detach().to(CLOCK["device"]).requires_grad_(t.requires_grad)


def cuda_peak(fn) -> int | None:
    """Peak bytes allocated on the GPU while ``fn`` runs, above what was allocated before;
    ``None`` on CPU (where :func:`memory_profile`'s saved bytes stand in)."""
    if CLOCK["device"] != "cuda":
        return None
    import torch

    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def interleaved(fns: dict[str, object], rounds: int, reps: int) -> dict[str, list[float]]:
    """Seconds per call of every function on :data:`CLOCK`, all interleaved in each round
    (order rotated)."""
    names = list(fns)
    for f in fns.values():  # warm-up
        f()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            times[n].append(_timed(fns[n], reps))
    return times


def _ratios(times: dict[str, list[float]], base: str) -> dict[str, dict[str, float]]:
    out = {}
    for n, ts in times.items():
        rs = [t / b for t, b in zip(ts, times[base])]
        out[n] = {
            "ms": 1e3 * statistics.median(ts),
            "ratio": statistics.median(rs),
            "lo": min(rs),
            "hi": max(rs),
        }
    return out


def _eval_fn(module, x):
    import torch

    module.eval()

    def run():
        with torch.no_grad():
            module(x)

    return run


def _train_fn(module, x, loss=None):
    import torch

    module.train()
    grad = None

    def run():
        nonlocal grad
        module.zero_grad(set_to_none=True)
        for t in _tensors(x):
            t.grad = None
        out = module(x)
        if loss is not None:
            loss(out).backward()
            return
        if grad is None:
            grad = tuple(torch.randn_like(t) for t in _tensors(out))
        torch.autograd.backward(_tensors(out), grad)

    return run


# -- layers ---------------------------------------------------------------------------------


def layer_specs():
    from search_spaces.space import DEFAULT_MENU_TEXT, parse_menu

    return parse_menu(DEFAULT_MENU_TEXT)


def _pair_layer(op):
    """``op`` (an OctConv2d) as the octave pass runs it: an (X^H, X^L) pair in and out."""
    import torch

    class OctavePair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.op = op

        def forward(self, pair):
            return self.op.octaves(pair, keep=True)

    return OctavePair()


def _pair_input(op, batch: int, size: int, grad: bool):
    import torch

    half = -(-size // 2)
    high = torch.randn(batch, op.in_high, size, size)
    low = torch.randn(batch, op.in_low, half, half)
    return (high.requires_grad_(grad), low.requires_grad_(grad))


def _pair_flops(module, pair) -> int:
    """fvcore's count (eval) of the pair form on a one-image pair."""
    import logging

    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    module.eval()
    analysis = FlopCountAnalysis(module, (pair,))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return int(analysis.total())


def measure_layers(shapes, rounds: int, train_batch: int) -> list[dict]:
    import torch

    from search_spaces.ops import OPS
    from search_spaces.slots import Slot

    rows = []
    for c, h in shapes:
        slot = Slot("x", c, c, 3, 1, 1, 1, False, (h, h), (h, h))
        specs = [s for s in layer_specs() if OPS[s.op].check_slot(slot, **s.hparams) is None]
        base_flops = OPS["conv"].cost(slot).flops
        torch.manual_seed(0)
        x1 = _on_device(torch.randn(1, c, h, h))
        # The input wants a gradient, as inside a network (the backward computes it).
        xb = _on_device(torch.randn(train_batch, c, h, h).requires_grad_())
        # label -> (module, eval input, train input, FLOPs ratio)
        cases = {}
        for s in specs:
            op = OPS[s.op].build(slot, **s.hparams).to(CLOCK["device"])
            cases[s.label] = (op, x1, xb, OPS[s.op].cost(slot, **s.hparams).flops / base_flops)
            if s.op == "octconv" and getattr(op, "accepts_octaves", False):  # (older code: no)
                pair = _pair_layer(op)
                flops = _pair_flops(pair, _on_device(_pair_input(op, 1, h, False))) / base_flops
                cases[f"{s.label} pair"] = (
                    pair,
                    _on_device(_pair_input(op, 1, h, False)),
                    _on_device(_pair_input(op, train_batch, h, True)),
                    flops,
                )
        map_bytes = xb.nbytes
        mem = {lbl: memory_profile(m, tb) for lbl, (m, _, tb, _) in cases.items()}
        conv_saved = mem["conv"]["saved"]
        peak = {lbl: cuda_peak(_train_fn(m, tb)) for lbl, (m, _, tb, _) in cases.items()}
        # Few-ms calls are repeated inside a round so the clock's resolution does not matter.
        eval_reps = min(50, max(1, int(2e7 // (c * c * 9 * h * h))))
        evals = {k: _eval_fn(m, e) for k, (m, e, _, _) in cases.items()}
        ev = _ratios(interleaved(evals, rounds, eval_reps), "conv")
        tr = _ratios(
            interleaved({k: _train_fn(m, tb) for k, (m, _, tb, _) in cases.items()}, rounds, 1),
            "conv",
        )
        for lbl, case in cases.items():
            rows.append(
                {
                    "shape": f"{c}@{h}",
                    "op": lbl,
                    "flops_ratio": case[3],
                    "eval_b1": ev[lbl],
                    f"train_b{train_batch}": tr[lbl],
                    "saved_ratio": mem[lbl]["saved"] / conv_saved,
                    "fwd_maps": mem[lbl]["fwd_written"] / map_bytes,
                    "bwd_maps": mem[lbl]["bwd_written"] / map_bytes,
                }
            )
            if peak["conv"]:
                rows[-1]["peak_ratio"] = peak[lbl] / peak["conv"]
            r = rows[-1]
            print(
                f"{r['shape']:>7} {lbl:<26} flops {r['flops_ratio']:.2f} "
                f"eval {ev[lbl]['ratio']:.2f} train {tr[lbl]['ratio']:.2f} "
                f"saved {r['saved_ratio']:.2f} maps {r['fwd_maps']:.1f}/{r['bwd_maps']:.1f}",
                flush=True,
            )
    return rows


# -- networks -------------------------------------------------------------------------------

NETWORKS = {
    # name: (backbone, classes, slot policy, op label or None for the plain network)
    "resnet50": ("resnet50", 1000, "all", None),
    "SCConv-R50": ("resnet50", 1000, "spatial", "scconv(a=0.5,r=2,g=2)"),
    "Oct-R50 a=.5": ("resnet50", 1000, "all", "oct(a=0.5)"),
    "LinearConv-R50": ("resnet50", 1000, "all", "linear(a=0.5,rank=full)"),
    "LinearConv-R50 rank 4": ("resnet50", 1000, "all", "linear(a=0.5,rank=4)"),
    "cifar_resnet56": ("cifar_resnet56", 10, "all", None),
    "SCConv-R56": ("cifar_resnet56", 10, "spatial", "scconv(a=0.5,r=2,g=2)"),
    "Oct-R56 a=.5": ("cifar_resnet56", 10, "all", "oct(a=0.5)"),
    "LinearConv-R56": ("cifar_resnet56", 10, "all", "linear(a=0.5,rank=full)"),
}


def measure_networks(rounds: int, r50_res: int, r50_batch: int, cifar_batch: int) -> list[dict]:
    import torch

    from evaluators.cost import get_cost_model
    from search_spaces.arch import Architecture, OpSpec, build_model

    rows = []
    for family, res, batch in (
        ("resnet50", r50_res, r50_batch),
        ("cifar_resnet56", 32, cifar_batch),
    ):
        names = [n for n, v in NETWORKS.items() if v[0] == family]
        models, flops = {}, {}
        for n in names:
            backbone, classes, policy, label = NETWORKS[n]
            spec = OpSpec.parse_label(label) if label else OpSpec.make("conv")
            arch = Architecture.uniform(
                backbone, spec, num_classes=classes, resolution=res, slots=policy
            )
            torch.manual_seed(0)
            models[n] = build_model(arch).to(CLOCK["device"])
            flops[n] = get_cost_model(backbone, classes, res, policy).cost(arch).flops
        x1, xb = (
            _on_device(torch.randn(1, 3, res, res)),
            _on_device(torch.randn(batch, 3, res, res)),
        )
        target = _on_device(torch.randint(0, NETWORKS[names[0]][1], (batch,)))

        def loss(out, target=target):
            return torch.nn.functional.cross_entropy(out, target)

        mem = {n: memory_profile(m, xb)["saved"] for n, m in models.items()}
        peak = {n: cuda_peak(_train_fn(m, xb, loss)) for n, m in models.items()}
        ev = _ratios(
            interleaved({n: _eval_fn(m, x1) for n, m in models.items()}, rounds, 2), names[0]
        )
        tr = _ratios(
            interleaved({n: _train_fn(m, xb, loss) for n, m in models.items()}, rounds, 1),
            names[0],
        )
        for n in names:
            rows.append(
                {
                    "network": n,
                    "resolution": res,
                    "train_batch": batch,
                    "flops_ratio": flops[n] / flops[names[0]],
                    "eval_b1": ev[n],
                    "train": tr[n],
                    "saved_ratio": mem[n] / mem[names[0]],
                }
            )
            if peak[names[0]]:
                rows[-1]["peak_ratio"] = peak[n] / peak[names[0]]
            print(
                f"{n:<24} @{res} flops {rows[-1]['flops_ratio']:.2f} eval {ev[n]['ratio']:.2f} "
                f"train b{batch} {tr[n]['ratio']:.2f} saved {rows[-1]['saved_ratio']:.2f}",
                flush=True,
            )
    return rows


# -- report ---------------------------------------------------------------------------------


def _rng(d: dict) -> str:
    return f"{d['ratio']:.2f} ({d['lo']:.2f}-{d['hi']:.2f})"


def render(results: dict[str, dict]) -> str:
    lines = ["# Operator speed: latency and memory next to FLOPs (`experiments/op_speed.py`)", ""]
    lines += [
        "Ratios to `nn.Conv2d` (layers) or to the plain network in the same run. Latency is "
        "CPU time of the measuring thread (`time.thread_time`, `torch.set_num_threads(1)`), or "
        "wall time (`time.perf_counter`) in a run with more torch threads (its heading says), "
        "all variants interleaved in every round (order rotated), ratio taken within a round: "
        "median (min-max over rounds). Each run's load average says how busy the two cores "
        "were; CPU time and within-round ratios are what makes runs comparable, absolute "
        "milliseconds are not. A `before` run is this script run in a checkout of the commit "
        "its heading names, whose operators predate the speed work. *saved*: bytes autograd "
        "keeps for backward (unique storages, parameters excluded, input included) - the "
        "operator-dependent part of a training step's peak memory (a true CPU allocator peak is "
        "not measured). *maps fwd/bwd*: bytes of all tensors created by the train-mode forward "
        "and by the backward, in input-map units (views excluded). FLOPs: the analytic cost "
        "model (= fvcore, eval). *oct(...) pair*: the OctConv layer as the octave pass runs it "
        "between OctConv slots, an (X^H, X^L) pair in and out (FLOPs: fvcore on that form). "
        "With `--device cuda`: CUDA-event times and *peak*, the most bytes allocated on the GPU "
        "during a train step above what was allocated before it, as a ratio. No GPU has been "
        "lent to this project yet, so no CUDA run is below.",
        "",
    ]
    for label, res in results.items():
        threads = res.get("threads", 1)
        clock = res.get("clock", "thread_time")
        where = (
            "CUDA"
            if res.get("device") == "cuda"
            else f"{threads} torch thread{'s' if threads > 1 else ''}"
        )
        peak = any("peak_ratio" in r for r in res["layers"] + res["networks"])
        col, sep = (" peak |", "---:|") if peak else ("", "")

        def pk(r: dict, peak: bool = peak) -> str:
            return f" {r['peak_ratio']:.2f} |" if peak else ""

        lines += [
            f"## {label}: {where}, {clock}",
            "",
            f"Machine: {res['machine']}",
            "",
            f"Command: `{res['command']}`; date {res['date']}; git {res['git']}; "
            f"run time {res['seconds']:.0f} s; load average before/after "
            f"{res['load_before']} / {res['load_after']}; {res['rounds']} rounds.",
            "",
        ]
        tb = res["train_batch"]
        lines += [
            f"| shape | op | FLOPs | eval b1 | train b{tb} | saved | maps fwd/bwd |{col}",
            "|---|---|---:|---:|---:|---:|---:|" + sep,
        ]
        for r in res["layers"]:
            lines.append(
                f"| {r['shape']} | {r['op']} | {r['flops_ratio']:.2f} | {_rng(r['eval_b1'])} "
                f"| {_rng(r[f'train_b{tb}'])} | {r['saved_ratio']:.2f} "
                f"| {r['fwd_maps']:.1f} / {r['bwd_maps']:.1f} |{pk(r)}"
            )
        if res["networks"]:
            lines += [
                "",
                f"| network | res | FLOPs | eval b1 | train step | saved |{col}",
                "|---|---|---:|---:|---:|---:|" + sep,
            ]
            for r in res["networks"]:
                lines.append(
                    f"| {r['network']} | {r['resolution']}, train b{r['train_batch']} "
                    f"| {r['flops_ratio']:.2f} | {_rng(r['eval_b1'])} | {_rng(r['train'])} "
                    f"| {r['saved_ratio']:.2f} |{pk(r)}"
                )
        lines.append("")
    for suffix in sorted({k.partition("_")[2] for k in results}):
        names = [f"{lbl}_{suffix}" if suffix else lbl for lbl in LABELS]
        if all(n in results for n in names):
            lines += _comparison(results[names[0]], results[names[1]])
    return "\n".join(lines) + "\n"


def _comparison(before: dict, after: dict) -> list[str]:
    tb = before["train_batch"]
    key = f"train_b{tb}"
    old = {(r["shape"], r["op"]): r for r in before["layers"]}
    threads = after.get("threads", 1)
    lines = [
        f"## Before / after, {threads} torch thread{'s' if threads > 1 else ''} "
        "(median ratios; each run against its own nn.Conv2d)",
        "",
        "Only the shapes of both runs, and the networks timed at the same resolution and batch. "
        "Small maps (16@32, batch 1) are dominated by per-operation overhead and vary most "
        "between runs.",
        "",
        f"| shape | op | FLOPs | eval b1 before -> after | train b{tb} before -> after "
        "| saved before -> after | maps fwd+bwd before -> after |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in after["layers"]:
        b = old.get((r["shape"], r["op"]))
        if b is None or r["op"] == "conv":
            continue
        lines.append(
            f"| {r['shape']} | {r['op']} | {r['flops_ratio']:.2f} "
            f"| {b['eval_b1']['ratio']:.2f} -> {r['eval_b1']['ratio']:.2f} "
            f"| {b[key]['ratio']:.2f} -> {r[key]['ratio']:.2f} "
            f"| {b['saved_ratio']:.2f} -> {r['saved_ratio']:.2f} "
            f"| {b['fwd_maps'] + b['bwd_maps']:.1f} -> {r['fwd_maps'] + r['bwd_maps']:.1f} |"
        )
    oldn = {
        r["network"]: r
        for r in before["networks"]
        if any(
            (a["network"], a["resolution"], a["train_batch"])
            == (r["network"], r["resolution"], r["train_batch"])
            for a in after["networks"]
        )
    }
    if after["networks"] and oldn:
        lines += [
            "",
            "| network | FLOPs | eval b1 before -> after | train before -> after "
            "| saved before -> after |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in after["networks"]:
            b = oldn.get(r["network"])
            if b is None or r["network"] in ("resnet50", "cifar_resnet56"):
                continue
            lines.append(
                f"| {r['network']} | {r['flops_ratio']:.2f} "
                f"| {b['eval_b1']['ratio']:.2f} -> {r['eval_b1']['ratio']:.2f} "
                f"| {b['train']['ratio']:.2f} -> {r['train']['ratio']:.2f} "
                f"| {b['saved_ratio']:.2f} -> {r['saved_ratio']:.2f} |"
            )
    return lines + [""]


def _git() -> str:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.report_only:
        return _write_report(args.out_dir)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device on this machine", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    _set_clock(args.threads, args.device)
    shapes = args.shapes or (QUICK_SHAPES if args.quick else R50_SHAPES + CIFAR_SHAPES)
    rounds = args.rounds or (5 if args.quick else 9)
    load_before = "/".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.perf_counter()
    layers = measure_layers(shapes, rounds, args.train_batch)
    networks = []
    if not args.no_networks:
        r50 = (64, 8) if args.quick else (224, 8)
        networks = measure_networks(rounds, r50[0], r50[1], 8 if args.quick else 32)
    result = {
        "machine": machine_description(),
        "command": command_line(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": _git(),
        "seconds": time.perf_counter() - started,
        "load_before": load_before,
        "load_after": "/".join(f"{x:.2f}" for x in os.getloadavg()),
        "rounds": rounds,
        "threads": args.threads,
        "device": args.device,
        "clock": CLOCK["name"],
        "train_batch": args.train_batch,
        "layers": layers,
        "networks": networks,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"op_speed_{_run_name(args.label, args.threads, args.device)}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return _write_report(args.out_dir)


def _run_name(label: str, threads: int, device: str = "cpu") -> str:
    if device == "cuda":
        return f"{label}_cuda"
    return label if threads == 1 else f"{label}_t{threads}"


def _suffix_order(suffix: str) -> tuple[int, int]:
    """CPU 1 thread, then more threads in order, then CUDA; ``(-1, 0)`` for unknown names."""
    if suffix == "":
        return (0, 1)
    if suffix == "cuda":
        return (2, 0)
    if suffix.startswith("t") and suffix[1:].isdigit() and int(suffix[1:]) > 1:
        return (1, int(suffix[1:]))
    return (-1, 0)


def _write_report(out_dir: Path) -> int:
    present = {}
    runs = []
    for f in out_dir.glob("op_speed_*.json"):
        lbl, _, suffix = f.stem.removeprefix("op_speed_").partition("_")
        if lbl in LABELS and _suffix_order(suffix)[0] >= 0:
            runs.append((_suffix_order(suffix), LABELS.index(lbl), f))
    for _, _, f in sorted(runs):
        present[f.stem.removeprefix("op_speed_")] = json.loads(f.read_text())
    if not present:
        print(f"no op_speed_before.json or op_speed_after.json in {out_dir}", file=sys.stderr)
        return 2
    (out_dir / "op_speed.md").write_text(render(present))
    print(f"wrote {out_dir / 'op_speed.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
