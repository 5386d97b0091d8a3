"""The weight-sharing supernet evaluator (``--evaluator supernet``): one training, many scores.

:mod:`.model` holds the supernet (every menu choice per slot, shared kernels), :mod:`.train`
trains it once per run folder (single-path sampling, checkpoints, a file lock), :mod:`.score`
scores a candidate (its path, BatchNorm recalibration, validation top-1), :mod:`.finetuning`
fine-tunes an architecture taken out of it (``--supernet-finetune N``), :mod:`.options` reads
``--evaluator-option`` values. Importing this package does not import torch
(``evaluate`` does, when called), so ``nas.plan`` can check options before anything is
written. It must not import ``nas``.
"""

from evaluators.supernet.options import OPTION_KEYS, SupernetOptions, parse_options

__all__ = ["OPTION_KEYS", "SupernetOptions", "evaluate", "finetune", "parse_options"]


def evaluate(arch, config, fidelity=None):  # noqa: ANN001, ANN201 - the evaluator signature
    """Score ``arch`` on the supernet (:func:`evaluators.supernet.score.evaluate`)."""
    from evaluators.supernet.score import evaluate as _evaluate

    return _evaluate(arch, config, fidelity)


def finetune(arch, config, epochs):  # noqa: ANN001, ANN201
    """Fine-tune ``arch`` from its supernet weights (:mod:`evaluators.supernet.finetuning`)."""
    from evaluators.supernet.finetuning import finetune as _finetune

    return _finetune(arch, config, epochs)
