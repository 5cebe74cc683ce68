"""Prediction framing without leakage: cutoffs, labels, time + customer splits, `Snapshot`s.

"Churns within H days after the cutoff" from everything known strictly before the cutoff. Static attributes are
taken as known at signup (changes over time belong in the events, e.g. price_change / plan_change); tenure is
recomputed at each cutoff. Splits are disjoint in customers, and each split's label window ends before the next
split's cutoff (train cutoff + H <= val cutoff, val cutoff + H <= test cutoff).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churnsense.core.frames import is_in, positions_in, stable_sort
from churnsense.data.contract import DataSpec, FramingSpec
from churnsense.data.loading import Tables, customers_from_events
from churnsense.data.validation import TEXT_DTYPE

SENTIMENT_SCORE = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}
HISTORY_COLUMNS = ["customer_id", "cutoff", "ts", "event_type", "value"]
LABEL_COLUMNS = ["label", "ttc_days", "followup_days"]
DAY = pd.Timedelta(days=1)
NAT = np.datetime64("NaT").astype("datetime64[ns]").view(np.int64)  # a missing timestamp as int64 nanoseconds
log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """static: one row per (customer_id, cutoff) with attributes as of the cutoff (+ labels when known).
    history: events strictly before the cutoff [customer_id, cutoff, ts, event_type, value], feedback folded in as
    event_type "feedback_<topic>" ("feedback" without a topic) with value = sentiment score (-1/0/+1; 0 when
    unknown), sorted by (customer_id, cutoff, ts).
    feedback: the feedback rows before the cutoff (customer_id, cutoff, ts, text, ...) for text-aware models."""

    static: pd.DataFrame
    history: pd.DataFrame
    feedback: pd.DataFrame | None = None


def static_numeric(spec: DataSpec) -> list[str]:
    """Numeric static columns of a snapshot: configured attributes + tenure_days when a signup date is known."""
    cust = spec.customers
    derived = ["tenure_days"] if (cust is None or "signup_date" in cust.columns) else []
    return (list(cust.numeric) if cust else []) + derived


def static_categorical(spec: DataSpec) -> list[str]:
    return list(spec.customers.categorical) if spec.customers else []


def end_of_observation(tables: Tables, spec: DataSpec | None = None) -> pd.Timestamp:
    """End of observation: customers.observed_until if known, else the day after the history's end
    (`history_end`: an outlier tail after a long gap does not count), else today."""
    if tables.customers is not None and "observed_until" in tables.customers:
        seen = tables.customers["observed_until"].max()
        if pd.notna(seen):
            return seen
    framing = spec.framing if spec is not None else FramingSpec()
    end = history_end(history_days(tables.events, tables.feedback), framing)
    if end.outliers:
        log.warning("history: %s", end.describe())
    return end.last_day + DAY if end.last_day is not None else pd.Timestamp.today().normalize()


def split_cutoffs(tables: Tables, spec: DataSpec) -> dict[str, list[pd.Timestamp]]:
    """Cutoffs per split, explicit from config or derived backwards from the data's last date."""
    f = spec.framing
    if f.label_mode == "label":
        ref = pd.Timestamp(f.reference_date) if f.reference_date else end_of_observation(tables, spec)
        return {"train": [ref], "val": [ref], "test": [ref]}
    h = pd.Timedelta(days=f.horizon_days)
    test = pd.Timestamp(f.test_cutoff) if f.test_cutoff else end_of_observation(tables, spec) - h
    val = pd.Timestamp(f.val_cutoff) if f.val_cutoff else test - h
    step = pd.Timedelta(days=f.cutoff_step_days or f.horizon_days)
    train = [pd.Timestamp(c) for c in f.train_cutoffs] or [val - h - k * step for k in range(f.n_train_cutoffs)]
    if max(train) + h > val or val + h > test:
        raise ValueError(f"cutoffs overlap label windows: train {train}, val {val}, test {test}, horizon {h.days}d")
    return {"train": sorted(train), "val": [val], "test": [test]}


def assign_customers(customers: pd.DataFrame, spec: DataSpec) -> pd.Series:
    """Split name per customer (seeded; stratified by the static label when there is one)."""
    f = spec.framing
    rng = np.random.default_rng(f.seed)
    out = pd.Series("train", index=customers.index, dtype=object)
    groups = customers.groupby("label").indices.values() if "label" in customers else [np.arange(len(customers))]
    for idx in groups:
        idx = rng.permutation(np.asarray(idx))
        n_test, n_val = int(round(len(idx) * f.test_fraction)), int(round(len(idx) * f.val_fraction))
        out.iloc[idx[:n_test]] = "test"
        out.iloc[idx[n_test : n_test + n_val]] = "val"
    return out


