"""MLflow pyfunc wrapper of a churn release: `mlflow.pyfunc.log_model(..., python_model=ChurnPyfunc(),
artifacts={"release": "artifacts/churn"})` ships ONNX + pipeline JSON + config as one registered model.

`predict` takes a customers DataFrame (the release's source column names), or a dict with `customers` and
optional `events` / `feedback` DataFrames, and returns one row per input customer row: the scores, or, for a
rejected row, NaN scores and its `reject_reason`. `params={"cutoff": "2024-06-01"}` sets the scoring date.
"""
from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from churnsense.churn.release import ChurnRelease
from churnsense.churn.score import score_churn_batch


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """Scores with `score_churn_batch`; needs only onnxruntime, pandas and churnsense (no torch)."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.release = ChurnRelease.load(context.artifacts["release"])

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the loaded release (an onnxruntime session cannot be pickled); load_context restores it."""
        state = dict(self.__dict__)
        state.pop("release", None)
        return state

    def predict(self, context: Any, model_input: pd.DataFrame | dict[str, pd.DataFrame],
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        frames = model_input if isinstance(model_input, dict) else {"customers": model_input}
        params = params or {}
        scored, rejects = score_churn_batch(frames.get("customers"), frames.get("events"), frames.get("feedback"),
                                            self.release, params.get("cutoff"),
                                            risk_bands=params.get("risk_bands"))
        rejected = rejects[rejects["source"] == "customers"]
        failed = pd.DataFrame({"customer_id": rejected["key"].to_numpy(dtype=object),
                               "reject_reason": (rejected["column"].astype(str) + ": " + rejected["reason"]).to_numpy()})
        return pd.concat([scored, failed], ignore_index=True) if len(failed) else scored
