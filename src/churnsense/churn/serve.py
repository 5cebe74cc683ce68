"""`python serve.py task=churn input.customers=FILE input.events=FILE [input.feedback=FILE] output=FILE`.

Memory stays bounded whatever the file sizes: (1) one streaming pass per input validates rows chunk by chunk
(bad rows -> rejects with file and row number) and hash-partitions the good ones by customer id into K temporary
Arrow IPC files (each worker writes the rows it validated); (2) each partition, holding all rows of its
customers, is scored with `score_churn_batch` and appended to the output in partition order, which is published
atomically together with the rejects file. Both stages run on the same `workers` processes
(`churn.partition_scoring.scoring_pool`): they validate the chunks this process reads, then score the
partitions; results come back in order, so the files are the same whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from churnsense.churn.partition_scoring import PartitionJob, score_partitions, scoring_pool, worker_count
from churnsense.churn.release import ChurnRelease
from churnsense.core import io
from churnsense.core.partition import PartitionFiles, choose_partitions
from churnsense.core.pool import WorkerPool
from churnsense.core.rejects import RejectsWriter, rejects_path_for
from churnsense.core.release import MLFLOW_SCHEMES
from churnsense.core.runs import RunSummary, Stage, progress
from churnsense.core.scratch import scratch_dir
from churnsense.data.chunks import ChunkTask, close_partition_files, prepare_chunk
from churnsense.data.contract import KINDS
from churnsense.data.framing import add_days, history_end, scoring_cutoff
from churnsense.data.validation import read_columns
from churnsense.feedback.release import FeedbackRelease, load_release
from churnsense.insights.crm_export import CrmExport, export_dir_for
from churnsense.insights.value import revenue_notice
from churnsense.monitoring.run import open_monitor

log = logging.getLogger(__name__)
PARTS_PREFIX = "churnsense-parts-"


@dataclass
class PassResult:
    """What the partitioning pass learned: the partition files and rows per input, rejected customer ids,
    history rows per day."""

    files: dict[str, PartitionFiles] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    rejected_ids: set = field(default_factory=set)
    days: pd.Series | None = None


def resolve_inputs(cfg: DictConfig, release: ChurnRelease) -> dict[str, str]:
    """Input files the release can use; warns about given files it cannot, errors on a missing required one."""
    given = {k: str(cfg.input[k]) for k in KINDS if cfg.input.get(k)}
    for kind in list(given):
        if release.spec.table(kind) is None:
            log.warning("input.%s ignored: release %s was trained without a %s table", kind, release.path, kind)
            given.pop(kind)
        else:  # a missing file, a folder, a 0-byte file or a broken header: one clear error before any work
            io.table_columns(given[kind], release.spec.table(kind).read_options)
    if release.spec.customers is not None and "customers" not in given:
        raise ValueError(f"input.customers is required: release {release.path} scores customer attributes")
    if "customers" not in given and "events" not in given:
        raise ValueError("give input.events (this release derives its customers from events)")
    for kind in ("events", "feedback"):
        if release.spec.table(kind) is not None and kind not in given:
            log.warning("no input.%s: scoring without %s history (the release was trained with it)", kind, kind)
    return given


def partition_inputs(
    inputs: dict[str, str],
    release: ChurnRelease,
    k: int,
    tmp: Path,
    chunk_size: int,
    rejects: RejectsWriter,
    show_progress: bool,
    pool: WorkerPool,
    stage: Stage,
    chunk_cells: int = 0,
) -> PassResult:
    """Validate every input chunk by chunk, write rejects, hash-partition the valid rows into `tmp`. This process
    reads the chunks; the pool's workers validate them, group the valid rows by partition and write them to their
    own partition files (`data.chunks.prepare_chunk`), which every worker closes at the end. Rejects are written
    here in input order and partitions read back in input order, so the files are the same whatever the number of
    workers."""
    result = PassResult()
    bars = {}
    for kind, path in inputs.items():
        result.rows[kind] = 0
        bars[kind] = progress(io.count_rows(path), f"read {kind}", show_progress)
    try:
        for done in pool.map(prepare_chunk, chunk_tasks(inputs, release, k, chunk_size, tmp, chunk_cells)):
            rejects.write(done.rejects)
            result.rejected_ids.update(done.rejected_ids)
            result.days = add_days(result.days, done.days)
            result.rows[done.kind] += done.rows
            bars[done.kind].update(done.rows)
            stage.worker_cpu += done.cpu if pool.workers > 1 else 0.0
        written = pool.on_each_worker(close_partition_files, str(tmp))
    finally:
        close_partition_files(str(tmp))  # this process's own writers (`workers=1`), also after a failed pass
    for kind in inputs:
        result.files[kind] = PartitionFiles.combine(tmp, [files[kind] for files in written if kind in files])
        bars[kind].close()
    if result.days is not None:
        result.days = result.days.astype("int64")
    return result


def chunk_rows(chunk_size: int, chunk_cells: int, columns: int) -> int:
    """Rows per input chunk: `chunk_size` when set (> 0), else about `chunk_cells` values: a narrow events file is
    read in long chunks (validation costs per column and chunk, so long chunks are cheaper per row), a wide
    customers file in shorter ones (the memory of a chunk stays about the same)."""
    return int(chunk_size) if chunk_size > 0 else max(1, int(chunk_cells) // max(1, columns))


def chunk_tasks(
    inputs: dict[str, str], release: ChurnRelease, k: int, chunk_size: int, tmp: Path, chunk_cells: int = 0
) -> Iterator[ChunkTask]:
    """Every input's rows (only the columns scoring reads; rows per chunk from `chunk_rows`), in input order, as
    tasks for `prepare_chunk` (valid rows partitioned into `k` files per worker in `tmp`). A Parquet file of several
    row groups is handed out one row group per task, which the worker reads itself (decoding spread over the
    workers); other files are read here, chunk by chunk."""
    for kind, path in inputs.items():
        table = release.spec.table(kind)
        columns = read_columns(table, kind, io.table_columns(path, table.read_options))
        rows = chunk_rows(chunk_size, chunk_cells, len(columns))
        task = functools.partial(ChunkTask, kind, table, path, partitions=k, directory=str(tmp))
        groups = io.parquet_row_groups(path)
        if len(groups) > 1:
            for group, first_row in groups:
                yield task(first_row, None, row_group=group, chunk_rows=rows, columns=columns)
            continue
        for first_row, chunk in io.iter_tables(path, rows, columns=columns, read_options=table.read_options):
            yield task(first_row, io.to_ipc(chunk))


def load_feedback_release(cfg: DictConfig, inputs: dict[str, str], release: ChurnRelease) -> FeedbackRelease | None:
    """The feedback release that fills a missing `sentiment` column, when configured and available."""
    if "feedback" not in inputs or not cfg.feedback_model:
        return None
    table = release.spec.feedback
    if table.source("sentiment") in io.table_columns(inputs["feedback"], table.read_options):
        return None
    if not str(cfg.feedback_model).startswith(MLFLOW_SCHEMES) and not Path(cfg.feedback_model).exists():
        log.warning("feedback_model %s not found: feedback sentiment left unknown", cfg.feedback_model)
        return None
    return load_release(cfg.feedback_model, threads=int(cfg.num_threads), tracking_uri=cfg.tracking_uri)


def crm_export_for(cfg: DictConfig, output: Path, release=None) -> contextlib.AbstractContextManager:
    """The run's CRM export (published after the scores, discarded when the run fails); a null context when
    `crm_export.enabled` is off or insights are off (the export is built from the insight columns)."""
    if not cfg.crm_export.enabled or not cfg.insights:
        return contextlib.nullcontext()
    target = Path(cfg.crm_export.dir) if cfg.crm_export.dir else export_dir_for(output)
    limits = ((release.insights_config if release is not None else None) or {}).get("decisions")
    return CrmExport(target, list(cfg.crm_export.formats), list(cfg.crm_export.split_by), limits)


def cutoff_rule(cfg: DictConfig, release: ChurnRelease, days: pd.Series | None) -> str:
    """How the scoring date was chosen, for the run's last lines (empty for an explicit cutoff)."""
    if cfg.cutoff:
        return ""
    framing = release.spec.framing
    if framing.label_mode == "label" and framing.reference_date:
        return " (the release's reference date)"
    return " (day after the history's end)" if days is not None and len(days) else " (today: no history given)"


