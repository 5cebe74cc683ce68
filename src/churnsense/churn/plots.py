"""Evaluation figures (matplotlib, Agg): ROC, precision-recall, reliability diagram, risk-score histogram."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torchmetrics.functional.classification import binary_precision_recall_curve, binary_roc


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean predicted vs observed churn rate per equal-width probability bin (non-empty bins)."""
    bins = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    keep = [b for b in range(n_bins) if np.any(bins == b)]
    return (np.array([probs[bins == b].mean() for b in keep]), np.array([labels[bins == b].mean() for b in keep]))


def save_evaluation_plots(
    probs: np.ndarray, labels: np.ndarray, out_dir: str | Path, stage: str = "test", raw_probs: np.ndarray | None = None
) -> list[Path]:
    """Write `{stage}_roc.png`, `_pr.png`, `_calibration.png`, `_risk_hist.png`; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p, y = torch.as_tensor(probs).float(), torch.as_tensor(labels).long()
    paths = []
    fpr, tpr, _ = binary_roc(p, y)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(fpr, tpr, label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC ({stage})")
    ax.legend()
    paths.append(_save(fig, out / f"{stage}_roc.png"))
    prec, rec, _ = binary_precision_recall_curve(p, y)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(rec, prec, label="model")
    ax.axhline(float(y.float().mean()), ls="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall ({stage})")
    ax.legend()
    paths.append(_save(fig, out / f"{stage}_pr.png"))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    if raw_probs is not None:
        ax.plot(*reliability(np.asarray(raw_probs), np.asarray(labels)), "o-", label="before temperature")
    ax.plot(*reliability(np.asarray(probs), np.asarray(labels)), "o-", label="calibrated")
    ax.set(xlabel="predicted churn probability", ylabel="observed churn rate", title=f"Calibration ({stage})")
    ax.legend()
    paths.append(_save(fig, out / f"{stage}_calibration.png"))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    bins = np.linspace(0, 1, 31)
    ax.hist(np.asarray(probs)[np.asarray(labels) == 0], bins=bins, alpha=0.6, label="stayed")
    ax.hist(np.asarray(probs)[np.asarray(labels) == 1], bins=bins, alpha=0.6, label="churned")
    ax.set(xlabel="churn probability", ylabel="customers", title=f"Risk scores ({stage})")
    ax.legend()
    paths.append(_save(fig, out / f"{stage}_risk_hist.png"))
    return paths
