"""ONNX export of the scoring graph: dynamic batch/sequence axes, torch vs onnxruntime parity, loud failure."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from churnsense.churn.examples import random_arrays
from churnsense.churn.export import ScoringGraph, check_parity, export_onnx, model_inputs
from churnsense.churn.net import MODEL_INPUTS, ChurnNet
from churnsense.churn.sequence import SequenceEncoder
from churnsense.churn.tabular import TabularEncoder
from churnsense.core.onnx_export import ExportParityError

warnings.filterwarnings("ignore")


def _batch(**kw):
    b = {k: torch.as_tensor(v) for k, v in random_arrays(seed=1, **kw).items()}
    b["seq_mask"][0] = False  # one empty history in the held-out batch
    return b


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_parity_dynamic_axes(kind, tmp_path):
    torch.manual_seed(0)
    net = ChurnNet(
        TabularEncoder([3, 5], 4, d_token=4, hidden_dim=8),
        SequenceEncoder(6, kind, d_model=8, n_heads=2),
        hidden_dim=8,
        hazard_horizons=[30, 60, 90],
    )
    graph = ScoringGraph(net, temperature=1.7, logit_offset=0.4)
    example = _batch(n=4, max_events=3)
    path = export_onnx(graph, example, tmp_path / "model.onnx")
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == list(MODEL_INPUTS)
    assert [o.name for o in model.graph.output] == ["p_churn", "p_horizon"]
    held_out = _batch(n=40, max_events=12)  # other batch size and sequence length than the example
    diffs = check_parity(graph, path, held_out, [1, 40], atol=1e-4)
    assert max(diffs.values()) <= 1e-4


def test_parity_ensemble_and_piecewise_embedding(tmp_path):
    """The k-member ensemble, the piecewise-linear embedding (clamped ends) and the per-type window statistics
    export as one graph, within tolerance."""
    from churnsense.churn.tabular import quantile_bins

    torch.manual_seed(0)
    held_out = _batch(n=40, max_events=12)
    bins = quantile_bins(held_out["num"].numpy(), n_bins=6)
    tab = TabularEncoder(
        [3, 5], 4, d_token=4, hidden_dim=8, numeric_embedding="piecewise", bins=bins, piecewise_open_ends=False
    )
    seq = SequenceEncoder(6, "gru", d_model=8, window_days=[7, 30], window_dim=4)
    net = ChurnNet(tab, seq, hidden_dim=8, hazard_horizons=[30, 60], ensemble_size=4)
    graph = ScoringGraph(net, temperature=1.3, logit_offset=0.2)
    path = export_onnx(graph, _batch(n=4, max_events=3), tmp_path / "model.onnx")
    assert len(onnx.load(str(path)).graph.input) == len(MODEL_INPUTS)
    diffs = check_parity(graph, path, held_out, [1, 40], atol=1e-4)
    assert max(diffs.values()) <= 1e-4


def test_parity_failure_is_loud(tmp_path):
    net = ChurnNet(None, SequenceEncoder(6, "gru", d_model=8), hidden_dim=8)
    graph = ScoringGraph(net)
    batch = _batch(n=6, cat_cardinalities=(), n_numeric=0)
    path = export_onnx(graph, batch, tmp_path / "model.onnx")
    with torch.no_grad():
        net.head.bias += 1.0  # torch graph drifts from the exported one
    with pytest.raises(ExportParityError):
        check_parity(graph, path, batch, [1, 6], atol=1e-4)


def test_no_events_table_single_padded_slot(tmp_path):
    """Telco-like data: no sequence branch, seq arrays of one all-padding slot; all six inputs kept."""
    net = ChurnNet(TabularEncoder([3, 5], 4, d_token=4, hidden_dim=8), None, hidden_dim=8)
    batch = _batch(n=6, n_event_types=0)
    path = export_onnx(ScoringGraph(net), batch, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {k: v.numpy() for k, v in zip(MODEL_INPUTS, model_inputs(batch))}
    (p,) = session.run(None, feed)
    assert p.shape == (6,) and np.isfinite(p).all()
    longer = {k: (np.zeros((1, 64), v.dtype) if k.startswith("seq_") else v[:1]) for k, v in feed.items()}
    assert np.allclose(session.run(None, longer)[0], p[:1], atol=1e-6)  # the pipeline pads to max_events


def test_repeated_gru_exports_keep_dynamic_sequence_axis(tmp_path):
    """torch 2.13 specialises the sequence axis of a second GRU export in one process unless worked around."""
    batch = _batch(n=4, max_events=3, cat_cardinalities=(), n_numeric=0)
    for k in range(2):
        graph = ScoringGraph(ChurnNet(None, SequenceEncoder(6, "gru", d_model=4), hidden_dim=4))
        path = export_onnx(graph, batch, tmp_path / f"model{k}.onnx")  # raises if an axis became fixed
        check_parity(graph, path, _batch(n=5, max_events=9, cat_cardinalities=(), n_numeric=0), [5])
