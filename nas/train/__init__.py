"""Full training of one architecture, behind ``python -m nas.retrain`` (:mod:`nas.retrain`).

One module per concept; :mod:`nas.train.run` assembles them into one run:

* :mod:`~nas.train.errors`: bad input (exit 2) and divergence (exit 1)
* :mod:`~nas.train.files`: atomic file writes
* :mod:`~nas.train.checkpoint`: the checkpoint format, save/load, RNG states, resume
* :mod:`~nas.train.distributed`: ``torchrun`` ranks and collectives
* :mod:`~nas.train.setup`: resolving the run (architecture, resume, recipe, data, device)
* :mod:`~nas.train.data`: splits and loaders, seeded per epoch
* :mod:`~nas.train.model`: network, optimizer, schedule, scaler, DDP
* :mod:`~nas.train.loop`: the training epochs and evaluation passes
* :mod:`~nas.train.outputs`: config.json, metrics.jsonl, curves.png, printed lines
* :mod:`~nas.train.finish`: the test, result.json, the export
* :mod:`~nas.train.run`: the run, in order

This package imports ``evaluators``, ``search_spaces``, :mod:`nas.recipes` and
:mod:`nas.deploy`; it must not import :mod:`nas.retrain` (the command line above it) or the
search side of ``nas``.
"""
