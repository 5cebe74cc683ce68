"""Length-bucketed training batches and the per-language / domain / phenomenon evaluation breakdown."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnsense.feedback.data import LengthBucketSampler
from churnsense.feedback.evaluate import breakdown
from churnsense.feedback.labels import HEADS
from churnsense.feedback.report import evaluation_note


def test_length_buckets_cover_every_row_once_with_similar_lengths():
    lengths = np.random.default_rng(0).integers(3, 120, 1000)
    sampler = LengthBucketSampler(lengths.tolist(), batch_size=16, bucket=10, seed=1)
    batches = list(sampler)
    rows = np.concatenate(batches)
    assert len(batches) == len(sampler) and sorted(rows.tolist()) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.25 * np.ptp(lengths)  # padding waste far below random batches
    assert [b[0] for b in batches] != [b[0] for b in LengthBucketSampler(lengths.tolist(), 16, 10, 2)]
    assert list(sampler) != batches  # a new order every epoch


def _probs(labels: list[str], names: tuple[str, ...]) -> np.ndarray:
    out = np.full((len(labels), len(names)), 0.01, dtype=np.float32)
    out[np.arange(len(labels)), [names.index(v) for v in labels]] = 0.98
    return out


def test_breakdown_by_tag_language_and_domain():
    frame = pd.DataFrame(
        {
            "text": ["a", "b", "c", "d"],
            "language": ["en", "en", "ru", "ru"],
            "sentiment": ["negative", "positive", "neutral", "negative"],
            "topic": ["billing", "outage", "app", "price"],
            "domain": ["saas", "saas", "banking", "banking"],
            "phenomena": ["sarcasm;emoji", "negation", "loaded_neutral", "sarcasm"],
        }
    )
    predicted = ["positive", "positive", "neutral", "negative"]  # the first sarcasm read as praise
    probs = {
        "p_sentiment": _probs(predicted, HEADS["sentiment"]),
        "p_topic": _probs(list(frame["topic"]), HEADS["topic"]),
    }
    out = breakdown(frame, probs, "dev/")
    assert out["dev/phenomena/sarcasm/n"] == 2 and out["dev/phenomena/sarcasm/accuracy"] == 0.5
    assert out["dev/phenomena/emoji/accuracy"] == 0.0 and out["dev/phenomena/negation/accuracy"] == 1.0
    assert out["dev/language/ru/macro_f1"] == 1.0 and out["dev/domain/saas/accuracy"] == 0.5
    assert out["dev/domain/banking/topic_macro_f1"] == 1.0
    note = evaluation_note(out, ("dev",))
    assert "| sarcasm | 0.500 / " in note and "(n=2)" in note
