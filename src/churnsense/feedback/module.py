"""LightningModule of the feedback model: multi-task loss, layer-wise LR decay, per-language validation metrics."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from churnsense.feedback.labels import IGNORE
from churnsense.feedback.metrics import feedback_metrics
from churnsense.feedback.model import FeedbackNet, layerwise_param_groups


class FeedbackLitModule(pl.LightningModule):
    """Owns one `_shared_step(batch, stage)`; logs `{stage}/loss`, val/macro_f1 (sentiment), per-language F1."""

    def __init__(
        self,
        net: FeedbackNet,
        label_names: dict[str, tuple[str, ...]],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler],
        lr: float = 5e-5,
        head_lr: float = 1e-3,
        layer_decay: float = 0.8,
        weight_decay: float = 0.01,
        head_weights: dict[str, float] | None = None,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.net = net
        self.label_names = label_names
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.head_weights = dict(head_weights or dict.fromkeys(net.heads, 1.0))
        self.label_smoothing = float(label_smoothing)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self._val_outputs: list[dict[str, np.ndarray]] = []
        self.last_metrics: dict[str, float] = {}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(input_ids, attention_mask)

    def _shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> tuple[torch.Tensor, dict]:
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = logits[next(iter(logits))].new_zeros(())
        for name, out in logits.items():
            target = batch[name]
            if (target != IGNORE).any():
                loss = loss + self.head_weights.get(name, 1.0) * F.cross_entropy(
                    out, target, ignore_index=IGNORE, label_smoothing=self.label_smoothing if self.training else 0.0
                )
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))
        return loss, logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")[0]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _, logits = self._shared_step(batch, "val")
        row = {f"p_{k}": torch.softmax(v.float(), -1).cpu().numpy() for k, v in logits.items()}
        row.update({k: batch[k].cpu().numpy() for k in logits})
        self._val_outputs.append(row)

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        cat = {k: np.concatenate([o[k] for o in self._val_outputs]) for k in self._val_outputs[0]}
        self._val_outputs.clear()
        self.last_metrics = feedback_metrics(cat, self.label_names, prefix="val/")
        scalars = {k: v for k, v in self.last_metrics.items() if np.isfinite(v) and k != "val/macro_f1"}
        self.log_dict(scalars, prog_bar=False)
        self.log("val/macro_f1", self.last_metrics.get("val/macro_f1", 0.0), prog_bar=True)

    def configure_optimizers(self) -> dict:
        """The configured optimizer over layer-wise learning-rate groups, and the per-step scheduler."""
        hp = self.hparams
        groups = layerwise_param_groups(self.net, hp.lr, hp.head_lr, hp.layer_decay, hp.weight_decay)
        optimizer = self.optimizer_factory(groups)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"},
        }
