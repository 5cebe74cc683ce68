"""ONNX export of the whole scoring graph (encoders, fusion, temperature calibration, sigmoid) + parity check.

Inputs are the batch-contract keys with dynamic `batch` and `seq` axes; outputs `p_churn` [B] (calibrated)
and, with a hazard head, `p_horizon` [B, H] (P(churn within each horizon), horizons in metadata.json).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from churnsense.churn.hazard import horizon_probabilities
from churnsense.churn.net import MODEL_INPUTS, ChurnNet
from churnsense.core import onnx_export


class ScoringGraph(nn.Module):
    """Positional-input wrapper: p_churn = sigmoid((logit - logit_offset) / temperature)."""

    def __init__(self, net: ChurnNet, temperature: float = 1.0, logit_offset: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.register_buffer("logit_offset", torch.tensor(float(logit_offset)))

    @property
    def output_names(self) -> list[str]:
        return ["p_churn", "p_horizon"] if self.net.hazard is not None else ["p_churn"]

    def forward(self, cat, num, seq_type, seq_value, seq_dt, seq_mask):
        batch = dict(zip(MODEL_INPUTS, (cat, num, seq_type, seq_value, seq_dt, seq_mask)))
        out = self.net(batch)
        p_churn = torch.sigmoid((out["logit"] - self.logit_offset) / self.temperature)
        if "hazard_logits" in out:
            return p_churn, horizon_probabilities(out["hazard_logits"])
        return (p_churn,)


def model_inputs(batch: dict[str, torch.Tensor | np.ndarray]) -> tuple[torch.Tensor, ...]:
    """The six model inputs of a batch, in ONNX input order, as tensors of contract dtypes."""
    dtypes = (torch.int64, torch.float32, torch.int64, torch.float32, torch.float32, torch.bool)
    return tuple(
        torch.as_tensor(np.asarray(batch[k]) if not torch.is_tensor(batch[k]) else batch[k]).to(d)
        for k, d in zip(MODEL_INPUTS, dtypes)
    )


def _at_least_two(args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Pad the example to >= 2 rows and >= 2 sequence slots, so export keeps both axes symbolic (no 0/1
    specialisation). Extra rows repeat row 0; extra slots are padding."""
    args = tuple(torch.cat([a, a[:1].expand(2 - a.shape[0], *a.shape[1:])]) if a.shape[0] < 2 else a for a in args)
    n_seq = args[2].shape[1]
    if n_seq >= 2:
        return args
    return args[:2] + tuple(torch.cat([a, torch.zeros_like(a[:, :1]).expand(-1, 2 - n_seq)], 1) for a in args[2:])


def _reset_rnn_dispatch_caches() -> None:
    """Work around torch 2.13: after one export, aten.gru's cached dispatch runs its unrolled decomposition
    while tracing, which specialises the sequence axis to the example's length in every later export."""
    for name in ("gru", "lstm", "rnn_tanh", "rnn_relu"):
        packet = getattr(torch.ops.aten, name, None)
        for overload in ("input", "data"):
            cache = getattr(getattr(packet, overload, None), "_dispatch_cache", None)
            if isinstance(cache, dict):
                cache.clear()


def export_onnx(graph: ScoringGraph, example: dict[str, torch.Tensor], path: str | Path, opset: int = 18) -> Path:
    """Export `graph` with dynamic batch and sequence axes (a small slice of `example` suffices: the axes are
    dynamic, and tracing time grows with the sequence length of a GRU); returns the path."""
    args = _at_least_two(tuple(a[:4, :4] if i >= 2 else a[:4] for i, a in enumerate(model_inputs(example))))
    batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("seq", min=1)
    dyn = {name: ({0: batch, 1: seq} if name.startswith("seq_") else {0: batch}) for name in MODEL_INPUTS}
    _reset_rnn_dispatch_caches()
    return onnx_export.export_onnx(graph, args, path, MODEL_INPUTS, graph.output_names, dyn, opset)


def check_parity(
    graph: ScoringGraph, path: str | Path, batch: dict[str, torch.Tensor], batch_sizes: list[int], atol: float = 1e-4
) -> dict[str, float]:
    """Compare torch and onnxruntime on the first `size` rows of `batch` for each size; raise ExportParityError
    beyond `atol`. Keys `max_abs_diff/<output>/b<size>`."""
    args = model_inputs(batch)
    feeds = [(f"b{size}", {k: a[:size].numpy() for k, a in zip(MODEL_INPUTS, args)}) for size in batch_sizes]
    return onnx_export.check_parity(graph, path, feeds, graph.output_names, atol)
