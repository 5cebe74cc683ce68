"""Label maps of the feedback model (saved as labels.json in every release)."""

from __future__ import annotations

from churnsense.data.contract import LANGUAGES, SENTIMENTS, TOPICS

IGNORE = -100  # target value for "label unknown" (e.g. no topic in English drug reviews)
HEADS: dict[str, tuple[str, ...]] = {
    "sentiment": SENTIMENTS,
    "topic": TOPICS,
    "language": (*LANGUAGES, "other"),
}


def encode_labels(values, names: tuple[str, ...]) -> list[int]:
    """Map label strings to indices; missing / unknown values -> IGNORE."""
    index = {name: i for i, name in enumerate(names)}
    return [index.get(v, IGNORE) if isinstance(v, str) else IGNORE for v in values]
