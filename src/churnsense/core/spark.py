"""Spark for batch scoring (the optional `spark` extra): the session from `cfg.spark`, input files read by Spark
with their 1-based data-row numbers, pandas <-> Spark schemas, releases shipped to every executor and loaded once
per Python worker, and Parquet datasets published whole.

Spark reads the files and moves the rows as Arrow batches (`mapInArrow`); the pandas scorers (`score_churn_batch`,
`score_feedback_batch`) run unchanged on them, so both engines give the same rows.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark import SparkFiles
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from churnsense.core.io import table_format

ROW = "_row"  # 1-based data row in the source file (the rejects' `row`)
SESSION_CONF = {  # what the engine relies on, whatever the user's `spark.conf` says
    "spark.sql.session.timeZone": "UTC",  # naive timestamps stay the wall-clock values the files hold
    "spark.sql.legacy.parquet.nanosAsLong": "true",  # pandas' timestamp[ns] columns arrive as int64 nanoseconds
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
_LOADED: dict[tuple, Any] = {}  # per Python worker: releases loaded once, reused by every task it runs


def spark_session(cfg: Mapping[str, Any]) -> SparkSession:
    """The session of `cfg` (`master`, `app_name`, `conf`): `local[*]` embedded by default, any cluster master
    (`spark://…`, `yarn`, `k8s://…`) by config; `master: null` keeps the one `spark-submit --master` set."""
    builder = SparkSession.builder.appName(str(cfg["app_name"]))
    if cfg.get("master"):
        builder = builder.master(str(cfg["master"]))
    if str(cfg.get("master") or "").startswith("local"):  # embedded: the Python workers run this interpreter
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in {**spark_settings(cfg.get("conf")), **SESSION_CONF}.items():
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(str(cfg.get("log_level", "WARN")))
    return spark


def spark_settings(conf: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """`spark.conf` as flat Spark settings: a command-line override such as
    `+spark.conf.spark.executor.memory=4g` arrives nested ({spark: {executor: {memory: 4g}}}) and is joined back
    into `spark.executor.memory`; keys written whole in YAML stay as they are."""
    out = {}
    for key, value in dict(conf or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(spark_settings(value, f"{name}."))
        else:
            out[name] = value
    return out


CSV_OPTIONS = {
    "sep": "sep",
    "delimiter": "sep",
    "encoding": "encoding",
    "quotechar": "quote",
    "escapechar": "escape",
    "comment": "comment",
}


def csv_reader_options(read_options: Mapping[str, Any] | None) -> dict[str, str]:
    """Spark CSV options for the data contract's pandas `read_csv` options (every value read as text)."""
    out = {"header": "true", "inferSchema": "false", "mode": "PERMISSIVE"}
    for key, value in dict(read_options or {}).items():
        if key not in CSV_OPTIONS:
            raise ValueError(
                f"read option {key!r} has no Spark CSV equivalent (supported: {sorted(CSV_OPTIONS)}); "
                "use engine=local for this file"
            )
        out[CSV_OPTIONS[key]] = str(value)
    return out


def read_rows(
    spark: SparkSession, path: str, columns: list[str], read_options: Mapping[str, Any] | None = None
) -> tuple[DataFrame, list[str]]:
    """`columns` of the file with `_row`, its 1-based data row (header excluded), and the names of Parquet
    timestamp[ns] columns (handed over as int64 nanoseconds: `restore_nanos` turns them back exactly). Values
    reach pandas as the local engine reads them: CSV as text; integer and boolean columns as text too, so rows of
    other tables (nulls) never turn them into floats."""
    if table_format(path) == "parquet":
        frame = spark.read.parquet(path)
        nanos = [
            f.name
            for f in pq.read_schema(path)
            if f.name in columns and pa.types.is_timestamp(f.type) and f.type.unit == "ns"
        ]
        types = dict(frame.dtypes)
        cols = [_as_pandas_reads(F.col(f"`{c}`"), types[c], c in nanos).alias(c) for c in columns]
        return frame.select(*cols, (F.col("_metadata.row_index") + 1).alias(ROW)), nanos
    frame = spark.read.options(**csv_reader_options(read_options)).csv(path)
    return _numbered(frame.select(*[F.col(f"`{c}`") for c in columns])), []


def _numbered(frame: DataFrame) -> DataFrame:
    """`frame` + `_row` in file order (one file's splits are read in order): a position within each Spark
    partition plus the row count of the partitions before it."""
    pid, pos = "__pid", "__pos"
    tagged = frame.withColumn(pid, F.spark_partition_id()).withColumn(pos, F.monotonically_increasing_id())
    counts = dict(tagged.groupBy(pid).count().collect())
    offsets, total = {}, 0
    for part in sorted(counts):
        offsets[part], total = total, total + counts[part]
    start = F.create_map(*[F.lit(x) for kv in offsets.items() for x in kv]) if offsets else F.create_map()
    first_pos = F.col(pid).cast("long") * F.lit(1 << 33)  # monotonically_increasing_id: partition id << 33 + index
    row = start[F.col(pid)] + (F.col(pos) - first_pos) + 1
    return tagged.withColumn(ROW, row.cast("long")).drop(pid, pos)


