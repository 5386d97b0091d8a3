"""Fine-tuning one architecture taken out of the supernet (``--supernet-finetune N``).

:func:`finetune` is what the search runs on each Pareto member after a supernet search: the
member's path is set on the process's trained supernet (:func:`get_supernet_evaluator`, the
file its trials were scored on), BatchNorm is recalibrated exactly as before its score
(same ``bn_batches``, same seed), :meth:`Supernet.extract` copies the path's weights into the
stand-alone ``build_model(arch)``, and that model is trained ``epochs`` more epochs on the
proxy's training split with the proxy's own settings (optimizer, peak lr, momentum, weight
decay, schedule over the ``epochs``, LinearConv regulariser, AMP, step and batch caps; the
proxy's loop, :func:`evaluators.proxy.train_proxy`), then validated on the proxy's validation
split. The supernet itself is not changed. Deterministic for a seed on CPU.

Imports torch (when called), :mod:`evaluators.config`, :mod:`evaluators.proxy` and
:mod:`evaluators.supernet.score`; must not import ``nas``.
"""

from __future__ import annotations

from typing import Any

from evaluators.config import EvalConfig, proxy_score

__all__ = ["finetune"]


def finetune(arch: Any, config: EvalConfig, epochs: int) -> dict[str, Any]:
    """Fine-tune ``arch`` from its supernet weights for ``epochs`` epochs; return the record.

    The record: ``epochs``, ``accuracy`` (validation top-1 after fine-tuning; ``None`` when it
    failed), ``val_loss``, ``score`` (the accuracy objective after fine-tuning, from
    ``config.proxy_score``), ``train_time_s`` (training only), ``failure`` (one line, or
    ``None``), ``supernet_file`` and ``device``. ``ValueError`` for a bad ``epochs``.
    """
    import torch

    from evaluators.proxy import train_proxy, train_settings
    from evaluators.supernet.score import get_supernet_evaluator, recalibrate_bn

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fine-tuning epochs must be a positive integer, got {epochs!r}")
    ev = get_supernet_evaluator(config)
    c = config
    net, _, _, file = ev.supernet(arch)
    train_loader, val_loader = ev.base.loaders(ev.base.proxy_resolution(arch), arch.num_classes)
    net.set_path(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.seed)  # the BatchNorm statistics its supernet score had
        recalibrate_bn(net, train_loader, ev.options.bn_batches, ev.device)
    model = net.extract(arch)
    result, _ = train_proxy(
        model, train_loader, val_loader, epochs=epochs, **train_settings(c, ev.device)
    )
    return {
        "epochs": epochs,
        "accuracy": result.accuracy if result.failure is None else None,
        "val_loss": result.val_loss,
        # the accuracy objective's value after fine-tuning, as the search scored candidates
        "score": proxy_score(c.proxy_score, result.accuracy, result.val_loss)
        if result.failure is None
        else None,
        "train_time_s": round(float(result.train_time_s), 3),
        "failure": result.failure,
        "supernet_file": str(file),
        "device": str(ev.device),
    }
