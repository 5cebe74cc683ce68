"""Feedback model: a pretrained BERT encoder (mean pooled) + one linear head per task."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def load_bert(path: str | Path) -> nn.Module:
    """A converted encoder directory (see build_encoder) as a float32 `BertModel` without pooler; offline."""
    from transformers import BertModel

    return BertModel.from_pretrained(str(path), add_pooling_layer=False, dtype=torch.float32, local_files_only=True)


class TextEncoder(nn.Module):
    """BERT + attention-masked mean pooling (how e5 was trained); `output_dim` = hidden size."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.output_dim = int(bert.config.hidden_size)

    @property
    def layers(self) -> nn.ModuleList:
        return self.bert.encoder.layer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class FeedbackNet(nn.Module):
    """Encoder -> dropout -> {head: logits}; heads sized from `encoder.output_dim`."""

    def __init__(self, encoder: TextEncoder, heads: dict[str, int], dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(encoder.output_dim, n) for name, n in heads.items()})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.dropout(self.encoder(input_ids, attention_mask))
        return {name: head(pooled) for name, head in self.heads.items()}

    def freeze_bottom(self, trainable_layers: int | None) -> None:
        """Freeze embeddings and all but the top `trainable_layers` transformer layers (None: train all)."""
        if trainable_layers is None or trainable_layers < 0:
            return
        layers = self.encoder.layers
        self.encoder.bert.embeddings.requires_grad_(False)
        for i, layer in enumerate(layers):
            layer.requires_grad_(i >= len(layers) - trainable_layers)


class ProbabilityGraph(nn.Module):
    """Export wrapper: positional inputs, softmax probabilities per head (ONNX outputs `p_<head>`)."""

    def __init__(self, net: FeedbackNet) -> None:
        super().__init__()
        self.net = net
        self.output_names = [f"p_{name}" for name in net.heads]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.net(input_ids, attention_mask)
        return tuple(torch.softmax(logits[name], dim=-1) for name in self.net.heads)


def layerwise_param_groups(
    net: FeedbackNet, lr: float, head_lr: float, decay: float, weight_decay: float
) -> list[dict]:
    """AdamW groups: heads at `head_lr`; layer i of L at lr * decay**(L-1-i); embeddings at lr * decay**L."""
    layers = net.encoder.layers
    n = len(layers)
    groups = [(list(net.heads.parameters()), head_lr)]
    groups += [(list(layer.parameters()), lr * decay ** (n - 1 - i)) for i, layer in enumerate(layers)]
    groups.append((list(net.encoder.bert.embeddings.parameters()), lr * decay**n))
    out = []
    for params, group_lr in groups:
        params = [p for p in params if p.requires_grad]
        if params:
            out.append({"params": params, "lr": group_lr, "weight_decay": weight_decay})
    return out
