"""`score_churn_batch`: the pure scoring core (pandas in, pandas out), so the same code runs in `serve.py`, in an
MLflow pyfunc and inside Spark/Ray `mapInPandas`-style jobs.

A batch must hold every row of each of its customers (all their events and feedback); `serve_churn` guarantees
that by hash-partitioning the inputs by customer id. Inputs use the release's *source* column names (its data
mapping) unless `validated=True`, in which case they are already canonical (see `validate_chunk`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np
import pandas as pd

from churnsense.data.contract import TableSpec
from churnsense.data.framing import make_scoring_snapshot
from churnsense.data.loading import Tables
from churnsense.data.validation import canonical_columns, split_valid_rows
from churnsense.serving.io import REJECT_COLUMNS
from churnsense.serving.partition import ROW
from churnsense.serving.release import ChurnRelease

log = logging.getLogger(__name__)
KINDS = ("customers", "events", "feedback")
LABEL_ONLY = ("observed_until", "label")  # training labels: never read when scoring (churn_date: see below)
DEFAULT_RISK_BANDS = {"low": 0.0, "medium": 0.2, "high": 0.5}


def serving_table(table: TableSpec, kind: str, present: list[str]) -> TableSpec:
    """The table spec for scoring: label-only columns are never read (a scoring file's observed_until / label are
    ignored, not validated). Optional columns the file lacks are left to `split_valid_rows`, which tolerates them."""
    return replace(table, columns={c: s for c, s in table.columns.items() if c not in LABEL_ONLY})


def read_columns(table: TableSpec, kind: str, present: list[str]) -> list[str]:
    """Source columns to read for scoring (in file order); required ones that are missing are left to validation
    to report (it raises naming them)."""
    wanted = set(canonical_columns(table, kind, present, optional_if_present=True).values())
    return [p for p in present if p in wanted]


def validate_chunk(raw: pd.DataFrame, table: TableSpec, kind: str, source: str,
                   first_row: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Row-level validation of consecutive rows starting at data row `first_row`: (canonical valid rows with
    their row number in column `_row`, rejects in `REJECT_COLUMNS`)."""
    table = serving_table(table, kind, list(raw.columns))
    raw = raw[read_columns(table, kind, list(raw.columns)) or list(raw.columns)]
    valid, rejects = split_valid_rows(raw, table, kind, source, first_row)
    rows = np.arange(first_row, first_row + len(raw), dtype=np.int64)
    valid[ROW] = rows[~np.isin(rows, rejects["row"].to_numpy(dtype=np.int64))]
    return valid, rejects.rename(columns={"customer_id": "key"}).reindex(columns=REJECT_COLUMNS)


def _rejects(frame: pd.DataFrame, mask: np.ndarray, source: str, column: str, reason: str | np.ndarray):
    """Rejects for `frame[mask]` (row numbers from `_row`)."""
    reason = reason[mask] if isinstance(reason, np.ndarray) else reason
    return pd.DataFrame({"source": source, "row": frame.loc[mask, ROW].to_numpy(np.int64),
                         "key": frame.loc[mask, "customer_id"].astype("string").to_numpy(),
                         "column": column, "reason": reason}, columns=REJECT_COLUMNS)


def reject_duplicate_customers(customers: pd.DataFrame, rejected_ids: set | None, source: str, id_column: str):
    """Reject every row of a customer id that occurs twice (or also on an already rejected row): ambiguous."""
    ids = customers["customer_id"]
    dup = ids.duplicated(keep=False).to_numpy()
    also = ids.isin(rejected_ids).to_numpy() if rejected_ids else np.zeros(len(ids), bool)
    reason = np.where(dup, "duplicate customer id", "duplicate customer id (another row with it was rejected)")
    bad = dup | also
    return customers[~bad], _rejects(customers, bad, source, id_column, reason)


