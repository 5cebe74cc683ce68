"""The pure feedback scorer (pandas in, pandas out): `score_feedback_batch` keeps every input column and adds
sentiment, p_<class>, topic and language; rows without usable text go to rejects. onnxruntime + tokenizers only."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from churnsense.core.io import MALFORMED
from churnsense.core.rejects import make_rejects
from churnsense.core.runtime import output_names
from churnsense.feedback.release import FeedbackRelease
from churnsense.feedback.tokenize import length_buckets

_KNOWN_SCRIPT = re.compile(r"[A-Za-z\u00C0-\u024F\u0400-\u052F\u0590-\u05FF]")


def text_problems(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(clean text, reason or None) per row: non-text, empty and undecodable values are rejected."""
    texts, reasons = [], []
    for v in values.tolist():
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                texts.append(None), reasons.append("undecodable text (invalid UTF-8)")
                continue
        if not isinstance(v, str):
            (
                texts.append(None),
                reasons.append(
                    "missing text"
                    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                    else f"non-text value ({type(v).__name__})"
                ),
            )
        elif not v.strip():
            texts.append(None), reasons.append("empty text")
        elif "\ufffd" in v or any(0xD800 <= ord(c) <= 0xDFFF for c in v):
            texts.append(None), reasons.append("undecodable text (replacement/surrogate characters)")
        else:
            texts.append(v), reasons.append(None)
    return pd.Series(texts, index=values.index, dtype=object), pd.Series(reasons, index=values.index, dtype=object)


def predict_texts(release: FeedbackRelease, texts: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Probabilities per head [N, classes] for `texts` (length-bucketed batches) and the truncated flags."""
    enc = release.tokenizer.encode(texts)
    names = output_names(release.session)
    out = {n: np.zeros((len(texts), len(release.labels[n[2:]])), dtype=np.float32) for n in names}
    lengths = np.fromiter((len(r) for r in enc.ids), dtype=np.int64, count=len(enc.ids))
    for idx in length_buckets(lengths, release.batch_size):
        feed = release.tokenizer.pad([enc.ids[i] for i in idx])
        for name, probs in zip(names, release.session.run(names, feed)):
            out[name][idx] = probs
    return out, enc.truncated


def score_feedback_batch(
    df: pd.DataFrame,
    release: FeedbackRelease,
    text_column: str = "text",
    *,
    first_row: int = 1,
    source: str = "feedback",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score `df[text_column]`: (scored rows with every input column + sentiment, p_negative, p_neutral,
    p_positive, topic, language; rejects in `churnsense.core.io` format). `scored.attrs["truncated"]` counts
    texts cut at the release's max length. Rows are never dropped: scored + rejected == len(df)."""
    if text_column not in df.columns:
        raise ValueError(f"text column {text_column!r} not in input columns {list(df.columns)}; set text_column=")
    texts, reasons = text_problems(df[text_column])
    if MALFORMED in df:  # a malformed CSV record: its own reason, and the column never reaches the output
        reasons = df[MALFORMED].where(df[MALFORMED].notna(), reasons).astype(object)
        df = df.drop(columns=[MALFORMED])
    bad = reasons.notna().to_numpy()
    keys = df["customer_id"].astype("string")[bad].tolist() if "customer_id" in df else [None] * int(bad.sum())
    rows = (np.flatnonzero(bad) + first_row).tolist()
    rejects = make_rejects(source, rows, keys, text_column, reasons[bad].tolist())
    scored = df.loc[~bad].copy()
    added = ("sentiment", *(f"p_{n}" for n in release.labels["sentiment"]), "topic", "language")
    scored = scored.rename(columns={c: f"{c}_input" for c in added if c in scored.columns})  # keep given labels
    probs, truncated = predict_texts(release, texts[~bad].tolist()) if len(scored) else ({}, np.zeros(0, bool))
    heads = release.labels
    if len(scored):
        p = probs["p_sentiment"]
        scored["sentiment"] = np.asarray(heads["sentiment"], dtype=object)[p.argmax(1)]
        for j, name in enumerate(heads["sentiment"]):
            scored[f"p_{name}"] = p[:, j]
        for head in ("topic", "language"):
            if f"p_{head}" in probs:
                scored[head] = np.asarray(heads[head], dtype=object)[probs[f"p_{head}"].argmax(1)]
        if "language" in scored:
            unknown = ~texts[~bad].str.contains(_KNOWN_SCRIPT).to_numpy(dtype=bool)
            scored.loc[unknown, "language"] = "other"
    else:
        for col in added:
            scored[col] = pd.Series(dtype="float32" if col.startswith("p_") else object)
    scored.attrs["truncated"] = int(truncated.sum())
    return scored, rejects
