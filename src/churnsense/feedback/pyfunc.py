"""MLflow pyfunc wrapper of a feedback release: one registered model scoring texts with onnxruntime (no torch).

`predict` takes a DataFrame with a `text` column (other columns are kept) and returns one row per input row: the
sentiment, class probabilities, topic and language, or, for a row without usable text, its `reject_reason`.
`params={"text_column": "comment"}` names another text column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from churnsense.core.pyfunc import ReleaseModel
from churnsense.feedback.release import load_release
from churnsense.feedback.score import score_feedback_batch


class FeedbackPyfunc(ReleaseModel):
    """Scores with `score_feedback_batch`."""

    PARAMS: ClassVar[dict[str, Any]] = {"text_column": "text"}  # inference params of the logged signature

    def load_release(self, path: Path) -> Any:
        return load_release(path)

    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> pd.DataFrame:
        column = (params or {}).get("text_column", "text")
        scored, rejects = score_feedback_batch(model_input.reset_index(drop=True), self.release, column)
        failed = model_input.iloc[rejects["row"].to_numpy(dtype=int) - 1].assign(
            reject_reason=rejects["reason"].to_numpy()
        )
        return pd.concat([scored, failed], ignore_index=True) if len(failed) else scored.reset_index(drop=True)