def _as_pandas_reads(col, spark_type_name: str, nanos: bool):
    """A Parquet column in the form that survives a null-padded trip to pandas unchanged (nanoseconds stay
    int64: `restore_nanos`)."""
    if nanos:
        return col
    if spark_type_name in ("bigint", "int", "smallint", "tinyint"):
        return col.cast("string")
    if spark_type_name == "boolean":
        return F.when(col, F.lit("True")).when(~col, F.lit("False"))
    return col


def restore_nanos(table: pa.Table, columns: list[str]) -> pa.Table:
    """int64 nanoseconds (Parquet timestamp[ns] read by Spark) back to naive timestamp[ns] columns, exactly."""
    for c in columns:
        if c in table.column_names:
            i = table.column_names.index(c)
            table = table.set_column(i, c, pc.cast(table.column(i), pa.timestamp("ns")))
    return table


def spark_type(dtype: Any) -> T.DataType:
    """The Spark column type of a pandas dtype (text and mixed objects -> string)."""
    if pd.api.types.is_bool_dtype(dtype):
        return T.BooleanType()
    if pd.api.types.is_integer_dtype(dtype):
        return T.LongType()
    if pd.api.types.is_float_dtype(dtype):
        return T.DoubleType()
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return T.TimestampNTZType()
    return T.StringType()


def spark_schema(frame: pd.DataFrame, extra: Mapping[str, T.DataType] | None = None) -> T.StructType:
    """The Spark schema of a (typed, possibly empty) pandas frame, plus `extra` columns."""
    fields = [T.StructField(str(c), spark_type(t), True) for c, t in frame.dtypes.items()]
    fields += [T.StructField(c, t, True) for c, t in dict(extra or {}).items()]
    return T.StructType(fields)


def _text(col: pd.Series) -> pd.Series:
    """A column as text with nulls: text columns as they are, any other value written with `str`."""
    if pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty"):
        return col
    return col.astype(object).where(col.notna(), None).map(lambda v: v if v is None else str(v))


def conform(frame: pd.DataFrame, schema: T.StructType) -> pa.RecordBatch:
    """`frame` with exactly the schema's columns, in order, as the Arrow batch Spark expects for it."""
    out = frame.reindex(columns=schema.fieldNames())
    for f in schema.fields:
        col = out[f.name]
        if isinstance(f.dataType, T.StringType):
            out[f.name] = _text(col)
        elif isinstance(f.dataType, T.DoubleType):
            out[f.name] = pd.to_numeric(col, errors="coerce").astype("float64")
        elif isinstance(f.dataType, T.LongType):
            out[f.name] = pd.array(col, dtype="Int64")
        elif isinstance(f.dataType, T.BooleanType):
            out[f.name] = pd.array(col, dtype="boolean")
        elif isinstance(f.dataType, T.TimestampNTZType):
            out[f.name] = pd.to_datetime(col).astype("datetime64[us]")
    arrow = to_arrow_schema(schema, prefers_large_types=True)
    table = pa.Table.from_pandas(out, schema=arrow, preserve_index=False)  # text columns come as chunked arrays
    return pa.RecordBatch.from_arrays([c.combine_chunks() for c in table.columns], schema=arrow)


def ship(spark: SparkSession, folder: str | os.PathLike | None) -> str | None:
    """Send a release folder to every executor (`SparkContext.addFile`); returns the name `on_worker` takes."""
    if folder is None:
        return None
    spark.sparkContext.addFile(str(Path(folder).resolve()), recursive=True)
    return Path(folder).resolve().name


def on_worker(name: str, load: Callable[[str], Any], *key: Any) -> Any:
    """The release shipped as `name`, loaded with `load(local path, *key)` once per Python worker, then reused."""
    cache_key = (name, load, *key)
    if cache_key not in _LOADED:
        _LOADED[cache_key] = load(SparkFiles.get(name), *key)
    return _LOADED[cache_key]


class DatasetPublisher:
    """Writes Parquet datasets (folders of part files) beside their targets and publishes each with one rename
    when every write succeeded (local paths; other file systems get the dataset written in place)."""

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []

    def write(self, frame: DataFrame, target: str | os.PathLike) -> None:
        target = str(target)
        if "://" in target and not target.startswith("file://"):
            frame.write.mode("overwrite").parquet(target)
            return
        final = Path(target.removeprefix("file://")).resolve()
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        frame.write.mode("overwrite").parquet(str(tmp))
        self.staged.append((tmp, final))

    def publish(self) -> None:
        for tmp, final in self.staged:
            if final.is_dir():
                shutil.rmtree(final)
            elif final.exists():
                final.unlink()
            os.replace(tmp, final)
        self.staged.clear()

    def discard(self) -> None:
        for tmp, _ in self.staged:
            shutil.rmtree(tmp, ignore_errors=True)
        self.staged.clear()
