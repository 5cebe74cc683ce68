"""onnxruntime CPU sessions for the feedback release (no torch)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort


def session(path: str | Path | bytes, threads: int = 0, disabled_optimizers: Sequence[str] = (),
            allow_spinning: bool = True):
    """An onnxruntime CPU session on a model file or serialised model (`threads` 0 = library default);
    `disabled_optimizers` names onnxruntime graph rewrites to skip, `allow_spinning` False makes idle intra-op
    threads sleep instead of busy-waiting."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(disabled_optimizers))
