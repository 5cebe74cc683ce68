"""Small ONNX graph-editing toolkit used by the serving-graph fusions and the int8 recipe (onnx + numpy only)."""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

MS_DOMAIN = "com.microsoft"


@dataclass
class Linear:
    """`y = x @ W + b` as exported: a MatMul on a constant 2-D weight followed by an Add of a constant 1-D bias."""

    matmul: onnx.NodeProto
    add: onnx.NodeProto
    weight: str
    bias: str

    @property
    def x(self) -> str:
        return self.matmul.input[0]

    @property
    def y(self) -> str:
        return self.add.output[0]


class GraphIndex:
    """Producers, consumers and initialisers of a model's main graph (rebuild after editing the node list)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        for i, n in enumerate(self.graph.node):
            n.name = n.name or f"{n.op_type}_{i}"
        self.inits = {i.name: i for i in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in self.graph.node:
            for i in n.input:
                self.consumers[i].append(n)

    def array(self, name: str) -> np.ndarray | None:
        """The value of initialiser `name` (None when `name` is not a constant)."""
        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    def is_scalar(self, name: str, value: float, tol: float = 1e-4) -> bool:
        """Whether `name` is a constant holding a single value close to `value`."""
        arr = self.array(name)
        return arr is not None and arr.size == 1 and abs(float(arr.reshape(-1)[0]) - value) <= tol

    def only_consumer(self, tensor: str, op_type: str) -> onnx.NodeProto | None:
        """The single consumer of `tensor` if it is an `op_type` node, else None."""
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def linears(self) -> list[Linear]:
        """Every MatMul-on-constant-weight + bias-Add pair, in graph order."""
        out = []
        for n in self.graph.node:
            w = self.inits.get(n.input[1]) if n.op_type == "MatMul" else None
            add = self.only_consumer(n.output[0], "Add") if w is not None and len(w.dims) == 2 else None
            bias = [i for i in add.input if i in self.inits and len(self.inits[i].dims) == 1] if add else []
            if bias:
                out.append(Linear(n, add, n.input[1], bias[0]))
        return out

    def downstream(self, tensor: str, stop: set[str]) -> tuple[set[str], list[onnx.NodeProto]]:
        """Names of the nodes reachable from `tensor`, not walking past nodes named in `stop` (returned apart)."""
        seen: set[str] = set()
        hits: list[onnx.NodeProto] = []
        queue = deque([tensor])
        while queue:
            for n in self.consumers.get(queue.popleft(), []):
                if n.name in seen:
                    continue
                seen.add(n.name)
                if n.name in stop:
                    hits.append(n)
                else:
                    queue.extend(n.output)
        return seen, hits


def add_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> str:
    """Add (or replace) a constant; returns its name."""
    graph = model.graph
    for i, init in enumerate(graph.initializer):
        if init.name == name:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(value, name))
            return name
    graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def replace_nodes(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> None:
    """Set the node list, then drop dead nodes and unused constants and sort topologically."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept = []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            kept.append(n)
            needed.update(i for i in n.input if i)
    del graph.node[:]
    graph.node.extend(_topological(list(reversed(kept)), {i.name for i in graph.input} | _init_names(graph)))
    used = {i for n in graph.node for i in n.input}
    inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def ensure_ms_domain(model: onnx.ModelProto) -> None:
    """Declare the com.microsoft opset (contrib operators of onnxruntime)."""
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))


def _init_names(graph: onnx.GraphProto) -> set[str]:
    return {i.name for i in graph.initializer}


def _topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Kahn's order, stable with respect to the given order; raises on a cycle or a missing input."""
    ready, out, pending = set(available) | {""}, [], list(nodes)
    while pending:
        rest = [n for n in pending if not all(i in ready for i in n.input)]
        done = [n for n in pending if all(i in ready for i in n.input)]
        if not done:
            missing = sorted({i for n in rest for i in n.input if i not in ready})[:5]
            raise ValueError(f"graph edit left nodes with unavailable inputs, e.g. {missing}")
        for n in done:
            ready.update(n.output)
        out.extend(done)
        pending = rest
    return out
