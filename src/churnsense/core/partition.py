"""Hash-partition tables by customer id into temporary Arrow IPC files, in one streaming pass per input.

Events are not sorted by customer, so scoring a customer needs all of its rows in memory at once. Writing every
table to K partitions by `hash(customer_id) % K` puts each customer's rows (from every table) in the same
partition, so scoring partition by partition needs memory of about one partition, whatever the file size.
Each process that prepares chunks writes its own files (`PartitionWriter`), so rows never travel back to one
writer; a partition is the rows of all of them, put back in input order by their row number (`PartitionFiles`).
Partition files are Arrow IPC (LZ4-compressed record batches), not Parquet: an open IPC writer holds no column
encoders, so the K x tables writers open during the pass cost almost no memory (Parquet writers held megabytes
each), and reading a partition back is a copy, not a decode.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from churnsense.core.io import table_format

ROW = "_row"  # 1-based data-row number in the source file, carried through partitioning for the rejects file
TARGET_PARTITION_BYTES = 64 << 20  # about this much input (CSV bytes; Parquet counted 4x) per partition
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
MAX_PARTITIONS = 256  # x3 tables open writers; stays under the usual 1024 file limit
BUFFER_BYTES = 96 << 20  # bytes of a table held back per writer (over all its partitions) to write large batches


def choose_partitions(paths: list[str | os.PathLike], requested: int = 0, workers: int = 1) -> int:
    """`requested` if > 0, else enough partitions for about TARGET_PARTITION_BYTES of input each, divided among
    `workers` processes that each hold one partition at a time (the memory held at once stays the same)."""
    if requested > 0:
        return int(requested)
    size = sum(Path(p).stat().st_size * (4 if table_format(p) == "parquet" else 1) for p in paths if p)
    return max(1, min(MAX_PARTITIONS, math.ceil(size * max(1, workers) / TARGET_PARTITION_BYTES)))


def partition_of(ids: pd.Series, k: int) -> np.ndarray:
    """Stable partition index in [0, k) of each customer id (same id -> same partition in every table): a hash
    of the id's text, computed once per distinct id."""
    if k == 1:
        return np.zeros(len(ids), dtype=np.int64)
    codes, uniques = pd.factorize(ids, use_na_sentinel=False)
    text = pd.Series(uniques).astype(str).to_numpy(dtype=object)
    hashed = pd.util.hash_array(text, categorize=False)
    return (hashed % np.uint64(k)).astype(np.int64)[codes]


def by_partition(table: pa.Table, ids: pd.Series, k: int) -> tuple[pa.Table, np.ndarray]:
    """`table`'s rows grouped by partition (their order kept within each) and the bounds: the rows of partition
    p are `[bounds[p], bounds[p + 1])`. `ids`: the customer id of each row."""
    parts = partition_of(ids, k)
    order = np.argsort(parts, kind="stable")
    return table.take(order), np.searchsorted(parts[order], np.arange(k + 1))


def arrow_table(frame: pd.DataFrame) -> pa.Table:
    """A frame as the Arrow table a partition file holds (no pandas metadata)."""
    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)


def grouped_slices(table: pa.Table, bounds: np.ndarray) -> Iterator[tuple[int, pa.Table]]:
    """`(partition, its rows)` of a table grouped by `by_partition`, for the partitions that have rows."""
    for part in range(len(bounds) - 1):
        lo, hi = int(bounds[part]), int(bounds[part + 1])
        if hi > lo:
            yield part, table.slice(lo, hi - lo)


class PartitionBuffer:
    """Grouped tables (`by_partition`) held back until about `BUFFER_BYTES` are pending, then released together:
    each partition's rows leave as one batch, in arrival order. A chunk spread over many partitions would otherwise
    make many tiny batches, each costly to write, send and read back. Holding whole tables, not per-partition
    slices, keeps the memory held what it is counted as: a slice held back would keep its whole table alive until
    every other slice of it had left. Counted in bytes, so wide rows (customers with many attributes, feedback
    texts) leave as often as they fill memory."""

    def __init__(self) -> None:
        self._held: list[tuple[Any, pa.Table, np.ndarray]] = []
        self._bytes = 0

    def add_grouped(self, table: pa.Table, bounds: np.ndarray, tag: Any = None) -> Iterator[tuple[int, list[Any]]]:
        """Hold `table`, grouped by partition (`bounds`); once enough is held, yields `(partition, items)` of every
        partition with rows: its slices in arrival order (`(tag, slice)` each when `tag` is given)."""
        self._held.append((tag, table, bounds))
        self._bytes += table.nbytes
        if self._bytes >= BUFFER_BYTES:
            yield from self.drain()

    def drain(self) -> Iterator[tuple[int, list[Any]]]:
        """`(partition, items)` of everything still held, emptying the buffer."""
        held, self._held, self._bytes = self._held, [], 0
        items: dict[int, list[Any]] = {}
        for tag, table, bounds in held:
            for part, rows in grouped_slices(table, bounds):
                items.setdefault(part, []).append(rows if tag is None else (tag, rows))
        yield from sorted(items.items())


def partition_path(directory: Path, name: str, part: int) -> Path:
    """The file of partition `part` of a writer named `name`."""
    return Path(directory) / f"{name}-{part:04d}.arrow"


@dataclass(frozen=True)
class PartitionFiles:
    """The partition files of one table, from one or more writers (`<directory>/<name>-<part>.arrow` per name):
    what a scoring process needs to read a partition back (picklable). `schema`: the columns of the table (the
    writers' schemas unified), None when no writer saw a chunk."""

    directory: Path
    names: tuple[str, ...]
    schema: pa.Schema | None

    @classmethod
    def combine(cls, directory: Path, parts: list[PartitionFiles]) -> PartitionFiles:
        """The files of several writers of the same table as one."""
        schemas = [p.schema for p in parts if p.schema is not None]
        schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else None
        return cls(Path(directory), tuple(sorted(n for p in parts for n in p.names)), schema)

    def path(self, name: str, part: int) -> Path:
        return partition_path(self.directory, name, part)

    def read(self, part: int, consume: bool = False) -> pd.DataFrame:
        """The rows of one partition, in input order (an empty frame with the table's columns if none landed
        there). Each writer's file is in input order; rows of several are merged by their row number. `consume`:
        the partition's files are deleted once read (a run that reads each partition once frees its disk as it
        goes, instead of in one long removal at the end)."""
        tables = []
        for name in self.names:
            path = self.path(name, part)
            if path.is_file():
                with pa.memory_map(str(path)) as source:
                    tables.append(pa.ipc.open_file(source).read_all())
                if consume:
                    path.unlink()  # the mapped pages stay readable until the table is released
        if not tables:
            if self.schema is not None:
                return self.schema.empty_table().to_pandas()
            return pd.DataFrame({"customer_id": pd.Series(dtype=object), ROW: pd.Series(dtype="int64")})
        if len(tables) == 1:
            return tables[0].to_pandas()
        table = pa.concat_tables(tables, promote_options="permissive")
        order = np.argsort(table[ROW].to_numpy(), kind="stable")  # sorted runs: one merge pass
        return table.take(order).to_pandas()


class PartitionWriter:
    """Appends frames of one table to `<dir>/<name>-<k>.arrow`, one open Arrow IPC writer per partition.

    The schema is fixed by the first frame; later frames are cast to it (all-null columns typed as strings). Rows
    are held back (`PartitionBuffer`) and written as one record batch per flush; `close` writes the rest.
    """

    def __init__(self, directory: Path, name: str, k: int) -> None:
        self.directory, self.name, self.k = Path(directory), name, k
        self.schema: pa.Schema | None = None
        self._writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        self._buffer = PartitionBuffer()  # rows not written yet

    def path(self, part: int) -> Path:
        return partition_path(self.directory, self.name, part)

    def files(self) -> PartitionFiles:
        """What reads this writer's partitions back (after `close`)."""
        return PartitionFiles(self.directory, (self.name,), self.schema)

    def write(self, frame: pd.DataFrame) -> None:
        """Append `frame`'s rows to their partitions; the first frame (even an empty one) fixes the columns, so a
        table without valid rows still reads back with them."""
        table = arrow_table(frame)
        self.write_grouped(*by_partition(table, frame["customer_id"], self.k) if len(frame) else (table, None))

    def write_grouped(self, table: pa.Table, bounds: np.ndarray | None) -> None:
        """Append rows already grouped by partition (`by_partition`); the first table fixes the columns."""
        if self.schema is None:
            self.schema = pa.schema(
                [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
            )
        if table.num_rows == 0:
            return
        table = table.select(self.schema.names).cast(self.schema)
        for part, full in self._buffer.add_grouped(table, bounds):
            self._write(part, full)

    def _write(self, part: int, rows: list[pa.Table]) -> None:
        """Write rows of partition `part` as one record batch."""
        if part not in self._writers:
            self._writers[part] = pa.ipc.new_file(self.path(part), self.schema, options=IPC_OPTIONS)
        self._writers[part].write_table(pa.concat_tables(rows).combine_chunks())

    def close(self) -> None:
        for part, rows in self._buffer.drain():
            self._write(part, rows)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