def make_splits(tables: Tables, spec: DataSpec) -> dict[str, Snapshot]:
    """Train/val/test snapshots, split by customer and by cutoff time; labels included."""
    customers = tables.customers if tables.customers is not None else customers_from_events(tables.events)
    which = assign_customers(customers, spec)
    cutoffs = split_cutoffs(tables, spec)
    # outcomes are observed only up to the next split's cutoff, so no label, churn time or follow-up of a split
    # (e.g. the hazard head's 60/90-day targets) uses anything that happens after it
    limits = {"train": min(cutoffs["val"]), "val": min(cutoffs["test"]), "test": None}
    out = {}
    for name in ("train", "val", "test"):
        ids = customers.loc[which == name, "customer_id"]
        sub = Tables(customers[customers["customer_id"].isin(ids)], tables.events, tables.feedback)
        out[name] = make_snapshot(sub, spec, cutoffs[name], with_labels=True, observe_until=limits[name])
    return out


def check_framing(spec: DataSpec, tables: Tables) -> None:
    """The label mode must fit the loaded columns; otherwise one ValueError saying exactly what to set."""
    f = spec.framing
    customers = tables.customers if spec.customers is not None else None
    has = lambda column: customers is not None and column in customers  # noqa: E731
    where = "data.framing.label_mode"
    if f.label_mode == "churn_date" and not has("churn_date"):
        problem = f"{where} is 'churn_date', but the customers table has no churn date column"
        if spec.customers is None:
            fix = (
                "events-only data has no churn dates: set data.framing.label_mode: inactivity (churn = no "
                "event within horizon_days after the cutoff)"
            )
        elif has("label"):
            fix = (
                f"it has a static label ({spec.customers.source('label')!r}): set {where}: label and "
                "data.framing.reference_date: <the date the labels describe, YYYY-MM-DD>"
            )
        else:
            fix = (
                "map it as data.customers.columns.churn_date: <column> (empty = not churned), or map a static "
                f"0/1 label as data.customers.columns.label: <column> with {where}: label"
            )
        raise ValueError(f"{problem}; {fix}")
    if f.label_mode == "label" and not has("label"):
        fix = "map it as data.customers.columns.label: <column> (data.customers.positive_labels: its churn values)"
        if has("churn_date"):
            fix += f", or set {where}: churn_date (the table has churn dates)"
        raise ValueError(f"{where} is 'label', but the customers table has no label column; {fix}")
    if f.label_mode == "inactivity" and tables.events is None:
        raise ValueError(
            f"{where} is 'inactivity' (churn = no event within the horizon), but the data set has no "
            "events table: configure data.events, or use label_mode: churn_date / label"
        )


def _label_hint(spec: DataSpec) -> str:
    f = spec.framing
    if f.label_mode == "label" and spec.customers is not None:
        return (
            f"check data.customers.positive_labels ({list(spec.customers.positive_labels)}) against the values "
            f"of column {spec.customers.source('label')!r}"
        )
    if f.label_mode == "churn_date":
        return (
            (
                f"check the churn dates (column {spec.customers.source('churn_date')!r}) and horizon_days "
                f"({f.horizon_days}): a churner is a customer whose churn date falls within the horizon after a "
                "cutoff"
            )
            if spec.customers is not None
            else "check the churn dates"
        )
    return f"check horizon_days ({f.horizon_days}) and the cutoffs against the events' dates"


def check_splits(snapshots: Mapping[str, Snapshot], spec: DataSpec) -> None:
    """Training needs two classes, and every split at least `framing.min_split_rows` rows with
    `framing.min_split_per_class` churners and non-churners; otherwise one ValueError before anything is trained
    or published (a metric over one class or a handful of rows means nothing)."""
    f = spec.framing
    counts = {}
    for name, snap in snapshots.items():
        labels = snap.static["label"].to_numpy(dtype=float) if "label" in snap.static else np.zeros(0)
        churners = int(np.sum(labels == 1))
        counts[name] = (len(labels), churners, len(labels) - churners)
    rows = sum(c[0] for c in counts.values())
    churners = sum(c[1] for c in counts.values())
    if rows and churners in (0, rows):
        kind = "churners" if churners else "non-churners"
        raise ValueError(
            f"training data: all {rows:,} labelled rows are {kind} (one class: nothing to learn); {_label_hint(spec)}"
        )
    for name, (n, pos, neg) in counts.items():
        if n < f.min_split_rows or pos < f.min_split_per_class or neg < f.min_split_per_class:
            shown = ", ".join(f"{k} {v[0]:,} ({v[1]:,} churners)" for k, v in counts.items())
            raise ValueError(
                f"training data: the {name} split has {n:,} rows ({pos:,} churners, {neg:,} non-churners); every "
                f"split needs at least {f.min_split_rows} rows and {f.min_split_per_class} of each class "
                f"(splits: {shown}): give more customers, change data.framing.val_fraction / test_fraction or "
                "the cutoffs, or lower data.framing.min_split_rows / min_split_per_class"
            )


