"""What the churn model's drift monitoring watches, computed the same way at training and at scoring time.

From a `Snapshot` (the model's view of the customers at a cutoff) and the churn probabilities:
- input: every static categorical / numeric column the feature pipeline uses (e.g. plan, language, monthly_charge,
  tenure_days);
- derived: `event_type` (mix of the history rows the model reads), `events_per_customer`, and, when feedback is
  there, `feedback_language` and `feedback_text_length`;
- prediction: `churn_probability` and `at_risk` (probability >= the release's at-risk threshold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from churnsense.core.drift import Profile, ProfileSettings, reference_profile
from churnsense.data.framing import Snapshot
from churnsense.monitoring.run import DriftMonitor

AT_RISK, NOT_AT_RISK = "at risk", "not at risk"


def events_per_customer(snapshot: Snapshot) -> np.ndarray:
    """History rows per static row (customer at a cutoff), zeros included."""
    st, h = snapshot.static, snapshot.history
    if len(h) == 0:
        return np.zeros(len(st), dtype=np.int64)
    if st["cutoff"].nunique() <= 1:  # scoring: one cutoff, count by customer only (cheap)
        counts = h["customer_id"].value_counts(sort=False)
        return st["customer_id"].map(counts).fillna(0).to_numpy(dtype=np.int64)
    counts = h.groupby(["customer_id", "cutoff"], sort=False).size()
    keys = pd.MultiIndex.from_frame(st[["customer_id", "cutoff"]])
    return counts.reindex(keys).fillna(0).to_numpy(dtype=np.int64)


def snapshot_values(
    snapshot: Snapshot, categorical: Sequence[str], numeric: Sequence[str]
) -> dict[str, tuple[str, Any]]:
    """`{feature: (group, values)}` of the inputs and derived summaries of one snapshot."""
    st = snapshot.static
    out: dict[str, tuple[str, Any]] = {c: ("input", st[c]) for c in categorical if c in st}
    out.update({c: ("input", pd.to_numeric(st[c], errors="coerce")) for c in numeric if c in st})
    out["event_type"] = ("derived", snapshot.history["event_type"])
    out["events_per_customer"] = ("derived", events_per_customer(snapshot))
    fb = snapshot.feedback
    if fb is not None and len(fb):
        if "language" in fb:
            out["feedback_language"] = ("derived", fb["language"])
        if "text" in fb:
            out["feedback_text_length"] = ("derived", fb["text"].astype("string").str.len().astype("float64"))
    return out


def prediction_values(probability: np.ndarray, at_risk_threshold: float) -> dict[str, tuple[str, Any]]:
    """`{feature: (group, values)}` of the score distribution and the at-risk share."""
    p = np.asarray(probability, dtype="float64")
    flag = np.where(p >= at_risk_threshold, AT_RISK, NOT_AT_RISK).astype(object)
    return {"churn_probability": ("prediction", p), "at_risk": ("prediction", pd.Series(flag, dtype=object))}


def churn_reference_profile(
    snapshot: Snapshot,
    categorical: Sequence[str],
    numeric: Sequence[str],
    settings: ProfileSettings,
    probability: np.ndarray | None = None,
    at_risk_threshold: float | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Profile:
    """Reference profile of a churn release: inputs and derived summaries of `snapshot` (the training split) and,
    when given, the prediction distribution of `probability` (the calibrated validation predictions)."""
    values = snapshot_values(snapshot, categorical, numeric)
    info = {"task": "churn", "rows": int(len(snapshot.static)), **dict(meta or {})}
    if probability is not None:
        if at_risk_threshold is None:
            raise ValueError("churn_reference_profile: probability given without at_risk_threshold")
        values.update(prediction_values(probability, at_risk_threshold))
        info.update(at_risk_threshold=float(at_risk_threshold), prediction_rows=int(len(probability)))
    return reference_profile(values, settings, info)


def scoring_values(
    snapshot: Snapshot, probability: np.ndarray, reference: Profile, categorical: Sequence[str], numeric: Sequence[str]
) -> dict[str, Any]:
    """`{feature: values}` of one scored partition, for `ProfileAccumulator.add`."""
    values = snapshot_values(snapshot, categorical, numeric)
    threshold = reference.meta.get("at_risk_threshold")
    if threshold is not None:
        values.update(prediction_values(probability, float(threshold)))
    return {name: v for name, (_, v) in values.items()}


def churn_observer(monitor: DriftMonitor, categorical: Sequence[str], numeric: Sequence[str]):
    """The per-partition hook of churn scoring: `(snapshot, scored)` -> counts added to `monitor`."""

    def observe(snapshot: Snapshot, scored: pd.DataFrame) -> None:
        monitor.add(
            scoring_values(snapshot, scored["churn_probability"].to_numpy(), monitor.reference, categorical, numeric)
        )

    return observe
