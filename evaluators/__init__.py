"""How a candidate is scored: cost, latency, data, proxy training, zero-cost scores.

The middle layer: ``evaluators`` imports ``search_spaces`` and never ``nas``.
"""
