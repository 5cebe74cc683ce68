"""`FeaturePipeline`: fitted on the training snapshot only; plain-JSON state; the one object shared by training,
ONNX export and serving. `transform` returns the batch contract of docs/architecture.md (vectorised, no loops
over customers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnsense.churn.aggregates import event_type_codes, history_aggregates_with_sources
from churnsense.data.contract import DataSpec
from churnsense.data.framing import LABEL_COLUMNS, Snapshot, history_rows, static_categorical, static_numeric
from churnsense.insights.attribution import BatchLayout

VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: no history aggregates
PAD, UNKNOWN = "<pad>", "<unk>"
HISTORY_PREFIX = "history:"  # numeric inputs computed from the event history (the net's wide part)


def slog1p(x: np.ndarray) -> np.ndarray:
    """Sign-preserving log1p: tames heavy tails of both signs."""
    return np.sign(x) * np.log1p(np.abs(x))


def robust_stats(x: np.ndarray) -> tuple[float, float]:
    """(median, scale) ignoring NaN; scale = IQR, else std, else 1."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 0.0, 1.0
    q25, med, q75 = np.percentile(x, [25, 50, 75])
    scale = q75 - q25 or float(np.std(x)) or 1.0
    return float(med), float(scale)


def _codes(values: pd.Series, vocab: list[str], factorized: tuple[np.ndarray, pd.Index] | None = None) -> np.ndarray:
    """Position of each value in `vocab`; -1 for unknown or missing. `factorized`: `pd.factorize(values)` when the
    caller has it already."""
    codes, uniques = factorized if factorized is not None else pd.factorize(values, use_na_sentinel=True)
    lut = np.append(pd.Index(vocab, dtype=object).get_indexer(pd.Index(uniques, dtype=object)), -1)
    return lut[codes].astype(np.int64)


