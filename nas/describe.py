"""``python -m nas.describe ARCH.json [--json] [--verify]``: the cost of one architecture.

Prints a per-slot table (slot, shape, op, FLOPs, params) and the totals from the analytic
cost model; ``--verify`` also counts the built model with fvcore and exits 1 if the two
differ; ``--json`` prints ``{"arch_id", "flops", "params", "inference_params", "slots": [...]}``.

Imports ``search_spaces`` and :mod:`evaluators.cost`; must not import optuna, ray or the
other ``nas`` modules.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main", "cli"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nas.describe",
        description="Per-slot FLOPs and parameters of an architecture file.",
    )
    p.add_argument("arch", type=Path, help="architecture JSON file (convnas.arch/1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--verify", action="store_true", help="also count the built model with fvcore and compare"
    )
    return p


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f}{unit}"
    return str(int(n))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from search_spaces.syntax import ArchitectureError, read_architecture_file

    try:
        read_architecture_file(args.arch)  # a broken file is named before torch is imported
        from search_spaces.arch import build_model, load_architecture

        arch = load_architecture(args.arch)
    except ArchitectureError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from evaluators.cost import count_params, fvcore_flops, get_cost_model

    model_cost = get_cost_model(arch.backbone, arch.num_classes, arch.resolution, arch.slots)
    total = model_cost.cost(arch)
    rows = [
        {
            "slot": s.path,
            "shape": s.describe(),
            "op": spec.label,
            "flops": c.flops,
            "params": c.params,
            "inference_params": c.inference_params,
        }
        for s, spec, c in model_cost.per_slot(arch)
    ]
    out = {
        "arch_id": arch.arch_id,
        "backbone": arch.backbone,
        "resolution": arch.resolution,
        "num_classes": arch.num_classes,
        "flops": total.flops,
        "params": total.params,
        "inference_params": total.inference_params,
        "fixed_flops": model_cost.fixed.flops,
        "fixed_params": model_cost.fixed.params,
        "octave_pass_flops": model_cost.octave_flops(arch),
        "slots": rows,
    }
    mismatch = False
    if args.verify:
        model = build_model(arch)
        out["fvcore_flops"] = fvcore_flops(model, arch.resolution)
        out["fvcore_params"] = count_params(model)
        mismatch = out["fvcore_flops"] != total.flops or out["fvcore_params"] != total.params

    if args.json:
        print(json.dumps(out, indent=2))
    else:
        w = max(len("slot"), *(len(r["slot"]) for r in rows))
        ws = max(len("shape"), *(len(r["shape"]) for r in rows))
        wo = max(len("op"), *(len(r["op"]) for r in rows))
        print(
            f"architecture {arch.arch_id}: {arch.backbone} @ {arch.resolution}x{arch.resolution}, "
            f"{arch.num_classes} classes, {len(rows)} slots ({arch.slots})"
        )
        print(f"{'slot':<{w}}  {'shape':<{ws}}  {'op':<{wo}}  {'FLOPs':>10}  {'params':>10}")
        for r in rows:
            print(
                f"{r['slot']:<{w}}  {r['shape']:<{ws}}  {r['op']:<{wo}}  "
                f"{_si(r['flops']):>10}  {_si(r['params']):>10}"
            )
        print(
            f"{'fixed (stem, norms, head)':<{w + ws + wo + 4}}  "
            f"{_si(model_cost.fixed.flops):>10}  {_si(model_cost.fixed.params):>10}"
        )
        if out["octave_pass_flops"]:
            print(
                f"{'octave pairs kept between OctConvs':<{w + ws + wo + 4}}  "
                f"{_si(out['octave_pass_flops']):>10}  {_si(0):>10}"
            )
        print(f"{'total':<{w + ws + wo + 4}}  {_si(total.flops):>10}  {_si(total.params):>10}")
        print(
            f"FLOPs {total.flops:,} (multiply-accumulates)  params {total.params:,}  "
            f"fused-inference params {total.inference_params:,}"
        )
        if args.verify:
            verdict = "MISMATCH" if mismatch else "match"
            print(
                f"fvcore: FLOPs {out['fvcore_flops']:,}  params {out['fvcore_params']:,}  "
                f"({verdict})"
            )
    if mismatch:
        print("error: the analytic cost differs from fvcore's count", file=sys.stderr)
        return 1
    return 0


def cli() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # ``... | head`` stopped reading: end quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    cli()
