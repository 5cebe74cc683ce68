"""ONNX Runtime sessions for serving (no torch, no Lightning): the one place a session is built."""

from __future__ import annotations

import os
from collections.abc import Sequence

import onnxruntime as ort


def onnx_session(
    path: str | os.PathLike | bytes,
    threads: int = 0,
    disabled_optimizers: Sequence[str] = (),
    allow_spinning: bool = True,
) -> ort.InferenceSession:
    """A CPU inference session on a model file or serialised model; `threads` = intra-op threads (0 = the library
    default), one inter-op thread; `disabled_optimizers` names onnxruntime graph rewrites to skip;
    `allow_spinning` False makes idle intra-op threads sleep instead of busy-waiting (friendlier to shared cores)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or 0)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(
        model, options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled_optimizers)
    )


def output_names(session: ort.InferenceSession) -> list[str]:
    return [o.name for o in session.get_outputs()]


def input_names(session: ort.InferenceSession) -> list[str]:
    return [i.name for i in session.get_inputs()]
