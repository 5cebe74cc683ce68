"""Discrete-time hazard head: P(churn within each horizon) from the shared representation, censoring-aware.

Intervals are [0, h1), [h1, h2), ... from the horizons. For customer b and interval k the hazard is
lambda_k = sigmoid(logit_k) = P(churn in k | still a customer at its start); P(churn within h_k) =
1 - prod_{j<=k} (1 - lambda_j). The likelihood uses every interval a customer was observed to survive
(`hi_k <= t`, with t = ttc_days if churn was observed else followup_days) and the interval holding an
observed churn; partly observed intervals are left out (the usual discrete-time approximation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from churnsense.churn.ensemble import MemberLinear


class HazardHead(nn.Module):
    """Per ensemble member: [B, k, d] -> hazard logits [B, k, H]."""

    def __init__(self, in_dim: int, horizons: list[int], k: int = 1) -> None:
        super().__init__()
        if sorted(horizons) != list(horizons) or min(horizons) <= 0:
            raise ValueError(f"hazard horizons must be positive and increasing, got {horizons}")
        self.horizons = [int(h) for h in horizons]
        self.register_buffer("edges", torch.tensor([0.0, *map(float, horizons)]), persistent=False)
        self.linear = MemberLinear(k, in_dim, len(horizons))
        self.output_dim = len(horizons)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)


def horizon_probabilities(hazard_logits: torch.Tensor) -> torch.Tensor:
    """Cumulative P(churn within horizon k) [B, H] from hazard logits [B, H] (log-space, stable)."""
    log_survive = F.logsigmoid(-hazard_logits).cumsum(dim=-1)
    return -torch.expm1(log_survive)


def hazard_targets(edges: torch.Tensor, ttc_days: torch.Tensor, followup_days: torch.Tensor):
    """(targets, weights) [B, H]: 1 in the churn interval, 0 in survived ones, weight 0 where unobserved."""
    observed = torch.isfinite(ttc_days)
    t = torch.where(observed, ttc_days, followup_days)
    known = torch.isfinite(t)
    t = torch.where(known, t, torch.zeros_like(t))[:, None]
    lo, hi = edges[None, :-1], edges[None, 1:]
    event = observed[:, None] & (t >= lo) & (t < hi)
    survived = known[:, None] & (hi <= t)
    return event.float(), (event | survived).float()


def hazard_loss(
    hazard_logits: torch.Tensor, edges: torch.Tensor, ttc_days: torch.Tensor, followup_days: torch.Tensor
) -> torch.Tensor:
    """Censoring-aware negative log-likelihood of the discrete-time hazard model, averaged per customer (and per
    ensemble member when the logits are [B, k, H])."""
    targets, weights = hazard_targets(edges.to(hazard_logits.device), ttc_days.float(), followup_days.float())
    if hazard_logits.dim() == 3:
        targets, weights = targets[:, None].expand_as(hazard_logits), weights[:, None].expand_as(hazard_logits)
    nll = F.binary_cross_entropy_with_logits(hazard_logits.float(), targets, weight=weights, reduction="sum")
    return nll / max(hazard_logits.shape[0] * (hazard_logits.shape[1] if hazard_logits.dim() == 3 else 1), 1)
