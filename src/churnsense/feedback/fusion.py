"""Serving-graph fusions for the exported BERT encoder: self-attention -> com.microsoft.Attention, erf GELU ->
com.microsoft.Gelu. Exact rewrites (checked by a parity test); onnxruntime's own optimiser does not recognise the
attention the dynamo exporter writes, and the unfused attention and GELU cost about as much as the int8 MatMuls."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from churnsense.feedback.graph_edit import (
    MS_DOMAIN,
    GraphIndex,
    Linear,
    add_initializer,
    ensure_ms_domain,
    replace_nodes,
)

MASK_INT32 = "attention_mask_int32"


def fuse_attention(model: onnx.ModelProto, num_heads: int, mask_input: str = "attention_mask") -> int:
    """Replace every self-attention block (three square projections of one input, scores, softmax, context) by
    one `Attention` node with packed QKV weights and the raw padding mask; returns how many were fused."""
    idx = GraphIndex(model)
    linears = idx.linears()
    by_input: dict[str, list[Linear]] = {}
    for lin in linears:
        by_input.setdefault(lin.x, []).append(lin)
    stop = {lin.matmul.name for lin in linears}
    replaced: dict[str, onnx.NodeProto] = {}
    for x, group in by_input.items():
        block = _attention_block(idx, group, stop)
        if block is None:
            continue
        (q, k, v), context = block
        w = np.concatenate([idx.array(p.weight) for p in (q, k, v)], axis=1).astype(np.float32)
        b = np.concatenate([idx.array(p.bias) for p in (q, k, v)]).astype(np.float32)
        n = len(replaced)
        inputs = [
            x,
            add_initializer(model, f"attention_{n}_qkv_weight", w),
            add_initializer(model, f"attention_{n}_qkv_bias", b),
            MASK_INT32,
        ]
        replaced[context] = helper.make_node(
            "Attention", inputs, [context], name=f"attention_{n}", domain=MS_DOMAIN, num_heads=int(num_heads)
        )
    if not replaced:
        return 0
    cast = helper.make_node("Cast", [mask_input], [MASK_INT32], name="attention_mask_to_int32", to=TensorProto.INT32)
    nodes = [cast] + [replaced.get(n.output[0], n) if len(n.output) == 1 else n for n in model.graph.node]
    replace_nodes(model, nodes)
    ensure_ms_domain(model)
    return len(replaced)


def _attention_block(idx: GraphIndex, group: list[Linear], stop: set[str]):
    """((q, k, v), context tensor) when `group` is the input side of one self-attention, else None."""
    if len(group) != 3 or any(len(set(idx.inits[p.weight].dims)) != 1 for p in group):
        return None
    reach = [idx.downstream(p.y, stop) for p in group]
    targets = {tuple(n.name for n in hits) for _, hits in reach}
    if len(targets) != 1 or len(reach[0][1]) != 1:
        return None  # the three branches must meet in one output projection
    softmax = {n.name for n in idx.graph.node if n.op_type == "Softmax"}
    via_softmax = [bool(softmax & seen) for seen, _ in reach]
    if sorted(via_softmax) != [False, True, True]:
        return None
    v = group[via_softmax.index(False)]
    q_or_k = [(p, seen) for p, (seen, _) in zip(group, reach) if p is not v]
    shared = q_or_k[0][1] & q_or_k[1][1]
    scores = [n for n in idx.graph.node if n.name in shared and n.op_type == "MatMul" and n.name not in stop]
    if not scores:
        return None
    first = idx.producer.get(scores[0].input[0])
    q, k = (
        (q_or_k[0][0], q_or_k[1][0])
        if first is not None and (first.name in q_or_k[0][1] or first is q_or_k[0][0].add)
        else (q_or_k[1][0], q_or_k[0][0])
    )
    return (q, k, v), reach[0][1][0].input[0]


def fuse_gelu(model: onnx.ModelProto) -> int:
    """Replace `x * (0.5 * (erf(x / sqrt(2)) + 1))` (the exported exact GELU) by one `Gelu`; returns the count."""
    idx = GraphIndex(model)
    replaced, dead = {}, set()
    for erf in (n for n in model.graph.node if n.op_type == "Erf"):
        div = idx.producer.get(erf.input[0])
        if (
            div is None
            or div.op_type != "Div"
            or not idx.is_scalar(div.input[1], 2**0.5)
            or idx.only_consumer(div.output[0], "Erf") is not erf
        ):
            continue
        x = div.input[0]
        add = idx.only_consumer(erf.output[0], "Add")
        half = add and idx.only_consumer(add.output[0], "Mul")
        out = half and idx.only_consumer(half.output[0], "Mul")
        if not (
            out
            and any(idx.is_scalar(i, 1.0) for i in add.input)
            and any(idx.is_scalar(i, 0.5) for i in half.input)
            and x in out.input
        ):
            continue
        replaced[out.name] = helper.make_node("Gelu", [x], list(out.output), name=f"{erf.name}_gelu", domain=MS_DOMAIN)
        dead |= {div.name, erf.name, add.name, half.name}
    if replaced:
        replace_nodes(model, [replaced.get(n.name, n) for n in model.graph.node if n.name not in dead])
        ensure_ms_domain(model)
    return len(replaced)
