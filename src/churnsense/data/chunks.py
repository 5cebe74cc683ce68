"""One chunk of an input file made ready for partitioned scoring, in whichever process does it (`core.pool`):
validated (canonical rows + rejects), grouped by customer partition and appended to that process's partition
files, with what the run counts (valid history rows per day, rejected customer ids). Raw rows travel to the
worker as Arrow IPC; valid rows never travel back: each worker writes its own partition files
(`core.partition.PartitionWriter`), closed at the end of the pass by `close_partition_files` in every worker, and
a partition is read back from all of them in file order (`core.partition.PartitionFiles`).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from churnsense.core.io import as_frame, from_ipc, iter_row_group
from churnsense.core.partition import PartitionFiles, PartitionWriter, arrow_table, by_partition
from churnsense.data.contract import TableSpec
from churnsense.data.framing import add_days, history_days
from churnsense.data.validation import Kind, validate_chunk


@dataclass
class ChunkTask:
    """Input rows to prepare: `rows`, `to_ipc` of a raw chunk read by `core.io.iter_tables`, or (when `rows` is
    None) row group `row_group` of the Parquet file `source`, read by the preparing process itself in chunks of
    `chunk_rows` (`columns` only). Valid rows go to that process's partition files of `kind` in `directory`."""

    kind: Kind
    table: TableSpec
    source: str
    first_row: int
    rows: pa.Buffer | None
    partitions: int
    directory: str
    row_group: int = -1
    chunk_rows: int = 0
    columns: list[str] | None = None

    def raw_chunks(self) -> Iterator[tuple[int, pa.Table]]:
        """`(first data row, raw rows)` of this task's input."""
        if self.rows is not None:
            yield self.first_row, from_ipc(self.rows)
        else:
            yield from iter_row_group(self.source, self.row_group, self.first_row, self.chunk_rows, self.columns)


@dataclass
class PreparedChunk:
    """What a prepared chunk leaves for the run: the partition bounds of its valid rows (as in `by_partition`,
    None when there are none), its rejects, valid history rows per day (None without timestamps) and rejected
    customer ids (customers only)."""

    kind: Kind
    rows: int
    bounds: np.ndarray | None
    rejects: pd.DataFrame
    days: pd.Series | None = None
    rejected_ids: list = field(default_factory=list)
    cpu: float = 0.0  # CPU seconds the preparing process spent on it

    @classmethod
    def merge(cls, kind: Kind, parts: list[PreparedChunk]) -> PreparedChunk:
        """Consecutive prepared chunks as one (their bounds dropped: the rows are already written)."""
        return cls(
            kind=kind,
            rows=sum(p.rows for p in parts),
            bounds=None,
            rejects=pd.concat([p.rejects for p in parts if len(p.rejects)] or [parts[0].rejects], ignore_index=True),
            days=functools.reduce(add_days, (p.days for p in parts), None),
            rejected_ids=[i for p in parts for i in p.rejected_ids],
        )


_WRITERS: dict[tuple[str, str], PartitionWriter] = {}  # this process's open partition files: (directory, kind)


def prepare_chunk(task: ChunkTask) -> PreparedChunk:
    """Validate a task's rows chunk by chunk (`validate_chunk`), group the valid rows by partition and append them
    to this process's partition files of the task's kind; returns what the run counts, over all its chunks."""
    started = time.process_time()
    key = (task.directory, task.kind)
    if key not in _WRITERS:  # one writer per process and table: file names carry the process id
        _WRITERS[key] = PartitionWriter(Path(task.directory), f"{task.kind}-{os.getpid()}", task.partitions)
    parts = []
    for first_row, raw in task.raw_chunks():
        table, done = prepare_rows(raw, task.kind, task.table, task.source, first_row, task.partitions)
        _WRITERS[key].write_grouped(table, done.bounds)
        parts.append(done)
    done = parts[0] if len(parts) == 1 else PreparedChunk.merge(task.kind, parts)
    done.cpu = time.process_time() - started
    return done


def close_partition_files(directory: str) -> dict[str, PartitionFiles]:
    """Close this process's partition writers of `directory`: the files of each table kind it wrote (run in
    every worker at the end of the pass, and in this process after a failed one)."""
    closed = {}
    for key in [key for key in _WRITERS if key[0] == directory]:
        writer = _WRITERS.pop(key)
        writer.close()
        closed[key[1]] = writer.files()
    return closed


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
        bounds=bounds,
        rejects=rejects,
        days=history_days(valid) if "ts" in valid and len(valid) else None,
        rejected_ids=rejects["customer_id"].dropna().tolist() if kind == "customers" else [],
    )
    return table, done
