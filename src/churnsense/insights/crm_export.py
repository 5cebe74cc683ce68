"""CRM export of a scoring run: the call list (whole, and per queue and team) and the segment membership, in a
versioned layout (CSV and JSON Lines) described by the JSON Schemas in `schemas/`.

Folder layout (`manifest.json` lists every file with its row count):

    call_list.v1.csv / .jsonl                      one row per customer with an action within the budget and
                                                   capacity, ranked; `why` says why that action
    queues/<queue>__<team>.call_list.v1.csv / .jsonl the same rows, one file per queue and team
    segment_membership.v1.csv / .jsonl             one row per scored customer (segment, risk, tonality)
    call_list.v1.schema.json, segment_membership.v1.schema.json, manifest.json

The schemas are the single source of the columns (their `properties`, in order) and types. The export is built
from enriched score frames added one at a time (`CrmExport.add`, e.g. per scoring partition; only the call-list
rows are kept in memory, for ranking) and appears in one rename (`publish`), or not at all.
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

from churnsense.core.scratch import make_temp_dir, publish_mode
from churnsense.insights.decisions import allocate

SCHEMA_DIR = Path(__file__).with_name("schemas")
VERSION = 1
CALL_LIST, SEGMENTS = f"call_list.v{VERSION}", f"segment_membership.v{VERSION}"
FORMATS = ("csv", "jsonl")
NO_ACTION = "none"


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
    ):
        self.target = Path(target)
        self.formats = [f for f in formats if f in FORMATS]
        if not self.formats:
            raise ValueError(f"crm export formats {list(formats)!r}: expected some of {list(FORMATS)}")
        self.split_by = list(split_by)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = make_temp_dir(self.target.parent, f".{self.target.name}.tmp-")  # cleans those of killed runs
        self._calls: list[pd.DataFrame] = []
        self._rows = {SEGMENTS: 0}
        self.calls: pd.DataFrame | None = None  # the published call list
        self.limits = dict(limits or {})  # budget and capacity (`decisions.allocate`)
        self.held: pd.DataFrame | None = None  # candidates held back by them

    def __enter__(self) -> CrmExport:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.publish()
        else:
            self.discard()

    def add(self, scored: pd.DataFrame) -> None:
        """One enriched score frame (a partition): its segment rows are written, its call-list rows kept."""
        if not len(scored):
            return
        self._append(SEGMENTS, conform(scored, SEGMENTS))
        acted = scored[scored["recommended_action"].fillna(NO_ACTION).ne(NO_ACTION)]
        if len(acted):
            self._calls.append(acted.reindex(columns=[c for c in columns(CALL_LIST) if c != "rank"]))

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

    def call_list(self) -> pd.DataFrame:
        """The call list so far: the candidates that fit the budget and capacity (`decisions.allocate`), ranked
        by expected saved value, then value at risk (rank 1 = call first), as layout rows."""
        frame = pd.concat(self._calls, ignore_index=True) if self._calls else pd.DataFrame(columns=columns(CALL_LIST))
        frame, self.held = allocate(frame, self.limits)
        return conform(frame.assign(rank=np.arange(1, len(frame) + 1)), CALL_LIST).reset_index(drop=True)

    def publish(self) -> Path:
        """Write the call lists, schemas and manifest, then move the folder into place (replacing an old one)."""
        calls = self.call_list()
        if not (self._tmp / f"{SEGMENTS}.{self.formats[0]}").exists():
            self._append(SEGMENTS, conform(pd.DataFrame(), SEGMENTS))
        self._append(CALL_LIST, calls)
        files = {f"{name}.{fmt}": self._rows.get(name, 0) for name in (CALL_LIST, SEGMENTS) for fmt in self.formats}
        if self.split_by and len(calls):
            (self._tmp / "queues").mkdir()
            for key, part in calls.groupby(self.split_by, sort=True):
                stem = "__".join(_safe(k) for k in (key if isinstance(key, tuple) else (key,)))
                self._append(f"{stem}.{CALL_LIST}", part, self._tmp / "queues")
                files.update({f"queues/{stem}.{CALL_LIST}.{fmt}": len(part) for fmt in self.formats})
        for name in (CALL_LIST, SEGMENTS):
            shutil.copyfile(SCHEMA_DIR / f"{name}.schema.json", self._tmp / f"{name}.schema.json")
        cutoff = calls["cutoff"].dropna()
        manifest = {
            "layout": "churnsense-crm",
            "version": VERSION,
            "files": files,
            "schemas": {CALL_LIST: f"{CALL_LIST}.schema.json", SEGMENTS: f"{SEGMENTS}.schema.json"},
            "split_by": self.split_by,
            "cutoff": str(cutoff.iloc[0]) if len(cutoff) else None,
            "held_back": int(len(self.held)) if self.held is not None else 0,
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
        self.calls = calls
        return self.target

    def discard(self) -> None:
        """Drop everything collected (a failed run publishes no export)."""
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
    """Export enriched score frames to `target`; returns the folder and the ranked call list."""
    with CrmExport(target, formats, split_by, limits) as export:
        for frame in frames:
            export.add(frame)
    return export.target, export.calls
