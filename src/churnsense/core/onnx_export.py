"""ONNX export of a torch module (dynamo exporter, dynamic axes) and the torch-vs-onnxruntime parity gate.

Every model's release goes through here: the export must keep its dynamic axes and agree with torch within the
tolerance on held-out inputs, or it is not released (`ExportParityError`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from churnsense.core.runtime import onnx_session

log = logging.getLogger(__name__)
_NOISY_LOGGERS = ("onnxscript", "onnx_ir")


class ExportParityError(RuntimeError):
    """The export lost a dynamic axis, or onnxruntime and torch disagree beyond the tolerance: not released."""


def export_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_shapes: Mapping[str, Mapping[int, Any]],
    opset: int = 18,
) -> Path:
    """Export `module(*args)` (eval mode, CPU, float32) to one self-contained ONNX file; returns its path.
    `dynamic_shapes`: input name -> {axis: torch.export.Dim}; each dynamic axis is checked to stay symbolic."""
    module = module.cpu().float().eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quiet = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.WARNING)
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                module,
                args,
                input_names=list(input_names),
                output_names=list(output_names),
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=dict(dynamic_shapes),
                external_data=False,
                verbose=False,
            )
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    program.save(str(path), external_data=False)
    assert_dynamic_axes(path, {name: tuple(axes) for name, axes in dynamic_shapes.items()})
    return path


def assert_dynamic_axes(path: str | Path, axes: Mapping[str, Sequence[int]]) -> None:
    """Every listed input axis must be symbolic in the exported graph."""
    import onnx

    for inp in onnx.load(str(path), load_external_data=False).graph.input:
        dims = inp.type.tensor_type.shape.dim
        fixed = [a for a in axes.get(inp.name, ()) if not dims[a].dim_param]
        if fixed:
            raise ExportParityError(f"{path}: input {inp.name} has fixed axes {fixed} (expected dynamic)")


def check_parity(
    module: nn.Module,
    path: str | Path,
    feeds: Iterable[tuple[str, Mapping[str, np.ndarray]]],
    output_names: Sequence[str],
    atol: float = 1e-4,
) -> dict[str, float]:
    """Run torch and onnxruntime on each labelled feed (`(label, {input name: array})`, inputs in the graph's
    order); returns `max_abs_diff/<output>/<label>` and raises ExportParityError beyond `atol`."""
    module = module.cpu().float().eval()
    session = onnx_session(path)
    worst: dict[str, float] = {}
    for label, feed in feeds:
        with torch.no_grad():
            expected = [t.numpy() for t in module(*(torch.from_numpy(np.asarray(a)) for a in feed.values()))]
        got = session.run(list(output_names), dict(feed))
        for name, e, g in zip(output_names, expected, got):
            if e.shape != g.shape:
                raise ExportParityError(f"{name}: shape {g.shape} from onnxruntime, {e.shape} from torch")
            diff = float(np.max(np.abs(e - g))) if e.size else 0.0
            worst[f"max_abs_diff/{name}/{label}"] = diff
            if not diff <= atol:
                raise ExportParityError(f"{name} at {label}: max |torch - onnx| = {diff:.3g} > {atol:g}")
    log.info("ONNX parity ok: %s", worst)
    return worst
