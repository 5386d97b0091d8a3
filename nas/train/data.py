"""A run's data: the train/validation/test splits and their loaders, seeded per epoch.

The splits are explicit: a validation split is carved out of the training set
(``val_fraction``, stratified, seed :data:`SPLIT_SEED` whatever ``--seed`` is, so runs of
different seeds select on the same images) and picks the best epoch; the test split is used
once, at the end. Training data go through a ``DistributedSampler`` (also with one process:
its ``(seed, epoch)`` shuffling makes a resumed epoch equal the uninterrupted one);
validation and test are sharded across processes without padding. :class:`Data` is the part
of :class:`nas.train.run.Run` that builds them. Imports :mod:`nas.train.checkpoint` (the epoch
seeds), :mod:`nas.train.errors` and, when called, ``evaluators.data``; must not import the
other ``nas.train`` modules.
"""

from __future__ import annotations

import os
from typing import Any

from nas.train.checkpoint import epoch_seed
from nas.train.errors import UserError

__all__ = ["SPLIT_SEED", "Data", "seeded_prefix"]

#: Seed of the train/validation split: fixed, so runs of any --seed select on the same images.
SPLIT_SEED = 0


class Data:
    """Run stage: data and loaders.

    Reads ``settings``, ``recipe``, ``resolution``, ``spec``, ``device``, ``rank``, ``world``,
    ``per_rank_batch``; sets ``train_set``, ``val_set``, ``test_set``, ``num_workers``,
    ``train_sampler``, ``train_loader``, ``steps_per_epoch``, ``val_loader``, ``test_loader``.
    """

    # -- data ---------------------------------------------------------------------------------
    def _load_data(self) -> None:
        import torch
        from torch.utils.data import Subset

        from evaluators import data as D

        s, r = self.settings, self.recipe
        augment = None if r.augment == "none" else r.augment
        common: dict[str, Any] = dict(
            data_dir=s.data_dir, resolution=self.resolution, download=s.download, seed=SPLIT_SEED
        )
        train: Any
        val: Any
        test: Any
        try:
            if r.val_fraction > 0:
                train, val = D.proxy_split(
                    self.spec,
                    val_fraction=r.val_fraction,
                    subset=s.subset,
                    augment=augment,
                    **common,
                )
            else:
                train = D.load_split(self.spec, "train", augment=augment, **common)
                keep = len(train) if s.subset is None else min(s.subset, len(train))
                # Always a Subset: _set_epoch reseeds the augmentation through its .dataset.
                train = Subset(train, seeded_prefix(len(train), keep))
                val = None
            # Evaluate the way training saw the images (ImageNet-style 0.875 crop only after
            # the imagenet pipeline; the whole image after cifar augmentation or none).
            crop = D.default_eval_crop(self.spec, augment)
            test = D.load_split(self.spec, "test", augment=None, eval_crop=crop, **common)
        except D.DatasetUnavailable as e:
            raise UserError(str(e)) from None
        except ValueError as e:
            raise UserError(f"dataset {s.dataset}: {e}") from None
        if s.subset is not None and s.subset < len(test):
            test = Subset(test, seeded_prefix(len(test), s.subset))
        n_train = len(train)
        if n_train // self.recipe.batch_size < 1:
            raise UserError(
                f"batch_size {r.batch_size} is larger than the {n_train} training images; "
                f"lower --batch-size or raise --subset"
            )
        self.train_set, self.val_set, self.test_set = train, val, test

        # The train loader: a DistributedSampler (also with one process: its (seed, epoch)
        # shuffling is what makes a resumed epoch equal the uninterrupted one).
        from torch.utils.data import DataLoader, DistributedSampler

        base = train.dataset if isinstance(train, Subset) else train
        in_memory = bool(getattr(base, "in_memory", False))
        workers = s.num_workers
        if workers is None:
            workers = 0 if in_memory else min(8, max(0, (os.cpu_count() or 1) // self.world - 1))
        self.num_workers = workers
        self.train_sampler: DistributedSampler[int] = DistributedSampler(
            train,
            num_replicas=self.world,
            rank=self.rank,
            shuffle=True,
            seed=s.seed,
            drop_last=True,
        )
        pin = self.device.type == "cuda"
        self.train_loader = DataLoader(
            train,
            batch_size=self.per_rank_batch,
            sampler=self.train_sampler,
            drop_last=True,
            num_workers=workers,
            pin_memory=pin,
            # Fresh workers each epoch: their seeds come from this generator, reseeded per epoch.
            persistent_workers=False,
            generator=torch.Generator(),
        )
        self.steps_per_epoch = len(self.train_loader)

        def shard(ds: Any) -> Any:
            if ds is None:
                return None
            part = Subset(ds, list(range(self.rank, len(ds), self.world)))
            return DataLoader(
                part,
                batch_size=self.per_rank_batch,
                shuffle=False,
                num_workers=workers,
                pin_memory=pin,
            )

        self.val_loader = shard(val)
        self.test_loader = shard(test)

    def _set_epoch(self, epoch: int) -> None:
        """Seed everything that draws data randomness for ``epoch`` from ``(seed, epoch)``."""
        from torch.utils.data import Subset

        seed = self.settings.seed
        self.train_sampler.set_epoch(epoch)
        es = epoch_seed(seed, epoch, self.rank)
        self.train_loader.generator.manual_seed(es)
        # Batched in-memory augmentation (CIFAR, synthetic) draws from the dataset's own
        # generator in the main process: a per-epoch view reseeds it.
        train = self.train_set
        holder, base = (train, train.dataset) if isinstance(train, Subset) else (None, train)
        view = getattr(base, "view", None)
        if callable(view) and holder is not None:
            holder.dataset = view(seed=es)


def seeded_prefix(n: int, k: int) -> list[int]:
    """``k`` of ``range(n)`` chosen by a permutation with the fixed split seed, sorted."""
    import torch

    gen = torch.Generator().manual_seed(SPLIT_SEED)
    return sorted(torch.randperm(n, generator=gen)[:k].tolist())
