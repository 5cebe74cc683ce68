"""Table IO for every job: chunked and whole-file readers, and atomic writers published one by one or together.

Reading: CSV or Parquet by extension; `pkg://<package>/<path>` names a file shipped inside an installed package. CSV is
read with every column as a string (empty cell / NA -> null) so a bad value can be rejected row by row instead of
crashing the reader; Parquet keeps its stored types. Each chunk carries the 1-based number of its first data row (the
header is not counted; for CSV it is the record number, which equals the line number minus one unless quoted fields span
lines), so any row can be named in a rejects file.

What is wrong with a row stays with that row: bytes that are not UTF-8 become U+FFFD (validation rejects the value),
and a CSV record with more or fewer fields than the header becomes a row of nulls whose `MALFORMED` column says why
(validation rejects it), so row numbers stay exact. What is wrong with a file (missing, a folder, 0 bytes, no
header, duplicate column names, not Parquet) raises one error naming the file; no error repeats the file's content.

Writing: `AtomicTableWriter` writes chunks to a temp file in the target directory and renames it into place only when
the `with` block ends without an exception, so a crashed run never leaves a partial output; `publish_together`
publishes several outputs of one run (scores and rejects) as one step: all of them, or none. Temp files name their
process, so a later run removes those of killed runs (`core.scratch`); published files get the modes the umask
gives. `check_outputs_apart` refuses an output path that is one of the inputs.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from churnsense.core.locate import resolve_path
from churnsense.core.scratch import make_temp_file, publish_mode

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
MALFORMED = "_malformed"  # why a CSV record could not be split into the header's columns (null when it could)
CSV_NULLS = frozenset(pacsv.ConvertOptions().null_values)  # the spellings of a missing value (pyarrow's list)
FALLBACK_BATCH_ROWS = 65_536


def table_format(path: str | os.PathLike) -> str:
    """'csv' or 'parquet' from the file extension; ValueError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; expected one of {sorted(FORMATS)}")
    return FORMATS[suffix]


def _existing(path: str | os.PathLike) -> Path:
    """The local file behind `path` (a `pkg://` path is located); one clear error for a folder, a missing file, an
    unsupported type or a 0-byte file."""
    local = resolve_path(str(path))
    if local.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a CSV or Parquet file")
    if not local.exists():
        raise FileNotFoundError(f"{path}: input file not found")
    table_format(path)
    if not local.is_file():
        raise ValueError(f"{path}: not a regular file, expected a CSV or Parquet file")
    if local.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes): expected at least a header row")
    return local


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    if not header or all(not name.strip() for name in header):
        raise ValueError(f"{path}: no header row (the first line is empty)")
    seen = {name for name in header if header.count(name) > 1}
    if seen:
        raise ValueError(f"{path}: duplicate column names {sorted(seen)} in the header")
    return header


def _read_error(path: Path, err: Exception) -> ValueError:
    """A reader's error as one line naming the file, without any of its content (a CSV parser quotes the row)."""
    message = str(err).split("\n")[0]
    message = re.sub(r"(Expected \d+ columns, got \d+):.*", r"\1", message)
    return ValueError(f"{path}: cannot read the file as {table_format(path).upper()}: {message}")


def _csv_batches(path: Path, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
    """Fast pyarrow reader; from the first malformed record on, the exact Python reader (`_python_csv_batches`)."""
    header = _csv_header(path)
    convert = pacsv.ConvertOptions(
        column_types={name: pa.binary() for name in header},  # decoded in `_as_text`: bad bytes reach validation
        strings_can_be_null=True,
        include_columns=columns,
        include_missing_columns=columns is not None,
    )
    done = 0
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=8 << 20), convert_options=convert)
        for batch in reader:
            done += batch.num_rows
            yield batch
    except pa.ArrowInvalid:
        yield from _python_csv_batches(path, header, columns, skip=done)


