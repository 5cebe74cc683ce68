"""Whole-split predictions from a trained ChurnNet and the final (raw + temperature-calibrated) evaluation."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torchmetrics.functional.classification import binary_auroc

from churnsense.churn.calibration import calibrated_probs
from churnsense.churn.hazard import horizon_probabilities
from churnsense.churn.metrics import evaluate_probabilities
from churnsense.churn.net import ChurnNet


@torch.no_grad()
def predict(net: ChurnNet, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenated `logit`, `label`, `ttc_days`, `followup_days` (+ `p_horizon`) over batches; eval mode, CPU."""
    net = net.cpu().float().eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        out = net(batch)
        row = {"logit": out["logit"]}
        if "hazard_logits" in out:
            row["p_horizon"] = horizon_probabilities(out["hazard_logits"])
        row.update({k: batch[k] for k in ("label", "ttc_days", "followup_days") if k in batch})
        for k, v in row.items():
            parts.setdefault(k, []).append(v.float())
    return {k: torch.cat(v) for k, v in parts.items()}


def horizon_aurocs(
    p_horizon: torch.Tensor, ttc_days: torch.Tensor, followup_days: torch.Tensor, horizons: list[int], prefix: str
) -> dict[str, float]:
    """AUROC of P(churn within h) among customers whose status at h is known (churned by h, or followed >= h)."""
    out = {}
    churned = torch.isfinite(ttc_days)
    for k, h in enumerate(horizons):
        y = churned & (ttc_days <= h)
        known = y | (followup_days >= h)
        if known.sum() > 1 and 0 < int(y[known].sum()) < int(known.sum()):
            out[f"{prefix}hazard_auroc_{h}d"] = float(binary_auroc(p_horizon[known, k], y[known].long()))
    return out


def evaluate_split(
    pred: dict[str, torch.Tensor],
    stage: str,
    temperature: float,
    offset: float,
    top_fraction: float,
    horizons: list[int] | None = None,
) -> dict[str, float]:
    """`{stage}/<metric>` before temperature (prior-corrected) and `{stage}/calibrated_<metric>` after it."""
    labels = pred["label"]
    metrics = evaluate_probabilities(calibrated_probs(pred["logit"], 1.0, offset), labels, f"{stage}/", top_fraction)
    metrics.update(
        evaluate_probabilities(
            calibrated_probs(pred["logit"], temperature, offset), labels, f"{stage}/calibrated_", top_fraction
        )
    )
    if horizons and "p_horizon" in pred:
        metrics.update(
            horizon_aurocs(pred["p_horizon"], pred["ttc_days"], pred["followup_days"], horizons, f"{stage}/")
        )
    metrics[f"{stage}/churn_rate"] = float(labels.mean())
    return metrics


def summary_line(metrics: dict[str, float], top_fraction: float = 0.1) -> str:
    """The one line a training run ends with: calibrated test metrics (ranking, calibration, the top decile)."""
    pct = int(round(top_fraction * 100))
    keys = (
        ("ROC-AUC", "calibrated_auroc"),
        ("PR-AUC", "calibrated_pr_auc"),
        ("Brier", "calibrated_brier"),
        ("ECE", "calibrated_ece"),
        (f"lift@{pct}%", f"calibrated_lift_top{pct}"),
    )
    parts = [f"{name} {metrics[f'test/{key}']:.4f}" for name, key in keys if f"test/{key}" in metrics]
    return f"[churn] test: {' | '.join(parts)} (val ROC-AUC {metrics.get('val/auroc', float('nan')):.4f})"
