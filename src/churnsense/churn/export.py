"""ONNX export of the whole scoring graph (encoders, fusion, temperature calibration, sigmoid) + parity check.

Inputs are the batch-contract keys with dynamic `batch` and `seq` axes; outputs `p_churn` [B] (calibrated)
and, with a hazard head, `p_horizon` [B, H] (P(churn within each horizon), horizons in metadata.json).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from churnsense.churn.hazard import horizon_probabilities
from churnsense.churn.net import MODEL_INPUTS, ChurnNet

log = logging.getLogger(__name__)


class ExportParityError(RuntimeError):
    """The export lost a dynamic axis, or onnxruntime and torch disagree beyond the tolerance: not released."""


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

    def forward(self, cat, num, seq_type, seq_value, seq_dt, seq_mask):  # noqa: ANN001 - ONNX positional inputs
        batch = dict(zip(MODEL_INPUTS, (cat, num, seq_type, seq_value, seq_dt, seq_mask)))
        out = self.net(batch)
        p_churn = torch.sigmoid((out["logit"] - self.logit_offset) / self.temperature)
        if "hazard_logits" in out:
            return p_churn, horizon_probabilities(out["hazard_logits"])
        return (p_churn,)


def model_inputs(batch: dict[str, torch.Tensor | np.ndarray]) -> tuple[torch.Tensor, ...]:
    """The six model inputs of a batch, in ONNX input order, as tensors of contract dtypes."""
    dtypes = (torch.int64, torch.float32, torch.int64, torch.float32, torch.float32, torch.bool)
    return tuple(torch.as_tensor(np.asarray(batch[k]) if not torch.is_tensor(batch[k]) else batch[k]).to(d)
                 for k, d in zip(MODEL_INPUTS, dtypes))


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


def assert_dynamic_axes(path: str | Path) -> None:
    """Every input must have a symbolic batch axis and the seq_* inputs a symbolic sequence axis."""
    import onnx

    for inp in onnx.load(str(path), load_external_data=False).graph.input:
        dims = inp.type.tensor_type.shape.dim
        axes = (0, 1) if inp.name.startswith("seq_") else (0,)
        fixed = [a for a in axes if not dims[a].dim_param]
        if fixed:
            raise ExportParityError(f"{path}: input {inp.name} has fixed axes {fixed} (expected dynamic)")


def export_onnx(graph: ScoringGraph, example: dict[str, torch.Tensor], path: str | Path, opset: int = 18) -> Path:
    """Export `graph` (eval mode, CPU, float32) with dynamic batch and sequence axes; returns the path."""
    graph = graph.cpu().float().eval()
    # Axes are dynamic, so a small example suffices; tracing time grows with its sequence length (GRU).
    args = _at_least_two(tuple(a[:4, :4] if i >= 2 else a[:4] for i, a in enumerate(model_inputs(example))))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _reset_rnn_dispatch_caches()
    quiet = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.WARNING)
    try:
        program = _export(graph, args, opset)
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    program.save(str(path), external_data=False)
    assert_dynamic_axes(path)
    return path


def _export(graph: ScoringGraph, args: tuple[torch.Tensor, ...], opset: int):
    batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("seq", min=1)
    dyn = {name: ({0: batch, 1: seq} if name.startswith("seq_") else {0: batch}) for name in MODEL_INPUTS}
    with torch.no_grad():
        return torch.onnx.export(
            graph, args, input_names=list(MODEL_INPUTS), output_names=graph.output_names, opset_version=opset,
            dynamo=True, dynamic_shapes=dyn, external_data=False, verbose=False,
        )


def check_parity(graph: ScoringGraph, path: str | Path, batch: dict[str, torch.Tensor],
                 batch_sizes: list[int], atol: float = 1e-4) -> dict[str, float]:
    """Compare torch and onnxruntime outputs on slices of `batch`; raise ExportParityError beyond `atol`."""
    import onnxruntime as ort

    graph = graph.cpu().float().eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    args = model_inputs(batch)
    worst: dict[str, float] = {}
    for size in batch_sizes:
        sliced = tuple(a[:size] for a in args)
        with torch.no_grad():
            expected = [t.numpy() for t in graph(*sliced)]
        got = session.run(graph.output_names, {k: a.numpy() for k, a in zip(MODEL_INPUTS, sliced)})
        for name, e, g in zip(graph.output_names, expected, got):
            if e.shape != g.shape:
                raise ExportParityError(f"{name}: shape {g.shape} from onnxruntime, {e.shape} from torch")
            diff = float(np.max(np.abs(e - g))) if e.size else 0.0
            worst[f"max_abs_diff/{name}/b{size}"] = diff
            if not diff <= atol:
                raise ExportParityError(f"{name} at batch {size}: max |torch - onnx| = {diff:.3g} > {atol:g}")
    log.info("ONNX parity ok: %s", worst)
    return worst