def history_days(*frames: pd.DataFrame | None) -> pd.Series:
    """Rows per day (normalised `ts`, sorted) over the history frames given (events, feedback); empty without."""
    ns = [f["ts"].to_numpy(dtype="datetime64[ns]").view(np.int64) for f in frames if f is not None and len(f)]
    ns = np.concatenate(ns) if ns else np.zeros(0, dtype=np.int64)
    days, counts = np.unique(ns[ns != NAT] // DAY.value, return_counts=True)  # floor: the calendar day
    return pd.Series(counts.astype("int64"), index=pd.DatetimeIndex((days * DAY.value).astype("datetime64[ns]")))


def add_days(total: pd.Series | None, days: pd.Series | None) -> pd.Series | None:
    """Two `history_days` counts summed (None: nothing counted yet)."""
    if days is None:
        return total
    return days if total is None else total.add(days, fill_value=0)


@dataclass(frozen=True)
class HistoryEnd:
    """The last day of the history and the outlier tail left out of it (`history_end`)."""

    last_day: pd.Timestamp | None
    outliers: int = 0
    outlier_days: tuple[pd.Timestamp, pd.Timestamp] | None = None
    gap_days: int = 0

    def describe(self) -> str:
        """One line on the outliers (empty without)."""
        if not self.outliers or self.outlier_days is None:
            return ""
        first, last = (d.date() for d in self.outlier_days)
        span = f"{first}" if first == last else f"{first} .. {last}"
        return (
            f"{self.outliers:,} row(s) dated {span}, {self.gap_days} days after the rest of the history (which "
            f"ends {self.last_day.date()}), are taken as mistyped dates: not used, and the default scoring date "
            "stays after the history's end; set cutoff= to choose another"
        )


def history_end(days: pd.Series, framing: FramingSpec) -> HistoryEnd:
    """The history's last day, read from rows per day (`history_days`): the latest day, unless the latest rows come
    after a gap of more than `framing.max_history_gap_days` days without any row and hold at most
    `framing.max_outlier_share` of all rows; then they are an outlier tail (a mistyped year, a clock error) and the
    history ends before the gap (the earliest such gap, so the whole tail is left out)."""
    if days is None or days.empty:
        return HistoryEnd(None)
    days = days.groupby(level=0).sum().sort_index()
    when = pd.DatetimeIndex(days.index)
    counts = days.to_numpy(dtype=np.int64)
    tail = np.cumsum(counts[::-1])[::-1]  # rows on or after each day
    gaps = np.diff(when.asi8) / DAY.value if len(when) > 1 else np.zeros(0)
    split = (gaps > framing.max_history_gap_days) & (tail[1:] <= framing.max_outlier_share * tail[0])
    if not split.any():
        return HistoryEnd(when[-1])
    i = int(np.flatnonzero(split)[0])
    return HistoryEnd(when[i], int(tail[i + 1]), (when[i + 1], when[-1]), int(gaps[i]))


def scoring_cutoff(
    framing: FramingSpec, explicit: str | pd.Timestamp | None = None, days: pd.Series | None = None
) -> pd.Timestamp:
    """The one rule for the scoring date: an explicit cutoff; else a static-label release's reference date; else
    the day after the history's end (`history_end` of the inputs' rows per day: the latest events count, an outlier
    tail dated long after the rest does not); else today. History timestamps after the run date never count
    (validation rejects them)."""
    if explicit is not None and str(explicit):
        return pd.Timestamp(explicit)
    if framing.label_mode == "label" and framing.reference_date:
        return pd.Timestamp(framing.reference_date)
    end = history_end(days, framing) if days is not None else HistoryEnd(None)
    if end.last_day is not None:
        return end.last_day + DAY
    return pd.Timestamp.today().normalize()


def make_scoring_snapshot(tables: Tables, spec: DataSpec, cutoff: pd.Timestamp | None = None) -> Snapshot:
    """Serving: one row per customer of `tables.customers` (derived from events if absent), no labels; the
    cutoff by `scoring_cutoff` when not given."""
    cutoff = scoring_cutoff(spec.framing, cutoff, history_days(tables.events, tables.feedback))
    return make_snapshot(tables, spec, [cutoff], with_labels=False)


def make_snapshot(
    tables: Tables,
    spec: DataSpec,
    cutoffs: list[pd.Timestamp],
    with_labels: bool,
    observe_until: pd.Timestamp | None = None,
) -> Snapshot:
    """Static rows for every (eligible customer, cutoff) and the history strictly before each cutoff; labels see
    outcomes up to `observe_until` at most (None: the data's own observation dates)."""
    customers = tables.customers if tables.customers is not None else customers_from_events(tables.events)
    parts = [_static_at(customers, tables, spec, pd.Timestamp(c), with_labels, observe_until) for c in cutoffs]
    static = pd.concat(parts, ignore_index=True)
    history = _history(tables, static, spec)
    return Snapshot(static=static, history=history, feedback=_feedback_before(tables.feedback, static))


def make_dated_snapshot(tables: Tables, spec: DataSpec, dates: pd.Series) -> Snapshot:
    """No labels; one row per entry of `dates` (customer id -> a date), with that customer's attributes and history
    as of the start of that day: e.g. each logged customer as the model saw it on the day of its retention offer."""
    customers = tables.customers if tables.customers is not None else customers_from_events(tables.events)
    days = pd.to_datetime(pd.Series(dates)).dt.normalize()
    parts = [
        _static_at(customers[customers["customer_id"].isin(ids.index)], tables, spec, pd.Timestamp(day), False)
        for day, ids in days.groupby(days)
    ]
    static = (
        pd.concat(parts, ignore_index=True)
        if parts
        else _static_at(customers.iloc[:0], tables, spec, pd.Timestamp(0), False)
    )
    history = _history(tables, static, spec)
    return Snapshot(static=static, history=history, feedback=_feedback_before(tables.feedback, static))


def _static_at(
    customers: pd.DataFrame,
    tables: Tables,
    spec: DataSpec,
    cutoff: pd.Timestamp,
    with_labels: bool,
    observe_until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    f = spec.framing
    cols = ["customer_id"] + [c for c in static_categorical(spec) + static_numeric(spec) if c in customers]
    df = customers[cols].copy()
    df.insert(1, "cutoff", cutoff)
    if "signup_date" in customers:
        df["tenure_days"] = ((cutoff - customers["signup_date"]) / DAY).clip(lower=0).astype("float64")
    keep = pd.Series(True, index=customers.index)
    if with_labels and f.label_mode == "churn_date":
        keep &= _churn_date_labels(df, customers, cutoff, f.horizon_days, observe_until)
    elif with_labels and f.label_mode == "inactivity":
        keep &= _inactivity_labels(df, customers, tables.events, cutoff, f)
    elif with_labels:
        df["label"] = customers["label"].astype("float32")
        df["ttc_days"] = np.float32(np.nan)
        df["followup_days"] = np.float32(np.nan)
    return df[keep.to_numpy()].reset_index(drop=True)


def _churn_date_labels(
    df: pd.DataFrame,
    customers: pd.DataFrame,
    cutoff: pd.Timestamp,
    horizon: int,
    observe_until: pd.Timestamp | None = None,
) -> pd.Series:
    churn = customers["churn_date"] if "churn_date" in customers else pd.Series(pd.NaT, index=customers.index)
    seen = (
        customers["observed_until"]
        if "observed_until" in customers
        else pd.Series(churn.max() if churn.notna().any() else cutoff, index=customers.index)
    )
    if observe_until is not None:
        seen = seen.clip(upper=pd.Timestamp(observe_until))
    ttc = (churn - cutoff) / DAY
    followup = ((churn.where(churn.notna() & (churn <= seen), seen)) - cutoff) / DAY
    df["label"] = ((ttc > 0) & (ttc <= horizon)).astype("float32").to_numpy()
    df["ttc_days"] = ttc.where(churn <= seen).astype("float32").to_numpy()
    df["followup_days"] = followup.astype("float32").to_numpy()
    signed_up = customers["signup_date"] < cutoff if "signup_date" in customers else True
    active = churn.isna() | (churn > cutoff)
    known = (df["label"].to_numpy() == 1) | (followup.to_numpy() >= horizon)  # drop censored label windows
    return signed_up & active & known


def _inactivity_labels(
    df: pd.DataFrame, customers: pd.DataFrame, events: pd.DataFrame, cutoff: pd.Timestamp, f
) -> pd.Series:
    end = cutoff + pd.Timedelta(days=f.horizon_days)
    before = events.loc[events["ts"] < cutoff, "customer_id"].value_counts()
    inside = events.loc[(events["ts"] >= cutoff) & (events["ts"] < end)]
    nxt = inside.groupby("customer_id")["ts"].min()
    ids = customers["customer_id"]
    df["label"] = (~ids.isin(nxt.index)).astype("float32").to_numpy()
    df["ttc_days"] = np.float32(np.nan)
    seen = events["ts"].max()
    df["followup_days"] = np.float32(min((seen - cutoff) / DAY, f.horizon_days))
    n_before = ids.map(before).fillna(0)
    return (n_before >= max(1, f.min_history_events)) & (seen >= end - DAY)


def feedback_types(feedback: pd.DataFrame) -> pd.Series:
    """Event type of folded feedback: `feedback_<topic>` when the message's topic is known (labelled, or predicted
    by the feedback model), else `feedback`; so the sequence sees what the customer wrote about, not only how.
    Typed as the data contract types validated text (`TEXT_DTYPE`, the events' `event_type`), so the two
    concatenate without converting every event's text to Python objects."""
    if "topic" not in feedback:
        return pd.Series("feedback", index=feedback.index, dtype=TEXT_DTYPE)
    topic = feedback["topic"].astype("string").str.strip().str.lower()
    return ("feedback_" + topic).fillna("feedback").where(topic.fillna("").ne(""), "feedback").astype(TEXT_DTYPE)


def _history(tables: Tables, static: pd.DataFrame, spec: DataSpec) -> pd.DataFrame:
    """Events + folded feedback strictly before each row's cutoff (and within the lookback)."""
    parts = []
    if tables.events is not None:
        parts.append(tables.events[["customer_id", "ts", "event_type", "value"]])
    if tables.feedback is not None:
        fb = tables.feedback
        score = fb["sentiment"].map(SENTIMENT_SCORE) if "sentiment" in fb else pd.Series(np.nan, index=fb.index)
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": fb["customer_id"],
                    "ts": fb["ts"],
                    "event_type": feedback_types(fb),
                    "value": score.fillna(0.0).astype("float64"),
                }
            )
        )
    if not parts:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=t)
                for c, t in zip(HISTORY_COLUMNS, [object, "datetime64[ns]", "datetime64[ns]", object, "float64"])
            }
        )
    ev = pd.concat(parts, ignore_index=True)
    cutoff = _single_cutoff(static)
    if cutoff is not None:  # scoring: one cutoff, one row per customer (the rows the merge below would give)
        h = ev.assign(cutoff=cutoff)
        known = is_in(ev["customer_id"], static["customer_id"])
    else:
        h = static[["customer_id", "cutoff"]].merge(ev, on="customer_id", how="inner")
        known = np.ones(len(h), dtype=bool)
    keep = known & (h["ts"] < h["cutoff"]).to_numpy()
    if spec.framing.lookback_days:
        keep &= (h["ts"] >= h["cutoff"] - pd.Timedelta(days=spec.framing.lookback_days)).to_numpy()
    # the kept rows are taken in their sorted order at once (no filtered copy of the history first)
    return stable_sort(h, ["customer_id", "cutoff", "ts"], rows=np.flatnonzero(keep))[HISTORY_COLUMNS]


