"""Table IO for every job: chunked and whole-file readers, and an atomic writer.

Reading: CSV or Parquet by extension; `pkg://<package>/<path>` names a file shipped inside an installed package. CSV is read with every column as a string (empty cell / NA -> null) so a bad
value can be rejected row by row instead of crashing the reader; Parquet keeps its stored types. Each chunk carries
the 1-based number of its first data row (the header is not counted; for CSV it is the record number, which equals the
line number minus one unless quoted fields span lines), so any row can be named in a rejects file.

Writing: `AtomicTableWriter` writes chunks to a temp file in the target directory and renames it into place only when
the `with` block ends without an exception, so a crashed run never leaves a partial output.
"""
from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from churnsense.core.locate import resolve_path

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


def table_format(path: str | os.PathLike) -> str:
    """'csv' or 'parquet' from the file extension; ValueError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; expected one of {sorted(FORMATS)}")
    return FORMATS[suffix]


def _existing(path: str | os.PathLike) -> Path:
    """The local file behind `path` (a `pkg://` path is located); clear errors for a missing file or a folder."""
    table_format(path)
    local = resolve_path(str(path))
    if local.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a CSV or Parquet file")
    if not local.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    return local


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        return next(csv.reader(handle), [])


def _csv_batches(path: Path, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
    header = _csv_header(path)
    if not header:
        return
    convert = pacsv.ConvertOptions(
        column_types={name: pa.binary() for name in header},  # decoded in `_as_text`: bad bytes reach validation
        strings_can_be_null=True,
        include_columns=columns,
        include_missing_columns=columns is not None,
    )
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=8 << 20), convert_options=convert)
    yield from reader


def _as_text(table: pa.Table) -> pa.Table:
    """Binary CSV columns -> text: a fast validated cast, or, for a column with invalid UTF-8, a per-value decode
    with U+FFFD for the bad bytes (so that row is rejected downstream with a reason instead of failing the file)."""
    columns = []
    for column in table.columns:
        if pa.types.is_binary(column.type):
            try:
                column = pc.cast(column, pa.string())
            except pa.ArrowInvalid:
                column = pa.array([None if v is None else v.decode("utf-8", errors="replace")
                                   for v in column.to_pylist()], type=pa.string())
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def _parquet_batches(path: Path, columns: list[str] | None, chunk_size: int) -> Iterator[pa.RecordBatch]:
    parquet = pq.ParquetFile(path)
    if columns is not None:
        present = set(parquet.schema_arrow.names)
        columns = [name for name in columns if name in present]
    yield from parquet.iter_batches(batch_size=chunk_size, columns=columns)


def _rebatch(batches: Iterator[pa.RecordBatch], chunk_size: int) -> Iterator[pa.Table]:
    """Regroup record batches of any size into tables of exactly `chunk_size` rows (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= chunk_size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_size)
            rest = table.slice(chunk_size)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)


def _pandas_csv_chunks(path: Path, columns: list[str] | None, chunk_size: int,
                       read_options: Mapping[str, Any]) -> Iterator[pa.RecordBatch]:
    """CSV-like files that need pandas' parser options (a regex or non-comma separator, ...), all as strings."""
    header = table_columns(path, read_options)
    usecols = [c for c in columns if c in header] if columns is not None else None
    for frame in pd.read_csv(path, dtype=str, chunksize=chunk_size, usecols=usecols, **dict(read_options)):
        yield from pa.Table.from_pandas(frame, preserve_index=False).to_batches()


