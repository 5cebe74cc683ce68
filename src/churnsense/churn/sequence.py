"""Sequence branch: event tokens (type embedding + value + time-before-cutoff encoding) -> masked GRU or
Transformer encoder -> mask-respecting attention pooling. Histories with no events get a learned vector.

Export-friendly by construction: no pack_padded_sequence (events are left-aligned, so a forward GRU's outputs
at real positions never see padding), Transformer without the nested-tensor fast path, finite everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from churnsense.churn.event_windows import EventWindowStats

_NEG = -1e4  # finite "minus infinity": softmax over an all-masked row stays finite


class EventEmbedding(nn.Module):
    """Token per event: type embedding (0 = padding, 1 = unknown) + value projection + periodic encoding of dt."""

    def __init__(self, n_event_types: int, d_model: int, n_frequencies: int = 8) -> None:
        super().__init__()
        self.n_event_types = max(int(n_event_types), 2)
        self.type_emb = nn.Embedding(self.n_event_types, d_model, padding_idx=0)
        self.value_proj = nn.Linear(1, d_model)
        self.type_scale = nn.Embedding(self.n_event_types, d_model)  # per-type modulation of the value
        self.dt_freq = nn.Parameter(torch.randn(n_frequencies) * 0.5)
        self.dt_proj = nn.Linear(2 * n_frequencies, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.output_dim = d_model

    def forward(self, seq_type: torch.Tensor, seq_value: torch.Tensor, seq_dt: torch.Tensor) -> torch.Tensor:
        known = (seq_type >= 0) & (seq_type < self.n_event_types)
        types = torch.where(known, seq_type, torch.ones_like(seq_type))
        z = 2 * math.pi * self.dt_freq * seq_dt[..., None]
        dt = self.dt_proj(torch.cat([torch.cos(z), torch.sin(z)], dim=-1))
        value = self.value_proj(seq_value[..., None]) * (1 + self.type_scale(types))
        return self.norm(self.type_emb(types) + value + dt)


class MaskedAttentionPool(nn.Module):
    """Softmax attention pooling over real events; rows without events get a learned 'no history' vector."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.score = nn.Linear(d_model, 1)
        self.no_history = nn.Parameter(torch.zeros(d_model))
        self.output_dim = 2 * d_model

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Padding is pushed out by adding a large negative number, not by masked_fill: a broadcast Add is several
        # times faster than a broadcast Where in ONNX Runtime, and the result is the same (padding never wins).
        penalty = (~mask).to(h.dtype) * _NEG
        scores = self.score(h).squeeze(-1) + penalty
        attn = torch.softmax(scores, dim=-1) * mask.to(h.dtype)
        attended = (attn[..., None] * h).sum(1)
        maxed = (h + penalty[..., None]).amax(1)
        has_events = mask.any(dim=1, keepdim=True)
        empty = self.no_history.to(h.dtype).expand_as(attended)
        return torch.cat([torch.where(has_events, attended, empty), torch.where(has_events, maxed, empty)], -1)


class SequenceEncoder(nn.Module):
    """`seq_type/seq_value/seq_dt/seq_mask` [B, N] -> [B, output_dim] with a GRU or Transformer backbone."""

    def __init__(
        self,
        n_event_types: int,
        kind: str = "gru",
        d_model: int = 32,
        n_layers: int = 1,
        n_heads: int = 4,
        dropout: float = 0.1,
        n_frequencies: int = 8,
        window_days: Sequence[float] = (),
        window_dim: int = 0,
    ) -> None:
        super().__init__()
        if kind not in ("gru", "transformer"):
            raise ValueError(f"unknown seq_encoder {kind!r}: expected 'gru' or 'transformer'")
        self.kind = kind
        self.embed = EventEmbedding(n_event_types, d_model, n_frequencies)
        if kind == "gru":
            self.backbone: nn.Module = nn.GRU(
                d_model, d_model, num_layers=n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0
            )
        else:
            layer = nn.TransformerEncoderLayer(
                d_model, n_heads, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True, norm_first=True
            )
            self.backbone = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.pool = MaskedAttentionPool(d_model)
        self.windows = (
            EventWindowStats(n_event_types, list(window_days), window_dim) if window_days and window_dim > 0 else None
        )
        self.output_dim = self.pool.output_dim + (window_dim if self.windows is not None else 0)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["seq_mask"].bool()
        x = self.embed(batch["seq_type"], batch["seq_value"], batch["seq_dt"])
        x = x * mask[..., None].to(x.dtype)
        if self.kind == "gru":
            h, _ = self.backbone(x)
        else:
            # Let empty rows attend to their first slot so attention never sees an all-masked row (NaN);
            # their pooled output is replaced by the learned 'no history' vector anyway.
            first = torch.zeros_like(mask)
            first[:, 0] = True
            attend = mask | (first & ~mask.any(dim=1, keepdim=True))
            h = self.backbone(x, src_key_padding_mask=~attend)
        parts = [self.pool(h, mask)]
        if self.windows is not None:
            parts.append(self.windows(batch["seq_type"], batch["seq_value"], batch["seq_dt"], mask))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
