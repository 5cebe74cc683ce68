"""ChurnNet: tabular and/or sequence encoders -> fusion MLP (a k-member ensemble) -> churn logit (+ optional
discrete-time hazard)."""

from __future__ import annotations

import torch
from torch import nn

from churnsense.churn.ensemble import EnsembleMLP, MemberLinear
from churnsense.churn.hazard import HazardHead

MODEL_INPUTS = ("cat", "num", "seq_type", "seq_value", "seq_dt", "seq_mask")


class ChurnNet(nn.Module):
    """`forward(batch) -> {"logit": [B], "member_logits": [B, k], "hazard_logits": [B, H] (if a hazard head),
    "member_hazard_logits": [B, k, H]}`; `logit` and `hazard_logits` average the k members' logits.

    Either encoder may be None (no attributes, or no event histories); the fusion MLP is sized from the
    `output_dim`s of those present. Each member is trained on its own loss (`member_*` outputs).
    """

    def __init__(
        self,
        tabular: nn.Module | None = None,
        sequence: nn.Module | None = None,
        hidden_dim: int = 64,
        dropout: float = 0.1,
        hazard_horizons: list[int] | None = None,
        ensemble_size: int = 1,
        fusion_layers: int = 2,
    ) -> None:
        super().__init__()
        if tabular is None and sequence is None:
            raise ValueError("ChurnNet needs a tabular or a sequence encoder")
        self.tabular, self.sequence = tabular, sequence
        in_dim = sum(m.output_dim for m in (tabular, sequence) if m is not None)
        self.fusion = EnsembleMLP(in_dim, hidden_dim, ensemble_size, fusion_layers, dropout)
        self.head = MemberLinear(ensemble_size, hidden_dim, 1)
        self.hazard = HazardHead(hidden_dim, list(hazard_horizons), ensemble_size) if hazard_horizons else None
        self.ensemble_size = int(ensemble_size)
        self.output_dim = hidden_dim

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        parts = [m(batch) for m in (self.tabular, self.sequence) if m is not None]
        h = self.fusion(torch.cat(parts, dim=-1))  # [B, k, hidden]
        members = self.head(h).squeeze(-1)
        out = {"logit": members.mean(1), "member_logits": members}
        if self.hazard is not None:
            hazard = self.hazard(h)
            out.update(hazard_logits=hazard.mean(1), member_hazard_logits=hazard)
        return out
