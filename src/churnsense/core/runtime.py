"""ONNX Runtime sessions for serving (no torch, no Lightning): the one place a session is built."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
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


X86_INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # u8 x s8 dot products summed in int32


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> set[str] | None:
    """The instruction-set flags of this CPU (Linux `/proc/cpuinfo`), None where they cannot be read."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def int8_weights_saturate(flags: set[str] | None) -> bool:
    """True on an x86 CPU whose int8 kernels multiply u8 activations by full-range s8 weights with AVX2/AVX-512
    `vpmaddubsw`, which adds pairs of products in int16 with saturation (255 * 127 * 2 > 32767): no VNNI/AMX.
    Weights quantised to 7 bits (`reduce_range`) stay exact there (255 * 64 * 2 <= 32767). Unknown CPU: False."""
    if not flags or "avx2" not in flags:
        return False
    return not any(f in flags for f in X86_INT8_DOT_FLAGS)


def output_names(session: ort.InferenceSession) -> list[str]:
    return [o.name for o in session.get_outputs()]


def input_names(session: ort.InferenceSession) -> list[str]:
    return [i.name for i in session.get_inputs()]


class RowParallelRunner:
    """Runs one session over a batch in row slices, `workers` slices at a time on a thread pool.

    ONNX Runtime spreads an op over its intra-op threads, which pays for wide ops but not for a recurrent net of
    small steps (a GRU over 64 events: two intra-op threads give ~1.3x one). Splitting the rows instead keeps every
    core busy for the whole graph: the session is built with one intra-op thread and `workers` slices run at once
    (`InferenceSession.run` is thread-safe and releases the GIL). A batch is cut into slices of
    `min(slice_rows, ceil(rows / workers))` rows, so a small batch still uses every worker; a batch of one row
    runs inline. `workers` 1 is a session with `threads` intra-op threads that runs the slices one after another:
    a single thread scores a batch of 1,024 rows ~1.2x faster as slices of 128 (the recurrent steps' activations
    stay in cache). `slice_rows` 0: one call per batch."""

    def __init__(
        self,
        path: str | os.PathLike | bytes,
        workers: int = 1,
        slice_rows: int = 128,
        threads: int = 0,
    ) -> None:
        self.workers = max(1, int(workers))
        self.slice_rows = max(0, int(slice_rows))
        self.session = onnx_session(path, 1 if self.workers > 1 else threads)
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

    @property
    def input_names(self) -> list[str]:
        return input_names(self.session)

    @property
    def output_names(self) -> list[str]:
        return output_names(self.session)

    def run(self, outputs: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """`session.run(outputs, feed)` with the rows of `feed` split over the workers; outputs concatenated in
        row order (every output must have the batch as its first axis)."""
        n = len(next(iter(feed.values()))) if feed else 0
        size = max(1, min(self.slice_rows or n, math.ceil(n / self.workers)))
        if n <= size:
            return self.session.run(list(outputs), dict(feed))
        starts = range(0, n, size)
        run = lambda lo: self.session.run(list(outputs), {k: v[lo : lo + size] for k, v in feed.items()})  # noqa: E731
        parts = list(map(run, starts) if self._pool is None else self._pool.map(run, starts))
        return [np.concatenate([p[i] for p in parts]) for i in range(len(outputs))]


def row_parallel_workers(threads: int) -> int:
    """Workers of a `RowParallelRunner` for `threads` (0 = every core this process may use)."""
    if threads > 0:
        return int(threads)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
