"""ONNX Runtime sessions for serving (no torch, no Lightning): the one place a session is built."""
from __future__ import annotations

import os

import onnxruntime as ort


def onnx_session(path: str | os.PathLike, threads: int = 0) -> ort.InferenceSession:
    """A CPU inference session; `threads` = intra-op threads (0 = the library default), one inter-op thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or 0)
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def output_names(session: ort.InferenceSession) -> list[str]:
    return [o.name for o in session.get_outputs()]


def input_names(session: ort.InferenceSession) -> list[str]:
    return [i.name for i in session.get_inputs()]
