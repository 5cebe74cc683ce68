"""The one rejects schema of every batch job: which input row was not used, and why.

Columns: `source` (input file), `row` (1-based data row, header excluded), `customer_id` (the row's customer, when
it has one), `column` (source column name at fault), `reason`, `rows` (input rows the line stands for: 1, or, for
the event / feedback rows dropped only because their customer was rejected, one line per customer and file with
their count and first row, unless the job keeps the detail). Every input row of a batch job is either scored or
counted here.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from churnsense.core.io import AtomicTableWriter

REJECT_COLUMNS = ["source", "row", "customer_id", "column", "reason", "rows"]
SCHEMA = pa.schema([("source", pa.string()), ("row", pa.int64()), ("customer_id", pa.string()),
                    ("column", pa.string()), ("reason", pa.string()), ("rows", pa.int64())])
CUSTOMER_REJECTED = "customer row rejected (see the customers rejects)"  # a row dropped with its customer


def rejects_path_for(output: str | os.PathLike) -> Path:
    """Default rejects file: `<output stem>.rejects.csv` next to the output."""
    output = Path(output)
    return output.with_name(f"{output.stem}.rejects.csv")


def make_rejects(source: str, rows: list[int], keys: list, column: str | list[str],
                 reason: str | list[str]) -> pd.DataFrame:
    """Build a rejects frame (columns `REJECT_COLUMNS`); scalars broadcast to every row."""
    frame = pd.DataFrame({"source": source, "row": pd.array(rows, dtype="Int64"), "customer_id": keys,
                          "column": column, "reason": reason, "rows": 1}, columns=REJECT_COLUMNS)
    if not len(frame):
        return frame
    return frame.astype({"source": str, "customer_id": "string", "column": "string", "reason": str})


def with_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` in `REJECT_COLUMNS`, each line standing for one input row unless it says otherwise."""
    frame = frame.reindex(columns=REJECT_COLUMNS)
    frame["rows"] = pd.to_numeric(frame["rows"], errors="coerce").fillna(1).astype("int64")
    return frame


def collapse_dropped_with_customer(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per (file, customer) for the rows dropped only because their customer was rejected: the first
    row, the count in `rows`; every other reject line unchanged. Needs all rows of each customer in `frame`."""
    frame = with_counts(frame)
    dropped = frame["reason"].eq(CUSTOMER_REJECTED).to_numpy() & frame["customer_id"].notna().to_numpy()
    if not dropped.any():
        return frame
    part = frame[dropped].sort_values(["source", "customer_id", "row"], kind="stable")
    grouped = part.groupby(["source", "customer_id"], sort=False, observed=True)
    lines = grouped.head(1).reset_index(drop=True)
    lines["rows"] = grouped["rows"].sum().to_numpy()
    return pd.concat([frame[~dropped], lines], ignore_index=True)


def empty_rejects() -> pd.DataFrame:
    """A rejects frame without rows."""
    return pd.DataFrame(columns=REJECT_COLUMNS)


class RejectsWriter(AtomicTableWriter):
    """Atomic writer for the rejects table; counts rejected rows per source file."""

    SCHEMA = SCHEMA

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path, schema=SCHEMA)
        self.by_source: dict[str, int] = {}

    def write(self, frame: pd.DataFrame) -> None:
        """Append reject rows (any frame with the `REJECT_COLUMNS`; extra columns are ignored)."""
        if frame is None or not len(frame):
            return
        frame = with_counts(frame).astype({"customer_id": "string", "column": "string"})
        for source, count in frame.groupby("source")["rows"].sum().items():
            self.by_source[str(source)] = self.by_source.get(str(source), 0) + int(count)
        super().write(frame)