def _single_cutoff(static: pd.DataFrame) -> pd.Timestamp | None:
    """The cutoff of a snapshot with one cutoff and one row per customer (scoring); None otherwise."""
    if static.empty or static["cutoff"].nunique(dropna=False) != 1 or not static["customer_id"].is_unique:
        return None
    return static["cutoff"].iloc[0]


def history_rows(static: pd.DataFrame, history: pd.DataFrame) -> np.ndarray:
    """Position in `static` of each history row (-1 if its (customer_id, cutoff) is not there)."""
    cutoff = _single_cutoff(static)
    if cutoff is not None:
        rows = positions_in(history["customer_id"], static["customer_id"])
        return np.where(history["cutoff"].to_numpy() == np.datetime64(cutoff), rows, -1)
    keys = pd.MultiIndex.from_arrays([static["customer_id"], static["cutoff"]])
    return keys.get_indexer(pd.MultiIndex.from_arrays([history["customer_id"], history["cutoff"]]))


def _feedback_before(feedback: pd.DataFrame | None, static: pd.DataFrame) -> pd.DataFrame | None:
    if feedback is None:
        return None
    h = static[["customer_id", "cutoff"]].merge(feedback, on="customer_id", how="inner")
    return h[(h["ts"] < h["cutoff"]).to_numpy()].reset_index(drop=True)
