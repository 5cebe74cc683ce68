"""ChurnLitModule: weighted BCE on the churn logit (+ censoring-aware hazard NLL), one `_shared_step`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from churnsense.churn.hazard import hazard_loss
from churnsense.churn.metrics import churn_metrics
from churnsense.churn.net import ChurnNet


class ChurnLitModule(pl.LightningModule):
    """Trains a `ChurnNet`. Class imbalance: `pos_weight` on the BCE; metrics use the prior-corrected
    probability sigmoid(logit - log(pos_weight)), which undoes the weighting's shift of the optimum."""

    def __init__(
        self,
        net: ChurnNet,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler],
        pos_weight: float = 1.0,
        hazard_weight: float = 0.5,
        top_fraction: float = 0.1,
        net_spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)  # net_spec rebuilds the net
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)))
        self.logit_offset = math.log(float(pos_weight))
        self.train_metrics = churn_metrics("train/", top_fraction)
        self.val_metrics = churn_metrics("val/", top_fraction)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.net(batch)

    def _shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        out = self.net(batch)
        logit, label = out["logit"].float(), batch["label"].float()
        members = out.get("member_logits", logit[:, None]).float()  # each ensemble member learns on its own loss
        loss = F.binary_cross_entropy_with_logits(
            members, label[:, None].expand_as(members), pos_weight=self.pos_weight
        )
        n = label.shape[0]
        if "hazard_logits" in out:
            h_loss = hazard_loss(
                out.get("member_hazard_logits", out["hazard_logits"]),
                self.net.hazard.edges,
                batch["ttc_days"],
                batch["followup_days"],
            )
            self.log(f"{stage}/hazard_loss", h_loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
            loss = loss + self.hparams.hazard_weight * h_loss
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(torch.sigmoid(logit.detach() - self.logit_offset), label.long())
        self.log(
            f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=n, sync_dist=True
        )
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=False, batch_size=n)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def configure_optimizers(self) -> dict[str, Any]:
        """The configured optimizer (`model.optimizer`) and epoch-wise scheduler over the epoch budget."""
        opt = self.optimizer_factory(self.parameters())
        epochs = max(int(self.trainer.max_epochs or 1), 1)  # max_epochs -1 (unbounded) -> constant-ish start
        sched = self.scheduler_factory(opt, T_max=epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
