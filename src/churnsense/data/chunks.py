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
    valid: pa.Buffer | None
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
    table, done = prepare_rows(from_ipc(task.rows), task.kind, task.table, task.source, task.first_row, task.partitions)
    done.valid, done.cpu = to_ipc(table), time.process_time() - started
    return done


def prepare_rows(
    rows: pa.Table, kind: Kind, spec: TableSpec, source: str, first_row: int, partitions: int
) -> tuple[pa.Table, PreparedChunk]:
    """`prepare_chunk` of consecutive raw rows (as `core.io.iter_tables` reads them) starting at data row
    `first_row`: (the valid rows grouped by partition, the chunk's rejects and counts without them)."""
    chunk = as_frame(rows)
    valid, rejects = validate_chunk(chunk, spec, kind, source, first_row)
    table, bounds = arrow_table(valid), None
    if len(valid):
        table, bounds = by_partition(table, valid["customer_id"], partitions)
    done = PreparedChunk(
        kind=kind,
        rows=len(chunk),
        valid=None,
        bounds=bounds,
        rejects=rejects,
        days=history_days(valid) if "ts" in valid and len(valid) else None,
        rejected_ids=rejects["customer_id"].dropna().tolist() if kind == "customers" else [],
    )
    return table, done
