"""A run's model and optimisation: the built network, optimizer, LR schedule, scaler, DDP.

On CUDA: ``channels_last``, ``cudnn.benchmark``, optional ``torch.compile``; under
``torchrun`` the model is wrapped in ``DistributedDataParallel`` (``--sync-bn`` converts
BatchNorm to SyncBatchNorm). :class:`Model` is the part of :class:`nas.train.run.Run` that
builds them. Imports :mod:`nas.train.checkpoint` (seeding) and, when called, torch and
``search_spaces``; must not import the other ``nas.train`` modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nas.train.checkpoint import seed_everything

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Model"]


class Model:
    """Run stage: model, optimizer, scheduler, grad scaler.

    Reads ``settings``, ``recipe``, ``arch``, ``device``, ``world``, ``channels_last``,
    ``amp_dtype``; sets ``raw_model``, ``has_linearconv``, ``optimizer``, ``scheduler``,
    ``scaler``, ``train_model``.
    """

    # -- model --------------------------------------------------------------------------------
    def _build(self) -> None:
        import torch
        from torch import nn

        from search_spaces.arch import build_model
        from search_spaces.ops.linearconv import LinearConv2d

        s, r = self.settings, self.recipe
        seed_everything(s.seed)
        model = build_model(self.arch)
        if s.sync_bn and self.world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick kernels
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.raw_model = model
        self.has_linearconv = any(isinstance(m, LinearConv2d) for m in model.modules())
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer: torch.optim.Optimizer
        if r.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                params,
                lr=r.lr,
                momentum=r.momentum,
                weight_decay=r.weight_decay,
                nesterov=r.nesterov,
            )
        elif r.optimizer == "adam":
            self.optimizer = torch.optim.Adam(
                params, lr=r.lr, betas=(r.momentum, 0.999), weight_decay=r.weight_decay
            )
        else:
            self.optimizer = torch.optim.AdamW(
                params, lr=r.lr, betas=(r.momentum, 0.999), weight_decay=r.weight_decay
            )
        recipe = r
        # A plain function (not a bound method): LambdaLR then stores nothing of it.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda e: recipe.lr_factor(e)
        )
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

        train_model: Any = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            train_model = DDP(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if s.compile:
            train_model = torch.compile(train_model)
        self.train_model = train_model

    def _clean_model(self, state_dict: dict[str, Any]) -> nn.Module:
        """A freshly built CPU model holding ``state_dict``: no DDP, compile, SyncBN, NHWC."""
        from search_spaces.arch import build_model

        model = build_model(self.arch)
        model.load_state_dict(state_dict)
        return model.eval()
