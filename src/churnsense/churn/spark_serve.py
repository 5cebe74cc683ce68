"""`python serve.py task=churn engine=spark [spark.master=spark://host:7077] input.customers=… output=DIR`: churn
batch scoring on Spark, the same rows as the local engine.

Spark reads every input (with each row's 1-based number in its file), puts all rows of a customer, from every
table, in one partition (`repartition` by customer id), sorts each partition by customer and hands it to
`score_churn_batch` in frames of whole customers (`mapInPandas`): validation, rejects, features, the ONNX model
(one session per Python worker, loaded once from the release shipped to every executor) and insights run
unchanged. Scores and rejects are written as Parquet datasets (folders of part files) and published together.
Drift monitoring and the CRM export run with the local engine only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from churnsense.churn.release import ChurnRelease
from churnsense.churn.score import score_churn_batch
from churnsense.churn.serve import load_feedback_release, resolve_inputs
from churnsense.core import io
from churnsense.core.rejects import REJECT_COLUMNS, relative_source
from churnsense.core.runs import RunSummary
from churnsense.core.spark import (
    ROW,
    DatasetPublisher,
    complete_groups,
    conform,
    on_worker,
    read_rows,
    restore_nanos,
    ship,
    spark_schema,
    spark_session,
)
from churnsense.data.contract import KINDS
from churnsense.data.framing import history_days, scoring_cutoff
from churnsense.data.validation import read_columns, validate_chunk
from churnsense.feedback.release import load_release

log = logging.getLogger(__name__)
KEY, KIND, PART = "_key", "_kind", "_part"  # customer id as text, input table, output part (scores / rejects)
REJECT = {c: f"_reject_{c}" for c in REJECT_COLUMNS if c != "customer_id"}  # reject columns beside the scores'


def prefixed(kind: str, column: str) -> str:
    """A table's column in the one wide frame that carries every table's rows."""
    return f"{kind}__{column}"


@dataclass(frozen=True)
class ChurnPartitions:
    """Scores one Spark partition (`mapInPandas`); pickled to the executors with everything it needs."""

    release: str  # shipped release folder names (`core.spark.ship`)
    feedback_release: str | None
    threads: int
    inputs: dict[str, str]  # kind -> input path (the rejects' `source`)
    columns: dict[str, list[str]]  # kind -> source columns read
    nanos: dict[str, list[str]]  # kind -> columns to `restore_nanos`
    cutoff: pd.Timestamp
    risk_bands: dict[str, float]
    batch_size: int
    min_rows: int
    text_column: str
    insights: bool
    schema: T.StructType
    rejects_detail: bool = False

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in complete_groups(batches, KEY, self.min_rows):
            yield self.score(frame)

    def tables(self, frame: pd.DataFrame) -> dict[str, pd.DataFrame | None]:
        """The wide frame split back into the input tables, with their source columns and `_row`."""
        out: dict[str, pd.DataFrame | None] = dict.fromkeys(KINDS)
        for kind, columns in self.columns.items():
            rows = frame[frame[KIND] == kind]
            table = pd.DataFrame({c: rows[prefixed(kind, c)].to_numpy() for c in columns})
            table[ROW] = rows[ROW].to_numpy(dtype="int64")
            out[kind] = restore_nanos(table, self.nanos.get(kind, []))
        return out

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        release = on_worker(self.release, _load_churn, self.threads)
        feedback = on_worker(self.feedback_release, _load_feedback, self.threads) if self.feedback_release else None
        t = self.tables(frame)
        scored, rejects = score_churn_batch(
            t["customers"],
            t["events"],
            t["feedback"],
            release,
            self.cutoff,
            sources=self.inputs,
            risk_bands=self.risk_bands,
            batch_size=self.batch_size,
            feedback_release=feedback,
            text_column=self.text_column,
            insights=self.insights,
            rejects_detail=self.rejects_detail,
        )
        rejects = rejects.rename(columns=REJECT).assign(**{PART: "rejects"})
        return conform(pd.concat([scored.assign(**{PART: "scores"}), rejects], ignore_index=True), self.schema)


def _load_churn(path: str, threads: int) -> ChurnRelease:
    return ChurnRelease.load(path, num_threads=threads)


def _load_feedback(path: str, threads: int):
    return load_release(path, threads=threads)


def read_inputs(
    spark: SparkSession, inputs: Mapping[str, str], release: ChurnRelease
) -> tuple[DataFrame, dict[str, list[str]], dict[str, list[str]], dict[str, DataFrame]]:
    """Every input in one frame (customer id as text `_key`, table `_kind`, `_row`, the table's columns
    prefixed), the source columns and nanosecond columns per table, and each table's own frame."""
    frames, columns, nanos, parts = {}, {}, {}, []
    for kind, path in inputs.items():
        table = release.spec.table(kind)
        columns[kind] = read_columns(table, kind, io.table_columns(path, table.read_options))
        frames[kind], nanos[kind] = read_rows(spark, path, columns[kind], table.read_options)
        key = table.source("customer_id")
        parts.append(
            frames[kind].select(
                (F.col(f"`{key}`").cast("string") if key in columns[kind] else F.lit(None).cast("string")).alias(KEY),
                F.lit(kind).alias(KIND),
                F.col(ROW),
                *[F.col(f"`{c}`").alias(prefixed(kind, c)) for c in columns[kind]],
            )
        )
    wide = parts[0]
    for part in parts[1:]:
        wide = wide.unionByName(part, allowMissingColumns=True)
    return wide, columns, nanos, frames


