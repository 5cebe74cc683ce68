"""MLflow pyfunc wrapper of a churn release: `mlflow.pyfunc.log_model(..., python_model=ChurnPyfunc(),
artifacts={"release": "artifacts/churn"})` ships ONNX + pipeline JSON + config as one registered model.

`predict` takes the release's primary table as a DataFrame in its source column names (customers; events for an
events-only release), or a dict with `customers` / `events` / `feedback` DataFrames, and returns one row per
scored customer plus one row per rejected input row of the primary table with NaN scores and its
`reject_reason`. `params={"cutoff": "2024-06-01"}` sets the scoring date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from churnsense.churn.release import ChurnRelease
from churnsense.churn.score import score_churn_batch
from churnsense.core.pyfunc import ReleaseModel


class ChurnPyfunc(ReleaseModel):
    """Scores with `score_churn_batch`; needs only onnxruntime, pandas and churnsense (no torch)."""

    # inference params of the logged signature ("" = the release's default cutoff rule)
    PARAMS: ClassVar[dict[str, Any]] = {"cutoff": ""}

    def load_release(self, path: Path) -> Any:
        return ChurnRelease.load(path)

    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> pd.DataFrame:
        primary = "customers" if self.release.spec.customers is not None else "events"
        frames = model_input if isinstance(model_input, dict) else {primary: model_input}
        params = params or {}
        scored, rejects = score_churn_batch(
            frames.get("customers"),
            frames.get("events"),
            frames.get("feedback"),
            self.release,
            params.get("cutoff") or None,
            risk_bands=params.get("risk_bands"),
        )
        rejected = rejects[rejects["source"] == primary]
        failed = pd.DataFrame(
            {
                "customer_id": rejected["customer_id"].to_numpy(dtype=object),
                "reject_reason": (rejected["column"].astype(str) + ": " + rejected["reason"]).to_numpy(),
            }
        )
        return pd.concat([scored, failed], ignore_index=True) if len(failed) else scored