def iter_chunks(
    path: str | os.PathLike, chunk_size: int = 50_000, columns: list[str] | None = None,
    read_options: Mapping[str, Any] | None = None,
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield `(first_row, frame)` chunks of at most `chunk_size` rows; `first_row` is the 1-based data row number.

    `columns` restricts the columns read (missing ones are skipped for Parquet, all-null for CSV).
    `read_options`: the data contract's pandas.read_csv options of a CSV-like file (e.g. `sep`); values stay text.
    """
    path = _existing(path)
    if table_format(path) == "csv" and read_options:
        batches = _pandas_csv_chunks(path, columns, chunk_size, read_options)
    elif table_format(path) == "csv":
        batches = _csv_batches(path, columns)
    else:
        batches = _parquet_batches(path, columns, chunk_size)
    first_row = 1
    for table in _rebatch(batches, chunk_size):
        yield first_row, _as_text(table).to_pandas()
        first_row += table.num_rows


def read_table(path: str | os.PathLike, columns: list[str] | None = None,
               read_options: Mapping[str, Any] | None = None, typed: bool = False,
               text_columns: list[str] | None = None) -> pd.DataFrame:
    """Read a whole file into one DataFrame.

    Default (`typed=False`): what every job validates — CSV values as text (read exactly as `iter_chunks` reads
    them), Parquet in its stored types. `typed=True` is for files churnsense wrote itself (scores, ground truth):
    CSV types are inferred by pandas, except `text_columns` (ids keep their leading zeros).
    """
    if typed and table_format(path) == "csv":
        local = _existing(path)
        dtype = {c: str for c in text_columns or ()}
        return pd.read_csv(local, usecols=columns, dtype=dtype, **dict(read_options or {}))
    frames = [frame for _, frame in iter_chunks(path, chunk_size=1 << 30, columns=columns,
                                                   read_options=read_options)]
    if frames:
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    names = columns if columns is not None else table_columns(path, read_options)
    return pd.DataFrame(columns=names)


def count_rows(path: str | os.PathLike) -> int | None:
    """Row count from Parquet metadata (cheap); None for CSV (would need a full pass)."""
    path = _existing(path)
    return pq.ParquetFile(path).metadata.num_rows if table_format(path) == "parquet" else None


class AtomicTableWriter:
    """Context manager that streams DataFrame chunks to CSV or Parquet (by extension) and publishes atomically.

    The first chunk (or `schema`, if given) fixes the columns; later chunks are reordered and cast to it.
    On a clean exit the temp file is renamed onto `path` (an empty table with the known columns if no chunk came);
    on an exception it is removed and `path` is left untouched.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema | None = None) -> None:
        self.path = Path(path)
        self.format = table_format(self.path)
        self.schema = schema
        self.rows = 0
        self._tmp: Path | None = None
        self._parquet: pq.ParquetWriter | None = None
        self._csv_handle = None

    def __enter__(self) -> AtomicTableWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        self._tmp = Path(name)
        return self

    def write(self, frame: pd.DataFrame) -> None:
        """Append one chunk."""
        if self._tmp is None:
            raise RuntimeError("AtomicTableWriter.write() outside its `with` block")
        table = self._conform(pa.Table.from_pandas(frame, preserve_index=False))
        if self.format == "parquet":
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, self.schema)
            self._parquet.write_table(table)
        else:
            if self._csv_handle is None:
                self._csv_handle = self._tmp.open("w", newline="", encoding="utf-8")
                self._csv_handle.write(",".join(_csv_quote(name) for name in self.schema.names) + "\n")
            table.to_pandas().to_csv(self._csv_handle, header=False, index=False)
        self.rows += table.num_rows

    def _conform(self, table: pa.Table) -> pa.Table:
        if self.schema is None:  # all-null columns of the first chunk are typed as strings
            fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
            self.schema = pa.schema(fields)
            return table.cast(self.schema)
        missing = [name for name in self.schema.names if name not in table.column_names]
        for name in missing:
            table = table.append_column(name, pa.nulls(table.num_rows, self.schema.field(name).type))
        return table.select(self.schema.names).cast(self.schema)

    def _close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._csv_handle is not None:
            self._csv_handle.close()

    def _write_empty(self) -> None:
        schema = self.schema if self.schema is not None else pa.schema([])
        if self.format == "parquet":
            pq.write_table(schema.empty_table(), self._tmp)
        else:
            self._tmp.write_text(",".join(_csv_quote(name) for name in schema.names) + "\n" if schema.names else "")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._close()
            if exc_type is None:
                if self._parquet is None and self._csv_handle is None:
                    self._write_empty()
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp is not None and self._tmp.exists():
                self._tmp.unlink()
            self._tmp = None


def _csv_quote(name: str) -> str:
    return f'"{name}"' if any(ch in name for ch in ',"\n') else name


def table_columns(path: str | os.PathLike, read_options: Mapping[str, Any] | None = None) -> list[str]:
    """Column names of a CSV (header) or Parquet (schema) file without reading its rows."""
    path = _existing(path)
    if table_format(path) == "parquet":
        return pq.ParquetFile(path).schema_arrow.names
    if read_options:
        return [str(c) for c in pd.read_csv(path, nrows=0, **dict(read_options)).columns]
    return _csv_header(path)
