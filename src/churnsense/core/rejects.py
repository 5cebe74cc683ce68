"""The one rejects schema of every batch job: which input rows were not used, and why.

Columns: `source` (input file, relative to the rejects file's folder), `row` (1-based data row, header excluded),
`customer_id` (the row's customer, when it has one), `column` (source column name at fault), `reason`, `rows` (how
many input rows of `source` the line stands for). Every input row of a batch job is either used or counted here.

A row that is wrong in itself (a bad value, a malformed record) gets a line of its own (`rows` = 1). Rows dropped
because of their customer (a rejected or unknown customer, history dated on or after the scoring date) are
summarised: one line per source file, customer and reason, `row` = the first of them, `rows` = how many
(`summarize_by_customer`); `detail=True` lists them one by one instead. So a rejects file grows with the number of
rejected customers and bad rows, not with the length of their histories.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from churnsense.core.io import AtomicTableWriter

REJECT_COLUMNS = ["source", "row", "customer_id", "column", "reason", "rows"]
SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("row", pa.int64()),
        ("customer_id", pa.string()),
        ("column", pa.string()),
        ("reason", pa.string()),
        ("rows", pa.int64()),
    ]
)


def rejects_path_for(output: str | os.PathLike) -> Path:
    """Default rejects file: `<output stem>.rejects.csv` next to the output."""
    output = Path(output)
    return output.with_name(f"{output.stem}.rejects.csv")


def make_rejects(
    source: str, rows: list[int], keys: list, column: str | list[str], reason: str | list[str]
) -> pd.DataFrame:
    """Build a rejects frame (columns `REJECT_COLUMNS`, one input row per line); scalars broadcast to every row."""
    frame = pd.DataFrame(
        {
            "source": source,
            "row": pd.array(rows, dtype="Int64"),
            "customer_id": keys,
            "column": column,
            "reason": reason,
            "rows": 1,
        },
        columns=REJECT_COLUMNS,
    )
    if not len(frame):
        return frame
    return frame.astype({"source": str, "customer_id": "string", "column": "string", "reason": str, "rows": "int64"})


def empty_rejects() -> pd.DataFrame:
    """A rejects frame without rows."""
    return pd.DataFrame(columns=REJECT_COLUMNS)


def with_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` in `REJECT_COLUMNS`, lines without a `rows` count standing for one row each."""
    frame = frame.reindex(columns=REJECT_COLUMNS)
    return frame.assign(rows=pd.to_numeric(frame["rows"], errors="coerce").fillna(1).astype("int64"))


def summarize_by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per (source, customer_id, column, reason): `row` = the first row, `rows` = the rows it stands for.
    Lines without a customer id stay as they are."""
    frame = with_counts(frame)
    if frame.empty:
        return frame
    has_id = frame["customer_id"].notna().to_numpy()
    keys = ["source", "customer_id", "column", "reason"]
    grouped = (
        frame[has_id]
        .astype({"column": "string"})
        .fillna({"column": ""})
        .groupby(keys, sort=False, dropna=False)
        .agg(row=("row", "min"), rows=("rows", "sum"))
        .reset_index()
    )
    return pd.concat([grouped.reindex(columns=REJECT_COLUMNS), frame[~has_id]], ignore_index=True)


def relative_source(source: str, folder: Path) -> str:
    """`source` relative to `folder` (the rejects file's), or as given when that is not possible."""
    if not source or source.startswith("pkg://"):
        return source
    try:
        return os.path.relpath(Path(source).resolve(), folder.resolve())
    except ValueError:  # another drive (Windows)
        return source


class RejectsWriter(AtomicTableWriter):
    """Atomic writer for the rejects table; counts rejected input rows per source file (as given to `write`) and
    writes each source relative to the rejects file's folder."""

    SCHEMA = SCHEMA

    def __init__(self, path: str | os.PathLike, deferred: bool = False) -> None:
        super().__init__(path, schema=SCHEMA, deferred=deferred)
        self.by_source: dict[str, int] = {}
        self._relative: dict[str, str] = {}

    def write(self, frame: pd.DataFrame) -> None:
        """Append reject lines (any frame with the `REJECT_COLUMNS`; a missing `rows` count means 1)."""
        if frame is None or not len(frame):
            return
        frame = with_counts(frame).astype({"customer_id": "string", "column": "string"})
        for source, count in frame.groupby("source", sort=False)["rows"].sum().items():
            self.by_source[str(source)] = self.by_source.get(str(source), 0) + int(count)
        sources = frame["source"].astype(str)
        for source in sources.unique():
            if source not in self._relative:
                self._relative[source] = relative_source(source, self.path.parent)
        super().write(frame.assign(source=sources.map(self._relative)))
