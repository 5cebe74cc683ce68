"""Serving graphs of the feedback model on a tiny random BERT: exact fusions, int8 graph that loads, keeps output
shapes and stays close to fp32, compact embeddings, and the dev-set gate choosing what a release serves."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from omegaconf import OmegaConf

from churnsense.core.runtime import cpu_flags, int8_weights_saturate, onnx_session
from churnsense.feedback.export import export_onnx
from churnsense.feedback.fusion import fuse_attention, fuse_gelu
from churnsense.feedback.quantize import (
    Int8Recipe,
    ServingGraphError,
    build_serving_model,
    calibration_feeds,
    check_graph_parity,
    compact_embeddings,
    quantize_projections,
)
from churnsense.feedback.release import full_range_int8
from churnsense.feedback.tokenize import TextTokenizer
from helpers import feedback_config

RECIPE = Int8Recipe(
    fuse_attention=True,
    fuse_gelu=True,
    per_channel=True,
    reduce_range=True,
    smooth_alpha=0.75,
    ffn_outlier_channels=8,
    calibration_texts=32,
    calibration_seed=3,
    parity_atol=1e-4,
)
HEADS = 2


@pytest.fixture(scope="module")
def exported(tiny_encoder, tmp_path_factory):
    """(fp32 export path, tokenizer) of a tiny FeedbackNet with trained-looking (random, scaled) heads."""
    import torch

    from churnsense.feedback.labels import HEADS as LABELS
    from churnsense.feedback.model import FeedbackNet, TextEncoder, load_bert

    torch.manual_seed(0)
    net = FeedbackNet(TextEncoder(load_bert(tiny_encoder)), {h: len(n) for h, n in LABELS.items()}).eval()
    with torch.no_grad():
        for head in net.heads.values():
            head.weight.mul_(20.0)  # spread the probabilities so that differences are visible
    path = export_onnx(net, tmp_path_factory.mktemp("export") / "model.onnx")
    return path, TextTokenizer.from_file(tiny_encoder / "tokenizer.json", 32)


def _feeds(tok, texts, batch=4):
    varied = [t * (1 + i % 3) for i, t in enumerate(texts * 3)]  # different lengths -> padding inside batches
    return calibration_feeds(tok, varied, batch)


def _run(path, feeds):
    sess = onnx_session(path, threads=1)
    names = [o.name for o in sess.get_outputs()]
    return names, [dict(zip(names, sess.run(names, f))) for f in feeds]


def test_fusions_are_exact_and_found(exported, tiny_texts):
    path, tok = exported
    model = onnx.load(str(path))
    reference = onnx.load(str(path))
    assert fuse_attention(model, HEADS) == 2 and fuse_gelu(model) == 2
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Attention") == 2 and ops.count("Gelu") == 2 and "Softmax" in ops  # heads' softmax only
    assert ops.count("Softmax") == 3 and "Erf" not in ops
    feeds = _feeds(tok, tiny_texts) + [tok.pad(tok.encode(tiny_texts[:1]).ids)]  # batch 1 too
    assert check_graph_parity(reference, model, feeds, atol=1e-5) <= 1e-5
    assert fuse_attention(model, HEADS) == 0  # nothing left to fuse


def test_parity_check_is_loud(exported, tiny_texts):
    path, tok = exported
    reference, model = onnx.load(str(path)), onnx.load(str(path))
    head = next(i for i in model.graph.initializer if i.name.endswith("heads.sentiment.bias"))
    bias = onnx.numpy_helper.to_array(head).copy()
    bias[0] += 1.0  # one class only: a shift of every logit would not change the softmax
    head.CopyFrom(onnx.numpy_helper.from_array(bias, head.name))
    with pytest.raises(ServingGraphError):
        check_graph_parity(reference, model, _feeds(tok, tiny_texts), atol=1e-4)


# 32-wide random encoder, logits x20: float heads and 7-bit weights stay within ~1e-3 of fp32 on every CPU (8-bit
# weights saturate without VNNI: ~1e-2; quantised heads as well: 0.1); int8 embeddings alone cost up to 2e-2.
@pytest.mark.parametrize("embeddings, atol", [("float16", 3e-3), ("int8", 2e-2)])
def test_int8_graph_loads_keeps_shapes_and_stays_close(exported, tiny_texts, tmp_path, embeddings, atol):
    path, tok = exported
    calib = ["Интернет", "crashes every", "האינטרנט", "ok ok ok", "app 😡 time"] * 6  # not the texts scored below
    out = build_serving_model(
        path,
        tmp_path / "q.onnx",
        num_heads=HEADS,
        int8=True,
        embeddings=embeddings,
        recipe=RECIPE,
        feeds=calibration_feeds(tok, calib, 8),
    )
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QAttention", "Gelu"} <= ops and ops & {"DynamicQuantizeLinear", "MatMulInteger"}
    assert out.stat().st_size < path.stat().st_size
    feeds = _feeds(tok, tiny_texts)
    names, ref = _run(path, feeds)
    got_names, got = _run(out, feeds)
    assert got_names == names
    for r, g, f in zip(ref, got, feeds):
        for name in names:
            assert g[name].shape == r[name].shape and g[name].shape[0] == f["input_ids"].shape[0]
            assert np.allclose(g[name].sum(1), 1, atol=1e-5)
            assert np.abs(g[name] - r[name]).max() < atol, name


@pytest.mark.parametrize("reduce_range, limit", [(True, 64), (False, 127)])
def test_int8_weight_range(exported, reduce_range, limit):
    """7-bit weights keep u8 x s8 pair sums inside int16 (255 * 64 * 2 <= 32767): exact on CPUs without VNNI."""
    path, _ = exported
    model = onnx.load(str(path))
    fuse_attention(model, HEADS)
    quantized = quantize_projections(model, per_channel=True, exclude=[], reduce_range=reduce_range)
    consumers = {n.input[1] for n in quantized.graph.node if n.op_type in ("MatMulInteger", "QAttention")}
    weights = [onnx.numpy_helper.to_array(i) for i in quantized.graph.initializer if i.name in consumers]
    assert len(weights) == 2 * 4  # per layer: the fused QKV projection, attention output, FFN up and down
    heads = [n for n in quantized.graph.node if n.op_type in ("MatMul", "Gemm") and "heads" in "".join(n.input)]
    assert len(heads) == 3  # sentiment, topic, language heads stay float
    assert {w.dtype for w in weights} == {np.dtype(np.int8)}
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) == limit  # symmetric: the range is used


def test_saturating_cpu_is_recognised(tmp_path):
    for flags, saturates in (
        ("fpu sse4_2 avx avx2 fma", True),  # AVX2 without VNNI: vpmaddubsw adds products in int16
        ("avx2 avx512f avx512bw", True),
        ("avx2 avx512f avx512_vnni", False),
        ("avx2 avx_vnni", False),
        ("fp asimd asimddp", False),  # arm64 (`Features`): dot products in int32
    ):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\n{'Features' if 'asimd' in flags else 'flags'}\t\t: {flags}\n")
        assert int8_weights_saturate(cpu_flags(info)) is saturates, flags
    assert cpu_flags(tmp_path / "missing") is None and int8_weights_saturate(None) is False
    old = {"serving_candidates": [{"file": "model.int8.onnx", "int8": True}]}  # written before reduce_range
    new = {"serving_candidates": [{"file": "model.int8.onnx", "int8": True, "reduce_range": True}]}
    assert full_range_int8(old, "model.int8.onnx") and not full_range_int8(new, "model.int8.onnx")
    assert not full_range_int8(old, "model.onnx")


def test_compact_embeddings_sizes_and_values(exported, tiny_texts):
    path, tok = exported
    feeds = _feeds(tok, tiny_texts)
    _, ref = _run(path, feeds)
    for dtype, atol in (("float16", 1e-3), ("int8", 2e-2)):
        model = onnx.load(str(path))
        assert compact_embeddings(model, dtype) == 1
        table = next(i for i in model.graph.initializer if i.name.endswith("word_embeddings.weight"))
        assert table.data_type == (onnx.TensorProto.FLOAT16 if dtype == "float16" else onnx.TensorProto.INT8)
        sess = onnx_session(model.SerializeToString())
        for r, f in zip(ref, feeds):
            for name, value in zip(r, sess.run(list(r), f)):
                assert np.abs(value - r[name]).max() < atol, (dtype, name)


def _release_cfg(tiny_encoder, tmp_path, **export):
    cfg = feedback_config(tiny_encoder, tmp_path, "export.int8=true", "export.fused_fp32=true")
    cfg.export.quantize = OmegaConf.create(RECIPE.__dict__)
    cfg.export.update(export)
    return cfg


@pytest.mark.parametrize("limit, served", [(1.0, "model.int8.onnx"), (-1.0, "model.onnx")])
def test_release_gate_serves_first_passing_candidate(tiny_encoder, tmp_path, limit, served):
    from churnsense.feedback.data import dev_set
    from churnsense.feedback.release import load_release
    from churnsense.feedback.score import score_feedback_batch
    from churnsense.feedback.train import build_net, write_feedback_release

    cfg = _release_cfg(tiny_encoder, tmp_path, int8_max_f1_drop=limit, embeddings="int8")
    dev = dev_set().groupby("language").head(3).reset_index(drop=True)
    (tmp_path / "rel").mkdir()
    result = write_feedback_release(
        tmp_path / "rel",
        build_net(cfg.model).eval(),
        cfg,
        dev,
        TextTokenizer.from_file(tiny_encoder / "tokenizer.json", 32),
        {},
    )
    meta = json.loads((tmp_path / "rel" / "metadata.json").read_text())
    models = sorted(p.name for p in (tmp_path / "rel").glob("*.onnx"))
    assert meta["serve_model"] == served and models == [served]  # rejected candidates and the export removed
    tried = [c["file"] for c in meta["serving_candidates"]]
    assert tried == (["model.int8.onnx"] if limit > 0 else ["model.int8.onnx", "model.fp32.onnx"])
    assert all(
        c["accepted"] == (limit > 0) and set(c["drop_by_batch_size"]) == {"1", "64"} for c in meta["serving_candidates"]
    )
    assert result["export/int8_accepted"] == float(limit > 0) and result["export/serve_model_mb"] > 0
    assert meta["session"]["disabled_optimizers"] == ["SkipLayerNormFusion"]
    assert [c["reduce_range"] for c in meta["serving_candidates"]] == [True, None][: len(tried)]
    assert isinstance(meta["gated_on_cpu_saturating_int8"], bool)
    scored, _ = score_feedback_batch(dev[["text"]], load_release(tmp_path / "rel"))
    assert len(scored) == len(dev) and scored["sentiment"].notna().all()
