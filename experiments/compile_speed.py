"""Does ``torch.compile`` (inductor, CPU) pay for SCConv? Eager against compiled, same weights.

An experiment script (imports torch, search_spaces and evaluators; nothing imports it).

Cases: an SCConv(a=.5, r=2, g=2) layer replacing a 3x3 stride-1 C->C convolution at ResNet-50
stage shapes (64@56, 512@7) and a CIFAR shape (16@32), and whole networks: cifar_resnet20 with
SCConv in every 3x3 slot at 32 px, and (unless ``--quick``) ResNet-50 with SCConv in every 3x3
slot at 224 px, eval only. For each case, in one interleaved run:

* ``conv`` - the plain network / a plain ``nn.Conv2d`` of the same shape, eager (ratio base);
* ``eager`` - the SCConv model as the project runs it (fused autograd functions where they
  pay, see ``search_spaces/ops/scconv.py``);
* ``compiled`` - a copy with the same weights under ``torch.compile(fullgraph=True,
  dynamic=False)`` (inductor; a compiled pass takes SCConv's plain tensor form).

Measured: eval at batch 1 (``torch.no_grad``) and a train step (forward + backward, no
optimiser step) at batch 64 for the CIFAR shapes and 32 for the others (ResNet-50 network: eval
only). ``torch.set_num_threads(1)`` and ``torch._inductor.config.compile_threads = 1``; after a
warm-up, every round runs each variant once in a rotated order (short calls repeated inside the
round); per call ``time.thread_time`` (CPU time of this thread, the main figure: the 2 cores
are shared with other jobs) and wall time; medians and min-max over rounds, ratios within a
round. The one-off compile (first call, forward and backward for the train step) is timed in
wall seconds and in CPU seconds of this process and its children (the C++ compiler), with a
fresh, empty inductor cache for the run. The compiled outputs (and, for the train step, every
gradient) are asserted equal to the eager ones within float tolerance.

    python experiments/compile_speed.py            # writes results/compile_speed.{md,json}
    python experiments/compile_speed.py --quick    # no ResNet-50 network, fewer rounds
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._machine import command_line, machine_description  # noqa: E402
from experiments.op_speed import _git  # noqa: E402

RESULTS = Path(__file__).parent / "results"
LAYER_SHAPES = ((64, 56), (512, 7), (16, 32))
SCCONV = "scconv(a=0.5,r=2,g=2)"
VARIANTS = ("conv", "eager", "compiled")
#: Largest allowed max|compiled - eager| / max|eager| of an output and of any gradient.
OUT_TOL, GRAD_TOL = 1e-4, 1e-3


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="no ResNet-50 network, 5 rounds")
    p.add_argument("--rounds", type=_positive, default=None, help="interleaved rounds (7)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json")
    return p


# -- timing ---------------------------------------------------------------------------------


def _cpu_with_children() -> float:
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def interleaved(fns: dict, rounds: int, reps: int) -> dict[str, dict[str, list[float]]]:
    """Thread-CPU and wall seconds per call of every function, interleaved, order rotated."""
    names = list(fns)
    out = {n: {"cpu": [], "wall": []} for n in names}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            c0, w0 = time.thread_time(), time.perf_counter()
            for _ in range(reps):
                fns[n]()
            out[n]["cpu"].append((time.thread_time() - c0) / reps)
            out[n]["wall"].append((time.perf_counter() - w0) / reps)
    return out


def _stats(xs: list[float], scale: float = 1.0) -> dict[str, float]:
    return {"med": scale * statistics.median(xs), "lo": scale * min(xs), "hi": scale * max(xs)}


def summarise(times: dict[str, dict[str, list[float]]]) -> dict[str, dict]:
    def ratio(a: str, b: str, key: str = "cpu") -> dict[str, float]:
        return _stats([x / y for x, y in zip(times[a][key], times[b][key])])

    out = {}
    for n in times:
        out[n] = {
            "cpu_ms": _stats(times[n]["cpu"], 1e3),
            "wall_ms": _stats(times[n]["wall"], 1e3),
            "cpu_vs_conv": ratio(n, "conv"),
        }
    out["compiled"]["cpu_vs_eager"] = ratio("compiled", "eager")
    out["compiled"]["wall_vs_eager"] = ratio("compiled", "eager", "wall")
    return out


# -- the calls ------------------------------------------------------------------------------


def _eval_call(model, x):
    import torch

    def run():
        with torch.no_grad():
            return model(x)

    return run


def _train_call(model, x, loss):
    def run():
        model.zero_grad(set_to_none=True)
        x.grad = None
        out = model(x)
        loss(out).backward()
        return out

    return run


def _rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _check_equal(case: str, mode: str, eager_run, comp_run, eager, comp, x) -> dict[str, float]:
    """Run both once more; the largest relative differences of outputs and gradients."""

    def grads(model) -> list:
        if mode == "eval":
            return []
        return ([] if x.grad is None else [x.grad.clone()]) + [p.grad for p in model.parameters()]

    out_e = eager_run()
    grads_e = grads(eager)
    out_c = comp_run()
    grads_c = grads(comp)
    out_err = _rel(out_c.detach(), out_e.detach())
    grad_err = max((_rel(c, e) for c, e in zip(grads_c, grads_e)), default=0.0)
    ref = plain_reference(eager, eager_run, x) if mode == "train" else 0.0
    equal = out_err <= OUT_TOL and grad_err <= max(GRAD_TOL, 2 * ref)
    return {
        "out_rel_err": out_err,
        "grad_rel_err": grad_err,
        "grad_rel_err_plain_vs_fused": ref,
        "equal": equal,
    }


def plain_reference(model, run, x) -> float:
    """The same gradient difference between the project's two eager forms (fused, plain).

    SCConv's gate is a hard threshold: any two float implementations (even float32 against
    float64) flip a few gate entries whose value is within rounding of 0, and through many
    layers that moves some gradients by a few percent of their largest entry. The compiled
    gradients are held to twice this difference (or ``GRAD_TOL``, whichever is larger).
    """
    import search_spaces.ops.scconv as scconv_module

    def grads() -> list:
        return ([] if x.grad is None else [x.grad.clone()]) + [
            p.grad.clone() for p in model.parameters()
        ]

    run()
    fused = grads()
    original = scconv_module._fused
    scconv_module._fused = lambda t: False  # the plain tensor form, as a compiled pass takes
    try:
        run()
    finally:
        scconv_module._fused = original
    return max((_rel(p, f) for p, f in zip(grads(), fused)), default=0.0)


def measure(case: str, mode: str, conv, scconv, x, loss, rounds: int, reps: int) -> dict:
    """Time conv, eager SCConv and its compiled copy in ``mode`` ('eval' or 'train')."""
    import torch

    comp_model = copy.deepcopy(scconv)
    for m in (conv, scconv, comp_model):
        m.train(mode == "train")
    compiled = torch.compile(comp_model, fullgraph=True, dynamic=False)
    make = _eval_call if mode == "eval" else (lambda m, x: _train_call(m, x, loss))
    fns = {"conv": make(conv, x), "eager": make(scconv, x), "compiled": make(compiled, x)}
    w0, c0 = time.perf_counter(), _cpu_with_children()
    fns["compiled"]()  # the one-off compile (forward and, in train mode, backward)
    compile_s = {"wall": time.perf_counter() - w0, "cpu": _cpu_with_children() - c0}
    for f in fns.values():  # warm-up
        f()
    check = _check_equal(case, mode, fns["eager"], fns["compiled"], scconv, comp_model, x)
    res = summarise(interleaved(fns, rounds, reps))
    torch._dynamo.reset()
    row = {
        "case": case,
        "mode": mode,
        "batch": x.shape[0],
        "reps": reps,
        "compile_s": compile_s,
        **check,
        **res,
    }
    c = res["compiled"]
    print(
        f"{case:<26} {mode:<5} b{x.shape[0]:<3} eager {res['eager']['cpu_ms']['med']:8.2f} ms "
        f"compiled {c['cpu_ms']['med']:8.2f} ms  compiled/eager {c['cpu_vs_eager']['med']:.2f} "
        f"({c['cpu_vs_eager']['lo']:.2f}-{c['cpu_vs_eager']['hi']:.2f}) "
        f"compile {compile_s['cpu']:.0f} s CPU / {compile_s['wall']:.0f} s wall",
        flush=True,
    )
    return row


def _reps(seconds_guess: float) -> int:
    """Calls per round so a round's call takes about 20 ms of CPU at least."""
    return max(1, min(50, int(0.02 / max(seconds_guess, 1e-6))))


