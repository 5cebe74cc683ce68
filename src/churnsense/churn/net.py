"""ChurnNet: tabular and/or sequence encoders -> fusion MLP -> churn logit (+ optional discrete-time hazard)."""
from __future__ import annotations

import torch
from torch import nn

from churnsense.churn.hazard import HazardHead

MODEL_INPUTS = ("cat", "num", "seq_type", "seq_value", "seq_dt", "seq_mask")


class ChurnNet(nn.Module):
    """`forward(batch) -> {"logit": [B], "hazard_logits": [B, H] (if a hazard head)}`.

    Either encoder may be None (no attributes, or no event histories); the fusion MLP is sized from the
    `output_dim`s of those present.
    """

    def __init__(
        self,
        tabular: nn.Module | None = None,
        sequence: nn.Module | None = None,
        hidden_dim: int = 64,
        dropout: float = 0.1,
        hazard_horizons: list[int] | None = None,
    ) -> None:
        super().__init__()
        if tabular is None and sequence is None:
            raise ValueError("ChurnNet needs a tabular or a sequence encoder")
        self.tabular, self.sequence = tabular, sequence
        in_dim = sum(m.output_dim for m in (tabular, sequence) if m is not None)
        self.fusion = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, hidden_dim), nn.GELU()
        )
        self.head = nn.Linear(hidden_dim, 1)
        self.hazard = HazardHead(hidden_dim, list(hazard_horizons)) if hazard_horizons else None
        self.output_dim = hidden_dim

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        parts = [m(batch) for m in (self.tabular, self.sequence) if m is not None]
        h = self.fusion(torch.cat(parts, dim=-1))
        out = {"logit": self.head(h).squeeze(-1)}
        if self.hazard is not None:
            out["hazard_logits"] = self.hazard(h)
        return out
