"""What a batch job tells its user: rows in = scored + rejected, throughput, peak memory, progress bars."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field

from tqdm.auto import tqdm


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB since its program started (Linux `VmHWM`; `ru_maxrss`
    elsewhere, which on Linux would also count a spawned worker's parent, inherited across fork + exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


@dataclass
class Stage:
    """Time of one stage of a run: wall seconds, CPU seconds of this process and of its worker processes."""

    name: str
    wall: float = 0.0
    cpu: float = 0.0
    worker_cpu: float = 0.0
    _started: tuple[float, float] = field(default=(0.0, 0.0), repr=False)

    def start(self) -> Stage:
        self._started = (time.perf_counter(), time.process_time())
        return self

    def stop(self) -> Stage:
        self.wall = time.perf_counter() - self._started[0]
        self.cpu = time.process_time() - self._started[1]
        return self

    def text(self) -> str:
        workers = f" + workers {self.worker_cpu:.1f} s" if self.worker_cpu else ""
        return f"{self.name} {self.wall:.1f} s (CPU: this process {self.cpu:.1f} s{workers})"


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
    worker_peak_mb: float = 0.0  # the largest peak RSS of one worker process
    stages: list[Stage] = field(default_factory=list)

    def stage(self, name: str) -> Stage:
        """A started `Stage` of this run (stop it with `.stop()`; listed by `stages_line`)."""
        self.stages.append(Stage(name).start())
        return self.stages[-1]

    def stages_line(self) -> str:
        """Where the time went, stage by stage (empty without stages)."""
        return ("stages: " + " | ".join(s.text() for s in self.stages)) if self.stages else ""

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
        # with workers: this process's peak plus every worker at the largest worker peak (a bound of the total)
        own = peak_rss_mb()
        peak = own + (self.workers * self.worker_peak_mb if self.workers > 1 else 0.0)
        parts = f" ({own:,.0f} + {self.workers} x {self.worker_peak_mb:,.0f})" if self.workers > 1 else ""
        return (
            f"[{self.task}] rows in {self.rows_in:,} = scored {self.scored:,} + rejected {self.rejected:,}"
            f"{extra} | {seconds:.1f} s, {rate:,.0f} rows/s, peak RSS {peak:,.0f} MiB{parts}{check}"
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
