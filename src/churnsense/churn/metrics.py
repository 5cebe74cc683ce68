"""Churn metrics (torchmetrics): ROC-AUC, PR-AUC, Brier, log loss, ECE, recall and lift in the top-risk fraction.

All take calibrated probabilities in [0, 1] and integer labels. `churn_metrics(prefix)` is the one collection
used for per-epoch logging (ChurnLitModule) and for the final raw/calibrated evaluation (training.churn).
"""

from __future__ import annotations

import torch
from torchmetrics import MeanSquaredError, Metric, MetricCollection
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision, BinaryCalibrationError
from torchmetrics.utilities import dim_zero_cat


class LogLoss(Metric):
    """Mean binary cross-entropy of probabilities (clipped to [eps, 1 - eps])."""

    full_state_update = False

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = eps
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        p = preds.double().clamp(self.eps, 1 - self.eps)
        y = target.double()
        self.total += -(y * p.log() + (1 - y) * (1 - p).log()).sum()
        self.count += y.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp(min=1)).float()


class TopFraction(Metric):
    """Recall (share of all churners caught) or lift (churn rate / base rate) among the top `fraction` by risk."""

    full_state_update = False

    def __init__(self, fraction: float = 0.1, kind: str = "recall") -> None:
        super().__init__()
        if kind not in ("recall", "lift"):
            raise ValueError(f"kind must be 'recall' or 'lift', got {kind!r}")
        self.fraction, self.kind = fraction, kind
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.preds.append(preds.detach().float().flatten())
        self.target.append(target.detach().float().flatten())

    def compute(self) -> torch.Tensor:
        preds, target = dim_zero_cat(self.preds).float(), dim_zero_cat(self.target).float()
        k = max(1, int(round(self.fraction * preds.numel())))
        top = target[torch.topk(preds, k).indices]
        positives = target.sum().clamp(min=1)
        if self.kind == "recall":
            return top.sum() / positives
        return top.mean() / (positives / target.numel())


def churn_metrics(prefix: str, top_fraction: float = 0.1) -> MetricCollection:
    """Metric collection keyed `{prefix}auroc`, `pr_auc`, `brier`, `log_loss`, `ece`, `recall_top10`, `lift_top10`."""
    pct = int(round(top_fraction * 100))
    return MetricCollection(
        {
            "auroc": BinaryAUROC(),
            "pr_auc": BinaryAveragePrecision(),
            "brier": MeanSquaredError(),
            "log_loss": LogLoss(),
            "ece": BinaryCalibrationError(n_bins=15, norm="l1"),
            f"recall_top{pct}": TopFraction(top_fraction, "recall"),
            f"lift_top{pct}": TopFraction(top_fraction, "lift"),
        },
        prefix=prefix,
    )


def evaluate_probabilities(
    probs: torch.Tensor, labels: torch.Tensor, prefix: str, top_fraction: float = 0.1
) -> dict[str, float]:
    """One-shot evaluation of a full prediction vector with the same collection as training."""
    metrics = churn_metrics(prefix, top_fraction)
    metrics.update(probs.float(), labels.long())
    return {k: float(v) for k, v in metrics.compute().items()}
