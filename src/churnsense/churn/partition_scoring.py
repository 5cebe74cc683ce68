"""Scoring the partitions of a local churn run, in this process or in worker processes (one per core).

Partitions are independent (each holds every row of its customers), so they are scored in parallel by
`workers` processes, each with its own single-threaded ONNX Runtime session: on a small recurrent net, processes
over partitions scale with cores where onnxruntime's intra-op threads do not, and so does the pandas work around
the model (validation rules, snapshots, features, reasons). Results come back in partition order, so the output
is the same whatever the number of workers. Workers are spawned (never forked from a process holding ONNX
Runtime thread pools) and load the release once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from churnsense.churn.release import ChurnRelease
from churnsense.churn.score import score_churn_batch
from churnsense.core.drift import ProfileAccumulator
from churnsense.core.partition import PartitionFiles, partition_of
from churnsense.core.pool import WorkerPool
from churnsense.core.runs import peak_rss_mb
from churnsense.core.runtime import row_parallel_workers
from churnsense.data.contract import KINDS
from churnsense.monitoring.churn import scoring_values


@dataclass
class PartitionJob:
    """What scoring one partition needs besides the releases (picklable: sent with each partition to a worker)."""

    files: dict[str, PartitionFiles]
    primary: str
    cutoff: pd.Timestamp
    sources: dict[str, str]
    risk_bands: dict[str, float]
    batch_size: int
    text_column: str
    insights: bool
    rejects_detail: bool
    drift: tuple[Any, list[str], list[str]] | None = None  # (reference profile, categorical, numeric) or None
    rejected_ids: dict[int, set] = field(default_factory=dict)  # rejected customer ids by partition

    @classmethod
    def split_rejected(cls, ids: set, k: int) -> dict[int, set]:
        """Rejected customer ids grouped by their partition (a partition only needs its own)."""
        if not ids:
            return {}
        ids_list = list(ids)
        parts = partition_of(pd.Series(ids_list, dtype=object), k)
        out: dict[int, set] = {}
        for part, cid in zip(parts.tolist(), ids_list):
            out.setdefault(part, set()).add(cid)
        return out

    def for_part(self, part: int) -> PartitionJob:
        """This job with only partition `part`'s rejected ids (what a worker scoring it needs)."""
        return replace(self, rejected_ids={part: self.rejected_ids[part]} if part in self.rejected_ids else {})

    def score(
        self, part: int, release: ChurnRelease, feedback_release=None
    ) -> tuple[pd.DataFrame, pd.DataFrame, Any, int]:
        """(scores, rejects, drift counts or None, rows of the primary input) of partition `part` (its partition
        files are deleted once read: each partition is scored once)."""
        frames = {kind: self.files[kind].read(part, consume=True) if kind in self.files else None for kind in KINDS}
        return self.score_frames(frames, self.rejected_ids.get(part, set()), release, feedback_release)

    def score_frames(
        self, frames: dict[str, pd.DataFrame | None], rejected_ids: set, release: ChurnRelease, feedback_release=None
    ) -> tuple[pd.DataFrame, pd.DataFrame, Any, int]:
        """`score` of a partition's validated rows per table (with `_row`) and its rejected customer ids; empties
        `frames` (the tables are freed while scoring goes on)."""
        observed: list = []
        monitor = None
        if self.drift is not None:
            reference, categorical, numeric = self.drift

            def monitor(snapshot, scored) -> None:
                p = scored["churn_probability"].to_numpy()
                values = scoring_values(snapshot, p, reference, categorical, numeric)
                observed.append(ProfileAccumulator.count(reference, values))  # counts, not the rows, travel

        primary_rows = len(frames[self.primary])
        scored, rejects = score_churn_batch(
            *(frames.pop(kind, None) for kind in KINDS),  # scoring holds the only reference: freed once filtered
            release,
            self.cutoff,
            validated=True,
            sources=self.sources,
            rejected_ids=rejected_ids,
            risk_bands=self.risk_bands,
            batch_size=self.batch_size,
            feedback_release=feedback_release,
            text_column=self.text_column,
            insights=self.insights,
            monitor=monitor,
            rejects_detail=self.rejects_detail,
        )
        return scored, rejects, (observed[0] if observed else None), primary_rows


def worker_count(requested: int, partitions: int) -> int:
    """Processes to score `partitions` with: `requested` (0 = one per core), never more than the partitions."""
    return max(1, min(row_parallel_workers(requested) if requested <= 0 else int(requested), partitions))


_WORKER: dict[str, Any] = {}


def _start_worker(model_path: str, cfg: DictConfig, inputs: Mapping[str, str]) -> None:
    from churnsense.churn.serve import load_feedback_release  # the serving module imports this one

    slices = int(cfg.onnx_slice_rows)  # one thread: the slices run one after another (faster than one call)
    release = ChurnRelease.load(model_path, num_threads=1, tracking_uri=cfg.tracking_uri, slice_rows=slices)
    one_thread = OmegaConf.merge(cfg, {"num_threads": 1})
    _WORKER.update(release=release, feedback=load_feedback_release(one_thread, dict(inputs), release))


def scoring_pool(workers: int, release: ChurnRelease, cfg: DictConfig, inputs: Mapping[str, str]) -> WorkerPool:
    """The run's worker processes: each loads the release from `release.path` (one onnxruntime thread) and the
    feedback release once; they validate the input chunks first, then score the partitions."""
    return WorkerPool(workers, initializer=_start_worker, initargs=(str(release.path), cfg, dict(inputs)))


def _score_in_worker(task: tuple[PartitionJob, int]):
    """`PartitionJob.score` of a partition in a worker, with the worker's peak RSS (MiB) so far and the CPU
    seconds it took."""
    started = time.process_time()
    job, part = task
    scored = job.score(part, _WORKER["release"], _WORKER["feedback"])
    return (*scored, peak_rss_mb(), time.process_time() - started)


def score_partitions(
    job: PartitionJob, k: int, pool: WorkerPool, release: ChurnRelease, feedback_release
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, Any, int, float, float]]:
    """`job.score` of partitions 0..k-1, in order, each with the peak RSS (MiB) and CPU seconds of the worker
    that scored it (0 in this process): in this process (with `release` and `feedback_release`) when the pool has
    one worker, else in its workers (each gets the job with its partition's rejected ids only)."""
    if pool.workers <= 1:
        for part in range(k):
            yield (*job.score(part, release, feedback_release), 0.0, 0.0)
        return
    yield from pool.map(_score_in_worker, ((job.for_part(part), part) for part in range(k)))
