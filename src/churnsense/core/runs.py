"""What a batch job tells its user: rows in = scored + rejected, throughput, peak memory, progress bars."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field

from tqdm.auto import tqdm


def peak_rss_mb(workers: int = 0) -> float:
    """Peak resident set size in MiB of this process, plus `workers` times the largest peak of its finished child
    processes (worker pools): an upper bound of what the job held at once."""
    scale = (1 << 20) if sys.platform == "darwin" else 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if workers > 0 else 0
    return (peak + workers * child) / scale


@dataclass
class RunSummary:
    """Counts and timing of one batch job; `line()` is the one line printed at the end.

    `rows_in` counts the rows of the primary input (customers for churn); `rejected` counts those of them that went
    to the rejects file, so `rows_in == scored + rejected` must hold. `other_rejected` lists rejected rows of
    secondary inputs (events, feedback) by name.
    """

    task: str
    rows_in: int = 0
    scored: int = 0
    rejected: int = 0
    other_rejected: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    seconds: float | None = None
    workers: int = 1  # processes that did the work (more than 1: worker processes, counted in the peak RSS)

    def finish(self) -> RunSummary:
        """Stop the clock."""
        self.seconds = time.perf_counter() - self.started
        return self

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.scored + self.rejected

    def line(self) -> str:
        seconds = self.seconds if self.seconds is not None else time.perf_counter() - self.started
        rate = self.rows_in / seconds if seconds > 0 else float("inf")
        extra = "".join(f" | {name} rows rejected {count:,}" for name, count in self.other_rejected.items())
        check = "" if self.balanced else "  [MISMATCH: rows in != scored + rejected]"
        peak = peak_rss_mb(self.workers if self.workers > 1 else 0)
        return (
            f"[{self.task}] rows in {self.rows_in:,} = scored {self.scored:,} + rejected {self.rejected:,}"
            f"{extra} | {seconds:.1f} s, {rate:,.0f} rows/s, peak RSS {peak:,.0f} MiB{check}"
        )


def progress(total: int | None, desc: str, enabled: bool = True) -> tqdm:
    """A rows progress bar on stderr (disabled when `enabled` is false); call `.update(n)` per chunk."""
    return tqdm(
        total=total,
        desc=desc,
        unit="rows",
        unit_scale=True,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )
