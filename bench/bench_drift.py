"""Drift monitoring overhead of a churn scoring run — not a test.

    python bench/bench_drift.py [--customers 1000000] [--events 30000000] [--partitions 16]

Builds a reference profile from a 20k-customer training-like snapshot, then feeds a scoring run of `--customers`
customers and `--events` history rows, partition by partition, through exactly what `serve_churn` calls per
partition (`churn_observer` -> `DriftMonitor.add`), and compares + writes drift.json/html once (`finish`). Frames
have the demo's columns and the dtypes a real scoring snapshot has (object ids and categories, float numbers).
Only the monitoring work is timed (frame generation is not); compare it with the wall time of
`serve.py task=churn insights=false` on the same number of customers.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from churnsense.core.drift import DriftThresholds, ProfileSettings
from churnsense.data.framing import Snapshot
from churnsense.monitoring.churn import churn_observer, churn_reference_profile
from churnsense.monitoring.run import DriftMonitor
from churnsense.synth.events import EVENT_TYPES
from churnsense.synth.world import ATTRS, PLAN_PRICE

CATEGORICAL = ["plan", "contract", "payment_method", "region", "language", "age_band"]
NUMERIC = ["monthly_charge", "n_lines", "tenure_days"]
THRESHOLDS = DriftThresholds(
    psi=0.2, new_category_share=0.001, min_rows=100, max_drifted_share=0.0, epsilon=1e-4, max_new_categories=50
)


def distinct(values: np.ndarray) -> np.ndarray:
    """One Python string object per row (as rows read from a file are): no shared, pre-hashed objects."""
    return values.astype(object)


def snapshot(rng: np.random.Generator, first_id: int, n: int, n_events: int, cutoff: pd.Timestamp) -> Snapshot:
    """A scoring snapshot of `n` customers with `n_events` history rows and 0.6 feedback messages each."""
    ids = pd.Index(np.char.add("C", np.arange(first_id, first_id + n).astype(str)).astype(object))
    static = pd.DataFrame({"customer_id": ids, "cutoff": cutoff})
    for c in CATEGORICAL:
        values, probs = ATTRS[c]
        static[c] = np.asarray(values, dtype=object)[rng.choice(len(values), n, p=np.asarray(probs) / sum(probs))]
    static["monthly_charge"] = static["plan"].map(PLAN_PRICE).to_numpy(float) * rng.uniform(0.9, 1.1, n)
    static["n_lines"] = rng.integers(1, 5, n).astype(float)
    static["tenure_days"] = rng.exponential(500, n)
    who = np.sort(rng.integers(0, n, n_events))
    history = pd.DataFrame(
        {
            "customer_id": distinct(np.char.add("C", (first_id + who).astype(str))),
            "cutoff": cutoff,
            "event_type": distinct(np.asarray(EVENT_TYPES)[rng.integers(0, len(EVENT_TYPES), n_events)]),
            "value": rng.exponential(3, n_events),
        }
    )
    n_fb = int(0.6 * n)
    feedback = pd.DataFrame(
        {
            "customer_id": ids.to_numpy()[rng.integers(0, n, n_fb)],
            "language": np.asarray(["en", "ru", "uk", "he"], dtype=object)[rng.integers(0, 4, n_fb)],
            "text": np.asarray(["the app keeps crashing", "спасибо, всё работает", "дуже повільно"], dtype=object)[
                rng.integers(0, 3, n_fb)
            ],
        }
    )
    return Snapshot(static=static, history=history, feedback=feedback)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=30_000_000)
    parser.add_argument("--partitions", type=int, default=16)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cutoff = pd.Timestamp("2026-01-01")
    ref_snap = snapshot(rng, 0, 20_000, 600_000, cutoff)
    started = time.perf_counter()
    reference = churn_reference_profile(ref_snap, CATEGORICAL, NUMERIC, ProfileSettings(), rng.beta(1, 6, 20_000), 0.2)
    print(f"reference profile of 20,000 customers / 600,000 events: {time.perf_counter() - started:.2f} s")
    monitor = DriftMonitor(reference, THRESHOLDS)
    observe = churn_observer(monitor, CATEGORICAL, NUMERIC)
    per = -(-args.customers // args.partitions)
    for k in range(args.partitions):
        n = min(per, args.customers - k * per)
        snap = snapshot(rng, 20_000 + k * per, n, args.events * n // args.customers, cutoff)
        observe(snap, pd.DataFrame({"churn_probability": rng.beta(1, 6, n)}))
    added = monitor.seconds
    with tempfile.TemporaryDirectory() as tmp:
        report = monitor.finish(Path(tmp) / "scores.csv", "churn")
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
    print(
        f"{args.customers:,} customers, {args.events:,} events in {args.partitions} partitions: accumulate "
        f"{added:.2f} s, compare + write {monitor.seconds - added:.2f} s, total {monitor.seconds:.2f} s "
        f"({report.summary['drifted']} drifted of {report.summary['tested']}; files {size / 1024:.0f} KiB)"
    )


if __name__ == "__main__":
    main()
