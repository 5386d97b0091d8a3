"""Benchmark: ``train_proxy`` must train within 10 % of a bare hand-written PyTorch loop.

Both train the same model (cifar_resnet20, 10 classes, 32×32, same initial weights) on the
same synthetic images through the same ``DataLoader``: the bare loop is ``zero_grad`` /
forward / cross-entropy / ``backward`` / ``step`` and nothing else, ``train_proxy`` adds its
schedule, non-finite checks, RNG handling, fault handling and (on CUDA) AMP + channels_last.
Repetitions alternate (bare, proxy, proxy, bare, ...) so drift of the machine's speed hits
both alike; each repetition builds a fresh model and optimizer and trains ``--epochs``
epochs, then runs one validation pass. Throughput is training images per second of training
time (validation excluded); "call" time is the whole call, validation and setup included.
On CUDA the bare loop is run twice: in float32 (what a user writes first) and with the same
AMP dtype and channels_last as ``train_proxy`` (the like-for-like comparison).

    python experiments/proxy_throughput.py                 # CPU, writes results/proxy_throughput.md
    python experiments/proxy_throughput.py --device cuda   # writes results/proxy_throughput_cuda.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from evaluators.proxy import resolve_amp_dtype, resolve_device, train_proxy  # noqa: E402
from experiments._machine import command_line, machine_description  # noqa: E402
from search_spaces.backbones import get_backbone  # noqa: E402

HP = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}


def _fresh_model() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return get_backbone("cifar_resnet20", 10)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bare_loop(
    train: DataLoader,
    val: DataLoader,
    dev: torch.device,
    epochs: int,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
) -> tuple[float, float]:
    """The hand-written baseline; returns (training seconds, whole-call seconds)."""
    t_call = time.perf_counter()
    fmt = torch.channels_last if channels_last else torch.preserve_format
    model = _fresh_model().to(dev, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), **HP)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    ac = (
        torch.autocast(dev.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    train_s = 0.0
    for _ in range(epochs):
        model.train()
        _sync(dev)
        t0 = time.perf_counter()
        for x, y in train:
            x = x.to(dev, non_blocking=True, memory_format=fmt)
            y = y.to(dev, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with ac:
                loss = F.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        _sync(dev)
        train_s += time.perf_counter() - t0
    model.eval()
    correct = 0
    with torch.no_grad(), ac:
        for x, y in val:
            out = model(x.to(dev, memory_format=fmt))
            correct += int((out.argmax(1) == y.to(dev)).sum())
    _sync(dev)
    return train_s, time.perf_counter() - t_call


def proxy_call(
    train: DataLoader, val: DataLoader, dev: torch.device, epochs: int, amp: bool
) -> tuple[float, float]:
    t_call = time.perf_counter()
    result, _ = train_proxy(
        _fresh_model(),
        train,
        val,
        epochs=epochs,
        schedule="cosine",
        device=dev,
        amp=amp,
        channels_last=True,
        **HP,
    )
    _sync(dev)
    call = time.perf_counter() - t_call
    if result.failure:
        raise SystemExit(f"train_proxy failed: {result.failure}")
    return result.train_time_s, call


def _env_prefix() -> str:
    """Thread settings from the environment, which change the numbers, shown with the command."""
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    return "".join(f"{n}={os.environ[n]} " for n in names if n in os.environ)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=1024, help="training images per epoch")
    p.add_argument("--val-images", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--reps", type=int, default=6, help="repetitions of each loop")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    dev = resolve_device(args.device)
    out = args.out or Path(__file__).parent / "results" / (
        "proxy_throughput.md" if dev.type == "cpu" else f"proxy_throughput_{dev.type}.md"
    )

    g = torch.Generator().manual_seed(0)
    n = args.images + args.val_images
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    pin = dev.type == "cuda"
    train = DataLoader(
        TensorDataset(x[: args.images], y[: args.images]),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        pin_memory=pin,
    )
    val = DataLoader(
        TensorDataset(x[args.images :], y[args.images :]), batch_size=256, pin_memory=pin
    )
    amp_dtype = resolve_amp_dtype(True, dev)

    loops = {"bare": lambda: bare_loop(train, val, dev, args.epochs, None, False)}
    if dev.type == "cuda":
        loops["bare (same AMP + channels_last)"] = lambda: bare_loop(
            train, val, dev, args.epochs, amp_dtype, True
        )
    loops["train_proxy"] = lambda: proxy_call(train, val, dev, args.epochs, True)

    for fn in loops.values():  # warm-up: allocator, oneDNN/cuDNN kernel choice
        fn()
    imgs = args.images // args.batch_size * args.batch_size * args.epochs
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in loops}
    names = list(loops)
    for r in range(args.reps):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            times[k].append(loops[k]())
        print(
            f"rep {r + 1}/{args.reps}: "
            + ", ".join(f"{k} {imgs / times[k][-1][0]:.0f} img/s" for k in names),
            flush=True,
        )

    rows = []
    ref_name = "bare (same AMP + channels_last)" if dev.type == "cuda" else "bare"
    ref_tp = statistics.median(imgs / t for t, _ in times[ref_name])
    ref_call = statistics.median(c for _, c in times[ref_name])
    for k in names:
        tps = [imgs / t for t, _ in times[k]]
        calls = [c for _, c in times[k]]
        tp, call = statistics.median(tps), statistics.median(calls)
        rows.append(
            f"| {k} | {tp:.0f} | {min(tps):.0f}–{max(tps):.0f} | {tp / ref_tp:.3f} | "
            f"{call:.2f} | {call / ref_call:.3f} |"
        )
    proxy_ratio = statistics.median(imgs / t for t, _ in times["train_proxy"]) / ref_tp
    verdict = "PASS" if proxy_ratio >= 0.9 else "FAIL"
    lines = [
        f"# Proxy training throughput ({dev.type})",
        "",
        f"Machine: {machine_description()}",
        "",
        f"Command: `{_env_prefix()}{command_line()}`",
        "",
        f"Model: cifar_resnet20 (10 classes) at 32×32, batch {args.batch_size}, "
        f"{args.images} synthetic training images (Gaussian noise, random labels) per epoch, "
        f"{args.epochs} epoch(s) per call, {args.val_images} validation images; SGD "
        f"lr {HP['lr']}, momentum {HP['momentum']}, weight decay {HP['weight_decay']}. "
        f"AMP in train_proxy: {amp_dtype if amp_dtype is not None else 'off (CPU)'}. "
        f"Median over {args.reps} alternating repetitions after one warm-up call each.",
        "",
        "| loop | train images/s (median) | range | ratio to reference | call s (median) | "
        "call ratio |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Reference: {ref_name}. Target: train_proxy throughput >= 0.90 × reference. "
        f"Result: {proxy_ratio:.3f} → **{verdict}**.",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