def _python_csv_batches(
    path: Path, header: list[str], columns: list[str] | None, skip: int
) -> Iterator[pa.RecordBatch]:
    """Records after the first `skip` ones, read by Python's csv module: a record whose field count differs from
    the header's becomes a row of nulls with the reason in `MALFORMED` (so later rows keep their numbers)."""
    names = list(columns) if columns is not None else list(header)
    where = {name: header.index(name) for name in names if name in header}
    values: dict[str, list] = {name: [] for name in names}
    malformed: list[str | None] = []

    def batch() -> pa.RecordBatch:
        arrays = [pa.array(values[name], type=pa.binary()) for name in names]
        arrays.append(pa.array(malformed, type=pa.string()))
        return pa.RecordBatch.from_arrays(arrays, names=[*names, MALFORMED])

    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        records = csv.reader(handle)
        next(records, None)
        try:
            for record in records:
                if not record:  # a blank line is no record (as for pyarrow)
                    continue
                if skip:
                    skip -= 1
                    continue
                ok = len(record) == len(header)
                for name in names:
                    text = record[where[name]] if ok and name in where else None
                    values[name].append(
                        None if text is None or text in CSV_NULLS else text.encode("utf-8", "surrogateescape")
                    )
                malformed.append(
                    None if ok else f"malformed CSV record: {len(record)} field(s), the header has {len(header)}"
                )
                if len(malformed) >= FALLBACK_BATCH_ROWS:
                    yield batch()
                    values, malformed = {name: [] for name in names}, []
        except csv.Error as err:  # e.g. a field over the size limit: an unclosed quote swallowed the rest
            raise ValueError(
                f"{path}: cannot read the file as CSV after data row {records.line_num - 1}: {err} (an unclosed quote?)"
            ) from None
    if malformed:
        yield batch()


def _as_text(table: pa.Table) -> pa.Table:
    """Binary CSV columns -> text: a fast validated cast, or, for a column with invalid UTF-8, a per-value decode
    with U+FFFD for the bad bytes (so that row is rejected downstream with a reason instead of failing the file)."""
    columns = []
    for column in table.columns:
        if pa.types.is_binary(column.type):
            try:
                column = pc.cast(column, pa.string())
            except pa.ArrowInvalid:
                column = pa.array(
                    [None if v is None else v.decode("utf-8", errors="replace") for v in column.to_pylist()],
                    type=pa.string(),
                )
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def _parquet_batches(
    path: Path, columns: list[str] | None, chunk_size: int, row_groups: list[int] | None = None
) -> Iterator[pa.RecordBatch]:
    # without pre-buffering: a pre-buffered reader keeps every row group it has read until it is closed, so
    # memory would grow with the file; read this way it stays about one row group
    parquet = pq.ParquetFile(path, pre_buffer=False)
    if columns is not None:
        present = set(parquet.schema_arrow.names)
        columns = [name for name in columns if name in present]
    yield from parquet.iter_batches(batch_size=chunk_size, columns=columns, row_groups=row_groups)


def parquet_row_groups(path: str | os.PathLike) -> list[tuple[int, int]]:
    """`(row group, its first data row)` of a Parquet file ([] for any other file): the units other processes
    can read on their own (`iter_row_group`)."""
    path = _existing(path)
    if table_format(path) != "parquet":
        return []
    try:
        meta = pq.ParquetFile(path).metadata
    except pa.ArrowException as err:
        raise _read_error(path, err) from None
    groups, first_row = [], 1
    for g in range(meta.num_row_groups):
        groups.append((g, first_row))
        first_row += meta.row_group(g).num_rows
    return groups


def iter_row_group(
    path: str | os.PathLike, group: int, first_row: int, chunk_size: int, columns: list[str] | None = None
) -> Iterator[tuple[int, pa.Table]]:
    """`iter_tables` of one Parquet row group whose first data row is `first_row`."""
    path = _existing(path)
    try:
        for batch in _parquet_batches(path, columns, chunk_size, [group]):
            yield first_row, pa.Table.from_batches([batch])
            first_row += batch.num_rows
    except pa.ArrowException as err:
        raise _read_error(path, err) from None


