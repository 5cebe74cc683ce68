"""`python serve.py task=churn engine=spark [spark.master=spark://host:7077] input.customers=… output=DIR`: churn
batch scoring on Spark, the same rows as the local engine.

The local engine's two stages, with Spark reading the files and moving the rows between them:
1. Every input is read in Spark tasks, each row with its 1-based number in its file: a Parquet file's row groups
   by the Python workers themselves with Arrow (`spark.read`: the local engine's reader, no trip through the JVM's
   rows), any other input by Spark's reader. The rows go to `data.chunks.prepare_rows` (`mapInArrow`):
   validated exactly as the local engine validates a chunk, grouped by customer partition, and sent on as Arrow
   IPC blocks (a few large records instead of millions of rows), with the reject lines, the rejected customer
   ids and the valid history rows per day. Kept on disk (`persist`).
2. The default scoring date comes from the day counts; the blocks are shuffled by partition and each partition's
   tables are rebuilt in file order and scored by `PartitionJob.score_frames`, the local engine's scorer (one
   ONNX Runtime session per Python worker, loaded once from the release shipped to every executor).
Scores and rejects are written as Parquet datasets (folders of part files) and published together. Drift
monitoring and the CRM export run with the local engine only.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import DictConfig, OmegaConf
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from churnsense.churn.partition_scoring import PartitionJob
from churnsense.churn.release import ChurnRelease
from churnsense.churn.score import score_churn_batch
from churnsense.churn.serve import chunk_rows, load_feedback_release, resolve_inputs
from churnsense.core import io
from churnsense.core.partition import PartitionBuffer, arrow_table, choose_partitions, partition_of
from churnsense.core.rejects import REJECT_COLUMNS, relative_source, with_counts
from churnsense.core.runs import RunSummary
from churnsense.core.spark import (
    ROW,
    DatasetPublisher,
    conform,
    on_worker,
    read_rows,
    restore_nanos,
    ship,
    spark_schema,
    spark_session,
)
from churnsense.data.chunks import prepare_rows
from churnsense.data.contract import KINDS, TableSpec
from churnsense.data.framing import add_days, scoring_cutoff
from churnsense.data.validation import read_columns, validate_chunk
from churnsense.feedback.release import load_release

log = logging.getLogger(__name__)
PART = "_part"  # output: scores / rejects
REJECT = {c: f"_reject_{c}" for c in REJECT_COLUMNS if c != "customer_id"}  # reject columns beside the scores'
IDS, REJECTS, DAYS = "rejected_ids", "rejects", "days"  # stage one's records besides the tables' blocks
PREPARED = T.StructType(  # stage one's output: blocks of valid rows, reject lines, rejected ids, rows per day
    [
        T.StructField("partition", T.LongType()),
        T.StructField("kind", T.StringType()),
        T.StructField("seq", T.LongType()),  # a block's first data row: blocks in this order are in file order
        T.StructField("block", T.BinaryType()),
        T.StructField("day", T.TimestampNTZType()),
        T.StructField("n", T.LongType()),
        *[T.StructField(c, T.LongType() if c in ("row", "rows") else T.StringType()) for c in REJECT_COLUMNS],
    ]
)


def _records(prepared: pa.Schema, **columns) -> pa.RecordBatch:
    """Stage-one records: the given columns, every other one null."""
    n = len(next(iter(columns.values())))
    arrays = [_array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type) for f in prepared]
    return pa.RecordBatch.from_arrays(arrays, schema=prepared)


def _array(values, type_: pa.DataType) -> pa.Array:
    return values.cast(type_) if isinstance(values, pa.Array) else pa.array(values, type_)


def consecutive_runs(rows: pa.Table) -> Iterator[tuple[int, pa.Table]]:
    """`(first data row, rows)` of each run of consecutive `_row` numbers (the `_row` column dropped)."""
    numbers = rows.column(ROW).to_numpy()
    if not len(numbers):
        return
    breaks = [0, *(np.flatnonzero(np.diff(numbers) != 1) + 1).tolist(), len(numbers)]
    for lo, hi in itertools.pairwise(breaks):
        yield int(numbers[lo]), rows.slice(lo, hi - lo).drop_columns([ROW])


@dataclass(frozen=True)
class PrepareRows:
    """Stage one over one input table (`mapInArrow`): `prepare_rows` of every run of consecutive rows, the valid
    rows of each partition held back until a large block can be sent."""

    kind: str
    table: TableSpec
    source: str
    nanos: list[str]
    partitions: int

    def __call__(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        runs = (
            (first_row, restore_nanos(raw, self.nanos))
            for batch in batches
            for first_row, raw in consecutive_runs(pa.Table.from_batches([batch]))
        )
        yield from self.prepare(runs)

    def prepare(self, runs: Iterable[tuple[int, pa.Table]]) -> Iterator[pa.RecordBatch]:
        """Stage-one records of raw `(first data row, rows)` runs of this table."""
        schema = to_arrow_schema(PREPARED, prefers_large_types=True)
        pending = PartitionBuffer()  # (first data row, rows) per partition
        days: pd.Series | None = None
        for first_row, raw in runs:
            rows, done = prepare_rows(raw, self.kind, self.table, self.source, first_row, self.partitions)
            if len(done.rejects):
                yield _records(schema, kind=[REJECTS] * len(done.rejects), **_reject_columns(done.rejects))
            if done.rejected_ids:
                yield self.rejected_ids(schema, done.rejected_ids)
            days = add_days(days, done.days)
            for part, full in pending.add_grouped(rows, done.bounds, first_row) if done.bounds is not None else ():
                yield self.block(schema, part, full)
        for part, blocks in pending.drain():
            yield self.block(schema, part, blocks)
        if days is not None and len(days):
            day = pa.array(days.index.to_numpy(dtype="datetime64[us]"), pa.timestamp("us"))
            yield _records(schema, kind=[DAYS] * len(days), day=day, n=days.to_numpy(dtype="int64"))

    def block(self, schema: pa.Schema, part: int, blocks: list[tuple[int, pa.Table]]) -> pa.RecordBatch:
        rows = pa.concat_tables([t for _, t in blocks], promote_options="permissive").combine_chunks()
        block = io.to_ipc(rows, compression="lz4").to_pybytes()
        return _records(schema, partition=[part], kind=[self.kind], seq=[blocks[0][0]], block=[block])

    def rejected_ids(self, schema: pa.Schema, ids: list) -> pa.RecordBatch:
        """A partition's rejected customer ids, sent to it (events of those customers get that reason)."""
        parts = partition_of(pd.Series(ids, dtype=object), self.partitions)
        by_part = {p: [i for i, q in zip(ids, parts) if q == p] for p in sorted(set(parts.tolist()))}
        blocks = [io.to_ipc(pa.table({"customer_id": pa.array(v, pa.string())})).to_pybytes() for v in by_part.values()]
        return _records(schema, partition=list(by_part), kind=[IDS] * len(by_part), block=blocks)


