"""The one validator of the data contract, with two modes: raise (training) and reject (scoring).

Per value: map source columns to canonical ones, coerce types, check with pandera (`check_frame`). Per table: the
contract's rules over rows — duplicate customer ids, events/feedback of unknown customers, customers not active at
the scoring date (`duplicate_ids`, `unknown_ids`, `inactive_customers`). Training (`load_tables`) turns any problem
into one `DataValidationError` naming file, column, rows and reason (`raise_issues`, `raise_rule`); scoring keeps
the good rows and returns the bad ones as rejects with a reason each (`split_valid_rows`, `validate_chunk`,
`reject_rule`).
"""
from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa

from churnsense.core.partition import ROW
from churnsense.core.rejects import REJECT_COLUMNS
from churnsense.data.contract import DATE_COLUMNS, OPTIONAL, REQUIRED, SENTIMENTS, TableSpec

Kind = Literal["customers", "events", "feedback"]
NEGATIVE_LABELS = ("0", "no", "false", "stay", "stayed", "active")


class DataValidationError(ValueError):
    """A data file breaks the contract. `rows` are 1-based data rows (header excluded); empty if file-wide."""

    def __init__(self, file: str, column: str | None, rows: list[int], reason: str, more: str = ""):
        self.file, self.column, self.rows, self.reason = file, column, list(rows), reason
        where = f"column {column!r}" if column else "table"
        shown = ", ".join(map(str, self.rows[:10])) + (f" … ({len(self.rows)} rows)" if len(self.rows) > 10 else "")
        at = f", row(s) {shown}" if self.rows else ""
        super().__init__(f"{file}: {where}{at}: {reason}{more}")


def _blank_to_na(s: pd.Series) -> pd.Series:
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        s = s.astype("string").str.strip()
        return s.mask(s == "", pd.NA)
    return s


