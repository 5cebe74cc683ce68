"""Hash-partition files: rows held back by size, every row written once and read back in input order (from one
writer or several), bounded reading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churnsense.core import io, partition
from churnsense.core.partition import PartitionBuffer, PartitionFiles, PartitionWriter, by_partition


def _table(n: int, width: int) -> pa.Table:
    return pa.table({"customer_id": [f"C{i % 50:03d}" for i in range(n)], "text": ["x" * width] * n})


def test_buffer_flushes_wide_rows_sooner_than_narrow_ones(monkeypatch):
    monkeypatch.setattr(partition, "BUFFER_BYTES", 400_000)
    flushed = {}
    for width in (4, 400):
        table, bounds = by_partition(_table(2_000, width), pd.Series(_table(2_000, width)["customer_id"]), 4)
        buffer = PartitionBuffer()
        flushed[width] = sum(len(items) for chunk in range(5) for _, items in buffer.add_grouped(table, bounds))
        held = sum(len(items) for _, items in buffer.drain())
        assert flushed[width] + held == 5 * 4  # every slice comes out once: flushed or drained
    assert flushed[4] == 0  # narrow rows: 5 x 2,000 rows stay under the budget
    assert flushed[400] > 0  # wide rows: the same row count leaves early, memory stays bounded


def test_writer_keeps_every_row_in_input_order(tmp_path, monkeypatch):
    monkeypatch.setattr(partition, "BUFFER_BYTES", 20_000)  # many flushes
    writer = PartitionWriter(tmp_path, "events", 3)
    frames = [
        pd.DataFrame({"customer_id": [f"C{i % 7}" for i in range(k, k + 500)], "_row": np.arange(k, k + 500)})
        for k in range(0, 3_000, 500)
    ]
    for frame in frames:
        writer.write(frame)
    writer.close()
    parts = [writer.files().read(p) for p in range(3)]
    rows = np.concatenate([p["_row"].to_numpy() for p in parts])
    assert sorted(rows.tolist()) == list(range(3_000))
    for part in parts:
        assert (np.diff(part["_row"].to_numpy()) > 0).all()  # file order kept within a partition
        assert part["customer_id"].map(lambda c: partition.partition_of(pd.Series([c]), 3)[0]).nunique() <= 1


def test_rows_of_several_writers_read_back_in_input_order(tmp_path):
    """Each worker writes the chunks it validated; a partition merges every worker's rows by row number."""
    writers = [PartitionWriter(tmp_path, f"events-{w}", 2) for w in range(2)]
    for start in range(0, 1_200, 100):  # chunks dealt to the two writers unevenly, as a pool hands them out
        frame = pd.DataFrame(
            {"customer_id": [f"C{i % 9}" for i in range(start, start + 100)], "_row": np.arange(start, start + 100)}
        )
        writers[(start // 100) % 3 == 0].write(frame)
    for writer in writers:
        writer.close()
    files = PartitionFiles.combine(tmp_path, [w.files() for w in writers])
    rows = [files.read(p)["_row"].to_numpy() for p in range(2)]
    assert sorted(np.concatenate(rows).tolist()) == list(range(1_200))
    assert all((np.diff(r) > 0).all() for r in rows)
    empty = PartitionFiles.combine(tmp_path, [PartitionWriter(tmp_path, "none", 2).files()])
    assert len(empty.read(0)) == 0 and "customer_id" in empty.read(0)
    consumed = files.read(1, consume=True)  # read once by the scorer: the same rows, its files deleted
    assert consumed["_row"].tolist() == rows[1].tolist()
    assert not any(files.path(name, 1).exists() for name in files.names)
    assert all(files.path(name, 0).exists() for name in files.names)  # other partitions untouched


def test_parquet_chunks_are_read_without_prebuffering(tmp_path, monkeypatch):
    """A pre-buffered Parquet reader keeps every row group it has read: memory would grow with the file."""
    path = tmp_path / "events.parquet"
    pq.write_table(_table(1_000, 8), path, row_group_size=100)
    seen = []
    original = pq.ParquetFile

    def spy(*args, **kwargs):
        seen.append(kwargs.get("pre_buffer", True))
        return original(*args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", spy)
    chunks = list(io.iter_tables(path, chunk_size=250))
    assert [t.num_rows for _, t in chunks] == [250] * 4
    assert seen and not any(seen)
