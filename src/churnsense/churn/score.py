"""`score_churn_batch`: the pure scoring core (pandas in, pandas out), so the same code runs in `serve.py`, in an
MLflow pyfunc and inside Spark/Ray `mapInPandas`-style jobs.

A batch must hold every row of each of its customers (all their events and feedback); `serve_churn` guarantees
that by hash-partitioning the inputs by customer id. Inputs use the release's *source* column names (its data
mapping) unless `validated=True`, in which case they are already canonical (see `validate_chunk`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from churnsense.churn.release import ChurnRelease
from churnsense.core.frames import stable_sort
from churnsense.core.partition import ROW
from churnsense.core.rejects import REJECT_COLUMNS, summarize_by_customer, with_counts
from churnsense.data.contract import KINDS, DataSpec
from churnsense.data.framing import history_days, make_scoring_snapshot, scoring_cutoff
from churnsense.data.loading import Tables
from churnsense.data.validation import (
    dated_from,
    duplicate_ids,
    inactive_customers,
    reject_lines,
    reject_rule,
    unknown_ids,
    validate_chunk,
)
from churnsense.feedback.score import score_feedback_batch

log = logging.getLogger(__name__)
DEFAULT_RISK_BANDS = {"low": 0.0, "medium": 0.2, "high": 0.5}


def reject_customers(
    customers: pd.DataFrame, cutoff: pd.Timestamp | None, rejected_ids: set, source: str, spec: DataSpec
) -> tuple[pd.DataFrame, list[pd.DataFrame], set]:
    """The contract's customer rules in reject mode: duplicate ids, then (with a cutoff) customers not active at
    it; returns the kept customers, the rejects and every rejected id."""
    table = spec.customers
    customers, rej = reject_rule(
        customers, *duplicate_ids(customers["customer_id"], rejected_ids), source, table.source("customer_id")
    )
    rejects = [rej]
    if cutoff is not None:
        mask, reason, column = inactive_customers(customers, pd.Timestamp(cutoff))
        source_column = np.asarray([table.source(c) if c else "" for c in column], dtype=object)
        customers, rej = reject_rule(customers, mask, reason, source, source_column)
        rejects.append(rej)
    rejected_ids = set(rejected_ids) | {k for r in rejects for k in r["customer_id"].dropna()}
    return customers.drop(columns=["churn_date"], errors="ignore"), rejects, rejected_ids


def risk_band(probability: np.ndarray, bands: Mapping[str, float]) -> np.ndarray:
    """Name of the highest band whose lower edge is <= the probability."""
    names, edges = zip(*sorted(bands.items(), key=lambda kv: float(kv[1])))
    idx = np.searchsorted(np.asarray(edges, float), probability, side="right") - 1
    return np.asarray(names, dtype=object)[np.clip(idx, 0, len(names) - 1)]


def fill_sentiment(feedback: pd.DataFrame, feedback_release, source: str, text_column: str = "text"):
    """Predict `sentiment` for feedback rows without it with the feedback release; (feedback, rejects)."""
    scored, rejects = score_feedback_batch(
        feedback.reset_index(drop=True), feedback_release, text_column, first_row=1, source=source
    )
    rows = feedback[ROW].to_numpy(np.int64)
    rejects = rejects.reindex(columns=REJECT_COLUMNS)
    rejects["row"] = rows[rejects["row"].to_numpy(np.int64) - 1] if len(rejects) else rejects["row"]
    added = ["sentiment"] + (["topic"] if "topic" not in feedback and "topic" in scored else [])
    return scored[list(feedback.columns) + added], rejects


def _ensure_rows(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    if frame is not None and ROW not in frame:
        frame = frame.assign(**{ROW: np.arange(1, len(frame) + 1, dtype=np.int64)})
    return frame


def score_churn_batch(
    customers: pd.DataFrame | None,
    events: pd.DataFrame | None,
    feedback: pd.DataFrame | None,
    release: ChurnRelease,
    cutoff: pd.Timestamp | str | None,
    *,
    validated: bool = False,
    sources: Mapping[str, str] | None = None,
    rejected_ids: set | None = None,
    risk_bands: Mapping[str, float] | None = None,
    batch_size: int = 1024,
    feedback_release=None,
    text_column: str = "text",
    insights: bool = False,
    monitor: Callable | None = None,
    rejects_detail: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score one batch of customers: (scored, rejects).

    scored: customer_id, churn_probability, risk_band, p_churn_<h>d per hazard horizon (if the model has them),
    cutoff — one row per scored customer. rejects: `core.rejects` lines — every input row that was not used, so
    len(customers) == len(scored) + customer rejects. Row numbers come from a `_row` column when the frames carry
    one, else 1-based positions. `rejected_ids` are customer ids rejected elsewhere (other chunks).
    `cutoff` None: the release's rule (`scoring_cutoff` over this batch's history); pass one for a whole file.
    Event and feedback rows dated on or after the cutoff are rejects (not history at that date).
    `insights`: add reasons, segment, action, routing and value columns (`churnsense.insights.enrich`).
    `monitor`: called as `monitor(snapshot, scored)` on a non-empty batch (drift monitoring counts it).
    `rejects_detail`: list every event / feedback row dropped because of its customer or its date, instead of one
    line per customer and reason with the count (`core.rejects.summarize_by_customer`).
    """
    spec, sources = release.spec, {**{k: k for k in KINDS}, **(sources or {})}
    frames = dict(zip(KINDS, (_ensure_rows(customers), _ensure_rows(events), _ensure_rows(feedback))))
    frames = {k: (f if spec.table(k) is not None else None) for k, f in frames.items()}
    del customers, events, feedback  # `frames` holds them: each is freed once its filtered version replaces it
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
                    rejected_ids = set(rejected_ids or ()) | set(rej["customer_id"].dropna())
    if cutoff is None:
        cutoff = scoring_cutoff(spec.framing, None, history_days(frames["events"], frames["feedback"]))
    cutoff = pd.Timestamp(cutoff)
    dropped: list[pd.DataFrame] = []  # rows dropped because of their customer or date: summarised per customer
    unknown: dict[str, np.ndarray] = {}  # history rows of customers not scored (the first rule that drops them)
    if frames["customers"] is not None:
        frames["customers"], rejs, rejected_ids = reject_customers(
            frames["customers"], cutoff, set(rejected_ids or ()), sources["customers"], spec
        )
        rejects.extend(rejs)
        known = pd.Index(frames["customers"]["customer_id"])
        for kind in ("events", "feedback"):
            if frames[kind] is not None:
                unknown[kind], reason = unknown_ids(frames[kind]["customer_id"], known, rejected_ids)
                column = spec.table(kind).source("customer_id")
                dropped.append(reject_lines(frames[kind], unknown[kind], reason, sources[kind], column))
    for kind in ("events", "feedback"):
        if frames[kind] is not None:  # both rules' rows leave in one filter (one copy of a large history)
            gone = unknown.get(kind, np.zeros(len(frames[kind]), dtype=bool))
            dated, reason = dated_from(frames[kind]["ts"], cutoff)
            dated &= ~gone
            column = spec.table(kind).source("ts")
            dropped.append(reject_lines(frames[kind], dated, reason, sources[kind], column))
            frames[kind] = frames[kind][~(gone | dated)]
    customers, events, feedback = frames["customers"], frames["events"], frames["feedback"]
    dropped = [r for r in dropped if len(r)]
    if dropped:
        lines = pd.concat(dropped, ignore_index=True)
        rejects.append(lines if rejects_detail else summarize_by_customer(lines))
    if feedback is not None and feedback_release is not None and "sentiment" not in feedback:
        feedback, rej = fill_sentiment(feedback, feedback_release, sources["feedback"], text_column)
        rejects.append(rej)
    scored, snapshot, features = _score(
        customers, events, feedback, release, cutoff, risk_bands or DEFAULT_RISK_BANDS, batch_size
    )
    if monitor is not None and snapshot is not None:
        monitor(snapshot, scored)
    if insights:  # an empty batch gets the (typed, empty) insight columns too: every partition has one schema
        from churnsense.insights.enrich import enrich  # scores-only runs do not load the insights stack

        scored = enrich(
            scored,
            _canonical(customers),
            _canonical(events),
            _canonical(feedback),
            release,
            cutoff,
            snapshot=snapshot,
            batch=features,
        )
    rejects = [with_counts(r) for r in rejects if len(r)]
    out_rejects = pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(columns=REJECT_COLUMNS)
    return scored, out_rejects


