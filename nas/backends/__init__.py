"""Search drivers: Optuna (default) and Ray Tune.

The only place in ConvNAS that imports optuna or ray. Nothing here may import the modules
that drive the backends (:mod:`nas.search`, :mod:`nas.runner`, :mod:`nas.plan`,
:mod:`nas.export`).
"""
