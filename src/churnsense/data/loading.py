"""Load the configured tables, validated, in canonical names and dtypes (training use)."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from churnsense.data.contract import DataSpec, TableSpec
from churnsense.core.io import read_table
from churnsense.data.validation import DataValidationError, Kind, check_frame, raise_issues


@dataclass
class Tables:
    customers: pd.DataFrame | None
    events: pd.DataFrame | None
    feedback: pd.DataFrame | None


def read_validated(table: TableSpec, kind: Kind, known_ids: pd.Index | None = None) -> pd.DataFrame:
    """Read every file of a table, validate each (rows numbered per file), concatenate."""
    parts = []
    for path in table.paths:
        raw = read_table(path, read_options=table.read_options)
        canon, issues = check_frame(raw, table, kind, path, known_ids)
        raise_issues(issues, path)
        parts.append(canon)
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if kind == "customers" and len(parts) > 1:
        dup = df["customer_id"].duplicated(keep=False)
        if dup.any():
            raise DataValidationError(" + ".join(table.paths), table.source("customer_id"),
                                      (dup[dup].index + 1).tolist()[:50],
                                      "duplicate customer id across files (rows counted over the files in order)")
    return df


def load_tables(spec: DataSpec) -> Tables:
    """Validated tables; raises DataValidationError (file, column, rows, reason) on the first broken file."""
    customers = read_validated(spec.customers, "customers") if spec.customers else None
    known = pd.Index(customers["customer_id"]) if customers is not None else None
    events = read_validated(spec.events, "events", known) if spec.events else None
    feedback = read_validated(spec.feedback, "feedback", known) if spec.feedback else None
    if events is not None:
        events = events.sort_values(["customer_id", "ts"], kind="stable", ignore_index=True)
    if feedback is not None:
        feedback = feedback.sort_values(["customer_id", "ts"], kind="stable", ignore_index=True)
    if customers is None:
        customers = customers_from_events(events)
    return Tables(customers=customers, events=events, feedback=feedback)


def customers_from_events(events: pd.DataFrame) -> pd.DataFrame:
    """Customer list of an events-only data set: first event = signup, last event seen = observed_until."""
    g = events.groupby("customer_id", sort=True)["ts"]
    out = pd.DataFrame({"signup_date": g.min(), "last_event": g.max()}).reset_index()
    out["observed_until"] = events["ts"].max().normalize() + pd.Timedelta(days=1)
    return out