def _rebatch(batches: Iterator[pa.RecordBatch], chunk_size: int) -> Iterator[pa.Table]:
    """Regroup record batches of any size into tables of exactly `chunk_size` rows (the last may be shorter);
    batches with an extra `MALFORMED` column (CSV read on by the exact reader) are merged with null-filling."""
    pending: list[pa.Table] = []
    rows = 0
    for batch in batches:
        pending.append(pa.Table.from_batches([batch]))
        rows += batch.num_rows
        while rows >= chunk_size:
            table = pa.concat_tables(pending, promote_options="default")
            yield table.slice(0, chunk_size)
            rest = table.slice(chunk_size)
            pending, rows = [rest], rest.num_rows
    if rows:
        yield pa.concat_tables(pending, promote_options="default")


def _pandas_csv_chunks(
    path: Path, columns: list[str] | None, chunk_size: int, read_options: Mapping[str, Any]
) -> Iterator[pa.RecordBatch]:
    """CSV-like files that need pandas' parser options (a regex or non-comma separator, ...), all as strings;
    bytes that are not in the file's encoding become U+FFFD (rejected by validation) unless the options say
    otherwise."""
    header = table_columns(path, read_options)
    usecols = [c for c in columns if c in header] if columns is not None else None
    options = {"encoding_errors": "replace", **dict(read_options)}
    for frame in pd.read_csv(path, dtype=str, chunksize=chunk_size, usecols=usecols, **options):
        yield from pa.Table.from_pandas(frame, preserve_index=False).to_batches()


def _empty_table(path: Path, columns: list[str] | None, read_options: Mapping[str, Any] | None) -> pa.Table:
    """The file's columns without rows (a header-only CSV, a Parquet file without rows)."""
    if table_format(path) == "parquet":
        schema = pq.ParquetFile(path).schema_arrow
        names = [n for n in (columns or schema.names) if n in schema.names]
        return pa.schema([schema.field(n) for n in names]).empty_table()
    names = table_columns(path, read_options)
    names = columns if columns is not None else names
    return pa.schema([(n, pa.string()) for n in names]).empty_table()