ROW_GROUPS = T.StructType([T.StructField("group", T.LongType()), T.StructField("first_row", T.LongType())])


@dataclass(frozen=True)
class PrepareRowGroups(PrepareRows):
    """Stage one over a Parquet file's row groups (`mapInArrow` over `(group, first_row)` records): each Python
    worker reads its row groups itself with Arrow, in chunks of `chunk_rows` (the local engine's reader: values
    reach validation without a trip through the JVM's rows), then prepares them as `PrepareRows` does."""

    columns: tuple[str, ...]
    chunk_rows: int

    def __call__(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        groups = ((g, first) for b in batches for g, first in zip(b.column(0).to_pylist(), b.column(1).to_pylist()))
        runs = (
            run
            for group, first_row in groups
            for run in io.iter_row_group(self.source, group, first_row, self.chunk_rows, list(self.columns))
        )
        yield from self.prepare(runs)


def _reject_columns(rejects: pd.DataFrame) -> dict[str, list]:
    frame = with_counts(rejects)
    out = {c: frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in REJECT_COLUMNS}
    out["row"] = [int(v) for v in frame["row"]]
    out["customer_id"] = [None if v is None else str(v) for v in out["customer_id"]]
    return out


@dataclass(frozen=True)
class ScoreParts:
    """Stage two (`mapInArrow` after a shuffle by partition): each partition's tables rebuilt from its blocks in
    file order, scored as the local engine scores a partition."""

    job: PartitionJob
    release: str  # shipped release folder names (`core.spark.ship`)
    feedback_release: str | None
    threads: int
    empty: dict[str, bytes]  # kind -> an empty validated table (`to_ipc`): a partition without rows of it
    schema: T.StructType

    def __call__(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        batches = list(batches)
        if not batches:
            return
        records = pa.Table.from_batches(batches)
        release = on_worker(self.release, _load_churn, self.threads)
        feedback = on_worker(self.feedback_release, _load_feedback, self.threads) if self.feedback_release else None
        for part in sorted(set(records.column("partition").to_pylist())):
            mine = records.filter(pc.equal(records.column("partition"), part))
            frames = {kind: self.frame(mine, kind) if kind in self.empty else None for kind in KINDS}
            ids = {i for block in self.blocks(mine, IDS) for i in block.column("customer_id").to_pylist()}
            scored, rejects, _, _ = self.job.score_frames(frames, ids, release, feedback)
            rejects = rejects.rename(columns=REJECT).assign(**{PART: "rejects"})
            yield conform(pd.concat([scored.assign(**{PART: "scores"}), rejects], ignore_index=True), self.schema)

    @staticmethod
    def blocks(records: pa.Table, kind: str) -> list[pa.Table]:
        rows = records.filter(pc.equal(records.column("kind"), kind)).sort_by("seq")
        return [io.from_ipc(pa.py_buffer(b)) for b in rows.column("block").to_pylist()]

    def frame(self, records: pa.Table, kind: str) -> pd.DataFrame:
        """The partition's valid rows of `kind` in file order, typed as the local engine's partition files."""
        empty = io.from_ipc(pa.py_buffer(self.empty[kind]))
        tables = self.blocks(records, kind)
        rows = pa.concat_tables(tables, promote_options="permissive") if tables else empty
        for i, f in enumerate(rows.schema):
            if pa.types.is_null(f.type) and f.name in empty.column_names:  # no value in any block: the table's type
                rows = rows.set_column(i, f.name, pa.nulls(rows.num_rows, empty.schema.field(f.name).type))
        return rows.to_pandas()


def _load_churn(path: str, threads: int) -> ChurnRelease:
    return ChurnRelease.load(path, num_threads=threads)


def _load_feedback(path: str, threads: int):
    return load_release(path, threads=threads)


def empty_tables(inputs: Mapping[str, str], columns: Mapping[str, list[str]], release: ChurnRelease):
    """Per input table, its validated rows of a partition without any (`to_ipc` bytes)."""
    out = {}
    for kind, path in inputs.items():
        raw = pd.DataFrame({c: pd.Series(dtype="str") for c in columns[kind]})
        valid, _ = validate_chunk(raw, release.spec.table(kind), kind, path)
        out[kind] = io.to_ipc(arrow_table(valid)).to_pybytes()
    return out


def output_schema(
    release: ChurnRelease, inputs: Mapping[str, str], columns: Mapping[str, list[str]], cfg: DictConfig, feedback
) -> T.StructType:
    """Scores and rejects in one schema: the scores of an empty batch (typed, insight columns included) + the
    reject columns + `_part`."""
    empty = {
        k: (pd.DataFrame({c: pd.Series(dtype=object) for c in columns[k]}) if k in inputs else None) for k in KINDS
    }
    scored, _ = score_churn_batch(
        empty["customers"],
        empty["events"],
        empty["feedback"],
        release,
        pd.Timestamp("2000-01-01"),
        sources=dict(inputs),
        feedback_release=feedback,
        text_column=str(cfg.text_column),
        insights=bool(cfg.insights),
    )
    extra = {name: (T.LongType() if c in ("row", "rows") else T.StringType()) for c, name in REJECT.items()}
    return spark_schema(scored, {**extra, PART: T.StringType()})


def partition_count(spark: SparkSession, inputs: Mapping[str, str], requested: int) -> int:
    """`requested` if > 0; else the local engine's choice for files this machine sees (about 64 MiB of input per
    partition and core), else 4 per core of the cluster."""
    cores = spark.sparkContext.defaultParallelism
    if requested > 0:
        return requested
    if all(Path(p).is_file() for p in inputs.values()):
        return choose_partitions(list(inputs.values()), 0, cores)
    return max(1, 4 * cores)


READS = ("auto", "workers", "spark")  # `spark.read`: who reads Parquet inputs


def reads_in_workers(spark: SparkSession, path: str, mode: str) -> bool:
    """Whether the Python workers read this input's Parquet row groups themselves (`PrepareRowGroups`) rather
    than Spark's reader: `workers` for a Parquet file this machine sees (the driver lists its row groups; every
    worker must see it at the same path: local mode or a shared mount), `auto` for one under a `local` master,
    `spark` never. Other inputs (CSV, folders, remote URIs) are always read by Spark."""
    if mode not in READS:
        raise ValueError(f"spark.read={mode!r}: expected one of {', '.join(READS)}")
    if mode == "spark" or "://" in path or not Path(path).is_file() or io.table_format(path) != "parquet":
        return False
    return mode == "workers" or spark.sparkContext.master.startswith("local")


@dataclass
class Prepared:
    """Stage one over every input: its records (kept on disk), the source columns read per table and each
    table's data-row count (counted when asked: Spark-read files take a pass)."""

    records: DataFrame
    columns: dict[str, list[str]]
    counts: dict[str, Callable[[], int]]


def prepare(spark: SparkSession, inputs: Mapping[str, str], release: ChurnRelease, k: int, cfg: DictConfig) -> Prepared:
    """Stage one over every input (see the module doc): Parquet row groups read by the Python workers where
    `reads_in_workers`, every other input read by Spark."""
    columns, counts, prepared = {}, {}, None
    for kind, path in inputs.items():
        table = release.spec.table(kind)
        columns[kind] = read_columns(table, kind, io.table_columns(path, table.read_options))
        if reads_in_workers(spark, path, str(cfg.spark.read)) and (groups := io.parquet_row_groups(path)):
            rows = chunk_rows(int(cfg.chunk_size), int(cfg.chunk_cells), len(columns[kind]))
            tasks = spark.createDataFrame(spark.sparkContext.parallelize(groups, len(groups)), ROW_GROUPS)
            prepare_groups = PrepareRowGroups(kind, table, path, [], k, tuple(columns[kind]), rows)
            part = tasks.mapInArrow(prepare_groups, PREPARED)
            counts[kind] = functools.partial(io.count_rows, path)
        else:
            frame, nanos = read_rows(spark, path, columns[kind], table.read_options)
            part = frame.mapInArrow(PrepareRows(kind, table, path, nanos, k), PREPARED)
            counts[kind] = frame.count
        prepared = part if prepared is None else prepared.unionByName(part)
    return Prepared(prepared.persist(StorageLevel.DISK_ONLY), columns, counts)


def prepared_history_days(prepared: DataFrame) -> pd.Series:
    """Valid history rows per day over every input (`data.framing.history_days` of them: what the local engine's
    cutoff rule reads), summed by Spark from stage one's counts."""
    counted = prepared.filter(F.col("kind") == DAYS).groupBy("day").agg(F.sum("n")).collect()
    days = pd.Series([int(n) for _, n in counted], index=pd.DatetimeIndex([d for d, _ in counted]), dtype="int64")
    return days.sort_index()


def serve_churn_spark(cfg: DictConfig) -> RunSummary:
    """Composition root of churn scoring on Spark; prints and returns the run summary."""
    release = ChurnRelease.load(
        str(cfg.model),
        num_threads=int(cfg.num_threads),
        tracking_uri=cfg.tracking_uri,
        slice_rows=int(cfg.onnx_slice_rows),
    )
    inputs = resolve_inputs(cfg, release)
    feedback_release = load_feedback_release(cfg, inputs, release)
    if cfg.drift.enabled or (cfg.crm_export.enabled and cfg.insights):
        log.info("engine=spark: drift monitoring and the CRM export run with engine=local only")
    output = Path(str(cfg.output))
    rejects_path = Path(str(cfg.rejects)) if cfg.rejects else output.with_name(f"{output.stem}.rejects.parquet")
    spark = spark_session(OmegaConf.to_container(cfg.spark, resolve=True))
    summary = RunSummary(task="churn")
    k = partition_count(spark, inputs, int(cfg.spark.partitions))
    stage_one = prepare(spark, inputs, release, k, cfg)
    prepared, columns = stage_one.records, stage_one.columns
    # the small records (day counts, reject lines) apart from the blocks, so the later jobs read only them
    small = prepared.filter(F.col("kind").isin([DAYS, REJECTS])).drop("block").persist(StorageLevel.MEMORY_AND_DISK)
    explicit = cfg.cutoff is not None and str(cfg.cutoff)
    cutoff = scoring_cutoff(release.spec.framing, cfg.cutoff, None if explicit else prepared_history_days(small))
    schema = output_schema(release, inputs, columns, cfg, feedback_release)
    primary = "customers" if "customers" in inputs else "events"
    job = PartitionJob(
        files={},
        primary=primary,
        cutoff=cutoff,
        sources=dict(inputs),
        risk_bands=dict(cfg.risk_bands),
        batch_size=int(cfg.batch_size),
        text_column=str(cfg.text_column),
        insights=bool(cfg.insights),
        rejects_detail=bool(cfg.rejects_detail),
    )
    score = ScoreParts(
        job,
        ship(spark, release.path),
        ship(spark, feedback_release.path if feedback_release else None),
        int(cfg.spark.onnx_threads),
        empty_tables(inputs, columns, release),
        schema,
    )
    blocks = prepared.filter(F.col("kind").isin([*inputs, IDS])).select("partition", "kind", "seq", "block")
    result = blocks.repartition(k, "partition").mapInArrow(score, schema).persist(StorageLevel.DISK_ONLY)
    publisher = DatasetPublisher()
    try:
        # scoring runs here, one task per partition; the outputs are then written from the cache by as many tasks
        # (one part file each) as the cluster has cores, not by one task per partition
        rows_out = dict(result.groupBy(PART).count().collect())
        files = spark.sparkContext.defaultParallelism
        scored = result.filter(F.col(PART) == "scores").drop(PART, *REJECT.values()).coalesce(files)
        rejects = result.filter(F.col(PART) == "rejects").select(
            *[F.col(REJECT.get(c, c)).alias(c) for c in REJECT_COLUMNS]
        )
        rejects = rejects.unionByName(small.filter(F.col("kind") == REJECTS).select(*REJECT_COLUMNS)).coalesce(files)
        relative = {p: relative_source(p, rejects_path.parent) for p in inputs.values()}  # as the local engine
        publisher.write(scored, output)
        publisher.write(rejects.replace(relative, subset=["source"]), rejects_path)
        by_source = dict(rejects.groupBy("source").agg(F.sum("rows")).collect())  # input rows per source
        summary.rows_in = stage_one.counts[primary]()
        summary.rejected = int(by_source.get(inputs[primary], 0))
        scored_customers = int(rows_out.get("scores", 0))
        summary.scored = scored_customers if primary == "customers" else summary.rows_in - summary.rejected
        summary.other_rejected = {k: int(by_source.get(p, 0)) for k, p in inputs.items() if k != primary}
        if not summary.balanced:
            raise RuntimeError(f"rows lost: {summary.line()}")  # a bug: never publish a lossy output
        publisher.publish()
    finally:
        publisher.discard()
        result.unpersist()
        small.unpersist()
        prepared.unpersist()
    summary.finish()
    print(summary.line() + f" | engine spark ({spark.sparkContext.master}, {k} partition(s))")
    print(f"cutoff {cutoff.date()} | scores -> {output} | rejects -> {rejects_path}")
    return summary
