"""What the feedback model's drift monitoring watches, computed the same way at training and at scoring time.

From scored feedback rows (the output of `score_feedback_batch`): `text_length` (characters) and the language mix
the release detects (derived), and its predictions: `sentiment`, `p_negative`, `topic`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from churnsense.core.drift import Profile, ProfileSettings, reference_profile

PREDICTIONS = ("sentiment", "p_negative", "topic")


def feedback_values(scored: pd.DataFrame, text_column: str = "text") -> dict[str, tuple[str, Any]]:
    """`{feature: (group, values)}` of scored feedback rows (columns the release did not produce are skipped)."""
    out: dict[str, tuple[str, Any]] = {}
    if text_column in scored:
        out["text_length"] = ("derived", scored[text_column].astype("string").str.len().astype("float64"))
    if "language" in scored:
        out["language"] = ("derived", scored["language"])
    out.update({c: ("prediction", scored[c]) for c in PREDICTIONS if c in scored})
    return out


def feedback_scoring_values(scored: pd.DataFrame, text_column: str = "text") -> dict[str, Any]:
    """`{feature: values}` of one scored chunk, for `DriftMonitor.add`."""
    return {name: values for name, (_, values) in feedback_values(scored, text_column).items()}


def feedback_reference_profile(
    scored: pd.DataFrame, settings: ProfileSettings, text_column: str = "text", meta: Mapping[str, Any] | None = None
) -> Profile:
    """Reference profile of a feedback release from its reference texts scored by the release itself (so the
    language mix and the predictions compare like with like at serving time)."""
    return reference_profile(
        feedback_values(scored, text_column),
        settings,
        {"task": "feedback", "rows": int(len(scored)), **dict(meta or {})},
    )


def reference_texts(frame: pd.DataFrame, preferred_source: str | None, rows: int, seed: int) -> pd.DataFrame:
    """The texts a feedback release is profiled on: the training rows from the customer feedback table when there
    are any (what scoring will see), else every training text; at most `rows`, sampled with `seed`."""
    if preferred_source and "source" in frame and frame["source"].eq(preferred_source).any():
        frame = frame[frame["source"].eq(preferred_source)]
    if len(frame) > rows:
        frame = frame.sample(rows, random_state=seed)
    return frame.reset_index(drop=True)
