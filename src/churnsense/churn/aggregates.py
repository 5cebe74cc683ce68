"""Hand-made history aggregates per snapshot row: the GBDT baselines' features and the churn net's wide inputs
(`FeaturePipeline` appends them to `num`), segments, sanity checks. Vectorised."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from churnsense.data.framing import Snapshot, history_rows

WINDOWS = (30, 90)
ANY_EVENT = "*"  # source of an aggregate over every event type
FEEDBACK = "feedback*"  # source of an aggregate over every folded feedback type


def history_aggregates(snap: Snapshot, event_types: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per `snap.static` row (same order, same index): per event type counts and value sums in the last
    30/90 days, recency (days since the last event and the last of each type), usage trend (log ratio of the last
    30 days' usage to the monthly average of the 60 days before), feedback sentiment shares.

    `event_types` fixes the per-type columns (types absent from the history get zero counts and missing recency),
    so a fitted pipeline sees the same columns at training and at serving; None = the types in this history."""
    return history_aggregates_with_sources(snap, event_types)[0]


def event_type_codes(history: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """`pd.factorize` of the history's event types (codes, -1 for a missing type; the distinct types): computed
    once per batch and shared by the aggregates and the event sequence."""
    if not len(history):
        return np.zeros(0, dtype=np.int64), pd.Index([], dtype=object)
    codes, names = pd.factorize(history["event_type"])
    return np.asarray(codes), pd.Index(names)


def history_aggregates_with_sources(
    snap: Snapshot,
    event_types: Sequence[str] | None = None,
    type_codes: tuple[np.ndarray, pd.Index] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """`history_aggregates` and, per column, the event type it is computed from (`*` = every type, `feedback*` =
    every feedback type), so an attribution can move an aggregate together with the events behind it.
    `type_codes`: `event_type_codes(snap.history)` when the caller has it already."""
    st, h = snap.static, snap.history
    b = len(st)
    row = history_rows(st, h) if len(h) else np.zeros(0, dtype=np.int64)
    ok = row >= 0
    row = row[ok]
    days = (
        ((h["cutoff"].to_numpy("datetime64[ns]") - h["ts"].to_numpy("datetime64[ns]")) / np.timedelta64(1, "D"))[ok]
        if len(h)
        else np.zeros(0)
    )
    # event types as integer codes into `names`: one hash per row, then integer work only
    codes, names = type_codes if type_codes is not None else event_type_codes(h)
    code = np.asarray(codes)[ok]  # -1: a missing type, which matches none
    index = {str(n): i for i, n in enumerate(names)}  # event type -> its code (-1: not in this history)
    value = np.nan_to_num(h["value"].to_numpy(dtype="float64")[ok]) if len(h) else np.zeros(0)
    types = sorted(index) if event_types is None else list(event_types)
    cols: dict[str, np.ndarray] = {
        "n_events": np.bincount(row, minlength=b).astype(float),
        "recency_days": _min_by(row, days, b),
    }
    sources = {"n_events": ANY_EVENT, "recency_days": ANY_EVENT}
    # per (row, event type) statistics, one pass each over the history: key = row * len(types) + type position
    at = {t: j for j, t in enumerate(types)}
    typed = np.array([at.get(str(n), -1) for n in names] + [-1], dtype=np.int64)[code]  # code -1 -> the last: none
    m = typed >= 0
    key, key_days, key_value, size = row[m] * len(types) + typed[m], days[m], value[m], b * len(types)
    recency = _min_by(key, key_days, size).reshape(b, len(types))
    windows = {}
    for w in WINDOWS:
        mw = key_days <= w
        windows[w] = (
            np.bincount(key[mw], minlength=size).reshape(b, len(types)).astype(float),
            np.bincount(key[mw], weights=key_value[mw], minlength=size).reshape(b, len(types)),
        )
    for j, t in enumerate(types):
        cols[f"recency_{t}_days"] = recency[:, j]
        sources[f"recency_{t}_days"] = t
        for w in WINDOWS:
            cols[f"n_{t}_{w}d"] = windows[w][0][:, j]
            cols[f"sum_{t}_{w}d"] = windows[w][1][:, j]
            sources[f"n_{t}_{w}d"] = sources[f"sum_{t}_{w}d"] = t
    if "usage" in types:
        m = code == index.get("usage", -1)
        recent = np.bincount(row[m & (days <= 30)], weights=value[m & (days <= 30)], minlength=b)
        before = (
            np.bincount(row[m & (days > 30) & (days <= 90)], weights=value[m & (days > 30) & (days <= 90)], minlength=b)
            / 2
        )
        cols["usage_trend"] = np.log1p(recent) - np.log1p(before)
        sources["usage_trend"] = "usage"
    fb = np.isin(code, [i for n, i in index.items() if n.startswith("feedback")])  # "feedback", "feedback_<topic>"
    n_fb = np.bincount(row[fb], minlength=b).astype(float)
    cols["n_feedback"] = n_fb
    for name, sign in (("negative", -1.0), ("positive", 1.0)):
        hit = fb & (value == sign)
        cols[f"share_{name}_feedback"] = np.divide(
            np.bincount(row[hit], minlength=b), n_fb, out=np.zeros(b), where=n_fb > 0
        )
    sources.update({"n_feedback": FEEDBACK, "share_negative_feedback": FEEDBACK, "share_positive_feedback": FEEDBACK})
    return pd.DataFrame(cols, index=st.index), sources


def _min_by(row: np.ndarray, x: np.ndarray, b: int) -> np.ndarray:
    """Per-row minimum of x (NaN where a row has none)."""
    out = np.full(b, np.inf)
    np.minimum.at(out, row, x)
    return np.where(np.isinf(out), np.nan, out)
