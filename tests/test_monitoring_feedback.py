"""What feedback drift monitoring watches, on seeded scored-like frames: a planted language-mix change flags exactly
the language feature, another sample flags nothing; the reference texts are the customer feedback rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnsense.core.drift import DriftThresholds, ProfileAccumulator, ProfileSettings, compare
from churnsense.monitoring.feedback import feedback_reference_profile, feedback_scoring_values, reference_texts

THRESHOLDS = DriftThresholds(
    psi=0.2, new_category_share=0.001, min_rows=100, max_drifted_share=0.0, epsilon=1e-4, max_new_categories=50
)
LANGS = ["en", "ru", "uk", "he"]


def scored(n: int, seed: int, lang_p=(0.55, 0.2, 0.15, 0.1)) -> pd.DataFrame:
    """Rows as `score_feedback_batch` returns them (text, detected language, predictions)."""
    rng = np.random.default_rng(seed)
    words = rng.integers(3, 25, n)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "text": ["word " * int(w) for w in words],
            "language": np.asarray(LANGS, dtype=object)[rng.choice(4, n, p=lang_p)],
            "sentiment": rng.choice(["negative", "neutral", "positive"], n, p=[0.3, 0.4, 0.3]),
            "p_negative": rng.beta(2, 5, n),
            "topic": rng.choice(["billing", "network", "app"], n),
        }
    )


def run(reference, frame: pd.DataFrame):
    acc = ProfileAccumulator(reference)
    for part in np.array_split(np.arange(len(frame)), 3):
        acc.add(feedback_scoring_values(frame.iloc[part]))
    return compare(reference, acc.profile(), THRESHOLDS)


def test_language_mix_change_flags_exactly_language():
    reference = feedback_reference_profile(scored(5000, 0), ProfileSettings())
    assert {n: f.group for n, f in reference.features.items()} == {
        "text_length": "derived",
        "language": "derived",
        "sentiment": "prediction",
        "p_negative": "prediction",
        "topic": "prediction",
    }
    assert run(reference, scored(3000, 1)).drifted == []
    report = run(reference, scored(3000, 2, lang_p=(0.25, 0.25, 0.25, 0.25)))
    assert report.drifted == ["language"] and report.features[0].top_shifted[0]["label"] == "en"


def test_reference_texts_prefer_the_customer_feedback_rows():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(30)], "source": ["synth"] * 10 + ["feedback.parquet"] * 20})
    picked = reference_texts(frame, "feedback.parquet", rows=5, seed=0)
    assert len(picked) == 5 and set(picked["source"]) == {"feedback.parquet"}
    assert picked.equals(reference_texts(frame, "feedback.parquet", rows=5, seed=0))  # seeded
    assert len(reference_texts(frame, None, rows=100, seed=0)) == 30  # no table rows: every training text
    assert len(reference_texts(frame, "other.csv", rows=100, seed=0)) == 30


def test_absent_prediction_columns_are_skipped():
    values = feedback_scoring_values(scored(10, 0).drop(columns=["topic", "language"]))
    assert set(values) == {"text_length", "sentiment", "p_negative"}
    assert values["text_length"].tolist()[:1] == [len(scored(10, 0)["text"][0])]