def row_time_order(row: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """`np.lexsort((ts, row))`: positions by row, then time, ties in input order. When each row's entries already
    come in time order (the snapshot's history is sorted by customer and time) a stable sort by row alone gives
    that order, several times faster; otherwise the lexsort runs."""
    order = np.argsort(row, kind="stable")
    r, t = row[order], ts[order]
    if ((r[1:] == r[:-1]) & (t[1:] < t[:-1])).any():
        return np.lexsort((ts, row))
    return order


class FeaturePipeline:
    """Category vocabularies (index 0 = unknown/missing), robust numeric scaling with missing indicators,
    event-type vocabulary (0 = pad, 1 = unknown) and per-event-type robust value scaling.

    With `history_features`, the hand-made history aggregates the GBDT baselines get (`features.aggregates`) are
    appended to `num` as `history:<name>` columns (scaled like the static numerics), so the net never starts with
    less than a GBDT; columns constant on the training snapshot are dropped. On by default (a no-op without event
    history): on the validation splits of the generated base they lift the net most where the GBDT led it, on
    churn that shows as a usage trend or a silence (counts and recency per event type over windows)."""

    def __init__(
        self,
        categorical: list[str],
        numeric: list[str],
        max_events: int,
        clip: float = 5.0,
        min_category_count: int = 1,
        max_categories: int = 1000,
        missing_indicators: bool = True,
        log_skew_threshold: float = 2.0,
        history_features: bool = True,
    ):
        self.categorical, self.numeric = list(categorical), list(numeric)
        self.max_events, self.clip = int(max_events), float(clip)
        self.min_category_count, self.max_categories = int(min_category_count), int(max_categories)
        self.missing_indicators, self.log_skew_threshold = bool(missing_indicators), float(log_skew_threshold)
        self.history_features = bool(history_features)
        self.aggregates: list[str] = []  # fitted history aggregate columns (without the prefix)
        self.aggregate_sources: dict[str, str] = {}  # aggregate -> event type it is computed from
        self.vocab: dict[str, list[str]] = {}
        self.num_stats: dict[str, dict[str, Any]] = {}
        self.event_types: list[str] = []
        self.event_stats: dict[str, list[float]] = {}
        self.fitted = False

    @classmethod
    def from_spec(cls, spec: DataSpec) -> FeaturePipeline:
        return cls(static_categorical(spec), static_numeric(spec), spec.framing.max_events, **dict(spec.features))

    # ------------------------------------------------------------------ fit
    def fit(self, snap: Snapshot) -> FeaturePipeline:
        st = snap.static
        for c in self.categorical:
            counts = st[c].dropna().astype("string").astype(str).value_counts()
            counts = counts[counts >= self.min_category_count].sort_index(kind="stable")
            counts = counts.sort_values(ascending=False, kind="stable").head(self.max_categories)
            self.vocab[c] = sorted(counts.index.tolist())
        for c in self.numeric:
            x = pd.to_numeric(st[c], errors="coerce").to_numpy(dtype="float64") if c in st else np.array([np.nan])
            self.num_stats[c] = self._numeric_stats(x)
        h = snap.history
        self.event_types = sorted(h["event_type"].astype(str).unique().tolist())
        vals = slog1p(h["value"].to_numpy(dtype="float64"))
        codes = pd.Categorical(h["event_type"].astype(str), categories=self.event_types).codes
        self.event_stats = {t: list(robust_stats(vals[codes == i])) for i, t in enumerate(self.event_types)}
        if self.history_features and len(h):
            self._fit_aggregates(snap)
        self.fitted = True
        return self

    def _numeric_stats(self, x: np.ndarray) -> dict[str, Any]:
        fin = x[np.isfinite(x)]
        skew = float(pd.Series(fin).skew()) if fin.size > 2 else 0.0
        use_log = bool(fin.size and fin.min() >= 0 and skew > self.log_skew_threshold)
        med, scale = robust_stats(np.log1p(fin) if use_log else fin)
        return {
            "log": use_log,
            "median": med,
            "scale": scale,
            "indicator": bool(self.missing_indicators and (~np.isfinite(x)).any()),
        }

    def _fit_aggregates(self, snap: Snapshot) -> None:
        """History aggregates that vary on the training snapshot, with their scaling and source event types."""
        agg, sources = history_aggregates_with_sources(snap, self.event_types)
        varies = [c for c in agg.columns if agg[c].nunique(dropna=False) > 1]
        self.aggregates = varies
        self.aggregate_sources = {c: sources[c] for c in varies}
        for c in varies:
            self.num_stats[HISTORY_PREFIX + c] = self._numeric_stats(agg[c].to_numpy(dtype="float64"))

    # ------------------------------------------------------------ transform
    def transform(self, snap: Snapshot) -> dict[str, np.ndarray]:
        """Batch arrays in `snap.static` row order (+ label, ttc_days, followup_days when present)."""
        if not self.fitted:
            raise RuntimeError("FeaturePipeline.transform before fit/load")
        st = snap.static
        types = event_type_codes(snap.history)  # shared by the aggregates and the sequence
        out = {"cat": self._cat(st), "num": self._num(self._numeric_frame(snap, types))}
        out.update(self._sequence(st, snap.history, types))
        for c in LABEL_COLUMNS:
            if c in st:
                out[c] = st[c].to_numpy(dtype="float32")
        return out

    def _cat(self, st: pd.DataFrame) -> np.ndarray:
        cols = [
            _codes(st[c].astype("string") if c in st else pd.Series([None] * len(st)), self.vocab[c]) + 1
            for c in self.categorical
        ]
        return np.stack(cols, axis=1) if cols else np.zeros((len(st), 0), dtype=np.int64)

    def _numeric_frame(self, snap: Snapshot, types: tuple[np.ndarray, pd.Index] | None = None) -> pd.DataFrame:
        """Raw numeric inputs in `num` order: static columns, then the fitted history aggregates (prefixed);
        `types`: `event_type_codes(snap.history)` when the caller has it."""
        st = snap.static
        frame = pd.DataFrame(
            {c: pd.to_numeric(st[c], errors="coerce") if c in st else np.nan for c in self.numeric}, index=st.index
        )
        if self.aggregates:
            agg = history_aggregates_with_sources(snap, self.event_types, types)[0][self.aggregates]
            frame = pd.concat([frame, agg.add_prefix(HISTORY_PREFIX)], axis=1)
        return frame

    @property
    def _numeric_columns(self) -> list[str]:
        return list(self.numeric) + [HISTORY_PREFIX + c for c in self.aggregates]

    def _num(self, frame: pd.DataFrame) -> np.ndarray:
        cols = []
        for c in self._numeric_columns:
            s = self.num_stats[c]
            x = frame[c].to_numpy(dtype="float64")
            miss = ~np.isfinite(x)
            x = np.log1p(np.clip(x, 0, None)) if s["log"] else x
            z = np.clip((x - s["median"]) / s["scale"], -self.clip, self.clip)
            cols.append(np.where(miss, 0.0, z))
            if s["indicator"]:
                cols.append(miss.astype("float64"))
        return (np.stack(cols, axis=1) if cols else np.zeros((len(frame), 0))).astype(np.float32)

    def _sequence(
        self, st: pd.DataFrame, h: pd.DataFrame, types: tuple[np.ndarray, pd.Index] | None = None
    ) -> dict[str, np.ndarray]:
        n, b = self.max_events, len(st)
        out = {
            "seq_type": np.zeros((b, n), np.int64),
            "seq_value": np.zeros((b, n), np.float32),
            "seq_dt": np.zeros((b, n), np.float32),
            "seq_mask": np.zeros((b, n), bool),
        }
        if len(h) == 0 or b == 0:
            return out
        row = history_rows(st, h)
        ts = h["ts"].to_numpy("datetime64[ns]").astype(np.int64)
        ok = (row >= 0) & (ts < h["cutoff"].to_numpy("datetime64[ns]").astype(np.int64))  # guard: past only
        order = row_time_order(row[ok], ts[ok])
        idx = np.flatnonzero(ok)[order]
        r = row[idx]
        counts = np.bincount(r, minlength=b)
        start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pos = np.arange(len(r)) - start[r]
        first = counts[r] - np.minimum(counts[r], n)  # keep the n most recent, chronological, left-aligned
        keep = pos >= first
        idx, r, slot = idx[keep], r[keep], (pos - first)[keep]
        codes = _codes(h["event_type"], self.event_types, types)[idx]
        med = np.array([self.event_stats[t][0] for t in self.event_types] + [0.0])
        scale = np.array([self.event_stats[t][1] for t in self.event_types] + [1.0])
        v = slog1p(h["value"].to_numpy(dtype="float64")[idx])
        z = np.clip((v - med[codes]) / scale[codes], -self.clip, self.clip)
        days = (h["cutoff"].to_numpy("datetime64[ns]")[idx] - h["ts"].to_numpy("datetime64[ns]")[idx]) / np.timedelta64(
            1, "D"
        )
        out["seq_type"][r, slot] = np.where(codes >= 0, codes + 2, 1)
        out["seq_value"][r, slot] = np.nan_to_num(z, nan=0.0)
        out["seq_dt"][r, slot] = np.log1p(np.maximum(days, 0.0))
        out["seq_mask"][r, slot] = True
        return out

    # ------------------------------------------------------------ describe
    @property
    def cat_cardinalities(self) -> list[int]:
        return [len(self.vocab[c]) + 1 for c in self.categorical]

    def batch_layout(self) -> BatchLayout:
        """The names behind the batch axes (attribution groups inputs by them); history aggregates name the event
        types they are computed from, so they are swapped together with those events."""
        sources = {HISTORY_PREFIX + c: t for c, t in self.aggregate_sources.items()}
        return BatchLayout(list(self.categorical), list(self.numeric_names), list(self.event_type_names), sources)

    @property
    def numeric_names(self) -> list[str]:
        names = []
        for c in self._numeric_columns:
            names.append(c)
            if self.num_stats.get(c, {}).get("indicator"):
                names.append(f"{c}__missing")
        return names

    @property
    def n_numeric(self) -> int:
        return len(self.numeric_names)

    @property
    def event_type_names(self) -> list[str]:
        return [PAD, UNKNOWN] + list(self.event_types)

    @property
    def n_event_types(self) -> int:
        return len(self.event_types) + 2

    # ---------------------------------------------------------- persist
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "categorical": self.categorical,
            "numeric": self.numeric,
            "max_events": self.max_events,
            "clip": self.clip,
            "min_category_count": self.min_category_count,
            "max_categories": self.max_categories,
            "missing_indicators": self.missing_indicators,
            "log_skew_threshold": self.log_skew_threshold,
            "history_features": self.history_features,
            "aggregates": self.aggregates,
            "aggregate_sources": self.aggregate_sources,
            "vocab": self.vocab,
            "num_stats": self.num_stats,
            "event_types": self.event_types,
            "event_stats": self.event_stats,
            "fitted": self.fitted,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeaturePipeline:
        if d.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"pipeline state version {d.get('version')} is not one of {READABLE_VERSIONS}")
        p = cls(
            d["categorical"],
            d["numeric"],
            d["max_events"],
            d["clip"],
            d["min_category_count"],
            d["max_categories"],
            d["missing_indicators"],
            d["log_skew_threshold"],
            d.get("history_features", False),
        )
        p.aggregates, p.aggregate_sources = list(d.get("aggregates", [])), dict(d.get("aggregate_sources", {}))
        p.vocab, p.num_stats = {k: list(v) for k, v in d["vocab"].items()}, dict(d["num_stats"])
        p.event_types, p.event_stats, p.fitted = list(d["event_types"]), dict(d["event_stats"]), d["fitted"]
        return p

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> FeaturePipeline:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
