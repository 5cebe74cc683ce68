"""CRM export of a scoring run: the call list (whole, and per queue and team) and the segment membership, in a
versioned layout (CSV and JSON Lines) described by the JSON Schemas in `schemas/`.

Folder layout (`manifest.json` lists every file with its row count):

    call_list.v1.csv / .jsonl                      one row per customer with an action within the budget and
                                                   capacity, ranked; `why` says why that action
    queues/<queue>__<team>.call_list.v1.csv / .jsonl the same rows, one file per queue and team
    segment_membership.v1.csv / .jsonl             one row per scored customer (segment, risk, tonality)
    call_list.v1.schema.json, segment_membership.v1.schema.json, manifest.json

The schemas are the single source of the columns (their `properties`, in order) and types. The export is built
from enriched score frames added one at a time (`CrmExport.add`, e.g. per scoring partition): segment rows are
written at once; call-list candidates are spilled to an Arrow file beside the export, and only the columns that rank
and allocate them stay in memory, so a run of millions of customers holds a few numbers per candidate, not its
texts. The call list is then written in rank order, a slice at a time. The folder appears in one rename (`publish`),
or not at all.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from churnsense.core.scratch import make_temp_dir, publish_mode
from churnsense.insights.decisions import allocate

SCHEMA_DIR = Path(__file__).with_name("schemas")
VERSION = 1
CALL_LIST, SEGMENTS = f"call_list.v{VERSION}", f"segment_membership.v{VERSION}"
FORMATS = ("csv", "jsonl")
NO_ACTION = "none"
# what ranking, budget and capacity (`decisions.allocate`) and the run's summary need of each candidate
KEYS = [
    "customer_id",
    "recommended_action",
    "expected_uplift",
    "expected_saved_value",
    "value_at_risk",
    "action_cost",
    "queue",
    "team",
    "script_language",
    "why",
]
CANDIDATES = ".candidates.arrow"  # the spilled call-list candidates (removed before the folder is published)
WRITE_ROWS = 5000  # call-list rows written per slice (bounds the memory of writing them: ~60 MB at 5k)
ARROW_TYPES = {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_(), "string": pa.string()}


@functools.lru_cache(maxsize=4)
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one row of `name` (CALL_LIST or SEGMENTS)."""
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))


def columns(name: str) -> list[str]:
    """The layout's columns, in order."""
    return list(load_schema(name)["properties"])


def _types(spec: Mapping[str, Any]) -> set[str]:
    t = spec.get("type", "string")
    return set(t) if isinstance(t, list) else {t}


