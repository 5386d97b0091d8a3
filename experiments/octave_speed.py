"""Oct-R50 with the octaves kept between OctConv slots, against the per-slot form and ResNet-50.

For every alpha, one run measures, interleaved with torchvision ResNet-50 (the ratio base):

* ``per-slot``: ``build_model(arch, keep_octaves=False)``, every OctConv slot merging and
  splitting its octaves, with ``F.avg_pool2d`` / ``F.interpolate`` for the resampling - the
  code before ``search_spaces/octave_pass.py`` and ``search_spaces/ops/_resample.py``;
* ``kept, F.*``: ``build_model(arch)`` (the octave pass), still with ``F.*`` resampling;
* ``kept``: ``build_model(arch)`` as shipped: the pass and the resampling of ``_resample``.

Eval forward at batch 1 (``torch.inference_mode``) and a train step (forward, cross-entropy,
backward) at ``--train-batch`` and ``--train-resolution``. Latency is ``time.thread_time``
with one torch thread, all variants interleaved in each round (order rotated), ratios to
ResNet-50 taken within the round: medians and min-max over rounds. *saved*: bytes kept for
backward (see op_speed.py). FLOPs: the analytic cost model (= fvcore, eval) of the kept
form, fvcore for the per-slot one.

    python experiments/octave_speed.py            # 224, train batch 8 @224, 5 rounds
    python experiments/octave_speed.py --quick    # train @112, 3 rounds

Writes ``experiments/results/octave_speed.json`` and ``octave_speed.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._machine import command_line, machine_description  # noqa: E402
from experiments.op_speed import (  # noqa: E402
    _eval_fn,
    _git,
    _positive,
    _ratios,
    _rng,
    _train_fn,
    interleaved,
    memory_profile,
)

RESULTS = Path(__file__).parent / "results"
FORMS = ("per-slot", "kept, F.*", "kept")


def _alphas(text: str) -> tuple[float, ...]:
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            a = float(item)
        except ValueError:
            a = -1.0
        if not 0 < a < 1:
            raise argparse.ArgumentTypeError(f"alpha {item!r} must be a number in (0, 1)")
        out.append(a)
    if not out:
        raise argparse.ArgumentTypeError("at least one alpha is needed, e.g. 0.25,0.5,0.75")
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="train step @112, 3 rounds")
    p.add_argument("--alphas", type=_alphas, default=(0.25, 0.5, 0.75))
    p.add_argument("--resolution", type=_positive, default=224, help="eval input size")
    p.add_argument("--train-resolution", type=_positive, default=None, help="default 224")
    p.add_argument("--train-batch", type=_positive, default=8)
    p.add_argument("--rounds", type=_positive, default=None, help="default 5 (quick: 3)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    return p


@contextlib.contextmanager
def _interpolate_only():
    """``F.avg_pool2d`` / ``F.interpolate`` for OctConv's resampling (measurement only)."""
    from search_spaces.ops import _resample

    saved = _resample.use_fast
    _resample.use_fast = lambda x: False
    try:
        yield
    finally:
        _resample.use_fast = saved


def _wrapped(fn, form: str):
    if form == "kept":
        return fn

    def run():
        with _interpolate_only():
            fn()

    return run


def _models(alphas, res: int):
    import torch

    from evaluators.cost import fvcore_flops, get_cost_model
    from search_spaces.arch import Architecture, OpSpec, build_model

    models, flops = {}, {}
    conv = Architecture.uniform("resnet50", num_classes=1000, resolution=res, slots="all")
    cm = get_cost_model("resnet50", 1000, res, "all")
    torch.manual_seed(0)
    models["resnet50"] = build_model(conv)
    flops["resnet50"] = cm.cost(conv).flops
    for a in alphas:
        arch = Architecture.uniform(
            "resnet50", OpSpec.make("octconv", alpha=a), num_classes=1000, resolution=res
        )
        for form in FORMS:
            torch.manual_seed(0)
            m = build_model(arch, keep_octaves=form != "per-slot")
            name = f"Oct-R50 a={a:g} {form}"
            models[name] = m
            flops[name] = fvcore_flops(m, res) if form == "per-slot" else cm.cost(arch).flops
    return models, {n: f / flops["resnet50"] for n, f in flops.items()}


