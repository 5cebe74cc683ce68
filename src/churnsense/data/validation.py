"""The one validator of the data contract, with two modes: raise (training) and reject (scoring).

Per value: map source columns to canonical ones, coerce types, check required values (`check_frame`; text is
handled as Arrow arrays, without a Python object per value, and kept in pandas' `str` dtype). A value is bad when
it does not parse, is missing where required, holds bytes that were not valid UTF-8 (ids, categories, texts),
is a number that is not finite or beyond the table's `max_abs_value`, or is a history timestamp in the future; a
malformed CSV record is bad as a whole. Per table: the contract's rules over rows — duplicate customer ids,
events/feedback of unknown customers, customers not active at the scoring date, history dated on or after it
(`duplicate_ids`, `unknown_ids`, `inactive_customers`, `dated_from`). Training (`load_tables`) turns any problem
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
import pyarrow as pa_arrow
import pyarrow.compute as pc

from churnsense.core.frames import is_in
from churnsense.core.io import MALFORMED
from churnsense.core.partition import ROW
from churnsense.core.rejects import REJECT_COLUMNS
from churnsense.data.contract import BOOLEAN_COLUMNS, DATE_COLUMNS, OPTIONAL, REQUIRED, SENTIMENTS, TableSpec

Kind = Literal["customers", "events", "feedback", "offers"]
NEGATIVE_LABELS = ("0", "no", "false", "stay", "stayed", "active")
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "y", "t", "treatment"), ("0", "false", "no", "n", "f", "control")
DAY = pd.Timedelta(days=1)
REPLACEMENT = "\ufffd"
TEXT_DTYPE = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' default `str` dtype, Arrow-backed
FUTURE_SLACK = 2 * DAY  # a timestamp is "in the future" from the day after tomorrow (UTC) on
UNDECODABLE = (
    "undecodable text (bytes that are not valid UTF-8; for another encoding set the table's "
    "read_options: {encoding: ...})"
)


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
        # utc=True: a value with an offset is converted to UTC, a naive one is kept as written; both end naive
        raw = _blank_to_na(s.astype("string") if fmt else s)
        out = pd.to_datetime(raw, errors="coerce", format=fmt, utc=True).dt.tz_convert(None)
        retry = out.isna() & raw.notna()
        if fmt is None and retry.any():  # inferred from the first value: parse the others one by one
            out = out.astype("datetime64[ns]")
            out[retry] = (
                pd.to_datetime(raw[retry], errors="coerce", format="mixed", utc=True)
                .dt.tz_convert(None)
                .astype("datetime64[ns]")
            )
    return out.astype("datetime64[ns]")


def _issue(rows: Iterable[int], column: str, reason: str) -> pd.DataFrame:
    rows = np.asarray(list(rows), dtype=np.int64)
    return pd.DataFrame({"pos": rows, "column": column, "reason": reason})


def canonical_columns(
    table: TableSpec, kind: Kind, present: Iterable[str], optional_if_present: bool = False
) -> dict[str, str]:
    """canonical -> source for every column this table contributes (required, optional, attributes).

    Optional columns are required when mapped in the config, unless `optional_if_present` (serving: a scoring
    file need not carry churn_date / observed_until / label / sentiment)."""
    present = set(present)
    from_row = {"customer_id"} if table.id_from_row and kind == "customers" else set()
    wanted = [c for c in REQUIRED[kind] if c not in table.constants and c not in from_row]
    wanted += [
        c for c in OPTIONAL[kind] if table.source(c) in present or (c in table.columns and not optional_if_present)
    ]
    wanted += [c for c in table.attributes if c not in wanted]
    return {c: table.source(c) for c in wanted if c not in table.constants}


def _coerce(
    df: pd.DataFrame, table: TableSpec, kind: Kind, optional_if_present: bool = False, first_row: int = 1
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Rename to canonical names and coerce types; values that fail a value rule become issues. `first_row`: the
    data row number of the first row (customer ids of an `id_from_row` table are row numbers)."""
    mapping = canonical_columns(table, kind, df.columns, optional_if_present)
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    issues: list[pd.DataFrame] = []
    if MALFORMED in df:
        bad = df[MALFORMED].reset_index(drop=True)
        for reason, rows in bad[bad.notna()].groupby(bad[bad.notna()], sort=False):
            issues.append(_issue(rows.index, "", str(reason)))
    if table.id_from_row and kind == "customers":
        out["customer_id"] = (np.arange(len(df), dtype=np.int64) + first_row).astype(str).astype(object)
    for canon, src in mapping.items():
        raw = df[src].reset_index(drop=True)
        col, problems = _coerce_one(canon, raw, table, kind)
        out[canon] = col
        for bad, reason in problems:
            bad = np.asarray(bad, dtype=bool)
            if bad.any():
                issues.append(_issue(np.flatnonzero(bad), src, reason))
    for canon, value in table.constants.items():
        out[canon] = value
    if "event_type" in out:
        out["event_type"] = out["event_type"].astype(str)
    return out, issues