def _guess(model, x, mode: str, loss) -> float:
    call = _eval_call(model, x) if mode == "eval" else _train_call(model, x, loss)
    model.train(mode == "train")
    call()
    t0 = time.thread_time()
    call()
    return time.thread_time() - t0


def layer_cases(rounds: int, rows: list[dict], save) -> None:
    import torch

    from search_spaces.ops import OPS
    from search_spaces.slots import Slot

    for c, h in LAYER_SHAPES:
        slot = Slot("x", c, c, 3, 1, 1, 1, False, (h, h), (h, h))
        torch.manual_seed(0)
        conv = OPS["conv"].build(slot)
        scconv = OPS["scconv"].build(slot, alpha=0.5, r=2, g=2)
        g = torch.Generator().manual_seed(1)
        for mode, batch in (("eval", 1), ("train", 64 if h == 32 else 32)):
            x = torch.randn(batch, c, h, h, generator=g).requires_grad_(mode == "train")
            grad = torch.randn(batch, c, h, h, generator=g)

            def loss(out, grad=grad):
                return (out * grad).sum()

            reps = _reps(_guess(scconv, x, mode, loss))
            rows.append(measure(f"layer {c}@{h}", mode, conv, scconv, x, loss, rounds, reps))
            save()


def network_cases(rounds: int, with_r50: bool, rows: list[dict], save) -> None:
    import torch

    from search_spaces.arch import Architecture, OpSpec, build_model

    plans = [("cifar_resnet20", 10, 32, (("eval", 1), ("train", 64)))]
    if with_r50:
        plans.append(("resnet50", 1000, 224, (("eval", 1),)))
    for backbone, classes, res, modes in plans:
        models = {}
        for name, spec in (("conv", OpSpec.make("conv")), ("scconv", OpSpec.parse_label(SCCONV))):
            arch = Architecture.uniform(
                backbone, spec, num_classes=classes, resolution=res, slots="spatial"
            )
            torch.manual_seed(0)
            models[name] = build_model(arch)
        g = torch.Generator().manual_seed(1)
        for mode, batch in modes:
            x = torch.randn(batch, 3, res, res, generator=g)
            target = torch.randint(0, classes, (batch,), generator=g)

            def loss(out, target=target):
                return torch.nn.functional.cross_entropy(out, target)

            reps = _reps(_guess(models["scconv"], x, mode, loss))
            case = f"{backbone} all-SCConv @{res}"
            rows.append(
                measure(case, mode, models["conv"], models["scconv"], x, loss, rounds, reps)
            )
            save()