def _to_datetime(s: pd.Series, fmt: str | None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        out = s.dt.tz_convert(None) if getattr(s.dt, "tz", None) is not None else s
    else:
        raw = _blank_to_na(s.astype("string") if fmt else s)
        out = pd.to_datetime(raw, errors="coerce", format=fmt)
        retry = out.isna() & raw.notna()
        if fmt is None and retry.any():  # inferred from the first value: parse the others one by one
            out = out.astype("datetime64[ns]")
            out[retry] = pd.to_datetime(raw[retry], errors="coerce", format="mixed").astype("datetime64[ns]")
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_convert(None)
    return out.astype("datetime64[ns]")


def _issue(rows: Iterable[int], column: str, reason: str) -> pd.DataFrame:
    rows = np.asarray(list(rows), dtype=np.int64)
    return pd.DataFrame({"pos": rows, "column": column, "reason": reason})


def canonical_columns(table: TableSpec, kind: Kind, present: Iterable[str],
                      optional_if_present: bool = False) -> dict[str, str]:
    """canonical -> source for every column this table contributes (required, optional, attributes).

    Optional columns are required when mapped in the config, unless `optional_if_present` (serving: a scoring
    file need not carry churn_date / observed_until / label / sentiment)."""
    present = set(present)
    wanted = [c for c in REQUIRED[kind] if c not in table.constants]
    wanted += [c for c in OPTIONAL[kind] if table.source(c) in present
               or (c in table.columns and not optional_if_present)]
    wanted += [c for c in table.attributes if c not in wanted]
    return {c: table.source(c) for c in wanted if c not in table.constants}


def _coerce(df: pd.DataFrame, table: TableSpec, kind: Kind,
            optional_if_present: bool = False) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Rename to canonical names and coerce types; values that fail to parse become issues."""
    mapping = canonical_columns(table, kind, df.columns, optional_if_present)
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    issues: list[pd.DataFrame] = []
    for canon, src in mapping.items():
        raw = df[src].reset_index(drop=True)
        col, bad = _coerce_one(canon, raw, table, kind)
        out[canon] = col
        if bad is not None and bad.any():
            issues.append(_issue(np.flatnonzero(bad), src, bad.attrs.get("reason", "bad value")))
    for canon, value in table.constants.items():
        out[canon] = value
    if "event_type" in out:
        out["event_type"] = out["event_type"].astype(str)
    return out, issues


def _coerce_one(canon: str, raw: pd.Series, table: TableSpec, kind: Kind) -> tuple[pd.Series, pd.Series | None]:
    present = _blank_to_na(raw).notna()
    if canon == "customer_id":
        col = _blank_to_na(raw.astype("string")).astype(object)
        return col.where(present, None), None
    if canon in DATE_COLUMNS:
        col = _to_datetime(raw, table.timestamp_format)
        bad = present & col.isna()
        bad.attrs["reason"] = "unparseable timestamp" + (f" (format {table.timestamp_format})"
                                                         if table.timestamp_format else "")
        return col, bad
    if canon in table.numeric or canon == "value":
        col = pd.to_numeric(_blank_to_na(raw), errors="coerce").astype("float64")
        bad = present & col.isna()
        bad.attrs["reason"] = "not a number"
        return col, bad
    if canon == "label":
        key = _blank_to_na(raw.astype("string")).str.lower()
        pos = {str(v).lower() for v in table.positive_labels}
        col = pd.Series(np.where(key.isin(pos).fillna(False), 1.0, 0.0), index=raw.index)
        bad = present & ~key.isin(pos | set(NEGATIVE_LABELS)).fillna(False)
        bad.attrs["reason"] = f"label must be one of {sorted(pos | set(NEGATIVE_LABELS))}"
        return col, bad
    if canon == "sentiment":
        key = _blank_to_na(raw.astype("string")).str.lower()
        bad = present & ~key.isin(SENTIMENTS).fillna(False)
        bad.attrs["reason"] = f"sentiment must be one of {list(SENTIMENTS)}"
        return key.astype(object).where(present & ~bad, None), bad
    col = _blank_to_na(raw.astype("string")).astype(object)  # categorical attributes and free text
    return col.where(present, None), None


def _schema(kind: Kind) -> pa.DataFrameSchema:
    cols = {"customer_id": pa.Column(None, nullable=False)}
    if kind in ("events", "feedback"):
        cols["ts"] = pa.Column("datetime64[ns]", nullable=False)
    if kind == "events":
        cols["event_type"] = pa.Column(None, nullable=False)
        cols["value"] = pa.Column("float64", nullable=True)
    return pa.DataFrameSchema(cols, strict=False)


def _schema_issues(canon: pd.DataFrame, table: TableSpec, kind: Kind) -> list:
    try:
        _schema(kind).validate(canon, lazy=True)
        return []
    except pa.errors.SchemaErrors as err:
        fc = err.failure_cases
    issues = []
    for (column, check), grp in fc.groupby(["column", "check"], dropna=False, sort=False):
        reason = {"not_nullable": "missing value"}.get(str(check), str(check))
        pos = pd.to_numeric(grp["index"], errors="coerce").dropna().astype(int)
        issues.append(_issue(pos, table.source(str(column)), reason))
    return issues


def check_frame(df: pd.DataFrame, table: TableSpec, kind: Kind, source: str,
                optional_if_present: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical frame + per-value issues [pos (0-based), column (source name), reason]. Missing columns raise at
    once."""
    needed = canonical_columns(table, kind, df.columns, optional_if_present)
    missing = [src for src in needed.values() if src not in df.columns]
    if missing:
        raise DataValidationError(source, missing[0], [],
                                  f"missing column(s) {missing} (have {list(df.columns)[:30]}); "
                                  f"map them in the data config `{kind}.columns`")
    canon, issues = _coerce(df, table, kind, optional_if_present)
    issues += _schema_issues(canon, table, kind)
    issues_df = pd.concat(issues, ignore_index=True) if issues else _issue([], "", "")
    return canon, issues_df.drop_duplicates(["pos", "column"]).reset_index(drop=True)


def raise_issues(issues: pd.DataFrame, source: str, first_row: int = 1) -> None:
    """Raise one DataValidationError for the first problem; the message counts the others."""
    if issues.empty:
        return
    groups = list(issues.groupby(["column", "reason"], sort=False))
    (column, reason), grp = groups[0]
    more = "".join(f"; also column {c!r}: {r} ({len(g)} rows, first row {int(g['pos'].min()) + first_row})"
                   for (c, r), g in groups[1:4])
    rows = sorted(set((grp["pos"] + first_row).tolist()))
    raise DataValidationError(source, str(column), rows, str(reason), more)


def split_valid_rows(df: pd.DataFrame, table: TableSpec, kind: Kind, source: str,
                     first_row: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reject mode of `check_frame`: (valid rows in canonical names/dtypes, rejects in `REJECT_COLUMNS`).

    Bad rows never raise; a missing column (nothing can be scored) does. Optional columns (churn_date,
    observed_until, label, sentiment, …) may be absent.
    """
    canon, issues = check_frame(df, table, kind, source, optional_if_present=True)
    if issues.empty:
        return canon, pd.DataFrame(columns=REJECT_COLUMNS)
    issues = issues.drop_duplicates("pos").sort_values("pos")
    pos = issues["pos"].to_numpy()
    ids = canon["customer_id"].to_numpy()[pos] if len(canon) else np.array([], dtype=object)
    rejects = pd.DataFrame({"source": source, "row": pos + first_row, "customer_id": ids,
                            "column": issues["column"].to_numpy(), "reason": issues["reason"].to_numpy()})
    keep = np.ones(len(canon), dtype=bool)
    keep[pos] = False
    return canon[keep].reset_index(drop=True), rejects.reset_index(drop=True)


# ---------------------------------------------------------------- table rules (raise or reject)
def duplicate_ids(ids: pd.Series, rejected: Collection = ()) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose customer id occurs more than once (every one of them: which is right is unknown), or whose id
    was already rejected on another row; (mask, reason per row)."""
    dup = ids.duplicated(keep=False).to_numpy()
    also = ids.isin(list(rejected)).to_numpy() if rejected else np.zeros(len(ids), bool)
    reason = np.where(dup, "duplicate customer id", "duplicate customer id (another row with it was rejected)")
    return dup | also, reason


def unknown_ids(ids: pd.Series, known: pd.Index, rejected: Collection = ()) -> tuple[np.ndarray, np.ndarray]:
    """Event/feedback rows whose customer is not in the customers table, or whose customer row was rejected."""
    bad = ~ids.isin(known).to_numpy()
    was_rejected = ids.isin(list(rejected)).to_numpy() if rejected else np.zeros(len(ids), bool)
    reason = np.where(was_rejected, "customer row rejected (see the customers rejects)",
                      "unknown customer id (not in the customers table)")
    return bad, reason


def inactive_customers(customers: pd.DataFrame, cutoff: pd.Timestamp) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers who are not customers at the cutoff: `churn_date` before it (already left) or `signup_date` on or
    after it (not yet joined), when those columns are there; (mask, reason per row, canonical column per row)."""
    mask = np.zeros(len(customers), dtype=bool)
    reason = np.full(len(customers), "", dtype=object)
    column = np.full(len(customers), "", dtype=object)
    for name, word in (("churn_date", "already churned on"), ("signup_date", "not yet a customer: signed up on")):
        if name not in customers:
            continue
        when = pd.to_datetime(customers[name])
        bad = (when.notna() & ((when < cutoff) if name == "churn_date" else (when >= cutoff))).to_numpy() & ~mask
        reason[bad] = [f"{word} {d.date()} (cutoff {cutoff.date()})" for d in when[bad]]
        column[bad] = name
        mask |= bad
    return mask, reason, column


def raise_rule(mask: np.ndarray, reason: np.ndarray, source: str, column: str) -> None:
    """Raise mode of a table rule: one DataValidationError for the first reason, naming every offending row
    (1-based positions in `source`)."""
    if not mask.any():
        return
    rows = np.flatnonzero(mask)
    first = str(reason[rows[0]])
    raise DataValidationError(source, column, (rows[reason[rows] == first] + 1).tolist(), first)


def reject_rule(frame: pd.DataFrame, mask: np.ndarray, reason: np.ndarray, source: str,
                column: str | np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reject mode of a table rule: (rows kept, rejects of the others; row numbers from the `_row` column).
    `column`: the source column at fault, one for all rows or one per row."""
    rejects = pd.DataFrame({"source": source, "row": frame.loc[mask, ROW].to_numpy(np.int64),
                            "customer_id": frame.loc[mask, "customer_id"].astype("string").to_numpy(),
                            "column": column[mask] if isinstance(column, np.ndarray) else column,
                            "reason": reason[mask]}, columns=REJECT_COLUMNS)
    return frame[~mask], rejects


# ---------------------------------------------------------------- scoring inputs
LABEL_ONLY = ("observed_until", "label")  # training labels: never read when scoring (churn_date: see inactive)


def scoring_table(table: TableSpec) -> TableSpec:
    """The table spec for scoring: label-only columns are never read (a scoring file's observed_until / label are
    ignored, not validated); optional columns a file lacks are tolerated by `split_valid_rows`."""
    return replace(table, columns={c: s for c, s in table.columns.items() if c not in LABEL_ONLY})


def read_columns(table: TableSpec, kind: Kind, present: list[str]) -> list[str]:
    """Source columns to read for scoring (in file order); required ones that are missing are left to validation
    to report (it raises naming them)."""
    wanted = set(canonical_columns(scoring_table(table), kind, present, optional_if_present=True).values())
    return [p for p in present if p in wanted]


def validate_chunk(raw: pd.DataFrame, table: TableSpec, kind: Kind, source: str,
                   first_row: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reject mode over consecutive rows starting at data row `first_row`: (canonical valid rows with their row
    number in column `_row`, rejects in `REJECT_COLUMNS`)."""
    table = scoring_table(table)
    raw = raw[read_columns(table, kind, list(raw.columns)) or list(raw.columns)]
    valid, rejects = split_valid_rows(raw, table, kind, source, first_row)
    rows = np.arange(first_row, first_row + len(raw), dtype=np.int64)
    valid[ROW] = rows[~np.isin(rows, rejects["row"].to_numpy(dtype=np.int64))]
    return valid, rejects.reindex(columns=REJECT_COLUMNS)