def conform(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """`frame` as rows of layout `name`: its columns in order, typed as the schema says (integers as nullable
    Int64, numbers float64 with non-finite values as null, booleans, dates as YYYY-MM-DD, text with null kept
    only where the schema allows it)."""
    out = pd.DataFrame(index=frame.index)
    for col, spec in load_schema(name)["properties"].items():
        types = _types(spec)
        values = frame[col] if col in frame else pd.Series(np.nan, index=frame.index)
        if "integer" in types:
            out[col] = pd.to_numeric(values, errors="coerce").round().astype("Int64")
        elif "number" in types:
            num = pd.to_numeric(values, errors="coerce").astype("float64")
            out[col] = num.where(np.isfinite(num))
        elif "boolean" in types:
            out[col] = values.astype(str).str.lower().isin(["true", "1"]) if values.dtype != bool else values
        elif spec.get("format") == "date":
            out[col] = pd.to_datetime(values, errors="coerce").dt.strftime("%Y-%m-%d")
        else:
            text = values.astype(object).where(values.notna(), None)
            out[col] = text if "null" in types else text.fillna("").astype(str)
    return out


def arrow_schema(name: str, skip: Iterable[str] = ()) -> pa.Schema:
    """The Arrow schema of `conform`ed rows of layout `name` (without the columns in `skip`)."""
    fields = []
    for col, spec in load_schema(name)["properties"].items():
        if col in skip:
            continue
        types = _types(spec) - {"null"}
        kind = next((t for t in ("integer", "number", "boolean") if t in types), "string")
        fields.append(pa.field(col, ARROW_TYPES[kind]))
    return pa.schema(fields)


def take_rows(reader: pa.ipc.RecordBatchFileReader, starts: np.ndarray, positions: np.ndarray) -> pa.Table:
    """The rows at `positions` (row numbers over the file's batches end to end; batch i starts at `starts[i]`), in
    that order. Batches are read one at a time and give their own rows, so memory holds the rows taken and one
    batch (a `take` over the whole table would join every batch first)."""
    which = np.searchsorted(starts, positions, side="right") - 1
    order = np.argsort(which, kind="stable")
    pieces = [
        reader.get_batch(int(b)).take(pa.array(positions[order][which[order] == b] - starts[b]))
        for b in np.unique(which)
    ]
    grouped = pa.Table.from_batches(pieces, schema=reader.schema)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return grouped.take(pa.array(back))


def _records(rows: pd.DataFrame) -> Iterable[dict[str, Any]]:
    """Rows as JSON-ready dicts: nulls as None, numpy scalars as Python numbers (full float precision)."""
    for record in rows.astype(object).to_dict("records"):
        yield {
            k: (
                None
                if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                else v.item()
                if hasattr(v, "item")
                else v
            )
            for k, v in record.items()
        }


def _safe(name: object) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "none"


class CrmExport:
    """Collects enriched score frames and publishes the CRM folder `target` in one step."""

    def __init__(
        self,
        target: str | Path,
        formats: Iterable[str] = FORMATS,
        split_by: Iterable[str] = ("queue", "team"),
        limits: Mapping[str, Any] | None = None,
        keep_calls: bool = False,
    ):
        self.target = Path(target)
        self.keep_calls = keep_calls  # keep the whole published call list in `calls` (else its KEYS and rank)
        self.formats = [f for f in formats if f in FORMATS]
        if not self.formats:
            raise ValueError(f"crm export formats {list(formats)!r}: expected some of {list(FORMATS)}")
        self.split_by = list(split_by)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = make_temp_dir(self.target.parent, f".{self.target.name}.tmp-")  # cleans those of killed runs
        self._keys: list[pd.DataFrame] = []  # per added frame: KEYS of its candidates + their spilled row
        self._spill: pa.ipc.RecordBatchFileWriter | None = None
        self._spill_schema = arrow_schema(CALL_LIST, skip=("rank",))
        self._spilled = 0
        self._batch_rows: list[int] = []  # rows of each spilled batch
        self._rows = {SEGMENTS: 0}
        self.calls: pd.DataFrame | None = None  # the published call list (KEYS and rank, or whole: keep_calls)
        self.limits = dict(limits or {})  # budget and capacity (`decisions.allocate`)
        self.held: pd.DataFrame | None = None  # candidates held back by them (KEYS)

    def __enter__(self) -> CrmExport:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.publish()
        else:
            self.discard()

    def add(self, scored: pd.DataFrame) -> None:
        """One enriched score frame (a partition): its segment rows are written, its call-list candidates spilled
        (their ranking columns kept)."""
        if not len(scored):
            return
        self._append(SEGMENTS, conform(scored, SEGMENTS))
        acted = scored[scored["recommended_action"].fillna(NO_ACTION).ne(NO_ACTION)]
        if not len(acted):
            return
        rows = conform(acted, CALL_LIST).drop(columns="rank")
        if self._spill is None:
            self._spill = pa.ipc.new_file(str(self._tmp / CANDIDATES), self._spill_schema)
        self._spill.write_batch(pa.RecordBatch.from_pandas(rows, schema=self._spill_schema, preserve_index=False))
        self._batch_rows.append(len(rows))
        spilled = np.arange(self._spilled, self._spilled + len(rows))
        self._keys.append(rows[KEYS].reset_index(drop=True).assign(_spilled=spilled))
        self._spilled += len(rows)

    def _append(self, name: str, rows: pd.DataFrame, folder: Path | None = None) -> None:
        folder = folder or self._tmp
        first = not (folder / f"{name}.{self.formats[0]}").exists()
        for fmt in self.formats:
            path = folder / f"{name}.{fmt}"
            with path.open("a", encoding="utf-8", newline="") as handle:
                if fmt == "csv":
                    flags = {c: rows[c].map({True: "true", False: "false"}) for c in rows if rows[c].dtype == bool}
                    rows.assign(**flags).to_csv(handle, index=False, header=first, lineterminator="\r\n")
                else:
                    handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in _records(rows))
        if folder == self._tmp:
            self._rows[name] = self._rows.get(name, 0) + len(rows)

    def ranked(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(the candidates that fit the budget and capacity, ranked by expected saved value, then value at risk;
        those held back), as KEYS and their spilled row (`decisions.allocate`)."""
        keys = (
            pd.concat(self._keys, ignore_index=True)
            if self._keys
            else conform(pd.DataFrame(), CALL_LIST)[KEYS].assign(_spilled=np.zeros(0, np.int64))
        )
        return allocate(keys, self.limits)

    def _write_calls(self, kept: pd.DataFrame) -> tuple[dict[str, int], str | None, pd.DataFrame | None]:
        """Write the call list (and one per `split_by` key) in rank order, `WRITE_ROWS` rows at a time, from the
        spilled candidates; returns the row count of each queue file (by path), the list's cutoff and, with
        `keep_calls`, the whole call list."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        if not len(kept):
            empty = conform(pd.DataFrame(), CALL_LIST)
            self._append(CALL_LIST, empty)
            return {}, None, empty if self.keep_calls else None
        queues: dict[tuple, tuple[str, int]] = {}
        cutoff, whole = None, []
        with pa.OSFile(str(self._tmp / CANDIDATES)) as source:  # read, not mapped: pages never pile up in RSS
            reader = pa.ipc.open_file(source)
            starts = np.cumsum([0, *self._batch_rows])[:-1]
            positions = kept["_spilled"].to_numpy(dtype=np.int64)
            for lo in range(0, len(positions), WRITE_ROWS):
                part = take_rows(reader, starts, positions[lo : lo + WRITE_ROWS]).to_pandas()
                rank = np.arange(lo + 1, lo + 1 + len(part))
                rows = conform(part.assign(rank=rank), CALL_LIST)
                self._append(CALL_LIST, rows)
                whole += [rows] if self.keep_calls else []
                dates = rows["cutoff"].dropna()
                cutoff = cutoff if cutoff is not None or not len(dates) else str(dates.iloc[0])
                for key, group in rows.groupby(self.split_by, sort=True) if self.split_by else ():
                    key = key if isinstance(key, tuple) else (key,)
                    stem = "__".join(_safe(k) for k in key)
                    (self._tmp / "queues").mkdir(exist_ok=True)
                    self._append(f"{stem}.{CALL_LIST}", group, self._tmp / "queues")
                    queues[key] = (stem, queues.get(key, (stem, 0))[1] + len(group))
            del reader
        (self._tmp / CANDIDATES).unlink()
        files = {
            f"queues/{stem}.{CALL_LIST}.{fmt}": n for _, (stem, n) in sorted(queues.items()) for fmt in self.formats
        }
        return files, cutoff, pd.concat(whole, ignore_index=True) if whole else None

    def publish(self) -> Path:
        """Write the call lists, schemas and manifest, then move the folder into place (replacing an old one)."""
        kept, self.held = self.ranked()
        if not (self._tmp / f"{SEGMENTS}.{self.formats[0]}").exists():
            self._append(SEGMENTS, conform(pd.DataFrame(), SEGMENTS))
        queue_files, cutoff, whole = self._write_calls(kept)
        files = {f"{name}.{fmt}": self._rows.get(name, 0) for name in (CALL_LIST, SEGMENTS) for fmt in self.formats}
        files.update(queue_files)
        for name in (CALL_LIST, SEGMENTS):
            shutil.copyfile(SCHEMA_DIR / f"{name}.schema.json", self._tmp / f"{name}.schema.json")
        manifest = {
            "layout": "churnsense-crm",
            "version": VERSION,
            "files": files,
            "schemas": {CALL_LIST: f"{CALL_LIST}.schema.json", SEGMENTS: f"{SEGMENTS}.schema.json"},
            "split_by": self.split_by,
            "cutoff": cutoff,
            "held_back": int(len(self.held)),
            "limits": self.limits,
        }
        (self._tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        publish_mode(self._tmp)
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{self._tmp.name[-8:]}")
            self.target.rename(old)
        self._tmp.rename(self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        ranked = kept[KEYS].assign(rank=np.arange(1, len(kept) + 1)).reset_index(drop=True)
        self.calls = whole if whole is not None else ranked
        return self.target

    def discard(self) -> None:
        """Drop everything collected (a failed run publishes no export)."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        shutil.rmtree(self._tmp, ignore_errors=True)


def export_dir_for(output: str | Path) -> Path:
    """Default CRM folder of a scores file: `<output stem>.crm` next to it."""
    output = Path(output)
    return output.with_name(f"{output.stem}.crm")


def write_export(
    frames: Iterable[pd.DataFrame],
    target: str | Path,
    formats: Iterable[str] = FORMATS,
    split_by: Iterable[str] = ("queue", "team"),
    limits: Mapping[str, Any] | None = None,
) -> tuple[Path, pd.DataFrame]:
    """Export enriched score frames to `target`; returns the folder and the whole ranked call list."""
    with CrmExport(target, formats, split_by, limits, keep_calls=True) as export:
        for frame in frames:
            export.add(frame)
    return export.target, export.calls