def reject_inactive(customers: pd.DataFrame, cutoff: pd.Timestamp, sources: Mapping[str, str],
                    spec) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Reject customers who are not customers at the cutoff: `churn_date` before it (they already left) or
    `signup_date` on or after it (not yet joined) — when the file has those columns."""
    out = []
    for column, word in (("churn_date", "already churned on"), ("signup_date", "not yet a customer: signed up on")):
        if column not in customers:
            continue
        when = pd.to_datetime(customers[column])
        bad = (when.notna() & ((when < cutoff) if column == "churn_date" else (when >= cutoff))).to_numpy()
        reason = np.asarray([f"{word} {d.date()} (cutoff {cutoff.date()})" if b else "" for d, b in zip(when, bad)],
                            dtype=object)
        out.append(_rejects(customers, bad, sources["customers"], spec.customers.source(column), reason))
        customers = customers[~bad]
    return customers.drop(columns=["churn_date"], errors="ignore"), out


def reject_orphans(frame: pd.DataFrame, known: pd.Index, rejected_ids: set, source: str, id_column: str):
    """Reject event/feedback rows whose customer is not scored (unknown, or its customer row was rejected)."""
    ids = frame["customer_id"]
    bad = ~ids.isin(known).to_numpy()
    was_rejected = ids.isin(rejected_ids).to_numpy() if rejected_ids else np.zeros(len(ids), bool)
    reason = np.where(was_rejected, "customer row rejected (see the customers rejects)",
                      "unknown customer id (not in the customers table)")
    return frame[~bad], _rejects(frame, bad, source, id_column, reason)


def risk_band(probability: np.ndarray, bands: Mapping[str, float]) -> np.ndarray:
    """Name of the highest band whose lower edge is <= the probability."""
    names, edges = zip(*sorted(bands.items(), key=lambda kv: float(kv[1])))
    idx = np.searchsorted(np.asarray(edges, float), probability, side="right") - 1
    return np.asarray(names, dtype=object)[np.clip(idx, 0, len(names) - 1)]


def fill_sentiment(feedback: pd.DataFrame, feedback_release, source: str, text_column: str = "text"):
    """Predict `sentiment` for feedback rows without it with the feedback release; (feedback, rejects)."""
    from churnsense.text.release import score_feedback_batch

    scored, rejects = score_feedback_batch(feedback.reset_index(drop=True), feedback_release, text_column,
                                           first_row=1, source=source)
    rows = feedback[ROW].to_numpy(np.int64)
    rejects = rejects.reindex(columns=REJECT_COLUMNS)
    rejects["row"] = rows[rejects["row"].to_numpy(np.int64) - 1] if len(rejects) else rejects["row"]
    added = ["sentiment"] + (["topic"] if "topic" not in feedback and "topic" in scored else [])
    return scored[list(feedback.columns) + added], rejects


def _ensure_rows(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    if frame is not None and ROW not in frame:
        frame = frame.assign(**{ROW: np.arange(1, len(frame) + 1, dtype=np.int64)})
    return frame


def score_churn_batch(customers: pd.DataFrame | None, events: pd.DataFrame | None, feedback: pd.DataFrame | None,
                      release: ChurnRelease, cutoff: pd.Timestamp | str | None, *, validated: bool = False,
                      sources: Mapping[str, str] | None = None, rejected_ids: set | None = None,
                      risk_bands: Mapping[str, float] | None = None, batch_size: int = 1024,
                      feedback_release=None, text_column: str = "text",
                      insights: bool = False, monitor: Callable | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score one batch of customers: (scored, rejects).

    scored: customer_id, churn_probability, risk_band, p_churn_<h>d per hazard horizon (if the model has them),
    cutoff — one row per scored customer. rejects: source, row, key, column, reason — every input row that was
    not used, so len(customers) == len(scored) + customer rejects. Row numbers come from a `_row` column when the
    frames carry one, else 1-based positions. `rejected_ids` are customer ids rejected elsewhere (other chunks).
    `cutoff` None: the release's rule (day after the latest timestamp in this batch); pass one for a whole file.
    `insights`: add reasons, segment, action, routing and value columns (`churnsense.insights.enrich`).
    `monitor`: called as `monitor(snapshot, scored)` on a non-empty batch (drift monitoring counts it).
    """
    spec, sources = release.spec, {**{k: k for k in KINDS}, **(sources or {})}
    frames = dict(zip(KINDS, (_ensure_rows(customers), _ensure_rows(events), _ensure_rows(feedback))))
    frames = {k: (f if spec.table(k) is not None else None) for k, f in frames.items()}
    rejects: list[pd.DataFrame] = []
    if not validated:
        for kind, frame in frames.items():
            if frame is not None:
                rows = frame[ROW].to_numpy(np.int64)
                valid, rej = validate_chunk(frame.drop(columns=[ROW]), spec.table(kind), kind, sources[kind])
                valid[ROW] = rows[valid[ROW].to_numpy() - 1]
                rej["row"] = rows[rej["row"].to_numpy(np.int64) - 1] if len(rej) else rej["row"]
                frames[kind] = valid
                rejects.append(rej)
                if kind == "customers":
                    rejected_ids = set(rejected_ids or ()) | set(rej["key"].dropna())
    customers, events, feedback = frames["customers"], frames["events"], frames["feedback"]
    if customers is not None:
        id_col = spec.customers.source("customer_id")
        customers, rej = reject_duplicate_customers(customers, rejected_ids, sources["customers"], id_col)
        rejects.append(rej)
        rejected_ids = set(rejected_ids or ()) | set(rej["key"].dropna())
        if cutoff is not None:
            customers, rejs = reject_inactive(customers, pd.Timestamp(cutoff), sources, spec)
            rejects.extend(rejs)
            rejected_ids |= {k for r in rejs for k in r["key"].dropna()}
        customers = customers.drop(columns=["churn_date"], errors="ignore")
        known = pd.Index(customers["customer_id"])
        for kind in ("events", "feedback"):
            if frames[kind] is not None:
                frames[kind], rej = reject_orphans(frames[kind], known, rejected_ids, sources[kind],
                                                   spec.table(kind).source("customer_id"))
                rejects.append(rej)
        events, feedback = frames["events"], frames["feedback"]
    if feedback is not None and feedback_release is not None and "sentiment" not in feedback:
        feedback, rej = fill_sentiment(feedback, feedback_release, sources["feedback"], text_column)
        rejects.append(rej)
    scored, snapshot, features = _score(customers, events, feedback, release, cutoff,
                                        risk_bands or DEFAULT_RISK_BANDS, batch_size)
    if monitor is not None and snapshot is not None:
        monitor(snapshot, scored)
    if insights:  # an empty batch gets the (typed, empty) insight columns too: every partition has one schema
        from churnsense.insights.enrich import enrich

        scored = enrich(scored, _canonical(customers), _canonical(events), _canonical(feedback), release, cutoff,
                        snapshot=snapshot, batch=features)
    rejects = [r for r in rejects if len(r)]
    out_rejects = pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(columns=REJECT_COLUMNS)
    return scored, out_rejects


