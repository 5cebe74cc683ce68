"""A churn release loaded for scoring: ONNX session, fitted feature pipeline, data contract, metadata.

Files (written by `churnsense.churn.finish` through `core.release.staged_release`): `model.onnx` (outputs `p_churn`,
calibrated, and `p_horizon` with a hazard head), `pipeline.json`, `config.yaml` (the resolved training config: its
`data` section is the contract the pipeline was fit with, its `insights` section drives serving insights),
`metadata.json`, `insights.json` (+ background). Needs neither torch nor Lightning nor Hydra's training configs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from churnsense.churn.features import FeaturePipeline
from churnsense.core.release import fetch_release, read_json, read_yaml, write_json, write_yaml
from churnsense.core.runtime import RowParallelRunner, row_parallel_workers
from churnsense.data.contract import DataSpec
from churnsense.insights.state import InsightsState, load_state

FILES = ("model.onnx", "pipeline.json", "config.yaml", "metadata.json")
SEQ_PREFIX = "seq_"  # model inputs with an event axis (batch contract: seq_type, seq_value, seq_dt, seq_mask)


@dataclass
class ChurnRelease:
    """What scoring needs: the ONNX model (run row-parallel), the fitted feature pipeline, the data mapping and the
    config."""

    path: Path
    runner: RowParallelRunner
    pipeline: FeaturePipeline
    spec: DataSpec
    config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    insights_state: InsightsState = field(default_factory=InsightsState)

    @property
    def insights_config(self) -> dict[str, Any] | None:
        """The insights section the release was trained with (reasons, segments, playbook, value), if any."""
        return self.config.get("insights") or None

    @classmethod
    def load(
        cls,
        path_or_uri: str | os.PathLike,
        num_threads: int = 0,
        tracking_uri: str | None = None,
        slice_rows: int = 128,
    ) -> ChurnRelease:
        """Load a release folder or MLflow URI. `num_threads`: cores for onnxruntime (0 = every core this process
        may use); `slice_rows` > 0 runs the model row-parallel (`core.runtime.RowParallelRunner`: slices of at most
        this many rows, `num_threads` at once), 0 runs each batch as one call with `num_threads` intra-op threads
        (0 = the library default)."""
        path = fetch_release(path_or_uri, FILES, "churn", tracking_uri)
        config = read_yaml(path / "config.yaml")
        if "data" not in config:
            raise ValueError(f"{path}/config.yaml: no `data` section; the release does not describe its inputs")
        return cls(
            path=path,
            runner=RowParallelRunner(
                path / "model.onnx",
                workers=row_parallel_workers(num_threads) if slice_rows > 0 else 1,
                slice_rows=slice_rows,
                threads=num_threads,
            ),
            pipeline=FeaturePipeline.load(path / "pipeline.json"),
            spec=DataSpec.from_config(config["data"]),
            config=config,
            metadata=read_json(path / "metadata.json"),
            insights_state=load_state(path),
        )

    @property
    def input_names(self) -> list[str]:
        """The model inputs the ONNX graph declares (the batch-contract keys)."""
        return self.runner.input_names

    @property
    def horizons(self) -> list[int]:
        """Hazard horizons in days (empty without a hazard head)."""
        return [int(h) for h in self.metadata.get("hazard_horizons") or []]

    def run(self, batch: dict[str, np.ndarray], batch_size: int = 1024) -> dict[str, np.ndarray]:
        """Feed the model inputs in batches of `batch_size`; returns `churn_probability` [B] (calibrated) and,
        with a hazard head, `p_churn_<h>d` [B] per horizon, in the rows' order.

        Rows are batched by history length and each batch's event axis is cut to its longest history (at least
        one slot): events are left-aligned and padding is masked, so a row's output does not change, and the
        model runs over the events customers have rather than over padding."""
        names = self.input_names
        missing = [n for n in names if n not in batch]
        if missing:
            raise KeyError(f"feature pipeline produced no {missing} (model inputs: {names})")
        outputs = self.runner.output_names
        n = len(batch[names[0]]) if names else 0
        lengths = batch["seq_mask"].sum(axis=1) if "seq_mask" in batch and n else np.zeros(n, dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        raw: dict[str, np.ndarray] = {}
        for lo in range(0, n, batch_size):
            rows = order[lo : lo + batch_size]
            width = max(1, int(lengths[rows].max()))
            feed = {k: batch[k][rows][:, :width] if k.startswith(SEQ_PREFIX) else batch[k][rows] for k in names}
            for name, values in zip(outputs, self.runner.run(outputs, feed)):
                if name not in raw:
                    raw[name] = np.zeros((n, *values.shape[1:]), dtype=values.dtype)
                raw[name][rows] = values
        raw = {name: raw.get(name, np.zeros((0,), np.float32)) for name in outputs}
        out = {"churn_probability": raw["p_churn"].astype(np.float64)}
        if "p_horizon" in raw:
            for k, h in enumerate(self.horizons):
                out[f"p_churn_{h}d"] = raw["p_horizon"][:, k] if len(raw["p_horizon"]) else np.zeros(0)
        return out


def write_churn_release(
    folder: Path,
    onnx_path: Path,
    pipeline: FeaturePipeline,
    config: dict[str, Any],
    metadata: dict[str, Any],
    insights: Any | None = None,
    card: str | None = None,
) -> Path:
    """Write every file of a churn release into `folder` (a staging folder: `core.release.staged_release`
    publishes it): the model, the pipeline, the resolved config, metadata, fitted insights and the model card."""
    shutil.copy2(onnx_path, folder / "model.onnx")
    pipeline.save(folder / "pipeline.json")
    write_yaml(folder / "config.yaml", config)
    write_json(folder / "metadata.json", metadata)
    if insights is not None:
        insights.save(folder)
    if card is not None:
        (folder / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return folder
