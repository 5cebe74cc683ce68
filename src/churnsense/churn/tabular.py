"""Tabular branch: categorical embeddings (index 0 = unknown bucket) and learned numeric embeddings.

Numeric embeddings follow Gorishniy et al. 2022, "On Embeddings for Numerical Features in Tabular Deep Learning":
`periodic` is their PLR (per-feature trainable frequencies -> cos/sin -> per-feature linear -> ReLU), `linear` is LR,
`piecewise` is PLE-LR (piecewise-linear encoding over quantile bins of the training data -> per-feature linear ->
ReLU): it lets the net place GBDT-like thresholds. Each column becomes a `d_token` token; the tokens are flattened
and projected by an MLP to `output_dim`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class PerFeatureLinear(nn.Module):
    """A separate `Linear(d_in, d_out)` per feature: [B, F, d_in] -> [B, F, d_out]."""

    def __init__(self, n_features: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(n_features, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_features, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bfi,fio->bfo", x, self.weight) + self.bias


class PeriodicEmbedding(nn.Module):
    """PLR numeric embedding: v = ReLU(W_j [cos(2*pi*c_j*x), sin(2*pi*c_j*x)] + b_j) with trainable c_j."""

    def __init__(self, n_features: int, d_token: int, n_frequencies: int = 16, sigma: float = 1.0) -> None:
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(n_features, n_frequencies) * sigma)
        self.linear = PerFeatureLinear(n_features, 2 * n_frequencies, d_token)
        self.output_dim = d_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 2 * math.pi * self.frequencies[None] * x[..., None]
        return torch.relu(self.linear(torch.cat([torch.cos(z), torch.sin(z)], dim=-1)))


class LinearEmbedding(nn.Module):
    """LR numeric embedding: v = ReLU(w_j * x + b_j), one learned direction per feature."""

    def __init__(self, n_features: int, d_token: int) -> None:
        super().__init__()
        self.linear = PerFeatureLinear(n_features, 1, d_token)
        self.output_dim = d_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x[..., None]))


def quantile_bins(x: np.ndarray, n_bins: int) -> list[list[float]]:
    """Per column of x [N, F], the distinct quantile edges of at most `n_bins` bins (at least two edges)."""
    out = []
    for j in range(x.shape[1]):
        col = x[:, j][np.isfinite(x[:, j])]
        edges = np.unique(np.quantile(col, np.linspace(0, 1, n_bins + 1))) if col.size else np.zeros(1)
        if edges.size < 2:
            edges = np.array([edges[0], edges[0] + 1.0])
        out.append([float(e) for e in edges])
    return out


class PiecewiseLinearEmbedding(nn.Module):
    """PLE-LR: x -> [bin_1 .. bin_T] with bin_t = clamp((x - e_{t-1}) / (e_t - e_{t-1}), 0, 1) -> per-feature
    linear -> ReLU. Features with fewer bins are zero-padded. With `open_ends` the first bin is open below and the
    last open above (the paper's encoding: values outside the training range extrapolate linearly); without, they
    are clamped too, so a value beyond the training range is embedded like the range's end (as a tree splits)."""

    def __init__(self, bins: Sequence[Sequence[float]], d_token: int, open_ends: bool = True) -> None:
        super().__init__()
        n_bins = max(len(e) - 1 for e in bins)
        left = torch.zeros(len(bins), n_bins)
        width = torch.ones(len(bins), n_bins)
        count = torch.tensor([len(e) - 1 for e in bins])
        for j, edges in enumerate(bins):
            e = torch.tensor(edges, dtype=torch.float32)
            left[j, : len(e) - 1], width[j, : len(e) - 1] = e[:-1], (e[1:] - e[:-1]).clamp(min=1e-6)
        t = torch.arange(n_bins)[None, :]
        self.register_buffer("left", left)
        self.register_buffer("width", width)
        # Each bin's value is clamped into [low, high]: [0, 1] for inner bins, open (-inf / +inf) at the outer
        # ends with `open_ends`, [0, 0] for a feature's padding bins. Elementwise Max/Min with these bounds is the
        # same number as a masked clamp and several times faster in ONNX Runtime than a broadcast Where.
        inf = torch.tensor(float("inf"))
        low = torch.where((t > 0) | (not open_ends), torch.tensor(0.0), -inf)
        high = torch.where((t < count[:, None] - 1) | (not open_ends), torch.tensor(1.0), inf)
        padding = t >= count[:, None]
        self.register_buffer("low", torch.where(padding, torch.tensor(0.0), low))
        self.register_buffer("high", torch.where(padding, torch.tensor(0.0), high))
        self.linear = PerFeatureLinear(len(bins), n_bins, d_token)
        self.output_dim = d_token

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., F] -> [..., F, T]: each value's piecewise-linear bin encoding (padding bins are 0)."""
        return torch.minimum(torch.maximum((x[..., None] - self.left) / self.width, self.low), self.high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(self.encode(x)))