def _canonical(frame: pd.DataFrame | None, sort: bool = True) -> pd.DataFrame | None:
    """A table without its row numbers, history rows ordered by customer and time (`sort`)."""
    if frame is None:
        return None
    frame = frame.drop(columns=[ROW], errors="ignore")
    return stable_sort(frame, ["customer_id", "ts"]) if sort and "ts" in frame else frame


def _score(customers, events, feedback, release: ChurnRelease, cutoff, bands, batch_size):
    """(scored frame, snapshot, model inputs); the last two are None for an empty batch."""
    # The snapshot orders the history itself (one stable sort by customer and time gives the order a sort here
    # would) and derives customers from events whatever their order, so the events are not sorted twice.
    tables = Tables(_canonical(customers), _canonical(events, sort=False), _canonical(feedback))
    if tables.customers is None and (tables.events is None or tables.events.empty):
        return _empty_scored(release), None, None
    if tables.customers is not None and tables.customers.empty:
        return _empty_scored(release), None, None
    snapshot = make_scoring_snapshot(tables, release.spec, pd.Timestamp(cutoff) if cutoff is not None else None)
    features = release.pipeline.transform(snapshot)
    probs = release.run(features, batch_size)
    p = probs.pop("churn_probability")
    scored = pd.DataFrame(
        {
            "customer_id": snapshot.static["customer_id"].to_numpy(),
            "churn_probability": p,
            "risk_band": risk_band(p, bands),
        }
    )
    for name, values in probs.items():
        scored[name] = values
    scored["cutoff"] = snapshot.static["cutoff"].to_numpy()
    return scored, snapshot, features


def _empty_scored(release: ChurnRelease) -> pd.DataFrame:
    cols = {"customer_id": object, "churn_probability": "float64", "risk_band": object}
    cols.update({f"p_churn_{h}d": "float64" for h in release.horizons})
    cols["cutoff"] = "datetime64[ns]"
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