def iter_tables(
    path: str | os.PathLike,
    chunk_size: int = 50_000,
    columns: list[str] | None = None,
    read_options: Mapping[str, Any] | None = None,
) -> Iterator[tuple[int, pa.Table]]:
    """`iter_chunks` before the conversion to pandas: `(first_row, Arrow table)` chunks, CSV columns still bytes
    (`as_frame` turns a chunk into the frame `iter_chunks` yields). Cheap to send to another process (`to_ipc`)."""
    path = _existing(path)
    first_row = 1
    try:
        if table_format(path) == "csv" and read_options:
            batches = _pandas_csv_chunks(path, columns, chunk_size, read_options)
        elif table_format(path) == "csv":
            batches = _csv_batches(path, columns)
        else:
            batches = _parquet_batches(path, columns, chunk_size)
        for table in _rebatch(batches, chunk_size):
            yield first_row, table
            first_row += table.num_rows
        if first_row == 1:
            yield first_row, _empty_table(path, columns, read_options)
    except (pa.ArrowException, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise _read_error(path, err) from None


def as_frame(table: pa.Table) -> pd.DataFrame:
    """A chunk of `iter_tables` as the frame every job validates: text columns decoded (see `_as_text`)."""
    return _as_text(table).to_pandas()


def to_ipc(table: pa.Table, compression: str | None = None) -> pa.Buffer:
    """`table` as one Arrow IPC stream: only its own rows (pickling a slice would carry its parent's buffers);
    `compression`: Arrow's buffer compression (`lz4`, `zstd`) for bytes that are stored, not just passed on."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue()


def from_ipc(buffer: pa.Buffer) -> pa.Table:
    """The table of `to_ipc`."""
    return pa.ipc.open_stream(buffer).read_all()


def iter_chunks(
    path: str | os.PathLike,
    chunk_size: int = 50_000,
    columns: list[str] | None = None,
    read_options: Mapping[str, Any] | None = None,
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield `(first_row, frame)` chunks of at most `chunk_size` rows; `first_row` is the 1-based data row number.
    A table without rows yields one empty frame with its columns.

    `columns` restricts the columns read (missing ones are skipped for Parquet, all-null for CSV).
    `read_options`: the data contract's pandas.read_csv options of a CSV-like file (e.g. `sep`); values stay text.
    A frame has a `MALFORMED` column when a CSV record in it had the wrong number of fields (see module doc).
    """
    for first_row, table in iter_tables(path, chunk_size, columns, read_options):
        yield first_row, as_frame(table)


def read_table(
    path: str | os.PathLike,
    columns: list[str] | None = None,
    read_options: Mapping[str, Any] | None = None,
    typed: bool = False,
    text_columns: list[str] | None = None,
) -> pd.DataFrame:
    """Read a whole file into one DataFrame.

    Default (`typed=False`): what every job validates — CSV values as text (read exactly as `iter_chunks` reads
    them), Parquet in its stored types. `typed=True` is for files churnsense wrote itself (scores, ground truth):
    CSV types are inferred by pandas, except `text_columns` (ids keep their leading zeros).
    """
    if typed and table_format(path) == "csv":
        local = _existing(path)
        dtype = dict.fromkeys(text_columns or (), str)
        return pd.read_csv(local, usecols=columns, dtype=dtype, **dict(read_options or {}))
    frames = [frame for _, frame in iter_chunks(path, chunk_size=1 << 30, columns=columns, read_options=read_options)]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def count_rows(path: str | os.PathLike) -> int | None:
    """Row count from Parquet metadata (cheap); None for CSV (would need a full pass)."""
    path = _existing(path)
    if table_format(path) != "parquet":
        return None
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except pa.ArrowException as err:
        raise _read_error(path, err) from None


class AtomicTableWriter:
    """Context manager that streams DataFrame chunks to CSV or Parquet (by extension) and publishes atomically.

    The first chunk (or `schema`, if given) fixes the columns; later chunks are reordered and cast to it.
    On a clean exit the temp file is renamed onto `path` (an empty table with the known columns if no chunk came);
    on an exception it is removed and `path` is left untouched. With `deferred=True` a clean exit only finishes the
    temp file, and `publish_together` publishes it together with the run's other outputs.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema | None = None, deferred: bool = False) -> None:
        self.path = Path(path)
        self.format = table_format(self.path)
        self.schema = schema
        self.deferred = deferred
        self.rows = 0
        self._tmp: Path | None = None
        self._backup: Path | None = None
        self._parquet: pq.ParquetWriter | None = None
        self._csv_handle = None

    @property
    def temp_prefix(self) -> str:
        return f".{self.path.name}."

    def __enter__(self) -> AtomicTableWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = make_temp_file(self.path.parent, self.temp_prefix)  # removes those of killed runs first
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
            self._csv_handle.write(csv_lines(table))
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

    def finish(self) -> None:
        """Close the temp file (an empty table if nothing was written) and give it the umask's mode."""
        self._close()
        if self._parquet is None and self._csv_handle is None:
            self._write_empty()
        self._parquet = self._csv_handle = None
        publish_mode(self._tmp)

    def commit(self) -> None:
        """Rename the finished temp file onto `path` (one atomic replace); an existing file is kept aside (a hard
        link, else a copy) until `drop_backup`, so `rollback` can put it back."""
        if self.path.is_file():
            self._backup = make_temp_file(self.path.parent, self.temp_prefix, suffix=".previous")
            self._backup.unlink()
            try:
                os.link(self.path, self._backup)
            except OSError:
                shutil.copy2(self.path, self._backup)
        os.replace(self._tmp, self.path)
        self._tmp = None

    def rollback(self) -> None:
        """Undo `commit`: remove the new file and put the previous one back (if there was one)."""
        if self._backup is not None:
            os.replace(self._backup, self.path)
            self._backup = None
        else:
            self.path.unlink(missing_ok=True)

    def drop_backup(self) -> None:
        """Forget the previous file set aside by `commit`."""
        if self._backup is not None:
            self._backup.unlink(missing_ok=True)
            self._backup = None

    def discard(self) -> None:
        """Remove the temp file (nothing is published)."""
        self._close()
        self._parquet = self._csv_handle = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        self._tmp = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.discard()
            return
        try:
            self.finish()
            if not self.deferred:
                self.commit()
                self.drop_backup()
        except BaseException:
            self.discard()
            raise


def publish_all(writers: Iterable[AtomicTableWriter]) -> None:
    """Commit finished writers together: if one rename fails, the ones already done are undone (previous files
    put back) and the rest discarded, so either every output is published or none changes."""
    writers = list(writers)
    done: list[AtomicTableWriter] = []
    try:
        for writer in writers:
            writer.commit()
            done.append(writer)
    except BaseException:
        for writer in reversed(done):
            writer.rollback()
        for writer in writers:
            if writer not in done:
                writer.discard()
        raise
    for writer in done:
        writer.drop_backup()


@contextmanager
def publish_together(*writers: AtomicTableWriter) -> Iterator[tuple[AtomicTableWriter, ...]]:
    """Open `writers` for the block; when it ends without an exception, publish all of them in one step
    (`publish_all`); on an exception (or a failure to finish one of them) publish none."""
    for writer in writers:
        writer.deferred = True
    try:
        with ExitStack() as stack:
            for writer in writers:
                stack.enter_context(writer)
            yield writers
    except BaseException:
        for writer in writers:
            writer.discard()
        raise
    publish_all(writers)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths name one file (resolved; hard links count when both exist)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_outputs_apart(
    outputs: Mapping[str, str | os.PathLike | None], inputs: Mapping[str, str | os.PathLike | None]
) -> None:
    """Refuse a run whose outputs would overwrite one of its inputs or one another (names are the config keys)."""
    given_in = {name: str(path) for name, path in inputs.items() if path and not str(path).startswith("pkg://")}
    given_out = {name: str(path) for name, path in outputs.items() if path}
    for out_name, out_path in given_out.items():
        for in_name, in_path in given_in.items():
            if same_file(out_path, in_path):
                raise ValueError(
                    f"{out_name}={out_path} is also {in_name}: the run would overwrite its input; "
                    f"choose another {out_name} path"
                )
    names = list(given_out)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if same_file(given_out[first], given_out[second]):
                raise ValueError(f"{first} and {second} are the same file ({given_out[first]}): choose two paths")


_NEEDS_QUOTES = r'[,"\r\n]'


def csv_lines(table: pa.Table) -> str:
    """The rows of `table` as CSV lines, as pandas' `to_csv` writes them (minimal quoting, nulls empty, integers
    as integers even with nulls). Written by Arrow when every column is text or integer and no value needs
    quotes (reject lines: several times faster), else by pandas."""
    simple = all(
        pa.types.is_integer(col.type)
        or (
            (pa.types.is_string(col.type) or pa.types.is_large_string(col.type))
            and not pc.any(pc.match_substring_regex(col, _NEEDS_QUOTES)).as_py()
        )
        for col in table.columns
    )
    if simple and table.num_rows:
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
        return sink.getvalue().to_pybytes().decode("utf-8")
    frame = table.to_pandas()
    for i, col in enumerate(table.columns):
        if pa.types.is_integer(col.type) and col.null_count:  # as floats, 3 would be written 3.0
            kind = "UInt" if pa.types.is_unsigned_integer(col.type) else "Int"
            nullable = pd.api.types.pandas_dtype(f"{kind}{col.type.bit_width}")
            frame.isetitem(i, col.to_pandas(types_mapper={col.type: nullable}.get))
    return frame.to_csv(header=False, index=False, lineterminator="\n")


def _csv_quote(name: str) -> str:
    return f'"{name}"' if any(ch in name for ch in ',"\n') else name


def table_columns(path: str | os.PathLike, read_options: Mapping[str, Any] | None = None) -> list[str]:
    """Column names of a CSV (header) or Parquet (schema) file without reading its rows."""
    path = _existing(path)
    try:
        if table_format(path) == "parquet":
            return pq.ParquetFile(path).schema_arrow.names
        if read_options:
            options = {"encoding_errors": "replace", **dict(read_options)}
            return [str(c) for c in pd.read_csv(path, nrows=0, **options).columns]
    except (pa.ArrowException, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise _read_error(path, err) from None
    return _csv_header(path)