def _canonical(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    if frame is None:
        return None
    frame = frame.drop(columns=[ROW], errors="ignore")
    return frame.sort_values(["customer_id", "ts"], kind="stable", ignore_index=True) if "ts" in frame else frame


def _score(customers, events, feedback, release: ChurnRelease, cutoff, bands, batch_size):
    """(scored frame, snapshot, model inputs); the last two are None for an empty batch."""
    tables = Tables(_canonical(customers), _canonical(events), _canonical(feedback))
    if tables.customers is None and (tables.events is None or tables.events.empty):
        return _empty_scored(release), None, None
    if tables.customers is not None and tables.customers.empty:
        return _empty_scored(release), None, None
    snapshot = make_scoring_snapshot(tables, release.spec, pd.Timestamp(cutoff) if cutoff is not None else None)
    features = release.pipeline.transform(snapshot)
    probs = release.run(features, batch_size)
    p = probs.pop("churn_probability")
    scored = pd.DataFrame({"customer_id": snapshot.static["customer_id"].to_numpy(), "churn_probability": p,
                           "risk_band": risk_band(p, bands)})
    for name, values in probs.items():
        scored[name] = values
    scored["cutoff"] = snapshot.static["cutoff"].to_numpy()
    return scored, snapshot, features


def _empty_scored(release: ChurnRelease) -> pd.DataFrame:
    cols = {"customer_id": object, "churn_probability": "float64", "risk_band": object}
    cols.update({f"p_churn_{h}d": "float64" for h in release.horizons})
    cols["cutoff"] = "datetime64[ns]"
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
