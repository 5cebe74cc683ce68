"""`FeaturePipeline`: fitted on the training snapshot only; plain-JSON state; the one object shared by training,
ONNX export and serving. `transform` returns the batch contract of docs/architecture.md (vectorised, no loops
over customers)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnsense.data.contract import DataSpec
from churnsense.data.framing import LABEL_COLUMNS, Snapshot, history_rows, static_categorical, static_numeric

VERSION = 1
PAD, UNKNOWN = "<pad>", "<unk>"


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


def _codes(values: pd.Series, vocab: list[str]) -> np.ndarray:
    """Position of each value in `vocab`; -1 for unknown or missing."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)  # -1 for missing
    lut = np.append(pd.Index(vocab, dtype=object).get_indexer(pd.Index(uniques, dtype=object)), -1)
    return lut[codes].astype(np.int64)


class FeaturePipeline:
    """Category vocabularies (index 0 = unknown/missing), robust numeric scaling with missing indicators,
    event-type vocabulary (0 = pad, 1 = unknown) and per-event-type robust value scaling."""

    def __init__(self, categorical: list[str], numeric: list[str], max_events: int, clip: float = 5.0,
                 min_category_count: int = 1, max_categories: int = 1000, missing_indicators: bool = True,
                 log_skew_threshold: float = 2.0):
        self.categorical, self.numeric = list(categorical), list(numeric)
        self.max_events, self.clip = int(max_events), float(clip)
        self.min_category_count, self.max_categories = int(min_category_count), int(max_categories)
        self.missing_indicators, self.log_skew_threshold = bool(missing_indicators), float(log_skew_threshold)
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
            fin = x[np.isfinite(x)]
            skew = float(pd.Series(fin).skew()) if fin.size > 2 else 0.0
            use_log = bool(fin.size and fin.min() >= 0 and skew > self.log_skew_threshold)
            med, scale = robust_stats(np.log1p(fin) if use_log else fin)
            self.num_stats[c] = {"log": use_log, "median": med, "scale": scale,
                                 "indicator": bool(self.missing_indicators and (~np.isfinite(x)).any())}
        h = snap.history
        self.event_types = sorted(h["event_type"].astype(str).unique().tolist())
        vals = slog1p(h["value"].to_numpy(dtype="float64"))
        codes = pd.Categorical(h["event_type"].astype(str), categories=self.event_types).codes
        self.event_stats = {t: list(robust_stats(vals[codes == i])) for i, t in enumerate(self.event_types)}
        self.fitted = True
        return self

    # ------------------------------------------------------------ transform
    def transform(self, snap: Snapshot) -> dict[str, np.ndarray]:
        """Batch arrays in `snap.static` row order (+ label, ttc_days, followup_days when present)."""
        if not self.fitted:
            raise RuntimeError("FeaturePipeline.transform before fit/load")
        st = snap.static
        out = {"cat": self._cat(st), "num": self._num(st)}
        out.update(self._sequence(st, snap.history))
        for c in LABEL_COLUMNS:
            if c in st:
                out[c] = st[c].to_numpy(dtype="float32")
        return out

    def _cat(self, st: pd.DataFrame) -> np.ndarray:
        cols = [_codes(st[c].astype("string") if c in st else pd.Series([None] * len(st)), self.vocab[c]) + 1
                for c in self.categorical]
        return np.stack(cols, axis=1) if cols else np.zeros((len(st), 0), dtype=np.int64)

    def _num(self, st: pd.DataFrame) -> np.ndarray:
        cols = []
        for c in self.numeric:
            s = self.num_stats[c]
            x = pd.to_numeric(st[c], errors="coerce").to_numpy(dtype="float64") if c in st \
                else np.full(len(st), np.nan)
            miss = ~np.isfinite(x)
            x = np.log1p(np.clip(x, 0, None)) if s["log"] else x
            z = np.clip((x - s["median"]) / s["scale"], -self.clip, self.clip)
            cols.append(np.where(miss, 0.0, z))
            if s["indicator"]:
                cols.append(miss.astype("float64"))
        return (np.stack(cols, axis=1) if cols else np.zeros((len(st), 0))).astype(np.float32)

    def _sequence(self, st: pd.DataFrame, h: pd.DataFrame) -> dict[str, np.ndarray]:
        n, b = self.max_events, len(st)
        out = {"seq_type": np.zeros((b, n), np.int64), "seq_value": np.zeros((b, n), np.float32),
               "seq_dt": np.zeros((b, n), np.float32), "seq_mask": np.zeros((b, n), bool)}
        if len(h) == 0 or b == 0:
            return out
        row = history_rows(st, h)
        ts = h["ts"].to_numpy("datetime64[ns]").astype(np.int64)
        ok = (row >= 0) & (ts < h["cutoff"].to_numpy("datetime64[ns]").astype(np.int64))  # guard: past only
        order = np.lexsort((ts[ok], row[ok]))
        idx = np.flatnonzero(ok)[order]
        r = row[idx]
        counts = np.bincount(r, minlength=b)
        start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pos = np.arange(len(r)) - start[r]
        first = counts[r] - np.minimum(counts[r], n)  # keep the n most recent, chronological, left-aligned
        keep = pos >= first
        idx, r, slot = idx[keep], r[keep], (pos - first)[keep]
        codes = _codes(h["event_type"], self.event_types)[idx]
        med = np.array([self.event_stats[t][0] for t in self.event_types] + [0.0])
        scale = np.array([self.event_stats[t][1] for t in self.event_types] + [1.0])
        v = slog1p(h["value"].to_numpy(dtype="float64")[idx])
        z = np.clip((v - med[codes]) / scale[codes], -self.clip, self.clip)
        days = (h["cutoff"].to_numpy("datetime64[ns]")[idx] - h["ts"].to_numpy("datetime64[ns]")[idx]) \
            / np.timedelta64(1, "D")
        out["seq_type"][r, slot] = np.where(codes >= 0, codes + 2, 1)
        out["seq_value"][r, slot] = np.nan_to_num(z, nan=0.0)
        out["seq_dt"][r, slot] = np.log1p(np.maximum(days, 0.0))
        out["seq_mask"][r, slot] = True
        return out

    # ------------------------------------------------------------ describe
    @property
    def cat_cardinalities(self) -> list[int]:
        return [len(self.vocab[c]) + 1 for c in self.categorical]

    @property
    def numeric_names(self) -> list[str]:
        names = []
        for c in self.numeric:
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
        return {"version": VERSION, "categorical": self.categorical, "numeric": self.numeric,
                "max_events": self.max_events, "clip": self.clip, "min_category_count": self.min_category_count,
                "max_categories": self.max_categories, "missing_indicators": self.missing_indicators,
                "log_skew_threshold": self.log_skew_threshold, "vocab": self.vocab, "num_stats": self.num_stats,
                "event_types": self.event_types, "event_stats": self.event_stats, "fitted": self.fitted}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeaturePipeline:
        if d.get("version") != VERSION:
            raise ValueError(f"pipeline state version {d.get('version')} != {VERSION}")
        p = cls(d["categorical"], d["numeric"], d["max_events"], d["clip"], d["min_category_count"],
                d["max_categories"], d["missing_indicators"], d["log_skew_threshold"])
        p.vocab, p.num_stats = {k: list(v) for k, v in d["vocab"].items()}, dict(d["num_stats"])
        p.event_types, p.event_stats, p.fitted = list(d["event_types"]), dict(d["event_stats"]), d["fitted"]
        return p

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> FeaturePipeline:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
