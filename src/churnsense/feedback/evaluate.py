"""Score a labelled frame with a release (ONNX) and compute feedback metrics — int8 acceptance, bench, and the
per-language / per-domain / per-phenomenon breakdown of the training report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnsense.feedback.labels import HEADS, encode_labels
from churnsense.feedback.metrics import feedback_metrics, macro_f1
from churnsense.feedback.release import FeedbackRelease
from churnsense.feedback.score import predict_texts

BREAKDOWN_COLUMNS = ("language", "domain", "phenomena")  # `phenomena`: `;`-joined tags, one slice per tag


def _targets(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        head: np.asarray(encode_labels(frame[head].tolist(), names), dtype=np.int64) for head, names in HEADS.items()
    }


def evaluate_release(release: FeedbackRelease, frame: pd.DataFrame, prefix: str = "") -> dict[str, float]:
    """Metrics of `release` on a labelled frame (columns text, sentiment, topic, language)."""
    probs, _ = predict_texts(release, frame["text"].astype(str).tolist())
    return feedback_metrics({**probs, **_targets(frame)}, HEADS, prefix=prefix)


def breakdown(frame: pd.DataFrame, probs: dict[str, np.ndarray], prefix: str = "") -> dict[str, float]:
    """Sentiment accuracy and macro-F1 (over the classes present) and topic macro-F1 per value of each
    BREAKDOWN_COLUMNS column present in `frame`: keys `<column>/<value>/{n,accuracy,macro_f1,topic_macro_f1}`."""
    targets = _targets(frame)
    y, p = targets["sentiment"], probs["p_sentiment"].argmax(1)
    t, q = targets["topic"], probs["p_topic"].argmax(1)
    out: dict[str, float] = {}
    for column in BREAKDOWN_COLUMNS:
        if column not in frame:
            continue
        values = frame[column].fillna("").astype(str).reset_index(drop=True)
        slices = values.str.split(";").explode() if column == "phenomena" else values
        for value, rows in _slices(slices):
            sel = np.zeros(len(frame), dtype=bool)
            sel[rows] = True
            sel &= y >= 0
            if not sel.any():
                continue
            key = f"{prefix}{column}/{value}"
            out[f"{key}/n"] = float(sel.sum())
            out[f"{key}/accuracy"] = float((y[sel] == p[sel]).mean())
            out[f"{key}/macro_f1"] = macro_f1(y[sel], p[sel], len(HEADS["sentiment"]))
            tsel = sel & (t >= 0)
            if tsel.any():
                out[f"{key}/topic_macro_f1"] = macro_f1(t[tsel], q[tsel], len(HEADS["topic"]))
    return out


def _slices(values: pd.Series) -> list[tuple[str, np.ndarray]]:
    """(value, row positions) for every non-empty value of an (exploded) series indexed by row position."""
    values = values[values.ne("")]
    return [(str(v), np.unique(values.index[values.eq(v)].to_numpy())) for v in sorted(values.unique())]


def evaluate_with_breakdown(release: FeedbackRelease, frame: pd.DataFrame, prefix: str) -> dict[str, float]:
    """Overall metrics plus the breakdown of `release` on `frame`, keys prefixed with `prefix` (e.g. 'holdout/')."""
    probs, _ = predict_texts(release, frame["text"].astype(str).tolist())
    metrics = feedback_metrics({**probs, **_targets(frame)}, HEADS, prefix=prefix)
    metrics.update(breakdown(frame, probs, prefix))
    return metrics


def per_language_drop(base: dict[str, float], other: dict[str, float]) -> float:
    """Largest drop (base - other) of sentiment macro-F1 over languages and overall."""
    keys = [k for k in base if k.endswith("macro_f1") or "macro_f1/" in k]
    keys = [k for k in keys if "topic" not in k and "language/" not in k]
    return max((base[k] - other.get(k, 0.0) for k in keys), default=0.0)
