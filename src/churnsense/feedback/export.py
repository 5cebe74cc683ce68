"""ONNX export of the feedback model (encoder + heads + softmax) with the parity gate.

Smaller / faster serving graphs built from this export: `churnsense.feedback.quantize`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from churnsense.core import onnx_export
from churnsense.feedback.model import FeedbackNet, ProbabilityGraph

INPUTS = ("input_ids", "attention_mask")


def export_onnx(net: FeedbackNet, path: str | Path, opset: int = 18) -> Path:
    """Export with dynamic `batch` and `seq` axes (eval mode, CPU, float32); outputs `p_<head>`."""
    graph = ProbabilityGraph(net)
    example = (torch.full((2, 8), 5, dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
    batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("seq", min=2, max=4096)
    dyn = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    return onnx_export.export_onnx(graph, example, path, INPUTS, graph.output_names, dyn, opset)


def check_parity(net: FeedbackNet, path: str | Path, batches: list[dict[str, np.ndarray]], atol: float = 1e-4) -> float:
    """Max |p_torch - p_onnx| over `batches` (e.g. batch 1 and N); raises ExportParityError beyond `atol`."""
    graph = ProbabilityGraph(net)
    feeds = [(f"batch{i}", {k: np.asarray(b[k], dtype=np.int64) for k in INPUTS}) for i, b in enumerate(batches)]
    return max(onnx_export.check_parity(graph, path, feeds, graph.output_names, atol).values())
