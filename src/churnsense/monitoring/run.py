"""`DriftMonitor`: one scoring run's drift check against the reference profile saved in its release.

Fed partition by partition (`add`), compared once (`finish`): writes `<output stem>.drift.json` and `.drift.html`
next to the scores, logs them to MLflow (when `drift.mlflow.enabled`) and prints one line when a feature drifted.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from churnsense.core.drift import DriftReport, DriftThresholds, Profile, ProfileAccumulator, Values, compare
from churnsense.core.drift_report import alert_line, drift_paths, write_drift_html, write_drift_json
from churnsense.core.tracking import TrackedRun, run_name

REFERENCE_FILE = "drift_reference.json"
log = logging.getLogger(__name__)


def log_to_mlflow(
    report: DriftReport, files: list[Path], task: str, info: Mapping[str, Any], cfg: Mapping[str, Any]
) -> str | None:
    """One MLflow run per scoring run (experiment `cfg["experiment_name"]`): PSI per feature, drifted share and
    count, pass/fail and the run's files as tags, drift.json + drift.html as artifacts; returns its run id."""
    s = report.summary
    run = TrackedRun.start(
        {**cfg, "enabled": True},
        run_name("drift", task, Path(str(info.get("scores", ""))).stem),
        {
            "task": task,
            "drift.passed": str(s["passed"]),
            "drift.drifted_features": ",".join(s["drifted_features"]) or "-",
            **{f"drift.{k}": str(v) for k, v in info.items()},
        },
    )
    metrics = {"drift/drifted_share": s["drifted_share"], "drift/drifted": s["drifted"], "drift/tested": s["tested"]}
    metrics.update({f"drift/psi/{_metric_name(f.name)}": f.value for f in report.features if f.value is not None})
    run.log_metrics(metrics)
    for path in files:
        run.log_artifacts({"drift": path})
    run.end()
    return run.run_id


def _metric_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.\- ]", "_", name)


class DriftMonitor:
    """Accumulates a run's counts in the reference's bins and compares them at the end."""

    def __init__(
        self, reference: Profile, thresholds: DriftThresholds, source: str = "", mlflow: Mapping[str, Any] | None = None
    ):
        self.reference, self.thresholds, self.source = reference, thresholds, source
        self.mlflow = dict(mlflow) if mlflow and mlflow.get("enabled") else None
        self.accumulator = ProfileAccumulator(reference, thresholds.max_new_categories)
        self.seconds = 0.0  # time spent in add + finish (the monitoring overhead of the run)

    def add(self, values: Mapping[str, Values]) -> None:
        """Count one partition's `{feature: values}`."""
        started = time.perf_counter()
        self.accumulator.add(values)
        self.seconds += time.perf_counter() - started

    def add_counts(self, counts: Mapping[str, Any]) -> None:
        """Add one partition's counts (`ProfileAccumulator.count`, made where the partition was scored)."""
        started = time.perf_counter()
        self.accumulator.add_counts(counts)
        self.seconds += time.perf_counter() - started

    def finish(self, output: str | Path, task: str, meta: Mapping[str, Any] | None = None) -> DriftReport:
        """Compare, write drift.json + drift.html beside `output`, print the alert line if a feature drifted."""
        started = time.perf_counter()
        current = self.accumulator.profile()
        report = compare(self.reference, current, self.thresholds)
        json_path, html_path = drift_paths(output)
        info = {
            "task": task,
            "scores": str(output),
            "reference": self.source,
            **dict(meta or {}),
            "accumulate_seconds": round(self.seconds, 3),
        }
        write_drift_json(report, current, json_path, info)
        write_drift_html(report, html_path, f"Drift of {Path(output).name} against its training reference", info)
        if self.mlflow is not None:
            try:
                log_to_mlflow(report, [json_path, html_path], task, info, self.mlflow)
            except Exception as err:  # the scores are published already: a tracking outage must not fail the run
                log.warning("drift: not logged to MLflow (%s: %s)", type(err).__name__, err)
        self.seconds += time.perf_counter() - started
        line = alert_line(report, task, html_path)
        if line:
            print(line)
        log.info(
            "drift: %d/%d features drifted (%.2f s) -> %s",
            report.summary["drifted"],
            report.summary["tested"],
            self.seconds,
            html_path,
        )
        return report


def open_monitor(
    release_dir: str | Path, cfg: Mapping[str, Any] | None, tracking_uri: str | None = None
) -> DriftMonitor | None:
    """The run's monitor: None when `cfg` (the `drift` config block) is absent or disabled, or when the release
    has no reference profile (older release: warned once, scoring goes on). `tracking_uri`: the MLflow store."""
    if not cfg or not cfg.get("enabled", False):
        return None
    path = Path(release_dir) / REFERENCE_FILE
    if not path.is_file():
        log.warning(
            "drift monitoring skipped: %s has no %s (retrain the release to add one)", release_dir, REFERENCE_FILE
        )
        return None
    settings = {k: v for k, v in cfg.items() if k != "mlflow"}
    mlflow = {**cfg["mlflow"], "tracking_uri": tracking_uri} if cfg.get("mlflow") else None
    return DriftMonitor(Profile.load(path), DriftThresholds.from_config(settings), str(path), mlflow)
