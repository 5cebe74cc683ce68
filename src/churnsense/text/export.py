"""ONNX export of the feedback model (encoder + heads + softmax) and the torch vs onnxruntime parity check.

Smaller / faster serving graphs built from this export: `churnsense.text.quantize`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from churnsense.text.model import FeedbackNet, ProbabilityGraph
from churnsense.text.ort_session import session

INPUTS = ("input_ids", "attention_mask")


class ExportParityError(RuntimeError):
    """onnxruntime and torch disagree beyond the tolerance: the export must not be released."""


def export_onnx(net: FeedbackNet, path: str | Path, opset: int = 18) -> Path:
    """Export with dynamic `batch` and `seq` axes (eval mode, CPU, float32); outputs `p_<head>`."""
    graph = ProbabilityGraph(net).cpu().float().eval()
    example = (torch.full((2, 8), 5, dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
    batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("seq", min=2, max=4096)
    dyn = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(graph, example, input_names=list(INPUTS), output_names=graph.output_names,
                                    opset_version=opset, dynamo=True, dynamic_shapes=dyn, external_data=False,
                                    verbose=False)
    program.save(str(path), external_data=False)
    return path


def check_parity(net: FeedbackNet, path: str | Path, batches: list[dict[str, np.ndarray]],
                 atol: float = 1e-4) -> float:
    """Max |p_torch - p_onnx| over `batches` (e.g. batch 1 and N); raise ExportParityError beyond `atol`."""
    graph = ProbabilityGraph(net).cpu().float().eval()
    sess = session(path)
    worst = 0.0
    for batch in batches:
        feed = {k: np.asarray(batch[k], dtype=np.int64) for k in INPUTS}
        with torch.no_grad():
            ref = graph(*(torch.from_numpy(feed[k]) for k in INPUTS))
        got = sess.run(graph.output_names, feed)
        worst = max(worst, *(float(np.abs(r.numpy() - g).max()) for r, g in zip(ref, got)))
    if worst > atol:
        raise ExportParityError(f"ONNX parity failed: max abs diff {worst:.2e} > {atol:.0e}")
    return worst