class CategoricalEmbedding(nn.Module):
    """One embedding table per column (shared storage with offsets); out-of-range indices fall into bucket 0."""

    def __init__(self, cardinalities: list[int], d_token: int) -> None:
        super().__init__()
        cards = torch.tensor([max(int(c), 1) for c in cardinalities], dtype=torch.long)
        self.register_buffer("cardinalities", cards, persistent=False)
        self.register_buffer("offsets", torch.cumsum(cards, 0) - cards, persistent=False)
        self.embedding = nn.Embedding(int(cards.sum()), d_token)
        self.output_dim = d_token

    def forward(self, cat: torch.Tensor) -> torch.Tensor:
        valid = (cat >= 0) & (cat < self.cardinalities)
        idx = torch.where(valid, cat, torch.zeros_like(cat))
        return self.embedding(idx + self.offsets)


def make_numeric_embedding(
    kind: str,
    n_features: int,
    d_token: int,
    n_frequencies: int,
    sigma: float,
    bins: Sequence[Sequence[float]] | None = None,
    open_ends: bool = True,
) -> nn.Module:
    """Build the numeric embedding named by `kind` (periodic | linear | piecewise; piecewise needs `bins` and
    takes `open_ends`)."""
    if kind == "periodic":
        return PeriodicEmbedding(n_features, d_token, n_frequencies, sigma)
    if kind == "linear":
        return LinearEmbedding(n_features, d_token)
    if kind == "piecewise":
        if bins is None or len(bins) != n_features:
            raise ValueError(f"piecewise numeric embedding needs bin edges for each of the {n_features} features")
        return PiecewiseLinearEmbedding(bins, d_token, open_ends)
    raise ValueError(f"unknown numeric embedding {kind!r}: expected 'periodic', 'linear' or 'piecewise'")


class TabularEncoder(nn.Module):
    """`cat` [B, C] + `num` [B, F] -> [B, output_dim]. C or F may be 0, not both."""

    def __init__(
        self,
        cat_cardinalities: list[int],
        n_numeric: int,
        d_token: int = 16,
        hidden_dim: int = 64,
        numeric_embedding: str = "periodic",
        n_frequencies: int = 16,
        frequency_sigma: float = 1.0,
        dropout: float = 0.1,
        bins: Sequence[Sequence[float]] | None = None,
        piecewise_open_ends: bool = True,
    ) -> None:
        super().__init__()
        n_cat, self.n_numeric = len(cat_cardinalities), int(n_numeric)
        if n_cat + self.n_numeric == 0:
            raise ValueError("TabularEncoder needs at least one categorical or numeric column")
        self.cat = CategoricalEmbedding(cat_cardinalities, d_token) if n_cat else None
        self.num = (
            make_numeric_embedding(
                numeric_embedding, self.n_numeric, d_token, n_frequencies, frequency_sigma, bins, piecewise_open_ends
            )
            if self.n_numeric
            else None
        )
        self.mlp = nn.Sequential(
            nn.LayerNorm((n_cat + self.n_numeric) * d_token),
            nn.Linear((n_cat + self.n_numeric) * d_token, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
        )
        self.output_dim = hidden_dim

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = []
        if self.cat is not None:
            tokens.append(self.cat(batch["cat"]))
        if self.num is not None:
            tokens.append(self.num(batch["num"]))
        x = torch.cat(tokens, dim=1)
        return self.mlp(x.flatten(1))
