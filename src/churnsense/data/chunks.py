"""One chunk of an input file made ready for partitioned scoring, in whichever process does it (`core.pool`):
validated (canonical rows + rejects), grouped by customer partition, with what the run counts (valid history
rows per day, rejected customer ids). Rows travel between processes as Arrow IPC, not pickled objects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from churnsense.core.io import as_frame, from_ipc, to_ipc
from churnsense.core.partition import arrow_table, by_partition
from churnsense.data.contract import TableSpec
from churnsense.data.framing import history_days
from churnsense.data.validation import Kind, validate_chunk


@dataclass
class ChunkTask:
    """A chunk of input rows to prepare: `rows` is `to_ipc` of the raw chunk read by `core.io.iter_tables`."""

    kind: Kind
    table: TableSpec
    source: str
    first_row: int
    rows: pa.Buffer
    partitions: int


@dataclass
class PreparedChunk:
    """A prepared chunk: its valid rows grouped by partition (`to_ipc`; `bounds` as in `by_partition`, None when
    there are none), its rejects, valid history rows per day (None without timestamps) and rejected customer ids
    (customers only)."""

    kind: Kind
    rows: int
    valid: pa.Buffer
    bounds: np.ndarray | None
    rejects: pd.DataFrame
    days: pd.Series | None = None
    rejected_ids: list = field(default_factory=list)
    cpu: float = 0.0  # CPU seconds the preparing process spent on it

    def valid_rows(self) -> pa.Table:
        return from_ipc(self.valid)


def prepare_chunk(task: ChunkTask) -> PreparedChunk:
    """Validate one chunk (`validate_chunk`) and group its valid rows by partition."""
    started = time.process_time()
    chunk = as_frame(from_ipc(task.rows))
    valid, rejects = validate_chunk(chunk, task.table, task.kind, task.source, task.first_row)
    table, bounds = arrow_table(valid), None
    if len(valid):
        table, bounds = by_partition(table, valid["customer_id"], task.partitions)
    return PreparedChunk(
        kind=task.kind,
        rows=len(chunk),
        valid=to_ipc(table),
        bounds=bounds,
        rejects=rejects,
        days=history_days(valid) if "ts" in valid and len(valid) else None,
        rejected_ids=rejects["customer_id"].dropna().tolist() if task.kind == "customers" else [],
        cpu=time.process_time() - started,
    )