def valid_history_days(
    frames: Mapping[str, DataFrame],
    columns: Mapping[str, list[str]],
    nanos: Mapping[str, list[str]],
    inputs: Mapping[str, str],
    release: ChurnRelease,
) -> pd.Series:
    """Rows per day of the valid event / feedback rows (`history_days`: what the local engine's cutoff rule sees)."""
    parts = []
    for kind in ("events", "feedback"):
        if kind not in frames:
            continue
        table, path = release.spec.table(kind), inputs[kind]

        def per_day(batches: Iterator[pd.DataFrame], table=table, kind=kind, path=path) -> Iterator[pd.DataFrame]:
            for raw in batches:
                valid, _ = validate_chunk(restore_nanos(raw.drop(columns=[ROW]), nanos[kind]), table, kind, path)
                days = history_days(valid)
                yield pd.DataFrame({"day": days.index.astype("datetime64[us]"), "n": days.to_numpy()})

        counted = frames[kind].mapInPandas(per_day, "day timestamp_ntz, n long").groupBy("day").agg(F.sum("n"))
        parts += [(pd.Timestamp(day), int(n)) for day, n in counted.collect()]
    if not parts:
        return history_days()
    days = pd.Series([n for _, n in parts], index=pd.DatetimeIndex([d for d, _ in parts]), dtype="int64")
    return days.groupby(level=0).sum().sort_index()


def output_schema(
    release: ChurnRelease,
    inputs: Mapping[str, str],
    columns: Mapping[str, list[str]],
    cfg: DictConfig,
    feedback_release,
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
        feedback_release=feedback_release,
        text_column=str(cfg.text_column),
        insights=bool(cfg.insights),
    )
    extra = {name: (T.LongType() if c in ("row", "rows") else T.StringType()) for c, name in REJECT.items()}
    return spark_schema(scored, {**extra, PART: T.StringType()})


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
    wide, columns, nanos, frames = read_inputs(spark, inputs, release)
    days = None
    if not (cfg.cutoff is not None and str(cfg.cutoff)):
        days = valid_history_days(frames, columns, nanos, inputs, release)
    cutoff = scoring_cutoff(release.spec.framing, cfg.cutoff, days)
    schema = output_schema(release, inputs, columns, cfg, feedback_release)
    job = ChurnPartitions(
        ship(spark, release.path),
        ship(spark, feedback_release.path if feedback_release else None),
        int(cfg.spark.onnx_threads),
        dict(inputs),
        columns,
        nanos,
        cutoff,
        dict(cfg.risk_bands),
        int(cfg.batch_size),
        int(cfg.spark.rows_per_batch),
        str(cfg.text_column),
        bool(cfg.insights),
        schema,
        bool(cfg.rejects_detail),
    )
    n = int(cfg.spark.partitions) or spark.sparkContext.defaultParallelism
    result = wide.repartition(n, KEY).sortWithinPartitions(KEY, KIND, ROW).mapInPandas(job, schema).persist()
    publisher = DatasetPublisher()
    try:
        scored = result.filter(F.col(PART) == "scores").drop(PART, *REJECT.values())
        rejects = result.filter(F.col(PART) == "rejects").select(
            *[F.col(REJECT.get(c, c)).alias(c) for c in REJECT_COLUMNS]
        )
        relative = {p: relative_source(p, rejects_path.parent) for p in inputs.values()}  # as the local engine
        publisher.write(scored, output)
        publisher.write(rejects.replace(relative, subset=["source"]), rejects_path)
        by_source = dict(rejects.groupBy("source").agg(F.sum("rows")).collect())  # input rows per source
        primary = "customers" if "customers" in inputs else "events"
        summary.rows_in = frames[primary].count()
        summary.rejected = int(by_source.get(inputs[primary], 0))
        scored_customers = scored.count()
        summary.scored = scored_customers if primary == "customers" else summary.rows_in - summary.rejected
        summary.other_rejected = {k: int(by_source.get(p, 0)) for k, p in inputs.items() if k != primary}
        if not summary.balanced:
            raise RuntimeError(f"rows lost: {summary.line()}")  # a bug: never publish a lossy output
        publisher.publish()
    finally:
        publisher.discard()
        result.unpersist()
    summary.finish()
    print(summary.line() + f" | engine spark ({spark.sparkContext.master}, {n} partition(s))")
    print(f"cutoff {cutoff.date()} | scores -> {output} | rejects -> {rejects_path}")
    return summary