# -- report ---------------------------------------------------------------------------------


def _r(d: dict, f: str = ".2f") -> str:
    return f"{d['med']:{f}} ({d['lo']:{f}}-{d['hi']:{f}})"


def render(res: dict) -> str:
    lines = [
        "# torch.compile for SCConv on CPU (`experiments/compile_speed.py`)",
        "",
        f"Machine: {res['machine']}",
        "",
        f"Command: `{res['command']}`; date {res['date']}; git {res['git']}; run time "
        f"{res['seconds']:.0f} s wall; load average before/after {res['load_before']} / "
        f"{res['load_after']}; {res['rounds']} interleaved rounds after a warm-up; inductor "
        "cache empty at the start, `compile_threads = 1`, `torch.set_num_threads(1)`.",
        "",
        "SCConv(a=.5, r=2, g=2) in eager mode (the project's fused autograd functions where they "
        "pay) against a copy with the same weights under `torch.compile(fullgraph=True, "
        "dynamic=False)` (inductor; compiled passes take SCConv's plain tensor form), and a "
        "plain `nn.Conv2d` / conv network of the same shape, eager, as the ratio base. Layers: "
        "a 3x3 stride-1 C->C slot; networks: SCConv in every 3x3 slot. Eval: batch 1, "
        "`no_grad`; train: forward + backward (no optimiser step). **CPU** is "
        "`time.thread_time` per call, the main figure: two background experiment workers kept "
        "both cores busy, so wall time (also shown) is inflated and noisy. Medians (min-max "
        "over rounds); ratios are taken within a round. *compile*: the one-off first call "
        "(forward and backward for train), CPU of this process and its children (C++ "
        "compiler) / wall. *max rel err*: max|compiled - eager| / max|eager| of the output / "
        "of any gradient (input and every parameter), asserted below "
        f"{OUT_TOL:g} / the larger of {GRAD_TOL:g} and twice *ref*; *ref* (train): the same "
        "gradient difference between the project's own two eager forms of SCConv (fused "
        "autograd functions against the plain tensor form) - the hard gate makes any two float "
        "implementations differ that much through many layers (float32 fused against float64: "
        "1.8e-2 on cifar_resnet20).",
        "",
        "| case | mode | batch | conv CPU ms | eager CPU ms | compiled CPU ms "
        "| compiled / eager CPU | compiled / eager wall | eager / conv | compiled / conv "
        "| compile CPU / wall s | max rel err out / grad | ref |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if res.get("notes"):
        lines[-2:-2] = [*(f"Note: {n}" for n in res["notes"]), ""]
    for r in res["rows"]:
        c, e, b = r["compiled"], r["eager"], r["conv"]
        lines.append(
            f"| {r['case']} | {r['mode']} | {r['batch']} | {b['cpu_ms']['med']:.2f} "
            f"| {_r(e['cpu_ms'])} | {_r(c['cpu_ms'])} | **{_r(c['cpu_vs_eager'])}** "
            f"| {_r(c['wall_vs_eager'])} | {e['cpu_vs_conv']['med']:.2f} "
            f"| {c['cpu_vs_conv']['med']:.2f} "
            f"| {r['compile_s']['cpu']:.0f} / {r['compile_s']['wall']:.0f} "
            + (
                f"| {r['out_rel_err']:.1e} / {r['grad_rel_err']:.1e} "
                f"| {r['grad_rel_err_plain_vs_fused']:.1e} |"
                if r["mode"] == "train"
                else f"| {r['out_rel_err']:.1e} / - | - |"
            )
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stem = "compile_speed_quick" if args.quick else "compile_speed"
    if args.report_only:
        res = json.loads((args.out_dir / f"{stem}.json").read_text())
        (args.out_dir / f"{stem}.md").write_text(render(res))
        return 0
    # A fresh inductor cache, so every compile time below is a cold one.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="compile_speed_")
    os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    import torch
    import torch._inductor.config as inductor_config

    torch.set_num_threads(1)
    inductor_config.compile_threads = 1
    rounds = args.rounds or (5 if args.quick else 7)
    load_before = "/".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.perf_counter()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    def save() -> None:  # after every case, so a failure late in the run keeps the rest
        _write(args.out_dir, stem, rounds, rows, load_before, started)

    layer_cases(rounds, rows, save)
    network_cases(rounds, not args.quick, rows, save)
    # Written first (the numbers stay inspectable), then the equality is asserted.
    for r in rows:
        assert r["equal"], (
            f"{r['case']} {r['mode']}: compiled differs from eager by {r['out_rel_err']:.2e} "
            f"(output) / {r['grad_rel_err']:.2e} (gradients)"
        )
    print(f"wrote {args.out_dir / stem}.md and .json")
    return 0


def _write(out_dir: Path, stem: str, rounds: int, rows: list, load_before: str, started: float):
    result = {
        "machine": machine_description(),
        "command": command_line(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": _git(),
        "seconds": time.perf_counter() - started,
        "load_before": load_before,
        "load_after": "/".join(f"{x:.2f}" for x in os.getloadavg()),
        "rounds": rounds,
        "rows": rows,
    }
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / f"{stem}.md").write_text(render(result))


if __name__ == "__main__":
    sys.exit(main())
