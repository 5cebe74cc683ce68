"""Smaller / faster serving graphs from the exported fp32 feedback model.

`build_serving_model` = fuse attention and GELU (exact) -> [int8: smooth LayerNorm-fed inputs, split FFN outlier
channels (exact), dynamic int8 with per-channel weights on the projections] -> compact token-embedding storage.
The fp32 rewrites are parity-checked against the export; whether a candidate may serve is decided by the dev-set
gate in `serving_candidates`, through the same `load_release` path that serving uses.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from churnsense.feedback.fusion import fuse_attention, fuse_gelu
from churnsense.feedback.graph_edit import add_initializer, replace_nodes
from churnsense.feedback.outliers import (
    activation_absmax,
    ffn_blocks,
    smooth_inputs,
    smoothing_targets,
    split_ffn_outliers,
)
from churnsense.feedback.tokenize import TextTokenizer, length_buckets

EMBEDDING_DTYPES = ("float32", "float16", "int8")


class ServingGraphError(RuntimeError):
    """A rewritten fp32 serving graph disagrees with the export: it must not be released."""


@dataclass(frozen=True)
class Int8Recipe:
    """Knobs of the int8 serving graph (conf/feedback/*.yaml `export.quantize`)."""

    fuse_attention: bool
    fuse_gelu: bool
    per_channel: bool
    reduce_range: bool
    smooth_alpha: float | None
    ffn_outlier_channels: int
    calibration_texts: int
    calibration_seed: int
    parity_atol: float


def calibration_feeds(tokenizer: TextTokenizer, texts: list[str], batch_size: int) -> list[dict[str, np.ndarray]]:
    """Padded batches of `texts` cut as serving cuts them (length buckets of `batch_size`)."""
    enc = tokenizer.encode(texts)
    lengths = np.array([len(r) for r in enc.ids])
    return [tokenizer.pad([enc.ids[i] for i in rows]) for rows in length_buckets(lengths, batch_size)]


def build_serving_model(
    src: str | Path,
    dst: str | Path,
    *,
    num_heads: int,
    int8: bool,
    embeddings: str,
    recipe: Int8Recipe,
    feeds: list[dict[str, np.ndarray]],
) -> Path:
    """Write the serving graph of the exported model `src` to `dst`; `feeds` = calibration batches (never dev)."""
    if embeddings not in EMBEDDING_DTYPES:
        raise ValueError(f"export.embeddings={embeddings!r}: expected one of {EMBEDDING_DTYPES}")
    reference = onnx.load(str(src))
    model = onnx.ModelProto()
    model.CopyFrom(reference)
    if recipe.fuse_attention:
        fuse_attention(model, num_heads)
    if recipe.fuse_gelu:
        fuse_gelu(model)
    keep_fp32: list[str] = []
    if int8:
        keep_fp32 = _tame_outliers(model, recipe, feeds)
    check_graph_parity(reference, model, feeds, recipe.parity_atol)
    if int8:
        model = quantize_projections(model, recipe.per_channel, keep_fp32, recipe.reduce_range)
    compact_embeddings(model, embeddings)
    dst = Path(dst)
    onnx.save(model, str(dst))
    return dst


def _tame_outliers(model: onnx.ModelProto, recipe: Int8Recipe, feeds: list[dict[str, np.ndarray]]) -> list[str]:
    """Smoothing + FFN split from one calibration pass; returns the fp32 side-path MatMuls."""
    tensors = list(smoothing_targets(model)) if recipe.smooth_alpha is not None else []
    tensors += [gelu.output[0] for _, gelu, _ in ffn_blocks(model)] if recipe.ffn_outlier_channels else []
    amax = activation_absmax(model, tensors, feeds) if tensors else {}
    if recipe.smooth_alpha is not None:
        smooth_inputs(model, amax, float(recipe.smooth_alpha))
    return split_ffn_outliers(model, amax, int(recipe.ffn_outlier_channels)) if recipe.ffn_outlier_channels else []


def check_graph_parity(
    reference: onnx.ModelProto, model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], atol: float
) -> float:
    """Max |difference| of all outputs over `feeds`; ServingGraphError beyond `atol`."""
    ref, new = (
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (reference, model)
    )
    worst = 0.0
    for feed in feeds:
        for a, b in zip(ref.run(None, feed), new.run(None, feed)):
            worst = max(worst, float(np.abs(a - b).max()))
    if not worst <= atol:
        raise ServingGraphError(f"rewritten serving graph differs from the export by {worst:.2e} > {atol:.0e}")
    return worst


def quantize_projections(
    model: onnx.ModelProto, per_channel: bool, exclude: list[str], reduce_range: bool = True
) -> onnx.ModelProto:
    """Dynamic int8 (uint8 activations per tensor, int8 weights) of every MatMul / Attention on a constant weight,
    except `exclude`; heads (Gemm) and embeddings stay float. `reduce_range`: 7-bit weights, whose products the
    int8 kernels of every x86 CPU sum exactly (without VNNI, full-range weights saturate in int16:
    `core.runtime.int8_weights_saturate`), so the graph computes the same on the CPU that gated it and on any other."""
    consts = {i.name for i in model.graph.initializer}
    chosen = [
        n.name
        for n in model.graph.node
        if n.op_type in ("MatMul", "Attention") and n.input[1] in consts and n.name not in exclude
    ]  # named up front: onnxruntime turns the heads' Gemms into MatMuls of new names, which stay float
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "int8.onnx"
        quantize_dynamic(
            model,
            out,
            op_types_to_quantize=["MatMul", "Attention"],
            nodes_to_quantize=chosen,
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            reduce_range=reduce_range,
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": TensorProto.FLOAT},
        )
        return onnx.load(str(out))


def compact_embeddings(model: onnx.ModelProto, dtype: str, ids_input: str = "input_ids") -> int:
    """Store the token-embedding tables (Gathers indexed by `ids_input`) as float16, or int8 with one scale per
    row; the gathered rows are cast back to float32. Returns the number of tables converted."""
    if dtype == "float32":
        return 0
    inits = {i.name: i for i in model.graph.initializer}
    done, nodes = 0, []
    for n in model.graph.node:
        if n.op_type != "Gather" or n.input[1] != ids_input or n.input[0] not in inits:
            nodes.append(n)
            continue
        table = onnx.numpy_helper.to_array(inits[n.input[0]]).astype(np.float32)
        nodes += _compact_gather(model, n, table, dtype)
        done += 1
    replace_nodes(model, nodes)
    return done


def _compact_gather(
    model: onnx.ModelProto, gather: onnx.NodeProto, table: np.ndarray, dtype: str
) -> list[onnx.NodeProto]:
    name, ids, out = gather.input[0], gather.input[1], gather.output[0]
    cast = helper.make_node(
        "Cast",
        [f"{name}_rows"],
        [out] if dtype == "float16" else [f"{name}_rows_f"],
        name=f"{name}_cast",
        to=TensorProto.FLOAT,
    )
    if dtype == "float16":
        add_initializer(model, name, table.astype(np.float16))
        return [helper.make_node("Gather", [name, ids], [f"{name}_rows"], name=gather.name, axis=0), cast]
    scale = np.maximum(np.abs(table).max(axis=1, keepdims=True), 1e-12) / 127.0
    add_initializer(model, name, np.clip(np.round(table / scale), -127, 127).astype(np.int8))
    add_initializer(model, f"{name}_scale", scale.astype(np.float32))
    return [
        helper.make_node("Gather", [name, ids], [f"{name}_rows"], name=gather.name, axis=0),
        cast,
        helper.make_node("Gather", [f"{name}_scale", ids], [f"{name}_row_scale"], name=f"{name}_scale_rows", axis=0),
        helper.make_node("Mul", [f"{name}_rows_f", f"{name}_row_scale"], [out], name=f"{name}_dequant"),
    ]
