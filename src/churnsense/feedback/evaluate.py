"""Score a labelled frame with a release (ONNX) and compute feedback metrics — used for int8 acceptance and bench."""
from __future__ import annotations

import numpy as np
import pandas as pd

from churnsense.feedback.labels import HEADS, encode_labels
from churnsense.feedback.metrics import feedback_metrics
from churnsense.feedback.release import FeedbackRelease
from churnsense.feedback.score import predict_texts


def evaluate_release(release: FeedbackRelease, frame: pd.DataFrame, prefix: str = "") -> dict[str, float]:
    """Metrics of `release` on a labelled frame (columns text, sentiment, topic, language)."""
    probs, _ = predict_texts(release, frame["text"].astype(str).tolist())
    cat = dict(probs)
    for head, names in HEADS.items():
        cat[head] = np.asarray(encode_labels(frame[head].tolist(), names), dtype=np.int64)
    return feedback_metrics(cat, HEADS, prefix=prefix)


def per_language_drop(base: dict[str, float], other: dict[str, float]) -> float:
    """Largest drop (base - other) of sentiment macro-F1 over languages and overall."""
    keys = [k for k in base if k.endswith("macro_f1") or "macro_f1/" in k]
    keys = [k for k in keys if "topic" not in k and "language/" not in k]
    return max((base[k] - other.get(k, 0.0) for k in keys), default=0.0)
