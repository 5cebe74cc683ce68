"""Per event type statistics over learned time windows, computed inside the graph from the sequence inputs.

What a GBDT gets as hand-made aggregates (counts and value sums per event type in the last 30/90 days, recency
per type, usage trends: `aggregates.py`) a recurrent encoder has to learn from few churners. This module hands the
net the same kind of statistics directly, with windows it learns. For event type t and window w, with
dt_i = log1p(days before the cutoff) of event i:

    count_tw = sum_i [type_i = t] * sigmoid((e_w - dt_i) / tau_w)
    mean_tw  = sum_i [type_i = t] * sigmoid((e_w - dt_i) / tau_w) * value_i / (count_tw + 1)
    recency_t = min {dt_i : type_i = t}  (0 with presence flag 0 when the type is absent)

and returns Linear-GELU of [log1p(count), mean, recency, presence]: trends are differences of window counts, which
the fusion MLP forms. Windows start at `window_days` and move with training (e_w and tau_w are learned).
Padding (mask False) contributes exactly nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

_FAR = 1e4  # finite "no event of this type": larger than any log1p(days)


class EventWindowStats(nn.Module):
    """`seq_type/seq_value/seq_dt/seq_mask` [B, N] -> [B, d_out] (counts, mean values, recency per type)."""

    def __init__(self, n_event_types: int, window_days: Sequence[float], d_out: int, sharpness_days: float = 0.1):
        super().__init__()
        if not window_days:
            raise ValueError("EventWindowStats needs at least one window")
        self.n_types = max(int(n_event_types), 2)
        self.register_buffer("type_ids", torch.arange(self.n_types), persistent=False)
        self.edges = nn.Parameter(torch.log1p(torch.tensor([float(d) for d in window_days])))
        self.log_tau = nn.Parameter(torch.full((len(window_days),), math.log(sharpness_days)))
        n_features = self.n_types * (2 * len(window_days) + 2)
        self.proj = nn.Sequential(nn.Linear(n_features, d_out), nn.GELU())
        self.output_dim = d_out

    def statistics(
        self, seq_type: torch.Tensor, seq_value: torch.Tensor, seq_dt: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """`counts`, `means` [B, T, W], `recency`, `present` [B, T] (before the projection)."""
        dtype = seq_value.dtype
        known = (seq_type >= 0) & (seq_type < self.n_types)
        types = torch.where(known, seq_type, torch.ones_like(seq_type))  # unknown -> index 1
        onehot = (types[..., None] == self.type_ids).to(dtype) * mask[..., None].to(dtype)  # [B, N, T]
        inside = torch.sigmoid((self.edges - seq_dt[..., None]) / self.log_tau.exp())  # [B, N, W]
        counts = torch.einsum("bnt,bnw->btw", onehot, inside)
        sums = torch.einsum("bnt,bnw->btw", onehot * seq_value[..., None], inside)
        means = sums / (counts + 1.0)
        present = onehot.amax(1)  # [B, T]
        recency = (seq_dt[..., None] + (1.0 - onehot) * _FAR).amin(1) * present
        return {"counts": counts, "means": means, "recency": recency, "present": present}

    def forward(
        self, seq_type: torch.Tensor, seq_value: torch.Tensor, seq_dt: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        s = self.statistics(seq_type, seq_value, seq_dt, mask)
        feats = [torch.log1p(s["counts"]).flatten(1), s["means"].flatten(1), s["recency"], s["present"]]
        return self.proj(torch.cat(feats, dim=-1))
