"""Load the configured tables, validated, in canonical names and dtypes (training use)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from churnsense.core.frames import stable_sort
from churnsense.core.io import read_table
from churnsense.data.contract import DataSpec, TableSpec
from churnsense.data.validation import Kind, check_frame, duplicate_ids, raise_issues, raise_rule, unknown_ids

log = logging.getLogger(__name__)


@dataclass
class Tables:
    customers: pd.DataFrame | None
    events: pd.DataFrame | None
    feedback: pd.DataFrame | None
    offers: pd.DataFrame | None = None  # the retention-offer log (training only; None: no log configured)


def read_validated(table: TableSpec, kind: Kind) -> pd.DataFrame:
    """Read every file of a table and check its values (rows numbered per file; `id_from_row` ids count on over
    the files in order), then concatenate."""
    parts, offset = [], 0
    for path in table.paths:
        raw = read_table(path, read_options=table.read_options)
        canon, issues = check_frame(raw, table, kind, path, first_row=offset + 1)
        raise_issues(issues, path)
        parts.append(canon)
        offset += len(raw)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def load_tables(spec: DataSpec) -> Tables:
    """Validated tables; raises DataValidationError (file, column, rows, reason) on the first broken file or rule:
    duplicate customer ids (over all customer files, rows counted over the files in order), events or feedback
    of customers not in the customers table."""
    customers = read_validated(spec.customers, "customers") if spec.customers else None
    if customers is not None:
        raise_rule(
            *duplicate_ids(customers["customer_id"]),
            " + ".join(spec.customers.paths),
            spec.customers.source("customer_id"),
        )
    known = pd.Index(customers["customer_id"]) if customers is not None else None
    events = read_validated(spec.events, "events") if spec.events else None
    feedback = read_validated(spec.feedback, "feedback") if spec.feedback else None
    for kind, frame in (("events", events), ("feedback", feedback)):
        if frame is not None and known is not None:
            table = spec.table(kind)
            raise_rule(*unknown_ids(frame["customer_id"], known), " + ".join(table.paths), table.source("customer_id"))
    if events is not None:
        events = stable_sort(events, ["customer_id", "ts"])
    if feedback is not None:
        feedback = stable_sort(feedback, ["customer_id", "ts"])
    offers = load_offers(spec, known)
    if customers is None:
        customers = customers_from_events(events)
    return Tables(customers=customers, events=events, feedback=feedback, offers=offers)


def load_offers(spec: DataSpec, known: pd.Index | None) -> pd.DataFrame | None:
    """The validated offer log (values; rows of customers not in the customers table are an error), sorted by
    time; None when the data set has none. A configured file that does not exist is a one-line notice, not an
    error: the release is trained without uplift."""
    table = spec.offers
    if table is None:
        return None
    missing = [p for p in table.paths if not p.startswith("pkg://") and not Path(p).exists()]
    if missing:
        log.warning("offers: %s not found: uplift is off (no action will claim a saving)", missing[0])
        return None
    offers = read_validated(table, "offers")
    if known is not None:
        raise_rule(*unknown_ids(offers["customer_id"], known), " + ".join(table.paths), table.source("customer_id"))
    return offers.sort_values(["ts", "customer_id"], kind="stable", ignore_index=True)


def customers_from_events(events: pd.DataFrame) -> pd.DataFrame:
    """Customer list of an events-only data set: first event = signup, last event seen = observed_until."""
    g = events.groupby("customer_id", sort=True)["ts"]
    out = pd.DataFrame({"signup_date": g.min(), "last_event": g.max()}).reset_index()
    out["observed_until"] = events["ts"].max().normalize() + pd.Timedelta(days=1)
    return out
