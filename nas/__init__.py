"""ConvNAS command-line entry points and orchestration.

The top layer: ``nas`` imports ``evaluators`` and ``search_spaces``, never the other way
round, and only :mod:`nas.backends` imports optuna or ray. The README's "Layout" is the map.
"""
