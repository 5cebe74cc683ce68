"""The one rejects schema of every batch job: which input row was not used, and why.

Columns: `source` (input file), `row` (1-based data row, header excluded), `customer_id` (the row's customer, when
it has one), `column` (source column name at fault), `reason`. Every input row of a batch job is either scored or
listed here.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from churnsense.core.io import AtomicTableWriter

REJECT_COLUMNS = ["source", "row", "customer_id", "column", "reason"]
SCHEMA = pa.schema([("source", pa.string()), ("row", pa.int64()), ("customer_id", pa.string()),
                    ("column", pa.string()), ("reason", pa.string())])


def rejects_path_for(output: str | os.PathLike) -> Path:
    """Default rejects file: `<output stem>.rejects.csv` next to the output."""
    output = Path(output)
    return output.with_name(f"{output.stem}.rejects.csv")


def make_rejects(source: str, rows: list[int], keys: list, column: str | list[str],
                 reason: str | list[str]) -> pd.DataFrame:
    """Build a rejects frame (columns `REJECT_COLUMNS`); scalars broadcast to every row."""
    frame = pd.DataFrame({"source": source, "row": pd.array(rows, dtype="Int64"), "customer_id": keys,
                          "column": column, "reason": reason}, columns=REJECT_COLUMNS)
    if not len(frame):
        return frame
    return frame.astype({"source": str, "customer_id": "string", "column": "string", "reason": str})


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
        frame = frame.reindex(columns=REJECT_COLUMNS).astype({"customer_id": "string", "column": "string"})
        for source, count in frame["source"].value_counts().items():
            self.by_source[str(source)] = self.by_source.get(str(source), 0) + int(count)
        super().write(frame)
