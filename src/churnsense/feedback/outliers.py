"""Exact fp32 rewrites that tame activation outliers before dynamic int8 quantisation.

Dynamic int8 quantises each MatMul input with one range per tensor, so a few huge channels (LayerNorm outputs of
e5 reach 20-44 where most channels stay below 2; GELU outputs reach 30-70) leave a handful of levels for the rest:
- `smooth_inputs`: SmoothQuant, x @ W = (x / s) @ (s W) per input channel, for inputs consumed by projections;
- `split_ffn_outliers`: the k GELU channels with the largest calibration range go through a small fp32
  up/GELU/down path beside the int8 one, so the int8 down-projection never sees them.
Both leave the fp32 function unchanged (up to rounding); channel statistics come from calibration texts.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from churnsense.feedback.graph_edit import GraphIndex, Linear, add_initializer, replace_nodes

WEIGHT_CONSUMERS = ("MatMul", "Attention")


def activation_absmax(
    model: onnx.ModelProto, tensors: list[str], feeds: list[dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |value| of `tensors` over the calibration `feeds`."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    amax: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, value in zip(tensors, sess.run(tensors, feed)):
            cur = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            amax[name] = np.maximum(amax[name], cur) if name in amax else cur
    return amax


def smoothing_targets(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """LayerNorm outputs -> the projections (MatMul / Attention on a constant weight) that read them."""
    idx = GraphIndex(model)
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        if n.op_type != "LayerNormalization":
            continue
        users = [
            u
            for u in idx.consumers[n.output[0]]
            if u.op_type in WEIGHT_CONSUMERS and u.input[0] == n.output[0] and u.input[1] in idx.inits
        ]
        if users:
            out[n.output[0]] = users
    return out


def smooth_inputs(model: onnx.ModelProto, amax: dict[str, np.ndarray], alpha: float) -> int:
    """Divide each LayerNorm-fed projection input by s = amax^alpha / wmax^(1-alpha) (per channel) and fold s into
    the weight rows; a Mul node per input, the residual path keeps the raw tensor. Returns inputs smoothed."""
    targets = smoothing_targets(model)
    idx = GraphIndex(model)
    muls = {}
    for x, users in targets.items():
        weights = {u.input[1]: idx.array(u.input[1]) for u in users}
        wmax = np.max([np.abs(w).max(axis=1) for w in weights.values()], axis=0)
        s = (np.maximum(amax[x], 1e-5) ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha)).astype(np.float32)
        for name, w in weights.items():
            add_initializer(model, name, (w * s[:, None]).astype(np.float32))
        inv = add_initializer(model, f"{x}_smooth_inv", (1.0 / s).astype(np.float32))
        muls[x] = helper.make_node("Mul", [x, inv], [f"{x}_smooth"], name=f"{x}_smooth_mul")
        for u in users:
            u.input[0] = f"{x}_smooth"
    nodes = []
    for n in model.graph.node:
        nodes.append(n)
        nodes.extend(muls[o] for o in n.output if o in muls)
    replace_nodes(model, nodes)
    return len(muls)


def ffn_blocks(model: onnx.ModelProto) -> list[tuple[Linear, onnx.NodeProto, Linear]]:
    """(up projection, Gelu, down projection) triples whose GELU output only feeds the down projection."""
    idx = GraphIndex(model)
    by_matmul = {lin.matmul.name: lin for lin in idx.linears()}
    out = []
    for up in by_matmul.values():
        gelu = idx.only_consumer(up.y, "Gelu")
        down = gelu and idx.only_consumer(gelu.output[0], "MatMul")
        if down is not None and down.name in by_matmul:
            out.append((up, gelu, by_matmul[down.name]))
    return out


def split_ffn_outliers(model: onnx.ModelProto, amax: dict[str, np.ndarray], k: int) -> list[str]:
    """Move the `k` GELU channels with the largest calibration range of every FFN to an fp32 side path.
    Returns the names of the side-path MatMuls (to keep out of quantisation)."""
    idx = GraphIndex(model)
    fp32, edits = [], {}
    for up, gelu, down in ffn_blocks(model):
        width = idx.inits[up.weight].dims[1]
        if not 0 < k < width:
            continue
        hot = np.sort(np.argsort(amax[gelu.output[0]])[-k:])
        cold = np.setdiff1d(np.arange(width), hot)
        w_up, b_up, w_down = idx.array(up.weight), idx.array(up.bias), idx.array(down.weight)
        p = up.matmul.name
        for part, cols in (("cold", cold), ("hot", hot)):
            add_initializer(model, f"{p}_{part}_w_up", np.ascontiguousarray(w_up[:, cols]))
            add_initializer(model, f"{p}_{part}_b_up", b_up[cols])
            add_initializer(model, f"{p}_{part}_w_down", np.ascontiguousarray(w_down[cols]))
        nodes = []
        for part in ("cold", "hot"):
            nodes += [
                helper.make_node("MatMul", [up.x, f"{p}_{part}_w_up"], [f"{p}_{part}_u"], name=f"{p}_{part}_up"),
                helper.make_node(
                    "Add", [f"{p}_{part}_u", f"{p}_{part}_b_up"], [f"{p}_{part}_ub"], name=f"{p}_{part}_up_bias"
                ),
                helper.make_node(
                    "Gelu", [f"{p}_{part}_ub"], [f"{p}_{part}_g"], name=f"{p}_{part}_gelu", domain=gelu.domain
                ),
                helper.make_node(
                    "MatMul", [f"{p}_{part}_g", f"{p}_{part}_w_down"], [f"{p}_{part}_d"], name=f"{p}_{part}_down"
                ),
            ]
        nodes += [
            helper.make_node("Add", [f"{p}_cold_d", down.bias], [f"{p}_cold_db"], name=f"{p}_down_bias"),
            helper.make_node("Add", [f"{p}_cold_db", f"{p}_hot_d"], [down.y], name=f"{p}_down_sum"),
        ]
        edits[down.add.name] = nodes
        fp32 += [f"{p}_hot_up", f"{p}_hot_down"]
    replace_nodes(model, [m for n in model.graph.node for m in edits.get(n.name, [n])])
    return fp32