def outputs_of(cfg: DictConfig) -> dict[str, Path]:
    """The files and folders a churn run writes (config key -> path)."""
    output = Path(cfg.output)
    outputs = {"output": output, "rejects": Path(cfg.rejects) if cfg.rejects else rejects_path_for(output)}
    if cfg.crm_export.enabled and cfg.insights:
        outputs["crm_export.dir"] = Path(cfg.crm_export.dir) if cfg.crm_export.dir else export_dir_for(output)
    return outputs


def serve_churn(cfg: DictConfig) -> RunSummary:
    """Composition root of churn batch scoring; prints and returns the run summary."""
    release = ChurnRelease.load(
        str(cfg.model),
        num_threads=int(cfg.num_threads),
        tracking_uri=cfg.tracking_uri,
        slice_rows=int(cfg.onnx_slice_rows),
    )
    inputs = resolve_inputs(cfg, release)
    outputs = outputs_of(cfg)
    io.check_outputs_apart(outputs, {f"input.{kind}": path for kind, path in inputs.items()})
    feedback_release = load_feedback_release(cfg, inputs, release)
    output, rejects_path = outputs["output"], outputs["rejects"]
    files = list(inputs.values())
    workers = worker_count(int(cfg.workers), choose_partitions(files, int(cfg.partitions)))
    k = choose_partitions(files, int(cfg.partitions), workers)
    primary = "customers" if "customers" in inputs else "events"
    summary = RunSummary(task="churn")
    show = bool(cfg.progress)
    if cfg.insights:
        attributes = release.spec.customers.attributes if release.spec.customers is not None else []
        notice = revenue_notice(release.insights_config, attributes, release.pipeline.event_type_names)
        if notice:
            print(f"notice: {notice}")
    monitor = open_monitor(release.path, cfg.drift, cfg.tracking_uri)  # drift of this run vs the release's reference
    scores_writer, rejects_writer = io.AtomicTableWriter(output), RejectsWriter(rejects_path)
    with (
        crm_export_for(cfg, output, release) as crm,
        scratch_dir(cfg.tmp_dir, PARTS_PREFIX) as tmp,
        io.publish_together(scores_writer, rejects_writer) as (writer, rejects),
        scoring_pool(workers, release, cfg, inputs) as pool,
    ):
        stage = summary.stage("read+validate+partition")
        parts = partition_inputs(
            inputs, release, k, tmp, int(cfg.chunk_size), rejects, show, pool, stage, int(cfg.chunk_cells)
        )
        stage.stop()
        cutoff = scoring_cutoff(release.spec.framing, cfg.cutoff, parts.days)
        job = PartitionJob(
            files=parts.files,
            primary=primary,
            cutoff=cutoff,
            sources=inputs,
            risk_bands=dict(cfg.risk_bands),
            batch_size=int(cfg.batch_size),
            text_column=str(cfg.text_column),
            insights=bool(cfg.insights),
            rejects_detail=bool(cfg.rejects_detail),
            drift=(monitor.reference, release.pipeline.categorical, release.pipeline.numeric) if monitor else None,
            rejected_ids=PartitionJob.split_rejected(parts.rejected_ids, k),
        )
        summary.workers = workers
        scored_customers = 0
        bar = progress(parts.rows[primary], "score", show)
        stage = summary.stage("score")
        for scored, rej, values, rows, worker_peak, cpu in score_partitions(job, k, pool, release, feedback_release):
            stage.worker_cpu += cpu
            summary.worker_peak_mb = max(summary.worker_peak_mb, worker_peak)
            writer.write(scored)
            rejects.write(rej)
            if crm is not None:
                crm.add(scored)
            if monitor is not None and values is not None:
                monitor.add_counts(values)
            scored_customers += len(scored)
            bar.update(rows)
        bar.close()
        stage.stop()
        summary.rows_in = parts.rows[primary]
        summary.rejected = rejects.by_source.get(inputs[primary], 0)
        summary.scored = scored_customers if primary == "customers" else summary.rows_in - summary.rejected
        summary.other_rejected = {
            kind: rejects.by_source.get(path, 0) for kind, path in inputs.items() if kind != primary
        }
        if not summary.balanced:
            raise RuntimeError(f"rows lost: {summary.line()}")  # a bug: never publish a lossy output
    summary.finish()
    unit = "" if primary == "customers" else f" ({scored_customers:,} customers from events)"
    print(summary.line() + unit)
    rule = cutoff_rule(cfg, release, parts.days)
    print(
        f"cutoff {cutoff.date()}{rule} | {k} partition(s), {summary.workers} worker(s) | scores -> {output} | "
        f"rejects -> {rejects_path}"
    )
    print(summary.stages_line())
    outliers = history_end(parts.days, release.spec.framing) if not cfg.cutoff and parts.days is not None else None
    if outliers is not None and outliers.outliers:
        print(f"notice: {outliers.describe()}")
    if monitor is not None:
        monitor.finish(output, "churn", {"cutoff": str(cutoff.date()), "release": str(release.path)})
    if crm is not None:
        held = len(crm.held) if crm.held is not None else 0
        print(f"CRM export: {len(crm.calls):,} call-list rows ({held:,} held back by budget/capacity) -> {crm.target}")
    return summary
