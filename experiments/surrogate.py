"""The old import path of :mod:`evaluators.surrogate`, the cheap deterministic test evaluator.

``--evaluator experiments.surrogate:evaluate`` keeps working in a checkout (the tests and the
benchmarks use it); after ``pip install`` use ``evaluators.surrogate:evaluate``, which works
from any folder. Both names share one module's state (``CALLS``).
"""

from evaluators.surrogate import CALLS, evaluate, final_accuracy, latency_ms

__all__ = ["CALLS", "evaluate", "final_accuracy", "latency_ms"]
