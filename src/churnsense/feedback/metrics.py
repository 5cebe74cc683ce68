"""Feedback metrics (numpy in, floats out): sentiment macro-F1 overall and per language, topic, language id."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

from churnsense.feedback.labels import IGNORE


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts [true, pred] over classes 0..n_classes-1."""
    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    """F1 of every class from a confusion matrix (0 where a class is never true nor predicted)."""
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over the classes present in `y_true` (NaN when empty)."""
    if len(y_true) == 0:
        return float("nan")
    present = np.unique(y_true)
    return float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def feedback_metrics(
    cat: dict[str, np.ndarray], label_names: dict[str, tuple[str, ...]], prefix: str = ""
) -> dict[str, float]:
    """`cat` holds `p_<head>` probabilities and integer targets per head (IGNORE = unknown).

    Keys: macro_f1 / accuracy (sentiment, all rows), macro_f1/<lang> and n/<lang> (sentiment by true language),
    f1/sentiment/<class>, topic/macro_f1, topic/accuracy, language/accuracy.
    """
    out: dict[str, float] = {}
    names = label_names["sentiment"]
    y, p = cat["sentiment"], cat["p_sentiment"].argmax(1)
    keep = y != IGNORE
    out["macro_f1"] = macro_f1(y[keep], p[keep], len(names))
    out["accuracy"] = float((y[keep] == p[keep]).mean()) if keep.any() else float("nan")
    cm = confusion(y[keep], p[keep], len(names))
    for cls, f1 in zip(names, per_class_f1(cm)):
        out[f"f1/sentiment/{cls}"] = float(f1)
    if "language" in cat:
        langs = cat["language"]
        for i, lang in enumerate(label_names["language"]):
            sel = keep & (langs == i)
            if sel.any():
                out[f"macro_f1/{lang}"] = macro_f1(y[sel], p[sel], len(names))
                out[f"n/{lang}"] = float(sel.sum())
    for head in ("topic", "language"):
        if head in cat and f"p_{head}" in cat:
            t, q = cat[head], cat[f"p_{head}"].argmax(1)
            sel = t != IGNORE
            if sel.any():
                out[f"{head}/accuracy"] = float((t[sel] == q[sel]).mean())
                out[f"{head}/macro_f1"] = macro_f1(t[sel], q[sel], len(label_names[head]))
    return {prefix + k: v for k, v in out.items()}