def measure(args) -> list[dict]:
    import torch

    res, train_res = args.resolution, args.train_resolution
    rounds, batch = args.rounds, args.train_batch
    models, flops = _models(args.alphas, res)
    x1 = torch.randn(1, 3, res, res)
    xb = torch.randn(batch, 3, train_res, train_res)
    target = torch.randint(0, 1000, (batch,))

    def loss(out):
        return torch.nn.functional.cross_entropy(out, target)

    def form(name: str) -> str:
        return next((f for f in FORMS[::-1] if name.endswith(f)), "kept")

    saved = {}
    for n, m in models.items():
        with contextlib.nullcontext() if form(n) == "kept" else _interpolate_only():
            saved[n] = memory_profile(m, xb)["saved"]
    ev = _ratios(
        interleaved({n: _wrapped(_eval_fn(m, x1), form(n)) for n, m in models.items()}, rounds, 2),
        "resnet50",
    )
    print("eval done", flush=True)
    tr = _ratios(
        interleaved(
            {n: _wrapped(_train_fn(m, xb, loss), form(n)) for n, m in models.items()}, rounds, 1
        ),
        "resnet50",
    )
    rows = []
    for n in models:
        rows.append(
            {
                "network": n,
                "flops_ratio": flops[n],
                "eval_b1": ev[n],
                "train": tr[n],
                "saved_ratio": saved[n] / saved["resnet50"],
            }
        )
        print(
            f"{n:<26} flops {flops[n]:.3f} eval {ev[n]['ratio']:.2f} "
            f"train {tr[n]['ratio']:.2f} saved {rows[-1]['saved_ratio']:.2f}",
            flush=True,
        )
    return rows


def render(result: dict) -> str:
    r0 = result
    lines = [
        "# Oct-R50: octaves kept between OctConv slots (`experiments/octave_speed.py`)",
        "",
        "Ratios to torchvision ResNet-50 in the same run: CPU time of the measuring thread "
        "(`time.thread_time`, one torch thread), every variant interleaved in each round "
        "(order rotated), ratio taken within a round: median (min-max over rounds). *per-slot*: "
        "every OctConv slot merges and splits its octaves (`build_model(arch, "
        "keep_octaves=False)`) and resamples with `F.avg_pool2d` / `F.interpolate`: the code "
        "before the octave pass. *kept, F.\\**: the octave pass, `F.*` resampling. *kept*: as "
        "shipped (the pass, and `search_spaces/ops/_resample.py` on even sizes). *saved*: "
        "bytes kept for backward in the train step. FLOPs: fvcore (eval, one image) - the pass "
        "drops the up-sampling and BatchNorm work on up-sampled low maps. The load average "
        "below says how busy the two cores were; absolute times vary with it, the within-round "
        "ratios are what compares. No GPU on this machine.",
        "",
        f"Machine: {r0['machine']}",
        "",
        f"Command: `{r0['command']}`; date {r0['date']}; git {r0['git']}; run time "
        f"{r0['seconds']:.0f} s; load average before/after {r0['load_before']} / "
        f"{r0['load_after']}; {r0['rounds']} rounds; eval batch 1 @{r0['resolution']}, train "
        f"step batch {r0['train_batch']} @{r0['train_resolution']}.",
        "",
        "| network | FLOPs | eval b1 | train step | saved |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in r0["rows"]:
        lines.append(
            f"| {r['network']} | {r['flops_ratio']:.3f} | {_rng(r['eval_b1'])} "
            f"| {_rng(r['train'])} | {r['saved_ratio']:.2f} |"
        )
    lines += [
        "",
        "Targets of issue 12 (Oct-R50 at least as fast as the public reference): inference "
        "<= 0.85x and training <= 0.70x ResNet-50.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.train_resolution is None:
        args.train_resolution = 112 if args.quick else 224
    if args.rounds is None:
        args.rounds = 3 if args.quick else 5
    import torch

    torch.set_num_threads(1)
    load_before = "/".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.perf_counter()
    rows = measure(args)
    result = {
        "machine": machine_description(),
        "command": command_line(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": _git(),
        "seconds": time.perf_counter() - started,
        "load_before": load_before,
        "load_after": "/".join(f"{x:.2f}" for x in os.getloadavg()),
        "rounds": args.rounds,
        "resolution": args.resolution,
        "train_resolution": args.train_resolution,
        "train_batch": args.train_batch,
        "rows": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "octave_speed.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out_dir / "octave_speed.md").write_text(render(result))
    print(f"wrote {args.out_dir / 'octave_speed.json'} and octave_speed.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
