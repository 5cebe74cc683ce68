"""Parameter-efficient ensemble of k MLPs in one module (TabM-mini, Gorishniy et al. 2025, "TabM: Advancing
Tabular Deep Learning with Parameter-Efficient Ensembling").

Member i sees the input scaled by its own vector r_i (initialised with random signs, trained), then the shared MLP,
then its own output head. All members run in one batched pass ([B, k, d]); each member is trained on its own loss,
and the ensemble prediction is the mean of the members' logits, so the exported ONNX model is still one graph.
With k = 1 it is a plain MLP (no scaling).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MemberLinear(nn.Module):
    """A separate `Linear(d_in, d_out)` per ensemble member: [B, k, d_in] -> [B, k, d_out]."""

    def __init__(self, k: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(k, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bki,kio->bko", x, self.weight) + self.bias


class EnsembleMLP(nn.Module):
    """[B, d_in] -> [B, k, hidden_dim]: per-member input scaling, then `n_layers` shared Linear-GELU-Dropout blocks."""

    def __init__(self, in_dim: int, hidden_dim: int, k: int = 1, n_layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        if k < 1 or n_layers < 1:
            raise ValueError(f"ensemble size and layers must be >= 1, got k={k}, n_layers={n_layers}")
        self.k = int(k)
        signs = torch.randint(0, 2, (self.k, in_dim)).float() * 2 - 1
        self.scale = nn.Parameter(signs) if self.k > 1 else None
        layers: list[nn.Module] = []
        for i in range(n_layers):
            layers += [nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim), nn.GELU()]
            if i < n_layers - 1:
                layers.append(nn.Dropout(dropout))
        self.mlp = nn.Sequential(*layers)
        self.output_dim = hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, None, :]
        x = x * self.scale if self.scale is not None else x
        return self.mlp(x)