def undecodable(values: pd.Series) -> pd.Series:
    """Text values holding U+FFFD: bytes that were not valid in the file's encoding (the readers put it there)."""
    return pd.Series(_undecodable(_arrow_text(values)), index=values.index)


def _arrow_text(values: pd.Series) -> pa_arrow.Array:
    """The values as an Arrow string array (nulls for missing); Arrow-backed text is taken as it is."""
    if not (isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow"):
        values = values.astype("string")
    return pa_arrow.array(values, from_pandas=True)


def _undecodable(text: pa_arrow.Array) -> np.ndarray:
    if pc.all(pc.string_is_ascii(text)).as_py() is not False:  # ASCII only (or nothing): no U+FFFD (cheap check)
        return np.zeros(len(text), dtype=bool)
    return pc.fill_null(pc.match_substring(text, REPLACEMENT), False).to_numpy(zero_copy_only=False)


def _plain_ascii(text: pa_arrow.Array | pa_arrow.ChunkedArray) -> bool:
    """True when every value is ASCII and starts and ends with a printable non-space character (or is empty): then
    trimming changes nothing and no value is undecodable. Read from the bytes and offsets of the Arrow buffers
    (two gathers and a max, no per-value kernel); False whenever unsure (another string type, any byte >= 0x80)."""
    for chunk in text.chunks if isinstance(text, pa_arrow.ChunkedArray) else [text]:
        if not (pa_arrow.types.is_string(chunk.type) or pa_arrow.types.is_large_string(chunk.type)):
            return False
        if len(chunk) == 0:
            continue
        _, offsets_buffer, data_buffer = chunk.buffers()
        width = np.int64 if pa_arrow.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(offsets_buffer, dtype=width)[chunk.offset : chunk.offset + len(chunk) + 1]
        data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
        values = data[offsets[0] : offsets[-1]]
        if values.size and values.max() >= 0x80:
            return False
        starts, ends = offsets[:-1], offsets[1:]
        filled = ends > starts
        edges = np.concatenate([data[starts[filled]], data[ends[filled] - 1]])
        if ((edges <= 0x20) | (edges == 0x7F)).any():  # a control character or a space at either end
            return False
    return True


def text_values(raw: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """A text column as the contract holds it: surrounding whitespace removed, blank -> missing, pandas' `str`
    dtype; with (present, undecodable) per row. Computed on the Arrow array: no Python object per value; plain
    ASCII values (ids, codes, most categories) skip the trim and the decoding check."""
    text = _arrow_text(raw)
    plain = _plain_ascii(text)
    trimmed = text if plain else pc.utf8_trim_whitespace(text)
    blank = pc.equal(trimmed, "")
    if pc.any(blank).as_py():
        trimmed = pc.if_else(blank, pa_arrow.nulls(len(trimmed), trimmed.type), trimmed)
    col = pd.Series(TEXT_DTYPE.__from_arrow__(trimmed), index=raw.index)
    undecodable = np.zeros(len(text), dtype=bool) if plain else _undecodable(text)
    return col, trimmed.is_valid().to_numpy(zero_copy_only=False), undecodable


def _is_text(canon: str, table: TableSpec, kind: Kind) -> bool:
    """Columns kept as text: ids, categorical attributes, event types, free text (not dates, numbers or codes)."""
    coded = canon in DATE_COLUMNS or canon in table.numeric or canon in ("value", "label", "sentiment")
    return not coded and not (kind == "offers" and (canon in BOOLEAN_COLUMNS or canon == "propensity"))


def latest_allowed_timestamp() -> pd.Timestamp:
    """History cannot be dated after the run: the end of tomorrow (UTC; one day of slack for time zones)."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() + FUTURE_SLACK


def _coerce_one(
    canon: str, raw: pd.Series, table: TableSpec, kind: Kind
) -> tuple[pd.Series, list[tuple[pd.Series, str]]]:
    """(canonical column, [(rows breaking a rule, reason), ...]) of one source column."""
    if canon == "customer_id" or _is_text(canon, table, kind):
        col, present, bad = text_values(raw)
        return col, [(present & bad, UNDECODABLE)]
    present = _blank_to_na(raw).notna()
    if canon in DATE_COLUMNS:
        col = _to_datetime(raw, table.timestamp_format)
        problems = [
            (
                present & col.isna(),
                "unparseable timestamp" + (f" (format {table.timestamp_format})" if table.timestamp_format else ""),
            )
        ]
        if canon == "ts":  # history is what happened before the run
            limit = latest_allowed_timestamp()
            problems.append(
                (col.notna() & (col >= limit).fillna(False), f"timestamp in the future (after {(limit - DAY).date()})")
            )
        return col, problems
    if canon in table.numeric or canon == "value":
        col = pd.to_numeric(_blank_to_na(raw), errors="coerce").astype("float64")
        finite = np.isfinite(col.to_numpy())
        too_big = pd.Series(
            finite & (np.abs(np.where(finite, col.to_numpy(), 0.0)) > table.max_abs_value), index=col.index
        )
        problems = [
            (present & col.isna(), "not a number"),
            (present & col.notna() & ~pd.Series(finite, index=col.index), "not a finite number"),
            (too_big, f"implausible magnitude (beyond +-{table.max_abs_value:g}: the table's max_abs_value)"),
        ]
        return col.where(pd.Series(finite, index=col.index) & ~too_big), problems
    if canon == "label":
        key = _blank_to_na(raw.astype("string")).str.lower()
        pos = {str(v).lower() for v in table.positive_labels}
        col = pd.Series(np.where(key.isin(pos).fillna(False), 1.0, 0.0), index=raw.index)
        bad = present & ~key.isin(pos | set(NEGATIVE_LABELS)).fillna(False)
        return col, [(bad, f"label must be one of {sorted(pos | set(NEGATIVE_LABELS))}")]
    if kind == "offers" and canon in BOOLEAN_COLUMNS:
        key = _blank_to_na(raw.astype("string")).str.lower().str.replace(r"\.0$", "", regex=True)
        col = key.map(lambda v: True if v in TRUE_WORDS else False if v in FALSE_WORDS else None, na_action="ignore")
        bad = present & col.isna()
        reason = f"{canon} must be true or false ({'/'.join(TRUE_WORDS[:3])} or {'/'.join(FALSE_WORDS[:3])})"
        return col.astype(object).where(present & ~bad, None), [(bad, reason)]
    if kind == "offers" and canon == "propensity":
        col = pd.to_numeric(_blank_to_na(raw), errors="coerce").astype("float64")
        bad = present & ~((col > 0) & (col <= 1)).fillna(False)
        return col.where(~bad), [(bad, "propensity must be a probability in (0, 1]")]
    if canon == "sentiment":
        key = _blank_to_na(raw.astype("string")).str.lower()
        bad = present & ~key.isin(SENTIMENTS).fillna(False)
        return key.astype(object).where(present & ~bad, None), [(bad, f"sentiment must be one of {list(SENTIMENTS)}")]
    raise AssertionError(f"no coercion rule for column {canon!r}")  # `_is_text` covers every other column


NOT_NULL = {  # canonical columns a usable row must have, per table
    "customers": ("customer_id",),
    "events": ("customer_id", "ts", "event_type"),
    "feedback": ("customer_id", "ts"),
    "offers": ("customer_id", "ts"),
}


def _missing_issues(canon: pd.DataFrame, table: TableSpec, kind: Kind) -> list[pd.DataFrame]:
    """Rows without a value in a column the table needs (`NOT_NULL`), named by its source column."""
    issues = []
    for column in NOT_NULL[kind]:
        if column in canon:
            missing = canon[column].isna().to_numpy()
            if missing.any():
                issues.append(_issue(np.flatnonzero(missing), table.source(column), "missing value"))
    return issues


def check_frame(
    df: pd.DataFrame, table: TableSpec, kind: Kind, source: str, optional_if_present: bool = False, first_row: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical frame + per-value issues [pos (0-based), column (source name), reason]. Missing columns raise at
    once (`optional_if_present`: the scoring side, whose columns are fixed by the release). `first_row`: the data
    row number of the frame's first row."""
    needed = canonical_columns(table, kind, df.columns, optional_if_present)
    missing = [src for src in needed.values() if src not in df.columns]
    if missing:
        raise DataValidationError(
            source,
            missing[0],
            [],
            missing_columns_reason(
                missing, [c for c in df.columns if c != MALFORMED], table, kind, scoring=optional_if_present
            ),
        )
    canon, issues = _coerce(df, table, kind, optional_if_present, first_row)
    issues += _missing_issues(canon, table, kind)
    issues_df = pd.concat(issues, ignore_index=True) if issues else _issue([], "", "")
    return canon, issues_df.drop_duplicates(["pos", "column"]).reset_index(drop=True)


def missing_columns_reason(missing: list[str], have: list[str], table: TableSpec, kind: Kind, scoring: bool) -> str:
    """What to do about missing columns: training maps them in the data config; a scoring file must carry the
    columns the release was trained with (its mapping is part of the release)."""
    text = f"missing column(s) {missing} (have {have[:30]})"
    id_missing = table.source("customer_id") in missing and kind == "customers"
    if not scoring:
        hint = f"map them in the data config `{kind}.columns`"
        if id_missing:
            hint += " (a customers table without an id column: set `customers.id_from_row: true`)"
        return f"{text}; {hint}"
    mapping = {c: table.source(c) for c in REQUIRED[kind] if table.source(c) in missing}
    mapping.update({c: c for c in table.attributes if c in missing})
    hint = (
        "the release reads these columns under the names it was trained with "
        f"({', '.join(f'{k} <- {v!r}' for k, v in mapping.items()) or missing}); rename the file's columns to "
        "match"
    )
    if id_missing:
        hint += " (a table without an id column needs a release trained with `customers.id_from_row: true`)"
    return f"{text}; {hint}"


def raise_issues(issues: pd.DataFrame, source: str, first_row: int = 1) -> None:
    """Raise one DataValidationError for the first problem; the message counts the others."""
    if issues.empty:
        return
    groups = list(issues.groupby(["column", "reason"], sort=False))
    (column, reason), grp = groups[0]
    more = "".join(
        f"; also column {c!r}: {r} ({len(g)} rows, first row {int(g['pos'].min()) + first_row})"
        for (c, r), g in groups[1:4]
    )
    rows = sorted(set((grp["pos"] + first_row).tolist()))
    raise DataValidationError(source, str(column), rows, str(reason), more)


def split_valid_rows(
    df: pd.DataFrame, table: TableSpec, kind: Kind, source: str, first_row: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reject mode of `check_frame`: (valid rows in canonical names/dtypes, rejects in `REJECT_COLUMNS`).

    Bad rows never raise; a missing column (nothing can be scored) does. Optional columns (churn_date,
    observed_until, label, sentiment, …) may be absent.
    """
    canon, issues = check_frame(df, table, kind, source, optional_if_present=True, first_row=first_row)
    if issues.empty:
        return canon, pd.DataFrame(columns=REJECT_COLUMNS)
    issues = issues.drop_duplicates("pos").sort_values("pos")
    pos = issues["pos"].to_numpy()
    ids = canon["customer_id"].to_numpy()[pos] if len(canon) else np.array([], dtype=object)
    rejects = pd.DataFrame(
        {
            "source": source,
            "row": pos + first_row,
            "customer_id": ids,
            "column": issues["column"].to_numpy(),
            "reason": issues["reason"].to_numpy(),
            "rows": 1,
        }
    )
    keep = np.ones(len(canon), dtype=bool)
    keep[pos] = False
    return canon[keep].reset_index(drop=True), rejects.reset_index(drop=True)


# ---------------------------------------------------------------- table rules (raise or reject)
def duplicate_ids(ids: pd.Series, rejected: Collection = ()) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose customer id occurs more than once (every one of them: which is right is unknown), or whose id
    was already rejected on another row; (mask, reason per row)."""
    dup = ids.duplicated(keep=False).to_numpy()
    also = is_in(ids, rejected) if rejected else np.zeros(len(ids), bool)
    reason = _texts(["duplicate customer id (another row with it was rejected)", "duplicate customer id"], dup)
    return dup | also, reason


def unknown_ids(ids: pd.Series, known: pd.Index, rejected: Collection = ()) -> tuple[np.ndarray, np.ndarray]:
    """Event/feedback rows whose customer is not in the customers table, or whose customer row was rejected."""
    bad = ~is_in(ids, known)
    was_rejected = is_in(ids, rejected) if rejected else np.zeros(len(ids), bool)
    texts = ["unknown customer id (not in the customers table)", "customer row rejected (see the customers rejects)"]
    return bad, _texts(texts, was_rejected)


def _texts(texts: list[str], choice: np.ndarray) -> np.ndarray:
    """`texts[choice[i]]` per row as an object array (the same string objects, not one copy per row)."""
    return np.asarray(texts, dtype=object)[np.asarray(choice, dtype=np.intp)]


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


def reject_rule(
    frame: pd.DataFrame, mask: np.ndarray, reason: np.ndarray, source: str, column: str | np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reject mode of a table rule: (rows kept, rejects of the others; row numbers from the `_row` column).
    `column`: the source column at fault, one for all rows or one per row."""
    return frame[~mask], reject_lines(frame, mask, reason, source, column)


def reject_lines(
    frame: pd.DataFrame, mask: np.ndarray, reason: np.ndarray, source: str, column: str | np.ndarray
) -> pd.DataFrame:
    """The reject lines of a rule's rows `mask` (see `reject_rule`), for a caller that filters the rows itself."""
    return pd.DataFrame(
        {
            "source": source,
            "row": frame.loc[mask, ROW].to_numpy(np.int64),
            "customer_id": frame.loc[mask, "customer_id"].astype(TEXT_DTYPE).array,  # Arrow text, no objects
            "column": column[mask] if isinstance(column, np.ndarray) else column,
            "reason": reason[mask],
            "rows": 1,
        },
        columns=REJECT_COLUMNS,
    )


def dated_from(ts: pd.Series, cutoff: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """History rows dated on or after the scoring date: not history at that date (events and feedback)."""
    mask = ts.to_numpy(dtype="datetime64[ns]") >= np.datetime64(pd.Timestamp(cutoff))  # NaT compares False
    reason = f"dated on or after the scoring date {pd.Timestamp(cutoff).date()} (not history at that date)"
    return mask, _texts([reason], np.zeros(len(ts), dtype=np.intp))


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


def validate_chunk(
    raw: pd.DataFrame, table: TableSpec, kind: Kind, source: str, first_row: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reject mode over consecutive rows starting at data row `first_row`: (canonical valid rows with their row
    number in column `_row`, rejects in `REJECT_COLUMNS`)."""
    table = scoring_table(table)
    columns = read_columns(table, kind, list(raw.columns)) or [c for c in raw.columns if c != MALFORMED]
    raw = raw[columns + ([MALFORMED] if MALFORMED in raw else [])]
    valid, rejects = split_valid_rows(raw, table, kind, source, first_row)
    rows = np.arange(first_row, first_row + len(raw), dtype=np.int64)
    valid[ROW] = rows[~np.isin(rows, rejects["row"].to_numpy(dtype=np.int64))]
    return valid, rejects.reindex(columns=REJECT_COLUMNS)
